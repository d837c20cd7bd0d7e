"""Galaxy samples from the catalog for the science flows: primary redshifts of a DESI target class, their
comoving positions, and a survey mask made from the sample itself (a HEALPix NESTED occupancy map), so the same
code serves the synthetic sample and real DESI data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from kernels.cosmology import comoving_distance, radec_to_xyz
from kernels.healpix import ang2pix_nest
from tasks.catalog.base import SqlCatalog

# DESI_TARGET bits of the main-survey target classes (desitarget's desi_mask).
DESI_TARGET_BITS = {"LRG": 0, "ELG": 1, "QSO": 2, "BGS_ANY": 60}


@dataclass(frozen=True)
class Galaxies:
    """Selected galaxies: sky position [deg] and redshift."""

    ra: np.ndarray
    dec: np.ndarray
    z: np.ndarray


def select_primary(catalog: SqlCatalog, target_class: str, z_min: float, z_max: float,
                   spectype: str | None = None) -> Galaxies:
    """Primary redshifts (ZWARN == 0) of one target class (and spectral type, if given) in z_min <= z < z_max."""
    if target_class not in DESI_TARGET_BITS:
        raise ValueError(f"unknown target class {target_class!r}; choose one of {sorted(DESI_TARGET_BITS)}")
    if not 0 <= z_min < z_max:
        raise ValueError(f"need 0 <= z_min < z_max, got z_min={z_min}, z_max={z_max}")
    params: dict[str, Any] = {"bit": 1 << DESI_TARGET_BITS[target_class], "lo": float(z_min), "hi": float(z_max)}
    where = "zwarn = 0 AND (desi_target & $bit) <> 0 AND z >= $lo AND z < $hi"
    if spectype is not None:
        where, params["st"] = where + " AND trim(spectype) = $st", spectype
    t = catalog.query(f"SELECT target_ra, target_dec, z FROM zcat_primary WHERE {where} ORDER BY targetid", params)
    return Galaxies(*(t.column(i).cast(pa.float64()).to_numpy() for i in range(3)))


def positions(ra: np.ndarray, dec: np.ndarray, z: np.ndarray) -> np.ndarray:
    """(n, 3) Planck18 comoving positions [h^-1 Mpc]."""
    return np.stack(radec_to_xyz(ra, dec, comoving_distance(z, "Mpc/h")), axis=1)


def nside_order(nside: int) -> int:
    """HEALPix order of a power-of-two nside."""
    if nside < 1 or nside & (nside - 1):
        raise ValueError(f"mask_nside must be a power of two, got {nside}")
    return nside.bit_length() - 1


def occupied_pixels(ra: np.ndarray, dec: np.ndarray, nside: int) -> np.ndarray:
    """Sorted NESTED pixels at `nside` holding at least one galaxy: the angular survey mask."""
    return np.unique(np.asarray(ang2pix_nest(nside_order(nside), ra, dec)))


def angular_mask(pixels: np.ndarray, nside: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """`angular(ra, dec) -> bool` [deg]: True inside the occupied pixels."""
    order, pixels = nside_order(nside), np.asarray(pixels, dtype=np.int64)

    def inside(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        return np.isin(np.asarray(ang2pix_nest(order, ra, dec)), pixels)

    return inside

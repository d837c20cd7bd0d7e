"""Inputs and outputs of the desi-voids flow: the galaxy selection, its survey mask, the catalog tables, the product.

The sample is made volume-limited without absolute magnitudes: a redshift cut, then (optionally) random thinning in
distance shells down to one constant number density. The survey mask comes from the data itself, a HEALPix NESTED
occupancy map of the selected galaxies, so the same code serves the synthetic sample and real DESI data.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pyarrow as pa

from kernels.cosmology import comoving_distance, radec_to_xyz
from kernels.healpix import ang2pix_nest
from kernels.voids import Mask, VoidCatalog, VoidFinderParams, sky_mask
from tasks.catalog.base import SqlCatalog
from tasks.lake import Lake
from tasks.voids_io import hole_columns, maximal_columns

# DESI_TARGET bits of the target classes a void sample can be drawn from (desitarget main masks).
TARGET_BITS = {"BGS_ANY": 1 << 60, "LRG": 1 << 0, "ELG": 1 << 1}
MAXIMALS_TABLE, HOLES_TABLE = "voids_maximals", "voids_holes"


@dataclass(frozen=True)
class Galaxies:
    """Selected galaxies: sky position [deg] and redshift."""

    ra: np.ndarray
    dec: np.ndarray
    z: np.ndarray


def select_galaxies(catalog: SqlCatalog, z_min: float, z_max: float, target_class: str = "BGS_ANY",
                    spectype: str = "GALAXY") -> Galaxies:
    """Primary redshifts (ZWARN == 0) of one target class and spectral type in z_min <= z < z_max; only RA/Dec/Z."""
    if target_class not in TARGET_BITS:
        raise ValueError(f"unknown target_class {target_class!r}; choose one of {sorted(TARGET_BITS)}")
    if not 0 <= z_min < z_max:
        raise ValueError(f"need 0 <= z_min < z_max, got z_min={z_min}, z_max={z_max}")
    t = catalog.query("SELECT target_ra, target_dec, z FROM zcat_primary WHERE zwarn = 0 AND trim(spectype) = $st "
                      "AND (desi_target & $bit) <> 0 AND z >= $lo AND z < $hi ORDER BY targetid",
                      {"st": spectype, "bit": TARGET_BITS[target_class], "lo": z_min, "hi": z_max})
    col = [t.column(i).cast(pa.float64()).to_numpy() for i in range(3)]
    return Galaxies(*col)


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


def survey_mask(pixels: np.ndarray, nside: int, z_min: float, z_max: float) -> Mask:
    """The survey volume: occupied pixels between the comoving distances [h^-1 Mpc] of z_min and z_max."""
    r_min, r_max = (float(comoving_distance(z, "Mpc/h")) for z in (z_min, z_max))
    return sky_mask(angular_mask(pixels, nside), r_min, r_max)


def survey_volume(pixels: np.ndarray, nside: int, z_min: float, z_max: float) -> float:
    """Comoving volume [h^-3 Mpc^3] of the survey mask."""
    r_min, r_max = (float(comoving_distance(z, "Mpc/h")) for z in (z_min, z_max))
    solid_angle = len(pixels) * 4.0 * np.pi / (12 * nside**2)
    return solid_angle / 3.0 * (r_max**3 - r_min**3)


def positions(gal: Galaxies) -> np.ndarray:
    """(n, 3) comoving positions [h^-1 Mpc] (Planck18)."""
    return np.stack(radec_to_xyz(gal.ra, gal.dec, comoving_distance(gal.z, "Mpc/h")), axis=1)


def thin_to_density(xyz: np.ndarray, density: float, pixels: np.ndarray, nside: int, z_min: float, z_max: float,
                    seed: int = 0, shell: float = 10.0) -> np.ndarray:
    """Keep-mask thinning each distance shell (`shell` h^-1 Mpc thick) at random down to `density` [h^3 Mpc^-3].

    Shells already below the density keep every galaxy (the sample is not volume-limited there).
    """
    r = np.linalg.norm(xyz, axis=1)
    r_min, r_max = (float(comoving_distance(z, "Mpc/h")) for z in (z_min, z_max))
    edges = np.append(np.arange(r_min, r_max, shell), r_max)
    solid_angle = len(pixels) * 4.0 * np.pi / (12 * nside**2)
    counts, _ = np.histogram(r, edges)
    shell_density = counts / (solid_angle / 3.0 * np.diff(edges**3))
    with np.errstate(divide="ignore"):
        keep_fraction = np.minimum(1.0, density / shell_density)
    index = np.clip(np.searchsorted(edges, r, side="right") - 1, 0, len(counts) - 1)
    return np.random.default_rng(seed).random(len(r)) < keep_fraction[index]


def finder_params(overrides: dict[str, float] | None) -> VoidFinderParams:
    """VoidFinderParams with these overrides; a misspelt name is an error with a hint."""
    known = [f.name for f in fields(VoidFinderParams)]
    for key in overrides or {}:
        if key not in known:
            hint = difflib.get_close_matches(key, known, n=1)
            raise ValueError(f"unknown VoidFinder parameter {key!r}" + (f"; did you mean {hint[0]!r}?" if hint else ""))
    return VoidFinderParams(**(overrides or {}))


def interior(spheres: np.ndarray, mask: Mask, n_points: int = 200) -> np.ndarray:
    """True for spheres (n, 4) whose centre and `n_points` surface points all lie inside the mask."""
    k = np.arange(n_points) + 0.5  # Fibonacci sphere
    cos_t, phi = 1.0 - 2.0 * k / n_points, np.pi * (1.0 + 5**0.5) * k
    sin_t = np.sqrt(1.0 - cos_t**2)
    unit = np.stack([sin_t * np.cos(phi), sin_t * np.sin(phi), cos_t], axis=1)
    return np.array([bool(mask(np.vstack([s[:3], s[:3] + s[3] * unit])).all()) for s in np.reshape(spheres, (-1, 4))],
                    dtype=bool)


def _arrow(columns: dict[str, np.ndarray]) -> pa.Table:
    return pa.table({k: pa.array(np.asarray(v)) for k, v in columns.items()})


def write_void_tables(catalog: SqlCatalog, voids: VoidCatalog) -> dict[str, int]:
    """Replace the `voids_maximals` and `voids_holes` tables with this catalog, in one transaction."""
    tables = {MAXIMALS_TABLE: _arrow(maximal_columns(voids)), HOLES_TABLE: _arrow(hole_columns(voids))}
    return catalog.replace_tables({name: (t.schema, t) for name, t in tables.items()})


def save_product(lake: Lake, run_id: str, name: str, write: Callable[[Path], object]) -> str:
    """Write one product file with `write(path)` where the lake keeps this run's outputs, make it durable there,
    and return its URL (the one place that knows where products go)."""
    path = lake.run_report_dir(run_id) / name
    write(path)
    lake.save_dir(path.parent)
    return lake.url_of(path)

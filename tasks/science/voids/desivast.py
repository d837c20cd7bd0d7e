"""DESIVAST-style VoidFinder FITS (PRIMARY, MAXIMALS, HOLES), the planted-void truth, and scoring against it.

Columns follow DESIVAST_BGS_VOLLIM_VoidFinder_{NGC,SGC}.fits: MAXIMALS (X, Y, Z, RADIUS, VOID, EDGE, R, RA, DEC,
R_EFF) and HOLES (X, Y, Z, RADIUS, VOID), distances comoving in h^-1 Mpc. MAXIMALS also carries REDSHIFT (of the
centre, Planck18) as a last, extra column.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits

from kernels.cosmology import redshift_at_distance
from kernels.voids import VoidCatalog, VoidFinderParams, xyz_to_radec

_UNITS = {"X": "Mpc/h", "Y": "Mpc/h", "Z": "Mpc/h", "RADIUS": "Mpc/h", "R": "Mpc/h", "R_EFF": "Mpc/h",
          "RA": "deg", "DEC": "deg"}


def maximal_columns(catalog: VoidCatalog) -> dict[str, np.ndarray]:
    """MAXIMALS columns, one row per void (VOID = row index)."""
    m = catalog.maximals
    ra, dec, r = xyz_to_radec(m[:, :3])
    return {
        "X": m[:, 0], "Y": m[:, 1], "Z": m[:, 2], "RADIUS": m[:, 3],
        "VOID": np.arange(len(m), dtype=np.int64), "EDGE": catalog.edge.astype(np.int64),
        "R": r, "RA": ra, "DEC": dec, "R_EFF": catalog.r_eff,
        "REDSHIFT": np.asarray(redshift_at_distance(r, "Mpc/h")) if len(r) else np.zeros(0),
    }


def hole_columns(catalog: VoidCatalog) -> dict[str, np.ndarray]:
    """HOLES columns, every hole of every void (maximals included)."""
    h = catalog.holes
    return {"X": h[:, 0], "Y": h[:, 1], "Z": h[:, 2], "RADIUS": h[:, 3], "VOID": catalog.hole_void.astype(np.int64)}


def _table(columns: dict[str, np.ndarray], name: str) -> fits.BinTableHDU:
    cols = [fits.Column(name=k, format="K" if v.dtype.kind in "iu" else "D", unit=_UNITS.get(k), array=v)
            for k, v in columns.items()]
    return fits.BinTableHDU.from_columns(cols, name=name)


def write_desivast(path: Path, catalog: VoidCatalog, params: VoidFinderParams | None = None,
                   header: dict[str, object] | None = None) -> Path:
    """Write the catalog as DESIVAST-style FITS at `path`, atomically (temp file, then rename)."""
    path, params = Path(path), params or VoidFinderParams()
    path.parent.mkdir(parents=True, exist_ok=True)
    primary = fits.PrimaryHDU()
    primary.header["DISTUNIT"] = ("Mpc/h", "comoving, Planck18 x h")
    primary.header["GRIDEDGE"] = (params.grid_edge, "empty-cell grid edge [Mpc/h]")
    primary.header["MINRMAX"] = (params.min_maximal_radius, "minimum maximal-sphere radius [Mpc/h]")
    primary.header["FIELDCUT"] = (catalog.field_threshold, "3rd-neighbour distance cut [Mpc/h]")
    primary.header["NFIELD"] = (int(catalog.is_field.sum()), "galaxies removed as field")
    primary.header["NWALL"] = (int((~catalog.is_field).sum()), "wall galaxies")
    for key, value in (header or {}).items():
        primary.header[key] = value
    hdus = fits.HDUList([primary, _table(maximal_columns(catalog), "MAXIMALS"), _table(hole_columns(catalog), "HOLES")])
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        hdus.writeto(tmp, overwrite=True)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_spheres(path: Path, extname: str) -> np.ndarray:
    """(n, 4) X, Y, Z, RADIUS of a FITS table: the truth's VOIDS, or MAXIMALS/HOLES of a written catalog."""
    with fits.open(path) as hdus:
        data = hdus[extname].data
        return np.stack([np.asarray(data[c], dtype=np.float64) for c in ("X", "Y", "Z", "RADIUS")], axis=1)


@dataclass(frozen=True)
class VoidScore:
    """Recovery of planted voids: a found void matches a planted one when its centre lies inside it."""

    n_truth: int
    n_found: int
    completeness: float  # planted voids with a matching found void
    purity: float  # found voids matching a planted void
    median_center_error: float  # [Mpc/h], nearest matching found void per recovered planted void
    median_radius_error: float  # found minus planted radius [Mpc/h], same pairs


def score_voids(found: np.ndarray, truth: np.ndarray) -> VoidScore:
    """Completeness, purity and median centre/radius errors of found (n, 4) against planted (m, 4) spheres."""
    found, truth = np.asarray(found, float).reshape(-1, 4), np.asarray(truth, float).reshape(-1, 4)
    dist = np.linalg.norm(found[:, None, :3] - truth[None, :, :3], axis=2)
    match = dist < truth[None, :, 3]
    recovered = match.any(axis=0)
    completeness = float(recovered.mean()) if len(truth) else float("nan")
    purity = float(match.any(axis=1).mean()) if len(found) else float("nan")
    if recovered.any():
        best = np.where(match, dist, np.inf).argmin(axis=0)[recovered]
        center = float(np.median(dist[best, np.flatnonzero(recovered)]))
        radius = float(np.median(found[best, 3] - truth[recovered, 3]))
    else:
        center = radius = float("nan")
    return VoidScore(len(truth), len(found), completeness, purity, center, radius)

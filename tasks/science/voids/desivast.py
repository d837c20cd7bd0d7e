"""DESIVAST-style VoidFinder FITS in VAST's layout, the planted-void truth, and scoring against it.

HDUs: PRIMARY (VAST's header keys: cosmology, distance and redshift limits, sky coverage, survey volume, galaxy,
wall, field and void counts, density, the finder's settings and grid origin), MAXIMALS (X, Y, Z, RADIUS, VOID,
EDGE, R, RA, DEC, R_EFF, R_EFF_UNCERT as DESIVAST_BGS_VOLLIM_VoidFinder_{NGC,SGC}.fits, and REDSHIFT of the centre
as a last, extra column), HOLES (X, Y, Z, RADIUS, VOID), WALL and FIELD (X, Y, Z of the galaxies so classified),
and for a sky footprint MASK (VAST's angular mask image, MSKRES, COVSTR) and HPXMASK (the HEALPix NESTED pixels
the finder actually used). Distances are comoving in h^-1 Mpc, from the cosmology recorded in the header.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits

from kernels.cosmology import COSMOLOGY, cosmology, redshift_at_distance
from kernels.voids import VoidCatalog, VoidFinderParams, xyz_to_radec
from tasks.science.voids.footprint import Footprint, SkyFootprint

_UNITS = {"X": "Mpc/h", "Y": "Mpc/h", "Z": "Mpc/h", "RADIUS": "Mpc/h", "R": "Mpc/h", "R_EFF": "Mpc/h",
          "R_EFF_UNCERT": "Mpc/h", "RA": "deg", "DEC": "deg"}

# VoidFinderParams field -> primary-header key and comment: VAST's key where VAST writes one (README: the table).
PARAM_KEYS = {
    "grid_edge": ("HGEL", "Hole Grid Edge Length (Mpc/h)"),
    "search_edge": ("NNGEL", "Edge Length of NN Grid (Mpc/h)"),  # VAST writes it as a 2nd MMR, which is lost
    "sep_neighbor": ("NNS", "Nth Neighbor Used for Wall-Field Separation"),
    "field_sigma": ("FLDSIG", "Field: Nth neighbor beyond NNSA+FLDSIG*NNSS"),
    "min_maximal_radius": ("MMR", "Minimum Allowed Maximal Radius (Mpc/h)"),
    "maximal_overlap": ("MAXOVL", "Max Volume Fraction a Maximal Shares"),
    "hole_join_fraction": ("JOINFR", "Min Volume Fraction of a Hole in Its Maximal"),
    "hole_outside_cut": ("MHMO", "Max Hole Mask Overlap"),
    "edge_buffer": ("EDGEBUF", "EDGE=2 Buffer (Mpc/h)"),
    "dup_tol": ("DUPTOL", "Holes This Close Are One (Mpc/h)"),
    "pts_per_unit_volume": ("PPUV", "Volume-Cut Mesh Points per (Mpc/h)^3"),
    "bounding_galaxies": ("NBOUND", "Galaxies on a Hole's Surface"),
    "volume_spacing": ("VOLSTEP", "Grid Step of Void Volumes (Mpc/h)"),
    "chunk_cells": ("BS", "Batch Size"),
}


def maximal_columns(catalog: VoidCatalog) -> dict[str, np.ndarray]:
    """MAXIMALS columns, one row per void (VOID = row index)."""
    m = catalog.maximals
    ra, dec, r = xyz_to_radec(m[:, :3])
    return {
        "X": m[:, 0], "Y": m[:, 1], "Z": m[:, 2], "RADIUS": m[:, 3],
        "VOID": np.arange(len(m), dtype=np.int64), "EDGE": catalog.edge.astype(np.int64),
        "R": r, "RA": ra, "DEC": dec, "R_EFF": catalog.r_eff, "R_EFF_UNCERT": catalog.r_eff_uncert,
        "REDSHIFT": np.asarray(redshift_at_distance(r, "Mpc/h")) if len(r) else np.zeros(0),
    }


def hole_columns(catalog: VoidCatalog) -> dict[str, np.ndarray]:
    """HOLES columns, every hole of every void (maximals included)."""
    h = catalog.holes
    return {"X": h[:, 0], "Y": h[:, 1], "Z": h[:, 2], "RADIUS": h[:, 3], "VOID": catalog.hole_void.astype(np.int64)}


def _table(columns: dict[str, np.ndarray], name: str, header: dict[str, tuple[object, str]]) -> fits.BinTableHDU:
    cols = [fits.Column(name=k, format="K" if v.dtype.kind in "iu" else "D", unit=_UNITS.get(k), array=v)
            for k, v in columns.items()]
    hdu = fits.BinTableHDU.from_columns(cols, name=name)
    hdu.header.update(header)
    return hdu


def _xyz(xyz: np.ndarray) -> dict[str, np.ndarray]:
    return {"X": xyz[:, 0], "Y": xyz[:, 1], "Z": xyz[:, 2]}


def primary_header(catalog: VoidCatalog, n_galaxies: int, footprint: Footprint,
                   params: VoidFinderParams) -> dict[str, tuple[object, str]]:
    """VAST's primary-header keys of a VoidFinder output (and ours where VAST has none), with their comments."""
    cosmo = cosmology()
    volume = footprint.volume()
    n_field = int(catalog.is_field.sum())
    head: dict[str, tuple[object, str]] = {
        "DISTUNIT": ("Mpc/h", f"comoving, {COSMOLOGY} x h"),
        "METRIC": ("comoving", "Distance Metric"),
        "COSMO": (COSMOLOGY, "astropy.cosmology model of all distances"),
        "H0": (float(cosmo.H0.value), "Hubble constant of COSMO (km/s/Mpc)"),
        "OMEGAM": (float(cosmo.Om0), "Matter Density"),
        "OMEGAL": (float(cosmo.Ode0), "Dark Energy Density"),
        "HP": (1.0, "Reduced Hubble Parameter h (((km/s)/Mpc)/100)"),  # VAST's h=1: distances in Mpc/h
    }
    if isinstance(footprint, SkyFootprint):
        d_min, d_max = footprint.distance_limits()
        coverage = footprint.solid_angle()
        head |= {
            "DLIML": (d_min, "Lower Distance Limit (Mpc/h)"), "DLIMU": (d_max, "Upper Distance Limit (Mpc/h)"),
            "ZLIML": (float(footprint.z_min), "Lower Redshift Limit"),
            "ZLIMU": (float(footprint.z_max), "Upper Redshift Limit"),
            "MSKRES": (footprint.vast_mask_resolution(params.min_maximal_radius), "Mask Resolution"),
            "COVSTR": (coverage, "Sky Coverage (Steradians)"),
            "COVDEG": (coverage * np.degrees(1.0) ** 2, "Sky Coverage (Degrees^2)"),
        }
    head |= {
        "RMISO": (True, "Isolated Galaxies Removed"),
        "MAGCUT": (False, "Magnitude Cut Applied"),
        "VOLUME": (volume, "Survey Volume (Mpc/h)^3"),
        "GALAXY": (n_galaxies, "Galaxy Count"),
        "WALLNUM": (n_galaxies - n_field, "Wall Galaxy Count"),
        "FIELDNUM": (n_field, "Field Galaxy Count"),
        "DENSITY": (n_galaxies / volume, "Galaxy Count Density (Mpc/h)^-3"),
        "VOID": (len(catalog.maximals), "Void Count"),
        "CHKE": (True, "Check Only Empty Cells"),
        "GOX": (float(catalog.grid_origin[0]), "Grid Origin X Coordinate"),
        "GOY": (float(catalog.grid_origin[1]), "Grid Origin Y Coordinate"),
        "GOZ": (float(catalog.grid_origin[2]), "Grid Origin Z Coordinate"),
        "GODEF": (params.grid_origin is None, "Grid Origin: minimum over wall and field"),
    }
    # With sep_neighbor galaxies or fewer there is no Nth neighbour: no NaN or inf keys (FITS has no such value).
    for key, value, comment in (
            ("NNSA", catalog.neighbour_mean, "Average Nth Neighbor Separation (Mpc/h)"),
            ("NNSS", catalog.neighbour_std, "STD of Nth Neighbor Separation (Mpc/h)"),
            ("FIELDCUT", catalog.field_threshold, "Nth Neighbor Separation Field Cut (Mpc/h)")):
        if np.isfinite(value):
            head[key] = (float(value), comment)
    if n_galaxies:
        head["AVSEP"] = ((volume / n_galaxies) ** (1 / 3), "Average Galaxy Separation (Mpc/h)")
    for name, (key, comment) in PARAM_KEYS.items():
        head[key] = (getattr(params, name), comment)
    return head


def _mask_hdus(footprint: SkyFootprint, min_maximal_radius: float) -> list[fits.hdu.base.ExtensionHDU]:
    mask, res = footprint.vast_mask(min_maximal_radius)
    image = fits.ImageHDU(mask.astype(np.uint8), name="MASK")
    image.header["MSKRES"] = (res, "Mask Resolution")
    image.header["COVSTR"] = (footprint.solid_angle(), "Sky Coverage (Steradians), of HPXMASK")
    pixels = _table({"PIXEL": np.asarray(footprint.pixels, dtype=np.int64)}, "HPXMASK",
                    {"NSIDE": (footprint.nside, "HEALPix nside"), "ORDERING": ("NESTED", "HEALPix ordering")})
    return [image, pixels]


def write_desivast(path: Path, catalog: VoidCatalog, galaxies: np.ndarray, footprint: Footprint,
                   params: VoidFinderParams | None = None, header: dict[str, object] | None = None) -> Path:
    """Write the catalog found in `galaxies` (n, 3) [h^-1 Mpc] inside `footprint` as a DESIVAST FITS file in VAST's
    layout at `path`, atomically (temp file, then rename); `header` adds primary-header keys."""
    path, params = Path(path), params or VoidFinderParams()
    galaxies = np.asarray(galaxies, dtype=np.float64).reshape(-1, 3)
    if len(galaxies) != len(catalog.is_field):
        raise ValueError(f"{path.name}: {len(galaxies)} galaxies given for a catalog found in "
                         f"{len(catalog.is_field)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    primary = fits.PrimaryHDU()
    primary.header.update(primary_header(catalog, len(galaxies), footprint, params))
    for key, value in (header or {}).items():
        primary.header[key] = value
    n_voids = len(catalog.maximals)
    hdus = fits.HDUList([
        primary,
        _table(maximal_columns(catalog), "MAXIMALS", {"VOID": (n_voids, "Void Count")}),
        _table(hole_columns(catalog), "HOLES", {"VOID": (n_voids, "Void Count"),
                                                "HOLE": (len(catalog.holes), "Hole Count")}),
        _table(_xyz(galaxies[~catalog.is_field]), "WALL",
               {"WALLNUM": (int((~catalog.is_field).sum()), "Wall Galaxy Count")}),
        _table(_xyz(galaxies[catalog.is_field]), "FIELD",
               {"FIELDNUM": (int(catalog.is_field.sum()), "Field Galaxy Count")}),
    ])
    if isinstance(footprint, SkyFootprint):
        hdus.extend(_mask_hdus(footprint, params.min_maximal_radius))
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

"""Inputs and outputs of the desi-voids flow: the survey volume, the volume-limited sample, the catalog tables.

The sample (`tasks.science.selection`) is made volume-limited without absolute magnitudes: a redshift cut, then
(optionally) random thinning in distance shells down to one constant number density.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, cast

import numpy as np
import pyarrow as pa

from kernels.voids import Mask, VoidCatalog, VoidFinderParams
from tasks.catalog.base import SqlCatalog
from tasks.errors import did_you_mean
from tasks.science.voids.desivast import hole_columns, maximal_columns
from tasks.science.voids.footprint import SkyFootprint

MAXIMALS_TABLE, HOLES_TABLE = "voids_maximals", "voids_holes"


def survey_mask(pixels: np.ndarray, nside: int, z_min: float, z_max: float) -> Mask:
    """The survey volume: occupied pixels between the comoving distances [h^-1 Mpc] of z_min and z_max."""
    return SkyFootprint(pixels, nside, z_min, z_max).mask()


def survey_volume(pixels: np.ndarray, nside: int, z_min: float, z_max: float) -> float:
    """Comoving volume [h^-3 Mpc^3] of the survey mask."""
    return SkyFootprint(pixels, nside, z_min, z_max).volume()


def thin_to_density(xyz: np.ndarray, density: float, pixels: np.ndarray, nside: int, z_min: float, z_max: float,
                    seed: int = 0, shell: float = 10.0) -> np.ndarray:
    """Keep-mask thinning each distance shell (`shell` h^-1 Mpc thick) at random down to `density` [h^3 Mpc^-3].

    Shells already below the density keep every galaxy (the sample is not volume-limited there).
    """
    r = np.linalg.norm(xyz, axis=1)
    footprint = SkyFootprint(pixels, nside, z_min, z_max)
    r_min, r_max = footprint.distance_limits()
    edges = np.append(np.arange(r_min, r_max, shell), r_max)
    counts, _ = np.histogram(r, edges)
    shell_density = counts / (footprint.solid_angle() / 3.0 * np.diff(edges**3))
    with np.errstate(divide="ignore"):
        keep_fraction = np.minimum(1.0, density / shell_density)
    index = np.clip(np.searchsorted(edges, r, side="right") - 1, 0, len(counts) - 1)
    return np.random.default_rng(seed).random(len(r)) < keep_fraction[index]


def finder_params(overrides: dict[str, float] | None,
                  grid_origin: list[float] | None = None) -> VoidFinderParams:
    """VoidFinderParams with these overrides and grid origin [h^-1 Mpc] (None: VAST's default, the galaxies'
    minimum); a misspelt name is an error with a hint."""
    known = [f.name for f in fields(VoidFinderParams) if f.name != "grid_origin"]
    for key in overrides or {}:
        if key not in known:
            raise ValueError(f"unknown VoidFinder parameter {key!r}{did_you_mean(key, known)}")
    # As before, values go in unconverted: floats (the flow's parameter schema) reach the int fields too.
    origin = None if grid_origin is None else tuple(grid_origin)
    return VoidFinderParams(**cast("dict[str, Any]", overrides or {}), grid_origin=origin)


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

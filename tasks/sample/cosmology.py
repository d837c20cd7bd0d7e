"""Planck18 comoving distances from a spline table (astropy integrates per call, far too slow per row)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from astropy.cosmology import Planck18
from scipy.interpolate import CubicSpline

Z_MAX = 6.0
_N_GRID = 6001


@dataclass(frozen=True)
class DistanceTable:
    """Comoving distance <-> redshift for Planck18, distances in h^-1 Mpc."""

    h: float
    _forward: CubicSpline
    _inverse: CubicSpline

    def comoving(self, z: np.ndarray) -> np.ndarray:
        """Comoving distance [h^-1 Mpc] at redshift z (0 <= z <= 6)."""
        return self._forward(np.clip(z, 0.0, Z_MAX))

    def redshift(self, distance: np.ndarray) -> np.ndarray:
        """Redshift at comoving distance [h^-1 Mpc]."""
        return self._inverse(distance)

    def luminosity_mpc(self, z: np.ndarray) -> np.ndarray:
        """Luminosity distance [Mpc, not h^-1] (flat: (1+z) D_C)."""
        return (1.0 + z) * self.comoving(z) / self.h


@lru_cache(maxsize=1)
def planck18() -> DistanceTable:
    """The Planck18 table (built once per process, ~50 ms)."""
    z = np.linspace(0.0, Z_MAX, _N_GRID)
    d = Planck18.comoving_distance(z).value * Planck18.h
    return DistanceTable(float(Planck18.h), CubicSpline(z, d), CubicSpline(d, z))


def radec_to_xyz(ra: np.ndarray, dec: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """Cartesian (n, 3) positions: x = d cos(dec) cos(ra), y = d cos(dec) sin(ra), z = d sin(dec)."""
    a, d = np.radians(ra), np.radians(dec)
    cd = np.cos(d)
    return np.stack([distance * cd * np.cos(a), distance * cd * np.sin(a), distance * np.sin(d)], axis=-1)


def xyz_to_radec(xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ra [deg, 0-360), dec [deg], distance) of Cartesian (n, 3) positions."""
    distance = np.linalg.norm(xyz, axis=-1)
    ra = np.degrees(np.arctan2(xyz[..., 1], xyz[..., 0])) % 360.0
    dec = np.degrees(np.arcsin(np.clip(xyz[..., 2] / distance, -1.0, 1.0)))
    return ra, dec, distance

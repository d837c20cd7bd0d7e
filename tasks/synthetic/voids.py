"""Planted voids: non-overlapping empty spheres inside the footprint at z < 0.2, and their truth table."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.cosmology import Planck18

from kernels.cosmology import comoving_distance, redshift_at_distance, xyz_to_radec

from .columns import VOIDS, pack
from .fitsstream import FitsWriter
from .footprint import in_footprint

RADIUS_RANGE = (15.0, 35.0)  # h^-1 Mpc
Z_RANGE = (0.03, 0.2)  # whole sphere between these redshifts
SEPARATION_MARGIN = 2.0  # h^-1 Mpc between void surfaces
EMPTY_MARGIN = 0.05  # h^-1 Mpc: rows are kept this far outside the surface, so any distance code agrees
_MAX_TRIES = 200_000


@dataclass(frozen=True)
class Voids:
    """Void centres (n, 3) and radii (n,) in comoving h^-1 Mpc, with the centres' sky position and redshift."""

    centers: np.ndarray
    radii: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    redshift: np.ndarray

    def contains(self, xyz: np.ndarray, margin: float = EMPTY_MARGIN) -> np.ndarray:
        """True for positions (n, 3) within radius + margin of any void centre."""
        inside = np.zeros(len(xyz), dtype=bool)
        for center, radius in zip(self.centers, self.radii):
            inside |= np.sum((xyz - center) ** 2, axis=1) < (radius + margin) ** 2
        return inside


def _cap_in_footprint(center: np.ndarray, angle: float) -> bool:
    """True if the spherical cap of this angular radius [rad] around the unit vector lies inside the footprint."""
    helper = np.array([0.0, 0.0, 1.0]) if abs(center[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    e1 = np.cross(center, helper)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(center, e1)
    phi = np.linspace(0.0, 2 * np.pi, 96, endpoint=False)
    psi = angle * np.array([0.25, 0.5, 0.75, 1.0])[:, None]
    ring = np.cos(psi)[..., None] * center + np.sin(psi)[..., None] * (
        np.cos(phi)[:, None] * e1 + np.sin(phi)[:, None] * e2
    )
    ra, dec, _ = xyz_to_radec(*np.vstack([center[None, :], ring.reshape(-1, 3)]).T)
    return bool(in_footprint(ra, dec).all())


def plant_voids(n: int, rng: np.random.Generator) -> Voids:
    """Draw n non-overlapping voids, uniform in volume, each sphere wholly inside the footprint and z range."""
    d_lo, d_hi = comoving_distance(np.array(Z_RANGE), "Mpc/h")
    centers: list[np.ndarray] = []
    radii: list[float] = []
    for _ in range(_MAX_TRIES):
        if len(centers) == n:
            break
        radius = rng.uniform(*RADIUS_RANGE)
        lo, hi = d_lo + radius, d_hi - radius
        distance = np.cbrt(rng.uniform(lo**3, hi**3))
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        center = direction * distance
        if centers:
            gaps = np.linalg.norm(np.array(centers) - center, axis=1) - np.array(radii) - radius
            if gaps.min() < SEPARATION_MARGIN:
                continue
        if not _cap_in_footprint(direction, np.arcsin(radius / distance)):
            continue
        centers.append(center)
        radii.append(radius)
    else:
        raise ValueError(f"could not place {n} voids of radius {RADIUS_RANGE} h^-1 Mpc in the footprint")
    xyz = np.array(centers).reshape(-1, 3)
    ra, dec, distance = xyz_to_radec(*xyz.T)
    return Voids(xyz, np.array(radii), ra, dec, redshift_at_distance(distance, "Mpc/h"))


def write_truth(path: Path, voids: Voids, seed: int) -> None:
    """truth/planted_voids.fits: one VOIDS table, distances in comoving h^-1 Mpc (Planck18 x h)."""
    n = len(voids.radii)
    values = {
        "VOID": np.arange(n), "X": voids.centers[:, 0], "Y": voids.centers[:, 1], "Z": voids.centers[:, 2],
        "RADIUS": voids.radii, "RA": voids.ra, "DEC": voids.dec, "REDSHIFT": voids.redshift,
    }
    keywords = [
        ("H0", float(Planck18.H0.value), "km/s/Mpc"),
        ("OM0", float(Planck18.Om0), "matter density"),
        ("COSMO", "Planck18", "astropy.cosmology realization"),
        ("SEED", seed, "SampleConfig.seed"),
        ("DISTUNIT", "h^-1 Mpc", "X, Y, Z, RADIUS: comoving, Planck18 x h"),
    ]
    with FitsWriter(path) as out:
        out.write_primary()
        out.begin_table(VOIDS, "VOIDS", keywords)
        out.write_rows(pack(VOIDS, values, n))
        out.end_table()


"""The survey volume of a void run, as the void finder tests it and as the DESIVAST file records it: HEALPix NESTED
pixels between two redshifts (the flow's occupancy mask), or an axis-aligned box (VAST's 'xyz' mask)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kernels.cosmology import comoving_distance
from kernels.voids import Mask, box_mask, sky_mask
from tasks.science.selection import angular_mask


@dataclass(frozen=True)
class SkyFootprint:
    """Occupied HEALPix NESTED `pixels` at `nside` between redshifts z_min and z_max."""

    pixels: np.ndarray
    nside: int
    z_min: float
    z_max: float

    def distance_limits(self) -> tuple[float, float]:
        """Comoving distances [h^-1 Mpc] of z_min and z_max."""
        return float(comoving_distance(self.z_min, "Mpc/h")), float(comoving_distance(self.z_max, "Mpc/h"))

    def solid_angle(self) -> float:
        """Solid angle [sr] of the pixels."""
        return len(self.pixels) * 4.0 * np.pi / (12 * self.nside**2)

    def volume(self) -> float:
        """Comoving volume [h^-3 Mpc^3]."""
        r_min, r_max = self.distance_limits()
        return self.solid_angle() / 3.0 * (r_max**3 - r_min**3)

    def mask(self) -> Mask:
        """The survey volume as the void finder's callback."""
        return sky_mask(angular_mask(self.pixels, self.nside), *self.distance_limits())

    def vast_mask_resolution(self, min_maximal_radius: float = 10.0) -> int:
        """VAST's generate_mask choice of resolution: 1 + int(radians(r_max) / min_maximal_radius), r_max in
        h^-1 Mpc (mask cells about a maximal sphere's radius wide at r_max)."""
        return 1 + int(np.radians(self.distance_limits()[1]) / min_maximal_radius)

    def vast_mask(self, min_maximal_radius: float = 10.0) -> tuple[np.ndarray, int]:
        """(mask, resolution): the angular mask as VAST stores it, a boolean (360 * res, 180 * res) array that
        VAST reads at [trunc(ra * res), trunc(dec * res) + 90 res] (truncated toward zero, `vast_sky_mask`); a cell
        is in when the centre of the area VAST reads it for is in a pixel. That is floor((dec + 90) * res) north of
        the equator; south of it a row serves the declinations one row further south, and row 90 res serves
        -1/res < dec < 1/res (in when either half's centre is in)."""
        res = self.vast_mask_resolution(min_maximal_radius)
        ra = (np.arange(360 * res) + 0.5) / res
        row = np.arange(180 * res) - 90 * res
        north = (row + 0.5) / res
        south = np.maximum((row - 0.5) / res, -90.0)
        inside = angular_mask(self.pixels, self.nside)
        mask = np.zeros((len(ra), len(row)), dtype=bool)
        for rows, dec in ((row >= 0, north), (row <= 0, south)):
            ra_grid, dec_grid = np.meshgrid(ra, dec[rows], indexing="ij")
            mask[:, rows] |= np.asarray(inside(ra_grid.ravel(), dec_grid.ravel()), dtype=bool).reshape(ra_grid.shape)
        return mask, res


@dataclass(frozen=True)
class BoxFootprint:
    """The axis-aligned box [lo, hi] [h^-1 Mpc]."""

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]

    def volume(self) -> float:
        """Volume [h^-3 Mpc^3]."""
        return float(np.prod(np.subtract(self.hi, self.lo)))

    def mask(self) -> Mask:
        """The box as the void finder's callback."""
        return box_mask(np.asarray(self.lo), np.asarray(self.hi))


Footprint = SkyFootprint | BoxFootprint

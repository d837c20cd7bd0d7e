"""A DESI-like sky footprint: an NGC and an SGC cap cut by Galactic latitude and declination (~14,000 deg^2)."""

from __future__ import annotations

from functools import lru_cache

import healpy as hp
import numpy as np

# Third row of the ICRS -> Galactic rotation matrix: sin(b) = row . unit vector.
_GAL_POLE = np.array([-0.8676661490190047, -0.1980763734312015, 0.4559837761750669])
NGC_B_MIN, NGC_DEC = 26.0, (-10.0, 78.0)
SGC_B_MAX, SGC_DEC = -30.0, (-18.0, 30.0)
AREA_ORDER = 8  # resolution of the area map used to plan blocks (nside 256, 0.23 deg pixels)


def galactic_latitude(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Galactic latitude b [deg] of ICRS positions [deg]."""
    a, d = np.radians(ra), np.radians(dec)
    cd = np.cos(d)
    sin_b = _GAL_POLE[0] * cd * np.cos(a) + _GAL_POLE[1] * cd * np.sin(a) + _GAL_POLE[2] * np.sin(d)
    return np.degrees(np.arcsin(np.clip(sin_b, -1.0, 1.0)))


def in_ngc(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """True where (ra, dec) [deg] lies in the northern-Galactic-cap part of the footprint."""
    dec = np.asarray(dec, dtype=float)
    return (galactic_latitude(ra, dec) > NGC_B_MIN) & (dec > NGC_DEC[0]) & (dec < NGC_DEC[1])


def in_footprint(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """True where (ra, dec) [deg] lies in the synthetic DESI footprint (NGC or SGC)."""
    ra, dec = np.asarray(ra, dtype=float), np.asarray(dec, dtype=float)
    b = galactic_latitude(ra, dec)
    ngc = (b > NGC_B_MIN) & (dec > NGC_DEC[0]) & (dec < NGC_DEC[1])
    sgc = (b < SGC_B_MAX) & (dec > SGC_DEC[0]) & (dec < SGC_DEC[1])
    return ngc | sgc


@lru_cache(maxsize=1)
def area_map() -> tuple[np.ndarray, np.ndarray]:
    """Order-8 NESTED pixels: (fraction of the pixel inside the footprint, pixel possibly touches it).

    Pixels whose 8 neighbours agree with them are all in or all out; only edge pixels are refined, the
    fraction from 16 sub-pixel centres and "touches" from the centre or a corner being inside, so that sampling
    restricted to touching pixels reaches every part of the footprint.
    """
    nside = 1 << AREA_ORDER
    pix = np.arange(hp.nside2npix(nside))
    inside = in_footprint(*hp.pix2ang(nside, pix, nest=True, lonlat=True))
    neighbours = hp.get_all_neighbours(nside, pix, nest=True)
    edge = pix[(np.where(neighbours >= 0, inside[neighbours], inside) != inside).any(axis=0)]
    fraction, touches = inside.astype(float), inside.copy()
    sub = (edge[:, None] * 16 + np.arange(16)).ravel()
    fraction[edge] = in_footprint(*hp.pix2ang(nside * 4, sub, nest=True, lonlat=True)).reshape(-1, 16).mean(axis=1)
    corners = hp.boundaries(nside, edge, step=1, nest=True).transpose(0, 2, 1).reshape(-1, 3)
    touches[edge] |= (fraction[edge] > 0) | in_footprint(*hp.vec2ang(corners, lonlat=True)).reshape(-1, 4).any(axis=1)
    return fraction, touches


def footprint_area_deg2() -> float:
    """Area of the footprint [deg^2] from the area map."""
    fraction, _ = area_map()
    return float(fraction.sum() * hp.nside2pixarea(1 << AREA_ORDER, degrees=True))

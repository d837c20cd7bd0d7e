"""NESTED HEALPix on numpy or cupy, bit-compatible with healpy (healpix_cxx `loc2pix`).

Inputs are RA/Dec in degrees. RA wraps modulo 360; NaN/inf RA, NaN Dec or |Dec| > 90
give pixel -1 (healpy raises instead). Orders 0..29 (nside = 2**order).
"""

from __future__ import annotations

import math
import operator
from typing import Any

import numba
import numpy as np

from kernels.xp import namespace

HEALPIX_29_ORDER = 29
MAX_ORDER = 29

# Same literals as healpix_cxx, so rounding matches the C++ bit for bit.
_PI = 3.141592653589793238462643383279502884197
_TWOPI = 6.283185307179586476925286766559005768394
_HALFPI = 1.570796326794896619231321691639751442099
_INV_HALFPI = 0.6366197723675813430755350534900574
_TWOTHIRD = 2.0 / 3.0
_DEG2RAD = _PI / 180.0  # numpy's np.radians constant (NPY_PI / 180)
_RAD2DEG = 180.0 / _PI


def _check_order(order: int) -> int:
    try:
        value = operator.index(order)  # int or numpy integer, not float
    except TypeError:
        value = -1
    if isinstance(order, bool) or not 0 <= value <= MAX_ORDER:
        raise ValueError(f"HEALPix order must be an integer in 0..{MAX_ORDER}, got {order!r}")
    return value


def _spread_bits(v: Any) -> Any:
    # Interleave zeros between the low 32 bits: b31..b0 -> 0 b31 ... 0 b0 (Morton code).
    v = (v | (v << 16)) & 0x0000FFFF0000FFFF
    v = (v | (v << 8)) & 0x00FF00FF00FF00FF
    v = (v | (v << 4)) & 0x0F0F0F0F0F0F0F0F
    v = (v | (v << 2)) & 0x3333333333333333
    return (v | (v << 1)) & 0x5555555555555555


def _compress_bits(v: Any) -> Any:
    v = v & 0x5555555555555555
    v = (v | (v >> 1)) & 0x3333333333333333
    v = (v | (v >> 2)) & 0x0F0F0F0F0F0F0F0F
    v = (v | (v >> 4)) & 0x00FF00FF00FF00FF
    v = (v | (v >> 8)) & 0x0000FFFF0000FFFF
    return (v | (v >> 16)) & 0x00000000FFFFFFFF


_spread_bits_cpu = numba.njit(_spread_bits, cache=True)


@numba.njit(parallel=True, cache=True)
def _ang2pix_cpu(order: int, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    # The array expression below, one point at a time in threads: same constants, same operations, and libm's
    # cos/sin/sqrt as healpix_cxx uses.
    out = np.empty(ra.size, dtype=np.int64)
    nside = 1 << order
    fn = float(nside)
    for k in numba.prange(ra.size):
        if not (dec[k] >= -90.0 and dec[k] <= 90.0 and np.isfinite(ra[k])):
            out[k] = -1
            continue
        theta = _PI / 2.0 - dec[k] * _DEG2RAD
        phi = ra[k] * _DEG2RAD
        r = np.fmod(phi, _TWOPI)
        phi = r if phi >= 0 else 0.0 if r + _TWOPI == _TWOPI else r + _TWOPI
        tt = np.fmod(phi * _INV_HALFPI, 4.0)
        z = math.cos(theta)
        za = abs(z)
        if za <= _TWOTHIRD:
            temp1 = fn * (0.5 + tt)
            temp2 = fn * (z * 0.75)
            jp = np.int64(temp1 - temp2)
            jm = np.int64(temp1 + temp2)
            ifp, ifm = jp >> order, jm >> order
            face = (ifp | 4) if ifp == ifm else (ifp if ifp < ifm else ifm + 8)
            ix = jm & (nside - 1)
            iy = nside - (jp & (nside - 1)) - 1
        else:
            ntt = min(np.int64(tt), np.int64(3))
            tp = tt - ntt
            have_sth = theta < 0.01 or theta > 3.14159 - 0.01
            if za < 0.99 or not have_sth:
                tmp = fn * math.sqrt(3.0 * (1.0 - za))
            else:
                tmp = fn * math.sin(theta) / math.sqrt((1.0 + za) / 3.0)
            jp = min(np.int64(tp * tmp), np.int64(nside - 1))
            jm = min(np.int64((1.0 - tp) * tmp), np.int64(nside - 1))
            if z >= 0:
                face, ix, iy = ntt, nside - jm - 1, nside - jp - 1
            else:
                face, ix, iy = ntt + 8, jp, jm
        out[k] = (np.int64(face) << (2 * order)) + _spread_bits_cpu(np.int64(ix)) + \
            (_spread_bits_cpu(np.int64(iy)) << 1)
    return out


def ang2pix_nest(order: int, ra_deg: Any, dec_deg: Any, compiled: bool = True) -> Any:
    """NESTED pixel (int64) of each RA/Dec in degrees at `order`; -1 for NaN or |Dec| > 90.

    Numpy input runs through a numba loop (``compiled=False``: the array expression, as on cupy).
    """
    order = _check_order(order)
    xp = namespace(ra_deg, dec_deg)
    ra = xp.asarray(ra_deg, dtype=xp.float64)
    dec = xp.asarray(dec_deg, dtype=xp.float64)
    ra, dec = xp.broadcast_arrays(ra, dec)
    if xp is np and compiled:
        shape = ra.shape
        return _ang2pix_cpu(order, np.ascontiguousarray(ra).ravel(), np.ascontiguousarray(dec).ravel()).reshape(shape)
    valid = (dec >= -90.0) & (dec <= 90.0) & xp.isfinite(ra)
    ra = xp.where(valid, ra, 0.0)
    dec = xp.where(valid, dec, 0.0)

    # healpy: theta = pi/2 - radians(dec), phi = radians(lon); the C++ then takes
    # phi = fmodulo(phi, 2 pi) (pointing::normalize) and tt = fmodulo(phi / (pi/2), 4).
    theta = _PI / 2.0 - dec * _DEG2RAD
    phi = ra * _DEG2RAD
    r = xp.fmod(phi, _TWOPI)
    neg = r + _TWOPI
    phi = xp.where(phi >= 0, r, xp.where(neg == _TWOPI, 0.0, neg))
    tt = xp.fmod(phi * _INV_HALFPI, 4.0)
    z = xp.cos(theta)
    za = xp.abs(z)
    nside = 1 << order
    fn = float(nside)

    # Equatorial region, za <= 2/3.
    temp1 = fn * (0.5 + tt)
    temp2 = fn * (z * 0.75)
    jp = (temp1 - temp2).astype(xp.int64)  # both >= 0, so the cast truncates like the C++
    jm = (temp1 + temp2).astype(xp.int64)
    ifp = jp >> order
    ifm = jm >> order
    face_eq = xp.where(ifp == ifm, ifp | 4, xp.where(ifp < ifm, ifp, ifm + 8))
    ix_eq = jm & (nside - 1)
    iy_eq = nside - (jp & (nside - 1)) - 1

    # Polar caps. Near the poles healpy uses sin(theta) instead of sqrt(1 - |z|) (have_sth).
    ntt = xp.minimum(tt.astype(xp.int64), 3)
    tp = tt - ntt
    have_sth = (theta < 0.01) | (theta > 3.14159 - 0.01)
    tmp = xp.where(
        (za < 0.99) | ~have_sth,
        fn * xp.sqrt(3.0 * (1.0 - za)),
        fn * xp.sin(theta) / xp.sqrt((1.0 + za) / 3.0),
    )
    jp_p = xp.minimum((tp * tmp).astype(xp.int64), nside - 1)
    jm_p = xp.minimum(((1.0 - tp) * tmp).astype(xp.int64), nside - 1)
    north = z >= 0
    ix_p = xp.where(north, nside - jm_p - 1, jp_p)
    iy_p = xp.where(north, nside - jp_p - 1, jm_p)
    face_p = xp.where(north, ntt, ntt + 8)

    eq = za <= _TWOTHIRD
    face = xp.where(eq, face_eq, face_p)
    ix = xp.where(eq, ix_eq, ix_p)
    iy = xp.where(eq, iy_eq, iy_p)
    pix = (face << (2 * order)) + _spread_bits(ix) + (_spread_bits(iy) << 1)
    return xp.where(valid, pix, -1)


def pix2ang_nest(order: int, pix: Any) -> tuple[Any, Any]:
    """RA/Dec in degrees of the centres of NESTED pixels; NaN for pixels outside 0..npix-1."""
    order = _check_order(order)
    xp = namespace(pix)
    pix = xp.asarray(pix)
    if pix.dtype.kind not in "iu":
        raise TypeError(f"pixel numbers must be integers, got dtype {pix.dtype}")
    pix = pix.astype(xp.int64)
    nside = 1 << order
    npface = nside * nside
    npix = 12 * npface
    valid = (pix >= 0) & (pix < npix)
    pix = xp.where(valid, pix, 0)

    face = pix >> (2 * order)
    ipf = pix & (npface - 1)
    ix = _compress_bits(ipf)
    iy = _compress_bits(ipf >> 1)
    # healpix_cxx tables jrll = [2]*4 + [3]*4 + [4]*4, jpll = [1,3,5,7,0,2,4,6,1,3,5,7].
    row = face >> 2
    jrll = row + 2
    jpll = 2 * (face & 3) + (row != 1).astype(xp.int64)
    jr = (jrll << order) - ix - iy - 1

    fact2 = 4.0 / npix
    fact1 = (nside << 1) * fact2
    north = jr < nside
    south = jr > 3 * nside
    nr = xp.where(north, jr, xp.where(south, 4 * nside - jr, nside))
    tmp = (nr * nr).astype(xp.float64) * fact2
    z = xp.where(north, 1.0 - tmp, xp.where(south, tmp - 1.0, (2 * nside - jr) * fact1))
    have_sth = (north | south) & (xp.abs(z) > 0.99)
    sth = xp.sqrt(xp.where(have_sth, tmp * (2.0 - tmp), 0.0))
    theta = xp.where(have_sth, xp.arctan2(sth, z), xp.arccos(xp.clip(z, -1.0, 1.0)))

    iphi = jpll * nr + ix - iy
    iphi = xp.where(iphi < 0, iphi + 8 * nr, iphi)
    phi = xp.where(nr == nside, 0.75 * _HALFPI * iphi * fact1, (0.5 * _HALFPI * iphi) / nr)

    ra = xp.where(valid, phi * _RAD2DEG, xp.nan)
    dec = xp.where(valid, 90.0 - theta * _RAD2DEG, xp.nan)
    return ra, dec


def healpix_29(ra_deg: Any, dec_deg: Any) -> Any:
    """Order-29 NESTED pixel (the HATS `_healpix_29` column) of RA/Dec in degrees."""
    return ang2pix_nest(HEALPIX_29_ORDER, ra_deg, dec_deg)


def parent_pixel(pix: Any, from_order: int, to_order: int) -> Any:
    """NESTED parent at `to_order` of pixels at `from_order` (-1 stays -1)."""
    from_order, to_order = _check_order(from_order), _check_order(to_order)
    if to_order > from_order:
        raise ValueError(f"to_order ({to_order}) must be <= from_order ({from_order})")
    xp = namespace(pix)
    return xp.asarray(pix, dtype=xp.int64) >> (2 * (from_order - to_order))

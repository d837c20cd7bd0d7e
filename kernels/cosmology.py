"""Planck18 comoving distance by table + cubic Hermite interpolation, on numpy or cupy.

astropy integrates each redshift with `quad` (~1.5e5 z/s); this table reproduces
`astropy.cosmology.Planck18.comoving_distance` to a relative error of ~1e-11 on
z in [-0.05, 12] at array speed. Inputs outside that range (and NaN/inf) give NaN.
"""

from __future__ import annotations

import functools
from typing import Any, Literal, NamedTuple

import numba
import numpy as np

from kernels.xp import namespace

Unit = Literal["Mpc", "Mpc/h"]

COSMOLOGY = "Planck18"  # the astropy.cosmology realization every distance here comes from
Z_MIN = -0.05
Z_MAX = 12.0

# Two uniform grids with power-of-two steps, so every node (including z = 0 and z = 12) is
# exact in binary: the interpolation error scales like h^4 * D''''/D, which is largest at
# low z, hence the finer step there.
_H_FINE = 2.0**-10
_H_COARSE = 2.0**-7
_Z_SPLIT = 0.5
_K_FINE_LO = -52  # first fine node at -52/1024 = -0.05078125 < Z_MIN
_N_FINE = 512 - _K_FINE_LO  # number of fine intervals, ending at z = 0.5
_N_COARSE = int((Z_MAX - _Z_SPLIT) / _H_COARSE)


class _Table(NamedTuple):
    rows: Any  # (n_intervals, 6): z_left, 1/h, c0..c3 of p(t) = c0 + c1 t + c2 t^2 + c3 t^3
    d_nodes: Any  # (n_intervals + 1,) distances at the nodes, increasing
    d_min: float
    d_max: float


def cosmology() -> Any:
    """The astropy cosmology (FlatLambdaCDM) behind every distance here: `COSMOLOGY` from astropy.cosmology."""
    import astropy.cosmology

    return getattr(astropy.cosmology, COSMOLOGY)


@functools.lru_cache(maxsize=1)
def _host_table() -> _Table:
    import astropy.units as u

    cosmo = cosmology()

    z = np.concatenate(
        [
            np.arange(_K_FINE_LO, 513, dtype=np.float64) * _H_FINE,
            _Z_SPLIT + np.arange(1, _N_COARSE + 1, dtype=np.float64) * _H_COARSE,
        ]
    )
    d = cosmo.comoving_distance(z).to_value(u.Mpc)
    dd = cosmo.hubble_distance.to_value(u.Mpc) * cosmo.inv_efunc(z)  # exact dD/dz
    h = np.diff(z)
    f0, f1, g0, g1 = d[:-1], d[1:], h * dd[:-1], h * dd[1:]
    rows = np.stack(
        [z[:-1], 1.0 / h, f0, g0, 3.0 * (f1 - f0) - 2.0 * g0 - g1, 2.0 * (f0 - f1) + g0 + g1],
        axis=1,
    )
    d_min = float(_eval(np, _Table(rows, d, 0.0, 0.0), np.asarray([Z_MIN]))[0])
    return _Table(rows, d, d_min, float(d[-1]))


@functools.cache
def _table_on(xp: Any, device: int | None) -> _Table:
    host = _host_table()
    return host._replace(rows=xp.asarray(host.rows), d_nodes=xp.asarray(host.d_nodes))


def _table(xp: Any) -> _Table:
    # One copy per namespace and CUDA device, made on first use, never per call.
    device = xp.cuda.runtime.getDevice() if xp.__name__ == "cupy" else None
    return _table_on(xp, device)


def _interval(xp: Any, z: Any) -> Any:
    fine = xp.floor((z - _K_FINE_LO * _H_FINE) / _H_FINE)
    coarse = _N_FINE + xp.floor((z - _Z_SPLIT) / _H_COARSE)
    i = xp.where(z < _Z_SPLIT, fine, coarse)
    return xp.clip(i, 0, _N_FINE + _N_COARSE - 1).astype(xp.int64)


def _eval(xp: Any, tab: _Table, z: Any) -> Any:
    r = tab.rows[_interval(xp, z)]
    t = (z - r[..., 0]) * r[..., 1]
    return r[..., 2] + t * (r[..., 3] + t * (r[..., 4] + t * r[..., 5]))


def _unit_factor(unit: str) -> float:
    if unit == "Mpc":
        return 1.0
    if unit == "Mpc/h":
        return float(cosmology().h)
    raise ValueError(f"unit must be 'Mpc' or 'Mpc/h', got {unit!r}")


@numba.njit(parallel=True, cache=True)
def _eval_cpu(rows: np.ndarray, z: np.ndarray, factor: float) -> np.ndarray:
    # `_eval` fused into one pass over the data (same operations in the same order, so the same bits), in threads.
    out = np.empty(z.size)
    last = rows.shape[0] - 1
    for k in numba.prange(z.size):
        zk = z[k]
        if not (zk >= Z_MIN and zk <= Z_MAX):
            out[k] = np.nan
            continue
        if zk < _Z_SPLIT:
            i = np.floor((zk - _K_FINE_LO * _H_FINE) / _H_FINE)
        else:
            i = _N_FINE + np.floor((zk - _Z_SPLIT) / _H_COARSE)
        j = int(min(max(i, 0.0), last))
        t = (zk - rows[j, 0]) * rows[j, 1]
        d = rows[j, 2] + t * (rows[j, 3] + t * (rows[j, 4] + t * rows[j, 5]))
        out[k] = d * factor if factor != 1.0 else d
    return out


def comoving_distance(z: Any, unit: Unit = "Mpc", compiled: bool = True) -> Any:
    """Planck18 line-of-sight comoving distance of redshift(s) `z`; NaN outside [-0.05, 12].

    Numpy input runs through a numba loop (``compiled=False``: the array expression, as on cupy).
    """
    xp = namespace(z)
    factor = _unit_factor(unit)
    z = xp.asarray(z, dtype=xp.float64)
    if xp is np and compiled:
        return _eval_cpu(_host_table().rows, np.ascontiguousarray(z).ravel(), factor).reshape(z.shape)
    valid = (z >= Z_MIN) & (z <= Z_MAX)
    d = _eval(xp, _table(xp), xp.where(valid, z, 0.0))
    return xp.where(valid, d * factor if factor != 1.0 else d, xp.nan)


def redshift_at_distance(d: Any, unit: Unit = "Mpc", newton_steps: int = 3) -> Any:
    """Inverse of `comoving_distance`; NaN where `d` is outside [D(-0.05), D(12)]."""
    xp = namespace(d)
    factor = _unit_factor(unit)
    tab = _table(xp)
    d = xp.asarray(d, dtype=xp.float64)
    if factor != 1.0:
        d = d / factor
    valid = (d >= tab.d_min) & (d <= tab.d_max)
    d = xp.where(valid, d, 0.0)
    n_int = tab.rows.shape[0]
    i = xp.clip(xp.searchsorted(tab.d_nodes, d, side="right") - 1, 0, n_int - 1)
    r = tab.rows[i]
    z0, inv_h, c0, c1, c2, c3 = (r[..., k] for k in range(6))
    # Linear guess inside the interval, then Newton on the same cubic comoving_distance uses.
    t = (d - c0) / (tab.d_nodes[i + 1] - c0)
    for _ in range(newton_steps):
        p = c0 + t * (c1 + t * (c2 + t * c3))
        dp = c1 + t * (2.0 * c2 + 3.0 * t * c3)
        t = t - (p - d) / dp
    return xp.where(valid, z0 + t / inv_h, xp.nan)


def radec_to_xyz(ra_deg: Any, dec_deg: Any, dist: Any) -> tuple[Any, Any, Any]:
    """Cartesian (x, y, z) = d (cos δ cos α, cos δ sin α, sin δ) from RA/Dec in degrees."""
    xp = namespace(ra_deg, dec_deg, dist)
    ra = xp.asarray(ra_deg, dtype=xp.float64) * (np.pi / 180.0)
    dec = xp.asarray(dec_deg, dtype=xp.float64) * (np.pi / 180.0)
    dist = xp.asarray(dist, dtype=xp.float64)
    rho = dist * xp.cos(dec)
    return rho * xp.cos(ra), rho * xp.sin(ra), dist * xp.sin(dec)


def xyz_to_radec(x: Any, y: Any, z: Any) -> tuple[Any, Any, Any]:
    """Inverse of `radec_to_xyz`: (RA in [0, 360) deg, Dec in deg, distance) of Cartesian positions."""
    xp = namespace(x, y, z)
    x, y, z = (xp.asarray(v, dtype=xp.float64) for v in (x, y, z))
    dist = xp.sqrt(x * x + y * y + z * z)
    ra = xp.degrees(xp.arctan2(y, x)) % 360.0
    dec = xp.degrees(xp.arcsin(xp.clip(z / dist, -1.0, 1.0)))
    return ra, dec, dist

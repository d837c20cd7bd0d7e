"""Galaxy clustering: tracer selection from the catalog, randoms from the footprint, Landy-Szalay xi(s, mu).

The pair counts run through `kernels.paircount` (on a Dask cluster when a client is given); this module does the
I/O around them and has no Prefect in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from kernels.paircount import dask_pair_counts, landy_szalay, multipoles, pair_counts
from kernels.xp import to_device
from tasks.plots import figure, png
from tasks.science.selection import angular_mask, occupied_pixels, positions, select_primary

# Tracer names of the clustering flow -> DESI target classes.
TRACER_CLASS = {"BGS": "BGS_ANY", "LRG": "LRG", "ELG": "ELG", "QSO": "QSO"}


@dataclass(frozen=True)
class Points:
    """Sky positions, redshifts and comoving Cartesian positions in Mpc/h."""

    ra: np.ndarray
    dec: np.ndarray
    z: np.ndarray
    xyz: np.ndarray

    def __len__(self) -> int:
        return int(self.z.size)


@dataclass(frozen=True)
class XiResult:
    """Pair counts, xi(s, mu) and its monopole and quadrupole."""

    s_edges: np.ndarray
    mu_edges: np.ndarray
    dd: np.ndarray
    dr: np.ndarray
    rr: np.ndarray
    xi_smu: np.ndarray
    xi0: np.ndarray
    xi2: np.ndarray
    n_data: int
    n_randoms: int

    def table(self) -> pa.Table:
        """One row per separation bin."""
        s = self.s_edges
        return pa.table({"S_MIN": s[:-1], "S_MAX": s[1:], "S_MID": 0.5 * (s[:-1] + s[1:]), "XI0": self.xi0,
                         "XI2": self.xi2, "DD": self.dd.sum(axis=1), "DR": self.dr.sum(axis=1),
                         "RR": self.rr.sum(axis=1)})


def points(ra: np.ndarray, dec: np.ndarray, z: np.ndarray) -> Points:
    """Points with their Planck18 comoving positions in Mpc/h."""
    return Points(ra, dec, z, positions(ra, dec, z))


def select_tracers(catalog: Any, tracer: str, z_min: float, z_max: float) -> Points:
    """Primary redshifts (ZWARN = 0) of one DESI tracer in a redshift range, from the catalog."""
    if tracer not in TRACER_CLASS:
        raise ValueError(f"unknown tracer {tracer!r}; choose one of {sorted(TRACER_CLASS)}")
    galaxies = select_primary(catalog, TRACER_CLASS[tracer], z_min, z_max)
    return points(galaxies.ra, galaxies.dec, galaxies.z)


def footprint_randoms(data: Points, factor: float, order: int = 5, seed: int = 0) -> Points:
    """Randoms uniform on the sky within the HEALPix pixels (NESTED, `order`) the data occupy, with redshifts
    drawn from the data's (the shuffle method), `factor` times as many as the data."""
    rng = np.random.default_rng(seed)
    wanted = int(round(factor * len(data)))
    if len(data) == 0 or wanted == 0:
        return points(np.zeros(0), np.zeros(0), np.zeros(0))
    occupied = occupied_pixels(data.ra, data.dec, 2**order)
    inside = angular_mask(occupied, 2**order)
    fsky = occupied.size / (12 * 4**order)
    ra, dec = [], []
    have = 0
    while have < wanted:
        n = int((wanted - have) / fsky * 1.2) + 1000
        r_ra = rng.uniform(0.0, 360.0, n)
        r_dec = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n)))
        keep = inside(r_ra, r_dec)
        ra.append(r_ra[keep])
        dec.append(r_dec[keep])
        have += int(keep.sum())
    ra_all, dec_all = np.concatenate(ra)[:wanted], np.concatenate(dec)[:wanted]
    return points(ra_all, dec_all, rng.choice(data.z, size=wanted, replace=True))


def measure_xi(data: Points, randoms: Points, s_edges: np.ndarray, n_mu: int, client: Any | None = None,
               gpu: bool = False) -> XiResult:
    """DD, DR, RR in (s, mu) bins with the pair-midpoint line of sight, Landy-Szalay xi(s, mu), xi_0 and xi_2.

    With a Dask client the counts are spread over its workers; with `gpu` the positions go to the GPU first
    (cupy, imported only then), so the workers of a LocalCUDACluster count on their GPUs.
    """
    s_edges = np.asarray(s_edges, dtype=np.float64)
    if s_edges[0] <= 0:
        raise ValueError("the first separation edge must be > 0 (no self-pairs in DD and RR)")
    if n_mu < 1:
        raise ValueError(f"need at least one mu bin for xi(s, mu) and its multipoles, got n_mu={n_mu}")
    data, randoms = (Points(p.ra, p.dec, p.z, to_device(p.xyz, gpu)) for p in (data, randoms))

    def count(a: np.ndarray, b: np.ndarray | None) -> Any:
        if client is not None:
            return dask_pair_counts(client, a, s_edges, b, n_mu=n_mu, los="midpoint")
        return pair_counts(a, s_edges, b, n_mu=n_mu, los="midpoint")

    dd, dr, rr = count(data.xyz, None), count(data.xyz, randoms.xyz), count(randoms.xyz, None)
    xi = landy_szalay(dd, dr, rr, np.ones(len(data)), np.ones(len(randoms)))
    xi0, xi2 = multipoles(xi, dd.mu_edges)
    return XiResult(s_edges, dd.mu_edges, dd.npairs, dr.npairs, rr.npairs, xi, xi0, xi2, len(data), len(randoms))


def xi_plot_png(result: XiResult, title: str) -> bytes:
    """s^2 xi_0(s) and s^2 xi_2(s) against s, as PNG bytes."""
    s = 0.5 * (result.s_edges[:-1] + result.s_edges[1:])
    fig = figure((6, 4))
    ax = fig.add_subplot()
    ax.plot(s, s**2 * result.xi0, "o-", label=r"$\ell = 0$")
    ax.plot(s, s**2 * result.xi2, "s--", label=r"$\ell = 2$")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel(r"$s$ [$h^{-1}$ Mpc]")
    ax.set_ylabel(r"$s^2 \xi_\ell(s)$ [$h^{-2}$ Mpc$^2$]")
    ax.set_title(title)
    ax.legend()
    return png(fig)

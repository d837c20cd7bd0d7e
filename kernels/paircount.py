"""Pair counts in separation bins and in (s, mu) bins, auto and cross, with weights; Landy-Szalay xi(s) and
its multipoles.

Conventions. Pairs are ordered (an auto-count counts (i, j) and (j, i)); a pair is in separation bin k when
edges[k]^2 <= s^2 < edges[k+1]^2; mu = |s . l| / (|s| |l|) with the line of sight l either the z axis
(``los="z"``, as Corrfunc.theory.DDsmu) or the pair's midpoint (``los="midpoint"``, as Corrfunc.mocks.DDsmu_mocks),
and mu bin m holds mu_edges[m] <= mu < mu_edges[m+1]; weights multiply (Corrfunc's ``pair_product``). Two cases
differ between Corrfunc's DD and its DDsmu, and ``conventions`` picks how (s, mu) counts treat them:

- ``"astrolab"`` (default): the last mu bin is closed, so a pair with mu = mu_max (e.g. along the line of sight
  with mu_max = 1) is in it, and coincident points (s = 0, mu taken as 0) are pairs like any other: in the first
  bin when edges[0] = 0, with their weights. With mu_max = 1 the (s, mu) counts and weights summed over mu are
  then exactly the separation-only ones.
- ``"corrfunc"``: Corrfunc's DDsmu and DDsmu_mocks (checked by experiment in the tests): pairs with mu >= mu_max
  are dropped, pairs of distinct coincident points are dropped, and an auto-count's self-pairs add one count each
  to bin (0, 0) when edges[0] = 0 but no weight.

Separation-only counts are the same under both, and equal Corrfunc's DD: coincident points are pairs in the first
bin when edges[0] = 0, and so are an auto-count's self-pairs (one per point, weight w^2). Integer counts are exact
and equal Corrfunc's on the same input (with the same convention). On the CPU, weight sums are accurate to 1e-12
relative (about 1e-15 in practice) in every bin, a sparse one next to a dense one included: each first point's
pair weights are summed per bin, not as differences of cumulative sums, and added up with compensation; with
weights of both signs the error is relative to the sum of |w_i w_j| instead. The GPU adds them in double-precision
atomics (checked against the CPU within 1e-10).

The grid and the bookkeeping are written once over numpy or cupy (`xp`); the pair loop is compiled with numba on
the CPU and with CUDA (cupy.RawKernel) on the GPU. Work splits into ranges of the sorted first points, which is
how `dask_pair_counts` spreads it over a Dask cluster.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from .cellgrid import FIND_CELL_CUDA, CellGrid, build_grid, dense_starts, grid_frame
from .xp import namespace, to_host

LOS = {"z": 0, "midpoint": 1}
_EMPTY = np.zeros(0, dtype=np.int64)
CONVENTIONS = ("astrolab", "corrfunc")
REFINE = 2  # cells per largest separation on the CPU (the GPU's is in GPU_TUNING)
DENSE_CELLS_MAX = 1 << 25
DENSE_CELLS_PER_POINT_CPU = 4  # the CPU's table of cells costs at most this many int64 per second point (or 8 MiB)
FLUSH_PAIRS = 1 << 12  # CPU (s, mu) loop: candidate pairs summed plainly before a compensated addition


@dataclass(frozen=True)
class PairCounts:
    """Pair counts (int64) and summed pair weights (float64), shape (n_s,) or (n_s, n_mu)."""

    edges: np.ndarray
    mu_edges: np.ndarray | None
    npairs: np.ndarray
    wpairs: np.ndarray

    def __add__(self, other: PairCounts) -> PairCounts:
        return PairCounts(self.edges, self.mu_edges, self.npairs + other.npairs, self.wpairs + other.wpairs)


@dataclass(frozen=True)
class PairProblem:
    """Everything the pair loop needs, sorted into cell grids (on the host or the device)."""

    first: CellGrid
    second: CellGrid
    w1: Any
    w2: Any
    edges2: Any
    n_mu: int
    mu_max: float
    los: int
    autocorr: bool
    edges: np.ndarray
    mu_edges: np.ndarray | None
    reach: int  # neighbour cells searched on each side
    weighted: bool
    corrfunc: bool  # conventions="corrfunc"
    dense_starts: Any  # first point of every cell of the frame (None when the frame has too many cells)


def prepare(pos1: Any, edges: Any, pos2: Any | None = None, weights1: Any | None = None,
            weights2: Any | None = None, n_mu: int = 0, mu_max: float = 1.0, los: str = "z",
            conventions: str = "astrolab") -> PairProblem:
    """Validate the input and sort both point sets into one cell grid as wide as the largest separation."""
    xp = namespace(pos1, pos2)
    edges = np.asarray(to_host(edges), dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0) or edges[0] < 0:
        raise ValueError("separation edges must be at least two increasing values >= 0")
    if los not in LOS:
        raise ValueError(f"los must be one of {sorted(LOS)}, got {los!r}")
    if conventions not in CONVENTIONS:
        raise ValueError(f"conventions must be one of {CONVENTIONS}, got {conventions!r}")
    if n_mu < 0 or not 0 < mu_max <= 1:
        raise ValueError("n_mu must be >= 0 and 0 < mu_max <= 1")
    autocorr = pos2 is None
    pos1 = xp.asarray(pos1, dtype=xp.float64).reshape(-1, 3)
    pos2 = pos1 if autocorr else xp.asarray(pos2, dtype=xp.float64).reshape(-1, 3)
    # Cells a fraction (1 / refine) of the largest separation, searched refine deep and cut per point to the columns
    # and z ranges the sphere of pairs reaches, cover it far more tightly than cells as wide as the separation.
    refine = REFINE if xp is np else GPU_TUNING["refine"]
    frame = grid_frame(*((pos1,) if autocorr else (pos1, pos2)), min_cell=float(edges[-1]) / refine)
    reach = int(np.ceil(edges[-1] / frame.cell))
    first = build_grid(pos1, frame)
    second = first if autocorr else build_grid(pos2, frame)
    w1 = _sorted_weights(xp, weights1, first)
    w2 = w1 if autocorr else _sorted_weights(xp, weights2 if weights2 is not None else None, second)
    if (weights1 is None) != (weights2 is None) and not autocorr:
        raise ValueError("give weights for both point sets or for neither")
    mu_edges = np.linspace(0.0, mu_max, n_mu + 1) if n_mu else None
    return PairProblem(first, second, w1, w2, xp.asarray(edges**2), n_mu, float(mu_max), LOS[los], autocorr,
                       edges, mu_edges, reach, weights1 is not None, conventions == "corrfunc",
                       dense_starts(second, DENSE_CELLS_MAX if xp is not np else _dense_cells_cpu(len(second))))


def _dense_cells_cpu(n: int) -> int:
    return max(DENSE_CELLS_PER_POINT_CPU * n, 1 << 20)


def _sorted_weights(xp: Any, weights: Any | None, grid: CellGrid) -> Any:
    if weights is None:
        return xp.ones(len(grid), dtype=xp.float64)
    weights = xp.asarray(weights, dtype=xp.float64).ravel()
    if weights.shape[0] != len(grid):
        raise ValueError(f"{weights.shape[0]} weights for {len(grid)} points")
    return xp.ascontiguousarray(weights[grid.order])


def count_range(problem: PairProblem, lo: int, hi: int) -> PairCounts:
    """Pairs whose first point is sorted point lo..hi-1 of the first set (the unit of parallel work)."""
    shape = (problem.edges.size - 1, max(problem.n_mu, 1))
    first, second = problem.first, problem.second
    if namespace(first.pos) is np:
        frame = second.frame
        counts, wsum = _count_cpu(first.pos, first.coords, problem.w1, second.pos, problem.w2, second.cell_ids,
                                  second.starts, _EMPTY if problem.dense_starts is None else problem.dense_starts,
                                  np.asarray(frame.dims, dtype=np.int64),
                                  np.asarray(frame.origin), frame.cell, problem.reach, problem.edges2,
                                  problem.n_mu, problem.mu_max, problem.los, problem.autocorr, problem.weighted,
                                  problem.corrfunc, lo, hi, min(max(hi - lo, 1), 8 * numba.get_num_threads()))
    else:
        counts, wsum = _count_gpu(problem, lo, hi)
    if not problem.weighted:
        wsum = counts.astype(np.float64)
    counts, wsum = counts.reshape(shape), wsum.reshape(shape)
    if problem.autocorr:
        counts, wsum = 2 * counts, 2 * wsum  # each unordered pair was visited once
        if problem.edges[0] == 0.0:  # self-pairs (see the module's docstring)
            counts[0, 0] += hi - lo
            if not (problem.corrfunc and problem.n_mu):
                wsum[0, 0] += float((to_host(problem.w1[lo:hi]) ** 2).sum())
    if not problem.n_mu:
        counts, wsum = counts[:, 0], wsum[:, 0]
    return PairCounts(problem.edges, problem.mu_edges, counts, wsum)


def pair_counts(pos1: Any, edges: Any, pos2: Any | None = None, weights1: Any | None = None,
                weights2: Any | None = None, n_mu: int = 0, mu_max: float = 1.0, los: str = "z",
                conventions: str = "astrolab") -> PairCounts:
    """Pair counts of `pos1` with itself (pos2 None) or with `pos2`, positions (n, 3) in the same units as edges."""
    problem = prepare(pos1, edges, pos2, weights1, weights2, n_mu, mu_max, los, conventions)
    return count_range(problem, 0, len(problem.first))


def dask_pair_counts(client: Any, pos1: Any, edges: Any, pos2: Any | None = None, weights1: Any | None = None,
                     weights2: Any | None = None, n_mu: int = 0, mu_max: float = 1.0, los: str = "z",
                     conventions: str = "astrolab", chunks: int | None = None) -> PairCounts:
    """`pair_counts` spread over a Dask cluster: the grid is built once, scattered, and counted in row ranges."""
    problem = prepare(pos1, edges, pos2, weights1, weights2, n_mu, mu_max, los, conventions)
    n = len(problem.first)
    chunks = chunks or max(1, 4 * sum(client.nthreads().values()))
    bounds = np.linspace(0, n, min(chunks, max(n, 1)) + 1).astype(np.int64)
    [remote] = client.scatter([problem], broadcast=True)
    futures = [client.submit(count_range, remote, int(a), int(b), pure=False) for a, b in zip(bounds[:-1], bounds[1:])]
    total = None
    for part in client.gather(futures):
        total = part if total is None else total + part
    return total if total is not None else count_range(problem, 0, 0)


# --- Landy-Szalay ---------------------------------------------------------------------------------------------
def pair_total(weights1: Any, weights2: Any | None = None) -> float:
    """Total weight of the ordered pairs: (sum w)^2 - sum w^2 for an auto-count (no self-pairs), else sum w1 * sum w2."""
    w1 = np.asarray(to_host(weights1), dtype=np.float64)
    if weights2 is None:
        return float(w1.sum() ** 2 - (w1**2).sum())
    return float(w1.sum() * np.asarray(to_host(weights2), dtype=np.float64).sum())


def landy_szalay(dd: PairCounts, dr: PairCounts, rr: PairCounts, data_weights: Any,
                 random_weights: Any) -> np.ndarray:
    """Landy-Szalay xi = (DD - 2 DR + RR) / RR of normalised weighted counts; NaN where RR is 0.

    DD and RR are auto-counts, DR the cross-count; the weights are the data's and the randoms' (ones if unweighted).
    Separation bins should start above 0, so that no self-pairs are counted.
    """
    dd_n = dd.wpairs / pair_total(data_weights)
    dr_n = dr.wpairs / pair_total(data_weights, random_weights)
    rr_n = rr.wpairs / pair_total(random_weights)
    with np.errstate(divide="ignore", invalid="ignore"):
        xi = (dd_n - 2 * dr_n + rr_n) / rr_n
    return np.where(rr_n > 0, xi, np.nan)


def multipoles(xi_smu: np.ndarray, mu_edges: np.ndarray, ells: tuple[int, ...] = (0, 2)) -> np.ndarray:
    """Multipoles xi_l(s) = (2l + 1) * integral_0^1 xi(s, mu) P_l(mu) dmu, with P_l integrated exactly per mu bin.

    Returns shape (len(ells), n_s). `mu_edges` must span [0, 1].
    """
    if not (np.isclose(mu_edges[0], 0) and np.isclose(mu_edges[-1], 1)):
        raise ValueError("multipoles need mu bins spanning [0, 1]")
    out = []
    for ell in ells:
        antideriv = np.polynomial.legendre.Legendre.basis(ell).integ()
        weight = np.diff(antideriv(mu_edges))
        out.append((2 * ell + 1) * np.sum(xi_smu * weight, axis=1))  # NaN (no random pairs) stays NaN
    return np.array(out)


# --- the pair loop on the CPU ----------------------------------------------------------------------------------
# Both loops walk the neighbour cells as columns: cells with the same (cx, cy) and consecutive cz are consecutive in
# the sorted points, so the cells of one column within reach of a point are one range of points. The range is cut
# to the z cells the sphere of pairs can reach from that point, given the column's distance in x and y.
@numba.njit(cache=True, inline="always")
def _gap(v, origin, cell, c):
    """Distance along one axis from a coordinate to cell c's slab (0 inside it)."""
    return max(origin + c * cell - v, 0.0, v - origin - (c + 1) * cell)


@numba.njit(parallel=True, cache=True, error_model="numpy")
def _count_cpu(p1, c1, w1, p2, w2, ids2, starts2, dense, dims, origin, cell, reach, edges2, n_mu, mu_max, los, autocorr,
               weighted, corrfunc, lo, hi, nchunks):
    nb = edges2.size - 1
    nm = max(n_mu, 1)
    nbins = nb * nm
    # Without mu bins, pairs are counted per edge (the separations at or above it: branch-free loops the compiler
    # vectorises); cumulative[k] - cumulative[k + 1] is then the count of bin k, exact in integers. Weights are
    # summed per bin directly: a difference of cumulative float sums would lose a sparse bin next to a dense one.
    cumulative = np.zeros((nchunks, nb + 1), dtype=np.int64)
    counts = np.zeros((nchunks, nbins), dtype=np.int64)
    # Each first point's weight sums go into per-bin compensated (Neumaier) sums: value + error term.
    whi = np.zeros((nchunks, nbins), dtype=np.float64)
    wlo = np.zeros((nchunks, nbins), dtype=np.float64)
    e_lo, e_hi = edges2[0], edges2[nb]
    # Corrfunc's (s, mu) conventions, without a test per pair: r2 >= the smallest double drops s = 0, and
    # mu > the double below mu_max is mu >= mu_max.
    s2_min = max(e_lo, np.nextafter(0.0, 1.0)) if corrfunc else e_lo
    mu_cut = np.nextafter(mu_max, 0.0) if corrfunc else mu_max
    prune = e_hi * (1.0 + 1e-9)  # a hair wide, so rounding in the cell assignment never drops a pair
    width = 2 * reach + 1
    keep_j = weighted or n_mu > 0
    for t in numba.prange(nchunks):
        a = lo + (hi - lo) * t // nchunks
        b = lo + (hi - lo) * (t + 1) // nchunks
        # Points are sorted by cell: per cell of the first points, find once where each z cell of each column
        # around it starts (table[q, k] for cz = z_first + k), not once per point.
        col_x = np.empty(width * width, dtype=np.int64)
        col_y = np.empty(width * width, dtype=np.int64)
        table = np.empty((width * width, width + 1), dtype=np.int64)
        r2s = np.empty(0)
        w2s = np.empty(0)
        mus = np.empty(0)
        js = np.empty(0, dtype=np.int64)
        # (s, mu) pair weights are summed plainly over a block of first points (one cell, at most FLUSH_PAIRS
        # pairs), then added to the compensated sums: the rounding error of a plain sum grows with its length.
        # Bin nbins of `hist` and `block` collects the kept pairs outside every (s, mu) bin (never read).
        block = np.zeros(nbins + 1, dtype=np.float64)
        hist = np.zeros(nbins + 1, dtype=np.int64)
        idx = np.empty(0, dtype=np.int32)
        pending = 0
        n_col = 0
        z_first = z_last = 0
        current = (-1, -1, -1)
        for i in range(a, b):
            here = (c1[i, 0], c1[i, 1], c1[i, 2])
            if here != current:
                current = here
                if pending:
                    _flush(block, whi, wlo, t)
                    pending = 0
                z_first, z_last = max(here[2] - reach, 0), min(here[2] + reach, dims[2] - 1)
                n_col = 0
                capacity = 0
                for cx in range(max(here[0] - reach, 0), min(here[0] + reach + 1, dims[0])):
                    for cy in range(max(here[1] - reach, 0), min(here[1] + reach + 1, dims[1])):
                        if autocorr and (cx < here[0] or (cx == here[0] and cy < here[1])):
                            continue  # a column sorted before this cell's: its pairs were counted from its side
                        key = (cx * dims[1] + cy) * dims[2] + z_first
                        for k in range(z_last - z_first + 2):
                            table[n_col, k] = dense[key + k] if dense.size else starts2[np.searchsorted(ids2, key + k)]
                        size = table[n_col, z_last - z_first + 1] - table[n_col, 0]
                        if size > 0:
                            col_x[n_col], col_y[n_col] = cx, cy
                            capacity += size
                            n_col += 1
                if capacity > r2s.size:
                    r2s, w2s, mus = np.empty(capacity), np.empty(capacity), np.empty(capacity)
                    js = np.empty(capacity, dtype=np.int64)
            x1, y1, z1, wi = p1[i, 0], p1[i, 1], p1[i, 2], w1[i]
            n = 0
            for q in range(n_col):
                gx = _gap(x1, origin[0], cell, col_x[q])
                gy = _gap(y1, origin[1], cell, col_y[q])
                room = prune - gx * gx - gy * gy
                if room < 0.0:
                    continue
                h = np.sqrt(room)
                za = max(int(np.floor((z1 - h - origin[2]) / cell)), z_first)
                zb = min(int(np.floor((z1 + h - origin[2]) / cell)), z_last)
                if za > zb:
                    continue
                j0, j1 = table[q, za - z_first], table[q, zb + 1 - z_first]
                if autocorr and j0 <= i:
                    j0 = i + 1
                # Only the pairs within the largest separation are kept (branch-free: every candidate is written,
                # the next one overwrites it unless it was kept), so the binning passes see no others. The loop is
                # written twice on purpose: with the index store under an ``if`` inside it, numba does not
                # vectorise it, and the separation-only counts (no index needed) run measurably slower.
                if keep_j:
                    for j in range(j0, j1):
                        dx = x1 - p2[j, 0]
                        dy = y1 - p2[j, 1]
                        dz = z1 - p2[j, 2]
                        r2 = dx * dx + dy * dy + dz * dz
                        r2s[n] = r2
                        js[n] = j
                        n += r2 < e_hi
                else:
                    for j in range(j0, j1):
                        dx = x1 - p2[j, 0]
                        dy = y1 - p2[j, 1]
                        dz = z1 - p2[j, 2]
                        r2 = dx * dx + dy * dy + dz * dz
                        r2s[n] = r2
                        n += r2 < e_hi
            if weighted:
                for q in range(n):
                    w2s[q] = w2[js[q]]
            if n_mu:
                for q in range(n):
                    j = js[q]
                    dx = x1 - p2[j, 0]
                    dy = y1 - p2[j, 1]
                    dz = z1 - p2[j, 2]
                    mus[q] = _mu(dx, dy, dz, r2s[q], x1, y1, z1, p2[j, 0], p2[j, 1], p2[j, 2], los)
            if n_mu == 0:
                for k in range(nb):  # cumulative[t, nb] stays 0: no pair kept is that far
                    cumulative[t, k] += _count_at_least(r2s, n, edges2[k])
                if weighted:
                    for k in range(nb):
                        ws = _weight_within(r2s, w2s, n, edges2[k], edges2[k + 1])
                        if ws != 0.0:
                            _add_compensated(whi, wlo, t, k, wi * ws)
                continue
            if n > idx.size:
                idx = np.empty(r2s.size, dtype=np.int32)
            _smu_bins(r2s, mus, n, edges2, s2_min, mu_cut, n_mu, mu_max, idx)
            for q in range(n):
                hist[idx[q]] += 1
            if weighted:
                for q in range(n):
                    block[idx[q]] += wi * w2s[q]
            if weighted:
                pending += n
                if pending >= FLUSH_PAIRS:
                    _flush(block, whi, wlo, t)
                    pending = 0
        if pending:
            _flush(block, whi, wlo, t)
        counts[t] = hist[:nbins]
    if n_mu == 0:
        cum = cumulative.sum(axis=0)
        total = cum[:-1] - cum[1:]
    else:
        total = counts.sum(axis=0)
    wtotal = np.zeros((1, nbins))
    werr = np.zeros((1, nbins))
    for t in range(nchunks):
        for k in range(nbins):
            _add_compensated(wtotal, werr, 0, k, whi[t, k])
            _add_compensated(wtotal, werr, 0, k, wlo[t, k])
    return total, wtotal[0] + werr[0]


@numba.njit(cache=True, error_model="numpy")
def _smu_bins(r2s, mus, n, edges2, s2_min, mu_cut, n_mu, mu_max, idx):
    """(s, mu) bin of each of the first n candidate pairs into idx, or the bin after the last if in none."""
    nb = edges2.size - 1
    e2 = edges2[1] if nb > 1 else np.inf
    for q in range(n):
        idx[q] = r2s[q] >= e2
    for k in range(2, nb):  # s bin: how many inner edges are at or below the separation (branch-free, in lanes)
        e2 = edges2[k]
        for q in range(n):
            idx[q] += r2s[q] >= e2
    e_hi = edges2[nb]
    for q in range(n):
        r2, mu = r2s[q], mus[q]
        m = min(int(mu * n_mu / mu_max), n_mu - 1)
        inside = (r2 >= s2_min) & (r2 < e_hi) & (mu <= mu_cut)
        idx[q] = idx[q] * n_mu + m if inside else nb * n_mu


@numba.njit(cache=True, inline="always")
def _count_at_least(r2s, n, e2):
    """How many of the first n squared separations are >= e2."""
    c = 0
    for q in range(n):
        c += r2s[q] >= e2
    return c


# Reassociation lets this sum run in vector lanes (partial sums, as accurate as one sum); the flag covers only
# this function's additions, not the separations nor the compensated sums.
@numba.njit(cache=True, fastmath={"reassoc", "nsz"})
def _weight_within(r2s, w2s, n, lo2, hi2):
    """Sum of the weights of the first n pairs whose squared separation is in [lo2, hi2)."""
    ws = 0.0
    for q in range(n):
        ws += w2s[q] if lo2 <= r2s[q] < hi2 else 0.0
    return ws


@numba.njit(cache=True)
def _flush(block, hi, lo, t):
    """Add a block's plain sums to the compensated sums of chunk t, and zero them."""
    for k in range(hi.shape[1]):
        if block[k] != 0.0:
            _add_compensated(hi, lo, t, k, block[k])
            block[k] = 0.0


@numba.njit(cache=True, inline="always")
def _add_compensated(hi, lo, t, k, x):
    """Add x to the compensated sum hi[t, k] + lo[t, k] (Neumaier: lo collects what rounding hi drops)."""
    s = hi[t, k]
    total = s + x
    if abs(s) >= abs(x):
        lo[t, k] += (s - total) + x
    else:
        lo[t, k] += (x - total) + s
    hi[t, k] = total


@numba.njit(cache=True, inline="always")
def _mu(dx, dy, dz, r2, x1, y1, z1, x2, y2, z2, los):
    if r2 == 0.0:
        return 0.0
    if los == 0:
        return abs(dz) / np.sqrt(r2)
    lx, ly, lz = 0.5 * (x1 + x2), 0.5 * (y1 + y2), 0.5 * (z1 + z2)
    l2 = lx * lx + ly * ly + lz * lz
    if l2 == 0.0:
        return 0.0
    return min(abs(dx * lx + dy * ly + dz * lz) / np.sqrt(r2 * l2), 1.0)  # rounding can pass 1 along the LOS


# --- the pair loop on the GPU ----------------------------------------------------------------------------------
_CUDA_SOURCE = FIND_CELL_CUDA + r"""
__device__ __forceinline__ double gap(double v, double origin, double cell, int c) {
    return fmax(fmax(origin + c * cell - v, 0.0), v - origin - (c + 1) * cell);
}

// One thread per first point. Points are sorted by cell, so the threads of a warp mostly walk the same column
// ranges and read the same second points (one broadcast load for the warp). Pairs are counted in private 32-bit
// histograms in shared memory, one per `share` threads: one per thread with few bins (plain increments), one per
// warp with more ((s, mu); shared-memory atomics), then added to the block's 64-bit histogram. With share 0 (too
// many bins for either) threads add to the block's histogram directly. Weights are summed only if given.
extern "C" __global__ void pair_hist(
    const double* p1, const long long* c1, const double* w1, const double* p2, const double* w2,
    const long long* ids2, const long long* starts2, long long m2, const long long* dense,
    int d0, int d1, int d2, double ox, double oy, double oz, double cell, int reach,
    const double* edges2_in, int nb, int n_mu, double mu_max, int los, int autocorr, int weighted, int corrfunc,
    int share,
    long long lo, long long hi, unsigned long long* counts, double* wsum)
{
    extern __shared__ double smem[];
    int nm = n_mu > 0 ? n_mu : 1, nbins = nb * nm, t = threadIdx.x, lane = t & 31, nt = blockDim.x;
    int copies = share ? nt / share : 0, mine = share ? t / share : 0;     // private histograms, and this thread's
    double* edges2 = smem;                                                  // nb + 1
    double* hw = edges2 + nb + 1;                                           // nbins
    unsigned long long* hc = (unsigned long long*)(hw + nbins);             // nbins
    double* lw = (double*)(hc + nbins);                                     // nbins * copies if weighted
    unsigned int* lc = (unsigned int*)(lw + (weighted ? nbins * copies : 0));  // nbins * copies
    for (int k = t; k <= nb; k += nt) edges2[k] = edges2_in[k];
    for (int k = t; k < nbins; k += nt) { hc[k] = 0; hw[k] = 0.0; }
    for (int k = t; k < nbins * copies; k += nt) { lc[k] = 0; if (weighted) lw[k] = 0.0; }
    __syncthreads();
    long long i = lo + (long long)blockIdx.x * nt + t;
    if (i < hi) {
        double x1 = p1[3*i], y1 = p1[3*i+1], z1 = p1[3*i+2], wi = w1[i];
        double e_lo = edges2[0], e_hi = edges2[nb], prune = e_hi * (1.0 + 1e-9);
        int cxi = (int)c1[3*i], cyi = (int)c1[3*i+1], czi = (int)c1[3*i+2];  // cells per axis < 2^20
        double z_first = max(czi - reach, 0), z_last = min(czi + reach, d2 - 1);
        for (int cx = max(cxi - reach, 0); cx <= min(cxi + reach, d0 - 1); cx++) {
            double gx = gap(x1, ox, cell, cx);
            for (int cy = max(cyi - reach, 0); cy <= min(cyi + reach, d1 - 1); cy++) {
                double gy = gap(y1, oy, cell, cy);
                double room = prune - gx * gx - gy * gy;
                if (room < 0.0) continue;
                double h = sqrt(room);
                int za = (int)fmax(floor((z1 - h - oz) / cell), z_first);
                int zb = (int)fmin(floor((z1 + h - oz) / cell), z_last);
                if (za > zb) continue;
                long long key = ((long long)cx * d1 + cy) * d2, j0, j1;
                if (dense) { j0 = dense[key + za]; j1 = dense[key + zb + 1]; }
                else { j0 = starts2[lower_bound(ids2, m2, key + za)]; j1 = starts2[lower_bound(ids2, m2, key + zb + 1)]; }
                if (autocorr && j0 <= i) j0 = i + 1;
                for (long long j = j0; j < j1; j++) {
                    double x2 = p2[3*j], y2 = p2[3*j+1], z2 = p2[3*j+2];
                    double dx = x1 - x2, dy = y1 - y2, dz = z1 - z2;
                    double r2 = dx*dx + dy*dy + dz*dz;
                    if (r2 < e_lo || r2 >= e_hi) continue;
                    int s = nb - 1;
                    while (r2 < edges2[s]) s--;
                    int m = 0;
                    if (n_mu > 0) {
                        double mu = 0.0;
                        if (r2 > 0.0) {
                            if (los == 0) mu = fabs(dz) / sqrt(r2);
                            else {
                                double lx = 0.5*(x1+x2), ly = 0.5*(y1+y2), lz = 0.5*(z1+z2);
                                double l2 = lx*lx + ly*ly + lz*lz;
                                mu = l2 > 0.0 ? fmin(fabs(dx*lx + dy*ly + dz*lz) / sqrt(r2 * l2), 1.0) : 0.0;
                            }
                        }
                        if (mu > mu_max || (corrfunc && (mu == mu_max || r2 == 0.0))) continue;
                        m = min((int)(mu * n_mu / mu_max), n_mu - 1);
                    }
                    int bin = s * nm + m, at = bin * copies + mine;
                    if (share == 1) { lc[at]++; if (weighted) lw[at] += wi * w2[j]; }
                    else if (share) { atomicAdd(&lc[at], 1u); if (weighted) atomicAdd(&lw[at], wi * w2[j]); }
                    else { atomicAdd(&hc[bin], 1ULL); if (weighted) atomicAdd(&hw[bin], wi * w2[j]); }
                }
            }
        }
    }
    __syncthreads();
    if (share) {  // 32-bit private counts: one point's pairs (per thread) or 32 points' (per warp) per bin
        for (int k = share == 1 ? 0 : lane; k < nbins; k += share == 1 ? 1 : 32) {
            int at = k * copies + mine;
            if (lc[at]) { atomicAdd(&hc[k], (unsigned long long)lc[at]); if (weighted) atomicAdd(&hw[k], lw[at]); }
        }
        __syncthreads();
    }
    for (int k = t; k < nbins; k += nt) {
        if (hc[k]) { atomicAdd(&counts[k], hc[k]); if (weighted) atomicAdd(&wsum[k], hw[k]); }
    }
}
"""

# Threads per block and cells per largest separation: the fastest of those bench/gpu_kernels.py timed on an H200.
GPU_TUNING = {"threads": 128, "refine": 3}
_SHARED_DEFAULT = 48 * 1024  # a block's dynamic shared memory without opting in
_KERNEL_LOCK = threading.Lock()


@functools.cache
def _gpu_kernel() -> Any:
    import cupy as cp

    return cp.RawKernel(_CUDA_SOURCE, "pair_hist", options=("--fmad=false",))  # as the CPU rounds


def _count_gpu(problem: PairProblem, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    import cupy as cp

    kernel = _gpu_kernel()
    threads = GPU_TUNING["threads"]
    nb = problem.edges.size - 1
    nbins = nb * max(problem.n_mu, 1)
    weighted = problem.weighted
    shared = (nb + 1 + 2 * nbins) * 8
    per_copy = nbins * (4 + 8 * weighted)
    # Private histograms per thread if they fit a block's default shared memory, else per warp, else none. A
    # private 32-bit count holds the pairs of `share` first points in one bin: at most share * len(second).
    share = next((k for k in (1, 32) if shared + per_copy * threads // k <= _SHARED_DEFAULT
                  and k * len(problem.second) < 2**32), 0)
    shared += per_copy * threads // share if share else 0
    if shared > _SHARED_DEFAULT:  # many (s, mu) bins: opt in to more shared memory per block
        with _KERNEL_LOCK:  # the kernel object is shared by the threads of a Dask worker: only ever raise it
            kernel.max_dynamic_shared_size_bytes = max(kernel.max_dynamic_shared_size_bytes, shared)
    counts = cp.zeros(nbins, dtype=cp.uint64)
    wsum = cp.zeros(nbins, dtype=cp.float64)
    if hi > lo:
        first, second = problem.first, problem.second
        d0, d1, d2 = second.frame.dims
        kernel(((hi - lo + threads - 1) // threads,), (threads,), (
            first.pos, first.coords, problem.w1, second.pos, problem.w2, second.cell_ids, second.starts,
            np.int64(second.cell_ids.shape[0]), problem.dense_starts if problem.dense_starts is not None else np.intp(0),
            np.int32(d0), np.int32(d1), np.int32(d2),
            *(np.float64(v) for v in second.frame.origin), np.float64(second.frame.cell), np.int32(problem.reach),
            problem.edges2, np.int32(nb), np.int32(problem.n_mu), np.float64(problem.mu_max), np.int32(problem.los),
            np.int32(problem.autocorr), np.int32(weighted), np.int32(problem.corrfunc), np.int32(share),
            np.int64(lo), np.int64(hi), counts, wsum),
            shared_mem=shared)
    return counts.get().astype(np.int64), wsum.get()

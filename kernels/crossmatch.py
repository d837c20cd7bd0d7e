"""Nearest neighbour within a radius on the sphere.

Positions become unit vectors; the angular radius becomes a chord, and the search runs over a grid of cubic cells.
On the CPU (numba) both sets are counting-sorted into a dense table of cells a few mean spacings wide, and each
first-set point scans only the cells that its radius reaches along each axis: for radii much smaller than a cell, its
own cell alone. Unlike a KD-tree nearest-neighbour search (astropy's match_coordinates_sky), nothing beyond the
radius is ever looked at. On the GPU (CUDA through cupy) the search runs over the sparse grid of `kernels.cellgrid`.
For each point of the first set the result is the index of the nearest point of the second set within the radius
(-1 when none) and the separation in degrees. Distances are compared as squared chords in float64, the same sums a
brute-force distance matrix computes, and equal distances resolve to the smaller index, as its argmin does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from .cellgrid import FIND_CELL_CUDA, build_grid, dense_starts, grid_frame
from .xp import namespace

DENSE_CELLS_MAX = 1 << 24  # up to this many cells in the frame, a table gives each cell's points in one load
CELL_SPACINGS = 3.0  # CPU cell width in mean spacings of the second set
CELLS_PER_POINT = 2  # at most this many cells (table entries) per second-set point


@dataclass(frozen=True)
class Matches:
    """For each first-set point: index into the second set (-1 when unmatched) and separation in degrees."""

    index: Any
    separation_deg: Any


def unit_vectors(ra_deg: Any, dec_deg: Any) -> Any:
    """(n, 3) unit vectors of RA/Dec in degrees."""
    xp = namespace(ra_deg, dec_deg)
    if xp is np:  # one compiled pass over all cores instead of six temporary arrays
        ra, dec = np.broadcast_arrays(np.asarray(ra_deg, dtype=np.float64), np.asarray(dec_deg, dtype=np.float64))
        return _unit_vectors_cpu(np.ascontiguousarray(ra).ravel(), np.ascontiguousarray(dec).ravel())
    ra, dec = xp.radians(xp.asarray(ra_deg, dtype=xp.float64)), xp.radians(xp.asarray(dec_deg, dtype=xp.float64))
    cos_dec = xp.cos(dec)
    return xp.stack([cos_dec * xp.cos(ra), cos_dec * xp.sin(ra), xp.sin(dec)], axis=1)


@numba.njit(parallel=True, cache=True)
def _unit_vectors_cpu(ra_deg, dec_deg):
    v = np.empty((ra_deg.size, 3))
    for i in numba.prange(ra_deg.size):
        ra, dec = np.radians(ra_deg[i]), np.radians(dec_deg[i])
        cos_dec = np.cos(dec)
        v[i, 0], v[i, 1], v[i, 2] = cos_dec * np.cos(ra), cos_dec * np.sin(ra), np.sin(dec)
    return v


def chord(radius_deg: float) -> float:
    """Chord length on the unit sphere of an angle in degrees."""
    return float(2.0 * np.sin(np.radians(radius_deg) / 2.0))


def nearest_within(ra1: Any, dec1: Any, ra2: Any, dec2: Any, radius_deg: float) -> Matches:
    """Nearest point of (ra2, dec2) within `radius_deg` (inclusive) of each point of (ra1, dec1)."""
    return nearest_within_xyz(unit_vectors(ra1, dec1), unit_vectors(ra2, dec2), radius_deg)


def nearest_within_xyz(v1: Any, v2: Any, radius_deg: float) -> Matches:
    """`nearest_within` on unit vectors (n, 3)."""
    if not 0 < radius_deg < 180:
        raise ValueError(f"match radius must be in (0, 180) degrees, got {radius_deg}")
    xp = namespace(v1, v2)
    v1 = xp.ascontiguousarray(xp.asarray(v1, dtype=xp.float64).reshape(-1, 3))
    v2 = xp.asarray(v2, dtype=xp.float64).reshape(-1, 3)
    c = chord(radius_deg)
    if xp is np:
        return _nearest_cpu(v1, np.ascontiguousarray(v2), c)
    # Cells a few mean spacings of the second set wide hold ~10 points each even for tiny radii; the first set is
    # sorted by cell too, so neighbouring threads read the same cells. The spacing comes from the points' own
    # extent: a HATS partition covers a small patch, not the sphere.
    n2 = v2.shape[0]
    extent = float((v2.max(axis=0) - v2.min(axis=0)).max()) if n2 else 0.0
    spacing = extent / np.sqrt(max(n2, 1))
    frame = grid_frame(v1, v2, min_cell=max(c, 3 * spacing))
    grid, first = build_grid(v2, frame), build_grid(v1, frame)
    dense = dense_starts(grid, DENSE_CELLS_MAX)
    best_sorted, d2_sorted = _nearest_gpu(first.pos, first.coords, grid, dense, np.asarray(frame.dims), c * c)
    best = xp.empty_like(best_sorted)
    d2 = xp.empty_like(d2_sorted)
    best[first.order], d2[first.order] = best_sorted, d2_sorted
    sep = xp.degrees(2.0 * xp.arcsin(xp.minimum(xp.sqrt(d2) / 2.0, 1.0)))
    return Matches(best, xp.where(best >= 0, sep, xp.nan))


def _nearest_cpu(v1: np.ndarray, v2: np.ndarray, c: float) -> Matches:
    """The CPU search: the second set sorted into a dense grid of cells (a counting sort), each first-set point
    scanning only the cells its radius reaches."""
    n1, n2 = v1.shape[0], v2.shape[0]
    lo, hi = _bounds(v2)
    if not (np.isfinite(lo).all() and np.isfinite(hi).all() and np.isfinite(_bounds(v1)).all()):
        bad = int((~np.isfinite(v1)).any(axis=1).sum() + (~np.isfinite(v2)).any(axis=1).sum())
        raise ValueError(f"{bad} positions are not finite (NaN or inf)")
    if n1 == 0 or n2 == 0:
        return Matches(np.full(n1, -1, dtype=np.int64), np.full(n1, np.nan))
    reach = c * (1 + 1e-9)  # a point within the chord lies within this per axis, whatever the rounding
    cell, dims = _cell_size(hi - lo, n2, reach)
    pos2, order2, starts = _sort_into_cells(v2, lo, cell, dims)
    pos1, order1 = _sort_into_cells(v1, lo, cell, dims)[:2]  # neighbouring queries reuse the same cells in cache
    best, sep = _search(pos1, order1, pos2, order2, starts, lo, hi, cell, dims, reach, c * c)
    return Matches(best, sep)


@numba.njit(cache=True)
def _bounds(v):
    """Per-axis minimum and maximum of (n, 3) points (zeros when empty); NaN or inf in any point shows in them."""
    lo, hi = np.zeros(3), np.zeros(3)
    if v.shape[0]:
        lo[:], hi[:] = v[0], v[0]
    bad = False
    for i in range(v.shape[0]):
        for a in range(3):
            x = v[i, a]
            bad |= not np.isfinite(x)
            lo[a], hi[a] = min(lo[a], x), max(hi[a], x)
    if bad:
        lo[:] = np.nan
    return lo, hi


def _cell_size(extent: np.ndarray, n: int, reach: float) -> tuple[float, np.ndarray]:
    """Cell width and cells per axis: CELL_SPACINGS mean spacings of the points (on their patch of the sphere), at
    least the search reach, with at most CELLS_PER_POINT cells per point in the dense table."""
    cell = max(reach, CELL_SPACINGS * float(extent.max()) / np.sqrt(n))
    while np.prod(extent // cell + 1) > max(CELLS_PER_POINT * n, 64):  # in floats: no integer overflow
        cell *= 1.25
    return cell, (extent // cell).astype(np.int64) + 1


@numba.njit(cache=True)
def _sort_into_cells(v, lo, cell, dims):
    """Points sorted by cell (stable), their input indices, and every cell's first point (len = cells + 1)."""
    n = v.shape[0]
    n_cells = dims[0] * dims[1] * dims[2]
    key = np.empty(n, dtype=np.int64)
    starts = np.zeros(n_cells + 2, dtype=np.int64)
    for i in range(n):
        k = ((_cell_of(v[i, 0], lo[0], cell, dims[0]) * dims[1] + _cell_of(v[i, 1], lo[1], cell, dims[1])) * dims[2]
             + _cell_of(v[i, 2], lo[2], cell, dims[2]))
        key[i] = k
        starts[k + 2] += 1
    for k in range(2, n_cells + 2):
        starts[k] += starts[k - 1]
    pos = np.empty((n, 3))
    order = np.empty(n, dtype=np.int64)
    for i in range(n):
        s = starts[key[i] + 1]
        starts[key[i] + 1] = s + 1  # after the pass, starts[k + 1] is the end of cell k
        pos[s, 0], pos[s, 1], pos[s, 2] = v[i, 0], v[i, 1], v[i, 2]
        order[s] = i
    return pos, order, starts[:n_cells + 1]


@numba.njit(cache=True, inline="always")
def _cell_of(x, lo, cell, dim):
    """The cell of coordinate x along one axis, clipped into [0, dim - 1] (monotone in x, as the search needs)."""
    return np.int64(min(max(np.floor((x - lo) / cell), 0.0), dim - 1.0))


@numba.njit(parallel=True, cache=True)
def _search(v1, order1, pos2, order2, starts, lo, hi, cell, dims, reach, c2):
    n = v1.shape[0]
    best = np.full(n, -1, dtype=np.int64)
    sep = np.full(n, np.nan)
    for i in numba.prange(n):
        x, y, z = v1[i, 0], v1[i, 1], v1[i, 2]
        if (x + reach < lo[0] or y + reach < lo[1] or z + reach < lo[2]
                or x - reach > hi[0] or y - reach > hi[1] or z - reach > hi[2]):
            continue  # outside the second set's box by more than the radius (the clipped cells would be scanned)
        ax, bx = _cell_of(x - reach, lo[0], cell, dims[0]), _cell_of(x + reach, lo[0], cell, dims[0])
        ay, by = _cell_of(y - reach, lo[1], cell, dims[1]), _cell_of(y + reach, lo[1], cell, dims[1])
        az, bz = _cell_of(z - reach, lo[2], cell, dims[2]), _cell_of(z + reach, lo[2], cell, dims[2])
        bj, bd = -1, c2
        for cx in range(ax, bx + 1):
            for cy in range(ay, by + 1):
                row = (cx * dims[1] + cy) * dims[2]
                for j in range(starts[row + az], starts[row + bz + 1]):  # the z cells of a row are contiguous
                    dx, dy, dz = x - pos2[j, 0], y - pos2[j, 1], z - pos2[j, 2]
                    d2 = dx * dx + dy * dy + dz * dz
                    if d2 < bd or (d2 == bd and (bj < 0 or order2[j] < order2[bj])):
                        bj, bd = j, d2
        if bj >= 0:
            best[order1[i]] = order2[bj]
            sep[order1[i]] = np.degrees(2.0 * np.arcsin(min(np.sqrt(bd) / 2.0, 1.0)))
    return best, sep


_CUDA_SOURCE = FIND_CELL_CUDA + r"""
extern "C" __global__ void nearest(
    const double* v1, const long long* c1, long long n1, const double* v2, const long long* order2,
    const long long* ids2, const long long* starts2, long long m2, const long long* dense,
    long long d0, long long d1, long long d2,
    double c2, long long* best, double* best_d2)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n1) return;
    double x = v1[3*i], y = v1[3*i+1], z = v1[3*i+2];
    long long bi = -1; double bd = c2;
    for (int a = -1; a <= 1; a++) { long long cx = c1[3*i] + a; if (cx < 0 || cx >= d0) continue;
    for (int b = -1; b <= 1; b++) { long long cy = c1[3*i+1] + b; if (cy < 0 || cy >= d1) continue;
    for (int c = -1; c <= 1; c++) { long long cz = c1[3*i+2] + c; if (cz < 0 || cz >= d2) continue;
        long long key = (cx * d1 + cy) * d2 + cz, j0, j1;
        if (dense) { j0 = dense[key]; j1 = dense[key + 1]; }
        else { long long k = find_cell(ids2, m2, key); if (k < 0) continue; j0 = starts2[k]; j1 = starts2[k + 1]; }
        for (long long j = j0; j < j1; j++) {
            double dx = x - v2[3*j], dy = y - v2[3*j+1], dz = z - v2[3*j+2];
            double dd = dx*dx + dy*dy + dz*dz;
            long long oj = order2[j];
            if (dd < bd || (dd == bd && (bi < 0 || oj < bi))) { bi = oj; bd = dd; }
        }
    }}}
    if (bi >= 0) { best[i] = bi; best_d2[i] = bd; }  // else the initial -1 and infinity stay
}
"""

_GPU_KERNEL: Any = None


def _nearest_gpu(v1: Any, coords: Any, grid: Any, dense: Any, dims: np.ndarray, c2: float) -> tuple[Any, Any]:
    import cupy as cp

    global _GPU_KERNEL
    if _GPU_KERNEL is None:
        _GPU_KERNEL = cp.RawKernel(_CUDA_SOURCE, "nearest", options=("--fmad=false",))  # as the CPU rounds
    n = v1.shape[0]
    best = cp.full(n, -1, dtype=cp.int64)
    best_d2 = cp.full(n, cp.inf, dtype=cp.float64)
    if n:
        _GPU_KERNEL(((n + 255) // 256,), (256,), (
            v1, coords, np.int64(n), grid.pos, grid.order, grid.cell_ids, grid.starts,
            np.int64(grid.cell_ids.shape[0]), dense if dense is not None else np.intp(0),
            np.int64(dims[0]), np.int64(dims[1]), np.int64(dims[2]),
            np.float64(c2), best, best_d2))
    return best, best_d2

"""Nearest neighbour within a radius on the sphere.

Positions become unit vectors; the angular radius becomes a chord, and the search runs over the cell grid of
`kernels.cellgrid` (numba on the CPU, CUDA through cupy on the GPU). For each point of the first set the result is
the index of the nearest point of the second set within the radius (-1 when none) and the separation in degrees.
Equal distances resolve to the smaller index, as an argmin over a brute-force distance matrix does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from .cellgrid import FIND_CELL_CUDA, build_grid, dense_starts, find_cell, grid_frame
from .xp import namespace

DENSE_CELLS_MAX = 1 << 24  # up to this many cells in the frame, a table gives each cell's points in one load


@dataclass(frozen=True)
class Matches:
    """For each first-set point: index into the second set (-1 when unmatched) and separation in degrees."""

    index: Any
    separation_deg: Any


def unit_vectors(ra_deg: Any, dec_deg: Any) -> Any:
    """(n, 3) unit vectors of RA/Dec in degrees."""
    xp = namespace(ra_deg, dec_deg)
    ra, dec = xp.radians(xp.asarray(ra_deg, dtype=xp.float64)), xp.radians(xp.asarray(dec_deg, dtype=xp.float64))
    cos_dec = xp.cos(dec)
    return xp.stack([cos_dec * xp.cos(ra), cos_dec * xp.sin(ra), xp.sin(dec)], axis=1)


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
    # Cells a few mean spacings of the second set wide hold ~10 points each even for tiny radii; the first set is
    # sorted by cell too, so the neighbour cells are looked up once per cell rather than once per point. The
    # spacing comes from the points' own extent: a HATS partition covers a small patch, not the sphere.
    n2 = v2.shape[0]
    extent = float((v2.max(axis=0) - v2.min(axis=0)).max()) if n2 else 0.0
    spacing = extent / np.sqrt(max(n2, 1))
    frame = grid_frame(v1, v2, min_cell=max(c, 3 * spacing))
    grid, first = build_grid(v2, frame), build_grid(v1, frame)
    dims = np.asarray(frame.dims, dtype=np.int64)
    dense = dense_starts(grid, DENSE_CELLS_MAX)
    if xp is np:
        best_sorted, d2_sorted = _nearest_cpu(first.pos, first.coords, grid.pos, grid.order, grid.cell_ids,
                                              grid.starts, dense if dense is not None else np.zeros(0, np.int64),
                                              dims, c * c, min(max(len(first), 1), 8 * numba.get_num_threads()))
    else:
        best_sorted, d2_sorted = _nearest_gpu(first.pos, first.coords, grid, dense, dims, c * c)
    best = xp.empty_like(best_sorted)
    d2 = xp.empty_like(d2_sorted)
    best[first.order], d2[first.order] = best_sorted, d2_sorted
    sep = xp.degrees(2.0 * xp.arcsin(xp.minimum(xp.sqrt(d2) / 2.0, 1.0)))
    return Matches(best, xp.where(best >= 0, sep, xp.nan))


@numba.njit(parallel=True, cache=True)
def _nearest_cpu(v1, c1, v2, order2, ids2, starts2, dense, dims, c2, nchunks):
    n = v1.shape[0]
    best = np.full(n, -1, dtype=np.int64)
    best_d2 = np.full(n, np.inf)
    for t in numba.prange(nchunks):
        first_j = np.empty(27, dtype=np.int64)
        end_j = np.empty(27, dtype=np.int64)
        n_near = 0
        current = (-1, -1, -1)
        for i in range(n * t // nchunks, n * (t + 1) // nchunks):
            here = (c1[i, 0], c1[i, 1], c1[i, 2])
            if here != current:
                current = here
                n_near = 0
                for cx in range(max(here[0] - 1, 0), min(here[0] + 2, dims[0])):
                    for cy in range(max(here[1] - 1, 0), min(here[1] + 2, dims[1])):
                        for cz in range(max(here[2] - 1, 0), min(here[2] + 2, dims[2])):
                            key = (cx * dims[1] + cy) * dims[2] + cz
                            if dense.size:
                                j0, j1 = dense[key], dense[key + 1]
                            else:
                                k = find_cell(ids2, key)
                                if k < 0:
                                    continue
                                j0, j1 = starts2[k], starts2[k + 1]
                            if j1 > j0:
                                first_j[n_near], end_j[n_near] = j0, j1
                                n_near += 1
            x, y, z = v1[i, 0], v1[i, 1], v1[i, 2]
            bi, bd = -1, c2
            for q in range(n_near):
                for j in range(first_j[q], end_j[q]):
                    dx, dy, dz = x - v2[j, 0], y - v2[j, 1], z - v2[j, 2]
                    d2 = dx * dx + dy * dy + dz * dz
                    oj = order2[j]
                    if d2 < bd or (d2 == bd and (bi < 0 or oj < bi)):
                        bi, bd = oj, d2
            if bi >= 0:
                best[i], best_d2[i] = bi, bd
    return best, best_d2


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

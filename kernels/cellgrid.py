"""A sparse 3-D cell grid for neighbour searches, built once over numpy or cupy (`xp`).

Points are sorted by the id of the cubic cell they fall in. Cells are at least `min_cell` wide, so two points
closer than `min_cell` lie in the same or adjacent cells; only non-empty cells are stored (sorted ids and the
offsets of their points), which keeps memory O(N) whatever the extent. The compiled loops (numba on CPU, CUDA
on GPU) find a neighbour cell's points by binary search in `cell_ids`, or in a dense table of every cell's first
point when the frame is small enough (`dense_starts`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from .xp import namespace

MAX_CELLS_PER_AXIS = 1 << 20  # 3 x 20 bits: cell ids fit in int64
COUNTING_SORT_CELLS_PER_POINT = 4  # numpy: sort by counting while the frame has at most this many cells per point


@dataclass(frozen=True)
class GridFrame:
    """Where the grid starts, its cell width and how many cells it has along each axis."""

    origin: tuple[float, float, float]
    cell: float
    dims: tuple[int, int, int]


@dataclass(frozen=True)
class CellGrid:
    """Points sorted by cell. `order[k]` is the input index of sorted point k."""

    frame: GridFrame
    pos: Any  # (n, 3) float64, sorted by cell
    coords: Any  # (n, 3) int64 cell coordinates of each sorted point
    order: Any  # (n,) int64
    cell_ids: Any  # (m,) int64, sorted, non-empty cells only
    starts: Any  # (m + 1,) int64 offsets of each cell's points in `pos`

    def __len__(self) -> int:
        return int(self.pos.shape[0])


def grid_frame(*positions: Any, min_cell: float) -> GridFrame:
    """A frame covering every point of `positions` ((n, 3) arrays) with cells at least `min_cell` wide."""
    if min_cell <= 0:
        raise ValueError(f"cell width must be positive, got {min_cell}")
    xp = namespace(*positions)
    finite = all(bool(xp.isfinite(p).all()) for p in positions)  # one fast pass; rows counted only on failure
    bad = 0 if finite else sum(int((~xp.isfinite(p)).any(axis=-1).sum()) for p in positions)
    if bad:
        raise ValueError(f"{bad} positions are not finite (NaN or inf)")
    nonempty = [p for p in positions if p.shape[0]]
    if not nonempty:
        return GridFrame((0.0, 0.0, 0.0), float(min_cell), (1, 1, 1))
    lo = xp.min(xp.stack([p.min(axis=0) for p in nonempty]), axis=0)
    hi = xp.max(xp.stack([p.max(axis=0) for p in nonempty]), axis=0)
    extent = float((hi - lo).max())
    per_axis = int(min(max(extent // min_cell, 1), MAX_CELLS_PER_AXIS))
    cell = max(extent / per_axis, float(min_cell))
    lo = [float(v) for v in lo]
    dims = tuple(int(min(max((float(h) - o) // cell + 1, 1), MAX_CELLS_PER_AXIS)) for h, o in zip(hi, lo))
    return GridFrame((lo[0], lo[1], lo[2]), cell, dims)  # type: ignore[arg-type]


def cell_coords(pos: Any, frame: GridFrame) -> Any:
    """Integer cell coordinates (n, 3) of each point, clipped into the frame."""
    xp = namespace(pos)
    origin = xp.asarray(frame.origin, dtype=xp.float64)
    dims = xp.asarray(frame.dims, dtype=xp.int64)
    coords = xp.floor((pos - origin) / frame.cell).astype(xp.int64)
    return xp.clip(coords, 0, dims - 1)


def build_grid(pos: Any, frame: GridFrame) -> CellGrid:
    """Sort `pos` ((n, 3) float64) into the cells of `frame`."""
    xp = namespace(pos)
    pos = xp.ascontiguousarray(pos, dtype=xp.float64).reshape(-1, 3)
    coords = cell_coords(pos, frame)
    ny, nz = frame.dims[1], frame.dims[2]
    ids = (coords[:, 0] * ny + coords[:, 1]) * nz + coords[:, 2]
    n_cells = int(frame.dims[0]) * ny * nz
    if xp.__name__ != "numpy":
        order = xp.argsort(ids)  # cupy's is stable
    elif n_cells <= COUNTING_SORT_CELLS_PER_POINT * ids.shape[0] + (1 << 20):
        order = _counting_order(ids, n_cells)
    else:
        order = xp.argsort(ids, kind="stable")
    ids = ids[order]
    if ids.shape[0]:
        first = xp.concatenate([xp.asarray([True]), ids[1:] != ids[:-1]])
        bounds = xp.flatnonzero(first)
    else:
        bounds = xp.zeros(0, dtype=xp.int64)
    starts = xp.concatenate([bounds, xp.asarray([ids.shape[0]])]).astype(xp.int64)
    return CellGrid(frame, xp.take(pos, order, axis=0), xp.take(coords, order, axis=0),
                    order.astype(xp.int64), xp.ascontiguousarray(ids[bounds]), starts)


@numba.njit(cache=True)
def _counting_order(ids: np.ndarray, n_cells: int) -> np.ndarray:
    """The stable argsort of `ids` (each in [0, n_cells)) by counting sort: O(n + n_cells)."""
    next_slot = np.zeros(n_cells + 1, dtype=np.int64)
    for v in ids:
        next_slot[v + 1] += 1
    for k in range(n_cells):
        next_slot[k + 1] += next_slot[k]
    order = np.empty(ids.size, dtype=np.int64)
    for i in range(ids.size):
        order[next_slot[ids[i]]] = i
        next_slot[ids[i]] += 1
    return order


def dense_starts(grid: CellGrid, max_cells: int) -> Any:
    """First point of every cell of the frame, cell by cell (len = cells + 1): a cell's points in one lookup
    instead of a binary search. None when the frame has more than `max_cells` cells."""
    xp = namespace(grid.pos)
    n_cells = int(grid.frame.dims[0]) * int(grid.frame.dims[1]) * int(grid.frame.dims[2])
    if n_cells > max_cells:
        return None
    counts = xp.zeros(n_cells + 1, dtype=xp.int64)
    counts[grid.cell_ids + 1] = grid.starts[1:] - grid.starts[:-1]
    return xp.cumsum(counts)


@numba.njit(cache=True, inline="always")
def find_cell(ids: np.ndarray, key: np.int64) -> np.intp | int:
    """Index of cell id `key` in the sorted `ids`, or -1 (for the numba loops)."""
    k = np.searchsorted(ids, key)
    return k if k < ids.size and ids[k] == key else -1


# The same lookups for the CUDA sources of the kernels that use the grid: lower_bound is the first index whose id
# is >= key (so starts[lower_bound(key)] is where the points of cells >= key begin), find_cell the exact match.
FIND_CELL_CUDA = r"""
__device__ long long lower_bound(const long long* ids, long long m, long long key) {
    long long a = 0, b = m;
    while (a < b) { long long h = (a + b) >> 1; if (ids[h] < key) a = h + 1; else b = h; }
    return a;
}
__device__ long long find_cell(const long long* ids, long long m, long long key) {
    long long a = lower_bound(ids, m, key);
    return (a < m && ids[a] == key) ? a : -1;
}
"""

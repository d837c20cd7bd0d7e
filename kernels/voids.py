"""VoidFinder (Hoyle & Vogeley 2002, as implemented in VAST) on comoving positions in h^-1 Mpc.

Steps: wall/field split by the 3rd-nearest-neighbour distance, a grid of cells empty of wall galaxies (from
`grid_origin`, by default the minimum over all galaxies as VAST's VoidFinder is run: the same input and origin give
VAST's grid, cell for cell), one hole grown from each empty cell until four wall galaxies lie on its surface (three
as VAST computes them: `bounding_galaxies`), holes cut where 10% of their volume leaves the survey (VAST's mesh),
duplicates dropped, maximal spheres (largest first, overlapping earlier maximals by at most 10% of their own volume),
then every hole joined to the one maximal it overlaps by more than 50% of its volume, and an EDGE flag. With
`VoidFinderParams.vast()` the holes and maximals are VAST's, hole for hole (bench/vast_parity.py; README).

Runs on the CPU (GPU not attempted: hole growth is branchy per-cell work): neighbour counts use scipy's cKDTree,
the hole growth, maximal selection, joining and void volumes are numba kernels, and the grid is walked in chunks
of cells so memory stays bounded by the galaxies and the holes kept, not by the grid. The chunks are independent,
so with a Dask client they are grown on the cluster's workers. The survey volume is a
callback `mask(xyz) -> bool` (build one with `sky_mask` or `box_mask`), so the kernel does no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numba as nb
import numpy as np
from scipy.spatial import cKDTree

Mask = Callable[[np.ndarray], np.ndarray]  # (n, 3) positions [h^-1 Mpc] -> (n,) True inside the survey volume

_SURFACE_POINTS = 20  # per hole, as VAST's check_hole_bounds
_KNN_CHUNK = 1_000_000
_BOUNDS_CHUNK = 50_000
# Holes grown from several cells to the same galaxies differ by rounding only: closer than this they are one hole
# (the duplicate tolerance proper, dup_tol, applies after the volume cut, as in VAST).
_SAME_HOLE = 1e-7
_GROW_COLUMNS = 18  # per grown hole: see _grow_one


@dataclass(frozen=True)
class VoidFinderParams:
    """VoidFinder settings (VAST defaults); lengths in h^-1 Mpc."""

    grid_edge: float = 5.0  # empty-cell grid
    search_edge: float = 15.0  # neighbour-search cells for hole growth (VAST: 3x grid_edge)
    sep_neighbor: int = 3
    field_sigma: float = 1.5  # field if d_3 > mean + field_sigma * std
    min_maximal_radius: float = 10.0
    maximal_overlap: float = 0.1
    hole_join_fraction: float = 0.5
    hole_outside_cut: float = 0.1  # holes with this much of their volume outside the survey are dropped
    pts_per_unit_volume: float = 0.01  # density of VAST's mesh estimating that fraction [h^3 Mpc^-3]
    edge_buffer: float = 10.0  # EDGE=2 if a hole centre is this close to the boundary
    dup_tol: float = 0.1  # a hole within this of the last one kept (centre and radius, largest first) is dropped
    volume_spacing: float = 1.0  # grid step for the void volumes behind R_EFF
    chunk_cells: int = 250_000  # grid cells per chunk: the unit of work (and of memory) of the hole growth
    # Galaxies on a hole's surface: 4 (Hoyle & Vogeley); 3 is what VAST >= 1.3 computes (its 4th step reads a
    # value never set and, as built with gcc, does not move the centre: see the README's VAST section).
    bounding_galaxies: int = 4
    # Corner of the empty-cell grid; None: the minimum over wall and field galaxies (as VAST's VoidFinder runs).
    grid_origin: tuple[float, ...] | None = None

    @classmethod
    def vast(cls, **settings: Any) -> VoidFinderParams:
        """Settings that reproduce VAST's VoidFinder hole for hole (see the README's VAST section)."""
        settings.setdefault("edge_buffer", settings.get("min_maximal_radius", cls.min_maximal_radius))
        settings.setdefault("bounding_galaxies", 3)
        return cls(**settings)

    def __post_init__(self) -> None:
        if self.grid_origin is not None:
            try:
                origin = np.asarray(self.grid_origin, dtype=np.float64).ravel()
            except (TypeError, ValueError):
                origin = np.empty(0)
            if origin.shape != (3,) or not np.all(np.isfinite(origin)):
                raise ValueError(f"VoidFinderParams.grid_origin must be 3 finite numbers [Mpc/h] or None, "
                                 f"got {self.grid_origin!r}")
            object.__setattr__(self, "grid_origin", tuple(float(v) for v in origin))
        for name in ("grid_edge", "search_edge", "min_maximal_radius", "dup_tol", "volume_spacing",
                     "pts_per_unit_volume"):
            if not getattr(self, name) > 0:
                raise ValueError(f"VoidFinderParams.{name} must be > 0, got {getattr(self, name)}")
        for name in ("maximal_overlap", "hole_join_fraction", "hole_outside_cut"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"VoidFinderParams.{name} must be in [0, 1), got {getattr(self, name)}")
        if self.bounding_galaxies not in (3, 4):
            raise ValueError(f"VoidFinderParams.bounding_galaxies must be 3 or 4, got {self.bounding_galaxies}")
        object.__setattr__(self, "bounding_galaxies", int(self.bounding_galaxies))  # 3.0 from a flow's schema
        if self.sep_neighbor < 1 or self.chunk_cells < 1:
            raise ValueError("VoidFinderParams.sep_neighbor and chunk_cells must be >= 1")


@dataclass(frozen=True)
class VoidCatalog:
    """Found voids: maximal spheres (row i is void i, largest first) and all holes with the void they join."""

    maximals: np.ndarray  # (n_voids, 4) x, y, z, radius [h^-1 Mpc]
    edge: np.ndarray  # (n_voids,) 0 interior, 1 a hole crosses the survey boundary, 2 a hole centre near it
    r_eff: np.ndarray  # (n_voids,) radius of the sphere with the void's volume (union of its holes)
    r_eff_uncert: np.ndarray  # (n_voids,) standard error of r_eff from the counted volume (VAST's R_EFF_UNCERT)
    holes: np.ndarray  # (n_holes, 4) x, y, z, radius, grouped by void, largest first within a void
    hole_void: np.ndarray  # (n_holes,) void index of each hole
    is_field: np.ndarray  # (n_galaxies,) True for galaxies removed as field before growing holes
    field_threshold: float  # the 3rd-neighbour distance cut [h^-1 Mpc]
    neighbour_mean: float  # mean and standard deviation of the 3rd-neighbour distance [h^-1 Mpc]
    neighbour_std: float
    grid_origin: np.ndarray  # (3,) corner of the empty-cell grid used [h^-1 Mpc]


# --- survey masks ---------------------------------------------------------------------------------------------
def xyz_to_radec(xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ra [deg, 0-360), dec [deg], distance) of Cartesian (n, 3) positions."""
    xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    r = np.linalg.norm(xyz, axis=1)
    ra = np.degrees(np.arctan2(xyz[:, 1], xyz[:, 0])) % 360.0
    with np.errstate(invalid="ignore", divide="ignore"):
        dec = np.degrees(np.arcsin(np.clip(np.where(r > 0, xyz[:, 2] / r, 0.0), -1.0, 1.0)))
    return ra, dec, r


def sky_mask(angular: Callable[[np.ndarray, np.ndarray], np.ndarray], r_min: float, r_max: float) -> Mask:
    """Survey volume from an angular mask `angular(ra, dec) -> bool` [deg] and comoving distances [h^-1 Mpc]."""

    def inside(xyz: np.ndarray) -> np.ndarray:
        ra, dec, r = xyz_to_radec(xyz)
        ok = (r >= r_min) & (r <= r_max)
        if ok.any():
            ok[ok] = np.asarray(angular(ra[ok], dec[ok]), dtype=bool)
        return ok

    return inside


def vast_sky_mask(mask: np.ndarray, resolution: int, r_min: float, r_max: float) -> Mask:
    """Survey volume from VAST's angular mask (bool, 360 n x 180 n, n = resolution) read as VAST's not_in_mask
    does: cell [trunc(n ra), trunc(n dec) + 90 n], indices truncated toward zero (so the row above the equator
    also holds -1/n < dec < 0), and distances [h^-1 Mpc]."""
    mask = np.asarray(mask, dtype=bool)

    def angular(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        i = np.trunc(resolution * ra).astype(np.int64)
        j = np.trunc(resolution * dec).astype(np.int64) + 90 * resolution
        ok = (i >= 0) & (i < mask.shape[0]) & (j >= 0) & (j < mask.shape[1])
        out = np.zeros(len(ra), dtype=bool)
        out[ok] = mask[i[ok], j[ok]]
        return out

    return sky_mask(angular, r_min, r_max)


def box_mask(lo: np.ndarray, hi: np.ndarray) -> Mask:
    """Survey volume that is the axis-aligned box [lo, hi] [h^-1 Mpc]."""
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)

    def inside(xyz: np.ndarray) -> np.ndarray:
        xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
        return np.all((xyz >= lo) & (xyz <= hi), axis=1)

    return inside


# --- wall / field ---------------------------------------------------------------------------------------------
class WallField(NamedTuple):
    """Wall/field split: field galaxies have their sep_neighbor-th neighbour beyond mean + sigma * std."""

    is_field: np.ndarray
    threshold: float  # [h^-1 Mpc]
    mean: float  # of the sep_neighbor-th neighbour distance [h^-1 Mpc]
    std: float


def split_wall_field(xyz: np.ndarray, sep_neighbor: int = 3, sigma: float = 1.5) -> WallField:
    """Field galaxies: their sep_neighbor-th neighbour lies beyond mean + sigma * std of that distance."""
    xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    if len(xyz) <= sep_neighbor:
        return WallField(np.zeros(len(xyz), dtype=bool), float("inf"), float("nan"), float("nan"))
    tree = cKDTree(xyz)
    dist = np.empty(len(xyz))
    for start in range(0, len(xyz), _KNN_CHUNK):
        d, _ = tree.query(xyz[start:start + _KNN_CHUNK], k=[sep_neighbor + 1], workers=-1)
        dist[start:start + _KNN_CHUNK] = d[:, 0]
    mean, std = float(dist.mean()), float(dist.std())
    threshold = mean + sigma * std
    return WallField(dist > threshold, threshold, mean, std)


# --- neighbour cells ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _CellList:
    """Points sorted by cubic cell; starts[c]:starts[c+1] are the points of flat cell c."""

    points: np.ndarray
    starts: np.ndarray
    lo: np.ndarray
    edge: float
    dims: np.ndarray


def _cell_list(points: np.ndarray, edge: float, lo: np.ndarray, hi: np.ndarray) -> _CellList:
    # Coarsen rather than allocate an oversized start table for a sparse, wide survey.
    while np.prod(np.ceil((hi - lo) / edge) + 1) > 64_000_000:
        edge *= 1.5
    dims = (np.floor((hi - lo) / edge).astype(np.int64) + 1)
    ijk = np.clip(((points - lo) / edge).astype(np.int64), 0, dims - 1)
    flat = (ijk[:, 0] * dims[1] + ijk[:, 1]) * dims[2] + ijk[:, 2]
    order = np.argsort(flat, kind="stable")
    starts = np.searchsorted(flat[order], np.arange(int(np.prod(dims)) + 1))
    return _CellList(np.ascontiguousarray(points[order]), starts.astype(np.int64), lo, float(edge), dims)


@nb.njit(cache=True, inline="always")
def _cell_of(p, lo, edge, dims, axis):
    c = int(np.floor((p[axis] - lo[axis]) / edge))
    return min(max(c, 0), dims[axis] - 1)


@nb.njit(cache=True)
def _nearest(c, pts, starts, lo, edge, dims):
    """Index of the point nearest to c, by Chebyshev shells of cells around c's cell; -1 if there is none."""
    ci, cj, ck = _cell_of(c, lo, edge, dims, 0), _cell_of(c, lo, edge, dims, 1), _cell_of(c, lo, edge, dims, 2)
    best, best_d2 = -1, np.inf
    # c may lie outside the cell box: distances to shells are then only bounded below by (ring - outside) * edge.
    outside = 0.0
    for a in range(3):
        span = dims[a] * edge
        outside = max(outside, lo[a] - c[a], c[a] - (lo[a] + span))
    max_ring = max(dims[0], max(dims[1], dims[2]))
    for ring in range(max_ring + 1):
        for i in range(ci - ring, ci + ring + 1):
            if i < 0 or i >= dims[0]:
                continue
            for j in range(cj - ring, cj + ring + 1):
                if j < 0 or j >= dims[1]:
                    continue
                on_shell_ij = abs(i - ci) == ring or abs(j - cj) == ring
                for k in range(ck - ring, ck + ring + 1):
                    if k < 0 or k >= dims[2]:
                        continue
                    if not on_shell_ij and abs(k - ck) != ring:
                        continue
                    cell = (i * dims[1] + j) * dims[2] + k
                    for g in range(starts[cell], starts[cell + 1]):
                        d2 = (pts[g, 0] - c[0]) ** 2 + (pts[g, 1] - c[1]) ** 2 + (pts[g, 2] - c[2]) ** 2
                        if d2 < best_d2:
                            best, best_d2 = g, d2
        reach = ring * edge - outside
        if best >= 0 and reach > 0 and best_d2 <= reach * reach:
            break
    return best


@nb.njit(cache=True)
def _next_bound(c, u, g1, bound, n_bound, pts, starts, lo, edge, dims):
    """Move the centre c along unit u until a new point reaches the sphere through pts[g1]: (index, shift) or -1.

    A point p is on the moved sphere at shift x = (|c-p|^2 - |c-g1|^2) / (2 u.(p-g1)); only points ahead
    (u.(p-g1) > 0) qualify, and any with x <= t lies inside the ball at shift t, so the search scans the cells
    of that ball and grows t until a point is found, or none is ahead in a ball centred outside the cell box.
    """
    r0sq = (c[0] - pts[g1, 0]) ** 2 + (c[1] - pts[g1, 1]) ** 2 + (c[2] - pts[g1, 2]) ** 2
    t = max(np.sqrt(r0sq), 0.5 * edge)
    ct = np.empty(3)
    while True:
        for a in range(3):
            ct[a] = c[a] + t * u[a]
        radius = np.sqrt((ct[0] - pts[g1, 0]) ** 2 + (ct[1] - pts[g1, 1]) ** 2 + (ct[2] - pts[g1, 2]) ** 2)
        i0, i1 = int((ct[0] - radius - lo[0]) // edge), int((ct[0] + radius - lo[0]) // edge)
        j0, j1 = int((ct[1] - radius - lo[1]) // edge), int((ct[1] + radius - lo[1]) // edge)
        k0, k1 = int((ct[2] - radius - lo[2]) // edge), int((ct[2] + radius - lo[2]) // edge)
        best, best_x, ahead_x = -1, t, np.inf
        for i in range(max(i0, 0), min(i1, dims[0] - 1) + 1):
            for j in range(max(j0, 0), min(j1, dims[1] - 1) + 1):
                base = (i * dims[1] + j) * dims[2]
                for cell in range(base + max(k0, 0), base + min(k1, dims[2] - 1) + 1):
                    for g in range(starts[cell], starts[cell + 1]):
                        skip = False
                        for b in range(n_bound):
                            if bound[b] == g:
                                skip = True
                        if skip:
                            continue
                        denom = 2.0 * (u[0] * (pts[g, 0] - pts[g1, 0]) + u[1] * (pts[g, 1] - pts[g1, 1])
                                       + u[2] * (pts[g, 2] - pts[g1, 2]))
                        if denom <= 0.0:
                            continue
                        num = (c[0] - pts[g, 0]) ** 2 + (c[1] - pts[g, 1]) ** 2 + (c[2] - pts[g, 2]) ** 2 - r0sq
                        x = max(num, 0.0) / denom
                        if x <= best_x:
                            best, best_x = g, x
                        elif x < ahead_x:
                            ahead_x = x
        if best >= 0:
            return best, best_x
        if ahead_x < np.inf:
            # A point found beyond t bounds the answer: the ball at its shift holds every point that comes first.
            t = ahead_x
            continue
        # Nothing ahead in the ball: give up once its centre has left the cell box (VAST gives up once its
        # probe centre has left the survey), else search a ball twice as far.
        for a in range(3):
            if ct[a] < lo[a] or ct[a] > lo[a] + dims[a] * edge:
                return -1, 0.0
        t = 2.0 * t


@nb.njit(cache=True)
def _first_ring(c, u, g1, bound, n_bound, pts, starts, lo, edge, dims):
    """Chebyshev ring of cells around c's cell (cells truncated toward zero, as VAST's galaxy map) holding the
    first point ahead of pts[g1] along u: where VAST's search for the next bounding point first finds one."""
    ci = int((c[0] - lo[0]) / edge)
    cj = int((c[1] - lo[1]) / edge)
    ck = int((c[2] - lo[2]) / edge)
    max_ring = max(abs(ci) + dims[0], max(abs(cj) + dims[1], abs(ck) + dims[2]))
    for ring in range(max_ring + 1):
        for i in range(max(ci - ring, 0), min(ci + ring, dims[0] - 1) + 1):
            for j in range(max(cj - ring, 0), min(cj + ring, dims[1] - 1) + 1):
                on_shell_ij = abs(i - ci) == ring or abs(j - cj) == ring
                for k in range(max(ck - ring, 0), min(ck + ring, dims[2] - 1) + 1):
                    if not on_shell_ij and abs(k - ck) != ring:
                        continue
                    cell = (i * dims[1] + j) * dims[2] + k
                    for g in range(starts[cell], starts[cell + 1]):
                        if u[0] * (pts[g, 0] - pts[g1, 0]) + u[1] * (pts[g, 1] - pts[g1, 1]) \
                                + u[2] * (pts[g, 2] - pts[g1, 2]) <= 0.0:
                            continue
                        known = False
                        for b in range(n_bound):
                            if bound[b] == g:
                                known = True
                        if not known:
                            return ring
    return max_ring


@nb.njit(cache=True, inline="always")
def _unit(v):
    n = np.sqrt(v[0] ** 2 + v[1] ** 2 + v[2] ** 2)
    return v / n, n


@nb.njit(cache=True)
def _perpendicular(e):
    helper = np.array([1.0, 0.0, 0.0]) if abs(e[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    return _unit(np.cross(e, helper))[0]


@nb.njit(cache=True)
def _grow_one(c0, pts, starts, lo, edge, dims, n_bounding, out):
    """Grow one hole from c0 until n_bounding (3 or 4) galaxies bound it; out = x, y, z, radius, centre after the
    2nd and after the 3rd galaxy (NaN: none), then for the searches of the 2nd and of the 3rd galaxy: the ring of
    cells where VAST's search first finds a point (`_first_ring`) and the search direction (4 columns each)."""
    out[:] = np.nan
    bound = np.empty(4, dtype=np.int64)
    g1 = _nearest(c0, pts, starts, lo, edge, dims)
    if g1 < 0:
        return
    bound[0] = g1
    u, norm = _unit(c0 - pts[g1])
    if norm == 0.0:
        return
    g2, x = _next_bound(c0, u, g1, bound, 1, pts, starts, lo, edge, dims)
    if g2 < 0:
        return
    out[10] = _first_ring(c0, u, g1, bound, 1, pts, starts, lo, edge, dims)
    out[11:14] = u
    bound[1] = g2
    c = c0 + x * u
    out[4:7] = c
    e, norm = _unit(pts[g2] - pts[g1])
    v = c - 0.5 * (pts[g1] + pts[g2])
    v = v - (v[0] * e[0] + v[1] * e[1] + v[2] * e[2]) * e
    u, norm = _unit(v)
    if not norm > 1e-9 * edge:  # centre on the line through both galaxies: any perpendicular direction
        u = _perpendicular(e)
    g3, x = _next_bound(c, u, g1, bound, 2, pts, starts, lo, edge, dims)
    if g3 < 0:
        return
    out[14] = _first_ring(c, u, g1, bound, 2, pts, starts, lo, edge, dims)
    out[15:18] = u
    bound[2] = g3
    c = c + x * u
    out[7:10] = c
    if n_bounding == 3:
        out[0:3] = c
        out[3] = np.sqrt((c[0] - pts[g1, 0]) ** 2 + (c[1] - pts[g1, 1]) ** 2 + (c[2] - pts[g1, 2]) ** 2)
        return
    nrm, norm = _unit(np.cross(pts[g2] - pts[g1], pts[g3] - pts[g1]))
    if not norm > 0.0:
        return
    side = nrm[0] * (c[0] - pts[g1, 0]) + nrm[1] * (c[1] - pts[g1, 1]) + nrm[2] * (c[2] - pts[g1, 2])
    if abs(side) > 1e-9 * edge:
        u = nrm if side > 0 else -nrm
        g4, x = _next_bound(c, u, g1, bound, 3, pts, starts, lo, edge, dims)
    else:  # centre in the plane of the three galaxies: try both sides, keep the smaller hole (as VAST)
        ga, xa = _next_bound(c, nrm, g1, bound, 3, pts, starts, lo, edge, dims)
        gb, xb = _next_bound(c, -nrm, g1, bound, 3, pts, starts, lo, edge, dims)
        if ga >= 0 and (gb < 0 or xa <= xb):
            g4, x, u = ga, xa, nrm
        else:
            g4, x, u = gb, xb, -nrm
    if g4 < 0:
        return
    c = c + x * u
    out[0:3] = c
    out[3] = np.sqrt((c[0] - pts[g1, 0]) ** 2 + (c[1] - pts[g1, 1]) ** 2 + (c[2] - pts[g1, 2]) ** 2)


@nb.njit(cache=True, parallel=True)
def _grow_holes(centres, pts, starts, lo, edge, dims, n_bounding):
    out = np.empty((len(centres), _GROW_COLUMNS))
    for n in nb.prange(len(centres)):
        _grow_one(centres[n], pts, starts, lo, edge, dims, n_bounding, out[n])
    return out


def grow_holes(centres: np.ndarray, wall_xyz: np.ndarray, search_edge: float = 15.0,
               bounding_galaxies: int = 4) -> np.ndarray:
    """Grow a hole from each centre until 4 (or 3) wall galaxies bound it: (n, 10) x, y, z, radius, then the centres
    after the 2nd and 3rd galaxy (for mask checks); rows of NaN where a hole escapes the galaxies' box."""
    centres = np.ascontiguousarray(np.asarray(centres, dtype=np.float64).reshape(-1, 3))
    wall_xyz = np.asarray(wall_xyz, dtype=np.float64).reshape(-1, 3)
    if len(wall_xyz) < 4 or len(centres) == 0:
        return np.full((len(centres), 10), np.nan)
    cells = _cell_list(wall_xyz, search_edge, wall_xyz.min(axis=0), wall_xyz.max(axis=0))
    return _grow_holes(centres, cells.points, cells.starts, cells.lo, cells.edge, cells.dims,
                       bounding_galaxies)[:, :10]


# --- the empty-cell grid, walked in chunks --------------------------------------------------------------------
@nb.njit(cache=True)
def _first_of_duplicates(holes, tol):
    keep = np.zeros(len(holes), dtype=np.bool_)
    last = 0
    for h in range(len(holes)):
        d = np.sqrt(np.sum((holes[h, :3] - holes[last, :3]) ** 2))
        if h == 0 or d > tol or holes[last, 3] - holes[h, 3] > tol:
            keep[h] = True
            last = h
    return keep


def remove_duplicates(holes: np.ndarray, tol: float = 0.1) -> np.ndarray:
    """Rows of holes (sorted largest first) to keep, as VAST's remove_duplicates_2: a hole goes when its centre is
    within tol of the last hole kept and its radius within tol below that hole's."""
    if len(holes) == 0:
        return np.zeros(0, dtype=bool)
    return _first_of_duplicates(np.ascontiguousarray(holes, dtype=np.float64), tol)


def _unique_holes(holes: np.ndarray, tol: float) -> np.ndarray:
    """Holes sorted by radius (largest first) with near-identical ones (centres within tol) kept once."""
    if len(holes) == 0:
        return holes.reshape(0, 4)
    keys = np.round(holes[:, :3] / tol).astype(np.int64)
    _, first = np.unique(keys, axis=0, return_index=True)
    holes = holes[first]
    return holes[np.argsort(-holes[:, 3], kind="stable")]


@dataclass(frozen=True)
class _EmptyCells:
    """The grid whose empty cells seed the holes: corner, cell edge and cells per axis."""

    lo: np.ndarray
    edge: float
    dims: np.ndarray


def empty_cell_grid(wall_xyz: np.ndarray, edge: float,
                    origin: np.ndarray | None = None) -> tuple[_EmptyCells, np.ndarray]:
    """(grid, occupied): the grid of cubes of this edge from `origin` (default: the wall galaxies' minimum) up to
    the wall galaxies' maximum, and the sorted flat ids of its cells holding wall galaxies. As VAST's VoidFinder:
    ceil((max - origin) / edge) cells per axis, galaxies on the far edge in the last cell, cell ids truncated
    toward zero (so a galaxy less than one edge below the origin marks cell 0); galaxies further below are off
    the grid."""
    lo = wall_xyz.min(axis=0) if origin is None else np.asarray(origin, dtype=np.float64).reshape(3)
    span = wall_xyz.max(axis=0) - lo
    if np.any(span < 0):
        raise ValueError(f"grid_origin {lo.tolist()} is not below the wall galaxies' maximum "
                         f"{wall_xyz.max(axis=0).tolist()} on every axis")
    grid = _EmptyCells(lo, edge, np.maximum(np.ceil(span / edge).astype(np.int64), 1))
    ijk = np.minimum(np.trunc((wall_xyz - lo) / edge).astype(np.int64), grid.dims - 1)
    ijk = ijk[(ijk >= 0).all(axis=1)]
    return grid, np.unique((ijk[:, 0] * grid.dims[1] + ijk[:, 1]) * grid.dims[2] + ijk[:, 2])


def find_holes(wall_xyz: np.ndarray, mask: Mask, params: VoidFinderParams = VoidFinderParams(),
               client: Any | None = None, origin: np.ndarray | None = None) -> np.ndarray:
    """All distinct holes (n, 4: x, y, z, radius; largest first) grown from the cells of the grid from `origin`
    (default: the wall galaxies' minimum) that are empty of wall galaxies and whose centres stay in the survey;
    built chunk by chunk of cells, over a Dask cluster when a client is given (the same chunks either way, so
    the same holes)."""
    wall_xyz = np.asarray(wall_xyz, dtype=np.float64).reshape(-1, 3)
    if len(wall_xyz) < 4:
        return np.empty((0, 4))
    grid, occupied = empty_cell_grid(wall_xyz, params.grid_edge, origin)
    # The neighbour cells span the grid too (VAST's galaxy map starts at the grid origin): a hole grown from a cell
    # below the wall galaxies' minimum is not cut short for leaving their box.
    cells = _cell_list(wall_xyz, params.search_edge, np.minimum(grid.lo, wall_xyz.min(axis=0)),
                       np.maximum(grid.lo + grid.dims * grid.edge, wall_xyz.max(axis=0)))
    n_cells = int(np.prod(grid.dims))
    bounds = list(range(0, n_cells, params.chunk_cells)) + [n_cells]
    chunks = [(a, b, occupied[np.searchsorted(occupied, a):np.searchsorted(occupied, b)])
              for a, b in zip(bounds[:-1], bounds[1:])]
    if client is None:
        kept = [holes_in_cells(a, b, occ, grid, cells, mask, params.bounding_galaxies) for a, b, occ in chunks]
    else:
        remote_cells, remote_mask = client.scatter([cells, mask], broadcast=True)
        kept = client.gather([client.submit(holes_in_cells, a, b, occ, grid, remote_cells, remote_mask,
                                            params.bounding_galaxies, pure=False)
                              for a, b, occ in chunks])
    return _unique_holes(np.concatenate(kept) if kept else np.empty((0, 4)), _SAME_HOLE)


def holes_in_cells(start: int, stop: int, occupied: np.ndarray, grid: _EmptyCells, cells: _CellList, mask: Mask,
                   bounding_galaxies: int = 4) -> np.ndarray:
    """Distinct holes grown from the empty cells start..stop-1 of the grid (`occupied`: the flat ids of the cells
    there holding wall galaxies), kept where the hole stays in the survey: one unit of parallel work."""
    empty = np.ones(stop - start, dtype=bool)
    empty[occupied - start] = False
    flat = np.flatnonzero(empty) + start
    i, rest = np.divmod(flat, grid.dims[1] * grid.dims[2])
    j, k = np.divmod(rest, grid.dims[2])
    centres = grid.lo + (np.stack([i, j, k], axis=1) + 0.5) * grid.edge
    centres = centres[mask(centres)]
    if len(centres) == 0:
        return np.empty((0, 4))
    out = _grow_holes(np.ascontiguousarray(centres), cells.points, cells.starts, cells.lo, cells.edge, cells.dims,
                      bounding_galaxies)
    out, centres = out[~np.isnan(out[:, 0])], centres[~np.isnan(out[:, 0])]
    ok = mask(out[:, 0:3]) & mask(out[:, 4:7]) & mask(out[:, 7:10])
    ok[ok] = _searches_stay_inside(centres[ok], out[ok], cells.edge, mask)
    return _unique_holes(out[ok, :4], _SAME_HOLE)


def _searches_stay_inside(seeds: np.ndarray, grown: np.ndarray, edge: float, mask: Mask) -> np.ndarray:
    """VAST's survey test during the searches for the 2nd and 3rd galaxy: a search that has found no point in
    rings 0..s of cells gives up when its probe, the start moved s cell edges along the search direction, is
    outside the survey. True for the holes whose two searches reached their first point without that."""
    ok = np.ones(len(grown), dtype=bool)
    for start, ring, u in ((seeds, grown[:, 10], grown[:, 11:14]), (grown[:, 4:7], grown[:, 14], grown[:, 15:18])):
        for s in range(1, int(ring.max(initial=0))):
            rows = np.flatnonzero(ok & (ring > s))
            if len(rows) == 0:
                break
            ok[rows] = mask(start[rows] + s * edge * u[rows])
    return ok


# --- holes against the survey boundary ------------------------------------------------------------------------
def _fibonacci_sphere(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    z = 1.0 - 2.0 * i / n
    phi = np.pi * (1.0 + 5.0**0.5) * i
    s = np.sqrt(1.0 - z * z)
    return np.stack([s * np.cos(phi), s * np.sin(phi), z], axis=1)


def volume_mesh(max_radius: float, pts_per_unit_volume: float) -> tuple[np.ndarray, np.ndarray]:
    """(offsets (n, 3), their distances (n,), ascending): VAST's mesh for the volume cut, a cubic lattice of step
    pts_per_unit_volume^-0.33 from -1.05 max_radius, the points closer than max_radius to its centre."""
    gen = 1.05 * max_radius
    axis = np.arange(-gen, gen, 1.0 / np.power(pts_per_unit_volume, 0.33))
    mx, my, mz = np.meshgrid(axis, axis, axis)
    mesh = np.stack([mx.ravel(), my.ravel(), mz.ravel()], axis=1)
    dist = np.linalg.norm(mesh, axis=1)
    keep = dist < max_radius
    order = np.argsort(dist[keep], kind="stable")
    return mesh[keep][order], dist[keep][order]


def hole_bounds(holes: np.ndarray, mask: Mask, cut: float = 0.1,
                pts_per_unit_volume: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """(keep, boundary) per hole, as VAST's check_hole_bounds: a hole is on the boundary if one of 20 points on
    its surface is outside the survey; a boundary hole is dropped when at least ceil(cut * n) of the n points of
    VAST's volume mesh (`volume_mesh`, sized by the largest hole) inside it are outside."""
    keep = np.ones(len(holes), dtype=bool)
    boundary = np.zeros(len(holes), dtype=bool)
    if len(holes) == 0:
        return keep, boundary
    surface = _fibonacci_sphere(_SURFACE_POINTS)
    mesh, dist = volume_mesh(float(holes[:, 3].max()), pts_per_unit_volume)
    for start in range(0, len(holes), _BOUNDS_CHUNK):
        h = holes[start:start + _BOUNDS_CHUNK]
        pts = h[:, None, :3] + h[:, None, 3:4] * surface[None]
        out = (~mask(pts.reshape(-1, 3))).reshape(len(h), -1).any(axis=1)
        idx = np.flatnonzero(out)
        boundary[start + idx] = True
        n_in = np.searchsorted(dist, h[idx, 3], side="right")  # mesh points within each hole
        step = max(1, _BOUNDS_CHUNK // max(len(mesh), 1))
        for sub in range(0, len(idx), step):
            part, n = idx[sub:sub + step], n_in[sub:sub + step]
            width = int(n.max())
            vol = h[part, None, :3] + mesh[None, :width]
            outside = ~mask(vol.reshape(-1, 3)).reshape(len(part), width)
            outside &= np.arange(width)[None, :] < n[:, None]
            threshold = np.maximum(np.ceil(cut * n), 1)
            keep[start + part] = ~((n > 0) & (outside.sum(axis=1) >= threshold))
    return keep, boundary


# --- maximals and voids ---------------------------------------------------------------------------------------
@nb.njit(cache=True, inline="always")
def _overlap(r1, r2, d):
    """Volume of the intersection of two spheres with radii r1, r2 and centres d apart."""
    if d >= r1 + r2:
        return 0.0
    if d <= abs(r1 - r2):
        r = min(r1, r2)
        return 4.0 / 3.0 * np.pi * r**3
    return np.pi * (r1 + r2 - d) ** 2 * (d * d + 2.0 * d * (r1 + r2) - 3.0 * (r1 - r2) ** 2) / (12.0 * d)


@nb.njit(cache=True)
def _select_maximals(holes, min_radius, frac, lo, edge, dims):
    # Cells of twice the largest radius: any overlapping pair sits in neighbouring cells.
    head = np.full(dims[0] * dims[1] * dims[2], -1, dtype=np.int64)
    nxt = np.full(len(holes), -1, dtype=np.int64)
    chosen = np.empty(len(holes), dtype=np.int64)
    n = 0
    for h in range(len(holes)):
        r = holes[h, 3]
        if r <= min_radius:
            break
        ci, cj, ck = _cell_of(holes[h], lo, edge, dims, 0), _cell_of(holes[h], lo, edge, dims, 1), \
            _cell_of(holes[h], lo, edge, dims, 2)
        ok = True
        limit = frac * 4.0 / 3.0 * np.pi * r**3
        for i in range(max(ci - 1, 0), min(ci + 2, dims[0])):
            for j in range(max(cj - 1, 0), min(cj + 2, dims[1])):
                for k in range(max(ck - 1, 0), min(ck + 2, dims[2])):
                    m = head[(i * dims[1] + j) * dims[2] + k]
                    while ok and m >= 0:
                        d = np.sqrt(np.sum((holes[h, :3] - holes[m, :3]) ** 2))
                        if _overlap(r, holes[m, 3], d) > limit:
                            ok = False
                        m = nxt[m]
        if ok:
            cell = (ci * dims[1] + cj) * dims[2] + ck
            nxt[h] = head[cell]
            head[cell] = h
            chosen[n] = h
            n += 1
    return chosen[:n]


@nb.njit(cache=True, parallel=True)
def _join(holes, maximals, frac, lo, edge, dims):
    head = np.full(dims[0] * dims[1] * dims[2], -1, dtype=np.int64)
    nxt = np.full(len(maximals), -1, dtype=np.int64)
    for m in range(len(maximals)):
        cell = (_cell_of(maximals[m], lo, edge, dims, 0) * dims[1]
                + _cell_of(maximals[m], lo, edge, dims, 1)) * dims[2] + _cell_of(maximals[m], lo, edge, dims, 2)
        nxt[m] = head[cell]
        head[cell] = m
    void = np.full(len(holes), -1, dtype=np.int64)
    for h in nb.prange(len(holes)):
        r = holes[h, 3]
        need = frac * 4.0 / 3.0 * np.pi * r**3
        ci, cj, ck = _cell_of(holes[h], lo, edge, dims, 0), _cell_of(holes[h], lo, edge, dims, 1), \
            _cell_of(holes[h], lo, edge, dims, 2)
        found, count = -1, 0
        for i in range(max(ci - 1, 0), min(ci + 2, dims[0])):
            for j in range(max(cj - 1, 0), min(cj + 2, dims[1])):
                for k in range(max(ck - 1, 0), min(ck + 2, dims[2])):
                    m = head[(i * dims[1] + j) * dims[2] + k]
                    while m >= 0:
                        d = np.sqrt(np.sum((holes[h, :3] - maximals[m, :3]) ** 2))
                        if _overlap(r, maximals[m, 3], d) > need:  # strictly more, as VAST
                            found, count = m, count + 1
                        m = nxt[m]
        if count == 1:
            void[h] = found
    return void


def _sphere_grid(spheres: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    edge = 2.0 * float(spheres[:, 3].max())
    lo = spheres[:, :3].min(axis=0) - edge
    dims = np.floor((spheres[:, :3].max(axis=0) + edge - lo) / edge).astype(np.int64) + 1
    return lo, edge, dims


def select_maximals(holes: np.ndarray, min_radius: float = 10.0, frac: float = 0.1) -> np.ndarray:
    """Indices of maximal spheres among holes sorted largest first: radius > min_radius and overlapping every
    earlier maximal by at most `frac` of their own volume."""
    big = holes[holes[:, 3] > min_radius] if len(holes) else holes
    if len(big) == 0:
        return np.empty(0, dtype=np.int64)
    lo, edge, dims = _sphere_grid(big)
    return _select_maximals(np.ascontiguousarray(holes), min_radius, frac, lo, edge, dims)


def join_holes(holes: np.ndarray, maximals: np.ndarray, frac: float = 0.5) -> np.ndarray:
    """Void index per hole: the one maximal it overlaps by more than `frac` of its own volume, else -1."""
    if len(holes) == 0 or len(maximals) == 0:
        return np.full(len(holes), -1, dtype=np.int64)
    lo, edge, dims = _sphere_grid(np.concatenate([holes, maximals]))
    return _join(np.ascontiguousarray(holes), np.ascontiguousarray(maximals), frac, lo, edge, dims)


def edge_flags(holes: np.ndarray, hole_void: np.ndarray, boundary: np.ndarray, n_voids: int, mask: Mask,
               buffer: float = 10.0) -> np.ndarray:
    """EDGE per void: 1 if one of its holes crosses the boundary, else 2 if a hole centre is within `buffer`
    of it along an axis (VAST's 6-point test), else 0."""
    edge = np.zeros(n_voids, dtype=np.int64)
    if n_voids == 0:
        return edge
    steps = np.concatenate([np.eye(3), -np.eye(3)]) * buffer
    near = (~mask((holes[:, None, :3] + steps[None]).reshape(-1, 3))).reshape(len(holes), 6).any(axis=1)
    np.maximum.at(edge, hole_void[near], 2)
    edge[np.unique(hole_void[boundary])] = 1
    return edge


@nb.njit(cache=True, parallel=True)
def _union_volumes(holes, starts, spacing):
    n_voids = len(starts) - 1
    volume = np.zeros(n_voids)
    error = np.zeros(n_voids)
    for v in nb.prange(n_voids):
        h = holes[starts[v]:starts[v + 1]]
        lo = np.empty(3)
        n = np.empty(3, dtype=np.int64)
        for a in range(3):
            lo[a] = np.min(h[:, a] - h[:, 3])
            n[a] = int(np.ceil((np.max(h[:, a] + h[:, 3]) - lo[a]) / spacing))
        count = 0
        for i in range(n[0]):
            x = lo[0] + (i + 0.5) * spacing
            for j in range(n[1]):
                y = lo[1] + (j + 0.5) * spacing
                for k in range(n[2]):
                    z = lo[2] + (k + 0.5) * spacing
                    for m in range(len(h)):  # the maximal comes first and holds most points
                        if (x - h[m, 0]) ** 2 + (y - h[m, 1]) ** 2 + (z - h[m, 2]) ** 2 < h[m, 3] ** 2:
                            count += 1
                            break
        volume[v] = count * spacing**3
        total = n[0] * n[1] * n[2]
        error[v] = spacing**3 * np.sqrt(count * (total - count) / total) if total > 0 else 0.0
    return volume, error


def void_volumes(holes: np.ndarray, hole_void: np.ndarray, n_voids: int,
                 spacing: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(volume, error) of each void (the union of its holes) [h^-3 Mpc^3], by counting the grid points of this
    spacing in its bounding box; the error is the binomial one of that count, as VAST's Monte Carlo estimate
    with the grid points as the samples."""
    if n_voids == 0:
        return np.zeros(0), np.zeros(0)
    order = np.lexsort((-holes[:, 3], hole_void))
    starts = np.searchsorted(hole_void[order], np.arange(n_voids + 1))
    return _union_volumes(np.ascontiguousarray(holes[order]), starts, spacing)


def find_voids(xyz: np.ndarray, mask: Mask, params: VoidFinderParams = VoidFinderParams(),
               client: Any | None = None, is_field: np.ndarray | None = None) -> VoidCatalog:
    """VoidFinder on comoving positions (n, 3) [h^-1 Mpc] of a volume-limited sample inside `mask`; the holes are
    grown over a Dask cluster when a client is given (`mask` must then pickle, as `sky_mask` and `box_mask` do).
    `is_field` (n,) replaces the wall/field split (e.g. VAST's own, to compare hole for hole)."""
    xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    split = split_wall_field(xyz, params.sep_neighbor, params.field_sigma)
    if is_field is None:
        is_field = split.is_field
    else:
        is_field = np.asarray(is_field, dtype=bool).reshape(-1)
        if is_field.shape != (len(xyz),):
            raise ValueError(f"is_field has {is_field.size} flags for {len(xyz)} galaxies")
    origin = grid_origin(xyz, params)
    holes = find_holes(xyz[~is_field], mask, params, client, origin)
    keep, boundary = hole_bounds(holes, mask, params.hole_outside_cut, params.pts_per_unit_volume)
    holes, boundary = holes[keep], boundary[keep]
    first = remove_duplicates(holes, params.dup_tol)
    holes, boundary = holes[first], boundary[first]
    maximal_index = select_maximals(holes, params.min_maximal_radius, params.maximal_overlap)
    maximals = holes[maximal_index]
    hole_void = join_holes(holes, maximals, params.hole_join_fraction)
    hole_void[maximal_index] = np.arange(len(maximal_index))  # a maximal is always in its own void
    member = hole_void >= 0
    holes, hole_void, boundary = holes[member], hole_void[member], boundary[member]
    order = np.lexsort((-holes[:, 3], hole_void))
    holes, hole_void, boundary = holes[order], hole_void[order], boundary[order]
    n_voids = len(maximals)
    edge = edge_flags(holes, hole_void, boundary, n_voids, mask, params.edge_buffer)
    volume, volume_error = void_volumes(holes, hole_void, n_voids, params.volume_spacing)
    r_eff = np.cbrt(3.0 * volume / (4.0 * np.pi))
    with np.errstate(divide="ignore", invalid="ignore"):  # dR = dV / (4 pi R^2)
        r_eff_uncert = np.where(r_eff > 0, volume_error / (4.0 * np.pi * r_eff**2), 0.0)
    return VoidCatalog(maximals, edge, r_eff, r_eff_uncert, holes, hole_void, is_field, split.threshold, split.mean,
                       split.std, origin)


def grid_origin(xyz: np.ndarray, params: VoidFinderParams = VoidFinderParams()) -> np.ndarray:
    """The empty-cell grid's corner [h^-1 Mpc]: params.grid_origin, else the minimum over all the galaxies, wall
    and field (VAST's VoidFinder runs with the minimum over both); (0, 0, 0) without galaxies."""
    if params.grid_origin is not None:
        return np.array(params.grid_origin, dtype=np.float64)
    xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    return xyz.min(axis=0) if len(xyz) else np.zeros(3)

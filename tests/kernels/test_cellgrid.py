"""kernels.cellgrid: points sorted by cell, stably, whichever sort the frame's size picks."""

from __future__ import annotations

import numpy as np
import pytest

from kernels.cellgrid import build_grid, grid_frame


@pytest.mark.parametrize("min_cell", [50.0, 0.5], ids=["counting-sort", "argsort"])  # about 20^3 cells, then 2000^3
def test_points_sorted_stably_by_cell(min_cell):
    rng = np.random.default_rng(3)
    pos = np.round(rng.uniform(0, 1000, (3000, 3)), -2)  # many points per cell, in input order within each
    frame = grid_frame(pos, min_cell=min_cell)
    grid = build_grid(pos, frame)
    coords = np.clip(np.floor((pos - frame.origin) / frame.cell).astype(np.int64), 0, np.array(frame.dims) - 1)
    ids = (coords[:, 0] * frame.dims[1] + coords[:, 1]) * frame.dims[2] + coords[:, 2]
    np.testing.assert_array_equal(grid.order, np.argsort(ids, kind="stable"))
    np.testing.assert_array_equal(grid.pos, pos[grid.order])
    np.testing.assert_array_equal(grid.cell_ids, np.unique(ids))
    np.testing.assert_array_equal(np.diff(grid.starts), np.unique(ids, return_counts=True)[1])


def test_non_finite_rows_counted_in_the_error():
    pos = np.zeros((5, 3))
    pos[1, 0], pos[3] = np.nan, np.inf
    with pytest.raises(ValueError, match="^2 positions are not finite"):
        grid_frame(pos, min_cell=1.0)

import numpy as np
import pytest

from kernels.voids import (
    VoidFinderParams,
    box_mask,
    empty_cell_grid,
    find_voids,
    grid_origin,
    grow_holes,
    join_holes,
    select_maximals,
    sky_mask,
    split_wall_field,
    void_volumes,
)

L = 160.0
DENSITY = 0.005  # h^3 Mpc^-3: mean separation ~6 h^-1 Mpc, Poisson voids stay under ~11 h^-1 Mpc
BOX = box_mask([0.0, 0.0, 0.0], [L, L, L])


def carved_box(spheres: np.ndarray, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pts = rng.uniform(0.0, L, size=(int(DENSITY * L**3), 3))
    for s in spheres:
        pts = pts[np.sum((pts - s[:3]) ** 2, axis=1) > s[3] ** 2]
    return pts


def nearest_maximal(maximals: np.ndarray, sphere: np.ndarray) -> tuple[int, float]:
    d = np.linalg.norm(maximals[:, :3] - sphere[:3], axis=1)
    return int(d.argmin()), float(d.min())


PLANTED = np.array([[45.0, 50.0, 50.0, 18.0], [110.0, 105.0, 60.0, 22.0], [80.0, 110.0, 120.0, 15.0]])


@pytest.fixture(scope="module")
def box_catalog():
    return find_voids(carved_box(PLANTED), BOX)


def test_planted_box_voids_are_the_largest_and_recovered(box_catalog):
    cat = box_catalog
    assert len(cat.maximals) >= 3
    assert np.all(np.diff(cat.maximals[:, 3]) <= 0)
    for s in PLANTED:
        i, d = nearest_maximal(cat.maximals, s)
        assert i < 3, "a planted void is not among the three largest maximals"
        assert d < 1.5
        assert -0.5 < cat.maximals[i, 3] - s[3] < 2.0
        assert cat.edge[i] == 0
    # Poisson voids at this density stay well below the smallest planted one.
    assert cat.maximals[3:, 3].max(initial=0.0) < 13.0


def test_holes_belong_to_voids_and_maximals_are_holes(box_catalog):
    cat = box_catalog
    assert len(cat.holes) == len(cat.hole_void)
    assert np.all(np.diff(cat.hole_void) >= 0)
    first = np.searchsorted(cat.hole_void, np.arange(len(cat.maximals)))
    np.testing.assert_array_equal(cat.holes[first], cat.maximals)
    # Every hole overlaps its maximal by at least half its own volume, so its centre is inside the maximal.
    m = cat.maximals[cat.hole_void]
    assert np.all(np.linalg.norm(cat.holes[:, :3] - m[:, :3], axis=1) < m[:, 3])
    # R_EFF: at least the maximal sphere, at most the sum of the hole volumes.
    hole_volume = np.bincount(cat.hole_void, 4 / 3 * np.pi * cat.holes[:, 3] ** 3)
    assert np.all(cat.r_eff >= cat.maximals[:, 3] * 0.97)
    assert np.all(4 / 3 * np.pi * cat.r_eff**3 <= hole_volume * 1.03)


def test_chunking_does_not_change_the_result(box_catalog):
    small = find_voids(carved_box(PLANTED), BOX, VoidFinderParams(chunk_cells=997))
    np.testing.assert_allclose(small.maximals, box_catalog.maximals)
    np.testing.assert_array_equal(small.hole_void, box_catalog.hole_void)


def test_holes_grown_on_a_dask_cluster_equal_one_call(box_catalog):
    from distributed import Client, LocalCluster

    # Worker processes: the mask closure and the galaxy cells must survive pickling.
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        split = find_voids(carved_box(PLANTED), BOX, VoidFinderParams(chunk_cells=20_000), client)
    np.testing.assert_array_equal(split.maximals, box_catalog.maximals)
    np.testing.assert_array_equal(split.holes, box_catalog.holes)
    np.testing.assert_array_equal(split.hole_void, box_catalog.hole_void)


def test_void_on_the_boundary_is_flagged_edge():
    spheres = np.array([[14.0, 80.0, 80.0, 20.0], [100.0, 80.0, 80.0, 20.0]])
    cat = find_voids(carved_box(spheres, seed=3), BOX)
    i_edge, _ = nearest_maximal(cat.maximals, spheres[0])
    i_in, d_in = nearest_maximal(cat.maximals, spheres[1])
    assert cat.edge[i_edge] == 1
    assert cat.edge[i_in] == 0 and d_in < 1.5


def test_hole_grows_to_the_sphere_through_four_galaxies():
    rng = np.random.default_rng(7)
    tetrahedron = np.array([[1.0, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / np.sqrt(3.0)
    on_sphere = 10.0 * tetrahedron
    far = rng.normal(size=(300, 3))
    far = far / np.linalg.norm(far, axis=1, keepdims=True) * rng.uniform(12.0, 40.0, (300, 1))
    out = grow_holes(np.array([[0.5, -0.3, 0.2]]), np.concatenate([on_sphere, far]), search_edge=5.0)
    np.testing.assert_allclose(out[0, :3], 0.0, atol=1e-9)
    assert out[0, 3] == pytest.approx(10.0, abs=1e-9)


def test_wall_field_split():
    rng = np.random.default_rng(2)
    grid = np.stack(np.meshgrid(*[np.arange(10.0)] * 3), axis=-1).reshape(-1, 3)
    is_field, threshold, _, _ = split_wall_field(grid)
    assert not is_field.any()  # a lattice: every 3rd neighbour at the same distance, all wall
    assert threshold == pytest.approx(1.0)
    clumps = np.concatenate([grid, rng.uniform(200.0, 300.0, (5, 3))])
    is_field = split_wall_field(clumps).is_field
    assert is_field[-5:].all() and not is_field[:-5].any()


@pytest.mark.parametrize("n", [0, 1, 3])
def test_too_few_galaxies_give_no_voids(n):
    cat = find_voids(np.full((n, 3), 50.0), BOX)
    assert cat.maximals.shape == (0, 4) and cat.holes.shape == (0, 4)
    assert len(cat.is_field) == n and not cat.is_field.any()


def test_a_dense_jittered_lattice_has_no_voids():
    grid = np.stack(np.meshgrid(*[np.arange(0.0, 60.0, 2.0)] * 3), axis=-1).reshape(-1, 3)
    grid += np.random.default_rng(0).normal(0.0, 0.05, grid.shape)
    cat = find_voids(grid, box_mask([0, 0, 0], [58, 58, 58]))
    assert cat.is_field.mean() < 0.1
    assert len(cat.maximals) == 0


def test_maximal_overlap_rule_and_join_rule():
    # Radii 20 and 15: 4.5% of the small sphere's volume overlaps at d=32.4, 20% at d=27.3.
    holes = np.array([[0, 0, 0, 20.0], [32.4, 0, 0, 15.0], [0, 27.3, 0, 15.0], [0, 0, -60, 9.0]])
    np.testing.assert_array_equal(select_maximals(holes, min_radius=10.0, frac=0.1), [0, 1])
    maximals = holes[[0, 1]]
    small = np.array([[5.0, 0, 0, 6.0], [18.7, 0, 0, 1.2], [0, 0, -60, 9.0], [21.0, 0, 0, 3.0]])
    # Inside the first; in the lens of both (>=50% in each: dropped); far away; mostly in the second.
    np.testing.assert_array_equal(join_holes(small, maximals, 0.5), [0, -1, -1, 1])


def test_sky_mask_uses_distance_and_angular_mask():
    mask = sky_mask(lambda ra, dec: dec > 0, 100.0, 200.0)
    pts = np.array([[0, 0, 150.0], [0, 0, -150.0], [0, 0, 50.0], [150.0, 0, 1.0]])
    np.testing.assert_array_equal(mask(pts), [True, False, False, True])


# --- the grid origin ------------------------------------------------------------------------------------------
def test_default_grid_origin_is_the_minimum_over_wall_and_field():
    rng = np.random.default_rng(4)
    wall = rng.uniform(0.0, 60.0, (6000, 3))
    field = np.array([[-40.0, 10.0, 20.0], [30.0, -35.0, 50.0], [20.0, 40.0, -30.0]])  # isolated, below the wall
    xyz = np.concatenate([wall, field])
    cat = find_voids(xyz, box_mask([-50.0] * 3, [60.0] * 3))
    assert cat.is_field[-3:].all()
    np.testing.assert_array_equal(cat.grid_origin, [-40.0, -35.0, -30.0])
    np.testing.assert_array_equal(grid_origin(xyz), xyz.min(axis=0))
    assert np.all(cat.grid_origin < xyz[~cat.is_field].min(axis=0))  # not the wall galaxies' minimum
    np.testing.assert_array_equal(grid_origin(xyz, VoidFinderParams(grid_origin=[1, 2, 3])), [1.0, 2.0, 3.0])


def test_empty_cell_grid_follows_vast():
    wall = np.array([[0.5, 0.5, 0.5], [20.0, 20.0, 20.0], [-3.0, 7.0, 7.0], [-6.0, 7.0, 7.0]])
    grid, occupied = empty_cell_grid(wall, 5.0, np.array([0.0, 0.0, 0.0]))
    np.testing.assert_array_equal(grid.dims, [4, 4, 4])  # ceil(20 / 5): the far-edge galaxy is in the last cell
    flat = lambda i, j, k: (i * 4 + j) * 4 + k  # noqa: E731
    # -3 truncates to cell 0 (as VAST's int cast); -6 is more than a cell below the origin: off the grid
    np.testing.assert_array_equal(occupied, sorted([flat(0, 0, 0), flat(3, 3, 3), flat(0, 1, 1)]))
    grid, _ = empty_cell_grid(wall, 5.0)
    np.testing.assert_array_equal(grid.lo, [-6.0, 0.5, 0.5])
    with pytest.raises(ValueError, match="grid_origin .* is not below the wall galaxies' maximum"):
        empty_cell_grid(wall, 5.0, np.array([0.0, 30.0, 0.0]))


def test_explicit_grid_origin_shifts_the_grid_reproducibly(box_catalog):
    pts = carved_box(PLANTED)
    np.testing.assert_array_equal(box_catalog.grid_origin, pts.min(axis=0))
    same = find_voids(pts, BOX, VoidFinderParams(grid_origin=tuple(pts.min(axis=0))))
    np.testing.assert_array_equal(same.holes, box_catalog.holes)  # explicit default = default
    shift = tuple(pts.min(axis=0) - 2.5)  # half a cell
    shifted = find_voids(pts, BOX, VoidFinderParams(grid_origin=shift))
    again = find_voids(pts, BOX, VoidFinderParams(grid_origin=shift))
    np.testing.assert_array_equal(shifted.grid_origin, shift)
    np.testing.assert_array_equal(shifted.holes, again.holes)
    np.testing.assert_array_equal(shifted.hole_void, again.hole_void)
    assert len(shifted.holes) != len(box_catalog.holes) or not np.array_equal(shifted.holes, box_catalog.holes)
    for s in PLANTED:  # other seeds, the same planted voids
        assert nearest_maximal(shifted.maximals, s)[1] < 1.5


@pytest.mark.parametrize("origin", [(1.0, 2.0), (0.0, np.nan, 0.0), "abc"])
def test_bad_grid_origin_is_refused(origin):
    with pytest.raises(ValueError, match="grid_origin must be 3 finite numbers"):
        VoidFinderParams(grid_origin=origin)


def test_void_volume_and_its_binomial_error():
    volume, error = void_volumes(np.array([[0.0, 0.0, 0.0, 10.0]]), np.array([0]), 1, spacing=1.0)
    count, total = volume[0], 20**3  # grid points inside, in the bounding box
    assert error[0] == pytest.approx(np.sqrt(count * (total - count) / total))
    assert abs(volume[0] - 4 / 3 * np.pi * 1000) < error[0]  # 4224 counted, 44.7 error, 4188.8 true


def test_r_eff_uncertainty(box_catalog):
    cat = box_catalog
    assert cat.r_eff_uncert.shape == cat.r_eff.shape
    assert np.all(cat.r_eff_uncert > 0) and np.all(cat.r_eff_uncert < 0.02 * cat.r_eff)

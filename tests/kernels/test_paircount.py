"""kernels.paircount against Corrfunc (integer counts identical) and against exact small cases."""

from __future__ import annotations

import numpy as np
import pytest

from kernels.paircount import dask_pair_counts, landy_szalay, multipoles, pair_counts

Corrfunc = pytest.importorskip("Corrfunc", reason="Corrfunc is the oracle (pip install Corrfunc; needs libgsl-dev)")
from Corrfunc.mocks import DDsmu_mocks  # noqa: E402
from Corrfunc.theory import DD, DDsmu  # noqa: E402

EDGES = np.array([0.5, 2.0, 5.0, 10.0, 15.0, 22.0])


@pytest.fixture(scope="module")
def points() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    data = rng.uniform(0, 80, (4000, 3))
    other = rng.uniform(30, 110, (3000, 3))
    return data, other, rng.uniform(0.2, 2.0, len(data))


def test_auto_counts_equal_corrfunc(points):
    data, _, _ = points
    ref = DD(1, 1, EDGES, *data.T, periodic=False)
    np.testing.assert_array_equal(pair_counts(data, EDGES).npairs, ref["npairs"])


def test_self_pairs_in_first_bin_from_zero_as_corrfunc(points):
    data, _, _ = points
    edges = np.r_[0.0, EDGES[1:]]
    got = pair_counts(data, edges).npairs
    np.testing.assert_array_equal(got, DD(1, 1, edges, *data.T, periodic=False)["npairs"])
    assert got[0] >= len(data)


def test_cross_counts_equal_corrfunc(points):
    data, other, _ = points
    ref = DD(0, 1, EDGES, *data.T, X2=other[:, 0], Y2=other[:, 1], Z2=other[:, 2], periodic=False)
    np.testing.assert_array_equal(pair_counts(data, EDGES, other).npairs, ref["npairs"])


def test_weighted_pair_sums_match_corrfunc(points):
    data, _, weights = points
    ref = DD(1, 1, EDGES, *data.T, weights1=weights, weight_type="pair_product", periodic=False)
    got = pair_counts(data, EDGES, weights1=weights)
    np.testing.assert_array_equal(got.npairs, ref["npairs"])
    np.testing.assert_allclose(got.wpairs, ref["npairs"] * ref["weightavg"], rtol=1e-10)  # summation order differs


def test_smu_counts_z_line_of_sight_equal_corrfunc(points):
    data, _, _ = points
    ref = DDsmu(1, 1, EDGES, 1.0, 8, *data.T, periodic=False)
    got = pair_counts(data, EDGES, n_mu=8)
    assert got.npairs.shape == (len(EDGES) - 1, 8)
    np.testing.assert_array_equal(got.npairs.ravel(), ref["npairs"])


def test_smu_counts_midpoint_line_of_sight_equal_corrfunc_mocks():
    rng = np.random.default_rng(3)
    n = 3000
    ra, dec, dist = rng.uniform(150, 165, n), rng.uniform(-5, 10, n), rng.uniform(400, 520, n)
    ra_r, dec_r = np.radians(ra), np.radians(dec)
    xyz = np.c_[dist * np.cos(dec_r) * np.cos(ra_r), dist * np.cos(dec_r) * np.sin(ra_r), dist * np.sin(dec_r)]
    ref = DDsmu_mocks(1, 1, 1, 1.0, 6, EDGES, ra, dec, dist, is_comoving_dist=True)
    got = pair_counts(xyz, EDGES, n_mu=6, los="midpoint")
    np.testing.assert_array_equal(got.npairs.ravel(), ref["npairs"])


def test_exact_small_cases():
    one = np.array([[1.0, 2.0, 3.0]])
    assert pair_counts(one, EDGES).npairs.sum() == 0
    assert pair_counts(one, [0.0, 1.0]).npairs.tolist() == [1]  # its self-pair, as Corrfunc counts it
    empty = np.zeros((0, 3))
    assert pair_counts(empty, EDGES).npairs.tolist() == [0] * 5
    assert pair_counts(empty, EDGES, one).npairs.sum() == 0
    two = np.array([[0.0, 0.0, 0.0], [3.0, 4.0, 0.0]])  # 5 apart, exactly on an edge: in the upper bin
    assert pair_counts(two, EDGES).npairs.tolist() == [0, 0, 2, 0, 0]
    far = np.array([[0.0, 0.0, 0.0], [1e6, 0.0, 0.0]])  # an empty middle and a huge extent
    assert pair_counts(far, EDGES).npairs.sum() == 0
    along_z = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 3.0]])  # mu = 1 goes in the last mu bin
    assert pair_counts(along_z, EDGES, n_mu=4).npairs[1].tolist() == [0, 0, 0, 2]


def test_non_finite_positions_are_refused():
    pos = np.zeros((3, 3))
    pos[1, 2] = np.nan
    with pytest.raises(ValueError, match="1 positions are not finite"):
        pair_counts(pos, EDGES)


@pytest.mark.parametrize("kwargs", [{"edges": [5.0, 1.0]}, {"edges": [-1.0, 1.0]}, {"edges": [1.0]},
                                    {"edges": [1.0, 2.0], "los": "sky"}, {"edges": [1.0, 2.0], "n_mu": -1}])
def test_bad_arguments_are_refused(kwargs):
    with pytest.raises(ValueError):
        pair_counts(np.zeros((2, 3)), **kwargs)


def test_dask_split_equals_one_call(points):
    from distributed import Client, LocalCluster

    data, other, weights = points
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False) as cluster, Client(cluster) as client:
        for kwargs in ({}, {"pos2": other}, {"weights1": weights, "n_mu": 4}):
            split = dask_pair_counts(client, data, EDGES, chunks=7, **kwargs)
            whole = pair_counts(data, EDGES, **kwargs)
            np.testing.assert_array_equal(split.npairs, whole.npairs)
            np.testing.assert_allclose(split.wpairs, whole.wpairs, rtol=1e-12)


def test_landy_szalay_of_unclustered_points_is_near_zero():
    rng = np.random.default_rng(11)
    data, randoms = rng.uniform(0, 100, (6000, 3)), rng.uniform(0, 100, (12000, 3))
    edges = np.array([5.0, 10.0, 20.0])
    dd, dr, rr = pair_counts(data, edges), pair_counts(data, edges, randoms), pair_counts(randoms, edges)
    xi = landy_szalay(dd, dr, rr, np.ones(len(data)), np.ones(len(randoms)))
    assert np.all(np.abs(xi) < 0.05)


def test_landy_szalay_of_clustered_points_is_positive_at_small_scales():
    rng = np.random.default_rng(12)
    centres = rng.uniform(0, 100, (200, 3))
    data = (centres[:, None, :] + rng.normal(0, 2.0, (200, 20, 3))).reshape(-1, 3)
    randoms = rng.uniform(-5, 105, (12000, 3))
    edges = np.array([0.5, 4.0, 40.0])
    dd, dr, rr = pair_counts(data, edges), pair_counts(data, edges, randoms), pair_counts(randoms, edges)
    xi = landy_szalay(dd, dr, rr, np.ones(len(data)), np.ones(len(randoms)))
    assert xi[0] > 10 and abs(xi[1]) < xi[0] / 10


def test_multipoles_of_known_shapes():
    mu_edges = np.linspace(0, 1, 201)
    mu = 0.5 * (mu_edges[1:] + mu_edges[:-1])
    flat = np.full((3, 200), 0.7)
    np.testing.assert_allclose(multipoles(flat, mu_edges), [[0.7] * 3, [0.0] * 3], atol=1e-12)
    p2 = np.tile(0.5 * (3 * mu**2 - 1), (2, 1))  # xi = P2(mu): quadrupole 1, monopole 0 (up to bin width)
    np.testing.assert_allclose(multipoles(p2, mu_edges), [[0, 0], [1, 1]], atol=1e-4)
    with pytest.raises(ValueError):
        multipoles(flat, np.linspace(0, 0.5, 201))
    holed = flat.copy()
    holed[1, 7] = np.nan  # a (s, mu) cell without random pairs: its multipoles are unknown, not biased
    assert np.isnan(multipoles(holed, mu_edges)[:, 1]).all() and not np.isnan(multipoles(holed, mu_edges)[:, 0]).any()


@pytest.mark.gpu
@pytest.mark.parametrize("sparse", [False, True], ids=["cell-table", "binary-search"])
def test_cupy_counts_equal_numpy_counts(cupy, points, monkeypatch, sparse):
    data, other, weights = points
    if sparse:  # frames with too many cells for a dense table find their cells by binary search
        monkeypatch.setattr("kernels.paircount.DENSE_CELLS_MAX", 0)
    # Private histograms per thread (few bins), per warp (weighted n_mu=8, n_mu=20) and none (3,500 bins: past a
    # block's default shared memory).
    cases = ({}, {"pos2": other}, {"weights1": weights}, {"weights1": weights, "n_mu": 8},
             {"n_mu": 5, "los": "midpoint"}, {"edges": np.r_[0.0, EDGES[1:]]}, {"n_mu": 20}, {"n_mu": 700})
    for kwargs in cases:
        edges = kwargs.pop("edges", EDGES)
        host = pair_counts(data, edges, **kwargs)
        dev_kwargs = {k: cupy.asarray(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
        dev = pair_counts(cupy.asarray(data), edges, **dev_kwargs)
        np.testing.assert_array_equal(dev.npairs, host.npairs)
        np.testing.assert_allclose(dev.wpairs, host.wpairs, rtol=1e-10)

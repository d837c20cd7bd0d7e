"""kernels.paircount against Corrfunc (integer counts identical), against exact sums and small exact cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kernels.paircount import dask_pair_counts, landy_szalay, multipoles, pair_counts, prepare

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
                                    {"edges": [1.0, 2.0], "los": "sky"}, {"edges": [1.0, 2.0], "n_mu": -1},
                                    {"edges": [1.0, 2.0], "conventions": "halotools"}])
def test_bad_arguments_are_refused(kwargs):
    with pytest.raises(ValueError):
        pair_counts(np.zeros((2, 3)), **kwargs)


def brute_force(pos1, edges, pos2=None, weights1=None, weights2=None, n_mu=0, mu_max=1.0):
    """Exact reference (z line of sight, astrolab conventions, no self-pairs): integer counts and math.fsum of
    the pair weights per bin, from separations and mu computed with the same floating-point operations as the
    kernel."""
    auto = pos2 is None
    pos2 = pos1 if auto else pos2
    w1 = np.ones(len(pos1)) if weights1 is None else weights1
    w2 = w1 if auto else (np.ones(len(pos2)) if weights2 is None else weights2)
    edges2 = np.asarray(edges, dtype=np.float64) ** 2
    nb, nm = len(edges) - 1, max(n_mu, 1)
    terms: list[list[float]] = [[] for _ in range(nb * nm)]
    for i in range(len(pos1)):
        d = pos1[i] - pos2
        r2 = d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1] + d[:, 2] * d[:, 2]
        s = np.searchsorted(edges2, r2, side="right") - 1
        keep = (s >= 0) & (s < nb)
        m = np.zeros(len(pos2), dtype=np.int64)
        if n_mu:
            with np.errstate(invalid="ignore"):
                mu = np.where(r2 > 0, np.abs(d[:, 2]) / np.sqrt(r2), 0.0)
            keep &= mu <= mu_max
            m = np.minimum((mu * n_mu / mu_max).astype(np.int64), n_mu - 1)
        if auto:
            keep[i] = False  # self-pairs: the tests add them where they belong
        for b in np.unique(s[keep] * nm + m[keep]):
            terms[b].extend((w1[i] * w2[keep & (s * nm + m == b)]).tolist())
    counts = np.array([len(t) for t in terms]).reshape(nb, nm)
    wsums = np.array([math.fsum(t) for t in terms]).reshape(nb, nm)
    return (counts, wsums) if n_mu else (counts[:, 0], wsums[:, 0])


@pytest.fixture(scope="module")
def sparse_next_to_dense() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A dense clump (its pairs below 1), a second clump 6 away (cross pairs 4 to 8 apart) and six lone pairs
    1.0003 apart, far from both: a bin [1, 1.001) of a dozen pairs between two of millions, where a difference
    of cumulative sums keeps only a few digits. Weights span eight decades."""
    rng = np.random.default_rng(21)
    lone = rng.uniform(50, 150, (6, 3))
    pos = np.concatenate([rng.normal(0, 0.15, (900, 3)), rng.normal(0, 0.15, (500, 3)) + [6.0, 0, 0],
                          lone, lone + [1.0003, 0, 0]])
    return pos, np.array([0.01, 1.0, 1.001, 10.0]), 10 ** rng.uniform(-4, 4, len(pos))


@pytest.mark.parametrize("n_mu", [0, 3], ids=["s", "s-mu"])
def test_weighted_sums_exact_in_a_sparse_bin_next_to_dense_ones(sparse_next_to_dense, n_mu):
    pos, edges, weights = sparse_next_to_dense
    counts, wsums = brute_force(pos, edges, weights1=weights, n_mu=n_mu)
    assert counts[1].sum() == 12 and counts[0].sum() > 100_000 and counts[2].sum() > 100_000
    got = pair_counts(pos, edges, weights1=weights, n_mu=n_mu)
    np.testing.assert_array_equal(got.npairs, counts)
    np.testing.assert_allclose(got.wpairs, wsums, rtol=1e-12, atol=0)
    unweighted = pair_counts(pos, edges, n_mu=n_mu)
    np.testing.assert_array_equal(unweighted.npairs, counts)
    np.testing.assert_array_equal(unweighted.wpairs, counts)


def test_weighted_cross_sums_exact_in_a_sparse_bin_next_to_dense_ones(sparse_next_to_dense):
    pos, edges, weights = sparse_next_to_dense
    half = len(pos) // 2
    order = np.random.default_rng(4).permutation(len(pos))
    a, b = order[:half], order[half:]
    counts, wsums = brute_force(pos[a], edges, pos[b], weights[a], weights[b])
    got = pair_counts(pos[a], edges, pos[b], weights[a], weights[b])
    np.testing.assert_array_equal(got.npairs, counts)
    np.testing.assert_allclose(got.wpairs, wsums, rtol=1e-12, atol=0)


@pytest.fixture(scope="module")
def edge_cases() -> tuple[np.ndarray, np.ndarray]:
    """Random points on a coarse lattice (many pairs exactly along z, so mu = 1, and at mu = 0.6 = 3/5), three
    copies of one point and two of another (coincident pairs, s = 0), with weights."""
    rng = np.random.default_rng(5)
    pos = rng.integers(0, 12, (400, 3)).astype(np.float64)
    pos = np.concatenate([pos, [[3.0, 3.0, 3.0]] * 3, [[7.5, 1.5, 9.5]] * 2])
    return pos, rng.uniform(0.5, 2.0, len(pos))


def corrfunc_ddsmu(pos, edges, mu_max, n_mu, weights):
    ref = DDsmu(1, 1, edges, mu_max, n_mu, *pos.T, weights1=weights, weight_type="pair_product", periodic=False,
                verbose=False)
    return ref["npairs"].reshape(len(edges) - 1, n_mu), (ref["npairs"] * ref["weightavg"]).reshape(len(edges) - 1,
                                                                                                   n_mu)


@pytest.mark.parametrize("mu_max", [1.0, 0.6])
def test_corrfunc_conventions_equal_ddsmu_at_mu_max_and_at_zero_separation(edge_cases, mu_max):
    pos, weights = edge_cases
    edges = np.array([0.0, 2.0, 3.5, 5.5])
    ref_counts, ref_wsums = corrfunc_ddsmu(pos, edges, mu_max, 5, weights)
    got = pair_counts(pos, edges, weights1=weights, n_mu=5, mu_max=mu_max, conventions="corrfunc")
    np.testing.assert_array_equal(got.npairs, ref_counts)
    np.testing.assert_allclose(got.wpairs, ref_wsums, rtol=1e-12)
    # Corrfunc's choices, seen here: pairs at mu = mu_max dropped, distinct coincident points dropped, self-pairs
    # counted without their weight; the astrolab conventions keep all three.
    ours = pair_counts(pos, edges, weights1=weights, n_mu=5, mu_max=mu_max)
    assert ours.npairs[:, -1].sum() > ref_counts[:, -1].sum()
    _, copies = np.unique(pos, axis=0, return_counts=True)
    coincident = int((copies * (copies - 1)).sum())  # ordered pairs of distinct points at s = 0
    assert coincident >= 2 * (3 + 1) and ours.npairs[0, 0] == ref_counts[0, 0] + coincident
    assert ref_counts[0, 0] >= len(pos) and ref_wsums[0, 0] < ours.wpairs[0, 0]


def test_astrolab_conventions_equal_brute_force_and_the_separation_only_counts(edge_cases):
    pos, weights = edge_cases
    edges = np.array([0.0, 2.0, 3.5, 5.5])
    counts, wsums = brute_force(pos, edges, weights1=weights, n_mu=5)
    counts[0, 0] += len(pos)  # self-pairs, in the first bin as it starts at 0
    wsums[0, 0] = math.fsum([wsums[0, 0], *(weights**2).tolist()])
    got = pair_counts(pos, edges, weights1=weights, n_mu=5)
    np.testing.assert_array_equal(got.npairs, counts)
    np.testing.assert_allclose(got.wpairs, wsums, rtol=1e-12)
    flat = pair_counts(pos, edges, weights1=weights)
    np.testing.assert_array_equal(got.npairs.sum(axis=1), flat.npairs)
    np.testing.assert_allclose(got.wpairs.sum(axis=1), flat.wpairs, rtol=1e-12)
    capped = pair_counts(pos, edges, n_mu=5, mu_max=0.6)  # mu = 0.6 exactly: in the last bin
    ref, _ = brute_force(pos, edges, n_mu=5, mu_max=0.6)
    ref[0, 0] += len(pos)
    np.testing.assert_array_equal(capped.npairs, ref)


@pytest.mark.parametrize("conventions", ["astrolab", "corrfunc"])
def test_separation_only_counts_equal_dd_under_both_conventions(edge_cases, conventions):
    pos, weights = edge_cases
    edges = np.array([0.0, 2.0, 3.5, 5.5])
    ref = DD(1, 1, edges, *pos.T, weights1=weights, weight_type="pair_product", periodic=False, verbose=False)
    got = pair_counts(pos, edges, weights1=weights, conventions=conventions)
    np.testing.assert_array_equal(got.npairs, ref["npairs"])
    np.testing.assert_allclose(got.wpairs, ref["npairs"] * ref["weightavg"], rtol=1e-12)


def test_corrfunc_conventions_equal_ddsmu_mocks_along_the_line_of_sight():
    rng = np.random.default_rng(9)
    ra, dec, dist = rng.uniform(150, 165, 1500), rng.uniform(-5, 10, 1500), rng.uniform(400, 440, 1500)
    # Points on the x axis (ra = dec = 0, so exact in both codes' Cartesian coordinates): pairs along the LOS.
    ra, dec, dist = np.r_[ra, 0, 0, 0], np.r_[dec, 0, 0, 0], np.r_[dist, 400.0, 403.0, 404.5]
    ra_r, dec_r = np.radians(ra), np.radians(dec)
    xyz = np.c_[dist * np.cos(dec_r) * np.cos(ra_r), dist * np.cos(dec_r) * np.sin(ra_r), dist * np.sin(dec_r)]
    ref = DDsmu_mocks(1, 1, 1, 1.0, 6, EDGES, ra, dec, dist, is_comoving_dist=True, verbose=False)
    got = pair_counts(xyz, EDGES, n_mu=6, los="midpoint", conventions="corrfunc")
    np.testing.assert_array_equal(got.npairs.ravel(), ref["npairs"])
    ours = pair_counts(xyz, EDGES, n_mu=6, los="midpoint")
    assert ours.npairs[:, -1].sum() == got.npairs[:, -1].sum() + 6  # three pairs along the LOS, in the last bin


def test_binary_search_of_cells_equals_the_dense_cell_table(points, monkeypatch):
    data, other, weights = points
    cases = ({}, {"pos2": other}, {"weights1": weights, "n_mu": 4}, {"n_mu": 3, "conventions": "corrfunc"})
    tabled = [pair_counts(data, EDGES, **kwargs) for kwargs in cases]
    # Frames with more cells than the CPU's limit find their columns by binary search in the non-empty cells.
    assert prepare(data, EDGES).dense_starts is not None
    monkeypatch.setattr("kernels.paircount._dense_cells_cpu", lambda n: 0)
    assert prepare(data, EDGES).dense_starts is None
    for kwargs, want in zip(cases, tabled):
        got = pair_counts(data, EDGES, **kwargs)
        np.testing.assert_array_equal(got.npairs, want.npairs)
        np.testing.assert_array_equal(got.wpairs, want.wpairs)


def test_dask_split_equals_one_call(points):
    from distributed import Client, LocalCluster

    data, other, weights = points
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False) as cluster, Client(cluster) as client:
        for kwargs in ({}, {"pos2": other}, {"weights1": weights, "n_mu": 4},
                       {"weights1": weights, "n_mu": 4, "conventions": "corrfunc"}):
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
             {"n_mu": 5, "los": "midpoint"}, {"edges": np.r_[0.0, EDGES[1:]]}, {"n_mu": 20}, {"n_mu": 700},
             {"edges": np.r_[0.0, EDGES[1:]], "weights1": weights, "n_mu": 4, "mu_max": 0.5, "conventions": "corrfunc"})
    for kwargs in cases:
        edges = kwargs.pop("edges", EDGES)
        host = pair_counts(data, edges, **kwargs)
        dev_kwargs = {k: cupy.asarray(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
        dev = pair_counts(cupy.asarray(data), edges, **dev_kwargs)
        np.testing.assert_array_equal(dev.npairs, host.npairs)
        np.testing.assert_allclose(dev.wpairs, host.wpairs, rtol=1e-10)

"""tasks.science.clustering: randoms from the footprint, xi(s, mu) through the pair-count kernel."""

from __future__ import annotations

import numpy as np
import pytest

from kernels.healpix import ang2pix_nest
from kernels.paircount import pair_counts
from tasks.science.clustering import footprint_randoms, measure_xi, points


def patch(rng, n, ra=(150, 170), dec=(0, 15), z=(0.1, 0.3)):
    """Points uniform over an RA/Dec box (in solid angle) and a redshift range."""
    s = rng.uniform(np.sin(np.radians(dec[0])), np.sin(np.radians(dec[1])), n)
    return points(rng.uniform(*ra, n), np.degrees(np.arcsin(s)), rng.uniform(*z, n))


def test_randoms_fill_the_data_footprint_with_the_data_redshifts():
    data = patch(np.random.default_rng(1), 5000)
    rand = footprint_randoms(data, factor=3.0, order=5, seed=2)
    assert len(rand) == 15000
    assert set(np.unique(ang2pix_nest(5, rand.ra, rand.dec))) <= set(np.unique(ang2pix_nest(5, data.ra, data.dec)))
    assert np.isin(rand.z, data.z).all()
    assert abs(np.median(rand.ra) - 160) < 1 and abs(rand.dec.mean() - data.dec.mean()) < 0.5
    again = footprint_randoms(data, factor=3.0, order=5, seed=2)
    np.testing.assert_array_equal(again.xyz, rand.xyz)
    assert len(footprint_randoms(points(np.zeros(0), np.zeros(0), np.zeros(0)), 3.0)) == 0


def test_xi_counts_are_the_kernel_counts_and_unclustered_data_give_xi_near_zero():
    rng = np.random.default_rng(3)
    data = patch(rng, 4000)
    rand = footprint_randoms(data, factor=4.0, order=6, seed=4)
    edges = np.linspace(10, 40, 4)
    result = measure_xi(data, rand, edges, n_mu=5)
    np.testing.assert_array_equal(result.dd, pair_counts(data.xyz, edges, n_mu=5, los="midpoint").npairs)
    np.testing.assert_array_equal(result.dr, pair_counts(data.xyz, edges, rand.xyz, n_mu=5, los="midpoint").npairs)
    assert result.xi_smu.shape == (3, 5) and np.all(np.abs(result.xi0) < 0.1)
    table = result.table()
    assert table.column_names[:5] == ["S_MIN", "S_MAX", "S_MID", "XI0", "XI2"] and table["S_MID"][0].as_py() == 15


def test_clustered_data_have_positive_xi_at_small_separations():
    rng = np.random.default_rng(5)
    base = patch(rng, 300)
    ra = (base.ra[:, None] + rng.normal(0, 0.15, (300, 10))).ravel()
    dec = (base.dec[:, None] + rng.normal(0, 0.15, (300, 10))).ravel()
    data = points(ra, dec, np.repeat(base.z, 10) + rng.normal(0, 0.001, 3000))
    rand = footprint_randoms(data, factor=4.0, order=5, seed=6)
    result = measure_xi(data, rand, np.array([1.0, 5.0, 60.0]), n_mu=4)
    assert result.xi0[0] > 5 * abs(result.xi0[1])


def test_first_edge_must_exclude_self_pairs_and_mu_bins_are_needed():
    data = patch(np.random.default_rng(7), 10)
    with pytest.raises(ValueError, match="> 0"):
        measure_xi(data, data, np.array([0.0, 1.0]), n_mu=2)
    with pytest.raises(ValueError, match="n_mu=0"):
        measure_xi(data, data, np.array([1.0, 2.0]), n_mu=0)

"""kernels.crossmatch against a brute-force nearest neighbour and exact edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from kernels.crossmatch import chord, nearest_within, nearest_within_xyz, unit_vectors


def brute_force(ra1, dec1, ra2, dec2, radius_deg):
    """Index of the nearest second-set point within the radius (argmin of the full distance matrix), or -1."""
    return brute_force_xyz(unit_vectors(ra1, dec1), unit_vectors(ra2, dec2), radius_deg)


def brute_force_xyz(v1, v2, radius_deg):
    if len(v2) == 0:
        return np.full(len(v1), -1)
    d2 = ((v1[:, None, :] - v2[None, :, :]) ** 2).sum(axis=-1)
    best = d2.argmin(axis=1)
    return np.where(d2[np.arange(len(v1)), best] <= chord(radius_deg) ** 2, best, -1)


def sky(rng, n):
    return rng.uniform(0, 360, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n)))


@pytest.mark.parametrize("radius", [0.5, 3.0, 40.0])
def test_matches_brute_force_over_the_sky(radius):
    rng = np.random.default_rng(int(radius * 10))
    (ra1, dec1), (ra2, dec2) = sky(rng, 1500), sky(rng, 2500)
    got = nearest_within(ra1, dec1, ra2, dec2, radius)
    want = brute_force(ra1, dec1, ra2, dec2, radius)
    np.testing.assert_array_equal(got.index, want)
    assert 0 < (want >= 0).sum() <= len(want)
    matched = want >= 0
    v1, v2 = unit_vectors(ra1[matched], dec1[matched]), unit_vectors(ra2[want[matched]], dec2[want[matched]])
    expected = np.degrees(np.arccos(np.clip((v1 * v2).sum(axis=1), -1, 1)))
    np.testing.assert_allclose(got.separation_deg[matched], expected, atol=1e-6)
    assert np.isnan(got.separation_deg[~matched]).all()


def test_ra_wrap_and_poles():
    ra1 = np.array([359.9997, 0.0004, 10.0, 200.0, 45.0])
    dec1 = np.array([0.0, 1.0, 89.9999, -89.9999, -30.0])
    ra2 = np.array([0.0002, 359.9999, 190.0, 20.0, 180.0])
    dec2 = np.array([0.0, 1.0, 89.9999, -89.9999, 30.0])
    got = nearest_within(ra1, dec1, ra2, dec2, 2 / 3600)
    # 1.8" across RA=0 on the equator and at dec 1; 0.72" across each pole; the last has nothing near it
    assert got.index.tolist() == [0, 1, 2, 3, -1]
    np.testing.assert_allclose(got.separation_deg[:4] * 3600, [1.8, 1.8 * np.cos(np.radians(1)), 0.72, 0.72],
                               atol=1e-6)
    np.testing.assert_array_equal(got.index, brute_force(ra1, dec1, ra2, dec2, 2 / 3600))


def test_ties_and_duplicates_take_the_smaller_index():
    ra2, dec2 = np.array([10.0, 10.0, 10.0]), np.array([5.0, 5.0, 5.0])
    got = nearest_within(np.array([10.0]), np.array([5.0]), ra2, dec2, 1.0)
    assert got.index.tolist() == [0] and got.separation_deg[0] == 0.0


def test_empty_sets_and_a_single_point():
    none = np.zeros(0)
    assert nearest_within(none, none, np.array([1.0]), np.array([1.0]), 1.0).index.shape == (0,)
    assert nearest_within(np.array([1.0]), np.array([1.0]), none, none, 1.0).index.tolist() == [-1]
    assert nearest_within(np.array([1.0]), np.array([1.0]), np.array([1.5]), np.array([1.0]), 1.0).index.tolist() == [0]


def test_dense_patch_with_duplicates_matches_brute_force():
    # A HATS-like patch: many second-set points per cell, a radius of about their spacing (so matches straddle cell
    # boundaries), first-set points also beyond the second set's box by up to the radius, and exact duplicates
    # appended to the second set (equal distances: the smaller index wins).
    rng = np.random.default_rng(11)
    ra2, dec2 = rng.uniform(150.0, 150.15, 3000), rng.uniform(30.0, 30.15, 3000)
    ra2, dec2 = np.concatenate([ra2, ra2[::7]]), np.concatenate([dec2, dec2[::7]])
    ra1, dec1 = rng.uniform(149.99, 150.16, 2000), rng.uniform(29.99, 30.16, 2000)
    radius = 10 / 3600
    got = nearest_within(ra1, dec1, ra2, dec2, radius)
    want = brute_force(ra1, dec1, ra2, dec2, radius)
    np.testing.assert_array_equal(got.index, want)
    assert 0.3 < (want >= 0).mean() < 0.99
    outside = (ra1 < 150.0) | (ra1 > 150.15) | (dec1 < 30.0) | (dec1 > 30.15)
    assert (want[outside] >= 0).any() and (want[outside] < 0).any()


def test_equal_distances_in_different_cells_take_the_smaller_index():
    # A shuffled lattice (dyadic steps, so distances are exact) and queries halfway between lattice points and at
    # square centres: every query has two or four nearest points at exactly the same distance, many in other cells.
    rng = np.random.default_rng(3)
    step = 1 / 64
    yy, zz = np.meshgrid(np.arange(-16, 17) * step, np.arange(-16, 17) * step)
    lattice = np.stack([np.ones(yy.size), yy.ravel(), zz.ravel()], axis=1)[rng.permutation(yy.size)]
    queries = np.concatenate([lattice[:300] + [0, step / 2, 0], lattice[300:600] + [0, step / 2, step / 2]])
    radius = np.degrees(step)  # chord ~ step: the nearest points (step / 2 and step / sqrt(2) away) are inside
    got = nearest_within_xyz(queries, lattice, radius)
    want = brute_force_xyz(queries, lattice, radius)
    np.testing.assert_array_equal(got.index, want)
    assert (want >= 0).sum() > 500


def test_a_point_exactly_at_the_radius_matches():
    c = chord(1.0)
    v1 = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    v2 = np.array([[1.0, 0.0, c], [1.0, 0.0, -np.nextafter(c, 1.0)]])  # exactly the chord away; a hair beyond
    assert nearest_within_xyz(v1[:1], v2, 1.0).index.tolist() == [0]
    assert nearest_within_xyz(v1[1:], v2[1:], 1.0).index.tolist() == [-1]


def test_positions_that_are_not_finite_are_refused():
    ok = np.array([1.0, 2.0])
    with pytest.raises(ValueError, match="1 positions are not finite"):
        nearest_within(ok, np.array([1.0, np.nan]), ok, ok, 1.0)
    with pytest.raises(ValueError, match="1 positions are not finite"):
        nearest_within(ok, ok, np.array([np.inf, 2.0]), ok, 1.0)


@pytest.mark.parametrize("radius", [0.0, -1.0, 180.0])
def test_bad_radius_is_refused(radius):
    with pytest.raises(ValueError, match="radius"):
        nearest_within(np.array([1.0]), np.array([1.0]), np.array([1.0]), np.array([1.0]), radius)


@pytest.mark.gpu
def test_cupy_matches_brute_force(cupy):
    rng = np.random.default_rng(5)
    (ra1, dec1), (ra2, dec2) = sky(rng, 3000), sky(rng, 4000)
    got = nearest_within(*(cupy.asarray(a) for a in (ra1, dec1, ra2, dec2)), 2.0)
    assert isinstance(got.index, cupy.ndarray)
    v1, v2 = unit_vectors(cupy.asarray(ra1), cupy.asarray(dec1)), unit_vectors(cupy.asarray(ra2), cupy.asarray(dec2))
    d2 = ((v1[:, None, :] - v2[None, :, :]) ** 2).sum(axis=-1)
    best = d2.argmin(axis=1)
    want = cupy.where(d2[cupy.arange(len(v1)), best] <= chord(2.0) ** 2, best, -1)
    np.testing.assert_array_equal(cupy.asnumpy(got.index), cupy.asnumpy(want))

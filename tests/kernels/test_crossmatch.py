"""kernels.crossmatch against a brute-force nearest neighbour and exact edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from kernels.crossmatch import chord, nearest_within, unit_vectors


def brute_force(ra1, dec1, ra2, dec2, radius_deg):
    """Index of the nearest second-set point within the radius (argmin of the full distance matrix), or -1."""
    v1, v2 = unit_vectors(ra1, dec1), unit_vectors(ra2, dec2)
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

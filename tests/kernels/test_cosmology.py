import numpy as np
import pytest
from astropy.cosmology import Planck18

from kernels.cosmology import Z_MAX, Z_MIN, comoving_distance, radec_to_xyz, redshift_at_distance


def astropy_dc(z):
    return Planck18.comoving_distance(np.asarray(z, dtype=float)).to_value("Mpc")


@pytest.fixture(scope="module")
def z_sample():
    rng = np.random.default_rng(42)
    z = np.concatenate(
        [
            rng.uniform(Z_MIN, Z_MAX, 6000),
            rng.uniform(Z_MIN, 0.6, 3000),  # low z is where the table is hardest
            10 ** rng.uniform(-6, 0, 1000),
            -(10 ** rng.uniform(-6, np.log10(0.05), 500)),
            [Z_MIN, Z_MAX, 0.5, 0.5 - 1e-12, 0.5 + 1e-12, 1e-6, -1e-6],
        ]
    )
    return z, astropy_dc(z)


def test_relative_error_against_astropy(z_sample):
    z, ref = z_sample
    got = comoving_distance(z)
    rel = np.abs(got - ref) / np.abs(ref)
    assert rel.max() <= 1e-9


def test_absolute_error_near_zero():
    z = np.concatenate([np.linspace(-1e-6, 1e-6, 201), 10 ** np.linspace(-15, -6, 50)])
    assert np.abs(comoving_distance(z) - astropy_dc(z)).max() <= 1e-9


def test_reference_values_and_zero():
    np.testing.assert_allclose(comoving_distance([0.1, 0.5, 1.0]), [432.566, 1946.417, 3395.634], atol=1e-3)
    assert comoving_distance(0.0) == 0.0
    assert comoving_distance(-0.0) == 0.0
    assert comoving_distance(-0.01) < 0


def test_out_of_range_and_nan_give_nan():
    z = np.array([Z_MIN - 1e-9, Z_MAX + 1e-9, -1.0, 100.0, np.nan, np.inf, -np.inf, Z_MIN, Z_MAX])
    d = comoving_distance(z)
    assert np.isnan(d[:7]).all()
    assert np.isfinite(d[7:]).all()


def test_mpc_over_h():
    z = np.array([0.1, 1.0, 3.0])
    np.testing.assert_allclose(comoving_distance(z, unit="Mpc/h"), astropy_dc(z) * Planck18.h, rtol=1e-9)
    with pytest.raises(ValueError, match="unit"):
        comoving_distance(z, unit="kpc")


def test_shapes_and_dtypes():
    assert comoving_distance(np.array([])).shape == (0,)
    assert comoving_distance(np.array([])).dtype == np.float64
    scalar = comoving_distance(1.0)
    assert scalar.shape == () and np.isclose(scalar, astropy_dc(1.0), rtol=1e-9)
    one = comoving_distance([1.0])
    assert one.shape == (1,) and one[0] == scalar
    grid = np.linspace(0, 2, 12, dtype=np.float32).reshape(3, 4)
    out = comoving_distance(grid)
    assert out.shape == (3, 4) and out.dtype == np.float64
    assert comoving_distance(np.array([1, 2])).dtype == np.float64


def test_inverse_round_trip_and_against_astropy(z_sample):
    z, ref = z_sample
    np.testing.assert_allclose(redshift_at_distance(comoving_distance(z)), z, rtol=1e-12, atol=1e-15)
    # Astropy's own distances invert to the same z within its integration noise (~1e-12 rel).
    np.testing.assert_allclose(redshift_at_distance(ref), z, rtol=1e-10, atol=1e-15)
    assert redshift_at_distance(0.0) == 0.0


def test_inverse_units_range_and_shapes():
    d_h = comoving_distance([0.3, 2.0], unit="Mpc/h")
    np.testing.assert_allclose(redshift_at_distance(d_h, unit="Mpc/h"), [0.3, 2.0], rtol=1e-12)
    lo, hi = comoving_distance([Z_MIN, Z_MAX])
    out = redshift_at_distance([lo, hi, lo - 1e-6, hi + 1e-6, np.nan, -np.inf])
    np.testing.assert_allclose(out[:2], [Z_MIN, Z_MAX], rtol=1e-12)
    assert np.isnan(out[2:]).all()
    assert redshift_at_distance(np.array([])).shape == (0,)
    assert redshift_at_distance(1000.0).shape == ()


def test_radec_to_xyz():
    from astropy.coordinates import spherical_to_cartesian

    rng = np.random.default_rng(1)
    ra, dec, d = rng.uniform(0, 360, 1000), rng.uniform(-90, 90, 1000), rng.uniform(0, 5000, 1000)
    x, y, z = radec_to_xyz(ra, dec, d)
    ex, ey, ez = spherical_to_cartesian(d, np.radians(dec), np.radians(ra))
    np.testing.assert_allclose(np.stack([x, y, z]), np.stack([ex, ey, ez]), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(radec_to_xyz(0.0, 0.0, 2.0), (2.0, 0.0, 0.0), atol=1e-15)
    np.testing.assert_allclose(radec_to_xyz(123.0, 90.0, 2.0), (0.0, 0.0, 2.0), atol=1e-15)
    assert radec_to_xyz(np.array([]), np.array([]), 1.0)[0].shape == (0,)


@pytest.mark.gpu
def test_cupy_matches_astropy(cupy, z_sample):
    z, ref = z_sample
    got = comoving_distance(cupy.asarray(z))
    assert isinstance(got, cupy.ndarray)
    assert (cupy.abs(got - cupy.asarray(ref)) / cupy.abs(cupy.asarray(ref))).max().item() <= 1e-9
    back = redshift_at_distance(got)
    np.testing.assert_allclose(cupy.asnumpy(back), z, rtol=1e-12, atol=1e-15)
    x, _, _ = radec_to_xyz(cupy.asarray([0.0]), cupy.asarray([0.0]), got[:1])
    assert isinstance(x, cupy.ndarray)


def test_compiled_cpu_path_equals_the_array_expression(z_sample):
    """numpy input runs a numba loop; the array expression (what cupy runs) must give the same bits."""
    z = np.concatenate([z_sample[0], [np.nan, np.inf, -1.0, 13.0, 0.0, 12.0]])
    for unit in ("Mpc", "Mpc/h"):
        np.testing.assert_array_equal(comoving_distance(z, unit), comoving_distance(z, unit, compiled=False))

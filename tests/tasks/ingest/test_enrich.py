"""Derived columns against astropy's Planck18 and healpy, and the HEALPIX check."""

import healpy as hp
import numpy as np
import pyarrow as pa
from astropy.cosmology import Planck18

from tasks.ingest.enrich import enrich, healpix_mismatches
from tasks.ingest.products import REDSHIFTS


def batch(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    ra = rng.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    ra[:3], dec[:3] = [0.0, 359.999999, 45.0], [90.0, -90.0, 0.0]  # poles, RA wrap, a pixel boundary
    z = rng.uniform(-0.002, 4.0, n)
    z[:2] = [0.0, 1e-7]
    return pa.table({
        "TARGETID": np.arange(n, dtype=np.int64),
        "HEALPIX": hp.ang2pix(64, ra, dec, nest=True, lonlat=True).astype(np.int32),
        "TARGET_RA": ra, "TARGET_DEC": dec, "Z": z,
    }), ra, dec, z


def test_derived_columns_match_oracles():
    table, ra, dec, z = batch()
    out = enrich(table, REDSHIFTS)
    want = Planck18.comoving_distance(z).value
    got = out["DIST_MPC"].to_numpy()
    big = np.abs(want) > 1e-3
    assert np.max(np.abs(got[big] - want[big]) / np.abs(want[big])) < 1e-9
    assert np.max(np.abs(got[~big] - want[~big])) < 1e-9
    np.testing.assert_allclose(out["DIST_MPCH"].to_numpy(), got * Planck18.h, rtol=1e-12)
    d = out["DIST_MPCH"].to_numpy()
    np.testing.assert_allclose(out["X_MPCH"].to_numpy(), d * np.cos(np.radians(dec)) * np.cos(np.radians(ra)),
                               atol=1e-9)
    np.testing.assert_allclose(out["Z_MPCH"].to_numpy(), d * np.sin(np.radians(dec)), atol=1e-9)
    h29 = out["_healpix_29"].to_numpy()
    np.testing.assert_array_equal(h29, hp.ang2pix(2**29, ra, dec, nest=True, lonlat=True))
    assert healpix_mismatches(out) == (0, [])


def test_healpix_mismatch_is_reported_with_examples():
    table, *_ = batch(50)
    wrong = table["HEALPIX"].to_numpy().copy()
    wrong[[4, 9]] = (wrong[[4, 9]] + 1) % 49152
    table = table.set_column(1, "HEALPIX", pa.array(wrong))
    count, examples = healpix_mismatches(enrich(table, REDSHIFTS))
    assert count == 2
    assert [e[0] for e in examples] == [4, 9] and examples[0][1] == wrong[4]

"""kernels/agn: demarcation curves, [NII]-BPT classes, broad lines, WISE colour cut, VAC bitmasks."""

from __future__ import annotations

import numpy as np
import pytest

from kernels import agn
from kernels.agn import BPT, AgnMaskbits, IrType, OptUvType


def lines(points, snr=10.0):
    """Hbeta, [OIII], Halpha, [NII] fluxes and IVARs (S/N `snr` each) for (x, y) BPT points."""
    x, y = np.asarray(points, dtype=float).T
    fluxes = [np.ones_like(x), 10.0**y, np.ones_like(x), 10.0**x]
    out = []
    for f in fluxes:
        out += [f, (snr / f) ** 2]
    return out


def classes(points, **kw):
    return agn.nii_bpt(*lines(points), **kw).bpt.tolist()


# --- curves ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("curve, x, expected", [
    # Kewley+01 eq. 5, Kauffmann+03 eq. 1, Schawinski+07 (values worked by hand to 6 decimals)
    (agn.kewley01, [-1.0, 0.0, 0.3], [0.775034, -0.107872, -2.398235]),
    (agn.kauffmann03, [-1.0, -0.5, 0.0], [0.719048, 0.190909, -10.9]),
    (agn.schawinski07, [-0.5, 0.0, 0.2], [-0.075, 0.45, 0.66]),
])
def test_curves_match_published_formulae(curve, x, expected):
    np.testing.assert_allclose(curve(np.array(x)), expected, atol=1e-6)


def test_curves_are_nan_beyond_their_asymptote():
    assert np.isnan(agn.kewley01(np.array([0.47, 0.6]))).all()
    assert np.isnan(agn.kauffmann03(np.array([0.05, 0.2]))).all()
    assert np.isfinite(agn.kewley01(0.469)) and float(agn.kewley01(0.0)) == pytest.approx(-0.107872, abs=1e-6)


# --- [NII] BPT --------------------------------------------------------------------------------------------------


def test_points_inside_each_region():
    points = {BPT.SF: [(-0.6, -0.3), (-1.0, 0.5)], BPT.COMP: [(-0.2, 0.0), (0.1, -1.0), (0.049, -3.0)],
              BPT.SY: [(0.0, 0.8), (0.6, 1.5), (-1.5, 0.95)], BPT.LINER: [(0.2, 0.0), (0.6, 0.0), (0.3, -2.0)]}
    for cls, pts in points.items():
        assert classes(pts) == [cls] * len(pts), cls.name


EPS = 1e-6


@pytest.mark.parametrize("x, curve, above, below", [
    (-0.3, agn.kewley01, BPT.SY, BPT.COMP),     # Kewley+01, Seyfert side
    (0.3, agn.kewley01, BPT.LINER, BPT.COMP),   # Kewley+01, LINER side
    (-0.5, agn.kauffmann03, BPT.COMP, BPT.SF),  # Kauffmann+03
    (-0.9, agn.kauffmann03, BPT.COMP, BPT.SF),
    (0.2, agn.schawinski07, BPT.SY, BPT.LINER),  # Schawinski+07, above Kewley
    (0.6, agn.schawinski07, BPT.SY, BPT.LINER),  # ... beyond the Kewley asymptote
])
def test_each_side_of_each_line(x, curve, above, below):
    y = float(curve(x))
    assert classes([(x, y + EPS), (x, y - EPS)]) == [above, below]


def test_each_side_of_the_asymptotes():
    assert classes([(0.47 - EPS, -5.0), (0.47 + EPS, -5.0)]) == [BPT.LINER, BPT.LINER]
    assert classes([(0.05 - EPS, -5.0), (0.05 + EPS, -5.0)]) == [BPT.COMP, BPT.COMP]


def test_ratios():
    got = agn.nii_bpt(*lines([(-0.4, 0.25)]))
    assert got.log_nii_ha[0] == pytest.approx(-0.4) and got.log_oiii_hb[0] == pytest.approx(0.25)


@pytest.mark.parametrize("line", range(4))
def test_snr_cut_on_each_line(line):
    args = lines([(-0.6, -0.3)] * 3)
    flux = args[2 * line]
    args[2 * line + 1] = (np.array([2.99, 3.01, 3.0]) / flux) ** 2
    got = agn.nii_bpt(*args).bpt.tolist()
    assert got[:2] == [BPT.NONE, BPT.SF]
    if line in (0, 2):  # unit flux: S/N is exactly 3
        assert got[2] == BPT.SF
    assert agn.nii_bpt(*args, snr_min=5.0).bpt.tolist() == [BPT.NONE] * 3


@pytest.mark.parametrize("ivar", [np.nan, 0.0, -1.0, np.inf])
def test_unusable_ivar_is_not_classified(ivar):
    for line in range(4):
        args = lines([(0.0, 0.8)])
        args[2 * line + 1] = np.array([ivar])
        assert agn.nii_bpt(*args).bpt.tolist() == [BPT.NONE]


def test_negative_zero_and_nan_fluxes():
    for bad in (-1.0, 0.0, np.nan, np.inf):
        for line in range(4):
            args = lines([(0.0, 0.8)])
            args[2 * line] = np.array([bad])
            got = agn.nii_bpt(*args)
            assert got.bpt.tolist() == [BPT.NONE]
            assert np.isnan(got.log_nii_ha[0] if line >= 2 else got.log_oiii_hb[0])
    assert np.isnan(agn.line_snr(np.array([1.0]), np.array([np.nan]))).sum() == 0


def test_matches_a_direct_transcription_of_the_vac_rules():
    rng = np.random.default_rng(4)
    n = 20_000
    x, y = rng.uniform(-2, 1, n), rng.uniform(-1.5, 1.5, n)
    snr = rng.uniform(0, 8, (4, n))
    flux = [np.ones(n), 10.0**y, np.ones(n), 10.0**x]
    args = [a for f, s in zip(flux, snr) for a in (f, (s / f) ** 2)]
    got = agn.nii_bpt(*args).bpt
    avail = (snr >= 3).all(axis=0)
    with np.errstate(divide="ignore"):
        kew, ka, sch = 0.61 / (x - 0.47) + 1.19, 0.61 / (x - 0.05) + 1.30, 1.05 * x + 0.45
    agnliner = avail & ((y >= kew) | (x >= 0.47))
    comp = avail & ((y >= ka) | (x >= 0.05)) & ~agnliner
    want = np.select([agnliner & (y >= sch), agnliner, comp, avail], [BPT.SY, BPT.LINER, BPT.COMP, BPT.SF], 0)
    assert np.array_equal(got, want)
    assert {int(c) for c in np.unique(got)} == {int(c) for c in BPT}


# --- broad lines, WISE ------------------------------------------------------------------------------------------


def test_broad_line_fwhm_cut():
    sigma = np.array([1199.0, 1201.0, 1199.0, 1201.0, np.nan]) / agn.SIGMA_TO_FWHM
    flux = np.ones(5)
    ivar = np.array([100.0, 100.0, 100.0, 2.99**2, 100.0])
    assert agn.broad_line(flux, ivar, sigma).tolist() == [False, True, False, False, False]
    assert pytest.approx(2.354820045) == agn.SIGMA_TO_FWHM
    at_cut = agn.fwhm_from_sigma(sigma[1])
    assert agn.broad_line(flux[:2], ivar[:2], sigma[:2], fwhm_min=float(at_cut)).tolist() == [False, True]


def test_wise_colour_vega_conversion_and_cut():
    assert float(agn.w1_w2_vega(1.0, 1.0)) == pytest.approx(0.64)  # equal AB fluxes: W1-W2 = 2.699 - 3.339 reversed
    ab_at_cut = 0.8 - (3.339 - 2.699)
    f1 = 10.0 ** (-0.4 * (ab_at_cut + np.array([-EPS, 0.0, EPS])))
    colour = agn.w1_w2_vega(f1, np.ones(3))
    np.testing.assert_allclose(colour, [0.8 - EPS, 0.8, 0.8 + EPS], atol=1e-12)
    big = np.full(3, 1e4)
    assert agn.wise_stern12(f1, big, np.ones(3), big).agn.tolist() == [False, colour[1] >= 0.8, True]
    assert agn.wise_stern12(f1, big, np.ones(3), big, cut=float(colour[1])).agn.tolist() == [False, True, True]


def test_wise_needs_snr_in_both_bands():
    red = 10.0 ** (-0.4 * 1.0)  # W1 - W2 = 1.64 Vega
    f1, f2 = np.full(4, red), np.ones(4)
    iv1 = np.array([1e4, (2.99 / red) ** 2, 1e4, np.nan])
    iv2 = np.array([1e4, 1e4, 0.0, 1e4])
    got = agn.wise_stern12(f1, iv1, f2, iv2)
    assert got.available.tolist() == [True, False, False, False] and got.agn.tolist() == [True, False, False, False]
    assert np.isnan(agn.wise_stern12(np.array([-1.0]), np.array([1e4]), np.ones(1), np.ones(1) * 1e4).w1_w2[0])


# --- bitmasks ---------------------------------------------------------------------------------------------------


def test_bit_values_follow_the_desi_agn_vac():
    assert [int(b).bit_length() - 1 for b in AgnMaskbits] == [0, 10, 11, 12, 15]
    assert [int(b).bit_length() - 1 for b in OptUvType] == [0, 1, 2, 3, 4]
    assert [int(b).bit_length() - 1 for b in IrType] == [0, 4, 5]


def test_encode_examples():
    d = agn.Diagnosis(np.array([BPT.SY, BPT.COMP, BPT.NONE, BPT.LINER], dtype=np.int8),
                      np.array([True, False, False, False]), np.array([True, True, False, False]),
                      np.array([True, False, False, False]))
    bits = agn.encode(d)
    assert bits.agn_maskbits.tolist() == [1 | 1 << 10 | 1 << 11 | 1 << 12 | 1 << 15, 1 << 11, 0, 1 << 11]
    assert bits.opt_uv_type.tolist() == [1 | 1 << 3, 1 | 1 << 2, 0, 1 | 1 << 4]
    assert bits.ir_type.tolist() == [1 | 1 << 4, 1 | 1 << 5, 0, 0]
    assert all(b.dtype == np.int64 for b in bits)


def test_bitmask_round_trip():
    rng = np.random.default_rng(2)
    n = 5000
    wise_ok = rng.random(n) < 0.6
    d = agn.Diagnosis(rng.integers(0, 5, n).astype(np.int8), rng.random(n) < 0.1, wise_ok,
                      wise_ok & (rng.random(n) < 0.3))
    back = agn.decode(agn.encode(d))
    for a, b in zip(d, back):
        assert np.array_equal(a, b)


# --- whole rows -------------------------------------------------------------------------------------------------


def _columns(n, rng):
    cols = {c: rng.uniform(0.1, 10, n) for c in agn.INPUT_COLUMNS}
    for c in agn.INPUT_COLUMNS:
        if c.endswith("IVAR") or c.startswith("FLUX_IVAR"):
            cols[c] = rng.uniform(0, 20, n)
    cols["HALPHA_BROAD_SIGMA"] = rng.uniform(0, 2000, n)
    return cols


def test_classify_is_the_parts_combined():
    rng = np.random.default_rng(5)
    cols = _columns(3000, rng)
    out = agn.classify(cols)
    bpt = agn.nii_bpt(*[cols[f"{ln}_{q}"] for ln in agn.BPT_LINES for q in ("FLUX", "FLUX_IVAR")])
    assert np.array_equal(out["BPT_NII"], bpt.bpt)
    d = agn.decode(agn.AgnBits(out["AGN_MASKBITS"], out["OPT_UV_TYPE"], out["IR_TYPE"]))
    assert np.array_equal(d.bpt, bpt.bpt)
    assert np.array_equal(d.broad, agn.broad_line(cols["HALPHA_BROAD_FLUX"], cols["HALPHA_BROAD_FLUX_IVAR"],
                                                  cols["HALPHA_BROAD_SIGMA"]))
    with pytest.raises(KeyError, match="FLUX_W1"):
        agn.classify({k: v for k, v in cols.items() if k != "FLUX_W1"})


def test_empty_input():
    out = agn.classify({c: np.zeros(0, dtype=np.float32) for c in agn.INPUT_COLUMNS})
    assert all(len(v) == 0 for v in out.values())
    assert out["BPT_NII"].dtype == np.int8 and out["AGN_MASKBITS"].dtype == np.int64
    assert agn.kewley01(np.zeros(0)).shape == (0,)


@pytest.mark.gpu
def test_cupy_matches_numpy(cupy):
    cols = _columns(10_000, np.random.default_rng(6))
    want = agn.classify(cols)
    got = agn.classify({k: cupy.asarray(v) for k, v in cols.items()})
    for name, value in want.items():
        assert isinstance(got[name], cupy.ndarray) and got[name].dtype == value.dtype, name
        if value.dtype.kind == "f":  # device log10 may differ from numpy's in the last bit
            np.testing.assert_allclose(cupy.asnumpy(got[name]), value, rtol=1e-12, equal_nan=True, err_msg=name)
        else:
            np.testing.assert_array_equal(cupy.asnumpy(got[name]), value, err_msg=name)

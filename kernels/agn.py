"""AGN diagnostics on numpy or cupy: [NII]-BPT class, broad Balmer lines, WISE W1-W2 colour, DESI AGN VAC bitmasks.

The rules and bit values follow the DESI DR1 AGN/Galaxy Classification VAC (cosmodesi/desigaldev `AgnCats/py`:
`uv_opt_agn_diagnostics.nii_bpt`, `broad_line`, `ir_agn_diagnostics.wise_stern12`, bits from `agnmask.yaml`).
With x = log10([NII]6584/Halpha) and y = log10([OIII]5007/Hbeta), a row with S/N >= 3 in all four lines is

- AGN (Seyfert or LINER) if y >= Kewley+01(x) or x >= 0.47; Seyfert if also y >= Schawinski+07(x), else LINER;
- otherwise composite if y >= Kauffmann+03(x) or x >= 0.05; otherwise star-forming.

Differences from the VAC, on purpose: the WISE cut is Stern+12's W1 - W2 >= 0.8 (the VAC codes > 0.8) and the
WISE S/N test is >= (the VAC's is >); AGN_ANY also takes BROAD_LINE, because the VAC gets broad-line quasars from
its QSO-catalogue bits (RR, MGII, QN), which this kernel does not compute.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import IntEnum, IntFlag
from typing import Any, NamedTuple

from kernels.xp import namespace

SIGMA_TO_FWHM = 2.0 * math.sqrt(2.0 * math.log(2.0))  # FastSpecFit's *_SIGMA is the Gaussian sigma in km/s
# WISE AB - Vega offsets (WISE All-Sky Explanatory Supplement, sec. 4.4h); Legacy Surveys FLUX_W1/W2 are AB nmgy.
W1_AB_MINUS_VEGA = 2.699
W2_AB_MINUS_VEGA = 3.339

KEWLEY01_X_MAX = 0.47  # the Kewley+01 curve's asymptote: every x beyond it is AGN
KAUFFMANN03_X_MAX = 0.05  # the Kauffmann+03 curve's asymptote: every x beyond it is at least composite


class BPT(IntEnum):
    """[NII]-BPT class code of a row."""

    NONE = 0  # not classifiable: a line with S/N below the cut, a non-positive flux, or an unusable IVAR
    SF = 1
    COMP = 2
    SY = 3
    LINER = 4


class AgnMaskbits(IntFlag):
    """AGN_MASKBITS bits this kernel sets (VAC bits 1-7 come from the QSO catalogue; 13, 14, 16, 17 are not set)."""

    AGN_ANY = 1 << 0        # BPT_ANY_SY, BROAD_LINE or WISE_ANY_AGN
    BPT_ANY_SY = 1 << 10    # [NII]-BPT Seyfert
    BPT_ANY_AGN = 1 << 11   # [NII]-BPT Seyfert, LINER or composite
    BROAD_LINE = 1 << 12    # broad Halpha with FWHM >= 1200 km/s
    WISE_ANY_AGN = 1 << 15  # Stern+12 W1 - W2 >= 0.8 (Vega)


class OptUvType(IntFlag):
    """OPT_UV_TYPE bits for the [NII] BPT (the VAC's bits 5-38, other diagnostics, are not set)."""

    NII_BPT = 1 << 0  # all four lines have S/N >= the cut
    NII_SF = 1 << 1
    NII_COMP = 1 << 2
    NII_SY = 1 << 3
    NII_LINER = 1 << 4


class IrType(IntFlag):
    """IR_TYPE bits for the Stern+12 W1 - W2 cut (the VAC's other WISE diagnostics are not set)."""

    WISE_W12 = 1 << 0      # W1 and W2 both have S/N >= the cut
    WISE_AGN_S12 = 1 << 4
    WISE_SF_S12 = 1 << 5


_NII_BIT = {BPT.SF: OptUvType.NII_SF, BPT.COMP: OptUvType.NII_COMP, BPT.SY: OptUvType.NII_SY,
            BPT.LINER: OptUvType.NII_LINER}

# Columns `classify` reads, by their FastSpecFit / Legacy Surveys names.
BPT_LINES = ("HBETA", "OIII_5007", "HALPHA", "NII_6584")
INPUT_COLUMNS = (
    *[f"{line}_{q}" for line in BPT_LINES for q in ("FLUX", "FLUX_IVAR")],
    "HALPHA_BROAD_FLUX", "HALPHA_BROAD_FLUX_IVAR", "HALPHA_BROAD_SIGMA",
    "FLUX_W1", "FLUX_IVAR_W1", "FLUX_W2", "FLUX_IVAR_W2",
)


def _f64(xp: Any, a: Any) -> Any:
    return xp.asarray(a, dtype=xp.float64)


def _hyperbola(x: Any, a: float, x0: float, b: float) -> Any:
    xp = namespace(x)
    x = _f64(xp, x)
    d = x - x0
    left = d < 0
    return xp.where(left, a / xp.where(left, d, -1.0) + b, xp.nan)


def kewley01(x: Any) -> Any:
    """Kewley+01 maximum starburst line y = 0.61 / (x - 0.47) + 1.19; NaN for x >= 0.47."""
    return _hyperbola(x, 0.61, KEWLEY01_X_MAX, 1.19)


def kauffmann03(x: Any) -> Any:
    """Kauffmann+03 star-forming line y = 0.61 / (x - 0.05) + 1.30; NaN for x >= 0.05."""
    return _hyperbola(x, 0.61, KAUFFMANN03_X_MAX, 1.30)


def schawinski07(x: Any) -> Any:
    """Schawinski+07 Seyfert/LINER line y = 1.05 x + 0.45."""
    xp = namespace(x)
    return 1.05 * _f64(xp, x) + 0.45


def line_snr(flux: Any, ivar: Any) -> Any:
    """flux * sqrt(ivar); 0 where the flux is not finite or the IVAR is not finite and positive (NaN, 0, < 0)."""
    xp = namespace(flux, ivar)
    flux, ivar = _f64(xp, flux), _f64(xp, ivar)
    ok = xp.isfinite(flux) & xp.isfinite(ivar) & (ivar > 0)
    return xp.where(ok, xp.where(ok, flux, 0.0) * xp.sqrt(xp.where(ok, ivar, 0.0)), 0.0)


def log_ratio(num: Any, den: Any) -> Any:
    """log10(num / den) where both are finite and positive, else NaN."""
    xp = namespace(num, den)
    num, den = _f64(xp, num), _f64(xp, den)
    ok = xp.isfinite(num) & xp.isfinite(den) & (num > 0) & (den > 0)
    return xp.where(ok, xp.log10(xp.where(ok, num, 1.0) / xp.where(ok, den, 1.0)), xp.nan)


class NiiBpt(NamedTuple):
    """Per-row [NII]-BPT coordinates (NaN where a flux is not positive) and class code (`BPT`, int8)."""

    log_nii_ha: Any
    log_oiii_hb: Any
    bpt: Any


def nii_bpt(hbeta: Any, hbeta_ivar: Any, oiii: Any, oiii_ivar: Any, halpha: Any, halpha_ivar: Any,
            nii: Any, nii_ivar: Any, snr_min: float = 3.0) -> NiiBpt:
    """[NII]-BPT class from the Hbeta, [OIII]5007, Halpha, [NII]6584 fluxes and IVARs; S/N >= snr_min on all four."""
    xp = namespace(hbeta, oiii, halpha, nii)
    x, y = log_ratio(nii, halpha), log_ratio(oiii, hbeta)
    avail = ((line_snr(hbeta, hbeta_ivar) >= snr_min) & (line_snr(oiii, oiii_ivar) >= snr_min)
             & (line_snr(halpha, halpha_ivar) >= snr_min) & (line_snr(nii, nii_ivar) >= snr_min))
    agn = avail & ((y >= kewley01(x)) | (x >= KEWLEY01_X_MAX))
    seyfert = agn & (y >= schawinski07(x))
    comp = avail & ~agn & ((y >= kauffmann03(x)) | (x >= KAUFFMANN03_X_MAX))
    code = xp.where(seyfert, int(BPT.SY), xp.where(agn, int(BPT.LINER), xp.where(
        comp, int(BPT.COMP), xp.where(avail, int(BPT.SF), int(BPT.NONE)))))
    return NiiBpt(x, y, code.astype(xp.int8))


def fwhm_from_sigma(sigma: Any) -> Any:
    """Gaussian FWHM from sigma (same unit): 2 sqrt(2 ln 2) sigma."""
    xp = namespace(sigma)
    return _f64(xp, sigma) * SIGMA_TO_FWHM


def broad_line(flux: Any, ivar: Any, sigma: Any, snr_min: float = 3.0, fwhm_min: float = 1200.0) -> Any:
    """Broad-line flag: the broad component has S/N >= snr_min and FWHM >= fwhm_min km/s (sigma in km/s)."""
    fwhm = fwhm_from_sigma(sigma)
    return (line_snr(flux, ivar) >= snr_min) & (fwhm >= fwhm_min)  # NaN sigma compares False


def w1_w2_vega(flux_w1: Any, flux_w2: Any) -> Any:
    """W1 - W2 in Vega magnitudes from W1, W2 fluxes in AB nanomaggies; NaN unless both are positive."""
    ab = -2.5 * log_ratio(flux_w1, flux_w2)
    return ab - (W1_AB_MINUS_VEGA - W2_AB_MINUS_VEGA)  # (W1-W2)_Vega = (W1-W2)_AB + 0.64


class WiseColour(NamedTuple):
    """Per-row Stern+12 result: colour measured (S/N cut in both bands), AGN flag, and W1 - W2 (Vega)."""

    available: Any
    agn: Any
    w1_w2: Any


def wise_stern12(flux_w1: Any, ivar_w1: Any, flux_w2: Any, ivar_w2: Any, snr_min: float = 3.0,
                 cut: float = 0.8) -> WiseColour:
    """Stern+12 mid-IR AGN: W1 - W2 >= cut (Vega) where W1 and W2 both have S/N >= snr_min (AB nmgy in)."""
    colour = w1_w2_vega(flux_w1, flux_w2)
    available = (line_snr(flux_w1, ivar_w1) >= snr_min) & (line_snr(flux_w2, ivar_w2) >= snr_min)
    return WiseColour(available, available & (colour >= cut), colour)


class Diagnosis(NamedTuple):
    """What the bitmasks encode, per row."""

    bpt: Any             # BPT class codes
    broad: Any           # bool
    wise_available: Any  # bool
    wise_agn: Any        # bool


class AgnBits(NamedTuple):
    """The three VAC bitmask columns (int64)."""

    agn_maskbits: Any
    opt_uv_type: Any
    ir_type: Any


def _bits(xp: Any, flag: Any, bit: int) -> Any:
    return xp.where(flag, int(bit), 0).astype(xp.int64)


def encode(d: Diagnosis) -> AgnBits:
    """AGN_MASKBITS, OPT_UV_TYPE and IR_TYPE from the per-row diagnosis."""
    xp = namespace(d.bpt, d.broad, d.wise_available, d.wise_agn)
    bpt = xp.asarray(d.bpt)
    broad, wise_ok, wise_agn = (xp.asarray(a, dtype=bool) for a in (d.broad, d.wise_available, d.wise_agn))
    opt = _bits(xp, bpt != int(BPT.NONE), OptUvType.NII_BPT)
    for code, bit in _NII_BIT.items():
        opt = opt | _bits(xp, bpt == int(code), bit)
    seyfert = bpt == int(BPT.SY)
    agn = (_bits(xp, seyfert, AgnMaskbits.BPT_ANY_SY)
           | _bits(xp, seyfert | (bpt == int(BPT.LINER)) | (bpt == int(BPT.COMP)), AgnMaskbits.BPT_ANY_AGN)
           | _bits(xp, broad, AgnMaskbits.BROAD_LINE) | _bits(xp, wise_agn, AgnMaskbits.WISE_ANY_AGN)
           | _bits(xp, seyfert | broad | wise_agn, AgnMaskbits.AGN_ANY))
    ir = (_bits(xp, wise_ok, IrType.WISE_W12) | _bits(xp, wise_agn, IrType.WISE_AGN_S12)
          | _bits(xp, wise_ok & ~wise_agn, IrType.WISE_SF_S12))
    return AgnBits(agn, opt, ir)


def decode(bits: AgnBits) -> Diagnosis:
    """The per-row diagnosis back from the bitmask columns (inverse of `encode`)."""
    xp = namespace(bits.agn_maskbits, bits.opt_uv_type, bits.ir_type)
    opt = xp.asarray(bits.opt_uv_type, dtype=xp.int64)
    bpt = xp.zeros(opt.shape, dtype=xp.int8)
    for code, bit in _NII_BIT.items():
        bpt = xp.where((opt & int(bit)) != 0, int(code), bpt).astype(xp.int8)
    agn = xp.asarray(bits.agn_maskbits, dtype=xp.int64)
    ir = xp.asarray(bits.ir_type, dtype=xp.int64)
    return Diagnosis(bpt, (agn & int(AgnMaskbits.BROAD_LINE)) != 0, (ir & int(IrType.WISE_W12)) != 0,
                     (ir & int(IrType.WISE_AGN_S12)) != 0)


def classify(cols: Mapping[str, Any], snr_min: float = 3.0, fwhm_min: float = 1200.0,
             wise_cut: float = 0.8) -> dict[str, Any]:
    """Every diagnostic of rows given as arrays named as in `INPUT_COLUMNS`; returns the output columns by name."""
    missing = [c for c in INPUT_COLUMNS if c not in cols]
    if missing:
        raise KeyError(f"AGN classification needs columns {missing}")
    hb, hb_ivar, oiii, oiii_ivar, ha, ha_ivar, nii, nii_ivar = (
        cols[f"{line}_{q}"] for line in BPT_LINES for q in ("FLUX", "FLUX_IVAR"))
    bpt = nii_bpt(hb, hb_ivar, oiii, oiii_ivar, ha, ha_ivar, nii, nii_ivar, snr_min=snr_min)
    broad = broad_line(cols["HALPHA_BROAD_FLUX"], cols["HALPHA_BROAD_FLUX_IVAR"], cols["HALPHA_BROAD_SIGMA"],
                       snr_min, fwhm_min)
    wise = wise_stern12(cols["FLUX_W1"], cols["FLUX_IVAR_W1"], cols["FLUX_W2"], cols["FLUX_IVAR_W2"], snr_min,
                        wise_cut)
    bits = encode(Diagnosis(bpt.bpt, broad, wise.available, wise.agn))
    return {
        "LOG_NII_HA": bpt.log_nii_ha, "LOG_OIII_HB": bpt.log_oiii_hb, "BPT_NII": bpt.bpt,
        "HALPHA_BROAD_FWHM": fwhm_from_sigma(cols["HALPHA_BROAD_SIGMA"]), "W1_W2_VEGA": wise.w1_w2,
        "AGN_MASKBITS": bits.agn_maskbits, "OPT_UV_TYPE": bits.opt_uv_type, "IR_TYPE": bits.ir_type,
    }

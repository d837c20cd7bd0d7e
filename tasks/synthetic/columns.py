"""Column layouts (name, TFORM, unit) of every HDU the generator writes, and packing rows into FITS records.

Layouts follow desidatamodel for DR1 (zcatalog v1, healpix coadd/redrock) and FastSpecFit v3.0.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

import numpy as np


@dataclass(frozen=True)
class Col:
    """One binary-table column: FITS name, TFORM, TUNIT and (for int8) TZERO."""

    name: str
    tform: str
    unit: str = ""
    tzero: int | None = None


_BASE_DTYPE = {"K": ">i8", "J": ">i4", "I": ">i2", "B": "u1", "D": ">f8", "E": ">f4", "L": "u1"}
_TFORM = re.compile(r"(\d*)([A-Z])")
_LOGICAL_TRUE, _LOGICAL_FALSE = ord("T"), ord("F")

NMGY, IVAR_NMGY = "nanomaggy", "nanomaggy^-2"
TSNR2_TEMPLATES = ("GPBDARK", "ELG", "GPBBRIGHT", "LYA", "BGS", "GPBBACKUP", "QSO", "LRG")
TSNR2_COLUMNS = [f"TSNR2_{t}_{c}" for c in "BRZ" for t in TSNR2_TEMPLATES] + [f"TSNR2_{t}" for t in TSNR2_TEMPLATES]
_BANDS = ("G", "R", "Z", "W1", "W2")


def _cols(spec: str, tform: str, unit: str = "") -> list[Col]:
    return [Col(name, tform, unit) for name in spec.split()]


# --- Survey-specific target masks ---------------------------------------------------------------------------
def survey_target_columns(survey: str) -> list[str]:
    """The *_TARGET mask columns a zpix file of this survey carries, in DR1 order.

    DESI_TARGET/BGS_TARGET/MWS_TARGET are required in every zpix (zero outside main); SCND_TARGET is optional
    and present where the survey uses the main masks; SV/CMX surveys add their own masks in front.
    """
    if survey in ("main", "special"):
        return ["DESI_TARGET", "BGS_TARGET", "MWS_TARGET", "SCND_TARGET"]
    generic = ["DESI_TARGET", "BGS_TARGET", "MWS_TARGET"]
    if survey == "cmx":
        return ["CMX_TARGET", *generic]
    prefix = survey.upper()
    return [f"{prefix}_DESI_TARGET", f"{prefix}_BGS_TARGET", f"{prefix}_MWS_TARGET", f"{prefix}_SCND_TARGET", *generic]


# Every *_TARGET column in ZCATALOG order (section 1.3).
ALL_TARGET_COLUMNS = [
    "CMX_TARGET",
    *[f"SV{n}_{m}_TARGET" for n in (1, 2, 3) for m in ("DESI", "BGS", "MWS", "SCND")],
    "DESI_TARGET", "BGS_TARGET", "MWS_TARGET", "SCND_TARGET",
]

# --- ZCATALOG (zpix/zall), every optional column present, in desidatamodel order ---------------------------
ZCATALOG_FULL: list[Col] = [
    Col("TARGETID", "K"), Col("SURVEY", "7A"), Col("PROGRAM", "6A"), Col("HEALPIX", "J"), Col("SPGRPVAL", "J"),
    Col("Z", "D"), Col("ZERR", "D"), Col("ZWARN", "K"), Col("CHI2", "D"), Col("COEFF", "10D"),
    Col("NPIXELS", "K"), Col("SPECTYPE", "6A"), Col("SUBTYPE", "20A"), Col("NCOEFF", "K"), Col("DELTACHI2", "D"),
    Col("COADD_FIBERSTATUS", "J"), Col("TARGET_RA", "D", "deg"), Col("TARGET_DEC", "D", "deg"),
    Col("PMRA", "E", "mas yr^-1"), Col("PMDEC", "E", "mas yr^-1"), Col("REF_EPOCH", "E", "yr"),
    Col("FA_TARGET", "K"), Col("FA_TYPE", "B"), Col("OBJTYPE", "3A"), Col("SUBPRIORITY", "D"),
    Col("OBSCONDITIONS", "J"), Col("RELEASE", "I"), Col("BRICKNAME", "8A"), Col("BRICKID", "J"),
    Col("BRICK_OBJID", "J"), Col("MORPHTYPE", "4A"), Col("EBV", "E", "mag"),
    *[Col(f"FLUX_{b}", "E", NMGY) for b in _BANDS], *[Col(f"FLUX_IVAR_{b}", "E", IVAR_NMGY) for b in _BANDS],
    *[Col(f"FIBERFLUX_{b}", "E", NMGY) for b in "GRZ"], *[Col(f"FIBERTOTFLUX_{b}", "E", NMGY) for b in "GRZ"],
    Col("MASKBITS", "I"), Col("SERSIC", "E"), Col("SHAPE_R", "E", "arcsec"), Col("SHAPE_E1", "E"),
    Col("SHAPE_E2", "E"), Col("REF_ID", "K"), Col("REF_CAT", "2A"),
    *_cols("GAIA_PHOT_G_MEAN_MAG GAIA_PHOT_BP_MEAN_MAG GAIA_PHOT_RP_MEAN_MAG", "E", "mag"),
    Col("PARALLAX", "E", "mas"), Col("PHOTSYS", "1A"), Col("PRIORITY_INIT", "K"), Col("NUMOBS_INIT", "K"),
    *[Col(name, "K") for name in ALL_TARGET_COLUMNS],
    Col("PLATE_RA", "D", "deg"), Col("PLATE_DEC", "D", "deg"), Col("COADD_NUMEXP", "I"),
    Col("COADD_EXPTIME", "E", "s"), Col("COADD_NUMNIGHT", "I"), Col("COADD_NUMTILE", "I"),
    Col("MEAN_DELTA_X", "E", "mm"), Col("RMS_DELTA_X", "E", "mm"), Col("MEAN_DELTA_Y", "E", "mm"),
    Col("RMS_DELTA_Y", "E", "mm"), Col("MEAN_PSF_TO_FIBER_SPECFLUX", "E"), Col("MEAN_FIBER_RA", "D", "deg"),
    Col("STD_FIBER_RA", "E", "arcsec"), Col("MEAN_FIBER_DEC", "D", "deg"), Col("STD_FIBER_DEC", "E", "arcsec"),
    *_cols("MIN_MJD MAX_MJD MEAN_MJD", "D", "d"),
    *[Col(name, "E") for name in TSNR2_COLUMNS],
    Col("SV_NSPEC", "I"), Col("SV_PRIMARY", "L"), Col("MAIN_NSPEC", "I"), Col("MAIN_PRIMARY", "L"),
    Col("ZCAT_NSPEC", "I"), Col("ZCAT_PRIMARY", "L"), Col("DESINAME", "22A"),
]
_ZCAT_ONLY_IN_ZALL = {"SURVEY", "PROGRAM", "SV_NSPEC", "SV_PRIMARY", "MAIN_NSPEC", "MAIN_PRIMARY"}


def zpix_columns(survey: str) -> list[Col]:
    """ZCATALOG layout of zpix-{survey}-*.fits: no SURVEY/PROGRAM/SV_*/MAIN_* columns, the survey's masks."""
    targets = set(survey_target_columns(survey))
    return [
        c for c in ZCATALOG_FULL
        if c.name not in _ZCAT_ONLY_IN_ZALL and (c.name not in ALL_TARGET_COLUMNS or c.name in targets)
    ]


def zall_columns(surveys: list[str]) -> list[Col]:
    """ZCATALOG layout of zall-pix: desispec's update_table_columns order for these (sorted) input surveys.

    Columns up to NUMOBS_INIT, then the *_TARGET masks in order of first appearance over the sorted input
    files (zero-filled), then PLATE_RA..TSNR2_LRG, then the NSPEC/PRIMARY pairs. DESINAME is not kept.
    """
    by_name = {c.name: c for c in ZCATALOG_FULL}
    names = [c.name for c in ZCATALOG_FULL]
    head = names[: names.index("NUMOBS_INIT") + 1]
    targets: list[str] = []
    for survey in sorted(set(surveys)):
        targets += [t for t in survey_target_columns(survey) if t not in targets]
    body = names[names.index("PLATE_RA") : names.index("TSNR2_LRG") + 1]
    pairs = []
    if "main" in surveys:
        pairs += ["MAIN_NSPEC", "MAIN_PRIMARY"]
    if any(s.startswith("sv") for s in surveys):
        pairs += ["SV_NSPEC", "SV_PRIMARY"]
    pairs += ["ZCAT_NSPEC", "ZCAT_PRIMARY"]
    return [by_name[n] for n in head + targets + body + pairs]


# --- Per-exposure fibermap (zpix, coadd, redrock) --------------------------------------------------------------
EXP_FIBERMAP: list[Col] = [
    Col("TARGETID", "K"), Col("PRIORITY", "J"), Col("SUBPRIORITY", "D"), Col("NIGHT", "J"), Col("EXPID", "J"),
    Col("MJD", "D"), Col("TILEID", "J"), Col("EXPTIME", "D", "s"), Col("PETAL_LOC", "I"), Col("DEVICE_LOC", "J"),
    Col("LOCATION", "K"), Col("FIBER", "J"), Col("FIBERSTATUS", "J"), Col("FIBERASSIGN_X", "E", "mm"),
    Col("FIBERASSIGN_Y", "E", "mm"), Col("LAMBDA_REF", "E", "Angstrom"), Col("PLATE_RA", "D", "deg"),
    Col("PLATE_DEC", "D", "deg"), Col("NUM_ITER", "K"), Col("FIBER_X", "D", "mm"), Col("FIBER_Y", "D", "mm"),
    Col("DELTA_X", "D", "mm"), Col("DELTA_Y", "D", "mm"), Col("FIBER_RA", "D", "deg"), Col("FIBER_DEC", "D", "deg"),
    Col("PSF_TO_FIBER_SPECFLUX", "D"), Col("IN_COADD_B", "L"), Col("IN_COADD_R", "L"), Col("IN_COADD_Z", "L"),
]

# --- Healpix redrock / coadd ---------------------------------------------------------------------------------
REDSHIFTS: list[Col] = [
    Col("TARGETID", "K"), Col("CHI2", "D"), Col("COEFF", "10D"), Col("Z", "D"), Col("ZERR", "D"), Col("ZWARN", "K"),
    Col("NPIXELS", "K"), Col("SPECTYPE", "6A"), Col("SUBTYPE", "20A"), Col("NCOEFF", "K"), Col("DELTACHI2", "D"),
]

_FIBERMAP_ORDER = ["TARGETID", "COADD_FIBERSTATUS", "TARGET_RA", "TARGET_DEC", "PMRA", "PMDEC", "REF_EPOCH", "FA_TARGET", "FA_TYPE", "OBJTYPE", "SUBPRIORITY", "OBSCONDITIONS", "RELEASE", "BRICKID", "BRICK_OBJID", "MORPHTYPE", "FLUX_G", "FLUX_R", "FLUX_Z", "FLUX_IVAR_G", "FLUX_IVAR_R", "FLUX_IVAR_Z", "MASKBITS", "REF_ID", "REF_CAT", "GAIA_PHOT_G_MEAN_MAG", "GAIA_PHOT_BP_MEAN_MAG", "GAIA_PHOT_RP_MEAN_MAG", "PARALLAX", "BRICKNAME", "EBV", "FLUX_W1", "FLUX_W2", "FLUX_IVAR_W1", "FLUX_IVAR_W2", "FIBERFLUX_G", "FIBERFLUX_R", "FIBERFLUX_Z", "FIBERTOTFLUX_G", "FIBERTOTFLUX_R", "FIBERTOTFLUX_Z", "SERSIC", "SHAPE_R", "SHAPE_E1", "SHAPE_E2", "PHOTSYS", "PRIORITY_INIT", "NUMOBS_INIT"]
_FIBERMAP_COADD = ["PLATE_RA", "PLATE_DEC", "COADD_NUMEXP", "COADD_EXPTIME", "COADD_NUMNIGHT", "COADD_NUMTILE", "MEAN_DELTA_X", "RMS_DELTA_X", "MEAN_DELTA_Y", "RMS_DELTA_Y", "MEAN_FIBER_RA", "STD_FIBER_RA", "MEAN_FIBER_DEC", "STD_FIBER_DEC", "MEAN_PSF_TO_FIBER_SPECFLUX", "MIN_MJD", "MAX_MJD", "MEAN_MJD"]


def fibermap_columns(survey: str) -> list[Col]:
    """Coadd/redrock FIBERMAP: the desidatamodel healpix order, the survey's masks, plus MIN/MAX/MEAN_MJD."""
    by_name = {c.name: c for c in ZCATALOG_FULL}
    return [by_name[n] for n in _FIBERMAP_ORDER + survey_target_columns(survey) + _FIBERMAP_COADD]


TSNR2: list[Col] = [Col("TARGETID", "K"), *[Col(name, "E") for name in TSNR2_COLUMNS]]

SCORES: list[Col] = [
    Col("TARGETID", "K"),
    *[Col(f"{q}_{c}", "E") for c in "BRZ" for q in ("INTEG_COADD_FLUX", "MEDIAN_COADD_FLUX", "MEDIAN_COADD_SNR")],
    *[Col(name, "E") for name in TSNR2_COLUMNS],
]

# --- FastSpecFit v3.0 merged catalogs --------------------------------------------------------------------------
LINE_FLUX_UNIT, LINE_IVAR_UNIT = "10**-17 erg/(s cm2)", "10**+34 (s2 cm4) / erg2"
# The BPT set in FastSpecFit's LINENAME (wavelength) order; HALPHA_BROAD sits between HALPHA and NII_6584.
FASTSPEC_LINES = ("HBETA", "OIII_5007", "OI_6300", "HALPHA", "NII_6584", "SII_6716", "SII_6731")


def fastspec_metadata_columns(survey: str) -> list[Col]:
    """METADATA: TARGETID first, FastSpecFit dtypes (SURVEY nA, ZWARN int8, COADD_FIBERSTATUS int64)."""
    sv_masks = [c for c in survey_target_columns(survey) if c.startswith(("SV", "CMX"))]
    sv_masks.sort(key=lambda c: c.endswith("SCND_TARGET"))
    return [
        Col("TARGETID", "K"), Col("SURVEY", f"{max(3, len(survey))}A"), Col("PROGRAM", "6A"), Col("HEALPIX", "J"),
        Col("RA", "D", "deg"), Col("DEC", "D", "deg"), Col("COADD_FIBERSTATUS", "K"),
        *[Col(n, "K") for n in ("DESI_TARGET", "BGS_TARGET", "MWS_TARGET", "SCND_TARGET", *sv_masks)],
        Col("Z", "D"), Col("ZWARN", "B", tzero=-128), Col("DELTACHI2", "D"), Col("SPECTYPE", "6A"), Col("Z_RR", "D"),
        *[Col(f"TSNR2_{t}", "E") for t in ("BGS", "LRG", "ELG", "QSO", "LYA")],
        Col("PHOTSYS", "1A"), Col("LS_ID", "K"),
        *[Col(f"FLUX_{b}", "E", NMGY) for b in _BANDS], *[Col(f"FLUX_IVAR_{b}", "E", IVAR_NMGY) for b in _BANDS],
        Col("EBV", "E", "mag"),
    ]


FASTSPEC_SPECPHOT: list[Col] = [
    Col("TARGETID", "K"), Col("ABSMAG01_SDSS_R", "E", "mag"), Col("LOGMSTAR", "E"), Col("SFR", "E", "solMass / yr"),
]


def _line_cols(line: str) -> list[Col]:
    if line == "HALPHA_BROAD":
        return [Col(f"{line}_FLUX", "E", LINE_FLUX_UNIT), Col(f"{line}_FLUX_IVAR", "E", LINE_IVAR_UNIT),
                Col(f"{line}_SIGMA", "E", "km / s")]
    return [Col(f"{line}_FLUX", "E", LINE_FLUX_UNIT), Col(f"{line}_FLUX_IVAR", "E", LINE_IVAR_UNIT),
            Col(f"{line}_EW", "E", "Angstrom")]


_FASTSPEC_ORDER = ("HBETA", "OIII_5007", "OI_6300", "HALPHA", "HALPHA_BROAD", "NII_6584", "SII_6716", "SII_6731")
FASTSPEC_FASTSPEC: list[Col] = [Col("TARGETID", "K"), *[c for line in _FASTSPEC_ORDER for c in _line_cols(line)]]

# --- Truth -------------------------------------------------------------------------------------------------------
VOIDS: list[Col] = [
    Col("VOID", "K"), Col("X", "D"), Col("Y", "D"), Col("Z", "D"), Col("RADIUS", "D"),
    Col("RA", "D", "deg"), Col("DEC", "D", "deg"), Col("REDSHIFT", "D"),
]


# --- Records -----------------------------------------------------------------------------------------------------
def _field(col: Col) -> tuple:
    match = _TFORM.fullmatch(col.tform)
    if match is None:
        raise ValueError(f"column {col.name}: unsupported TFORM {col.tform!r}")
    repeat, code = int(match.group(1) or 1), match.group(2)
    if code == "A":
        return (col.name, f"S{repeat}")
    if code not in _BASE_DTYPE:
        raise ValueError(f"column {col.name}: unsupported TFORM code {code!r}")
    return (col.name, _BASE_DTYPE[code], (repeat,)) if repeat > 1 else (col.name, _BASE_DTYPE[code])


def record_dtype(cols: list[Col]) -> np.dtype:
    """The big-endian numpy record layout FITS stores for these columns (logicals as 'T'/'F' bytes)."""
    return _record_dtype(tuple(cols))


@cache
def _record_dtype(cols: tuple[Col, ...]) -> np.dtype:
    return np.dtype([_field(c) for c in cols])


def pack(cols: list[Col], values: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    """Rows as FITS records: each column taken by name from `values` (length n), converted to its TFORM."""
    out = np.zeros(n, dtype=record_dtype(cols))
    for col in cols:
        try:
            value = values[col.name]
        except KeyError:
            raise KeyError(f"no values for column {col.name} ({col.tform})") from None
        if col.tform == "L":
            out[col.name] = np.where(value, _LOGICAL_TRUE, _LOGICAL_FALSE)
        elif col.tzero is not None:
            out[col.name] = np.asarray(value, dtype=np.int64) - col.tzero
        else:
            out[col.name] = value
    return out

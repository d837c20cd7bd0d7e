"""What astrolab ingests: DESI DR1 file kinds, their file-name patterns, and the data products they feed.

A *product* is one logical table (redshifts, FastSpecFit lines, spectra index) with one HATS catalog in the lake
and one table in the SQL catalog. Each product fixes its lake schema: optional DESI columns that a file lacks are
null-filled, unknown extra columns are left out (and reported), so every partition of a catalog has one schema.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pyarrow as pa

# --- DESI DR1 file-name patterns (desidatamodel regexes, see reference/desi-dr1-data-model.md) -------------
SURVEYS = "cmx|main|sv1|sv2|sv3|special"
PROGRAMS = "backup|bright|dark|other"
FITS_SUFFIXES = (".fits", ".fits.gz")  # DR1 ships some files gzip-compressed (e.g. per-healpix fastspec)
_FITS = r"\.fits(?:\.gz)?$"
FILE_PATTERNS: dict[str, re.Pattern[str]] = {
    "zpix": re.compile(rf"^zpix-(?P<survey>{SURVEYS})-(?P<program>{PROGRAMS}){_FITS}"),
    "zall": re.compile(rf"^zall-pix-(?P<specprod>[a-z0-9_-]+?){_FITS}"),
    "fastspec": re.compile(
        rf"^fastspec-(?P<specprod>[a-z0-9]+)-(?P<survey>{SURVEYS})-(?P<program>{PROGRAMS})(-nside1-hp\d\d)?{_FITS}"
    ),
    "coadd": re.compile(rf"^coadd-(?P<survey>{SURVEYS})-(?P<program>{PROGRAMS})-(?P<healpix>\d+){_FITS}"),
    "redrock": re.compile(rf"^redrock-(?P<survey>{SURVEYS})-(?P<program>{PROGRAMS})-(?P<healpix>\d+){_FITS}"),
}

# --- Column types ------------------------------------------------------------------------------------------
I16, I32, I64, U8, F32, F64, BOOL, STR = (
    pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.float32(), pa.float64(), pa.bool_(), pa.string()
)
COEFF = pa.list_(pa.float64(), 10)

_TSNR2 = ["GPBDARK", "ELG", "GPBBRIGHT", "LYA", "BGS", "GPBBACKUP", "QSO", "LRG"]
_BANDS = ["G", "R", "Z", "W1", "W2"]

# The DR1 zcatalog v1 ZCATALOG columns (section 1.3), survey-specific target masks left out; SURVEY and PROGRAM
# are columns in zall and header keywords in zpix, and always columns here.
ZCATALOG_COLUMNS: list[tuple[str, pa.DataType]] = [
    ("TARGETID", I64), ("SURVEY", STR), ("PROGRAM", STR), ("HEALPIX", I32), ("SPGRPVAL", I32),
    ("Z", F64), ("ZERR", F64), ("ZWARN", I64), ("CHI2", F64), ("COEFF", COEFF), ("NPIXELS", I64),
    ("SPECTYPE", STR), ("SUBTYPE", STR), ("NCOEFF", I64), ("DELTACHI2", F64), ("COADD_FIBERSTATUS", I32),
    ("TARGET_RA", F64), ("TARGET_DEC", F64), ("PMRA", F32), ("PMDEC", F32), ("REF_EPOCH", F32),
    ("FA_TARGET", I64), ("FA_TYPE", U8), ("OBJTYPE", STR), ("SUBPRIORITY", F64), ("OBSCONDITIONS", I32),
    ("RELEASE", I16), ("BRICKNAME", STR), ("BRICKID", I32), ("BRICK_OBJID", I32), ("MORPHTYPE", STR), ("EBV", F32),
    *[(f"FLUX_{b}", F32) for b in _BANDS], *[(f"FLUX_IVAR_{b}", F32) for b in _BANDS],
    *[(f"FIBERFLUX_{b}", F32) for b in "GRZ"], *[(f"FIBERTOTFLUX_{b}", F32) for b in "GRZ"],
    ("MASKBITS", I16), ("SERSIC", F32), ("SHAPE_R", F32), ("SHAPE_E1", F32), ("SHAPE_E2", F32),
    ("REF_ID", I64), ("REF_CAT", STR), ("GAIA_PHOT_G_MEAN_MAG", F32), ("GAIA_PHOT_BP_MEAN_MAG", F32),
    ("GAIA_PHOT_RP_MEAN_MAG", F32), ("PARALLAX", F32), ("PHOTSYS", STR), ("PRIORITY_INIT", I64), ("NUMOBS_INIT", I64),
    ("DESI_TARGET", I64), ("BGS_TARGET", I64), ("MWS_TARGET", I64), ("SCND_TARGET", I64),
    ("PLATE_RA", F64), ("PLATE_DEC", F64), ("COADD_NUMEXP", I16), ("COADD_EXPTIME", F32), ("COADD_NUMNIGHT", I16),
    ("COADD_NUMTILE", I16), ("MEAN_DELTA_X", F32), ("RMS_DELTA_X", F32), ("MEAN_DELTA_Y", F32), ("RMS_DELTA_Y", F32),
    ("MEAN_PSF_TO_FIBER_SPECFLUX", F32), ("MEAN_FIBER_RA", F64), ("STD_FIBER_RA", F32), ("MEAN_FIBER_DEC", F64),
    ("STD_FIBER_DEC", F32), ("MIN_MJD", F64), ("MAX_MJD", F64), ("MEAN_MJD", F64),
    *[(f"TSNR2_{t}_{band}", F32) for t in _TSNR2 for band in "BRZ"], *[(f"TSNR2_{t}", F32) for t in _TSNR2],
    ("ZCAT_NSPEC", I16), ("ZCAT_PRIMARY", BOOL), ("DESINAME", STR),
]

_BPT_LINES = ["HALPHA", "HBETA", "OIII_5007", "NII_6584", "SII_6716", "SII_6731", "OI_6300"]
FASTSPEC_COLUMNS: list[tuple[str, pa.DataType]] = [
    ("TARGETID", I64), ("SURVEY", STR), ("PROGRAM", STR), ("HEALPIX", I32), ("RA", F64), ("DEC", F64),
    ("Z", F64), ("ZWARN", I64), ("SPECTYPE", STR), ("COADD_FIBERSTATUS", I64), ("DESI_TARGET", I64),
    ("BGS_TARGET", I64), ("LOGMSTAR", F32), ("SFR", F32),
    *[(f"{line}_{q}", F32) for line in _BPT_LINES for q in ("FLUX", "FLUX_IVAR", "EW")],
    ("HALPHA_BROAD_FLUX", F32), ("HALPHA_BROAD_FLUX_IVAR", F32), ("HALPHA_BROAD_SIGMA", F32),
]

SPECTRA_COLUMNS: list[tuple[str, pa.DataType]] = [
    ("TARGETID", I64), ("SURVEY", STR), ("PROGRAM", STR), ("HEALPIX", I32), ("FILE_KIND", STR),
    ("TARGET_RA", F64), ("TARGET_DEC", F64), ("FILE", STR), ("ROW", I64),
]

# Columns the enrichment step adds (kernels/): Planck18 comoving distance, Cartesian position, HEALPix index.
DERIVED_COLUMNS: list[tuple[str, pa.DataType]] = [
    ("DIST_MPC", F64), ("DIST_MPCH", F64), ("X_MPCH", F64), ("Y_MPCH", F64), ("Z_MPCH", F64), ("_healpix_29", I64),
]


@dataclass(frozen=True)
class Product:
    """One logical table fed by one or more DESI file kinds."""

    name: str
    kinds: tuple[str, ...]
    hdus: tuple[str, ...]                 # row-matched HDUs read side by side, by EXTNAME
    suite: str                            # Great Expectations suite in expectations/
    columns: list[tuple[str, pa.DataType]]
    required: dict[str, str]              # column -> kind (float/int/str/bool) a file must have
    ra: str
    dec: str
    redshift: str | None
    key: tuple[str, ...] = ("TARGETID", "SURVEY", "PROGRAM")
    check_healpix: bool = False           # HEALPIX must equal the nside-64 NESTED pixel of (ra, dec)
    catalog_columns: tuple[str, ...] = field(default=())  # columns kept in the SQL table (lake keeps all)

    @property
    def schema(self) -> pa.Schema:
        """The lake schema: product columns then derived columns."""
        derived = DERIVED_COLUMNS if self.redshift else DERIVED_COLUMNS[-1:]
        return pa.schema(self.columns + derived)

    @property
    def sql_columns(self) -> list[tuple[str, pa.DataType]]:
        """Columns (with types) of this product's SQL table."""
        wanted = set(self.catalog_columns) if self.catalog_columns else None
        return [(f.name, f.type) for f in self.schema if (wanted is None or f.name in wanted)
                and not pa.types.is_list(f.type) and not pa.types.is_fixed_size_list(f.type)]


REDSHIFTS = Product(
    name="redshifts",
    kinds=("zpix", "zall"),
    hdus=("ZCATALOG",),
    suite="zcatalog",
    columns=ZCATALOG_COLUMNS,
    required={"TARGETID": "int", "HEALPIX": "int", "Z": "float", "ZERR": "float", "ZWARN": "int",
              "SPECTYPE": "str", "TARGET_RA": "float", "TARGET_DEC": "float", "DELTACHI2": "float",
              "COADD_FIBERSTATUS": "int", "TSNR2_LRG": "float", "OBJTYPE": "str"},
    ra="TARGET_RA", dec="TARGET_DEC", redshift="Z", check_healpix=True,
    catalog_columns=(
        "TARGETID", "SURVEY", "PROGRAM", "HEALPIX", "Z", "ZERR", "ZWARN", "CHI2", "DELTACHI2", "SPECTYPE",
        "SUBTYPE", "NPIXELS", "COADD_FIBERSTATUS", "TARGET_RA", "TARGET_DEC", "OBJTYPE", "BRICKNAME", "MORPHTYPE",
        "EBV", *[f"FLUX_{b}" for b in _BANDS], *[f"FLUX_IVAR_{b}" for b in _BANDS], "MASKBITS", "PHOTSYS",
        "DESI_TARGET", "BGS_TARGET", "MWS_TARGET", "SCND_TARGET", "COADD_NUMEXP", "COADD_EXPTIME",
        "TSNR2_BGS", "TSNR2_LRG", "TSNR2_ELG", "TSNR2_QSO", "TSNR2_LYA", "ZCAT_NSPEC", "ZCAT_PRIMARY", "DESINAME",
        "DIST_MPC", "DIST_MPCH", "X_MPCH", "Y_MPCH", "Z_MPCH", "_healpix_29",
    ),
)

FASTSPEC = Product(
    name="fastspec",
    kinds=("fastspec",),
    hdus=("METADATA", "SPECPHOT", "FASTSPEC"),
    suite="fastspec",
    columns=FASTSPEC_COLUMNS,
    required={"TARGETID": "int", "SURVEY": "str", "PROGRAM": "str", "RA": "float", "DEC": "float", "Z": "float",
              **{f"{line}_FLUX": "float" for line in _BPT_LINES[:4]},
              **{f"{line}_FLUX_IVAR": "float" for line in _BPT_LINES[:4]}},
    ra="RA", dec="DEC", redshift="Z",
)

SPECTRA = Product(
    name="spectra",
    kinds=("coadd", "redrock"),
    hdus=("FIBERMAP",),
    suite="spectra",
    columns=SPECTRA_COLUMNS,
    required={"TARGETID": "int", "TARGET_RA": "float", "TARGET_DEC": "float"},
    ra="TARGET_RA", dec="TARGET_DEC", redshift=None,
    key=("TARGETID", "SURVEY", "PROGRAM", "FILE_KIND"),
)

PRODUCTS: dict[str, Product] = {p.name: p for p in (REDSHIFTS, FASTSPEC, SPECTRA)}
PRODUCT_OF_KIND: dict[str, Product] = {kind: p for p in PRODUCTS.values() for kind in p.kinds}


def classify(file_name: str) -> tuple[str, dict[str, str]] | None:
    """Return (kind, fields parsed from the name) for a DESI DR1 file name, or None if it is not one we ingest."""
    for kind, pattern in FILE_PATTERNS.items():
        match = pattern.match(file_name)
        if match:
            return kind, {k: v for k, v in match.groupdict().items() if v is not None}
    return None

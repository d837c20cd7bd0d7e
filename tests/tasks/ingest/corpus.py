"""A corpus of bad or odd DESI DR1 files (issue #13 item 6), each built in a test's tmp_path from the `sample` tree.

Every case says which file name it is stored under (relative to the source directory), how to make it from the
sample, and what the ingest does with it: ``quarantined`` (with the regexes its one-line error must match, naming the
file, HDU, column and value), ``ingested`` (with the rows loaded and regexes for the lineage notes), ``skipped``, or
``not-recognised`` / ``ignored`` (discovery lists the file as not recognised / does not look at it at all).
No binary file is committed: everything is derived from the synthetic sample.
"""

from __future__ import annotations

import gzip
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table, vstack

from kernels.fitssum import MASK32, encode_checksum, fold, ones_complement_sum
from tests.tasks.ingest.test_pipeline import _corrupt_gz, _flip_bit

BASELINE = "zpix-main-dark.fits"      # the good file every case's catalog and lake already hold
ZPIX = "zpix-main-bright.fits"        # what most cases damage (1325 rows: two 700-row chunks)
FASTSPEC = "fastspec-iron-sv3-bright.fits"
REDROCK = "redrock-main-dark-12046.fits"
BLOCK = 2880
_STRUCTURAL = re.compile(r"^(XTENSION|BITPIX|NAXIS\d*|PCOUNT|GCOUNT|TFIELDS|T[A-Z]+\d+|CHECKSUM|DATASUM|EXTNAME)$")

Make = Callable[[Path, Path], object]    # (sample root, file to write)

@dataclass(frozen=True)
class Case:
    """One corpus file and what ingesting it must give."""

    name: str
    file: str                       # where the case stores it, relative to the source directory
    make: Make
    outcome: str                    # quarantined, ingested, skipped, not-recognised, ignored
    parts: tuple[str, ...] = ()     # regexes the error (quarantined) or the notes (ingested) must each match
    rows: int | None = None         # rows an ingested file loads (None: the rows of its source file)
    source: str = ZPIX              # the sample file it is derived from

    @property
    def product(self) -> str:
        return {FASTSPEC: "fastspec", REDROCK: "spectra"}.get(self.source, "redshifts")


def sample_file(sample: Path, name: str) -> Path:
    return next(sample.rglob(name))


def nrows(path: Path, hdu: str = "ZCATALOG") -> int:
    return int(fits.getheader(path, hdu)["NAXIS2"])


# --- writers ------------------------------------------------------------------------------------------------------
def rewrite(src: Path, dst: Path, hdu: str = "ZCATALOG", change: Callable[[Table], Table | None] = lambda t: None,
            extname: str | None = None, checksum: bool = True) -> Path:
    """Write ``src`` to ``dst`` with table HDU ``hdu`` passed through ``change`` (in place, or returning a new
    table) and renamed to ``extname`` ('' drops EXTNAME); every other HDU and header keyword kept, and fresh
    CHECKSUM/DATASUM cards in every HDU when ``checksum``."""
    with fits.open(src) as hdul:
        out: list[fits.PrimaryHDU | fits.BinTableHDU] = [fits.PrimaryHDU(header=hdul[0].header.copy())]
        for old in hdul[1:]:
            if old.name != hdu:
                out.append(fits.BinTableHDU(old.data.copy(), header=old.header.copy()))
                continue
            table = Table(old.data)
            changed = change(table)
            new = fits.table_to_hdu(table if changed is None else changed)
            for card in old.header.cards:
                if not _STRUCTURAL.match(card.keyword) and card.keyword not in ("COMMENT", "HISTORY", ""):
                    new.header[card.keyword] = (card.value, card.comment)
            name = hdu if extname is None else extname
            if name:
                new.header["EXTNAME"] = name
            out.append(new)
        if not checksum:
            for h in out:
                for key in ("CHECKSUM", "DATASUM"):
                    h.header.remove(key, ignore_missing=True)
        fits.HDUList(out).writeto(dst, overwrite=True, checksum=checksum)
    return dst


def edit(change: Callable[[Table], Table | None], hdu: str = "ZCATALOG", **kw) -> Make:
    return lambda src, dst: rewrite(src, dst, hdu, change, **kw)


def patch(column: str, value: object, hdu: str = "ZCATALOG", where: Callable[[object], int] = lambda t: 5) -> Make:
    """The source with one value of ``column`` changed in place, CHECKSUM/DATASUM of every HDU rewritten (much
    faster than a round trip through a Table)."""
    def write(src: Path, dst: Path) -> None:
        with fits.open(src) as hdul:
            data = hdul[hdu].data
            data[column][where(data)] = value
            hdul.writeto(dst, checksum=True)
    return write


def first_tgt(t) -> int:
    return int(np.flatnonzero(np.char.strip(np.asarray(t["OBJTYPE"], dtype=str)) == "TGT")[0])


def retype(column: str, dtype: str) -> Callable[[Table], None]:
    return lambda t: t.replace_column(column, t[column].astype(dtype))


def cut(where: Callable[[Path], int]) -> Make:
    """The source's bytes up to ``where(source)``."""
    return lambda src, dst: dst.write_bytes(src.read_bytes()[: where(src)])


def hdu_loc(path: Path, index: int, what: str = "datLoc") -> int:
    with fits.open(path) as hdul:
        return int(hdul.fileinfo(index)[what])


def flip_data_bit(src: Path, dst: Path) -> None:
    """A bit of row 1 of ZCATALOG flipped: the header's sums no longer match the data."""
    shutil.copy(src, dst)
    _flip_bit(dst, hdu_loc(dst, 1) + 1000)


def checksum_only(src: Path, dst: Path, damage: bool = False) -> None:
    """ZCATALOG with a correct CHECKSUM and no DATASUM card (then, with ``damage``, a data bit flipped)."""
    raw = bytearray(src.read_bytes())
    start, data = hdu_loc(src, 1, "hdrLoc"), hdu_loc(src, 1)
    size = nrows(src) * int(fits.getheader(src, "ZCATALOG")["NAXIS1"])
    end = data + size + (-size % BLOCK)
    cards = {bytes(raw[k:k + 8]): k for k in range(start, data, 80)}
    raw[cards[b"DATASUM "]:cards[b"DATASUM "] + 80] = b" " * 80
    at = cards[b"CHECKSUM"] + 11
    raw[at:at + 16] = b"0" * 16
    total = fold(ones_complement_sum(bytes(raw[start:data])) + ones_complement_sum(bytes(raw[data:end])))
    raw[at:at + 16] = encode_checksum(~total & MASK32).encode()
    dst.write_bytes(bytes(raw))
    if damage:
        _flip_bit(dst, data + 1000)


def gz(make: Make | None = None, damage: Callable[[bytes], bytes] = lambda raw: raw) -> Make:
    """The gzip of the source (or of what ``make`` writes from it), passed through ``damage``."""
    def write(src: Path, dst: Path) -> None:
        plain = dst.with_name(dst.name[: -len(".gz")] + ".tmp")
        (make or (lambda s, d: shutil.copy(s, d)))(src, plain)
        dst.write_bytes(damage(gzip.compress(plain.read_bytes(), mtime=0)))
        plain.unlink()
    return write


def header_card(old: bytes, new: bytes, after: bytes = b"XTENSION= 'BINTABLE") -> Make:
    """The source with one header card's text replaced (the file written without checksums, so the change is the
    only problem)."""
    def write(src: Path, dst: Path) -> None:
        rewrite(src, dst, checksum=False)
        raw = bytearray(dst.read_bytes())
        at = raw.index(old, raw.index(after))
        raw[at:at + len(old)] = new.ljust(len(old))
        dst.write_bytes(bytes(raw))
    return write


def copy(src: Path, dst: Path) -> None:
    shutil.copy(src, dst)


def in_dir(src: Path, dst: Path) -> None:
    """A directory named like a DR1 file, holding the good file."""
    dst.mkdir()
    shutil.copy(src, dst / src.name)


# --- expected message parts -------------------------------------------------------------------------------------
HDU_Z = r", HDU ZCATALOG"
ROWS = r", rows 0-699: "


def between(column: str, lo: str | None, hi: str | None, value: str, n: int = 700, where: str = "") -> str:
    """The validator's words for a value outside [lo, hi] ('' for lo: not finite)."""
    rng = rf"outside \[{lo}, {hi}\]" if hi is not None else rf"not ≥ {lo}" if lo else "not finite"
    return rf"{column}: 1 of {n} values {rng}, e\.g\. {value}{re.escape(where)}$"


def null(column: str, n: int = 700) -> str:
    return rf"{column}: 1 of {n} values null \(NaN\), expected none$"


def _value_cases() -> list[Case]:
    """NaN, inf and an out-of-range value in each column the suites check for a range (zcatalog, fastspec,
    spectra), each put in a row where the suite's row_condition applies; for a column checked with a lower bound
    only, inf is caught by its 'finite' check."""
    cases = []
    zcat = {  # column: (lo, hi, an out-of-range value, how the message shows it, the row condition's words)
        "TARGET_RA": ("0", "360", 361.5, r"361\.5", ""),
        "TARGET_DEC": ("-90", "90", -90.5, r"-90\.5", ""),
        "Z": ("-0.01", "8", 9.25, r"9\.25", ""),
        "ZERR": ("0", None, -0.5, r"-0\.5", " (checked where ZERR != -1)"),
    }
    for column, (lo, hi, bad, shown, where) in zcat.items():
        for label, value, part in (("nan", np.nan, null(column)),
                                   ("inf", np.inf, between(column, lo if hi else "", hi, "inf")),
                                   ("range", bad, between(column, lo, hi, shown, where=where))):
            cases.append(Case(f"{label}-{column}", ZPIX, patch(column, value), "quarantined", (HDU_Z + ROWS, part)))
    cases += [
        Case("range-ZWARN", ZPIX, patch("ZWARN", -4), "quarantined",
             (HDU_Z + ROWS, between("ZWARN", "0", None, "-4"))),
        Case("range-HEALPIX", ZPIX, patch("HEALPIX", 49152), "quarantined",
             (HDU_Z + ROWS, between("HEALPIX", "0", "49151", "49152"))),
        Case("range-TARGETID-TGT", ZPIX, patch("TARGETID", -7, where=first_tgt), "quarantined",
             (HDU_Z + ROWS, r"TARGETID: 1 of \d+ values not > 0, e\.g\. -7 \(checked where OBJTYPE == TGT\)$")),
        Case("range-SPECTYPE", ZPIX, patch("SPECTYPE", "ALIEN"), "quarantined",
             (HDU_Z + ROWS, r"SPECTYPE: 1 of 700 values not in \{GALAXY, QSO, STAR\}, e\.g\. 'ALIEN'$")),
    ]
    fastspec = {"RA": ("0", "360", 400.0, r"400\.0"), "DEC": ("-90", "90", 91.0, r"91\.0"),
                "Z": ("-0.01", "8", -0.5, r"-0\.5")}
    for line in ("HALPHA", "HBETA", "OIII_5007", "NII_6584", "SII_6716", "SII_6731", "OI_6300"):
        fastspec[f"{line}_FLUX_IVAR"] = ("0", None, -1.0, r"-1\.0")
    for column, (lo, hi, bad, shown) in fastspec.items():
        hdu = "METADATA" if column in ("RA", "DEC", "Z") else "FASTSPEC"
        for label, value, part in (("nan", np.nan, null(column, 108)),
                                   ("inf", np.inf, between(column, lo if hi else "", hi, "inf", 108)),
                                   ("range", bad, between(column, lo, hi, shown, 108))):
            cases.append(Case(f"{label}-fastspec-{column}", FASTSPEC, patch(column, value, hdu), "quarantined",
                              (rf", HDU {hdu}, rows 0-107: ", part), source=FASTSPEC))
    for column, lo, hi, bad, shown in (("TARGET_RA", "0", "360", -1.0, r"-1\.0"),
                                       ("TARGET_DEC", "-90", "90", 90.5, r"90\.5")):
        for label, value, part in (("nan", np.nan, null(column, 4)), ("inf", np.inf, between(column, lo, hi, "inf", 4)),
                                   ("range", bad, between(column, lo, hi, shown, 4))):
            cases.append(Case(f"{label}-spectra-{column}", REDROCK, patch(column, value, "FIBERMAP", lambda t: 1),
                              "quarantined", (r", HDU FIBERMAP, rows 0-3: ", part), source=REDROCK))
    return cases


def cases() -> list[Case]:
    """The whole corpus."""
    data = lambda src: hdu_loc(src, 1)  # noqa: E731
    corpus = [
        # truncated at several places
        Case("truncated-primary-header", ZPIX, cut(lambda s: 1000), "quarantined",
             (r": not a readable FITS file \(file ends inside the primary header\)$",)),
        Case("truncated-table-header", ZPIX, cut(lambda s: BLOCK + 1500), "quarantined",
             (r": file is truncated inside the header of HDU #1$",)),  # EXTNAME comes after the cut
        Case("truncated-mid-data", ZPIX, cut(lambda s: data(s) + 400_001), "quarantined",
             (HDU_Z + r": file is truncated: the data unit needs 881280 bytes, the file has 400001 of them$",)),
        Case("truncated-mid-row-no-checksums", ZPIX,
             lambda s, d: d.write_bytes(rewrite(s, d, checksum=False).read_bytes()[: data(d) + 664 * 700 + 10]),
             "quarantined", (HDU_Z + r": file is truncated: the data unit needs 881280 bytes, the file has 464810",)),
        Case("truncated-last-partial-block", ZPIX, cut(lambda s: s.stat().st_size - 100), "quarantined",
             (r", HDU EXP_FIBERMAP: file is truncated: the data unit needs 362880 bytes, the file has 362780",)),
        Case("truncated-at-hdu-boundary", ZPIX, cut(lambda s: hdu_loc(s, 2, "hdrLoc")), "ingested",
             (r"^$",)),  # a complete FITS file with its last HDU (EXP_FIBERMAP, not ingested) gone: undetectable
        # EXTNAME
        Case("extname-wrong", ZPIX, edit(lambda t: None, extname="ZCAT"), "quarantined",
             (r": no HDU with EXTNAME 'ZCATALOG' \(found \['PRIMARY', 'ZCAT', 'EXP_FIBERMAP'\]\)$",)),
        Case("extname-missing", ZPIX, edit(lambda t: None, extname=""), "quarantined",
             (r": no HDU with EXTNAME 'ZCATALOG' \(found \['PRIMARY', '', 'EXP_FIBERMAP'\]\)$",)),
        Case("extname-lower-case", ZPIX, edit(lambda t: None, extname="zcatalog"), "ingested", (r"^$",)),
        Case("extname-missing-fastspec-hdu", FASTSPEC, edit(lambda t: None, "SPECPHOT", extname="SPECPHOTX"),
             "quarantined", (r": no HDU with EXTNAME 'SPECPHOT'",), source=FASTSPEC),
        # TFORM of key columns
        Case("tform-Z-string", ZPIX, edit(retype("Z", "S12")), "quarantined",
             (HDU_Z + r", column Z: expected a float column \(D/E\), found TFORM 12A$",)),
        Case("tform-TARGET_RA-int", ZPIX, edit(retype("TARGET_RA", "i8")), "quarantined",
             (HDU_Z + r", column TARGET_RA: expected a float column \(D/E\), found TFORM K$",)),
        Case("tform-TARGETID-float", ZPIX, edit(retype("TARGETID", "f8")), "quarantined",
             (HDU_Z + r", column TARGETID: expected an? int column \(B/I/J/K\), found TFORM D$",)),
        Case("tform-Z-vector", ZPIX, edit(lambda t: t.replace_column("Z", np.repeat(t["Z"][:, None], 2, axis=1))),
             "quarantined", (HDU_Z + r", column Z: cannot convert fixed_size_list<item: double>\[2\] to double ",)),
        Case("tform-Z-float32", ZPIX, edit(retype("Z", "f4")), "ingested", (r"^$",)),  # widened to float64
        Case("tform-header-disagrees-with-naxis1", ZPIX, header_card(b"TFORM4  = 'D       '", b"TFORM4  = 'E'"),
             "quarantined", (HDU_Z + r": columns add up to 660 bytes per row but NAXIS1 is 664$",)),
        Case("tform-unknown-letter", ZPIX, header_card(b"TFORM4  = 'D       '", b"TFORM4  = 'Y'"),
             "quarantined", (HDU_Z + r", column Z: unknown TFORM 'Y'$",)),
        # duplicate (TARGETID, SURVEY, PROGRAM) keys
        Case("duplicate-keys-in-a-chunk", ZPIX, edit(lambda t: vstack([t[:3], t])), "quarantined",
             (HDU_Z + ROWS + r"TARGETID, SURVEY, PROGRAM: 6 of 700 rows have duplicate \(TARGETID, SURVEY, PROGRAM\) "
                             r"values, e\.g\. \(\d+, 'main', 'bright'\)",)),
        Case("duplicate-keys-across-chunks", ZPIX, edit(lambda t: vstack([t, t[:1]])), "quarantined",
             (HDU_Z + r": 1 keys \(TARGETID, SURVEY, PROGRAM\) appear more than once \(duplicate rows\), "
                      r"e\.g\. \{'TARGETID': \d+, 'SURVEY': 'main', 'PROGRAM': 'bright'\} x2$",)),
        Case("duplicate-negative-targetids-on-sky", ZPIX, edit(_sky_duplicates), "ingested", (r"^$",)),
        # HEALPIX against the position
        Case("healpix-wrong", ZPIX, patch("HEALPIX", 1), "quarantined",
             (HDU_Z + r", column HEALPIX: 1 rows disagree with the nside-64 NESTED pixel of TARGET_RA/TARGET_DEC "
                      r"\(e\.g\. TARGETID \d+: HEALPIX 1, position gives \d+\)$",)),
        Case("healpix-nside-32", ZPIX, edit(_coarser_healpix), "quarantined",
             (HDU_Z + r", column HEALPIX: 700 rows disagree with the nside-64 NESTED pixel of TARGET_RA/TARGET_DEC",)),
        # FITS checksums
        Case("checksum-datasum-mismatch", ZPIX, flip_data_bit, "quarantined",
             (r": FITS checksum mismatch in HDU ZCATALOG: DATASUM expected \d+ \(header\), computed \d+ \(data\); "
              r"CHECKSUM expected '.{16}' \(header\), computed '.{16}'$",)),
        Case("checksum-only-mismatch", ZPIX, lambda s, d: checksum_only(s, d, damage=True), "quarantined",
             (r": FITS checksum mismatch in HDU ZCATALOG: CHECKSUM expected '.{16}' \(header\), computed '.{16}'$",)),
        Case("checksum-only-ok", ZPIX, checksum_only, "ingested",
             (r"^CHECKSUM without DATASUM in HDU ZCATALOG \(verified over header and data\)$",)),
        Case("checksums-absent", ZPIX, edit(lambda t: None, checksum=False), "ingested", (r"^no FITS checksums$",)),
        # gzip
        Case("gzip-ok", ZPIX + ".gz", gz(), "ingested", (r"^$",)),
        Case("gzip-corrupt", ZPIX + ".gz", gz(damage=_corrupt_gz), "quarantined",
             (r": not a valid gzip stream: (Error -3 while decompressing|CRC check failed)",)),
        Case("gzip-truncated", ZPIX + ".gz", gz(damage=lambda raw: raw[: len(raw) * 2 // 3]), "quarantined",
             (r": not a valid gzip stream: Compressed file ended before the end-of-stream marker",)),
        Case("gzip-of-a-bad-checksum", ZPIX + ".gz", gz(flip_data_bit), "quarantined",
             (r": FITS checksum mismatch in HDU ZCATALOG: DATASUM",)),
        Case("gzip-of-a-truncated-file", ZPIX + ".gz", gz(cut(lambda s: data(s) + 1000)), "quarantined",
             (HDU_Z + r": file is truncated",)),
        # rows and columns
        Case("zero-rows", ZPIX, edit(lambda t: t[:0]), "ingested", (r"^$",), rows=0),
        Case("zero-rows-gzip", ZPIX + ".gz", gz(edit(lambda t: t[:0])), "ingested", (r"^$",), rows=0),
        Case("extra-columns", ZPIX, edit(_extra_columns), "ingested",
             (r"^extra columns not kept in the lake: MY_FLAG, ZZ_EXTRA$",)),
        Case("reordered-columns", ZPIX, edit(lambda t: t[list(reversed(t.colnames))]), "ingested", (r"^$",)),
        Case("optional-column-missing", ZPIX, edit(lambda t: t.remove_columns(["CHI2", "DESINAME"])), "ingested",
             (r"^$",)),
        Case("required-column-missing", ZPIX, edit(lambda t: t.remove_column("ZERR")), "quarantined",
             (HDU_Z + r", column ZERR: required column is missing$",)),
        Case("fastspec-hdus-not-row-matched", FASTSPEC, edit(lambda t: t[:-1], "SPECPHOT"), "quarantined",
             (r": HDUs METADATA and SPECPHOT are not row-matched \(108 vs 107 rows\)$",), source=FASTSPEC),
        # odd file names and places
        Case("name-upper-case", ZPIX.upper(), copy, "not-recognised"),
        Case("name-extra-suffix", "zpix-main-bright.fits.bak", copy, "ignored"),
        Case("name-extra-infix", "zpix-main-bright.v2.fits", copy, "not-recognised"),
        Case("name-unknown-program", "zpix-main-brighter.fits", copy, "not-recognised"),
        Case("name-directory-like-a-file", ZPIX, in_dir, "ingested", (r"^$",)),
        Case("name-quote-and-space-in-directory", "it's my data/" + ZPIX, copy, "ingested", (r"^$",)),
        Case("same-content-as-the-baseline", "elsewhere/" + BASELINE, lambda s, d: copy(sample_file_of(s), d),
             "skipped", (r"^same content as .*zpix-main-dark\.fits, already ingested \(run base\)$",)),
    ]
    return corpus + _value_cases()


def sample_file_of(src: Path) -> Path:
    """The baseline file next to ``src`` (both zpix files live in one directory of the sample)."""
    return src.with_name(BASELINE)


def _sky_duplicates(t: Table) -> None:
    """Two sky fibres (OBJTYPE SKY) share a negative TARGETID: DESI's stuck positioners may repeat."""
    for i in (10, 11):
        t["TARGETID"][i] = -1234
        t["OBJTYPE"][i] = "SKY"


def _coarser_healpix(t: Table) -> None:
    """HEALPIX of nside 32 (NESTED) instead of DESI's nside 64."""
    t["HEALPIX"] = t["HEALPIX"] // 4


def _extra_columns(t: Table) -> None:
    t["ZZ_EXTRA"] = np.arange(len(t), dtype=np.float32)
    t.add_column(np.zeros(len(t), dtype=bool), name="MY_FLAG", index=3)


def make_case(case: Case, sample: Path, source_dir: Path) -> Path:
    """Write the case's file under ``source_dir``; return its path."""
    dst = source_dir / case.file
    dst.parent.mkdir(parents=True, exist_ok=True)
    case.make(sample_file(sample, case.source), dst)
    return dst

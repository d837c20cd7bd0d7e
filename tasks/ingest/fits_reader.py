"""Chunked, bounded-memory reader for FITS binary tables, by EXTNAME and column name.

astropy reads the headers; the table rows are read straight from the file in row chunks with
plain ``read()`` calls (no memory map, so resident memory stays at one chunk whatever the file
size) and decoded into Arrow record batches: big-endian numbers to native, TZERO/TSCAL applied
(unsigned integers), logicals to bool, fixed-width strings right-stripped, vectors such as the
10-element COEFF to fixed-size lists.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from astropy.io import fits


class FitsFormatError(ValueError):
    """A FITS file that cannot be read as expected; the message names file, HDU and column."""

    def __init__(self, path: Path | str, problem: str, hdu: str | None = None, column: str | None = None):
        where = str(path)
        if hdu:
            where += f", HDU {hdu}"
        if column:
            where += f", column {column}"
        super().__init__(f"{where}: {problem}")
        self.path, self.hdu, self.column, self.problem = str(path), hdu, column, problem


# FITS TFORM letter -> (numpy kind for big-endian storage, bytes per element)
_TFORM_DTYPES = {
    "L": "i1", "B": "u1", "I": ">i2", "J": ">i4", "K": ">i8",
    "E": ">f4", "D": ">f8", "C": ">c8", "M": ">c16",
}
_UNSIGNED = {"I": np.uint16, "J": np.uint32, "K": np.uint64}
_TFORM_RE = re.compile(r"^\s*(\d*)([LXBIJKAEDCMPQ])(.*)$")

# What a caller may demand of a column: the TFORM letters that satisfy each kind.
KIND_TFORMS = {
    "float": {"E", "D"},
    "int": {"B", "I", "J", "K"},
    "bool": {"L"},
    "str": {"A"},
}


@dataclass(frozen=True)
class FitsColumn:
    """One column of a binary table as declared in its header."""

    name: str
    letter: str
    repeat: int
    offset: int
    raw_dtype: np.dtype
    tzero: float | None
    tscal: float | None
    unit: str | None


@dataclass(frozen=True)
class TableLayout:
    """Where a binary table's rows are in the file and how one row is laid out."""

    path: Path
    extname: str
    header: fits.Header
    nrows: int
    row_bytes: int
    data_offset: int
    columns: dict[str, FitsColumn]

    def require(self, name: str, kind: str | None = None) -> FitsColumn:
        """Return column ``name``, raising FitsFormatError if it is missing or of the wrong kind."""
        col = self.columns.get(name)
        if col is None:
            raise FitsFormatError(self.path, "required column is missing", self.extname, name)
        if kind is not None and col.letter not in KIND_TFORMS[kind]:
            tform = f"{col.repeat if col.repeat != 1 else ''}{col.letter}"
            raise FitsFormatError(
                self.path,
                f"expected a {kind} column ({'/'.join(sorted(KIND_TFORMS[kind]))}), found TFORM {tform}",
                self.extname,
                name,
            )
        return col


def _column_dtype(path: Path, extname: str, name: str, tform: str) -> tuple[str, int, np.dtype]:
    match = _TFORM_RE.match(tform)
    if not match:
        raise FitsFormatError(path, f"unknown TFORM {tform!r}", extname, name)
    repeat = int(match.group(1) or 1)
    letter = match.group(2)
    if letter == "A":
        return letter, repeat, np.dtype(f"S{repeat}")
    if letter == "X":
        return letter, repeat, np.dtype(("u1", ((repeat + 7) // 8,)))
    if letter in "PQ":  # variable-length array descriptors: kept raw, never decoded
        return letter, repeat, np.dtype((">i4" if letter == "P" else ">i8", (2,)))
    base = np.dtype(_TFORM_DTYPES[letter])
    return letter, repeat, base if repeat == 1 else np.dtype((base, (repeat,)))


def table_layout(path: Path | str, extname: str) -> TableLayout:
    """Read the header of binary-table HDU ``extname`` and return its row layout."""
    path = Path(path)
    try:
        with fits.open(path, lazy_load_hdus=True, memmap=False) as hdul:
            try:
                hdu = hdul[extname]
            except KeyError:
                names = [h.name for h in hdul]
                raise FitsFormatError(path, f"no HDU with EXTNAME {extname!r} (found {names})") from None
            index = hdul.index_of(extname)
            data_offset = hdul.fileinfo(index)["datLoc"]
            header = hdu.header.copy()
    except FitsFormatError:
        raise
    except Exception as exc:  # astropy raises OSError/TypeError/ValueError for non-FITS or broken headers
        raise FitsFormatError(path, f"not a readable FITS file ({type(exc).__name__}: {exc})") from exc

    if header.get("XTENSION", "").strip() != "BINTABLE":
        raise FitsFormatError(path, f"expected a BINTABLE, found {header.get('XTENSION')!r}", extname)
    nrows, row_bytes = int(header["NAXIS2"]), int(header["NAXIS1"])
    columns: dict[str, FitsColumn] = {}
    offset = 0
    for i in range(1, int(header["TFIELDS"]) + 1):
        name = str(header[f"TTYPE{i}"]).strip()
        letter, repeat, dtype = _column_dtype(path, extname, name, str(header[f"TFORM{i}"]))
        columns[name] = FitsColumn(
            name=name, letter=letter, repeat=repeat, offset=offset, raw_dtype=dtype,
            tzero=header.get(f"TZERO{i}"), tscal=header.get(f"TSCAL{i}"), unit=header.get(f"TUNIT{i}"),
        )
        offset += dtype.itemsize
    if offset != row_bytes:
        raise FitsFormatError(path, f"columns add up to {offset} bytes per row but NAXIS1 is {row_bytes}", extname)

    needed = data_offset + nrows * row_bytes
    size = path.stat().st_size
    if size < needed:
        raise FitsFormatError(
            path, f"file is truncated: table needs {needed} bytes, file has {size} ({nrows} rows declared)", extname
        )
    return TableLayout(path, extname, header, nrows, row_bytes, data_offset, columns)


def _decode(col: FitsColumn, raw: np.ndarray) -> pa.Array:
    """Turn one column of raw big-endian rows into an Arrow array."""
    if col.letter == "A":  # fixed width, padded with NULs or blanks: view the bytes, cast, trim
        packed = np.ascontiguousarray(raw)
        fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(raw.dtype.itemsize), len(packed),
                                                     [None, pa.py_buffer(packed)])
        return pc.utf8_rtrim(fixed.cast(pa.binary()).cast(pa.string()), characters=" \x00")
    if col.letter == "L":
        return pa.array(raw == ord("T"))
    values = raw.astype(raw.dtype.newbyteorder("="), copy=False) if raw.dtype.byteorder == ">" else raw
    unsigned = _UNSIGNED.get(col.letter)
    if unsigned is not None and not col.tscal and col.tzero == 2 ** (8 * values.dtype.itemsize - 1):
        tzero = cast(float, col.tzero)  # equal to 2**(n-1) here, so not None
        values = values.view(unsigned) ^ unsigned(tzero)  # signed storage + 2**(n-1) == flip the top bit
    elif col.letter == "B" and not col.tscal and col.tzero == -128:
        values = (values ^ 0x80).view(np.int8)
    elif col.tscal or col.tzero:
        values = values * (col.tscal or 1.0) + (col.tzero or 0.0)
    if values.ndim == 1:
        return pa.array(values)
    flat = pa.array(np.ascontiguousarray(values).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, values.shape[1])


# Rows are decoded in blocks of about this many bytes: each column pass then runs over a buffer that stays in
# the CPU cache, which is 3x faster than decoding a 250k-row chunk (hundreds of MB) column by column.
DECODE_BLOCK_BYTES = 32 << 20


def _decode_block(layout: TableLayout, selected: list[FitsColumn], row_dtype: np.dtype, buf: bytes,
                  start: int) -> pa.RecordBatch:
    rows = np.frombuffer(buf, dtype=row_dtype)
    arrays = []
    for c in selected:
        try:
            arrays.append(_decode(c, rows[c.name]))
        except (pa.ArrowInvalid, ValueError) as exc:
            raise FitsFormatError(layout.path, f"cannot decode rows {start}-{start + len(rows) - 1} ({exc})",
                                  layout.extname, c.name) from exc
    return pa.RecordBatch.from_arrays(arrays, names=[c.name for c in selected])


def iter_table(
    layout: TableLayout, columns: Sequence[str] | None = None, chunk_rows: int = 250_000
) -> Iterator[pa.Table]:
    """Yield tables of at most ``chunk_rows`` rows with the named columns (all when None)."""
    names = list(layout.columns) if columns is None else list(columns)
    selected = [layout.require(n) for n in names]
    selected = [c for c in selected if c.letter not in "PQ"]
    row_dtype = np.dtype(
        {
            "names": [c.name for c in selected],
            "formats": [c.raw_dtype for c in selected],
            "offsets": [c.offset for c in selected],
            "itemsize": layout.row_bytes,
        }
    )
    block_rows = max(1, min(chunk_rows, DECODE_BLOCK_BYTES // max(layout.row_bytes, 1)))
    with open(layout.path, "rb") as fh:
        for start in range(0, layout.nrows, chunk_rows):
            n = min(chunk_rows, layout.nrows - start)
            fh.seek(layout.data_offset + start * layout.row_bytes)
            blocks = []
            for offset in range(0, n, block_rows):
                m = min(block_rows, n - offset)
                buf = fh.read(m * layout.row_bytes)
                if len(buf) != m * layout.row_bytes:
                    row = start + offset + len(buf) // layout.row_bytes
                    raise FitsFormatError(layout.path, f"file ended inside row {row}", layout.extname)
                blocks.append(_decode_block(layout, selected, row_dtype, buf, start + offset))
            yield pa.Table.from_batches(blocks)


def read_table(path: Path | str, extname: str, columns: Sequence[str] | None = None) -> pa.Table:
    """Read a whole (small) binary table into Arrow; use iter_table for large ones."""
    layout = table_layout(path, extname)
    tables = list(iter_table(layout, columns, chunk_rows=max(layout.nrows, 1)))
    if tables:
        return tables[0]
    names = list(layout.columns) if columns is None else list(columns)
    return pa.table({n: pa.array([], type=pa.null()) for n in names})

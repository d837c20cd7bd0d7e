"""Writing FITS files front to back in bounded memory: binary tables are streamed in row chunks.

A table header is written with NAXIS2 = 0 and patched when the table ends (the fixed-format integer card keeps
its length), then the data are padded to 2880 bytes. Every HDU carries CHECKSUM and DATASUM as DESI's files do
(FITS standard Appendix J): the data sum is kept while rows stream and both cards are patched in with NAXIS2.
Rows of a table that cannot be streamed into its file yet
(EXP_FIBERMAP behind ZCATALOG, zall behind every zpix) wait in a raw `Spool` and are copied in at assembly.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from types import TracebackType

import numpy as np
from astropy.io import fits

from kernels.fitssum import MASK32, DataSum, encode_checksum, fold

from .columns import Col, record_dtype

BLOCK = 2880
Keywords = Iterable[tuple[str, object, str]]


def checksummed(header: fits.Header, datasum: int) -> bytes:
    """The header's bytes with DATASUM and CHECKSUM set for a data unit that sums to ``datasum``."""
    header["DATASUM"] = (str(datasum), "data unit checksum")
    header["CHECKSUM"] = ("0" * 16, "HDU checksum")
    summer = DataSum()
    summer.update(header.tostring().encode("ascii"))
    header["CHECKSUM"] = (encode_checksum(~fold(summer.value + datasum) & MASK32), "HDU checksum")
    return header.tostring().encode("ascii")


def table_header(cols: list[Col], extname: str, nrows: int, keywords: Keywords = ()) -> fits.Header:
    """A BINTABLE header for these columns (TFORM/TUNIT/TZERO), EXTNAME and extra (key, value, comment) cards."""
    header = _header_template(tuple(cols), extname, tuple(keywords)).copy()
    header["NAXIS2"] = nrows
    return header


@lru_cache(maxsize=256)
def _header_template(cols: tuple[Col, ...], extname: str, keywords: tuple[tuple[str, object, str], ...]
                     ) -> fits.Header:
    cards: list[tuple[str, object, str]] = [
        ("XTENSION", "BINTABLE", "binary table extension"), ("BITPIX", 8, "array data type"),
        ("NAXIS", 2, "number of array dimensions"),
        ("NAXIS1", record_dtype(list(cols)).itemsize, "length of dimension 1"),
        ("NAXIS2", 0, "length of dimension 2"), ("PCOUNT", 0, "number of group parameters"),
        ("GCOUNT", 1, "number of groups"), ("TFIELDS", len(cols), "number of table fields"),
    ]
    for i, c in enumerate(cols, start=1):
        cards += [(f"TTYPE{i}", c.name, ""), (f"TFORM{i}", c.tform, "")]
        if c.unit:
            cards.append((f"TUNIT{i}", c.unit, ""))
        if c.tzero is not None:
            cards.append((f"TZERO{i}", c.tzero, ""))
    cards += [("EXTNAME", extname, "extension name"), *keywords]
    return fits.Header(cards)


def _padding(nbytes: int, fill: bytes = b"\0") -> bytes:
    return fill * (-nbytes % BLOCK)


class Spool:
    """Records of one layout kept in a raw file until they are copied into a FITS table."""

    def __init__(self, path: Path, cols: list[Col]):
        self.path = path
        self.dtype = record_dtype(cols)
        self.nrows = 0
        self._fh = open(path, "wb")

    def write(self, records: np.ndarray) -> None:
        """Append records (of this spool's layout)."""
        if records.dtype != self.dtype:
            raise TypeError(f"spool {self.path.name}: record layout differs from the one it was opened with")
        self._fh.write(records.tobytes())
        self.nrows += len(records)

    def finish(self) -> None:
        """Flush and close the raw file (it stays on disk until `remove`)."""
        if not self._fh.closed:
            self._fh.close()

    def remove(self) -> None:
        """Close and delete the raw file."""
        self.finish()
        self.path.unlink(missing_ok=True)


class FitsWriter:
    """One FITS file written HDU after HDU to `<path>.part`, renamed to `path` on `close`."""

    def __init__(self, path: Path):
        self.path = path
        self._part = path.with_name(path.name + ".part")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self._part, "wb")
        self._open: tuple[fits.Header, int, np.dtype] | None = None  # header, header offset, record dtype
        self._rows = 0
        self._datasum = DataSum()  # of the open table's rows

    def __enter__(self) -> FitsWriter:
        return self

    def __exit__(self, exc: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        if exc is None:
            self.close()
        else:
            self.abort()

    def write_primary(self, keywords: Keywords = ()) -> None:
        """The empty primary HDU with extra keywords."""
        header = fits.PrimaryHDU().header
        for key, value, comment in keywords:
            header[key] = (value, comment)
        self._fh.write(checksummed(header, 0))

    def write_image(self, data: np.ndarray, extname: str, keywords: Keywords = ()) -> None:
        """An IMAGE extension written whole (numpy shape (..., naxis1), stored big-endian)."""
        header = fits.ImageHDU(data=data, name=extname).header
        for key, value, comment in keywords:
            header[key] = (value, comment)
        raw = np.ascontiguousarray(data, dtype=data.dtype.newbyteorder(">")).tobytes()
        datasum = DataSum()
        datasum.update(raw)
        self._fh.write(checksummed(header, datasum.value))
        self._fh.write(raw + _padding(len(raw)))

    def begin_table(self, cols: list[Col], extname: str, keywords: Keywords = ()) -> None:
        """Start a streamed BINTABLE; rows follow with `write_rows`, `end_table` finishes it."""
        if self._open is not None:
            raise RuntimeError(f"{self.path.name}: table {self._open[0]['EXTNAME']} is still open")
        header = table_header(cols, extname, 0, keywords)
        dtype = record_dtype(cols)
        if header["NAXIS1"] != dtype.itemsize:
            raise AssertionError(f"{extname}: NAXIS1 {header['NAXIS1']} != record size {dtype.itemsize}")
        self._open = (header, self._fh.tell(), dtype)
        self._fh.write(checksummed(header, 0))
        self._rows = 0
        self._datasum = DataSum()

    def write_rows(self, records: np.ndarray) -> None:
        """Append records to the open table."""
        if self._open is None:
            raise RuntimeError(f"{self.path.name}: no table is open")
        if records.dtype != self._open[2]:
            raise TypeError(f"{self.path.name} {self._open[0]['EXTNAME']}: record layout differs from the header")
        raw = records.tobytes()
        self._fh.write(raw)
        self._datasum.update(raw)
        self._rows += len(records)

    def end_table(self) -> int:
        """Pad the data, write the final NAXIS2 into the header, return the row count."""
        if self._open is None:
            raise RuntimeError(f"{self.path.name}: no table is open")
        header, offset, dtype = self._open
        self._fh.write(_padding(self._rows * dtype.itemsize))
        header["NAXIS2"] = self._rows
        self._patch_header(header, offset, self._datasum.value)
        self._open = None
        return self._rows

    def _patch_header(self, header: fits.Header, offset: int, datasum: int) -> None:
        """Rewrite a header already written at ``offset`` (same cards, new values) with its checksums."""
        old = len(header.tostring())
        new = checksummed(header, datasum)
        if len(new) != old:
            raise AssertionError(f"{self.path.name}: patched header changed length")
        end = self._fh.tell()
        self._fh.seek(offset)
        self._fh.write(new)
        self._fh.seek(end)

    def copy_table(self, cols: list[Col], extname: str, spools: Sequence[Spool], keywords: Keywords = ()) -> int:
        """A BINTABLE whose rows are the concatenated spools, in order; returns the row count."""
        dtype = record_dtype(cols)
        for spool in spools:
            if spool.dtype != dtype:
                raise TypeError(f"{extname}: spool {spool.path.name} has another record layout")
            spool.finish()
        nrows = sum(s.nrows for s in spools)
        header = table_header(cols, extname, nrows, keywords)
        offset = self._fh.tell()
        self._fh.write(checksummed(header, 0))
        datasum = DataSum()
        for spool in spools:
            with open(spool.path, "rb") as src:
                while chunk := src.read(16 << 20):
                    self._fh.write(chunk)
                    datasum.update(chunk)
        self._fh.write(_padding(nrows * dtype.itemsize))
        self._patch_header(header, offset, datasum.value)
        return nrows

    def close(self) -> None:
        """Finish the file and move it into place."""
        if self._open is not None:
            raise RuntimeError(f"{self.path.name}: table {self._open[0]['EXTNAME']} was never ended")
        self._fh.close()
        os.replace(self._part, self.path)

    def abort(self) -> None:
        """Drop the partial file."""
        self._fh.close()
        self._part.unlink(missing_ok=True)

"""Find DESI DR1 files under a path or an S3 prefix and read them as product batches in the lake schema."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import shutil
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa

from tasks.ingest.fits_reader import FitsFormatError, TableLayout, iter_table, table_layout
from tasks.ingest.products import FITS_SUFFIXES, PRODUCT_OF_KIND, Product, classify
from tasks.storage.s3 import ObjectStore, split_url


@dataclass(frozen=True)
class SourceFile:
    """A DESI file recognised by its DR1 file name, local or in an object store (``url``)."""

    path: Path                    # the local file read; for an object-store file, its key until fetched
    kind: str
    survey: str | None = None
    program: str | None = None
    healpix: int | None = None
    url: str | None = None        # s3://bucket/key of a file in an object store
    size: int | None = None       # of an object-store file, from its listing
    mtime: float | None = None
    origin: str | None = None     # the stored file's name when ``path`` is a working copy (a decompressed .gz)

    @property
    def compressed(self) -> bool:
        """Whether the file is gzip-compressed FITS (``*.fits.gz``)."""
        return self.path.name.endswith(".gz")

    @property
    def product(self) -> Product:
        """The product this file feeds."""
        return PRODUCT_OF_KIND[self.kind]

    @property
    def location(self) -> str:
        """The file's name in lineage and messages: its local path or its s3:// URL."""
        return self.origin or self.url or str(self.path)

    def stat(self) -> tuple[int, float]:
        """(size, mtime) of the file as it is now (an object-store file: as listed)."""
        if self.url is not None:
            return self.size or 0, self.mtime or 0.0
        st = self.path.stat()
        return st.st_size, st.st_mtime


@dataclass(frozen=True)
class SourceStore:
    """An object store that ingest sources live in, and the local directory they are downloaded to."""

    store: ObjectStore
    download_dir: Path


@contextmanager
def local_copy(src: SourceFile, sources: SourceStore | None) -> Iterator[SourceFile]:
    """The source with ``path`` at a local copy, deleted afterwards (a local source as it is)."""
    if src.url is None:
        yield src
        return
    if sources is None:
        raise ValueError(f"{src.url}: an s3:// source needs the S3 settings (lake.s3_*)")
    sources.download_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="src-", dir=sources.download_dir))
    try:
        bucket, key = split_url(src.url)
        local = tmp / src.path.name
        sources.store.download(bucket, key, local)
        yield dataclasses.replace(src, path=local)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _is_fits_name(name: str) -> bool:
    """Whether a file name ends in .fits or .fits.gz, in any case: ZPIX-MAIN-DARK.FITS is a FITS file that no
    product recognises (reported as such), not something to pass over silently."""
    return name.lower().endswith(FITS_SUFFIXES)


def _candidates(root: str, sources: SourceStore | None) -> list[SourceFile]:
    """Every *.fits and *.fits.gz file (suffix in any case) under ``root`` (a single file: whatever its name) as an
    unclassified SourceFile (kind left empty)."""
    if root.startswith("s3://"):
        if sources is None:
            raise ValueError(f"{root}: an s3:// source needs the S3 settings (lake.s3_*)")
        bucket, prefix = split_url(root)
        listing = sources.store.list(bucket, prefix if _is_fits_name(prefix) else f"{prefix}/" if prefix else "")
        found = [SourceFile(Path(o.key), "", url=f"s3://{bucket}/{o.key}", size=o.size, mtime=o.mtime)
                 for o in listing if _is_fits_name(o.key)]
        if not found:
            raise FileNotFoundError(f"{root}: no *.fits objects there (nor *.fits.gz)")
        return sorted(found, key=lambda f: f.location)
    path = Path(root)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*.[fF][iI][tT][sS]*")
                                                  if _is_fits_name(p.name) and p.is_file())
    return [SourceFile(p, "") for p in files]


@dataclass(frozen=True)
class Discovery:
    """What discovery found: the DESI files to ingest, and the FITS files whose names no product recognises."""

    files: list[SourceFile]
    not_recognised: list[str]


def discover_all(root: str | Path, kinds: set[str] | None = None,
                 sources: SourceStore | None = None) -> Discovery:
    """The DESI files under ``root`` (a file, a directory, or an s3:// prefix with ``sources``), recognised by
    their DR1 file-name patterns (``.fits`` or ``.fits.gz``), and the FITS files that match no pattern (files of a
    kind left out by ``kinds`` are neither)."""
    found, unknown = [], []
    for candidate in _candidates(str(root), sources):
        match = classify(candidate.path.name)
        if match is None:
            unknown.append(candidate.location)
            continue
        if kinds and match[0] not in kinds:
            continue
        kind, fields = match
        pix = fields.get("healpix")
        found.append(dataclasses.replace(candidate, kind=kind, survey=fields.get("survey"),
                                         program=fields.get("program"),
                                         healpix=int(pix) if pix is not None else None))
    return Discovery(found, unknown)


def discover(root: str | Path, kinds: set[str] | None = None, sources: SourceStore | None = None) -> list[SourceFile]:
    """All DESI files under ``root`` (see ``discover_all``, which also lists the files no product recognises)."""
    return discover_all(root, kinds, sources).files


class GzipError(ValueError):
    """A ``.fits.gz`` file that is not a complete, valid gzip stream; the message names the file."""


class _HashingReader:
    """A binary file read through, feeding every byte read into a sha256."""

    def __init__(self, fh: BinaryIO, digest: hashlib._Hash) -> None:
        self.fh, self.digest = fh, digest

    def read(self, n: int = -1, /) -> bytes:
        buf = self.fh.read(n)
        self.digest.update(buf)
        return buf

    def seek(self, n: int, /) -> int:
        raise io.UnsupportedOperation("a hashed stream is read once, front to back")


@contextmanager
def decompressed(src: SourceFile, work_dir: Path | None = None,
                 block: int = 1 << 24) -> Iterator[tuple[SourceFile, str]]:
    """For a ``.fits.gz`` source: (the source with ``path`` at a decompressed temporary copy in ``work_dir`` (a
    system temporary directory when None), the sha256 of the .gz bytes as stored), the copy deleted afterwards.

    Streams in ``block``-sized pieces, so memory stays bounded whatever the file size. Raises GzipError naming the
    file for a corrupt or truncated stream (the gzip CRC and length are checked at the end of each member).
    """
    if work_dir is not None:
        work_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="gunzip-", dir=work_dir))
    try:
        out = tmp / src.path.name[: -len(".gz")]
        digest = hashlib.sha256()
        with open(src.path, "rb") as raw, open(out, "wb") as dst:
            stream = gzip.GzipFile(fileobj=_HashingReader(raw, digest), mode="rb")
            while True:
                try:
                    chunk = stream.read(block)
                except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
                    raise GzipError(f"{src.location}: not a valid gzip stream: {exc}") from exc
                if not chunk:
                    break
                dst.write(chunk)
            if raw.tell() == 0:
                raise GzipError(f"{src.location}: not a valid gzip stream: empty file")
            digest.update(raw.read())  # bytes after the last member gzip did not need (none for a valid file)
        yield dataclasses.replace(src, path=out, origin=src.location), digest.hexdigest()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def file_sha256(path: Path, block: int = 1 << 24) -> str:
    """Hex sha256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class ProductReader:
    """Reads one source file as batches of its product's columns (lake schema minus derived columns)."""

    src: SourceFile
    layouts: list[TableLayout] = field(init=False)
    constants: dict[str, object] = field(init=False)

    def __post_init__(self) -> None:
        product = self.src.product
        self.layouts = [table_layout(self.src.path, hdu) for hdu in product.hdus]
        first = self.layouts[0]
        for other in self.layouts[1:]:
            if other.nrows != first.nrows:
                raise FitsFormatError(self.src.path, f"HDUs {first.extname} and {other.extname} are not row-matched "
                                      f"({first.nrows} vs {other.nrows} rows)")
        for column, kind in product.required.items():
            if column in self.constants_from_file():
                continue
            owner = next((lay for lay in self.layouts if column in lay.columns), first)
            owner.require(column, kind)
        self.constants = self.constants_from_file()

    def constants_from_file(self) -> dict[str, object]:
        """Columns whose value comes from the file name or header rather than from the table."""
        header = self.layouts[0].header
        values: dict[str, object] = {}
        survey = self.src.survey or header.get("SURVEY")
        program = self.src.program or header.get("PROGRAM")
        in_table = {c for lay in self.layouts for c in lay.columns}
        if survey and ("SURVEY" not in in_table or self.src.kind == "fastspec"):
            values["SURVEY"] = str(survey).strip().lower()
        if program and ("PROGRAM" not in in_table or self.src.kind == "fastspec"):
            values["PROGRAM"] = str(program).strip().lower()
        if self.src.product.name == "spectra":
            values.update(FILE_KIND=self.src.kind, FILE=self.src.location, HEALPIX=self.src.healpix)
        return values

    def hdu_of(self, column: str) -> str:
        """EXTNAME of the HDU holding ``column`` (the first HDU for a column that comes from the file name)."""
        return next((lay.extname for lay in self.layouts if column in lay.columns), self.layouts[0].extname)

    @property
    def nrows(self) -> int:
        """Rows in the file."""
        return self.layouts[0].nrows

    @property
    def extra_columns(self) -> list[str]:
        """Columns in the file that the product's lake schema does not keep."""
        known = {name for name, _ in self.src.product.columns}
        return sorted({c for lay in self.layouts for c in lay.columns} - known)

    def batches(self, chunk_rows: int) -> Iterator[tuple[int, pa.Table]]:
        """Yield (first row, table) per chunk, columns in the product's order and types."""
        product = self.src.product
        wanted: list[list[str]] = []
        taken: set[str] = set(self.constants)
        for lay in self.layouts:
            names = [n for n, _ in product.columns if n in lay.columns and n not in taken]
            taken.update(names)
            wanted.append(names)
        iterators = [iter_table(lay, names, chunk_rows) for lay, names in zip(self.layouts, wanted, strict=True)]
        start = 0
        for pieces in zip(*iterators, strict=True):
            n = pieces[0].num_rows
            by_name = {name: col for piece in pieces for name, col in zip(piece.schema.names, piece.columns)}
            yield start, self._conform(by_name, n, start)
            start += n

    def _conform(self, by_name: dict[str, pa.Array], n: int, start: int) -> pa.Table:
        arrays = []
        for name, dtype in self.src.product.columns:
            if name == "ROW" and self.src.product.name == "spectra":  # row number within the source HDU
                arrays.append(pa.array(range(start, start + n), type=dtype))
            elif name in self.constants:
                arrays.append(pa.array([self.constants[name]] * n, type=dtype))
            elif name in by_name:
                arrays.append(self._cast(by_name[name], dtype, name))
            else:
                arrays.append(pa.nulls(n, type=dtype))
        return pa.Table.from_arrays(arrays, schema=pa.schema(self.src.product.columns))

    def _cast(self, array: pa.Array, dtype: pa.DataType, name: str) -> pa.Array:
        if array.type == dtype:
            return array
        try:
            return array.cast(dtype)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            hdu = next((lay.extname for lay in self.layouts if name in lay.columns), self.layouts[0].extname)
            raise FitsFormatError(self.src.path, f"cannot convert {array.type} to {dtype} ({exc})", hdu, name) from exc

"""Ingest one DESI file into staging and the catalog, and publish staged files to the lake as HATS.

A file goes: skip if lineage says its content is done -> (a .fits.gz: decompress to a temporary file) -> verify the
FITS CHECKSUM/DATASUM of every HDU that has them, computing the sha256 in the same pass -> read in chunks ->
validate (Great Expectations) -> enrich and check HEALPIX -> stage sorted parquet parts and append the rows to the
file's open catalog transaction -> check duplicate keys -> save the staged parts in the lake -> commit together with
its lineage row. A file in an object store is downloaded to a local temporary copy first. A file with zero rows is
loaded with nothing staged, and published with the next version (or the current one). Any failure
quarantines the file: its staged parts are deleted, the lineage row says why, and nothing of it reaches the
catalog or the lake. Publishing rebuilds the product's HATS catalog from the previous version plus every
loaded-but-unpublished file, saves it in the lake, records the version in the catalog, then points the lake at it
(a symlink swap, or one PUT of a pointer object on S3); ``reconcile`` finishes a swap that an interrupted run did not.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypedDict, TypeVar, cast

import duckdb
import numpy as np
import pyarrow as pa

from tasks.catalog.base import FileLoad, SqlCatalog
from tasks.catalog.schema import DONE_STATUSES, LineageRecord
from tasks.crashpoints import crash_point
from tasks.hats.writer import SEQ_COLUMN, write_hats_catalog, write_staging_parquet
from tasks.ingest.checksum import verify_fits
from tasks.ingest.enrich import enrich, healpix_mismatches
from tasks.ingest.fits_reader import FitsFormatError
from tasks.ingest.products import PRODUCTS, Product
from tasks.ingest.sources import (
    GzipError,
    ProductReader,
    SourceFile,
    SourceStore,
    decompressed,
    file_sha256,
    local_copy,
)
from tasks.ingest.validate import BatchValidator, Failure
from tasks.storage.lake import Lake, prune_versions
from tasks.storage.s3 import ObjectStoreError

T = TypeVar("T")
_END = object()
LOADS_IN_FLIGHT = 2  # staged chunks queued for or in the catalog load, at most: memory stays bounded


class IngestError(ValueError):
    """A file that cannot be ingested; the message names the file and what was wrong."""


@dataclass
class FileResult:
    """What happened to one source file."""

    path: str
    kind: str
    product: str
    status: str                   # ingested, skipped, quarantined
    rows: int = 0
    error: str | None = None
    notes: str | None = None
    file_hash: str | None = None
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class PublishResult:
    """A product's new HATS version."""

    product: str
    version: str
    path: str
    nrows: int
    partitions: int
    files: int


class _LineageStart(TypedDict):
    """The lineage fields of a file known before it is staged (the rest of a `LineageRecord` come after)."""

    path: str
    kind: str
    product: str
    survey: str | None
    program: str | None
    run_id: str
    started_at: dt.datetime
    file_size: int
    file_mtime: float


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _validate_chunk(src: SourceFile, validator: BatchValidator, batch: pa.Table, start: int,
                    hdu_of: Callable[[str], str]) -> None:
    """Run the product's Great Expectations suite on one chunk; raise IngestError naming the HDU, rows and column
    of what failed."""
    product = src.product
    rows = f"rows {start}-{start + batch.num_rows - 1}"
    used = validator.columns_used(product.suite)
    frame = batch.select([c for c in batch.schema.names if c in used]).to_pandas()
    outcome = validator.validate(product.suite, frame, f"{src.path.name} {rows}", keep_for_docs=start == 0)
    if not outcome.success:
        if start != 0:  # keep failing chunks for the Data Docs too
            validator.validate(product.suite, frame, f"{src.path.name} {rows}", keep_for_docs=True)
        def hdu(failure: Failure) -> str:
            return hdu_of(failure.column.split(",")[0].strip()) if failure.column else product.hdus[0]

        where = {hdu(f) for f in outcome.failures} or {product.hdus[0]}
        if len(where) == 1:
            raise IngestError(f"{src.location}, HDU {where.pop()}, {rows}: {outcome.reason()}")
        raise IngestError(f"{src.location}, {rows}: " + "; ".join(f"HDU {hdu(f)}, {f}" for f in outcome.failures))


def _stage_chunk(src: SourceFile, batch: pa.Table, seq: int, part: Path) -> pa.Table:
    """Enrich one chunk, check HEALPIX, write it sorted by _healpix_29, and return it."""
    product = src.product
    staged = enrich(batch, product)
    if product.check_healpix:
        n_bad, examples = healpix_mismatches(staged)
        if n_bad:
            shown = "; ".join(f"TARGETID {t}: HEALPIX {g}, position gives {w}" for t, g, w in examples)
            raise IngestError(f"{src.location}, HDU {product.hdus[0]}, column HEALPIX: {n_bad} rows disagree with "
                              f"the nside-64 NESTED pixel of {product.ra}/{product.dec} (e.g. {shown})")
    staged = staged.sort_by("_healpix_29")
    staged = staged.append_column(SEQ_COLUMN, pa.array(np.full(staged.num_rows, seq, dtype=np.int64)))
    write_staging_parquet(staged, part)
    return staged


def stage_file(
    src: SourceFile,
    staging_key: str,
    lake: Lake,
    validator: BatchValidator,
    chunk_rows: int,
    seq: int,
    timings: dict[str, float],
    load: FileLoad,
    progress: Callable[[int], None] | None = None,
) -> tuple[int, str | None]:
    """Read, validate, enrich, stage, load and save one file's chunks; return (rows, notes). Raises IngestError.

    A file with no rows stages nothing (no staging directory) and returns (0, notes).

    Four things overlap: the next chunk is read in one thread, this chunk is validated in a second and staged
    (enriched, written) here, and staged chunks go into the catalog's open transaction (``load``) in a third, at
    most ``LOADS_IN_FLIGHT`` waiting. Any failure fails the whole file; the caller rolls the load back.
    """
    product = src.product
    t0 = time.perf_counter()
    reader = ProductReader(src)
    timings["read_s"] = time.perf_counter() - t0
    notes = f"extra columns not kept in the lake: {', '.join(reader.extra_columns)}" if reader.extra_columns else None
    if reader.nrows == 0:
        return 0, notes
    staging = lake.fresh_staging_dir(product.name, staging_key)
    parts: list[Path] = []
    rows = 0
    loads: deque[Future] = deque()
    add_time = partial(_add_time, timings)
    with ThreadPoolExecutor(max_workers=1) as checker, ThreadPoolExecutor(max_workers=1) as loader:
        for start, batch in _timed(prefetch(reader.batches(chunk_rows)), timings, "read_s"):
            checked = checker.submit(_validate_chunk, src, validator, batch, start, reader.hdu_of)
            with add_time("load_s"):  # waiting for the catalog load beyond staging
                while len(loads) >= LOADS_IN_FLIGHT:
                    loads.popleft().result()
            parts.append(staging / f"part-{len(parts):05d}.parquet")
            try:
                with add_time("stage_s"):
                    loads.append(loader.submit(load.append, _stage_chunk(src, batch, seq, parts[-1])))
            except IngestError:
                checked.result()  # a validation failure explains more than what staging tripped over
                raise
            with add_time("validate_s"):  # waiting for validation beyond staging
                checked.result()
            rows += batch.num_rows
            if progress:
                progress(batch.num_rows)
        with add_time("load_s"):  # what loading adds after the last chunk is staged
            while loads:
                loads.popleft().result()
    _check_unique(src, product, parts)
    t0 = time.perf_counter()
    lake.save_staging(product.name, staging_key)
    timings["stage_s"] = timings.get("stage_s", 0.0) + time.perf_counter() - t0
    return rows, notes


def prefetch(iterator: Iterator[T]) -> Iterator[T]:
    """Produce the next item of ``iterator`` in a thread while the caller works on the current one."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(next, iterator, _END)
        while (item := future.result()) is not _END:
            future = pool.submit(next, iterator, _END)
            yield cast(T, item)  # anything but the end marker is an item of ``iterator``


@contextmanager
def _add_time(timings: dict[str, float], key: str) -> Iterator[None]:
    """Add the time spent inside the block to ``timings[key]``."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings[key] = timings.get(key, 0.0) + time.perf_counter() - t0


def _timed(iterator, timings: dict[str, float], key: str):
    """Yield from ``iterator``, adding the time spent inside it to ``timings[key]``."""
    while True:
        with _add_time(timings, key):
            item = next(iterator, _END)
        if item is _END:
            return
        yield item


def _check_unique(src: SourceFile, product: Product, parts: list[Path]) -> None:
    """Raise IngestError if a key repeats within the file (negative TARGETIDs, DESI's sky/stuck fibres, may)."""
    keys = ", ".join(f'"{k}"' for k in product.key)
    # its own connection: files are checked in several threads at once, and DuckDB 2 refuses concurrent calls on
    # the shared default connection instead of waiting
    with duckdb.connect() as con:
        dups = con.execute(
            f"SELECT {keys}, count(*) AS n, count(*) OVER () AS total FROM read_parquet($files) WHERE TARGETID > 0 "
            "GROUP BY ALL HAVING n > 1 ORDER BY n DESC LIMIT 3",
            {"files": [str(p) for p in parts]},
        ).fetchall()
    if dups:
        shown = "; ".join(f"{dict(zip(product.key, d[:-2], strict=True))} x{d[-2]}" for d in dups)
        raise IngestError(f"{src.location}, HDU {product.hdus[0]}: {dups[0][-1]} keys ({', '.join(product.key)}) "
                          f"appear more than once (duplicate rows), e.g. {shown}")


def _already_ingested(src: SourceFile, catalog: SqlCatalog) -> tuple[str, dict] | None:
    """(hash, lineage row) if this path's bytes are what a done lineage row recorded, checked by content.

    The path, size and mtime only decide whether hashing first is worth it: an unchanged file on a rerun is
    hashed and skipped; a new or changed file is hashed while it is being staged (see ingest_file).
    """
    size, mtime = src.stat()
    known = catalog.lineage_for_path(src.location)
    if not known or known["status"] not in DONE_STATUSES or known["file_size"] != size \
            or known["file_mtime"] != mtime:
        return None
    file_hash = file_sha256(src.path)
    return (file_hash, known) if file_hash == known["file_hash"] else None


def _discard_staging(lake: Lake, product: str, key: str) -> None:
    """Drop a failed file's staging key; if the lake is unreachable, a later reconcile drops the orphan."""
    with contextlib.suppress(ObjectStoreError):
        lake.drop_staging(product, key)


def ingest_file(
    src: SourceFile,
    lake: Lake,
    catalog: SqlCatalog,
    validator: BatchValidator,
    chunk_rows: int,
    run_id: str,
    progress: Callable[[int], None] | None = None,
    sources: SourceStore | None = None,
    work_dir: Path | None = None,
) -> FileResult:
    """Ingest one file unless its content was already ingested; quarantine it with a reason if it is bad.

    A file in an object store (``src.url``) is read from a local copy downloaded through ``sources``; a ``.fits.gz``
    file from a copy decompressed into ``work_dir`` (the download directory, or a system temporary directory, when
    None). Both copies are deleted afterwards.
    """
    if work_dir is None and sources is not None:
        work_dir = sources.download_dir
    with local_copy(src, sources) as copy:
        return _ingest_local_copy(copy, lake, catalog, validator, chunk_rows, run_id, progress, work_dir)


@contextmanager
def readable_fits(src: SourceFile, work_dir: Path | None) -> Iterator[tuple[SourceFile, str | None]]:
    """(the source as a plain FITS file, the sha256 of the stored bytes if reading it computed one already)."""
    if not src.compressed:
        yield src, None
        return
    with decompressed(src, work_dir) as (plain, stored_sha256):
        yield plain, stored_sha256


def verify_checksums(src: SourceFile, with_sha256: bool) -> tuple[str | None, str | None]:
    """Verify the FITS checksums of every HDU of ``src.path``; return (sha256 of its bytes when asked, notes).

    Raises FitsFormatError naming the file, the HDU and both sums (expected, computed) of a mismatch.
    """
    integrity = verify_fits(src.path, with_sha256=with_sha256)
    integrity.raise_on_mismatch()
    return integrity.sha256, integrity.notes


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def _ingest_local_copy(src: SourceFile, lake: Lake, catalog: SqlCatalog, validator: BatchValidator,
                       chunk_rows: int, run_id: str, progress: Callable[[int], None] | None,
                       work_dir: Path | None = None) -> FileResult:
    product = src.product
    result = FileResult(src.location, src.kind, product.name, "skipped")
    started = _now()
    t0 = time.perf_counter()
    try:
        size, mtime = src.stat()
        done = _already_ingested(src, catalog)
    except OSError as exc:
        result.status, result.error = "quarantined", f"{src.location}: cannot read file ({exc})"
        return result
    result.timings["hash_s"] = time.perf_counter() - t0
    if done:
        result.file_hash, previous = done
        result.rows = previous["n_rows"] or 0
        result.notes = f"already ingested (run {previous['run_id']})"
        return result

    staging_key = f"incoming-{uuid.uuid4().hex}"
    record = _LineageStart(path=src.location, kind=src.kind, product=product.name, survey=src.survey,
                           program=src.program, run_id=run_id, started_at=started, file_size=size, file_mtime=mtime)
    load = catalog.begin_load(product)
    names = [str(src.path)]  # local paths that messages should name by the file's location instead
    try:
        with readable_fits(src, work_dir) as (plain, stored_sha256):
            names.insert(0, str(plain.path))
            t0 = time.perf_counter()
            # before any row is read: a corrupt file never reaches validation, staging or the catalog
            sha256, integrity_notes = verify_checksums(plain, with_sha256=stored_sha256 is None)
            result.timings["verify_s"] = time.perf_counter() - t0
            file_hash = stored_sha256 or sha256
            assert file_hash is not None  # one of the two passes hashed the stored bytes
            result.file_hash = file_hash
            rows, notes = stage_file(plain, staging_key, lake, validator, chunk_rows, time.time_ns(),
                                     result.timings, load, progress)
        notes = "; ".join(n for n in (integrity_notes, notes) if n) or None
        crash_point("after-stage")
        committed = load.commit(LineageRecord(
            file_hash=file_hash, **record, n_rows=rows, status="loaded", notes=notes, finished_at=_now(),
            staging_key=staging_key if rows else None, read_s=result.timings.get("read_s"),
            validate_s=result.timings.get("validate_s"), stage_s=result.timings.get("stage_s"),
            load_s=result.timings.get("load_s"),
        ))
        crash_point("after-commit")
        if not committed:  # the same bytes were ingested already, under another name or by another run
            _discard_staging(lake, product.name, staging_key)
            existing = catalog.lineage(file_hash)
            assert existing is not None  # commit() is False only when this hash has a done lineage row
            result.rows = existing["n_rows"] or 0
            result.notes = f"same content as {existing['path']}, already ingested (run {existing['run_id']})"
            return result
        result.status, result.rows, result.notes = "ingested", rows, notes
    except (IngestError, FitsFormatError, GzipError) as exc:
        load.rollback()
        _discard_staging(lake, product.name, staging_key)
        if result.file_hash is None:
            result.file_hash = file_sha256(src.path)
        error = _one_line(str(exc))
        for name in names:  # a downloaded or decompressed copy: name the original
            error = error.replace(name, src.location)
        result.status, result.error = "quarantined", error
        catalog.quarantine(LineageRecord(file_hash=result.file_hash, **record, n_rows=None,
                                         status="quarantined", error=error, finished_at=_now()))
    except BaseException:
        load.rollback()
        _discard_staging(lake, product.name, staging_key)
        raise
    return result


def publish(
    product: Product, lake: Lake, catalog: SqlCatalog, max_rows: int, highest_order: int, margin_arcsec: float = 10.0
) -> PublishResult | None:
    """Rebuild the product's HATS catalog with every loaded-but-unpublished file, and publish it atomically; its
    margin catalog (``margin_arcsec`` wide, none if 0) is built inside the version, so it is saved, published and
    pruned with it.

    Runs under the product's publish lock, so concurrent runs publish one after the other, each on top of the
    version the previous one committed.
    """
    with catalog.publish_lock(product.name):
        pending = catalog.pending(product.name)
        if not pending:
            return None
        keys = [key for key in pending.values() if key]  # files with zero rows staged nothing
        current = catalog.published_version(product.name)
        if not keys:  # only files with zero rows: nothing to rebuild; they join the current version, if any
            if current:
                nrows = catalog.query("SELECT nrows FROM hats_versions WHERE product = $p",
                                      {"p": product.name}).column(0)[0].as_py()
                catalog.mark_published(product.name, current, nrows, list(pending))
            return None
        parts = sorted(p for key in keys for p in lake.staged_parts(product.name, key))
        previous = lake.version_dir(product.name, current) if current else None
        version, out = lake.new_version(product.name)
        summary = write_hats_catalog(
            out, product.name, product.schema.append(pa.field(SEQ_COLUMN, pa.int64())), product.key,
            product.ra, product.dec, parts, previous, max_rows=max_rows, highest_order=highest_order,
            margin_arcsec=margin_arcsec or None,
        )
        lake.save_version(product.name, version)
        catalog.mark_published(product.name, version, summary.nrows, list(pending))  # the commit point
        crash_point("after-catalog-publish")
        lake.publish(product.name, version)
        crash_point("after-pointer-swap")
        finish_publish(product.name, lake, catalog, keys)
    return PublishResult(product.name, version, str(lake.catalog_path(product.name)), summary.nrows,
                         len(summary.partitions), len(pending))


def finish_publish(product: str, lake: Lake, catalog: SqlCatalog, staging_keys: list[str]) -> None:
    """Drop the given staging directories and versions other than the current one; refresh the lake views."""
    for key in staging_keys:
        lake.drop_staging(product, key)
    current = catalog.published_version(product)
    if current:  # before old versions go: an S3 lake's view names the version itself
        catalog.attach_lake_views(product, lake.catalog_path(product))
    prune_versions(lake, product, current)


def reconcile(lake: Lake, catalog: SqlCatalog, orphan_age_s: float = 3600) -> list[str]:
    """Make the lake match the catalog after an interrupted run.

    Finishes a symlink swap the catalog already committed, drops builds that were never committed, and drops
    staging directories no loaded file owns that were left untouched for ``orphan_age_s`` (a run killed while
    staging; younger ones may belong to a run still going).
    """
    fixed = []
    for name in PRODUCTS:
        with catalog.publish_lock(name):
            wanted = catalog.published_version(name)
            if wanted and lake.published_version(name) != wanted:
                lake.publish(name, wanted)
                fixed.append(f"{name}: lake now points at {wanted}")
            owned = set(catalog.pending(name).values())
            orphans = [key for key in lake.staged_files(name)
                       if key not in owned and lake.staging_age(name, key) >= orphan_age_s]
            finish_publish(name, lake, catalog, orphans)
    return fixed

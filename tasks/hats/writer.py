"""Write a HATS catalog (HEALPix-partitioned Parquet) from sorted parquet fragments.

Partitioning follows HATS: every row carries ``_healpix_29`` (order-29 NESTED pixel); partitions are HEALPix
pixels of mixed orders, each as coarse as possible while holding at most ``max_rows`` rows. The layout is the
``hats`` package's own: partition files at ``hats.io.paths`` (``dataset/Norder=K/Dir=D/Npix=N.parquet``),
``partition_info.csv``, ``dataset/_metadata`` and ``dataset/_common_metadata``, the row-count skymap
``skymap.fits`` (written by ``hats.io.skymap``, at ``highest_order``) and ``hats.properties`` (a
``hats.catalog.TableProperties``), written last: it marks the build complete.

A catalog is rebuilt from the previous version's partitions plus newly staged fragments; of the copies of one key
only the newest (highest ``_seq``; old rows count as 0) is kept, wherever the copies sit on the sky. A partition
that gains no rows, loses none and keeps its pixel is hard-linked from the previous version instead of rewritten;
so is its margin file when no row was added or removed in the ring of pixels around it.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hats.io import file_io, paths
from hats.io.skymap import write_skymap

from tasks.crashpoints import crash_point
from tasks.hats.index import write_partition_index
from tasks.hats.margin import MarginBuilder, MarginSummary, PreviousMargin, margin_name
from tasks.hats.partition_writers import PartitionWriters
from tasks.hats.properties import HEALPIX_COLUMN, catalog_properties, write_properties
from tasks.hats.reader import partition_path

SEQ_COLUMN = "_seq"  # staging-only: ingest order, newest wins on duplicate keys


@dataclass(frozen=True)
class HatsSummary:
    """What a build wrote."""

    path: Path
    nrows: int
    partitions: list[tuple[int, int]]
    rewritten: int
    linked: int
    margin: MarginSummary | None = None


def pixel_range(order: int, pixel: int) -> tuple[int, int]:
    """Half-open range of ``_healpix_29`` values inside pixel ``pixel`` of ``order``."""
    shift = 2 * (29 - order)
    return pixel << shift, (pixel + 1) << shift


def partition_pixels(counts: np.ndarray, highest_order: int, max_rows: int) -> list[tuple[int, int]]:
    """Choose HATS partitions: the coarsest pixels holding at most ``max_rows`` rows (top-down split)."""
    if counts.shape != (12 * 4**highest_order,):
        raise ValueError(f"counts must have 12*4**{highest_order} entries, got {counts.shape}")
    chosen: list[tuple[int, int]] = []
    active = np.arange(12)
    for order in range(highest_order + 1):
        per_pixel = counts.reshape(12 * 4**order, -1).sum(axis=1)[active]
        done = (per_pixel <= max_rows) | (order == highest_order)
        chosen += [(order, int(p)) for p in active[done & (per_pixel > 0)]]
        active = (active[~done][:, None] * 4 + np.arange(4)).ravel()
        if active.size == 0:
            break
    return sorted(chosen)


def histogram(paths: Sequence[Path], highest_order: int) -> np.ndarray:
    """Count rows per pixel at ``highest_order`` over the ``_healpix_29`` column of parquet files."""
    counts = np.zeros(12 * 4**highest_order, dtype=np.int64)
    shift = 2 * (29 - highest_order)
    for path in paths:
        pf = pq.ParquetFile(path)
        for batch in pf.iter_batches(columns=[HEALPIX_COLUMN], batch_size=1 << 20):
            pix = batch.column(0).to_numpy() >> shift
            counts += np.bincount(pix, minlength=counts.size)
    return counts


def _partition_file(root: Path, order: int, pixel: int) -> Path:
    return partition_path(root, (order, pixel))


def _read_counts(catalog: Path, highest_order: int) -> np.ndarray | None:
    """The previous version's row-count skymap, if it has one at ``highest_order`` (reused by the rebuild)."""
    path = paths.get_skymap_file_pointer(catalog)
    if not path.exists():
        return None
    counts = np.asarray(file_io.read_fits_image(path), dtype=np.int64)
    return counts if counts.size == 12 * 4**highest_order else None


def _old_partitions(previous: Path | None) -> dict[tuple[int, int], Path]:
    if previous is None:
        return {}
    with open(previous / "partition_info.csv") as fh:
        rows = list(csv.DictReader(fh))
    return {(int(r["Norder"]), int(r["Npix"])): _partition_file(previous, int(r["Norder"]), int(r["Npix"]))
            for r in rows}


def write_staging_parquet(table: pa.Table, path: Path) -> None:
    """Write a staged part: read back once and deleted, so written fast (no compression, no dictionaries)."""
    pq.write_table(table, path, row_group_size=64_000, compression="none", use_dictionary=False)


def superseded_rows(staged: Sequence[Path], old: Sequence[Path], key: Sequence[str]) -> pa.Table:
    """Rows that a newer copy replaces: (key..., _seq, _healpix_29) of every older copy of a staged key.

    Old catalog rows count as _seq 0. Only keys present in the staged files are looked at, so the cost is one
    scan of the old key columns with a hash table of the new keys.
    """
    keys = ", ".join(f'"{k}"' for k in key)
    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = false")
    new = f"SELECT {keys}, {SEQ_COLUMN}, {HEALPIX_COLUMN} FROM read_parquet($staged)"
    candidates = new
    params: dict[str, list[str]] = {"staged": [str(p) for p in staged]}
    if old:
        params["old"] = [str(p) for p in old]
        candidates += (f" UNION ALL SELECT {keys}, 0::BIGINT AS {SEQ_COLUMN}, {HEALPIX_COLUMN} "
                       f"FROM read_parquet($old) AS o SEMI JOIN read_parquet($staged) AS s USING ({keys})")
    out = con.sql(
        f"SELECT * FROM ({candidates}) QUALIFY {SEQ_COLUMN} < max({SEQ_COLUMN}) OVER (PARTITION BY {keys})",
        params=params,
    ).to_arrow_table()
    con.close()
    return out


def _drop_superseded(table: pa.Table, superseded: pa.Table | None, key: Sequence[str]) -> pa.Table:
    """Remove the rows that a newer copy of their key replaces."""
    if superseded is not None and superseded.num_rows:
        # join on the key columns only (Arrow joins cannot carry vector columns such as COEFF), then filter
        cols = [*key, SEQ_COLUMN]
        probe = table.select(cols).append_column("_row", pa.array(np.arange(table.num_rows)))
        hits = probe.join(superseded.select(cols), keys=cols, join_type="left semi")["_row"].to_numpy()
        keep = np.ones(table.num_rows, dtype=bool)
        keep[hits] = False
        table = table.filter(keep)
    return table


def _route(batch: pa.Table, starts: np.ndarray, partitions: list[tuple[int, int]],
           writers: PartitionWriters) -> None:
    """Send each row of a batch to the partition whose _healpix_29 range holds it (slices, no copy if sorted)."""
    if batch.num_rows == 0:
        return
    h = batch[HEALPIX_COLUMN].to_numpy()
    index = np.searchsorted(starts, h, side="right") - 1
    if np.any(np.diff(index) < 0):
        order = np.argsort(index, kind="stable")
        batch, index = batch.take(order), index[order]
    cuts = np.flatnonzero(np.diff(index)) + 1
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(index)], strict=True):
        writers.add(partitions[index[lo]], batch.slice(lo, hi - lo))


def _batches(path: Path, columns: list[str], old: bool) -> Iterator[pa.Table]:
    """Batches of a parquet file; rows of the previous version get _seq 0."""
    for batch in pq.ParquetFile(path).iter_batches(batch_size=PartitionWriters.ROW_GROUP_ROWS, columns=columns):
        table = pa.Table.from_batches([batch])
        yield table.append_column(SEQ_COLUMN, pa.array(np.zeros(len(table), dtype=np.int64))) if old else table


def write_hats_catalog(
    out: Path,
    name: str,
    schema: pa.Schema,
    key: Sequence[str],
    ra: str,
    dec: str,
    staged: Sequence[Path],
    previous: Path | None = None,
    max_rows: int = 1_000_000,
    highest_order: int = 8,
    margin_arcsec: float | None = None,
) -> HatsSummary:
    """Build a HATS catalog in ``out`` from ``previous`` (a catalog dir, or None) plus ``staged`` parquet parts;
    with ``margin_arcsec``, also its margin catalog in ``out/<name>_<margin>arcs`` (before hats.properties).

    Every input file is read once in batches and its rows routed to the new partitions; memory is bounded by
    the batch size and the writers' buffer, not by the partition or catalog size.
    """
    old = _old_partitions(previous)
    new_counts = histogram(staged, highest_order)
    old_counts = _read_counts(previous, highest_order) if previous is not None else None
    if previous is not None and old_counts is None:
        old_counts = histogram(list(old.values()), highest_order)
    # Rows replaced by newer copies are counted twice here; partitions then come out slightly small, never large.
    counts = new_counts + (old_counts if old_counts is not None else 0)
    pixels = partition_pixels(counts, highest_order, max_rows)
    superseded = superseded_rows(staged, list(old.values()), key) if staged else None
    dropped_h = superseded[HEALPIX_COLUMN].to_numpy() if superseded is not None else np.empty(0, np.int64)

    shift = 2 * (29 - highest_order)
    linked: list[tuple[int, int]] = []
    final_counts = np.zeros_like(counts)
    for order, pixel in pixels:
        lo, hi = pixel_range(order, pixel)
        touched = new_counts[lo >> shift: hi >> shift].any() or ((dropped_h >= lo) & (dropped_h < hi)).any()
        if not touched and (order, pixel) in old:
            target = _partition_file(out, order, pixel)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(old[(order, pixel)], target)
            linked.append((order, pixel))
            assert old_counts is not None  # ``old`` has partitions only when there is a previous catalog
            final_counts[lo >> shift: hi >> shift] = old_counts[lo >> shift: hi >> shift]

    by_start = sorted(pixels, key=lambda p: pixel_range(*p)[0])
    starts = np.array([pixel_range(*p)[0] for p in by_start], dtype=np.int64)
    out_schema = pa.schema([f for f in schema if f.name != SEQ_COLUMN])
    margin = None
    if margin_arcsec:  # built from the rows as they are routed: no partition is read back for it
        old_margin = previous / margin_name(name, margin_arcsec) if previous is not None else None
        reuse = None
        if old_margin is not None and (old_margin / "hats.properties").exists():
            changed = np.union1d(np.flatnonzero(new_counts), dropped_h >> shift)  # rows added or removed here
            reuse = PreviousMargin(old_margin, frozenset(old), changed, highest_order)
        margin = MarginBuilder(out / margin_name(name, margin_arcsec), name, ra, dec, pixels, out_schema,
                               margin_arcsec, reuse)
        for part in linked:  # rows not routed below
            if margin.reaches(part):
                margin.offer_file(_partition_file(out, *part))
    writers = PartitionWriters(out, out_schema, highest_order)
    inputs = [(p, False) for p in staged] + [(p, True) for pix, p in old.items() if pix not in linked]
    try:
        for path, is_old in inputs:
            for batch in _batches(path, out_schema.names if is_old else out_schema.names + [SEQ_COLUMN], is_old):
                batch = _drop_superseded(batch, superseded, key).drop_columns([SEQ_COLUMN]).cast(out_schema)
                if margin is not None:
                    margin.offer(batch)
                _route(batch, starts, by_start, writers)
        rewritten = writers.close()
    except BaseException:  # no thread or open file outlives a failed build
        writers.abort()
        if margin is not None:
            margin.abort()
        raise
    crash_point("during-hats-build")  # partitions written; no _metadata, partition_info.csv or hats.properties yet
    final_counts += writers.counts

    written = sorted(linked + rewritten)
    nrows = write_partition_index(out, out_schema, written)
    write_skymap(final_counts, out)
    margin_summary = margin.finish(written) if margin is not None else None
    sky_fraction = float(np.count_nonzero(final_counts)) / final_counts.size
    write_properties(out, catalog_properties(
        out, name, nrows, ra, dec, hats_max_rows=max_rows, skymap_order=highest_order,
        moc_sky_fraction=round(sky_fraction, 6), hats_order=highest_order,
    ))
    return HatsSummary(out, nrows, written, len(rewritten), len(linked), margin_summary)

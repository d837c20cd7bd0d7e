"""Parquet files written one per HATS partition from row slices arriving in any order, in bounded memory."""

from __future__ import annotations

import contextlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.hats.properties import HEALPIX_COLUMN
from tasks.hats.reader import partition_path


class PartitionWriters:
    """Open parquet writers, one per partition being written, fed with row slices in any order.

    Slices are buffered per partition and written as row groups of about ``ROW_GROUP_ROWS`` rows; when all
    buffers together pass ``buffer_bytes`` the largest is written early, so memory stays bounded. Row groups are
    encoded in a small thread pool (Parquet encoding releases the GIL), at most ``IN_FLIGHT`` at a time, each
    partition's in order.
    """

    ROW_GROUP_ROWS = 64_000
    IN_FLIGHT = 2

    def __init__(self, out: Path, schema: pa.Schema, highest_order: int, buffer_bytes: int = 64 << 20):
        self.out, self.schema, self.buffer_bytes = out, schema, buffer_bytes
        self.shift = 2 * (29 - highest_order)
        self.counts = np.zeros(12 * 4**highest_order, dtype=np.int64)
        self.writers: dict[tuple[int, int], pq.ParquetWriter] = {}
        self.buffers: dict[tuple[int, int], list[pa.Table]] = {}
        self.buffered = 0
        self.pool = ThreadPoolExecutor(max_workers=self.IN_FLIGHT)
        self.last_write: dict[tuple[int, int], Future] = {}
        self.in_flight: deque[Future] = deque()

    def add(self, partition: tuple[int, int], rows: pa.Table) -> None:
        """Queue rows for a partition's file."""
        if rows.get_total_buffer_size() > 2 * rows.nbytes:
            # a slice of a larger batch would keep the whole batch in memory until this partition is flushed:
            # with many partitions that is many batches, whatever the buffer limit says, so keep a copy instead
            rows = rows.take(pa.array(np.arange(rows.num_rows)))
        self.buffers.setdefault(partition, []).append(rows)
        self.buffered += rows.nbytes
        if sum(t.num_rows for t in self.buffers[partition]) >= self.ROW_GROUP_ROWS:
            self._flush(partition)
        while self.buffered > self.buffer_bytes:
            self._flush(max(self.buffers, key=lambda p: sum(t.nbytes for t in self.buffers[p])))

    def _flush(self, partition: tuple[int, int]) -> None:
        tables = self.buffers.pop(partition, [])
        if not tables:
            return
        self.buffered -= sum(t.nbytes for t in tables)
        table = pa.concat_tables(tables)  # runs of rows sorted by _healpix_29, one per input batch
        if partition not in self.writers:
            path = partition_path(self.out, partition)
            path.parent.mkdir(parents=True, exist_ok=True)
            strings = [f.name for f in self.schema if pa.types.is_string(f.type)]
            self.writers[partition] = pq.ParquetWriter(path, self.schema, compression="snappy",
                                                       use_dictionary=strings)
        self.counts += np.bincount(table[HEALPIX_COLUMN].to_numpy() >> self.shift, minlength=self.counts.size)
        future = self.pool.submit(self._write, self.last_write.get(partition), self.writers[partition], table)
        self.last_write[partition] = future
        self.in_flight.append(future)
        while len(self.in_flight) > self.IN_FLIGHT:
            self.in_flight.popleft().result()

    def _write(self, after: Future | None, writer: pq.ParquetWriter, table: pa.Table) -> None:
        if after is not None:  # the partition's previous row group first (FIFO pool: it already started)
            after.result()
        writer.write_table(table, row_group_size=self.ROW_GROUP_ROWS)

    def close(self) -> list[tuple[int, int]]:
        """Write what is buffered, close every file, and return the partitions written."""
        try:
            for partition in list(self.buffers):
                self._flush(partition)
            for future in self.in_flight:
                future.result()
        finally:
            self.pool.shutdown(wait=True)
            for writer in self.writers.values():
                writer.close()
        return list(self.writers)

    def abort(self) -> None:
        """Stop after a failure: drop what is buffered, wait for the row groups being written, close every file
        (the half-written version has no ``hats.properties`` and is deleted by the next publish)."""
        self.buffers.clear()
        self.pool.shutdown(wait=True, cancel_futures=True)
        for writer in self.writers.values():
            with contextlib.suppress(OSError, pa.ArrowException):  # a file the failure broke: nothing to save
                writer.close()

"""The embedded catalog: one DuckDB file holding redshifts, FastSpecFit lines, the spectra index and lineage."""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from fsspec import AbstractFileSystem

from tasks.catalog.base import CatalogError, SqlCatalog
from tasks.catalog.schema import LineageRecord
from tasks.ingest.products import Product
from tasks.redact import redact

__all__ = ["CatalogError", "DuckDBCatalog"]

log = logging.getLogger(__name__)

# DuckDB's message when another process holds the file: '... Conflicting lock is held in /usr/bin/python3 (PID 123)'
_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (?P<program>.*?) \(PID (?P<pid>\d+)\)")


def redact_lineage(record: LineageRecord) -> LineageRecord:
    """The lineage row with passwords masked in its free-text fields (path, error, notes)."""
    return dataclasses.replace(record, path=redact(record.path),
                               error=None if record.error is None else redact(record.error),
                               notes=None if record.notes is None else redact(record.notes))


class DuckDBCatalog(SqlCatalog):
    """Catalog in a DuckDB file; every file's load is one transaction together with its lineage row."""

    backend = "duckdb"

    def __init__(self, path: str | Path, read_only: bool = False, memory_limit: str = "512MB",
                 s3_filesystem: AbstractFileSystem | None = None, lock_timeout: float = 10.0):
        """Open (or create) the catalog file; wait up to ``lock_timeout`` seconds while another process holds it."""
        self.path = Path(path)
        self.name = str(self.path)
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        elif not self.path.exists():
            raise CatalogError(f"{self.path}: no catalog yet; run an ingest first")
        self.con = self._connect(read_only, memory_limit, lock_timeout)
        self.reads_s3 = s3_filesystem is not None
        if s3_filesystem is not None:  # an fsspec filesystem: the lake_* views of an S3 lake read through it
            self.con.register_filesystem(s3_filesystem)
        if not read_only:
            self.ensure_schema()

    def _connect(self, read_only: bool, memory_limit: str, lock_timeout: float) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + lock_timeout
        while True:
            try:
                # bounded memory: DuckDB spills to disk rather than take most of the machine's RAM (its default)
                return duckdb.connect(str(self.path), read_only=read_only,
                                      config={"memory_limit": memory_limit, "preserve_insertion_order": False})
            except duckdb.IOException as exc:
                holder = _LOCK_HOLDER.search(str(exc))
                if holder is None and "Could not set lock" not in str(exc):
                    raise CatalogError(f"{self.path}: cannot open the catalog ({' '.join(str(exc).split())})") \
                        from None
                if time.monotonic() >= deadline:
                    who = f"process {holder['pid']} ({holder['program']})" if holder else "another process"
                    raise CatalogError(
                        f"{self.path}: locked by {who}; waited {lock_timeout:g} s (catalog.lock_timeout). Wait for "
                        f"it to finish (or stop it: kill {holder['pid'] if holder else '<pid>'}) and try again, or "
                        "raise ASTROLAB_CATALOG_LOCK_TIMEOUT") from None
                time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    def close(self) -> None:
        """Close the connection."""
        self.con.close()

    def _put_lineage(self, record: LineageRecord) -> None:
        super()._put_lineage(redact_lineage(record))

    def _execute(self, sql: str, params: dict[str, Any] | None = None) -> None:
        self.con.execute(sql, params)

    def _rows(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple]:
        return self.con.execute(sql, params).fetchall()

    def query(self, sql: str, params: dict[str, Any] | None = None) -> pa.Table:
        """Run SQL and return the result as an Arrow table."""
        return self.con.sql(sql, params=params).to_arrow_table()

    def _append(self, product: Product, chunk: pa.Table, replace: bool) -> None:
        # ``chunk`` is this local variable, found by DuckDB's replacement scan for the statement only. A registered
        # view would be a catalog entry, which DuckDB keeps with its Arrow table until the transaction ends: a
        # file's load would hold every chunk it appended in memory.
        if replace:
            on = " AND ".join(f"t.{k.lower()} = c.{k.lower()}" for k in product.key)
            self.con.execute(f"DELETE FROM {product.name} t USING chunk c WHERE {on}")
        cols = ", ".join(c.lower() for c in chunk.schema.names)
        self.con.execute(f"INSERT INTO {product.name} ({cols}) SELECT {cols} FROM chunk")

    def attach_lake_views(self, product: str, catalog_path: Path | str) -> None:
        """(Re)create ``lake_<product>``, a view over the published HATS parquet files (a path or an s3:// URL)."""
        if str(catalog_path).startswith("s3://") and not self.reads_s3:
            self.con.execute(f"DROP VIEW IF EXISTS lake_{product}")
            log.warning("lake_%s view not created: the lake is on S3 (%s) and this catalog was opened without an "
                        "S3 filesystem; query the catalog tables, or open the HATS catalog with lsdb",
                        product, redact(str(catalog_path)))
            return
        glob = f"{catalog_path}/dataset/**/*.parquet"
        self.con.execute(f"CREATE OR REPLACE VIEW lake_{product} AS SELECT * FROM read_parquet('{glob}')")

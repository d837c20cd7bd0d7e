"""What every catalog backend does, written once over a few backend hooks (connection, parameters, COPY, cone).

SQL here uses ``$name`` parameters and only what DuckDB and PostgreSQL both understand.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import pyarrow as pa

from tasks.catalog.schema import (
    DONE_STATUSES,
    MIGRATIONS,
    SCHEMA_VERSION,
    LineageRecord,
    primary_select,
    sql_type,
    table_ddls,
    view_ddls,
)
from tasks.ingest.products import PRODUCTS, Product


def _table_product(name: str, schema: pa.Schema, key: tuple[str, ...]) -> Product:
    """A plain table seen as a product, so the backends' append and merge can fill it."""
    return Product(name=name, kinds=(), hdus=(), suite="", columns=list(zip(schema.names, schema.types)),
                   required={}, ra="", dec="", redshift=None, key=key)


class CatalogError(RuntimeError):
    """The catalog cannot be used as asked (schema from a newer astrolab, unknown table, ...)."""


def separation_sql(ra_col: str, dec_col: str) -> str:
    """SQL for the angular separation in degrees between (ra_col, dec_col) and ($ra, $dec) (haversine)."""
    return (
        f"degrees(2 * asin(sqrt(power(sin(radians({dec_col} - $dec) / 2), 2) + cos(radians($dec)) * "
        f"cos(radians({dec_col})) * power(sin(radians({ra_col} - $ra) / 2), 2))))"
    )


class FileLoad:
    """One file's rows going into the catalog inside one transaction, committed together with its lineage row.

    A row whose key an earlier file already loaded replaces it. Only one thread may use a load at a time.
    """

    def __init__(self, catalog: SqlCatalog, product: Product):
        self.catalog, self.product = catalog, product
        self.columns = [name for name, _ in product.sql_columns]
        catalog._execute("BEGIN")
        self.replace = bool(catalog._rows(f"SELECT EXISTS (SELECT 1 FROM {product.name})")[0][0])

    def append(self, chunk: pa.Table) -> None:
        """Insert a chunk (product column names, any case), replacing earlier rows with the same key."""
        self.catalog._append(self.product, chunk.select(self.columns), self.replace)

    def commit(self, record: LineageRecord) -> bool:
        """Merge the rows, write the lineage row and commit; False, rolled back, if another run got there first.

        The product's load lock is held from here to the commit, so two runs that load rows with the same keys
        (or the same file) at once are merged one after the other, never interleaved.
        """
        self.catalog._lock(f"astrolab-load-{self.product.name}")
        done = self.catalog.lineage(record.file_hash)
        if done and done["status"] in DONE_STATUSES:
            self.rollback()
            return False
        self.catalog._merge(self.product)
        self.catalog._put_lineage(record)
        self.catalog._execute("COMMIT")
        return True

    def rollback(self) -> None:
        """Undo everything appended (a lost connection has undone it already)."""
        self.catalog._rollback()


class SqlCatalog:
    """The catalog: product tables, the zcat_primary view, lineage, published HATS versions, queries."""

    name = "catalog"

    # --- backend hooks -------------------------------------------------------------------------------------
    def _execute(self, sql: str, params: dict[str, Any] | None = None) -> None:
        raise NotImplementedError

    def _rows(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple]:
        raise NotImplementedError

    def query(self, sql: str, params: dict[str, Any] | None = None) -> pa.Table:
        """Run SQL and return the result as an Arrow table."""
        raise NotImplementedError

    def _append(self, product: Product, chunk: pa.Table, replace: bool) -> None:
        raise NotImplementedError

    def _rollback(self) -> None:
        self._execute("ROLLBACK")

    def _lock(self, name: str) -> None:
        """Take a lock held until the transaction ends (no-op where one process owns the catalog)."""

    def _merge(self, product: Product) -> None:
        """Move appended rows into the product table (no-op where _append writes them directly)."""

    @contextmanager
    def publish_lock(self, product: str) -> Iterator[None]:
        """Hold the product's publish lock: one lake publish (build, record, swap) at a time per product."""
        yield

    def _cone_filter(self, ra_col: str, dec_col: str) -> str:
        """SQL that keeps rows within $r degrees of ($ra, $dec); may over-select (an index's cheap test)."""
        return f"{dec_col} BETWEEN $dec - $r AND $dec + $r"

    def close(self) -> None:
        """Close the connection."""
        raise NotImplementedError

    def attach_lake_views(self, product: str, catalog_path) -> None:
        """Make the published HATS files queryable in SQL, where the engine can read Parquet (DuckDB)."""

    def __enter__(self) -> SqlCatalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- schema --------------------------------------------------------------------------------------------
    def ensure_schema(self, extra_ddl: Sequence[str] = ()) -> list[int]:
        """Create the schema, or upgrade an older one with the versioned migrations; refuse a newer one.

        Returns the migrations applied. All of it is one transaction: a failed upgrade changes nothing.
        """
        self._execute("BEGIN")
        try:
            self._lock("astrolab-schema")  # CREATE ... IF NOT EXISTS races when two runs open a new database
            tables = table_ddls()
            self._execute(tables[0])  # schema_version
            found = self._rows("SELECT max(version) FROM schema_version")[0][0]
            if found is not None and found > SCHEMA_VERSION:
                raise CatalogError(
                    f"{self.name}: catalog schema version {found} is newer than this astrolab understands "
                    f"({SCHEMA_VERSION}); upgrade astrolab"
                )
            for ddl in tables[1:]:
                self._execute(ddl)
            applied = [v for v in sorted(MIGRATIONS) if found is not None and found < v <= SCHEMA_VERSION]
            for version in applied:
                for statement in MIGRATIONS[version]:
                    self._execute(statement)
            for ddl in [*view_ddls(), *extra_ddl]:
                self._execute(ddl)
            if found != SCHEMA_VERSION:
                self._execute("DELETE FROM schema_version")
                self._execute("INSERT INTO schema_version VALUES ($v)", {"v": SCHEMA_VERSION})
            self._execute("COMMIT")
            return applied
        except BaseException:
            self._rollback()
            raise

    def tables(self) -> set[str]:
        """Names of the tables and views in the catalog's schema (lower case); reads only."""
        rows = self._rows("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")
        return {str(r[0]).lower() for r in rows}

    def schema_version(self) -> int | None:
        """The schema version the catalog records (None for an empty database); reads only."""
        if "schema_version" not in self.tables():
            return None
        found = self._rows("SELECT max(version) FROM schema_version")[0][0]
        return None if found is None else int(found)

    # --- lineage -------------------------------------------------------------------------------------------
    def lineage(self, file_hash: str) -> dict[str, Any] | None:
        """The lineage row of a file, by content hash."""
        rows = self.query("SELECT * FROM ingest_lineage WHERE file_hash = $h", {"h": file_hash}).to_pylist()
        return rows[0] if rows else None

    def lineage_for_path(self, path: str) -> dict[str, Any] | None:
        """The most recent lineage row of a path."""
        rows = self.query("SELECT * FROM ingest_lineage WHERE path = $p ORDER BY finished_at DESC LIMIT 1",
                          {"p": path}).to_pylist()
        return rows[0] if rows else None

    def _put_lineage(self, record: LineageRecord) -> None:
        values = dataclasses.asdict(record)
        names = ", ".join(values)
        marks = ", ".join(f"${k}" for k in values)
        updates = ", ".join(f"{k} = EXCLUDED.{k}" for k in values if k != "file_hash")
        self._execute(f"INSERT INTO ingest_lineage ({names}) VALUES ({marks}) "
                      f"ON CONFLICT (file_hash) DO UPDATE SET {updates}", values)

    def quarantine(self, record: LineageRecord) -> None:
        """Record a file that was not ingested, with the reason."""
        self._put_lineage(record)

    def pending(self, product: str) -> dict[str, str]:
        """Files loaded in the catalog but not yet published to the lake: file hash -> staging key."""
        rows = self._rows("SELECT file_hash, staging_key FROM ingest_lineage WHERE product = $p "
                          "AND status = 'loaded' ORDER BY finished_at", {"p": product})
        return {r[0]: r[1] for r in rows}

    # --- loads ---------------------------------------------------------------------------------------------
    def begin_load(self, product: Product) -> FileLoad:
        """Start one file's load: a transaction that chunks are appended to and that commits with the lineage."""
        return FileLoad(self, product)

    def load_file(self, product: Product, chunks: Iterable[pa.Table], record: LineageRecord) -> None:
        """Replace-or-insert a file's rows and write its lineage row, in one transaction."""
        load = self.begin_load(product)
        try:
            for chunk in chunks:
                load.append(chunk)
            load.commit(record)
        except BaseException:
            load.rollback()
            raise

    def replace_tables(self, tables: dict[str, tuple[pa.Schema, pa.Table | Iterable[pa.Table]]]) -> dict[str, int]:
        """Replace whole derived tables (dropped, created from their schema, filled from a table or its chunks) in
        one transaction, so readers see all the old tables or all the new ones; returns the rows per table."""
        counts = {}
        self._execute("BEGIN")
        try:
            for name, (schema, chunks) in tables.items():
                self._lock(f"astrolab-load-{name}")
                self._execute(f"DROP TABLE IF EXISTS {name}")
                columns = ", ".join(f"{f.name.lower()} {sql_type(f.type)}" for f in schema)
                self._execute(f"CREATE TABLE {name} ({columns})")
                # the new table is empty, so the backend merge's delete on `key` matches nothing
                product = _table_product(name, schema, (schema.names[0],))
                counts[name] = 0
                for chunk in [chunks] if isinstance(chunks, pa.Table) else chunks:
                    if chunk.num_rows:  # pyarrow 26's CSV writer (PostgreSQL COPY) pads empty batches with NULs
                        self._append(product, chunk.select(schema.names).cast(schema).combine_chunks(), False)
                        counts[name] += chunk.num_rows
                self._merge(product)
            self._execute("COMMIT")
            return counts
        except BaseException:
            self._rollback()
            raise

    def upsert(self, tables: Mapping[str, tuple[Sequence[str], pa.Table]]) -> dict[str, int]:
        """Insert rows into existing tables (name -> (key columns, rows)), replacing rows with the same key, all
        in one transaction: readers see every table's new rows or none of them. Returns the rows per table."""
        self._execute("BEGIN")
        try:
            for name, (key, rows) in tables.items():
                self._lock(f"astrolab-load-{name}")
                product = _table_product(name, rows.schema, tuple(key))
                if rows.num_rows:
                    self._append(product, rows.combine_chunks(), True)
                self._merge(product)
            self._execute("COMMIT")
            return {name: rows.num_rows for name, (_, rows) in tables.items()}
        except BaseException:
            self._rollback()
            raise

    def mark_published(self, product: str, version: str, nrows: int, file_hashes: Sequence[str]) -> None:
        """Record a lake publish: the product's current HATS version and its files' lineage, in one transaction."""
        self._execute("BEGIN")
        try:
            self._execute("INSERT INTO hats_versions VALUES ($p, $v, $n, now()) ON CONFLICT (product) DO UPDATE "
                          "SET version = EXCLUDED.version, nrows = EXCLUDED.nrows, published_at = now()",
                          {"p": product, "v": version, "n": nrows})
            for file_hash in file_hashes:
                self._execute("UPDATE ingest_lineage SET status = 'published', hats_version = $v, "
                              "staging_key = NULL WHERE file_hash = $h", {"v": version, "h": file_hash})
            self._execute("COMMIT")
        except BaseException:
            self._rollback()
            raise

    def published_version(self, product: str) -> str | None:
        """The HATS version the catalog says is current for a product."""
        rows = self._rows("SELECT version FROM hats_versions WHERE product = $p", {"p": product})
        return rows[0][0] if rows else None

    # --- queries -------------------------------------------------------------------------------------------
    def cone(self, ra: float, dec: float, radius: float, table: str = "zcat_primary",
             limit: int | None = None) -> pa.Table:
        """Rows within ``radius`` degrees of (ra, dec), nearest first, with their separation ``sep_deg``."""
        if not 0 < radius <= 180 or not -90 <= dec <= 90:
            raise ValueError(f"cone: need 0 < radius <= 180 and -90 <= dec <= 90, got radius={radius}, dec={dec}")
        if table not in (*PRODUCTS, "zcat_primary"):
            raise CatalogError(f"cone: unknown table {table!r} (zcat_primary, {', '.join(PRODUCTS)})")
        product = PRODUCTS["redshifts" if table == "zcat_primary" else table]
        ra_col, dec_col = product.ra.lower(), product.dec.lower()
        sep = separation_sql(ra_col, dec_col)
        inside = (f"SELECT *, {sep} AS sep_deg FROM {product.name} "
                  f"WHERE {self._cone_filter(ra_col, dec_col)} AND {sep} <= $r")
        # every spectrum of a target shares its position, so the primary rule can run on the cone's rows only
        sql = primary_select(f"({inside}) AS cone", extra=["sep_deg"]) if table == "zcat_primary" else inside
        sql = f"SELECT * FROM ({sql}) AS found ORDER BY sep_deg" + (f" LIMIT {int(limit)}" if limit else "")
        return self.query(sql, {"ra": ra, "dec": dec, "r": radius})

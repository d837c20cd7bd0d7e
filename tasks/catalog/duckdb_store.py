"""The embedded catalog: one DuckDB file holding redshifts, FastSpecFit lines, the spectra index and lineage."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from tasks.catalog.schema import SCHEMA_VERSION, LineageRecord, all_ddl
from tasks.products import PRODUCTS, Product


class CatalogError(RuntimeError):
    """The catalog cannot be used as asked (schema from a newer astrolab, unknown table, ...)."""


def separation_sql(ra_col: str, dec_col: str) -> str:
    """SQL for the angular separation in degrees between (ra_col, dec_col) and ($ra, $dec) (haversine)."""
    return (
        f"degrees(2 * asin(sqrt(pow(sin(radians({dec_col} - $dec) / 2), 2) + cos(radians($dec)) * "
        f"cos(radians({dec_col})) * pow(sin(radians({ra_col} - $ra) / 2), 2))))"
    )


class DuckDBCatalog:
    """Catalog in a DuckDB file; every file's load is one transaction together with its lineage row."""

    backend = "duckdb"

    def __init__(self, path: str | Path, read_only: bool = False, memory_limit: str = "512MB"):
        self.path = Path(path)
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        elif not self.path.exists():
            raise CatalogError(f"{self.path}: no catalog yet; run an ingest first")
        # bounded memory: DuckDB spills to disk rather than take most of the machine's RAM (its default)
        self.con = duckdb.connect(str(self.path), read_only=read_only,
                                  config={"memory_limit": memory_limit, "preserve_insertion_order": False})
        if not read_only:
            self.ensure_schema()

    def close(self) -> None:
        """Close the connection."""
        self.con.close()

    def __enter__(self) -> DuckDBCatalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- schema --------------------------------------------------------------------------------------------
    def ensure_schema(self) -> None:
        """Create the schema, or check that an existing one is at a version this code understands."""
        self.con.execute("BEGIN")
        for ddl in all_ddl():
            self.con.execute(ddl)
        found = self.con.execute("SELECT max(version) FROM schema_version").fetchall()[0][0]
        if found is None:
            self.con.execute("INSERT INTO schema_version VALUES (?)", [SCHEMA_VERSION])
        elif found > SCHEMA_VERSION:
            self.con.execute("ROLLBACK")
            raise CatalogError(
                f"{self.path}: catalog schema version {found} is newer than this astrolab understands "
                f"({SCHEMA_VERSION}); upgrade astrolab"
            )
        self.con.execute("COMMIT")

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
        self.con.execute(f"INSERT OR REPLACE INTO ingest_lineage ({names}) VALUES ({marks})", values)

    def quarantine(self, record: LineageRecord) -> None:
        """Record a file that was not ingested, with the reason."""
        self._put_lineage(record)

    def pending(self, product: str) -> list[str]:
        """Hashes of files loaded in the catalog but not yet published to the lake."""
        rows = self.con.execute(
            "SELECT file_hash FROM ingest_lineage WHERE product = ? AND status = 'loaded' ORDER BY finished_at",
            [product],
        ).fetchall()
        return [r[0] for r in rows]

    # --- loads ---------------------------------------------------------------------------------------------
    def begin_load(self, product: Product) -> DuckDBFileLoad:
        """Start one file's load: a transaction that chunks are appended to and that commits with the lineage."""
        return DuckDBFileLoad(self, product)

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

    def mark_published(self, product: str, version: str, nrows: int, file_hashes: Sequence[str]) -> None:
        """Record a lake publish: the product's current HATS version and its files' lineage, in one transaction."""
        self.con.execute("BEGIN")
        try:
            self.con.execute(
                "INSERT OR REPLACE INTO hats_versions VALUES (?, ?, ?, now())", [product, version, nrows]
            )
            if file_hashes:
                self.con.execute(
                    "UPDATE ingest_lineage SET status = 'published', hats_version = ? WHERE list_contains(?, file_hash)",
                    [version, list(file_hashes)],
                )
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise

    def published_version(self, product: str) -> str | None:
        """The HATS version the catalog says is current for a product."""
        rows = self.con.execute("SELECT version FROM hats_versions WHERE product = ?", [product]).fetchall()
        return rows[0][0] if rows else None

    def attach_lake_views(self, product: str, catalog_path: Path) -> None:
        """(Re)create ``lake_<product>``, a view over the published HATS parquet files."""
        glob = str(catalog_path / "dataset" / "**" / "*.parquet")
        self.con.execute(f"CREATE OR REPLACE VIEW lake_{product} AS SELECT * FROM read_parquet('{glob}')")

    # --- queries -------------------------------------------------------------------------------------------
    def query(self, sql: str, params: dict[str, Any] | Sequence[Any] | None = None) -> pa.Table:
        """Run SQL and return the result as an Arrow table."""
        return self.con.sql(sql, params=params).to_arrow_table()

    def cone(self, ra: float, dec: float, radius: float, table: str = "zcat_primary",
             limit: int | None = None) -> pa.Table:
        """Rows within ``radius`` degrees of (ra, dec), nearest first, with their separation ``sep_deg``."""
        if not 0 < radius <= 180 or not -90 <= dec <= 90:
            raise ValueError(f"cone: need 0 < radius <= 180 and -90 <= dec <= 90, got radius={radius}, dec={dec}")
        product = PRODUCTS.get(table, PRODUCTS["redshifts"])
        ra_col, dec_col = product.ra.lower(), product.dec.lower()
        if table not in (*PRODUCTS, "zcat_primary"):
            raise CatalogError(f"cone: unknown table {table!r} (zcat_primary, {', '.join(PRODUCTS)})")
        sep = separation_sql(ra_col, dec_col)
        # the declination band lets the engine skip most rows before computing separations
        where = f"{dec_col} BETWEEN $dec - $r AND $dec + $r AND {sep} <= $r"
        sql = (f"SELECT *, {sep} AS sep_deg FROM {table} WHERE {where} ORDER BY sep_deg"
               + (f" LIMIT {int(limit)}" if limit else ""))
        return self.query(sql, {"ra": ra, "dec": dec, "r": radius})


class DuckDBFileLoad:
    """One file's rows going into the catalog inside one transaction, committed together with its lineage row.

    A row whose key an earlier file already loaded replaces it. Only one thread may use a load at a time.
    """

    def __init__(self, catalog: DuckDBCatalog, product: Product):
        self.catalog, self.product = catalog, product
        self.columns = [name for name, _ in product.sql_columns]
        self.con = catalog.con
        self.con.execute("BEGIN")
        self.replace = self.con.execute(f"SELECT EXISTS (SELECT 1 FROM {product.name})").fetchall()[0][0]

    def append(self, chunk: pa.Table) -> None:
        """Insert a chunk (product column names, any case), replacing earlier rows with the same key."""
        name = self.product.name
        self.con.register("chunk", chunk.select(self.columns))
        try:
            if self.replace:
                on = " AND ".join(f"t.{k.lower()} = c.{k.lower()}" for k in self.product.key)
                self.con.execute(f"DELETE FROM {name} t USING chunk c WHERE {on}")
            cols = ", ".join(c.lower() for c in self.columns)
            self.con.execute(f"INSERT INTO {name} ({cols}) SELECT {cols} FROM chunk")
        finally:
            self.con.unregister("chunk")

    def commit(self, record: LineageRecord) -> None:
        """Write the lineage row and commit."""
        self.catalog._put_lineage(record)
        self.con.execute("COMMIT")

    def rollback(self) -> None:
        """Undo everything appended."""
        self.con.execute("ROLLBACK")

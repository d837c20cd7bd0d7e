"""The production catalog: PostgreSQL through psycopg 3, bulk loads with COPY, cone search with q3c when present."""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypedDict, cast

import psycopg
import pyarrow as pa
import pyarrow.csv as pa_csv
from psycopg.conninfo import conninfo_to_dict

from tasks.catalog.base import CatalogError, SqlCatalog
from tasks.catalog.duckdb_store import redact_lineage
from tasks.catalog.schema import LineageRecord
from tasks.ingest.products import PRODUCTS, Product
from tasks.redact import MASK
from tasks.redact import redact as redact_text

_PARAM = re.compile(r"\$(\w+)")


class _ConnectExtra(TypedDict, total=False):
    """Connection parameters passed to ``psycopg.connect`` only when set."""

    password: str


def redact(url: str) -> str:
    """The connection URL with its password masked (``postgresql://user:***@host:port/db``), for messages and logs."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://<unparsable URL>"
    password = f":{MASK}" if info.get("password") else ""
    user = f"{info.get('user', '')}{password}@" if info.get("user") or password else ""
    port = f":{info['port']}" if info.get("port") else ""
    return f"postgresql://{user}{info.get('host', '')}{port}/{info.get('dbname', '')}"


class PostgresCatalog(SqlCatalog):
    """Catalog in a PostgreSQL database (same logical schema as the DuckDB one)."""

    backend = "postgresql"

    def __init__(self, url: str, read_only: bool = False, password: str | None = None):
        self.name = redact(url)
        extra: _ConnectExtra = {"password": password} if password else {}
        try:
            self.con = psycopg.connect(url, autocommit=True, connect_timeout=10, **extra)
        except psycopg.OperationalError as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            parsed = cast("str | None", conninfo_to_dict(url).get("password"))  # parsed conninfo values are str
            reason = redact_text(reason, [password, parsed])
            raise CatalogError(f"{self.name}: cannot connect ({reason}); is the server running and "
                               "catalog.url (ASTROLAB_CATALOG_URL) right?") from None
        self.has_q3c = bool(self._rows("SELECT 1 FROM pg_available_extensions WHERE name = 'q3c'"))
        if read_only:
            self._execute("SET default_transaction_read_only = on")
        else:
            self.ensure_schema(self._extra_ddl())
        self.has_q3c = bool(self._rows("SELECT 1 FROM pg_extension WHERE extname = 'q3c'"))

    def _extra_ddl(self) -> list[str]:
        ddl = [f"CREATE INDEX IF NOT EXISTS {p.name}_key ON {p.name} ({', '.join(k.lower() for k in p.key)})"
               for p in PRODUCTS.values()]
        if self.has_q3c:
            ddl.insert(0, "CREATE EXTENSION IF NOT EXISTS q3c")
            ddl += [f"CREATE INDEX IF NOT EXISTS {p.name}_q3c ON {p.name} "
                    f"(q3c_ang2ipix({p.ra.lower()}, {p.dec.lower()}))" for p in PRODUCTS.values()]
        return ddl

    def close(self) -> None:
        """Close the connection."""
        self.con.close()

    def _sql(self, sql: str, params: dict[str, Any] | None) -> tuple[str, dict[str, Any] | None]:
        return (_PARAM.sub(r"%(\1)s", sql), params) if params else (sql, None)

    def _execute(self, sql: str, params: dict[str, Any] | None = None) -> None:
        self.con.execute(*self._sql(sql, params))

    def _rows(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple]:
        return self.con.execute(*self._sql(sql, params)).fetchall()

    def query(self, sql: str, params: dict[str, Any] | None = None) -> pa.Table:
        """Run SQL and return the result as an Arrow table."""
        cur = self.con.execute(*self._sql(sql, params))
        if cur.description is None:
            return pa.table({})
        names = [d.name for d in cur.description]
        rows = cur.fetchall()
        return pa.table({n: pa.array([r[i] for r in rows]) for i, n in enumerate(names)})

    def _append(self, product: Product, chunk: pa.Table, replace: bool) -> None:
        # pyarrow's CSV writer pads an empty leading record batch with NUL bytes, which COPY rejects: drop them.
        chunk = pa.Table.from_batches([b for b in pa.table(chunk).to_batches() if b.num_rows], schema=chunk.schema)
        if chunk.num_rows == 0:
            return
        cols = ", ".join(c.lower() for c in chunk.schema.names)
        self._execute(f"CREATE TEMP TABLE IF NOT EXISTS incoming_{product.name} (LIKE {product.name}) "
                      "ON COMMIT DROP")
        buf = io.BytesIO()
        pa_csv.write_csv(chunk, buf, pa_csv.WriteOptions(include_header=False))
        with self.con.cursor() as cur, cur.copy(f"COPY incoming_{product.name} ({cols}) FROM STDIN (FORMAT csv)") as c:
            c.write(buf.getbuffer())

    def _merge(self, product: Product) -> None:
        incoming = f"incoming_{product.name}"
        self._execute(f"CREATE TEMP TABLE IF NOT EXISTS {incoming} (LIKE {product.name}) ON COMMIT DROP")
        on = " AND ".join(f"t.{k.lower()} = c.{k.lower()}" for k in product.key)
        self._execute(f"DELETE FROM {product.name} t USING {incoming} c WHERE {on}")
        self._execute(f"INSERT INTO {product.name} SELECT * FROM {incoming}")

    def _put_lineage(self, record: LineageRecord) -> None:
        super()._put_lineage(redact_lineage(record))

    def _lock(self, name: str) -> None:
        self._execute("SELECT pg_advisory_xact_lock(hashtext($n))", {"n": name})

    @contextmanager
    def publish_lock(self, product: str) -> Iterator[None]:
        """Hold the product's publish lock (a session advisory lock): one publish at a time across runs."""
        self._execute("SELECT pg_advisory_lock(hashtext($n))", {"n": f"astrolab-publish-{product}"})
        try:
            yield
        finally:
            self._execute("SELECT pg_advisory_unlock(hashtext($n))", {"n": f"astrolab-publish-{product}"})

    def _rollback(self) -> None:
        with contextlib.suppress(psycopg.OperationalError):  # a lost connection: the server rolled it back
            self._execute("ROLLBACK")

    def _cone_filter(self, ra_col: str, dec_col: str) -> str:
        if self.has_q3c:  # index-backed; the exact separation test follows in the caller
            return f"q3c_radial_query({ra_col}, {dec_col}, $ra, $dec, $r)"
        return super()._cone_filter(ra_col, dec_col)

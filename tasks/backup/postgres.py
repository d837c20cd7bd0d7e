"""PostgreSQL backups: ``pg_dump -Fc`` streamed into ``restic backup --stdin``, and the restore drill.

The dump and the row counts read the same data: a repeatable-read transaction exports its snapshot, counts the tables
in it, and ``pg_dump --snapshot`` dumps exactly that snapshot while the transaction stays open. The dump's sha256 is
taken on its way into restic. The drill streams ``restic dump`` through the same hash into ``pg_restore`` on a scratch
database (never the source, never a database that already has tables) and counts the rows again.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

from tasks.backup.restic import CHUNK, BackupSummary, PipeReader, Repository, ResticError, last_line


class PostgresBackupError(Exception):
    """A dump or restore of a PostgreSQL database that failed; one line, no password."""


@dataclass(frozen=True)
class PgBackup:
    """One database dump in the repository: what the catalog records and the drill compares against."""

    database: str  # host:port/dbname
    snapshot_id: str
    filename: str  # the file inside the snapshot (for restic dump)
    size: int
    sha256: str
    row_counts: dict[str, int]
    summary: BackupSummary
    duration: float


@dataclass(frozen=True)
class PgRestore:
    """A restore of a dump into a scratch database: the sha256 of what was read back and the row counts."""

    database: str
    snapshot_id: str
    size: int
    sha256: str
    row_counts: dict[str, int]
    duration: float
    mismatches: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.mismatches


def pg_tool(name: str) -> str:
    """``pg_dump`` / ``pg_restore``: on PATH, else the newest /usr/lib/postgresql/*/bin."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=lambda p: int(p.parts[-3]))
    if not candidates:
        raise PostgresBackupError(f"{name} not found (apt-get install postgresql-client)")
    return str(candidates[-1])


def describe(url: str) -> str:
    """``host:port/dbname`` of a database URL (no user, no password)."""
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}/{parts.path.strip('/')}"


def _table(name: str) -> sql.Composed:
    return sql.SQL(".").join(sql.Identifier(p) for p in name.split("."))


def _count(conn: psycopg.Connection, tables: Sequence[str], where: str) -> dict[str, int]:
    counts = {}
    for table in tables:
        try:
            row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(_table(table))).fetchone()
        except psycopg.errors.UndefinedTable:
            raise PostgresBackupError(f"{where}: table {table!r} does not exist") from None
        counts[table] = int(row[0]) if row else 0
    return counts


def _env(password: str | None) -> dict[str, str]:
    return {"PGPASSWORD": password} if password else {}


def backup_database(repo: Repository, database_url: str, tables: Sequence[str] = (), password: str | None = None,
                    tags: Sequence[str] = (), host: str | None = None, filename: str | None = None) -> PgBackup:
    """Dump a database into the repository (one snapshot with one file); record its sha256 and the row counts of
    ``tables`` in the dump's own snapshot. A failed ``pg_dump`` fails the backup and leaves no snapshot."""
    where = describe(database_url)
    filename = (filename or f"{where.rsplit('/', 1)[1]}.pgdump").lstrip("/")
    started = time.monotonic()
    try:
        conn = psycopg.connect(database_url, password=password, connect_timeout=10, autocommit=False)
    except psycopg.OperationalError as exc:
        message = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise PostgresBackupError(f"pg_dump {where}: cannot connect ({_scrub(message, password)})") from None
    with conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        row = conn.execute("SELECT pg_export_snapshot()").fetchone()
        assert row is not None
        counts = _count(conn, tables, f"pg_dump {where}")
        command = [pg_tool("pg_dump"), "--format=custom", f"--snapshot={row[0]}", "--no-password",
                   f"--dbname={database_url}"]
        result = repo.backup_stdin(command, filename, tags=tags, host=host, producer_env=_env(password),
                                   producer_secrets=[password] if password else [])
        conn.rollback()
    return PgBackup(database=where, snapshot_id=result.summary.snapshot_id, filename=filename, size=result.size,
                    sha256=result.sha256, row_counts=counts, summary=result.summary,
                    duration=time.monotonic() - started)


def _same_database(a: str, b: str) -> bool:
    return describe(a).replace("localhost", "127.0.0.1") == describe(b).replace("localhost", "127.0.0.1")


def restore_database(repo: Repository, snapshot_id: str, filename: str, scratch_url: str,
                     tables: Sequence[str] = (), password: str | None = None, source_url: str | None = None,
                     expected: PgBackup | None = None) -> PgRestore:
    """The restore drill: ``restic dump`` of the dump file, hashed on the way into ``pg_restore`` on an empty scratch
    database; then the row counts. With ``expected`` (the backup's record) sha256 and row counts are compared and
    every difference is listed in ``mismatches``."""
    where = describe(scratch_url)
    if source_url and _same_database(scratch_url, source_url):
        raise PostgresBackupError(f"pg_restore {where}: refusing to restore over the live source database")
    with psycopg.connect(scratch_url, password=password, connect_timeout=10) as conn:
        row = conn.execute("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                           "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
                           "AND n.nspname NOT LIKE 'pg_toast%'").fetchone()
        if row and row[0]:
            raise PostgresBackupError(f"pg_restore {where}: the scratch database is not empty ({row[0]} tables)")
    started = time.monotonic()
    digest, size = hashlib.sha256(), 0
    restore = subprocess.Popen([pg_tool("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error",
                                "--no-password", f"--dbname={scratch_url}"],
                               stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env={**os.environ, **_env(password)})
    stderr = PipeReader(restore.stderr)
    assert restore.stdin is not None
    try:
        with repo.dump(snapshot_id, "/" + filename.lstrip("/")) as stream:
            for chunk in iter(lambda: stream.read(CHUNK), b""):
                digest.update(chunk)
                size += len(chunk)
                try:
                    restore.stdin.write(chunk)
                except BrokenPipeError:
                    break
    except ResticError:
        restore.kill()
        restore.wait()
        raise
    finally:
        with contextlib.suppress(BrokenPipeError):
            restore.stdin.close()
    returncode = restore.wait()
    stderr.join()
    if returncode != 0:
        detail = _scrub(last_line(stderr.text), password)
        raise PostgresBackupError(f"pg_restore {where}: failed (exit code {returncode}): {detail}")
    with psycopg.connect(scratch_url, password=password, connect_timeout=10) as conn:
        counts = _count(conn, tables, f"pg_restore {where}")
    mismatches = []
    if expected is not None:
        if expected.sha256 != digest.hexdigest():
            mismatches.append(f"sha256 {digest.hexdigest()[:12]} differs from the backup's {expected.sha256[:12]}")
        mismatches += compare_row_counts(expected.row_counts, counts)
    return PgRestore(database=where, snapshot_id=snapshot_id, size=size, sha256=digest.hexdigest(),
                     row_counts=counts, duration=time.monotonic() - started, mismatches=tuple(mismatches))


def compare_row_counts(expected: dict[str, int], actual: dict[str, int]) -> list[str]:
    """One line per table whose restored row count differs from the backup's (or that was not counted)."""
    out = []
    for table, n in sorted(expected.items()):
        got = actual.get(table)
        if got != n:
            out.append(f"table {table}: {got if got is not None else 'not counted'} rows restored, {n} backed up")
    return out


def _scrub(text: str, password: str | None) -> str:
    return text.replace(password, "***") if password else text


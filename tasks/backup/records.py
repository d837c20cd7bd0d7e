"""Backup records in the catalog database (DuckDB or PostgreSQL, schema version 6): every backup run of an asset,
every repository verification, every restore drill and every prune of an asset, and the newest of each for reports.

Times are stored as UTC without a zone and read back as aware UTC datetimes; row counts and errors are JSON text.
Each record is one transaction; an invalid record is refused before anything is written. Error texts are one line
with passwords masked.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import pyarrow as pa

from tasks.backup.drill import DrillResult
from tasks.backup.postgres import PgBackup
from tasks.backup.registry import Asset
from tasks.backup.restic import BackupSummary, CheckResult, ForgetResult
from tasks.catalog.base import SqlCatalog
from tasks.redact import one_line

RunStatus = Literal["ok", "failed"]
KEYS = {"backup_runs": ("run_id", "asset"), "backup_verifications": ("repository", "checked_at"),
        "restore_drills": ("asset", "started_at"), "backup_prunes": ("run_id", "asset")}


@dataclass(frozen=True)
class BackupRun:
    """One asset backed up (or not) by one run."""

    run_id: str
    asset: str
    asset_class: str
    kind: str
    repository: str
    started: datetime
    finished: datetime
    status: RunStatus
    snapshot_id: str | None = None
    bytes_added: int | None = None
    files_new: int | None = None
    total_files: int | None = None
    total_bytes: int | None = None
    sha256: str | None = None  # of a streamed backup (a pg_dump)
    row_counts: Mapping[str, int] | None = None
    error: str | None = None

    @property
    def duration_s(self) -> float:
        return (self.finished - self.started).total_seconds()

    @classmethod
    def of_summary(cls, run_id: str, asset: Asset, summary: BackupSummary, started: datetime, finished: datetime,
                   sha256: str | None = None, row_counts: Mapping[str, int] | None = None) -> BackupRun:
        """A completed restic backup."""
        return cls(run_id, asset.name, asset.asset_class, asset.kind, asset.destination, started, finished, "ok",
                   snapshot_id=summary.snapshot_id, bytes_added=summary.bytes_added, files_new=summary.files_new,
                   total_files=summary.total_files_processed, total_bytes=summary.total_bytes_processed,
                   sha256=sha256, row_counts=row_counts)

    @classmethod
    def of_postgres(cls, run_id: str, asset: Asset, backup: PgBackup, started: datetime,
                    finished: datetime) -> BackupRun:
        """A completed database dump: the snapshot plus the dump's sha256 and row counts."""
        return cls.of_summary(run_id, asset, backup.summary, started, finished, backup.sha256, backup.row_counts)

    @classmethod
    def failure(cls, run_id: str, asset: Asset, error: str, started: datetime, finished: datetime,
                snapshot_id: str | None = None) -> BackupRun:
        """A backup that failed, with its one-line reason."""
        return cls(run_id, asset.name, asset.asset_class, asset.kind, asset.destination, started, finished, "failed",
                   snapshot_id=snapshot_id, error=one_line(error))


@dataclass(frozen=True)
class Verification:
    """One ``restic check`` of a repository (with the part of the data it read)."""

    repository: str
    checked_at: datetime
    ok: bool
    errors: tuple[str, ...] = field(default=())
    read_data_subset: str | None = None
    duration_s: float | None = None
    run_id: str | None = None

    @classmethod
    def of_check(cls, repository: str, result: CheckResult, checked_at: datetime,
                 run_id: str | None = None) -> Verification:
        return cls(repository, checked_at, result.ok, tuple(one_line(e) for e in result.errors),
                   result.read_data, result.duration, run_id)


@dataclass(frozen=True)
class PruneRun:
    """One asset's snapshots pruned (``restic forget --prune`` by its retention), or a dry run, or a failure."""

    run_id: str
    asset: str
    repository: str
    started: datetime
    finished: datetime
    status: RunStatus
    dry_run: bool = False
    kept: int | None = None
    removed: int | None = None
    bytes_freed: int | None = None
    error: str | None = None

    @classmethod
    def of_forget(cls, run_id: str, asset: Asset, result: ForgetResult, started: datetime,
                  finished: datetime) -> PruneRun:
        """A completed forget (with prune unless it was a dry run)."""
        return cls(run_id, asset.name, asset.destination, started, finished, "ok", dry_run=not result.pruned,
                   kept=len(result.keep), removed=len(result.remove), bytes_freed=result.bytes_freed)

    @classmethod
    def failure(cls, run_id: str, asset: Asset, error: str, started: datetime, finished: datetime,
                dry_run: bool = False) -> PruneRun:
        """A prune that failed, with its one-line reason."""
        return cls(run_id, asset.name, asset.destination, started, finished, "failed", dry_run=dry_run,
                   error=one_line(error))


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"backup records need timezone-aware times, got {moment.isoformat()}")
    return moment.astimezone(UTC).replace(tzinfo=None)


_RUNS = pa.schema([("run_id", pa.string()), ("asset", pa.string()), ("asset_class", pa.string()),
                   ("kind", pa.string()), ("repository", pa.string()), ("snapshot_id", pa.string()),
                   ("started_at", pa.timestamp("us")), ("finished_at", pa.timestamp("us")),
                   ("duration_s", pa.float64()), ("bytes_added", pa.int64()), ("files_new", pa.int64()),
                   ("total_files", pa.int64()), ("total_bytes", pa.int64()), ("sha256", pa.string()),
                   ("row_counts", pa.string()), ("status", pa.string()), ("error", pa.string())])
_VERIFICATIONS = pa.schema([("repository", pa.string()), ("checked_at", pa.timestamp("us")),
                            ("read_data_subset", pa.string()), ("ok", pa.bool_()), ("errors", pa.string()),
                            ("duration_s", pa.float64()), ("run_id", pa.string())])
_PRUNES = pa.schema([("run_id", pa.string()), ("asset", pa.string()), ("repository", pa.string()),
                     ("started_at", pa.timestamp("us")), ("finished_at", pa.timestamp("us")), ("dry_run", pa.bool_()),
                     ("snapshots_kept", pa.int64()), ("snapshots_removed", pa.int64()), ("bytes_freed", pa.int64()),
                     ("status", pa.string()), ("error", pa.string())])
_DRILLS = pa.schema([("asset", pa.string()), ("kind", pa.string()), ("snapshot_id", pa.string()),
                     ("started_at", pa.timestamp("us")), ("restore_s", pa.float64()), ("rto_s", pa.float64()),
                     ("result", pa.string()), ("detail", pa.string()), ("run_id", pa.string())])


def _write(store: SqlCatalog, table: str, schema: pa.Schema, row: dict[str, Any]) -> None:
    store.upsert({table: (KEYS[table], pa.Table.from_pylist([row], schema=schema))})


def record_backup(store: SqlCatalog, run: BackupRun) -> None:
    """Store one backup run (a rerun of the same run and asset replaces it)."""
    if run.status not in ("ok", "failed"):
        raise ValueError(f"backup run {run.run_id} of {run.asset}: status must be ok or failed, not {run.status!r}")
    if run.status == "ok" and not run.snapshot_id:
        raise ValueError(f"backup run {run.run_id} of {run.asset}: an ok run needs its snapshot id")
    if run.status == "failed" and not run.error:
        raise ValueError(f"backup run {run.run_id} of {run.asset}: a failed run needs its error")
    _write(store, "backup_runs", _RUNS, {
        "run_id": run.run_id, "asset": run.asset, "asset_class": run.asset_class, "kind": run.kind,
        "repository": run.repository, "snapshot_id": run.snapshot_id, "started_at": _utc(run.started),
        "finished_at": _utc(run.finished), "duration_s": run.duration_s, "bytes_added": run.bytes_added,
        "files_new": run.files_new, "total_files": run.total_files, "total_bytes": run.total_bytes,
        "sha256": run.sha256, "row_counts": None if run.row_counts is None else json.dumps(dict(run.row_counts),
                                                                                         sort_keys=True),
        "status": run.status, "error": None if run.error is None else one_line(run.error)})


def record_verification(store: SqlCatalog, verification: Verification) -> None:
    """Store one repository check."""
    v = verification
    _write(store, "backup_verifications", _VERIFICATIONS, {
        "repository": v.repository, "checked_at": _utc(v.checked_at), "read_data_subset": v.read_data_subset,
        "ok": v.ok, "errors": json.dumps([one_line(e) for e in v.errors]), "duration_s": v.duration_s,
        "run_id": v.run_id})


def record_drill(store: SqlCatalog, drill: DrillResult, run_id: str | None = None) -> None:
    """Store one restore drill: the restore time against the RTO and its result."""
    _write(store, "restore_drills", _DRILLS, {
        "asset": drill.asset, "kind": drill.kind, "snapshot_id": drill.snapshot_id, "started_at": _utc(drill.started),
        "restore_s": drill.restore_s, "rto_s": drill.rto.total_seconds(), "result": drill.result,
        "detail": one_line(drill.detail), "run_id": run_id})


def record_prune(store: SqlCatalog, prune: PruneRun) -> None:
    """Store one prune of an asset (a rerun of the same run and asset replaces it)."""
    p = prune
    if p.status not in ("ok", "failed"):
        raise ValueError(f"prune run {p.run_id} of {p.asset}: status must be ok or failed, not {p.status!r}")
    if p.status == "failed" and not p.error:
        raise ValueError(f"prune run {p.run_id} of {p.asset}: a failed prune needs its error")
    _write(store, "backup_prunes", _PRUNES, {
        "run_id": p.run_id, "asset": p.asset, "repository": p.repository, "started_at": _utc(p.started),
        "finished_at": _utc(p.finished), "dry_run": p.dry_run, "snapshots_kept": p.kept,
        "snapshots_removed": p.removed, "bytes_freed": p.bytes_freed, "status": p.status,
        "error": None if p.error is None else one_line(p.error)})


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    """A stored row as Python values: aware UTC times, JSON text parsed, the window column dropped."""
    row.pop("newest", None)
    for key, value in row.items():
        if isinstance(value, datetime):
            row[key] = value.replace(tzinfo=UTC)
        elif key in ("row_counts", "errors") and isinstance(value, str):
            row[key] = json.loads(value)
    return row


def _newest(store: SqlCatalog, table: str, per: str, order: str, where: str = "",
            params: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    rows = store.query(f"SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY {per} ORDER BY {order} DESC) "
                       f"AS newest FROM {table} {where}) AS t WHERE newest = 1 ORDER BY {per}", params).to_pylist()
    return {str(r[per]): _decoded(r) for r in rows}


def latest_backups(store: SqlCatalog, status: RunStatus | None = None) -> dict[str, dict[str, Any]]:
    """The newest recorded run of every asset (or the newest with that status, e.g. ``ok``): asset -> row."""
    if status is None:
        return _newest(store, "backup_runs", "asset", "finished_at")
    return _newest(store, "backup_runs", "asset", "finished_at", "WHERE status = $s", {"s": status})


def backup_of_snapshot(store: SqlCatalog, asset: str, snapshot_id: str) -> dict[str, Any] | None:
    """The recorded run that made a snapshot (by full or short id, either side): what a drill compares against."""
    rows = store.query("SELECT * FROM backup_runs WHERE asset = $a AND status = 'ok' AND "
                       "(starts_with(snapshot_id, $s) OR starts_with($s, snapshot_id)) "
                       "ORDER BY finished_at DESC LIMIT 1", {"a": asset, "s": snapshot_id}).to_pylist()
    return _decoded(rows[0]) if rows else None


def latest_verifications(store: SqlCatalog) -> dict[str, dict[str, Any]]:
    """The newest check of every repository: repository -> row (errors as a list)."""
    return _newest(store, "backup_verifications", "repository", "checked_at")


def latest_drills(store: SqlCatalog) -> dict[str, dict[str, Any]]:
    """The newest restore drill of every asset: asset -> row."""
    return _newest(store, "restore_drills", "asset", "started_at")


def latest_prunes(store: SqlCatalog) -> dict[str, dict[str, Any]]:
    """The newest prune of every asset (dry runs left out: they remove nothing): asset -> row."""
    return _newest(store, "backup_prunes", "asset", "finished_at", "WHERE NOT dry_run")


def status_records(store: SqlCatalog) -> tuple[dict[str, dict[str, Any]] | None, dict[str, dict[str, Any]] | None,
                                               dict[str, dict[str, Any]] | None]:
    """The newest verifications, drills and prunes (as latest_verifications, latest_drills, latest_prunes), each
    None where the catalog has no such table: an older schema not yet upgraded (backup records came with version 4,
    prunes with 6), as when it is opened read-only. Reads only."""
    present = store.tables()

    def read(table: str, latest: Callable[[SqlCatalog], dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]] | None:
        return latest(store) if table in present else None

    return (read("backup_verifications", latest_verifications), read("restore_drills", latest_drills),
            read("backup_prunes", latest_prunes))

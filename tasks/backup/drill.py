"""Restore drills: restore a snapshot into scratch (a directory, an empty scratch database), compare it with what was
recorded at backup time, and time the restore against the asset's RTO.

A path drill restores under a fresh directory of ``scratch_dir`` (restic refuses a target inside the live source)
and compares: the number of regular files and their bytes with the backup's record (or restic's own snapshot summary
where restic >= 0.17 keeps one), and the sha256 of every restored file with its live counterpart where that is
readable and unchanged since the backup (same size and modification time; a file changed since is counted, not
compared). A PostgreSQL drill restores the dump into a scratch database and compares the dump's sha256 and the row
counts with the backup's. A drill passes when everything matches and the restore took no longer than the RTO; a restore
that fails (a damaged pack, a wrong password) is a failed drill with the reason, never an exception.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from tasks.backup.postgres import PostgresBackupError, compare_row_counts, restore_database
from tasks.backup.registry import PathAsset, PostgresAsset, Rke2EtcdAsset, S3Asset
from tasks.backup.restic import CHUNK, Repository, ResticError, Snapshot
from tasks.redact import one_line

DrillOutcome = Literal["passed", "failed"]


@dataclass(frozen=True)
class DrillResult:
    """One restore drill: what was restored, how long it took against the RTO, and every difference found."""

    asset: str
    kind: str
    snapshot_id: str
    started: datetime
    restore_s: float
    rto: timedelta
    mismatches: tuple[str, ...]
    detail: str  # one line: what was compared, or the first reason it failed

    @property
    def within_rto(self) -> bool:
        return self.restore_s <= self.rto.total_seconds()

    @property
    def passed(self) -> bool:
        return not self.mismatches and self.within_rto

    @property
    def result(self) -> DrillOutcome:
        return "passed" if self.passed else "failed"


def sha256_of(path: Path) -> str:
    """The file's sha256, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def drill_detail(mismatches: list[str], restore_s: float, rto: timedelta, body: str) -> str:
    """The drill's one line: the first mismatch (if any), what was compared, the restore time against the RTO."""
    over = restore_s > rto.total_seconds()
    timing = f"restore {restore_s:.1f} s, {'OVER' if over else 'within'} the RTO of {rto.total_seconds():.0f} s"
    head = f"{len(mismatches)} mismatch(es), first: {mismatches[0]}; " if mismatches else ""
    return one_line(f"{head}{body}; {timing}")


def count_mismatches(snap: Snapshot, count: int, size: int, expected_count: int | None, expected_bytes: int | None,
                     unit: str) -> tuple[list[str], str]:
    """The restored count of ``unit`` (files, objects) and bytes against the backup's record, else restic's snapshot
    summary: the differences (bytes first), and how the drill's line says what they were compared with."""
    summary = snap.summary or {}
    expected_count = expected_count if expected_count is not None else summary.get("total_files_processed")
    expected_bytes = expected_bytes if expected_bytes is not None else summary.get("total_bytes_processed")
    found = []
    if expected_bytes is not None and size != expected_bytes:
        found.append(f"{size} bytes restored, the backup recorded {expected_bytes}")
    if expected_count is not None and count != expected_count:
        found.append(f"{count} {unit} restored, the backup recorded {expected_count}")
    recorded = "vs the backup's record" if expected_count is not None or expected_bytes is not None else \
        "(no record to compare counts with)"
    return found, recorded


def _compare_tree(restored_root: Path, sources: tuple[str, ...],
                  live: bool = True) -> tuple[int, int, list[str], int, int]:
    """Regular files and bytes restored; mismatches against the live source (when it is on this machine: ``live``);
    files compared; files changed since."""
    files = size = compared = changed = 0
    mismatches: list[str] = []
    for source in sources:
        base = restored_root / source.lstrip("/")
        walked = [(str(base.parent), [], [base.name])] if base.is_file() else os.walk(base)  # a source may be a file
        for dirpath, _dirs, names in walked:
            for name in names:
                restored = Path(dirpath) / name
                if restored.is_symlink() or not restored.is_file():
                    continue
                st = restored.stat()
                files += 1
                size += st.st_size
                if not live:
                    continue
                source_file = Path("/") / restored.relative_to(restored_root)
                try:
                    live_st = source_file.stat()
                    # to the nanosecond restic keeps: a same-size edit within the second is still a change
                    if source_file.is_symlink() or (live_st.st_size, live_st.st_mtime_ns) != (st.st_size,
                                                                                             st.st_mtime_ns):
                        changed += 1
                        continue
                    same = sha256_of(source_file) == sha256_of(restored)
                except OSError:
                    continue  # not readable here (removed since): nothing to compare with
                compared += 1
                if not same:
                    mismatches.append(f"{source_file}: restored bytes differ from the live file (unchanged since "
                                      "the backup)")
    return files, size, mismatches, compared, changed


def drill_path(repo: Repository, asset: PathAsset | S3Asset | Rke2EtcdAsset, snapshot: str | Snapshot,
               scratch_dir: str | Path, expected_files: int | None = None, expected_bytes: int | None = None,
               now: datetime | None = None, keep: bool = False, live: bool = True) -> DrillResult:
    """Restore a path snapshot under ``scratch_dir`` and compare file count, bytes (the backup's record, else the
    snapshot's summary) and, where the source is on this machine (``live``), per-file sha256 with it; the restore is
    removed afterwards unless ``keep``."""
    started = now or datetime.now(UTC)
    clock = time.monotonic()
    snap_id = snapshot.id if isinstance(snapshot, Snapshot) else snapshot
    # a directory of its own: two drills of one snapshot within a second (or at one given `now`) must not meet
    Path(scratch_dir).mkdir(parents=True, exist_ok=True)
    target = Path(tempfile.mkdtemp(prefix=f"drill-{asset.name}-{snap_id[:8]}-{started:%Y%m%dT%H%M%S}-",
                                   dir=scratch_dir))
    try:
        snap = snapshot if isinstance(snapshot, Snapshot) else repo.snapshot(snapshot)
        repo.restore(snap, target)
    except ResticError as exc:
        shutil.rmtree(target, ignore_errors=True)
        return DrillResult(asset.name, asset.kind, snap_id, started, time.monotonic() - clock, asset.rto,
                           (one_line(str(exc)),), f"restore failed: {one_line(str(exc))}")
    restore_s = time.monotonic() - clock
    try:
        if asset.tag not in snap.tags:
            mismatches = [f"snapshot {snap.short_id} is not tagged {asset.tag}"]
            files = size = compared = changed = 0
        else:
            files, size, mismatches, compared, changed = _compare_tree(target, snap.paths, live)
        counted, recorded = count_mismatches(snap, files, size, expected_files, expected_bytes, "files")
        mismatches[:0] = counted
    finally:
        if not keep:
            shutil.rmtree(target, ignore_errors=True)
    against = (f"{compared} compared with the live source by sha256, {changed} changed since the backup" if live
               else f"the live source is on host {snap.hostname}, not compared here")
    body = f"{files} files, {size} bytes restored {recorded}; {against}"
    return DrillResult(asset.name, asset.kind, snap.id, started, restore_s, asset.rto, tuple(mismatches),
                       drill_detail(mismatches, restore_s, asset.rto, body))


def drill_postgres(repo: Repository, asset: PostgresAsset, snapshot: str | Snapshot, scratch_url: str,
                   expected_row_counts: Mapping[str, int], expected_sha256: str | None,
                   password: str | None = None, now: datetime | None = None) -> DrillResult:
    """Restore a dump snapshot into an empty scratch database (never the asset's own) and compare its sha256 and the
    row counts with the backup's record."""
    started = now or datetime.now(UTC)
    clock = time.monotonic()
    snap_id = snapshot.id if isinstance(snapshot, Snapshot) else snapshot
    tables = list(expected_row_counts) or list(asset.tables)
    try:
        snap = snapshot if isinstance(snapshot, Snapshot) else repo.snapshot(snapshot)
        if len(snap.paths) != 1:
            raise PostgresBackupError(f"snapshot {snap.short_id} is not a single dump file ({len(snap.paths)} paths)")
        restored = restore_database(repo, snap.id, snap.paths[0], scratch_url, tables=tables, password=password,
                                    source_url=asset.database_url)
    except (ResticError, PostgresBackupError) as exc:
        return DrillResult(asset.name, asset.kind, snap_id, started, time.monotonic() - clock, asset.rto,
                           (one_line(str(exc)),), f"restore failed: {one_line(str(exc))}")
    restore_s = time.monotonic() - clock
    mismatches = []
    if asset.tag not in snap.tags:
        mismatches.append(f"snapshot {snap.short_id} is not tagged {asset.tag}")
    if expected_sha256 is not None and restored.sha256 != expected_sha256:
        mismatches.append(f"dump sha256 {restored.sha256[:12]} differs from the backup's {expected_sha256[:12]}")
    mismatches += compare_row_counts(dict(expected_row_counts), restored.row_counts)
    compared = "sha256 and " if expected_sha256 is not None else "(no sha256 recorded) "
    body = (f"{restored.size} bytes of dump restored into {restored.database}; {compared}row counts of "
            f"{len(tables)} tables compared")
    return DrillResult(asset.name, asset.kind, snap.id, started, restore_s, asset.rto, tuple(mismatches),
                       drill_detail(mismatches, restore_s, asset.rto, body))

"""Verification of what is in the repositories without restoring it: ``restic check`` reading a rolling part of the
data each day (all of it every N days), and ``pg_restore --list`` on a database dump read back from the repository
(its table of contents must be readable and name every table the asset counts)."""

from __future__ import annotations

import contextlib
import subprocess
from dataclasses import dataclass
from datetime import date

from tasks.backup.postgres import pg_tool
from tasks.backup.restic import CHUNK, PipeReader, Repository, ResticError, Snapshot, last_line


def rolling_subset(day: date, parts: int) -> str:
    """restic's ``--read-data-subset=n/N`` for ``day``: n advances by one a day, so N days read every pack."""
    if parts < 1:
        raise ValueError(f"the number of parts must be at least 1, got {parts}")
    return f"{day.toordinal() % parts + 1}/{parts}"


@dataclass(frozen=True)
class DumpCheck:
    """``pg_restore --list`` of one dump: ok when readable and every expected table's data is in it."""

    snapshot_id: str
    filename: str
    entries: int
    missing_tables: tuple[str, ...]
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and not self.missing_tables and self.entries > 0


def _has_data(toc: str, table: str) -> bool:
    schema, _, name = table.rpartition(".")
    return any(f" TABLE DATA {schema or 'public'} {name} " in f"{line} " for line in toc.splitlines())


def list_dump(repo: Repository, snapshot: Snapshot, tables: tuple[str, ...] = ()) -> DumpCheck:
    """Stream a snapshot's dump file (``restic dump``) into ``pg_restore --list``."""
    if len(snapshot.paths) != 1:
        raise ValueError(f"snapshot {snapshot.short_id} holds {len(snapshot.paths)} paths, not one database dump")
    filename = snapshot.paths[0]
    lister = subprocess.Popen([pg_tool("pg_restore"), "--list"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    out, err = PipeReader(lister.stdout), PipeReader(lister.stderr)
    assert lister.stdin is not None
    try:
        with repo.dump(snapshot.id, filename) as stream:
            for chunk in iter(lambda: stream.read(CHUNK), b""):
                try:
                    lister.stdin.write(chunk)
                except BrokenPipeError:
                    break
    except ResticError as exc:
        lister.kill()
        lister.wait()
        return DumpCheck(snapshot.id, filename, 0, (), str(exc))
    finally:
        if not lister.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                lister.stdin.close()
    returncode = lister.wait()
    out.join()
    err.join()
    if returncode != 0:
        return DumpCheck(snapshot.id, filename, 0, (), f"pg_restore --list {filename} of snapshot "
                         f"{snapshot.short_id}: {last_line(err.text) or f'exit code {returncode}'}")
    toc = out.text
    entries = sum(1 for line in toc.splitlines() if line.strip() and not line.startswith(";"))
    missing = tuple(t for t in tables if not _has_data(toc, t))
    return DumpCheck(snapshot.id, filename, entries, missing)

"""Ingest sessions: what one thread keeps open while it ingests file after file of one run (the lake, a Great
Expectations validator, a catalog connection, the source store), so that each file can be its own unit of work (its
own Prefect task run) without reconnecting or rebuilding the validator per file.

A session belongs to (thread, run). ``close_sessions(run_id)`` closes every session of a run in this process (on each
Dask worker: through ``client.run``), builds their Data Docs and returns where. A file whose ingest raises (a lost
catalog connection, say) drops its thread's session, so that a retry starts with fresh connections.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.ingest.pipeline import FileResult, ingest_file
from tasks.ingest.sources import SourceFile
from tasks.ingest.validate import BatchValidator
from tasks.storage.lake import Lake


@dataclass
class SessionParts:
    """What a session opens: the lake, a validator (with its Data Docs directory), the catalog (a context manager
    holding its connection) and, for files in an object store, the source store."""

    lake: Lake
    validator: BatchValidator
    catalog: AbstractContextManager[Any]
    sources: Any = None
    work_dir: Path | None = None
    chunk_rows: int = 100_000


@dataclass
class IngestSession:
    """One thread's open parts for one run."""

    run_id: str
    parts: SessionParts
    catalog: Any = field(init=False)

    def __post_init__(self) -> None:
        self.catalog = self.parts.catalog.__enter__()

    def ingest(self, src: SourceFile, progress: Callable[[int], None] | None = None) -> FileResult:
        """Ingest one file; a bad file is quarantined in the result, anything else raises."""
        p = self.parts
        return ingest_file(src, p.lake, self.catalog, p.validator, p.chunk_rows, self.run_id, progress=progress,
                           sources=p.sources, work_dir=p.work_dir)

    def close(self, build_docs: bool = True) -> Path | None:
        """Close the catalog connection; build the Data Docs of the files validated here (returns their index)."""
        try:
            return self.parts.validator.build_data_docs() if build_docs else None
        finally:
            self.parts.catalog.__exit__(None, None, None)


_sessions: dict[tuple[int, str], IngestSession] = {}
_lock = threading.Lock()


def ingest_in_session(src: SourceFile, run_id: str, open_parts: Callable[[int], SessionParts],
                      progress: Callable[[int], None] | None = None) -> FileResult:
    """Ingest one file with this thread's session of ``run_id`` (opened with ``open_parts(n)``, n counting the
    sessions of this process, on first use); sessions of other runs left on this thread are closed first."""
    thread = threading.get_ident()
    with _lock:
        session = _sessions.get((thread, run_id))
        stale = [key for key in _sessions if key[0] == thread and key[1] != run_id]
        old = [_sessions.pop(key) for key in stale]
        number = len(_sessions)
    for leftover in old:  # a run that ended without closing (killed): its connections go now
        leftover.close(build_docs=False)
    if session is None:
        session = IngestSession(run_id, open_parts(number))
        with _lock:
            _sessions[(thread, run_id)] = session
    try:
        return session.ingest(src, progress)
    except BaseException:
        with _lock:
            _sessions.pop((thread, run_id), None)
        session.close(build_docs=False)
        raise


def close_sessions(run_id: str) -> list[Path]:
    """Close this process's sessions of ``run_id``; returns the Data Docs index of each that built one."""
    with _lock:
        mine = [key for key in _sessions if key[1] == run_id]
        sessions = [_sessions.pop(key) for key in mine]
    indexes = [session.close() for session in sessions]
    return [index for index in indexes if index is not None]

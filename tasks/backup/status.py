"""The backup status table (what ``astrolab backups status`` prints and the flows publish): per asset its class and
kind, last backup, age against the RPO, RPO state, its repository's last verification, its last drill's restore
time against the RTO and its last prune; and the list of problems, one line each."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from tasks.backup.registry import format_duration
from tasks.backup.rpo import RpoStatus

STATUS_COLUMNS = ("asset", "class", "kind", "last_backup", "age_vs_rpo", "state", "last_verification",
                  "last_drill_vs_rto", "last_prune")
UNKNOWN = "unknown"  # a column whose records the catalog could not give


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "never"


def _span(value: timedelta) -> str:
    seconds = value.total_seconds()
    if seconds < 0:
        return "-" + _span(-value)
    return format_duration(timedelta(seconds=round(seconds) if seconds < 3600 else round(seconds / 60) * 60))


def _verification(row: Mapping[str, Any] | None) -> str:
    if row is None:
        return "never"
    return f"{'ok' if row['ok'] else 'FAILED'} {_when(row['checked_at'])}"


def _drill(row: Mapping[str, Any] | None) -> str:
    if row is None:
        return "never"
    rto = timedelta(seconds=float(row["rto_s"]))
    return f"{row['result']} {_span(timedelta(seconds=float(row['restore_s'] or 0)))} of {_span(rto)} " \
           f"({_when(row['started_at'])})"


def _prune(row: Mapping[str, Any] | None) -> str:
    if row is None:
        return "never"
    if row["status"] != "ok":
        return f"FAILED {_when(row['finished_at'])}"
    return f"kept {row['snapshots_kept']}, removed {row['snapshots_removed']} ({_when(row['finished_at'])})"


def _cell(show: Callable[[Mapping[str, Any] | None], str], records: Mapping[str, Mapping[str, Any]] | None,
          key: str) -> str:
    return UNKNOWN if records is None else show(records.get(key))


def status_rows(statuses: Sequence[RpoStatus], verifications: Mapping[str, Mapping[str, Any]] | None,
                drills: Mapping[str, Mapping[str, Any]] | None,
                prunes: Mapping[str, Mapping[str, Any]] | None) -> list[dict[str, str]]:
    """One row per asset (columns STATUS_COLUMNS); ``verifications`` by repository, ``drills`` and ``prunes`` by
    asset are the catalog's newest records (tasks.backup.records.status_records); None where the catalog could not
    say (no such table in an older schema, or the catalog unreadable): that column reads ``unknown``."""
    rows = []
    for s in statuses:
        age = "-" if s.age is None else f"{_span(s.age)} of {_span(s.rpo)} ({s.fraction:.0%})"
        rows.append({"asset": s.asset, "class": s.asset_class, "kind": s.kind, "last_backup": _when(s.last_backup),
                     "age_vs_rpo": age, "state": s.state,
                     "last_verification": _cell(_verification, verifications, s.repository),
                     "last_drill_vs_rto": _cell(_drill, drills, s.asset),
                     "last_prune": _cell(_prune, prunes, s.asset)})
    return rows


def problems(statuses: Sequence[RpoStatus], verifications: Mapping[str, Mapping[str, Any]] | None,
             drills: Mapping[str, Mapping[str, Any]] | None,
             prunes: Mapping[str, Mapping[str, Any]] | None = None) -> list[str]:
    """One line per thing an admin must look at: an asset not ok (warning, breach, never, unknown and why), a
    repository whose last verification failed, an asset whose last drill or last prune failed (records that are
    None, unknown, give no lines)."""
    verifications, drills = verifications or {}, drills or {}
    lines = []
    for s in statuses:
        if s.state == "unknown":
            lines.append(f"{s.asset}: unknown, {s.reason}")
        elif s.state == "never":
            lines.append(f"{s.asset}: never backed up (RPO {_span(s.rpo)})")
        elif s.problem and s.age is not None:
            lines.append(f"{s.asset}: {s.state}, last backup {_span(s.age)} ago, RPO {_span(s.rpo)}")
    used = {s.repository for s in statuses}
    for repo, row in sorted(verifications.items()):
        if repo in used and not row["ok"]:
            first = (row.get("errors") or ["no detail"])[0]
            lines.append(f"repository {repo}: last verification failed ({_when(row['checked_at'])}): {first}")
    for s in statuses:
        drill = drills.get(s.asset)
        if drill is not None and drill["result"] != "passed":
            lines.append(f"{s.asset}: last restore drill failed ({_when(drill['started_at'])}): {drill['detail']}")
    for s in statuses:
        pruned = (prunes or {}).get(s.asset)
        if pruned is not None and pruned["status"] != "ok":
            lines.append(f"{s.asset}: last prune failed ({_when(pruned['finished_at'])}): {pruned['error']}")
    return lines

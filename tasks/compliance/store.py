"""Compliance results in the catalog database: scans, check results with evidence, safeguards, packages, drift.

Each (host, policy) scan is compared with the previous scan of the same host and policy: a check that passed
and now fails is a regression, the reverse a fix; checks that appear or disappear are new or removed. One host's
scan (all policies, drift and packages) is written in one transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa

from tasks.catalog.base import SqlCatalog
from tasks.compliance.evaluate import PolicyResult, Status
from tasks.compliance.scan import HostScan

SAFEGUARD_FRAMEWORK = "cis_csc_v8"
KEYS = {
    "compliance_scans": ("scan_id",),
    "compliance_results": ("scan_id", "check_id"),
    "compliance_drift": ("scan_id", "check_id"),
    "compliance_safeguards": ("scan_id", "check_id", "safeguard"),
    "host_packages": ("scan_id", "package"),
}
CHANGES = ("regression", "fix", "new", "removed", "changed")


@dataclass(frozen=True)
class Drift:
    """One check whose result differs from the previous scan of the same host and policy."""

    host: str
    policy_id: str
    check_id: int
    title: str
    change: str  # one of CHANGES
    previous: str | None
    current: str | None
    safeguards: tuple[str, ...] = ()


def classify(previous: str | None, current: str | None) -> str | None:
    """The kind of change between two results of one check (None: unchanged)."""
    if previous == current:
        return None
    if previous is None:
        return "new"
    if current is None:
        return "removed"
    if (previous, current) == (Status.PASSED.value, Status.FAILED.value):
        return "regression"
    if (previous, current) == (Status.FAILED.value, Status.PASSED.value):
        return "fix"
    return "changed"


def _safeguards(compliance: tuple[tuple[str, tuple[str, ...]], ...]) -> tuple[str, ...]:
    return tuple(sorted({i for name, ids in compliance if name == SAFEGUARD_FRAMEWORK for i in ids},
                        key=lambda s: tuple(int(p) if p.isdigit() else 0 for p in s.split("."))))


def policy_scan_id(scan: HostScan, policy_id: str) -> str:
    """The id of one (host, policy) scan within a host scan."""
    return f"{scan.scan_id}:{policy_id}"


def _previous_results(catalog: SqlCatalog, host: str, policy_id: str, before: datetime
                      ) -> tuple[str | None, dict[int, tuple[str, str]]]:
    rows = catalog.query(
        "SELECT scan_id FROM compliance_scans WHERE host = $h AND policy_id = $p AND status = 'scanned' "
        "AND finished_at < $t ORDER BY finished_at DESC LIMIT 1",
        {"h": host, "p": policy_id, "t": before.replace(tzinfo=None)}).to_pylist()
    if not rows:
        return None, {}
    scan_id = rows[0]["scan_id"]
    results = catalog.query("SELECT check_id, result, title FROM compliance_results WHERE scan_id = $s",
                            {"s": scan_id}).to_pylist()
    return scan_id, {r["check_id"]: (r["result"], r["title"]) for r in results}


def drift_of(previous: dict[int, tuple[str, str]], result: PolicyResult, host: str) -> list[Drift]:
    """Every check whose result changed since the previous scan (previous: check id -> (result, title))."""
    current = {c.id: c for c in result.checks}
    changes = []
    for check_id in sorted(set(previous) | set(current)):
        before = previous.get(check_id, (None, ""))[0]
        check = current.get(check_id)
        change = classify(before, check.status.value if check else None)
        if change:
            changes.append(Drift(host, result.policy_id, check_id, check.title if check else previous[check_id][1],
                                 change, before, check.status.value if check else None,
                                 _safeguards(check.compliance) if check else ()))
    return changes


def _table(rows: Sequence[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=schema)


_SCANS = pa.schema([("scan_id", pa.string()), ("run_id", pa.string()), ("host", pa.string()),
                    ("policy_id", pa.string()), ("policy_name", pa.string()), ("policy_file", pa.string()),
                    ("policy_hash", pa.string()), ("source", pa.string()), ("status", pa.string()),
                    ("reason", pa.string()), ("passed", pa.int32()), ("failed", pa.int32()),
                    ("not_applicable", pa.int32()), ("score", pa.float64()), ("started_at", pa.timestamp("us")),
                    ("finished_at", pa.timestamp("us"))])
_RESULTS = pa.schema([("scan_id", pa.string()), ("host", pa.string()), ("policy_id", pa.string()),
                      ("check_id", pa.int64()), ("title", pa.string()), ("result", pa.string()),
                      ("reason", pa.string()), ("evidence", pa.string()), ("safeguards", pa.string()),
                      ("remediation", pa.string())])
_DRIFT = pa.schema([("scan_id", pa.string()), ("previous_scan_id", pa.string()), ("host", pa.string()),
                    ("policy_id", pa.string()), ("check_id", pa.int64()), ("change", pa.string()),
                    ("previous", pa.string()), ("current", pa.string())])
_SAFEGUARDS = pa.schema([("scan_id", pa.string()), ("check_id", pa.int64()), ("safeguard", pa.string())])
_PACKAGES = pa.schema([("scan_id", pa.string()), ("host", pa.string()), ("package", pa.string()),
                       ("version", pa.string())])


def _naive(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=None) if moment else None


def _evidence(check_rules: Sequence[object]) -> str:
    """The evidence of the rule that decided a check (the last one evaluated), else the first with any."""
    texts = [getattr(r, "evidence", "") or getattr(r, "reason", "") for r in check_rules]
    return next((t for t in reversed(texts) if t), "")


def save_scan(catalog: SqlCatalog, scan: HostScan, run_id: str, source: str = "astrolab",
              policy_files: dict[str, tuple[str, str]] | None = None) -> list[Drift]:
    """Store one host's scan and its drift against the previous scans; returns the drift (regressions first).

    ``policy_files`` maps a policy id to (file, content hash) for the record.
    """
    policy_files = policy_files or {}
    scans: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    drift_rows: list[dict[str, Any]] = []
    safeguards: list[dict[str, Any]] = []
    drift: list[Drift] = []
    base: dict[str, Any] = {"run_id": run_id, "host": scan.host, "source": source,
                            "started_at": _naive(scan.started_at), "finished_at": _naive(scan.finished_at)}
    if scan.status != "scanned":
        scans.append({**base, "scan_id": policy_scan_id(scan, "*"), "policy_id": "*", "status": scan.status,
                      "reason": scan.reason})
    for result in scan.policies:
        sid = policy_scan_id(scan, result.policy_id)
        file, digest = policy_files.get(result.policy_id, (result.source, ""))
        scans.append({**base, "scan_id": sid, "policy_id": result.policy_id, "policy_name": result.name,
                      "policy_file": file, "policy_hash": digest,
                      "status": "scanned" if result.applicable else "not_applicable", "reason": result.reason,
                      "passed": result.passed, "failed": result.failed, "not_applicable": result.not_applicable,
                      "score": result.score, "started_at": _naive(result.start_time),
                      "finished_at": _naive(result.end_time)})
        for check in result.checks:
            guards = _safeguards(check.compliance)
            results.append({"scan_id": sid, "host": scan.host, "policy_id": result.policy_id, "check_id": check.id,
                            "title": check.title, "result": check.status.value, "reason": check.reason,
                            "evidence": _evidence(check.rules), "safeguards": ",".join(guards),
                            "remediation": check.remediation})
            safeguards.extend({"scan_id": sid, "check_id": check.id, "safeguard": g} for g in guards)
        if not result.applicable:
            continue
        previous_id, previous = _previous_results(catalog, scan.host, result.policy_id, result.start_time)
        if previous_id is None:
            continue  # a first scan has nothing to drift from
        for change in drift_of(previous, result, scan.host):
            drift.append(change)
            drift_rows.append({"scan_id": sid, "previous_scan_id": previous_id, "host": scan.host,
                               "policy_id": result.policy_id, "check_id": change.check_id, "change": change.change,
                               "previous": change.previous, "current": change.current})
    packages = [{"scan_id": policy_scan_id(scan, "*packages"), "host": scan.host, "package": name,
                 "version": version} for name, version in scan.packages]
    catalog.upsert({
        "compliance_scans": (KEYS["compliance_scans"], _table(scans, _SCANS)),
        "compliance_results": (KEYS["compliance_results"], _table(results, _RESULTS)),
        "compliance_safeguards": (KEYS["compliance_safeguards"], _table(safeguards, _SAFEGUARDS)),
        "compliance_drift": (KEYS["compliance_drift"], _table(drift_rows, _DRIFT)),
        "host_packages": (KEYS["host_packages"], _table(packages, _PACKAGES)),
    })
    return sorted(drift, key=lambda d: (CHANGES.index(d.change), d.host, d.check_id))


def run_scores(catalog: SqlCatalog, run_id: str) -> list[dict[str, object]]:
    """Per (host, policy) of one run: status, passed, failed, not applicable and score."""
    return catalog.query(
        "SELECT host, policy_id, policy_name, source, status, reason, passed, failed, not_applicable, score "
        "FROM compliance_scans WHERE run_id = $r ORDER BY host, policy_id", {"r": run_id}).to_pylist()


def safeguard_scores(catalog: SqlCatalog, run_id: str) -> list[dict[str, object]]:
    """Per (host, CIS v8 safeguard) of one run: passed and failed checks and the score (Wazuh's formula)."""
    return catalog.query(
        "SELECT r.host, g.safeguard, "
        "sum(CASE WHEN r.result = 'passed' THEN 1 ELSE 0 END) AS passed, "
        "sum(CASE WHEN r.result = 'failed' THEN 1 ELSE 0 END) AS failed "
        "FROM compliance_results r JOIN compliance_safeguards g ON g.scan_id = r.scan_id AND g.check_id = r.check_id "
        "JOIN compliance_scans s ON s.scan_id = r.scan_id WHERE s.run_id = $r "
        "GROUP BY r.host, g.safeguard ORDER BY r.host, g.safeguard", {"r": run_id}).to_pylist()


def run_results(catalog: SqlCatalog, run_id: str, status: str | None = None) -> list[dict[str, object]]:
    """Check results of one run (optionally only one status), with title, evidence and remediation."""
    where = "s.run_id = $r" + (" AND r.result = $st" if status else "")
    params: dict[str, object] = {"r": run_id, **({"st": status} if status else {})}
    return catalog.query(
        "SELECT r.host, r.policy_id, r.check_id, r.title, r.result, r.reason, r.evidence, r.safeguards, "
        f"r.remediation FROM compliance_results r JOIN compliance_scans s ON s.scan_id = r.scan_id WHERE {where} "
        "ORDER BY r.host, r.check_id", params).to_pylist()


def latest_scans(catalog: SqlCatalog, host: str | None = None) -> list[dict[str, object]]:
    """The newest scan of every (host, policy) (or of one host): status, score and counts."""
    where = "WHERE host = $h" if host else ""
    return catalog.query(
        "SELECT scan_id, host, policy_id, source, status, reason, passed, failed, not_applicable, score, finished_at "
        f"FROM (SELECT *, row_number() OVER (PARTITION BY host, policy_id ORDER BY finished_at DESC) AS newest "
        f"FROM compliance_scans {where}) AS s WHERE newest = 1 ORDER BY host, policy_id",
        {"h": host} if host else None).to_pylist()


def scan_results(catalog: SqlCatalog, scan_ids: Sequence[str], status: str | None = None) -> list[dict[str, object]]:
    """Check results of the given scans (optionally of one status)."""
    if not scan_ids:
        return []
    marks = ", ".join(f"$s{i}" for i in range(len(scan_ids)))
    params: dict[str, object] = {f"s{i}": s for i, s in enumerate(scan_ids)}
    if status:
        params["st"] = status
    return catalog.query(
        "SELECT host, policy_id, check_id, title, result, reason, evidence, safeguards, remediation "
        f"FROM compliance_results WHERE scan_id IN ({marks})" + (" AND result = $st" if status else "")
        + " ORDER BY host, check_id", params).to_pylist()


def drift_since(catalog: SqlCatalog, since: datetime, host: str | None = None) -> list[dict[str, object]]:
    """Every change recorded by scans that finished at or after ``since`` (optionally on one host), newest first."""
    return catalog.query(
        "SELECT s.finished_at, d.host, d.policy_id, d.check_id, r.title, d.change, d.previous, d.current "
        "FROM compliance_drift d JOIN compliance_scans s ON s.scan_id = d.scan_id "
        "LEFT JOIN compliance_results r ON r.scan_id = d.scan_id AND r.check_id = d.check_id "
        "WHERE s.finished_at >= $t" + (" AND d.host = $h" if host else "")
        + " ORDER BY s.finished_at DESC, d.host, d.check_id",
        {"t": since.replace(tzinfo=None), **({"h": host} if host else {})}).to_pylist()

"""What a compliance run tells people and machines: markdown summaries, a host x safeguard heat map, a JSON export
with Wazuh's check-result field names, and JUnit XML for CI systems."""

from __future__ import annotations

import base64
import json
import math
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tasks.compliance.evaluate import PolicyResult, Status, score
from tasks.compliance.scan import HostScan
from tasks.compliance.store import Drift
from tasks.plots import figure, png

_RULE_TYPES = {"f": "file", "d": "directory", "p": "process", "c": "command", "r": "registry"}


def safeguard_key(safeguard: str) -> tuple[int, ...]:
    """Numeric order of CIS safeguard ids: 4.1 < 4.8 < 12.1."""
    return tuple(int(p) if p.isdigit() else 0 for p in safeguard.split("."))


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: Sequence[Mapping[str, object]], columns: Sequence[str]) -> str:
    """A GitHub-flavoured markdown table of the given columns."""
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    return head + "".join("| " + " | ".join(_cell(r.get(c, "")) for c in columns) + " |\n" for r in rows)


def score_text(value: object) -> str:
    """A score as people read it: one decimal, or a dash where nothing passed or failed."""
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{float(value):.1f}"  # type: ignore[arg-type]


def cluster_safeguards(per_host: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per safeguard over every host: hosts, passed, failed and Wazuh's score."""
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for row in per_host:
        t = totals[row["safeguard"]]
        t[0], t[1], t[2] = t[0] + 1, t[1] + int(row["passed"]), t[2] + int(row["failed"])
    return [{"safeguard": g, "hosts": h, "passed": p, "failed": f, "score": score_text(score(p, f) if p + f else None)}
            for g, (h, p, f) in sorted(totals.items(), key=lambda kv: safeguard_key(kv[0]))]


Rows = Sequence[Mapping[str, Any]]


def summary_markdown(title: str, scans: Rows, per_host_safeguards: Rows, drift: Sequence[Drift], failures: Rows,
                     evidence: Rows, problems: Sequence[str] = (), heatmap_png: bytes | None = None,
                     top: int = 15) -> str:
    """The run's report: regressions first, then scores per host and per safeguard, the top failures with their
    remediation, evidence from outside the hosts, and what could not be scanned or read."""
    out = [f"# {title}\n"]
    regressions = [d for d in drift if d.change == "regression"]
    out.append(f"**{len(regressions)} regression(s)**, {sum(d.change == 'fix' for d in drift)} fix(es), "
               f"{sum(d.change in ('new', 'removed', 'changed') for d in drift)} other change(s) since the previous "
               "scans.\n")
    if regressions:
        out.append("## Regressions (passed -> failed)\n")
        out.append(markdown_table([{"host": d.host, "check": d.check_id, "title": d.title, "policy": d.policy_id,
                                    "safeguards": ", ".join(d.safeguards)} for d in regressions],
                                  ["host", "check", "title", "policy", "safeguards"]))
    others = [d for d in drift if d.change != "regression"]
    if others:
        out.append("\n## Other changes\n")
        out.append(markdown_table([{"host": d.host, "check": d.check_id, "change": d.change,
                                    "from": d.previous or "-", "to": d.current or "-", "title": d.title}
                                   for d in others], ["host", "check", "change", "from", "to", "title"]))
    out.append("\n## Scores per host and policy\n")
    out.append(markdown_table([{**s, "score": score_text(s["score"]) if s["status"] == "scanned" else "-",
                                "passed": s["passed"] if s["passed"] is not None else "-",
                                "failed": s["failed"] if s["failed"] is not None else "-",
                                "not applicable": s["not_applicable"] if s["not_applicable"] is not None else "-",
                                "note": s["reason"] or ""}
                               for s in scans],
                              ["host", "policy_id", "source", "status", "score", "passed", "failed", "not applicable",
                               "note"]))
    out.append("\n## Scores per CIS Controls v8 safeguard (all hosts)\n")
    out.append(markdown_table(cluster_safeguards(per_host_safeguards),
                              ["safeguard", "hosts", "passed", "failed", "score"]))
    if heatmap_png:
        encoded = base64.b64encode(heatmap_png).decode()
        out.append(f"\n![score per host and safeguard](data:image/png;base64,{encoded})\n")
    if failures:
        by_check: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
        for f in failures:
            by_check[int(f["check_id"])].append(f)
        ranked = sorted(by_check.values(), key=lambda fs: (-len(fs), int(fs[0]["check_id"])))[:top]
        out.append(f"\n## Top failures ({min(top, len(by_check))} of {len(by_check)} failing checks)\n")
        out.append(markdown_table([{"check": fs[0]["check_id"], "title": fs[0]["title"], "hosts": len(fs),
                                    "safeguards": fs[0]["safeguards"], "evidence": fs[0]["evidence"],
                                    "remediation": fs[0]["remediation"]} for fs in ranked],
                                  ["check", "title", "hosts", "safeguards", "evidence", "remediation"]))
    if evidence:
        out.append("\n## Evidence from outside the hosts\n")
        out.append(markdown_table(evidence, ["safeguard", "status", "evidence"]))
    if problems:
        out.append("\n## Could not be used\n")
        out.extend(f"- {p}\n" for p in problems)
    return "".join(out)


def heatmap(per_host_safeguards: Sequence[Mapping[str, Any]]) -> bytes:
    """PNG of the score per host (rows) and safeguard (columns); blank where a host has no such checks."""
    hosts = sorted({r["host"] for r in per_host_safeguards})
    guards = sorted({r["safeguard"] for r in per_host_safeguards}, key=safeguard_key)
    grid = np.full((max(len(hosts), 1), max(len(guards), 1)), np.nan)
    for r in per_host_safeguards:
        passed, failed = int(r["passed"]), int(r["failed"])
        if passed + failed:
            grid[hosts.index(r["host"]), guards.index(r["safeguard"])] = score(passed, failed)
    fig = figure((max(4.0, 0.45 * len(guards) + 2), max(2.0, 0.35 * len(hosts) + 1.2)))
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="RdYlGn", vmin=0, vmax=100, aspect="auto")
    ax.set_xticks(range(len(guards)), guards, rotation=90)
    ax.set_yticks(range(len(hosts)), hosts)
    ax.set_xlabel("CIS Controls v8 safeguard")
    fig.colorbar(image, ax=ax, label="score (%)")
    return png(fig)


def _rule_entry(rule: str) -> dict[str, str]:
    text = rule[4:] if rule.startswith("not ") else rule
    return {"type": _RULE_TYPES.get(text[:1], "unknown"), "rule": rule}


def _policy_json(result: PolicyResult) -> dict[str, Any]:
    return {
        "policy_id": result.policy_id, "name": result.name, "pass": result.passed, "fail": result.failed,
        "invalid": result.not_applicable, "total_checks": len(result.checks), "score": round(result.score),
        "start_scan": result.start_time.isoformat(), "end_scan": result.end_time.isoformat(),
        "checks": [{
            "id": c.id, "title": c.title, "result": c.status.value if c.status is not Status.NOT_APPLICABLE else "",
            "reason": c.reason, "remediation": c.remediation,
            "compliance": [{"key": name, "value": ",".join(ids)} for name, ids in c.compliance],
            "rules": [_rule_entry(r.rule) for r in c.rules],
        } for c in result.checks],
    }


def export_json(scans: Sequence[HostScan], run_id: str) -> str:
    """Every host's results in the shape Wazuh's API gives SCA policies and checks (``GET /sca/{agent}`` and
    ``/checks/{policy}``): pass / fail / invalid / score per policy, id / title / result / reason / remediation /
    compliance [{key, value}] / rules [{type, rule}] per check; a not-applicable check has an empty result and a
    reason, as in Wazuh."""
    return json.dumps({"run_id": run_id, "hosts": [
        {"name": s.host, "status": s.status, "reason": s.reason, "policies": [_policy_json(p) for p in s.policies]}
        for s in scans]}, indent=1)


def export_junit(scans: Sequence[HostScan]) -> str:
    """JUnit XML: a test suite per (host, policy), a test case per check; failed checks are failures, checks not
    applicable are skipped, an unreachable host is one errored case."""
    suites = ET.Element("testsuites", name="astrolab compliance")
    for scan in scans:
        if scan.status != "scanned":
            suite = ET.SubElement(suites, "testsuite", name=scan.host, tests="1", failures="0", errors="1",
                                  skipped="0")
            case = ET.SubElement(suite, "testcase", classname=scan.host, name="scan")
            ET.SubElement(case, "error", message=scan.status).text = scan.reason
        for result in scan.policies:
            counts = Counter(c.status for c in result.checks)
            suite = ET.SubElement(suites, "testsuite", name=f"{scan.host}.{result.policy_id}",
                                  tests=str(len(result.checks)), failures=str(counts[Status.FAILED]),
                                  errors="0", skipped=str(counts[Status.NOT_APPLICABLE]),
                                  time=f"{(result.end_time - result.start_time).total_seconds():.3f}")
            if not result.applicable:
                ET.SubElement(suite, "properties").append(ET.Element("property", name="not_applicable",
                                                                     value=result.reason))
            for check in result.checks:
                case = ET.SubElement(suite, "testcase", classname=f"{scan.host}.{result.policy_id}",
                                     name=f"{check.id}: {check.title}")
                evidence = next((r.evidence for r in reversed(check.rules) if r.evidence), "")
                if check.status is Status.FAILED:
                    ET.SubElement(case, "failure", message=evidence or "failed").text = check.remediation
                elif check.status is Status.NOT_APPLICABLE:
                    ET.SubElement(case, "skipped", message=check.reason)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True)

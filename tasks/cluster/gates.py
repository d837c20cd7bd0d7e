"""The gates between build phases, each a verdict with a message that names the hosts at fault:

- compliance: every host of the phase has a newest scan of the policy with score >= min_score (catalog tables of
  tasks/compliance; the flow runs the compliance scan first);
- nodes_ready: the Kubernetes API (GET /api/v1/nodes, bearer token, CA checked) lists every host of the RKE2
  groups as a node whose Ready condition is True;
- workers_registered: every named Prefect work pool has an ONLINE worker (the Prefect API's own heartbeat view).
  Dask workers are not checked here: a Dask scheduler's worker list needs a Dask client on the scheduler's network,
  which the Prefect workers (and their pools' health) already stand for.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tasks.catalog.base import SqlCatalog
from tasks.compliance.store import latest_scans


@dataclass(frozen=True)
class Verdict:
    """Whether a gate holds, and why not."""

    gate: str
    ok: bool
    message: str


def compliance_gate(store: SqlCatalog, hosts: Sequence[str], policy: str, min_score: float) -> Verdict:
    """Every host's newest scan of `policy` scored at least `min_score`; a host never scanned fails the gate."""
    scores = {str(r["host"]): r for r in latest_scans(store) if r["policy_id"] == policy}
    low = []
    for host in sorted(hosts):
        row = scores.get(host)
        if row is None:
            low.append(f"{host} (no scan)")
        elif row["status"] != "scanned" or row["score"] is None:
            low.append(f"{host} ({row['status']})")
        elif float(str(row["score"])) < min_score:
            low.append(f"{host} ({float(str(row['score'])):.0f}%)")
    if low:
        return Verdict("compliance", False, f"compliance {policy} below {min_score:g}% on {len(low)} of {len(hosts)} "
                                            f"host(s): {', '.join(low)}")
    return Verdict("compliance", True, f"compliance {policy} >= {min_score:g}% on {len(hosts)} host(s)")


def k8s_nodes(api_url: str, token: str, ca_file: str | None = None, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The items of GET /api/v1/nodes (a NodeList), authenticated with a bearer token, TLS checked against ca_file
    (or the system CAs)."""
    context = ssl.create_default_context(cafile=ca_file) if api_url.startswith("https:") else None
    request = urllib.request.Request(api_url.rstrip("/") + "/api/v1/nodes",
                                     headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:  # noqa: S310
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"Kubernetes API {api_url}: GET /api/v1/nodes answered {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RuntimeError(f"Kubernetes API {api_url}: {reason}") from None
    if body.get("kind") != "NodeList":
        raise RuntimeError(f"Kubernetes API {api_url}: expected a NodeList, got {body.get('kind')!r}")
    return list(body.get("items") or [])


def _ready(node: dict[str, Any]) -> str:
    for condition in (node.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return str(condition.get("status"))
    return "Unknown"


def nodes_ready_gate(nodes: Sequence[dict[str, Any]], expected: Sequence[str]) -> Verdict:
    """Every expected host is a node whose Ready condition is True."""
    by_name = {str((n.get("metadata") or {}).get("name")): n for n in nodes}
    bad = []
    for host in sorted(expected):
        if host not in by_name:
            bad.append(f"{host} (not registered)")
        elif _ready(by_name[host]) != "True":
            bad.append(f"{host} (Ready={_ready(by_name[host])})")
    if bad:
        return Verdict("nodes_ready", False, f"RKE2 nodes not Ready: {', '.join(bad)}")
    return Verdict("nodes_ready", True, f"{len(expected)} RKE2 node(s) Ready")


async def workers_registered_gate(pools: Sequence[str]) -> Verdict:
    """Every work pool named has at least one ONLINE worker, as the Prefect API reports them."""
    from prefect.client.orchestration import get_client

    missing = []
    async with get_client() as client:
        for pool in pools:
            try:
                workers = await client.read_workers_for_work_pool(pool)
            except Exception as exc:  # noqa: BLE001  # an unknown pool is a verdict, not a crash
                missing.append(f"{pool} ({type(exc).__name__})")
                continue
            if not any(str(getattr(w.status, "value", w.status)).upper() == "ONLINE" for w in workers):
                missing.append(f"{pool} (no online worker)")
    if missing:
        return Verdict("workers_registered", False, f"work pools without a worker: {', '.join(missing)}")
    return Verdict("workers_registered", True, f"{len(pools)} work pool(s) with online workers")

"""What a rerun of the cluster build needs to resume: the inputs of a role on a host as one hash, and every role
apply per host recorded in the catalog (DuckDB or PostgreSQL, schema version 5).

The input hash is sha256 over the role's files (paths and bytes), the host's slice of the rendered inventory (its
variables and groups) and the run's variables. Secrets are left out on purpose: a hash of a password stored in
the catalog could be guessed back; after rotating a secret, apply with force.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from tasks.catalog.base import SqlCatalog
from tasks.cluster.inventory import ansible_inventory, group_name, host_vars
from tasks.inventory.model import Inventory
from tasks.redact import redact

ApplyStatus = Literal["ok", "failed"]
_APPLIES = pa.schema([("run_id", pa.string()), ("phase", pa.string()), ("role", pa.string()), ("host", pa.string()),
                      ("input_hash", pa.string()), ("status", pa.string()), ("ok", pa.int32()),
                      ("changed", pa.int32()), ("failed", pa.int32()), ("skipped", pa.int32()),
                      ("unreachable", pa.int32()), ("started_at", pa.timestamp("us")),
                      ("finished_at", pa.timestamp("us")), ("error", pa.string())])


def role_files_hash(role_path: Path) -> str:
    """sha256 over every file of a role directory: relative paths and contents, in sorted order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in role_path.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(role_path)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def host_slice(inventory: Inventory, host: str) -> dict[str, Any]:
    """What the inventory tells Ansible about one host: its variables, its groups and the inventory-wide vars."""
    everyone = ansible_inventory(inventory)["all"]["vars"]
    if host == "localhost" and host not in {h.name for h in inventory.hosts}:  # Ansible's implicit control host
        return {"vars": {}, "groups": [], "all": everyone}
    h = inventory.host(host)
    return {"vars": host_vars(inventory, h), "groups": sorted(group_name(g) for g in (*h.roles, *h.groups)),
            "all": everyone}


def input_hash(role_hash: str, inventory: Inventory, host: str, variables: Mapping[str, Any] | None = None) -> str:
    """The hash of everything a role's apply on a host depends on (role files, inventory slice, variables)."""
    blob = json.dumps({"role": role_hash, "host": host_slice(inventory, host), "vars": dict(variables or {})},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class Apply:
    """One role applied to one host by one run."""

    run_id: str
    phase: str
    role: str
    host: str
    input_hash: str
    status: ApplyStatus
    counts: Mapping[str, int]
    started: datetime
    finished: datetime
    error: str = ""


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"role applies need timezone-aware times, got {moment.isoformat()}")
    return moment.astimezone(UTC).replace(tzinfo=None)


def record_applies(store: SqlCatalog, applies: Sequence[Apply], secrets: Sequence[str] = ()) -> None:
    """Store the applies of one role run (one transaction; a rerun of the same run, role and host replaces it)."""
    for a in applies:
        if a.status not in ("ok", "failed"):
            raise ValueError(f"apply of {a.role} on {a.host}: status must be ok or failed, not {a.status!r}")
    if not applies:
        return
    rows = [{"run_id": a.run_id, "phase": a.phase, "role": a.role, "host": a.host, "input_hash": a.input_hash,
             "status": a.status, **{k: int(a.counts.get(k, 0)) for k in ("ok", "changed", "failed", "skipped",
                                                                        "unreachable")},
             "started_at": _utc(a.started), "finished_at": _utc(a.finished),
             "error": " ".join(redact(a.error, secrets).split())[:1000] or None} for a in applies]
    store.upsert({"cluster_role_applies": (("run_id", "role", "host"), pa.Table.from_pylist(rows, schema=_APPLIES))})


def last_applies(store: SqlCatalog, role: str) -> dict[str, dict[str, Any]]:
    """The newest apply of a role on every host it was applied to: host -> row (status, input_hash, counts...)."""
    rows = store.query(
        "SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY host ORDER BY finished_at DESC) AS newest "
        "FROM cluster_role_applies WHERE role = $r) AS t WHERE newest = 1 ORDER BY host", {"r": role}).to_pylist()
    out = {}
    for row in rows:
        row.pop("newest", None)
        for key in ("started_at", "finished_at"):
            row[key] = row[key].replace(tzinfo=UTC)
        out[str(row["host"])] = row
    return out


def up_to_date(store: SqlCatalog, role: str, hashes: Mapping[str, str]) -> list[str]:
    """The hosts (of `hashes`: host -> input hash now) whose newest apply of the role succeeded with those inputs."""
    last = last_applies(store, role)
    return sorted(h for h, digest in hashes.items()
                  if h in last and last[h]["status"] == "ok" and last[h]["input_hash"] == digest)

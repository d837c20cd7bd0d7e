"""One role applied (or planned: check mode with diffs) on the hosts of a pattern with ansible-runner, its events
parsed into typed per-host, per-task results.

The play is generated (``- hosts: <pattern>`` with the role), the inventory rendered from the astrolab inventory
(host keys checked). Secrets reach Ansible only as environment variables. ansible-runner writes the whole
environment into ``artifacts/<id>/command`` while it runs, so its private data directory is a fresh 0700
temporary directory removed when the run ends, whatever happens; env files and stdout files are not written and
events are kept in memory only. Events of ``no_log`` tasks arrive censored from Ansible; their diffs and messages
are dropped here too, and every text kept has the secret values masked.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from tasks.cluster.inventory import ansible_inventory, group_name
from tasks.errors import did_you_mean
from tasks.inventory.model import Inventory
from tasks.redact import redact

TaskStatus = Literal["ok", "changed", "failed", "skipped", "unreachable"]
STATUSES: tuple[TaskStatus, ...] = ("ok", "changed", "failed", "skipped", "unreachable")
_EVENTS: dict[str, TaskStatus] = {"runner_on_ok": "ok", "runner_on_failed": "failed",
                                  "runner_on_skipped": "skipped", "runner_on_unreachable": "unreachable"}


class RoleError(RuntimeError):
    """A role run that could not start (a missing role, an empty host selection)."""


@dataclass(frozen=True)
class TaskResult:
    """One task on one host: its status, what it changed (or would change, in check mode) and why it failed."""

    host: str
    task: str
    status: TaskStatus
    action: str = ""
    diff: str = ""
    message: str = ""
    censored: bool = False  # a no_log task: Ansible hides its result, even whether it changed (the totals count it)


@dataclass(frozen=True)
class RoleResult:
    """One role run: every task result, per-host totals, and the one-line error of a failed run."""

    role: str
    pattern: str
    check: bool
    hosts: tuple[str, ...]
    tasks: tuple[TaskResult, ...]
    rc: int
    seconds: float
    error: str = ""
    totals: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """No task failed and every host was reached."""
        return self.rc == 0 and not self.failed_hosts

    @property
    def failed_hosts(self) -> list[str]:
        """Hosts with a failed task or unreachable."""
        return sorted(h for h, t in self.totals.items() if t["failed"] or t["unreachable"])

    @property
    def changed(self) -> int:
        """Tasks changed (or that would change, in check mode), over all hosts."""
        return sum(t["changed"] for t in self.totals.values())


def _diff_text(diff: Any) -> str:
    """Ansible's diff (one dict or a list of them: before/after with their headers, or prepared text) as text."""
    parts: list[str] = []
    for d in diff if isinstance(diff, list) else [diff]:
        if not isinstance(d, dict):
            continue
        if d.get("prepared"):
            parts.append(str(d["prepared"]))
        if "before" in d or "after" in d:
            before, after = d.get("before", ""), d.get("after", "")
            if before == after:
                continue
            head = f"--- {d.get('before_header', 'before')}\n+++ {d.get('after_header', 'after')}\n"
            parts.append(head + "".join(f"-{line}\n" for line in str(before).splitlines())
                         + "".join(f"+{line}\n" for line in str(after).splitlines()))
    return "\n".join(parts).strip()


def task_result(event: Mapping[str, Any], secrets: Sequence[str] = ()) -> TaskResult | None:
    """The task result of one ansible-runner event, or None for an event that is not a task's result on a host."""
    status = _EVENTS.get(str(event.get("event")))
    data = event.get("event_data") or {}
    if status is None or "host" not in data:
        return None
    res = data.get("res") or {}
    if status == "ok" and res.get("changed"):
        status = "changed"
    if status == "failed" and data.get("ignore_errors"):
        status = "ok"
    censored = bool(res.get("_ansible_no_log")) or "censored" in res
    message = ""
    if status in ("failed", "unreachable") and not censored:
        message = " ".join(str(res.get("msg") or res.get("stderr") or res.get("reason") or "").split())[:500]
    elif censored and status in ("failed", "unreachable"):
        message = "(output hidden: no_log)"
    diff = "" if censored else _diff_text(res.get("diff"))
    return TaskResult(host=str(data["host"]), task=str(data.get("task", "")), status=status,
                      action=str(data.get("task_action", "")), diff=redact(diff, secrets),
                      message=redact(message, secrets), censored=censored)


def totals(results: Sequence[TaskResult], stats: Mapping[str, Any] | None = None) -> dict[str, dict[str, int]]:
    """Per host: how many tasks ended in each status. Ansible's final stats, when there, are authoritative: they
    count the changes of no_log tasks, whose events hide even that."""
    out: dict[str, dict[str, int]] = {}
    for r in results:
        out.setdefault(r.host, dict.fromkeys(STATUSES, 0))[r.status] += 1
    if stats:
        keys = ("ok", "changed", "failures", "dark", "skipped", "processed")
        for host in {h for key in keys for h in stats.get(key) or {}}:
            def n(key: str, host: str = host) -> int:
                return int((stats.get(key) or {}).get(host, 0))
            out[host] = {"ok": n("ok") - n("changed"), "changed": n("changed"), "failed": n("failures"),
                         "skipped": n("skipped"), "unreachable": n("dark")}
    return out


def role_dir(role: str, roles_path: Path) -> Path:
    """The role's directory; a missing role is an error naming it, with a hint."""
    path = roles_path / role
    if not path.is_dir():
        known = sorted(p.name for p in roles_path.iterdir() if p.is_dir()) if roles_path.is_dir() else []
        raise RoleError(f"role {role!r} is not in {roles_path}"
                        + (did_you_mean(role, known) if known else " (no roles there)"))
    return path


def _error(results: Sequence[TaskResult], rc: int, hosts: Sequence[str]) -> str:
    unreachable = sorted({r.host for r in results if r.status == "unreachable"})
    failed = [r for r in results if r.status == "failed"]
    parts = [f"{host} unreachable: {next(r.message for r in results if r.host == host and r.status == 'unreachable')}"
             for host in unreachable]
    parts += [f"{r.host}: task {r.task!r} failed: {r.message}" for r in failed]
    if not parts and rc != 0:
        parts.append(f"ansible-playbook exited with {rc} on {', '.join(hosts) or 'no host'}")
    return "; ".join(parts)[:1000]


def _path() -> str:
    """PATH with this Python's bin directory first, where the venv's ansible-playbook is (PATH may not hold it)."""
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", os.defpath)])


def run_role(role: str, pattern: str, inventory: Inventory, roles_path: Path, *, check: bool = False,
             limit: Sequence[str] | None = None, env: Mapping[str, str] | None = None,
             variables: Mapping[str, Any] | None = None, timeout: int | None = None,
             work_root: Path | None = None, become: bool = False) -> RoleResult:
    """Apply `role` to the hosts `pattern` names (only those in `limit`, if given); `check` plans instead:
    ``--check --diff``, nothing changed. `env` (secrets) is the run's environment only; `variables` are extra
    vars; `become` escalates with sudo on the hosts. The private data directory (under `work_root`, default the
    system temp dir) is removed afterwards."""
    import ansible_runner

    roles_path = Path(roles_path).resolve()
    role_dir(role, roles_path)
    secrets = [v for v in (env or {}).values() if v]
    # Ansible's implicit localhost matches a play's `hosts: localhost` but no --limit: the control host is not
    # limited (it is the only host such a play has)
    events: list[dict[str, Any]] = []
    private = Path(tempfile.mkdtemp(prefix="astrolab-ansible-", dir=work_root))  # mode 0700
    started = time.monotonic()

    def keep(event: dict[str, Any]) -> bool:
        events.append(event)
        return False  # kept in memory only, never written to job_events/

    try:
        (private / "project").mkdir()
        (private / "inventory").mkdir()
        play = {"name": f"{role} on {pattern}", "hosts": pattern, "become": become, "roles": [role]}
        (private / "project" / "play.yml").write_text(yaml.safe_dump([play]))
        (private / "inventory" / "hosts.yml").write_text(yaml.safe_dump(ansible_inventory(inventory)))
        cmdline = ["--diff", *(["--check"] if check else [])]
        runner = ansible_runner.run(
            private_data_dir=str(private), playbook="play.yml", inventory=str(private / "inventory" / "hosts.yml"),
            roles_path=str(roles_path), limit=",".join(limit) if limit and list(limit) != ["localhost"] else None,
            envvars={**(env or {}), "PATH": _path()},
            extravars=dict(variables or {}), cmdline=" ".join(cmdline), quiet=True, suppress_env_files=True,
            suppress_output_file=True, timeout=timeout,
            settings={"suppress_ansible_output": True},
            event_handler=keep,
        )
        rc = int(runner.rc if runner.rc is not None else -1)
        if runner.status == "timeout":
            rc = rc or 124
    finally:
        shutil.rmtree(private, ignore_errors=True)
    results = [r for r in (task_result(e, secrets) for e in events) if r is not None]
    stats = next((e.get("event_data") or {} for e in events if e.get("event") == "playbook_on_stats"), None)
    result_totals = totals(results, stats)
    selected = sorted(result_totals)
    error = _error(results, rc, selected)
    if runner.status == "timeout":
        error = f"timed out after {timeout} s" + (f"; {error}" if error else "")
    if not selected and rc != 0:
        error = f"no host of {inventory.cluster} matches {pattern!r}" + (f" within {list(limit)}" if limit else "")
    return RoleResult(role=role, pattern=pattern, check=check, hosts=tuple(selected), tasks=tuple(results),
                      rc=rc, seconds=time.monotonic() - started, error=redact(error, secrets), totals=result_totals)




def pattern_hosts(inventory: Inventory, pattern: str, limit: Sequence[str] | None = None) -> list[str]:
    """The hosts an Ansible host pattern selects in the rendered inventory: terms separated by ',' (or, without
    one, by ':') are hosts, groups, 'all' or shell globs; '&term' intersects, '!term' excludes (Ansible applies
    the plain terms, then the intersections, then the exclusions). 'localhost' outside the inventory is Ansible's
    implicit one. Resolved here, not with Ansible's InventoryManager, whose collection loader refuses to load
    into a process that already has a second import hook (as a Prefect worker may)."""
    groups: dict[str, set[str]] = {"all": {h.name for h in inventory.hosts}}
    for host in inventory.hosts:
        for name in (*host.roles, *host.groups):
            groups.setdefault(group_name(name), set()).add(host.name)

    def term(word: str) -> set[str]:
        if word in groups:
            return set(groups[word])
        if word in groups["all"]:
            return {word}
        if word in ("*", "localhost") or any(c in word for c in "*?["):
            found = {h for h in groups["all"] if fnmatch.fnmatchcase(h, word)}
            found |= {h for g in groups if g != "all" and fnmatch.fnmatchcase(g, word) for h in groups[g]}
            return found or ({"localhost"} if word == "localhost" else set())
        return set()

    words = [w.strip() for w in (pattern.split(",") if "," in pattern else pattern.split(":")) if w.strip()]
    chosen: set[str] = set()
    for word in (w for w in words if w[0] not in "!&"):
        chosen |= term(word)
    for word in (w[1:] for w in words if w[0] == "&"):
        chosen &= term(word)
    for word in (w[1:] for w in words if w[0] == "!"):
        chosen -= term(word)
    if limit:
        chosen &= set(limit)
    return sorted(chosen)

"""cluster-build: the lab's cluster built phase by phase (infra/ansible/phases.yaml) with Ansible roles.

One subflow per phase; in it one task per role run, submitted in the phase's DAG order (each waits for the roles
its `after` names). mode plan runs every role with --check --diff (nothing changes: the plan artifact says, per
host, what would); apply applies and records each (role, host) with the hash of its inputs, so a rerun after a
failure skips what already succeeded with the same inputs unless force; verify is plan on a schedule where any
change is drift (an astrolab.cluster.drift event per host). In apply mode a phase's gate must hold before the next
phase starts; a gate that does not hold fails the run with its message and runs nothing after it.

Secrets come from the Prefect Secret blocks phases.yaml names (or the process environment, where the variable is
set already) into the environment of the Ansible run only; their values are masked in logs and artifacts.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run
from pydantic import SecretStr

from astrolab.resources import build_catalog
from astrolab.settings import Settings, load_settings
from tasks.cluster import gates
from tasks.cluster.phases import Phase, Phases, load_phases, mermaid, select, topological_order
from tasks.cluster.runner import RoleResult, pattern_hosts, role_dir, run_role
from tasks.cluster.state import Apply, input_hash, record_applies, role_files_hash, up_to_date
from tasks.inventory.load import load_inventory
from tasks.inventory.model import Inventory
from tasks.redact import install_log_redaction, redact

Mode = Literal["plan", "apply", "verify"]
APPLIED_EVENT = "astrolab.cluster.role.applied"
FAILED_EVENT = "astrolab.cluster.role.failed"
DRIFT_EVENT = "astrolab.cluster.drift"
RKE2_PATTERN = "rke2_server:rke2_agent"


class BuildError(RuntimeError):
    """A role run or a gate that stops the build."""


def host_resource(host: str) -> dict[str, str]:
    """The Prefect event resource of an inventory host."""
    return {"prefect.resource.id": f"astrolab.host.{host}", "prefect.resource.name": host}


def secret_environment(secrets: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """The secrets' environment (variable -> value) from the process environment or their Prefect Secret
    blocks, and the variables found in neither. Flows and tasks pass it on as SecretStr values, which Prefect
    stores (as parameters of the phase subflows) only as '**********'."""
    from prefect.blocks.system import Secret

    env: dict[str, str] = {}
    missing: list[str] = []
    for variable, block in secrets.items():
        if os.environ.get(variable):
            env[variable] = os.environ[variable]
            continue
        try:
            env[variable] = str(Secret.load(block).get())  # type: ignore[union-attr]
        except (ValueError, RuntimeError):
            missing.append(variable)
    return env, missing


def _plan_rows(phase: str, result: RoleResult) -> list[dict[str, Any]]:
    """Per host of a check-mode run: what would change (task names and the start of each diff)."""
    rows = []
    for host, counts in sorted(result.totals.items()):
        changing = [t for t in result.tasks if t.host == host and t.status == "changed"]
        rows.append({"phase": phase, "role": result.role, "host": host, "would_change": counts["changed"],
                     "failed": counts["failed"] + counts["unreachable"],
                     "tasks": "; ".join(t.task for t in changing),
                     "diff": "\n".join(t.diff[:400] for t in changing if t.diff)[:2000]})
    return rows


@task(name="role", cache_policy=NO_CACHE)
def apply_role(phase: str, role: str, pattern: str, mode: Mode, inventory: Inventory, roles_path: Path,
               hosts: list[str] | None, variables: dict[str, Any], force: bool, secret_env: dict[str, SecretStr],
               settings: Settings, run_id: str, become: bool = True) -> dict[str, Any]:
    """Run one role of a phase (plan, apply or verify) on the hosts its pattern selects (escalating with sudo when
    ``become``); raise when it fails."""
    logger = get_run_logger()
    env = {k: v.get_secret_value() for k, v in secret_env.items()}
    secrets = list(env.values())
    targets = pattern_hosts(inventory, pattern, hosts)
    if not targets:
        return {"role": role, "hosts": [], "ran": [], "up_to_date": [], "rows": [], "changed": 0}
    skipped: list[str] = []
    hashes: dict[str, str] = {}
    if mode == "apply":
        role_hash = role_files_hash(role_dir(role, roles_path))
        hashes = {h: input_hash(role_hash, inventory, h, variables) for h in targets}
        if not force:
            with build_catalog(settings) as store:  # read-write: the first run creates the catalog
                skipped = up_to_date(store, role, hashes)
    ran = [h for h in targets if h not in skipped]
    if not ran:
        logger.info("%s: up to date on %s (inputs unchanged since its last successful apply)", role,
                    ", ".join(targets))
        return {"role": role, "hosts": targets, "ran": [], "up_to_date": skipped, "rows": [], "changed": 0}
    started = datetime.now(UTC)
    result = run_role(role, pattern, inventory, roles_path, check=mode != "apply", limit=ran, env=env,
                      variables=variables, timeout=settings.cluster.role_timeout, become=become)
    finished = datetime.now(UTC)
    if mode == "apply":
        applies = [Apply(run_id, phase, role, h, hashes[h], "ok" if h in result.totals and not (
            result.totals[h]["failed"] or result.totals[h]["unreachable"]) else "failed",
            result.totals.get(h, {}), started, finished,
            "" if h in result.totals and h not in result.failed_hosts else result.error or "not reached")
            for h in ran]
        with build_catalog(settings) as store:
            record_applies(store, applies, secrets)
        for a in applies:
            emit_event(APPLIED_EVENT if a.status == "ok" else FAILED_EVENT, resource=host_resource(a.host),
                       related=[{"prefect.resource.id": f"astrolab.cluster.role.{role}",
                                 "prefect.resource.role": "ansible-role"}],
                       payload={"phase": phase, "role": role, "host": a.host, "run_id": run_id, **dict(a.counts),
                                "error": redact(a.error, secrets)})
    if mode == "verify":
        for host, counts in result.totals.items():
            if counts["changed"]:
                drifted = [t.task for t in result.tasks if t.host == host and t.status == "changed"]
                emit_event(DRIFT_EVENT, resource=host_resource(host),
                           related=[{"prefect.resource.id": f"astrolab.cluster.role.{role}",
                                     "prefect.resource.role": "ansible-role"}],
                           payload={"phase": phase, "role": role, "host": host, "changed": counts["changed"],
                                    "tasks": "; ".join(drifted), "run_id": run_id})
    for host, counts in sorted(result.totals.items()):
        logger.info("%s on %s: ok=%d changed=%d failed=%d skipped=%d unreachable=%d", role, host, counts["ok"],
                    counts["changed"], counts["failed"], counts["skipped"], counts["unreachable"])
    if not result.ok:
        raise BuildError(f"role {role} ({mode}) failed: {result.error}")
    return {"role": role, "hosts": targets, "ran": ran, "up_to_date": skipped, "changed": result.changed,
            "rows": _plan_rows(phase, result) if mode != "apply" else [], "seconds": result.seconds}


@flow(name="cluster-phase")
def run_phase(phase: Phase, mode: Mode, inventory: Inventory, roles_path: Path, hosts: list[str] | None,
              variables: dict[str, Any], force: bool, secret_env: dict[str, SecretStr], config: str | None,
              run_id: str) -> list[dict[str, Any]]:
    """The roles of one phase in DAG order (a role waits for those it names in `after`); a failed role stops
    those after it. Raises with every failure when any role failed. (Settings are loaded here from `config`, not
    passed in: Prefect stores a subflow's parameters, and a catalog URL may hold a password.)"""
    settings = load_settings(config)
    futures: dict[str, PrefectFuture[dict[str, Any]]] = {}
    for run in topological_order(phase):
        futures[run.role] = apply_role.with_options(task_run_name=f"{phase.name}-{run.role}").submit(
            phase.name, run.role, run.hosts, mode, inventory, roles_path, hosts, variables, force, secret_env, settings,
            run_id, run.become, wait_for=[futures[a] for a in run.after], return_state=False)
    outcomes: list[dict[str, Any]] = []
    problems: list[str] = []
    for run in phase.roles:
        future = futures[run.role]
        future.wait()
        if future.state.is_completed():
            outcomes.append(future.result())
        elif future.state.is_failed():
            problems.append(str(future.state.result(raise_on_failure=False)) or f"role {run.role} failed")
            outcomes.append({"role": run.role, "failed": True})
        else:  # never ran: a role it comes after failed
            problems.append(f"role {run.role} not run: {', '.join(run.after)} did not succeed")
            outcomes.append({"role": run.role, "blocked": True})
    if problems:
        raise BuildError(f"phase {phase.name}: " + "; ".join(problems))
    return outcomes


def check_gate(phase: Phase, inventory: Inventory, hosts: list[str] | None, settings: Settings,
               inventory_path: str) -> list[gates.Verdict]:
    """The verdicts of the phase's gate (compliance scan run first for the phase's hosts)."""
    gate = phase.gate
    if gate is None:
        return []
    verdicts = []
    if gate.compliance is not None:
        from infra_flows.compliance import compliance_scan

        targets = sorted({h for run in phase.roles for h in pattern_hosts(inventory, run.hosts, hosts)} - {"localhost"})
        compliance_scan(inventory=inventory_path, hosts=targets)
        with build_catalog(settings, read_only=True) as store:
            verdicts.append(gates.compliance_gate(store, targets, gate.compliance.policy, gate.compliance.min_score))
    if gate.nodes_ready:
        expected = pattern_hosts(inventory, RKE2_PATTERN)
        cluster = settings.cluster
        token = cluster.k8s_token.get_secret_value() if cluster.k8s_token else None
        if token is None and cluster.k8s_token_secret:
            from astrolab.resources import _secret

            token = str(_secret(cluster.k8s_token_secret, "cluster.k8s_token_secret"))
        if not cluster.k8s_api_url or not token:
            verdicts.append(gates.Verdict("nodes_ready", False, "cluster.k8s_api_url and cluster.k8s_token (or "
                                                                "k8s_token_secret) are needed to check RKE2 nodes"))
        else:
            try:
                nodes = gates.k8s_nodes(cluster.k8s_api_url, token,
                                        str(cluster.k8s_ca_file) if cluster.k8s_ca_file else None)
                verdicts.append(gates.nodes_ready_gate(nodes, expected))
            except RuntimeError as exc:
                verdicts.append(gates.Verdict("nodes_ready", False, str(exc)))
    if gate.workers_registered:
        verdicts.append(asyncio.run(gates.workers_registered_gate(settings.cluster.work_pools)))
    return verdicts


@flow(name="cluster-build", log_prints=True)
def cluster_build(mode: Mode = "plan", phases: list[str] | None = None, hosts: list[str] | None = None,
                  roles: list[str] | None = None, force: bool = False, inventory: str | None = None,
                  variables: dict[str, Any] | None = None, phases_file: str | None = None,
                  roles_path: str | None = None, config: str | None = None) -> dict[str, Any]:
    """Plan, apply or verify the cluster build: the phases (all, or those named), on all hosts or those named,
    every role or those named; force reapplies roles whose inputs did not change."""
    if mode not in ("plan", "apply", "verify"):
        raise ValueError(f"mode must be plan, apply or verify, not {mode!r}")
    settings = load_settings(config)
    inventory_path = str(inventory or settings.cluster.inventory or settings.compliance.inventory)
    inv = load_inventory(inventory_path)
    for name in hosts or ():
        inv.host(name)  # an unknown host is an error with a hint
    roles_dir = Path(roles_path) if roles_path else settings.cluster.roles_path
    spec: Phases = load_phases(phases_file or settings.cluster.phases, roles_dir)
    chosen = select(spec, phases, roles)
    env, missing = secret_environment(spec.secrets)
    install_log_redaction(env.values())
    logger = get_run_logger()
    if missing:
        logger.warning("no value for %s (neither set nor a Prefect Secret block): roles that read them will fail",
                       ", ".join(missing))
    run_id = str(flow_run.id or "local")
    create_markdown_artifact(f"# cluster-build DAG ({mode})\n\n```mermaid\n{mermaid(chosen)}```\n",
                             key="cluster-build-dag", description="Phases, roles and their order")
    summary: list[dict[str, Any]] = []
    plan_rows: list[dict[str, Any]] = []
    stopped = ""
    for phase in chosen:
        try:
            outcomes = run_phase.with_options(flow_run_name=f"{mode}-{phase.name}")(
                phase, mode, inv, roles_dir, hosts, dict(variables or {}), force,
                {k: SecretStr(v) for k, v in env.items()}, config, run_id)
        except BuildError as exc:
            stopped = redact(str(exc), env.values())
            summary.append({"phase": phase.name, "result": "failed", "detail": stopped})
            break
        plan_rows += [row for o in outcomes for row in o.get("rows", [])]
        summary.append({"phase": phase.name, "result": "ok", "detail": ", ".join(
            f"{o['role']}: ran on {len(o['ran'])}, up to date on {len(o['up_to_date'])}" for o in outcomes)})
        if mode == "apply" and phase.gate is not None:
            verdicts = check_gate(phase, inv, hosts, settings, inventory_path)
            failing = [v for v in verdicts if not v.ok]
            summary.append({"phase": f"{phase.name} gate", "result": "failed" if failing else "ok",
                            "detail": "; ".join(v.message for v in verdicts)})
            if failing:
                stopped = (f"gate after phase {phase.name} does not hold, later phases not run: "
                           + "; ".join(v.message for v in failing))
                break
    if mode != "apply":
        create_table_artifact(plan_rows or [{"phase": "", "role": "", "host": "", "would_change": 0}],
                              key="cluster-build-plan", description=f"What would change per host ({mode})")
    lines = [f"# cluster-build {mode}: {len(chosen)} phase(s)", "", "| phase | result | detail |", "|---|---|---|"]
    lines += [f"| {s['phase']} | {s['result']} | {s['detail'].replace('|', '/')} |" for s in summary]
    if stopped:
        lines += ["", f"**Stopped:** {stopped}"]
    create_markdown_artifact(redact("\n".join(lines) + "\n", env.values()), key="cluster-build-summary",
                             description=f"cluster-build {mode}: result per phase")
    drift = sum(r["would_change"] for r in plan_rows) if mode == "verify" else 0
    print(f"cluster-build {mode}: {len(summary)} step(s), " + (f"stopped: {stopped}" if stopped else "done")
          + (f", {drift} drifted task(s)" if mode == "verify" else ""))
    if stopped:
        raise BuildError(stopped)
    return {"run_id": run_id, "mode": mode, "phases": [p.name for p in chosen], "summary": summary,
            "plan": plan_rows, "drift": drift}


"""compliance-scan: every inventory host against the Wazuh SCA policies, scored per host and per CIS v8 safeguard,
with drift against the previous scan.

One task run per host (the UI shows each host's state); hosts are scanned in parallel up to
``compliance.max_parallel``. A regression (passed -> failed) is a Prefect event that the notify/compliance-regression
deployment of the notify flow reacts to (prefect.yaml).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run

from astrolab.resources import build_catalog, build_lake, build_wazuh_client
from astrolab.retries import retrying
from astrolab.settings import Settings, load_settings
from tasks.compliance import evidence, report
from tasks.compliance.policy import Policy, load_policies
from tasks.compliance.scan import HostScan, scan_host
from tasks.compliance.store import Drift, run_results, run_scores, safeguard_scores, save_scan
from tasks.inventory.load import load_inventory
from tasks.inventory.model import Host, Inventory, Ssh

REGRESSION_EVENT = "astrolab.compliance.regression"
COMPLETED_EVENT = "astrolab.compliance.completed"


def host_resource(host: str) -> dict[str, str]:
    """The Prefect event resource of an inventory host."""
    return {"prefect.resource.id": f"astrolab.host.{host}", "prefect.resource.name": host}


@task(name="load-policies", cache_policy=NO_CACHE)
def load_policy_set(paths: list[Path]) -> tuple[list[Policy], list[str], dict[str, tuple[str, str]]]:
    """The policies under the paths; a malformed file is left out with its one-line error."""
    problems: list[str] = []
    policies = load_policies(paths, errors=problems)
    problems += [line for policy in policies for line in policy.problems]
    files = {p.info.id: (p.source, hashlib.sha256(Path(p.source).read_bytes()).hexdigest()) for p in policies}
    return policies, problems, files


@task(name="scan-host", cache_policy=NO_CACHE)
def scan(host: Host, ssh: Ssh, policies: list[Policy], settings: Settings) -> HostScan:
    """Evaluate every policy on one host (read-only); unreachable is a result, not a task failure."""
    result = scan_host(host, ssh, policies, settings.compliance.command_timeout, settings.compliance.connect_timeout)
    if result.status != "scanned":
        get_run_logger().warning("%s: %s", host.name, result.reason)
    return result


@task(name="wazuh-agents", cache_policy=NO_CACHE, **retrying(2))
def wazuh_agents(settings: Settings, names: list[str]) -> tuple[list[HostScan], dict[str, Any] | None]:
    """The Wazuh manager's own SCA results for the inventory's agents, and its agents' state (CIS 13.1)."""
    from tasks.compliance.wazuh_api import agent_results, alerting_evidence, host_scan

    client = build_wazuh_client(settings)
    if client is None:
        return [], None
    wanted = set(names)
    return [host_scan(a) for a in agent_results(client, wanted)], alerting_evidence(client, wanted)


@task(name="store-scan", cache_policy=NO_CACHE, **retrying(2))
def store(result: HostScan, run_id: str, files: dict[str, tuple[str, str]], settings: Settings,
          source: str = "astrolab", config: str | None = None) -> list[Drift]:
    """Write one host's scan with its drift (one transaction); emit an event per regression."""
    with build_catalog(settings) as catalog:
        drift = save_scan(catalog, result, run_id, source=source, policy_files=files)
    for change in drift:
        if change.change == "regression":
            emit_event(REGRESSION_EVENT, resource=host_resource(change.host),
                       related=[{"prefect.resource.id": f"astrolab.sca.check.{change.check_id}",
                                 "prefect.resource.role": "check", "prefect.resource.name": change.title},
                                *[{"prefect.resource.id": f"astrolab.cis-v8.{g}", "prefect.resource.role": "safeguard"}
                                  for g in change.safeguards]],
                       payload={"host": change.host, "policy_id": change.policy_id, "check_id": change.check_id,
                                "title": change.title, "previous": change.previous, "current": change.current,
                                "safeguards": ", ".join(change.safeguards), "run_id": run_id,
                                "config": config or ""})
    return drift


@task(name="report", cache_policy=NO_CACHE)
def publish_report(scans: list[HostScan], drift: list[Drift], inventory: Inventory, targets: list[Host],
                   problems: list[str], alerting: dict[str, Any] | None, run_id: str,
                   settings: Settings) -> dict[str, Any]:
    """Artifacts (summary with regressions first and the heat map, scores table) and files in the lake
    (JSON in Wazuh's field names, JUnit XML, heat map PNG)."""
    with build_catalog(settings, read_only=True) as catalog:
        scores = run_scores(catalog, run_id)
        per_safeguard = safeguard_scores(catalog, run_id)
        failures = run_results(catalog, run_id, "failed")
    agents = None if alerting is None else list(alerting["last_sca_scan"])
    proofs = [evidence.asset_inventory([h.name for h in targets], scans, agents), evidence.software_inventory(scans),
              evidence.event_alerting(alerting)]
    heat = report.heatmap(per_safeguard) if per_safeguard else None
    lake = build_lake(settings)
    run_dir = lake.run_report_dir(run_id)
    (run_dir / "compliance.json").write_text(report.export_json(scans, run_id))
    (run_dir / "compliance-junit.xml").write_text(report.export_junit(scans))
    if heat:
        (run_dir / "compliance-heatmap.png").write_bytes(heat)
    lake.save_dir(run_dir)
    title = f"compliance-scan: {len(targets)} host(s) of {inventory.cluster}"
    summary = report.summary_markdown(title, scores, per_safeguard, drift, failures, proofs, problems, heat)
    create_markdown_artifact(summary, key="compliance-summary", description="Compliance scan: regressions, scores")
    create_table_artifact([{k: v for k, v in s.items() if k != "reason"} for s in scores], key="compliance-scores",
                          description="Score per host and policy")
    return {"summary": summary, "scores": scores, "files": {name: lake.url_of(run_dir / name) for name in
                                                            ("compliance.json", "compliance-junit.xml")}}


@flow(name="compliance-scan", log_prints=True)
def compliance_scan(inventory: str | None = None, hosts: list[str] | None = None, roles: list[str] | None = None,
                    policies: list[str] | None = None, config: str | None = None) -> dict[str, Any]:
    """Scan the inventory's hosts (all, or by name / role) against the SCA policies; store, compare, report."""
    settings = load_settings(config)
    inv = load_inventory(inventory or settings.compliance.inventory)
    targets = inv.select(hosts, roles)
    policy_set, problems, files = load_policy_set([Path(p) for p in policies] if policies
                                                  else settings.compliance.policy_dirs)
    if not policy_set:
        raise ValueError("no usable SCA policy: " + ("; ".join(problems) or "the policy directories are empty"))
    run_id = str(flow_run.id or "local")
    pending: list[PrefectFuture[HostScan]] = []
    futures: list[PrefectFuture[HostScan]] = []
    for host in targets:  # at most max_parallel hosts at once
        if len(pending) >= settings.compliance.max_parallel:
            pending.pop(0).wait()
        future = scan.with_options(task_run_name=f"scan-{host.name}").submit(host, inv.ssh_for(host), policy_set,
                                                                              settings)
        pending.append(future)
        futures.append(future)
    scans = [f.result() for f in futures]
    drift = [d for s in scans for d in store.with_options(task_run_name=f"store-{s.host}")(s, run_id, files,
                                                                                            settings, config=config)]
    agent_scans, alerting = wazuh_agents(settings, [h.name for h in targets])
    drift += [d for s in agent_scans
              for d in store.with_options(task_run_name=f"store-wazuh-{s.host}")(s, run_id, {}, settings, "wazuh")]
    out = publish_report(scans, drift, inv, targets, problems, alerting, run_id, settings)
    regressions = sum(d.change == "regression" for d in drift)
    unreachable = [s.host for s in scans if s.status != "scanned"]
    emit_event(COMPLETED_EVENT, resource={"prefect.resource.id": f"astrolab.cluster.{inv.cluster}"},
               payload={"run_id": run_id, "hosts": len(targets), "unreachable": unreachable,
                        "regressions": regressions, "scores": out["scores"]})
    print(f"compliance-scan: {len(targets)} hosts, {len(unreachable)} unreachable, {regressions} regressions, "
          f"{len(problems)} policy problems")
    return {"run_id": run_id, "hosts": len(targets), "unreachable": unreachable, "regressions": regressions,
            "drift": [d.__dict__ for d in drift], "problems": problems, **out}

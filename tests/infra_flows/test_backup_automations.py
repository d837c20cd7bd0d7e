"""The backup automations of prefect.yaml on a real Prefect server: `prefect deploy` loads the notify deployments with
their triggers (one reactive on rpo-breach, one proactive per asset class with the class's RPO), the reactive one runs
the notify deployment when an rpo-breach event arrives, and the proactive one (with a short window) fires for an asset
whose backups stopped."""

import contextlib
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from prefect.automations import Automation
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterName,
    FlowRunFilter,
    FlowRunFilterDeploymentId,
)
from prefect.events import emit_event
from prefect.events.actions import RunDeployment
from prefect.events.schemas.automations import EventTrigger, Posture
from prefect.exceptions import ObjectAlreadyExists
from prefect.settings import PREFECT_API_URL

from tasks.backup.registry import CLASSES

ROOT = Path(__file__).resolve().parents[2]
NOTIFY = {d["name"]: d for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
          if d["entrypoint"] == "infra_flows/notify.py:notify"}


def resource(asset: str, asset_class: str) -> dict[str, str]:
    return {"prefect.resource.id": f"astrolab.backup.asset.{asset}", "prefect.resource.name": asset,
            "astrolab.backup.class": asset_class}


def deploy(*names: str) -> dict[str, object]:
    """`prefect deploy -n NAME ...` from prefect.yaml into the session's server (its process pool created if
    missing): deployment name -> id."""
    # the pool may exist from an earlier test of the session: fine
    with get_client(sync_client=True) as client, contextlib.suppress(ObjectAlreadyExists):
        client.create_work_pool(WorkPoolCreate(name="astrolab-process", type="process"))
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PYTHONPATH": str(ROOT)}
    prefect = str(Path(sys.executable).parent / "prefect")
    out = subprocess.run([prefect, "--no-prompt", "deploy", *(a for n in names for a in ("-n", n))], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    short = [n.split("/", 1)[1] for n in names]
    with get_client(sync_client=True) as client:
        found = client.read_deployments(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=short)))
    return {d.name: d.id for d in found}


@pytest.fixture(scope="module")
def deployed():
    """The two backup notify deployments in the session's server: name -> deployment id."""
    return deploy("notify/backup-rpo-breach", "notify/backup-missing")


def runs_of(deployment_id) -> list:
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(flow_run_filter=FlowRunFilter(
            deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id])))


def fired(emit, deployment_id, wanted: str, every: float = 45.0, timeout: float = 300.0) -> list:
    """Emit, then wait for runs of the deployment whose subject holds ``wanted``; emit again every ``every`` s
    (the server's trigger service picks up a new automation asynchronously, and an event it has not seen the
    automation for starts nothing)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        emit()
        again = time.monotonic() + every
        while time.monotonic() < min(again, deadline):
            runs = [r for r in runs_of(deployment_id) if wanted in r.parameters.get("subject", "")]
            if runs:
                return runs
            time.sleep(1)
    return []


def test_prefect_deploy_loads_the_reactive_and_one_proactive_trigger_per_class(deployed):
    assert set(deployed) == {"backup-rpo-breach", "backup-missing"}
    with get_client(sync_client=True) as client:
        automations = client.read_automations()
    proactive = {a.name: a for a in automations if a.name.startswith("backup-missing-")}
    assert set(proactive) == {f"backup-missing-{c}" for c in CLASSES}
    for asset_class, objectives in CLASSES.items():
        trigger = proactive[f"backup-missing-{asset_class}"].trigger
        assert trigger.posture == Posture.Proactive and trigger.expect == trigger.after == {"astrolab.backup.completed"}
        assert trigger.within == objectives.rpo and trigger.for_each == {"prefect.resource.id"}
        assert trigger.match.model_dump()["astrolab.backup.class"] == asset_class
        (action,) = proactive[f"backup-missing-{asset_class}"].actions
        assert action.deployment_id == deployed["backup-missing"]
    reactive = [a for a in automations if a.actions and getattr(a.actions[0], "deployment_id", None)
                == deployed["backup-rpo-breach"]]
    assert len(reactive) == 1 and reactive[0].trigger.posture == Posture.Reactive
    assert reactive[0].trigger.expect == {"astrolab.backup.rpo-breach"}


def test_an_rpo_breach_event_runs_the_notify_deployment(deployed):
    def breach():
        emit_event("astrolab.backup.rpo-breach", resource=resource("lab-docs", "documentation"),
                   payload={"asset": "lab-docs", "class": "documentation", "state": "breach",
                            "last_backup": "2026-03-02 12:00 UTC", "age": "2h of 1h (200%)", "reason": ""})

    runs = fired(breach, deployed["backup-rpo-breach"], "lab-docs", every=30)
    assert runs, "the reactive automation did not run notify/backup-rpo-breach"
    run = runs[0]
    assert run.parameters["subject"] == "astrolab: backup of lab-docs outside its RPO"
    assert "lab-docs (documentation) is breach: last backup 2026-03-02 12:00 UTC, 2h of 1h (200%)." in \
        run.parameters["message"]
    assert "--param 'asset=\"lab-docs\"'" in run.parameters["message"]


def test_the_proactive_trigger_fires_when_an_assets_backups_stop(deployed):
    """The documentation class's trigger as prefect.yaml declares it, with a 15 s window instead of 1 h."""
    declared = next(t for t in NOTIFY["backup-missing"]["triggers"] if t["name"] == "backup-missing-documentation")
    fields = {k: v for k, v in declared.items() if k not in ("type", "enabled", "name", "parameters")}
    fields["match"] = {**fields["match"], "prefect.resource.id": "astrolab.backup.asset.stopped-*"}
    automation = Automation(name="backup-missing-short", trigger=EventTrigger(**{**fields, "within": timedelta(
        seconds=15)}), actions=[RunDeployment(source="selected", deployment_id=deployed["backup-missing"],
                                                parameters=declared["parameters"])]).create()
    try:
        def last_backup():
            emit_event("astrolab.backup.completed", resource=resource("stopped-docs", "documentation"),
                       payload={"asset": "stopped-docs"})

        runs = fired(last_backup, deployed["backup-missing"], "stopped-docs")  # 15 s window, then nothing
        assert runs, "the proactive automation did not fire"
        assert runs[0].parameters["subject"] == ("astrolab: no backup of astrolab.backup.asset.stopped-docs within "
                                                 "its RPO (backup-missing-short)")
    finally:
        automation.delete()

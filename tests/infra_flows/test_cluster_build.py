"""cluster-build through a real Prefect server, with real Ansible over SSH on the test fleet (small generated roles):
a task failing on one host mid-phase stops the roles after it; the rerun finishes only what was left; a gate that
does not hold (a NotReady RKE2 node, from a small Kubernetes API) stops the later phase with its message; then all
phases apply and a further apply changes nothing; verify finds the drift made from outside and emits
astrolab.cluster.drift. The secrets (one from the environment, one from a Prefect Secret block) appear in no
artifact, log, flow-run parameter or file left on disk. The workers_registered gate against the server's API."""

import asyncio
import json
import tempfile
from pathlib import Path

import pytest
import yaml
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.events import emit_event

import infra_flows.cluster_build as cluster_build_module
from astrolab.resources import open_catalog
from infra_flows.cluster_build import DRIFT_EVENT, cluster_build, secret_environment
from tasks.cluster.gates import workers_registered_gate
from tests.infra_flows.test_backup_automations import deploy, fired
from tests.tasks.backup.proxmox_fake import self_signed
from tests.tasks.cluster.fleet_roles import SECRET_VARIABLE, clean, files_on, fresh_base, ssh, with_roles, write_roles
from tests.tasks.cluster.k8s_fake import FakeKubernetes, node

SECRET = "env-Secret-0b9d41"
BLOCK_SECRET = "block-Secret-77a2c3"
TOKEN = "k8s-Token-3e8812"
HOSTS = ["fleet1", "fleet2"]


@pytest.fixture
def build(fleet, tmp_path, monkeypatch):
    base = fresh_base()
    write_roles(tmp_path / "roles", base)
    inventory = with_roles(fleet, {"fleet1": ("rke2-server",), "fleet2": ("rke2-agent",)})
    (tmp_path / "inventory.yaml").write_text(yaml.safe_dump(inventory.model_dump(mode="json")))
    (tmp_path / "phases.yaml").write_text(yaml.safe_dump({
        "phases": [{"name": "base", "roles": [{"role": "marker", "hosts": "all"},
                                              {"role": "failing", "hosts": "all", "after": ["marker"]},
                                              {"role": "second", "hosts": "rke2_server:rke2_agent",
                                               "after": ["failing"]}],
                    "gate": {"nodes_ready": True}},
                   {"name": "later", "roles": [{"role": "later", "hosts": "all"}]}],
        "secrets": {SECRET_VARIABLE: "cluster-test-secret", "ASTROLAB_TEST_CLUSTER_BLOCK": "cluster-test-block"}}))
    Secret(value=BLOCK_SECRET).save("cluster-test-block", overwrite=True)
    monkeypatch.setenv(SECRET_VARIABLE, SECRET)
    monkeypatch.delenv("ASTROLAB_TEST_CLUSTER_BLOCK", raising=False)
    cert, key = self_signed(tmp_path)
    monkeypatch.setenv("ASTROLAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ASTROLAB_CLUSTER_K8S_TOKEN", TOKEN)
    monkeypatch.setenv("ASTROLAB_CLUSTER_K8S_CA_FILE", cert)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # where ansible-runner's private dirs go
    events: list[tuple[str, dict]] = []
    emit = cluster_build_module.emit_event

    def record(event, **kwargs):
        events.append((event, kwargs))
        return emit(event, **kwargs)

    monkeypatch.setattr(cluster_build_module, "emit_event", record)
    with FakeKubernetes((cert, key), [node("fleet1"), node("fleet2", "False")], token=TOKEN) as api:
        monkeypatch.setenv("ASTROLAB_CLUSTER_K8S_API_URL", api.url)

        def run(mode="apply", **kwargs):
            return cluster_build(mode=mode, hosts=HOSTS, inventory=str(tmp_path / "inventory.yaml"),
                                 phases_file=str(tmp_path / "phases.yaml"), roles_path=str(tmp_path / "roles"),
                                 return_state=True, **kwargs)

        yield run, api, inventory, base, events, tmp_path
    clean(fleet, base)


def _applies(tmp_path: Path) -> list[tuple]:
    with open_catalog(f"duckdb:///{tmp_path / 'home' / 'catalog.duckdb'}", read_only=True) as cat:
        return cat._rows("SELECT run_id, role, host, status, changed FROM cluster_role_applies "
                         "ORDER BY finished_at, role, host")


def test_failure_resume_gate_and_drift(build):
    run, api, inventory, base, events, tmp_path = build
    ssh(inventory, "fleet2", f"mkdir -p {base} && touch {base}/fail")
    first = run()
    assert first.is_failed()
    assert ("phase base: role failing (apply) failed: fleet2: task 'Fail where injected' failed: injected fault; "
            "role second not run: failing did not succeed") in first.message
    assert files_on(inventory, "fleet1", base) == ["digest", "failing", "marker"]
    assert files_on(inventory, "fleet2", base) == ["digest", "fail", "marker"]
    rows = _applies(tmp_path)
    assert [(r[1], r[2], r[3]) for r in rows] == [("marker", "fleet1", "ok"), ("marker", "fleet2", "ok"),
                                                  ("failing", "fleet1", "ok"), ("failing", "fleet2", "failed")]
    assert [(e, k["payload"]["host"]) for e, k in events if "role" in e] == [
        ("astrolab.cluster.role.applied", "fleet1"), ("astrolab.cluster.role.applied", "fleet2"),
        ("astrolab.cluster.role.applied", "fleet1"), ("astrolab.cluster.role.failed", "fleet2")]

    ssh(inventory, "fleet2", f"rm {base}/fail")
    second = run()  # resumes: only failing on fleet2, then second; the gate sees fleet2 NotReady
    assert second.is_failed()
    assert ("gate after phase base does not hold, later phases not run: RKE2 nodes not Ready: fleet2 (Ready=False)"
            in second.message)
    resumed = [(r[1], r[2], r[3]) for r in _applies(tmp_path)[4:]]
    assert resumed == [("failing", "fleet2", "ok"), ("second", "fleet1", "ok"), ("second", "fleet2", "ok")]
    assert "later" not in files_on(inventory, "fleet1", base)

    api.nodes = [node("fleet1"), node("fleet2")]
    third = run()
    assert third.is_completed(), third.message
    summary = third.result()["summary"]
    assert summary[0] == {"phase": "base", "result": "ok", "detail": "marker: ran on 0, up to date on 2, failing: "
                          "ran on 0, up to date on 2, second: ran on 0, up to date on 2"}
    assert summary[1] == {"phase": "base gate", "result": "ok", "detail": "2 RKE2 node(s) Ready"}
    assert [(r[1], r[2]) for r in _applies(tmp_path)[7:]] == [("later", "fleet1"), ("later", "fleet2")]
    forced = run(phases=["later"], force=True)  # reapplied: every task ok
    assert forced.is_completed() and [r[4] for r in _applies(tmp_path)[9:]] == [0, 0]

    clean_verify = run("verify")
    assert clean_verify.is_completed() and clean_verify.result()["drift"] == 0
    ssh(inventory, "fleet1", f"echo changed > {base}/second")
    drifted = run("verify", phases=["base"], roles=["second"])
    assert drifted.is_completed()
    plan = drifted.result()["plan"]
    assert [(p["role"], p["host"], p["would_change"]) for p in plan] == [("second", "fleet1", 1),
                                                                         ("second", "fleet2", 0)]
    assert "-changed" in plan[0]["diff"] and "+v1" in plan[0]["diff"]
    assert ssh(inventory, "fleet1", f"cat {base}/second").stdout == "changed\n"  # verify changes nothing
    drift = [k for e, k in events if e == DRIFT_EVENT]
    assert len(drift) == 1 and drift[0]["resource"]["prefect.resource.id"] == "astrolab.host.fleet1"
    assert drift[0]["payload"]["tasks"] == "second file" and drift[0]["payload"]["changed"] == 1
    assert ssh(inventory, "fleet2", f"cat {base}/digest").stdout == f"{SECRET}-digest\n"  # the roles had it

    _no_secret_anywhere(tmp_path, [first, second, third, drifted])


def _no_secret_anywhere(tmp_path: Path, states) -> None:
    secrets = (SECRET, BLOCK_SECRET, TOKEN)
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(limit=200)
        artifacts = client.read_artifacts(limit=200)
        logs = client.read_logs(limit=200)
    texts = [json.dumps(r.parameters, default=str) for r in runs]
    texts += [json.dumps(a.data, default=str) + str(a.description) for a in artifacts]
    texts += [log.message for log in logs]
    texts += [str(s.message) for s in states]
    assert {"cluster-build-dag", "cluster-build-plan", "cluster-build-summary"} <= {a.key for a in artifacts}
    assert any("**********" in t for t in texts)  # the phase subflows' secret parameters, masked
    for secret in secrets:
        assert not [t for t in texts if secret in t], secret
    assert list((tmp_path / "tmp").iterdir()) == []  # ansible-runner's private directories are gone
    for path in tmp_path.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(s.encode() in data for s in secrets), path


def test_workers_registered_against_the_prefect_api():
    async def check():
        async with get_client() as client:
            await client.create_work_pool(WorkPoolCreate(name="cluster-test-pool", type="process"),
                                          overwrite=True)
            before = await workers_registered_gate(["cluster-test-pool", "no-such-pool"])
            await client.send_worker_heartbeat("cluster-test-pool", "worker-1", heartbeat_interval_seconds=30)
            after = await workers_registered_gate(["cluster-test-pool"])
        return before, after

    before, after = asyncio.run(check())
    assert not before.ok and before.message.startswith(
        "work pools without a worker: cluster-test-pool (no online worker), no-such-pool (")
    assert after.ok and after.message == "1 work pool(s) with online workers"


def test_secrets_from_the_environment_or_their_blocks(monkeypatch):
    Secret(value=BLOCK_SECRET).save("cluster-test-block", overwrite=True)
    monkeypatch.setenv("ASTROLAB_TEST_CLUSTER_SET", SECRET)
    monkeypatch.delenv("ASTROLAB_TEST_CLUSTER_BLOCK", raising=False)
    monkeypatch.delenv("ASTROLAB_TEST_CLUSTER_NONE", raising=False)
    env, missing = secret_environment({"ASTROLAB_TEST_CLUSTER_SET": "cluster-test-block",  # set: wins over its block
                                       "ASTROLAB_TEST_CLUSTER_BLOCK": "cluster-test-block",
                                       "ASTROLAB_TEST_CLUSTER_NONE": "no-such-block"})
    assert env == {"ASTROLAB_TEST_CLUSTER_SET": SECRET, "ASTROLAB_TEST_CLUSTER_BLOCK": BLOCK_SECRET}
    assert missing == ["ASTROLAB_TEST_CLUSTER_NONE"]


def test_a_drift_event_runs_the_notify_deployment():
    """`prefect deploy` of notify/cluster-drift from prefect.yaml; an astrolab.cluster.drift event (as apply_role
    emits it in verify mode) starts a notify run with the templated subject and message."""
    deployment_id = deploy("notify/cluster-drift")["cluster-drift"]

    def drift():
        emit_event(DRIFT_EVENT, resource={"prefect.resource.id": "astrolab.host.db7", "prefect.resource.name": "db7"},
                   payload={"phase": "core", "role": "postgresql", "host": "db7", "changed": 2,
                            "tasks": "Config file; Restart", "run_id": "r1"})

    runs = fired(drift, deployment_id, "db7", every=30)
    assert runs, "the automation did not run notify/cluster-drift"
    assert runs[0].parameters["subject"] == "astrolab: db7 drifted from the cluster build (postgresql)"
    message = runs[0].parameters["message"]
    assert "role postgresql (phase core) would change 2 task(s) on db7: Config file; Restart." in message
    assert "--param 'roles=[\"postgresql\"]' --param 'hosts=[\"db7\"]' --param 'force=true'" in message

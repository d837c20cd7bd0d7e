"""The lab's own cluster build planned as the issue's done-when says: `prefect deployment run 'cluster-build/plan'`
on a real Prefect server with a process worker (prefect.yaml deployed with `prefect deploy --all`), over
infra/ansible/phases.yaml with its real roles, every phase, on the test fleet as a small cluster
(tests/infra/ansible/playbooks.py: data services, an RKE2 server, a GPU agent), the Proxmox API answered by the small
fake. The plan artifact lists what each role would change on each host; the plan changes nothing on the hosts
(checked from outside over SSH) and sends the Proxmox API no change; no secret shows in the artifacts or the run's
output."""

import json
import secrets

import pytest
import yaml

from tasks.cluster.phases import load_phases
from tests.infra.ansible.playbooks import ANSIBLE_DIR, FLEET_VARS, fleet_cluster, snapshot
from tests.prefect_cli import deploy_all, latest_artifact, prefect, process_worker
from tests.tasks.backup.proxmox_fake import TOKEN_ID, TOKEN_SECRET, FakeProxmox, self_signed

VM = {"name": "rke2-s9", "node": "pve1", "vmid": 109, "template_vmid": 9000, "template_node": "pve1", "cores": 2,
      "memory_mb": 2048, "address": "10.20.0.29", "prefix": 24, "gateway": "10.20.0.1"}


@pytest.fixture
def pve(tmp_path):
    server = FakeProxmox({}, self_signed(tmp_path), vms={9000: {"name": "debian12-cloud", "node": "pve1",
                                                                 "template": 1}})
    yield server
    server.close()


@pytest.mark.slow
def test_the_lab_phases_plan_from_prefect_deployment_run(fleet, pve, prefect_env, tmp_path):
    spec = load_phases(ANSIBLE_DIR / "phases.yaml", ANSIBLE_DIR / "roles")  # every role it names exists
    cluster = fleet_cluster(fleet)
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(yaml.safe_dump(cluster.model_dump(mode="json")))
    values = {name: secrets.token_urlsafe(12) for name in spec.secrets}
    values.update(ASTROLAB_PROXMOX_TOKEN_ID=TOKEN_ID, ASTROLAB_PROXMOX_TOKEN_SECRET=TOKEN_SECRET)
    port = int(pve.url.rsplit(":")[-1])
    variables = {**FLEET_VARS, "proxmox_vms_api_host": "127.0.0.1", "proxmox_vms_api_port": port,
                 "proxmox_vms_validate_certs": False, "proxmox_vms_machines": [VM],
                 "wazuh_agent_manager": "127.0.0.1"}  # the fleet has no Wazuh manager host
    before = {h.name: snapshot(fleet, h.name) for h in fleet.hosts}

    deploy_all(prefect_env)
    worker_env = dict(prefect_env, ASTROLAB_HOME=str(tmp_path / "home"), **values)  # the worker's secrets
    with process_worker(worker_env):
        out = prefect(prefect_env, "deployment", "run", "cluster-build/plan", "--watch", "--watch-timeout", "540",
                      "--params", json.dumps({"inventory": str(inventory), "variables": variables}), timeout=600)
    assert "Completed" in out, out[-2000:]

    plan = json.loads(latest_artifact(prefect_env, "cluster-build-plan")["data"])
    planned = {(row["role"], row["host"]) for row in plan}
    assert planned == {(run.role, host) for phase in spec.phases for run in phase.roles
                       for host in expected_hosts(run.hosts)}
    assert {row["phase"] for row in plan} == {"core", "security", "platform", "operations"}
    rows = {(row["role"], row["host"]): row for row in plan}
    assert rows[("postgresql", "fleet1")]["would_change"] > 0 and rows[("postgresql", "fleet1")]["failed"] == 0
    assert all(row["failed"] == 0 for row in plan), [r for r in plan if r["failed"]]
    assert rows[("proxmox_vms", "localhost")]["would_change"] == 1  # the clone it would make

    assert {h.name: snapshot(fleet, h.name) for h in fleet.hosts} == before  # a plan changes nothing
    assert pve.changes == []  # nor on the Proxmox API (no clone, no config)
    shown = out + "".join(json.dumps(latest_artifact(prefect_env, key)) for key in
                          ("cluster-build-plan", "cluster-build-summary", "cluster-build-dag"))
    assert not [name for name, value in values.items() if value in shown]


def expected_hosts(pattern: str) -> set[str]:
    """The fleet hosts (and the control host) a phases.yaml pattern selects, by the fleet's roles."""
    from tests.infra.ansible.playbooks import FLEET_ROLES

    if pattern == "localhost":
        return {"localhost"}
    groups = {"all": set(FLEET_ROLES)} | {r.replace("-", "_"): {h for h, roles in FLEET_ROLES.items() if r in roles}
                                         for roles in FLEET_ROLES.values() for r in roles}
    words = pattern.split(":")
    chosen = set().union(*(groups.get(w, set()) for w in words if not w.startswith("!")))
    return chosen - set().union(*(groups.get(w[1:], set()) for w in words if w.startswith("!")))

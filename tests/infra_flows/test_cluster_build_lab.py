"""The lab's own cluster build planned through the flow: infra/ansible/phases.yaml with its real roles, every phase,
on the test fleet as a small cluster (tests/infra/ansible/playbooks.py: data services, an RKE2 server, a GPU agent),
the Proxmox API answered by the small fake. The plan lists what each role would change on each host, changes
nothing on the hosts (checked from outside over SSH) and sends the Proxmox API no change; no secret shows."""

import json
import secrets

import pytest
import yaml
from prefect.artifacts import Artifact

from infra_flows.cluster_build import cluster_build
from tasks.cluster.phases import load_phases
from tests.infra.ansible.playbooks import ANSIBLE_DIR, FLEET_VARS, fleet_cluster, snapshot
from tests.tasks.backup.proxmox_fake import TOKEN_ID, TOKEN_SECRET, FakeProxmox, self_signed

VM = {"name": "rke2-s9", "node": "pve1", "vmid": 109, "template_vmid": 9000, "template_node": "pve1", "cores": 2,
      "memory_mb": 2048, "address": "10.20.0.29", "prefix": 24, "gateway": "10.20.0.1"}


@pytest.fixture
def pve(tmp_path):
    server = FakeProxmox({}, self_signed(tmp_path), vms={9000: {"name": "debian12-cloud", "node": "pve1",
                                                                 "template": 1}})
    yield server
    server.close()


def test_the_lab_phases_plan_on_the_fleet(fleet, pve, tmp_path, monkeypatch):
    spec = load_phases(ANSIBLE_DIR / "phases.yaml", ANSIBLE_DIR / "roles")  # every role it names exists
    cluster = fleet_cluster(fleet)
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(yaml.safe_dump(cluster.model_dump(mode="json")))
    values = {name: secrets.token_urlsafe(12) for name in spec.secrets}
    values.update(ASTROLAB_PROXMOX_TOKEN_ID=TOKEN_ID, ASTROLAB_PROXMOX_TOKEN_SECRET=TOKEN_SECRET)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ASTROLAB_HOME", str(tmp_path / "home"))
    port = int(pve.url.rsplit(":")[-1])
    variables = {**FLEET_VARS, "proxmox_vms_api_host": "127.0.0.1", "proxmox_vms_api_port": port,
                 "proxmox_vms_validate_certs": False, "proxmox_vms_machines": [VM],
                 "wazuh_agent_manager": "127.0.0.1"}  # the fleet has no Wazuh manager host
    before = {h.name: snapshot(fleet, h.name) for h in fleet.hosts}

    state = cluster_build(mode="plan", inventory=str(inventory), variables=variables, return_state=True)
    assert state.is_completed(), state.message
    out = state.result()
    assert out["phases"] == ["core", "security", "platform", "operations"]
    planned = {(row["role"], row["host"]) for row in out["plan"]}
    assert planned == {(run.role, host) for phase in spec.phases for run in phase.roles
                       for host in expected_hosts(run.hosts)}
    rows = {(row["role"], row["host"]): row for row in out["plan"]}
    assert rows[("postgresql", "fleet1")]["would_change"] > 0 and rows[("postgresql", "fleet1")]["failed"] == 0
    assert all(row["failed"] == 0 for row in out["plan"]), [r for r in out["plan"] if r["failed"]]
    assert rows[("proxmox_vms", "localhost")]["would_change"] == 1  # the clone it would make

    assert {h.name: snapshot(fleet, h.name) for h in fleet.hosts} == before  # a plan changes nothing
    assert pve.changes == []  # nor on the Proxmox API (no clone, no config)
    shown = json.dumps(out) + Artifact.get("cluster-build-plan").data + Artifact.get("cluster-build-summary").data
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

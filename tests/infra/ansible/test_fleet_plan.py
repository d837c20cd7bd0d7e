"""The roles that cannot converge on the fleet (RKE2 needs a kernel of its own and containerd, MinIO, Prefect, Dask
and the Wazuh agent systemd) planned there in check mode over real SSH: the plan runs to the end, reports what it
would change, and changes nothing on the hosts (checked from outside)."""

import yaml

from tests.infra.ansible.playbooks import ANSIBLE_DIR, fleet_cluster, run_roles, snapshot

ROLES = ("minio", "wazuh_agent", "rke2_server", "rke2_agent", "prefect", "dask", "backup_client")


def test_platform_roles_plan_without_changing_the_hosts(fleet, tmp_path):
    phases = yaml.safe_load((ANSIBLE_DIR / "phases.yaml").read_text())["phases"]
    patterns = {r["role"]: r["hosts"] for phase in phases for r in phase["roles"]}
    hosts = [h.name for h in fleet_cluster(fleet).hosts]
    before = {h: snapshot(fleet, h) for h in hosts}
    run = run_roles(tmp_path, fleet_cluster(fleet), [(role, patterns[role]) for role in ROLES], check=True,
                    extra_vars={"wazuh_agent_manager": "127.0.0.1"},
                    env={"ASTROLAB_RKE2_TOKEN": "plan-token", "ASTROLAB_MINIO_ROOT_USER": "plan-user",
                         "ASTROLAB_MINIO_ROOT_PASSWORD": "plan-password", "ASTROLAB_RESTIC_PASSWORD": "plan-restic",
                         "ASTROLAB_WAZUH_ENROLLMENT_PASSWORD": "plan-wazuh"})
    assert run.rc == 0, run.output[-6000:]
    assert {h: c["failed"] + c["unreachable"] for h, c in run.recap.items()} == {h: 0 for h in hosts}
    assert all(run.changed(h) > 0 for h in hosts)  # each host has something planned
    for secret in ("plan-token", "plan-password", "plan-restic", "plan-wazuh"):
        assert secret not in run.output
    for name in ("rke2_node : The config.yaml", "prefect : The systemd units", "dask : The systemd units",
                 "minio : The systemd unit", "wazuh_agent : Wazuh's signing key"):
        assert name in run.output
    assert {h: snapshot(fleet, h) for h in hosts} == before

"""The proxmox_vms role against a small fake of the Proxmox VE API (tests/tasks/backup/proxmox_fake.py): a plan sends
no POST or PUT, an apply clones the template and configures the clone with the documented parameters, and a second
apply with the VM existing clones nothing."""

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.infra.ansible.playbooks import ANSIBLE_DIR, BIN, parse_recap
from tests.tasks.backup.proxmox_fake import TOKEN_ID, TOKEN_SECRET, FakeProxmox, self_signed

VM = {"name": "rke2-s1", "node": "pve1", "vmid": 101, "template_vmid": 9000, "template": "debian12-cloud",
      "cores": 4, "memory_mb": 8192, "address": "10.20.0.21", "gateway": "10.20.0.1"}


@pytest.fixture
def pve(tmp_path):
    template = {"name": "debian12-cloud", "node": "pve1", "template": 1}
    server = FakeProxmox({}, self_signed(tmp_path), vms={9000: template})
    yield server
    server.close()


def run(pve: FakeProxmox, work: Path, check: bool = False) -> dict[str, dict[str, int]]:
    """proxmox_vms on localhost, as the flow runs it, with the fake as the API; the recap."""
    work.mkdir(exist_ok=True)
    play = work / "proxmox_vms.yml"
    play.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "roles": ["proxmox_vms"]}]))
    port = pve.url.rsplit(":", 1)[1]
    variables = {"proxmox_vms_api_host": "127.0.0.1", "proxmox_vms_api_port": int(port),
                 "proxmox_vms_validate_certs": False, "proxmox_vms_machines": [VM],
                 "proxmox_vms_ssh_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITestKey ops@astrolab"],
                 "ansible_python_interpreter": str(BIN / "python")}
    (work / "vars.yaml").write_text(yaml.safe_dump(variables))
    args = [str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", "-e", f"@{work / 'vars.yaml'}", str(play)]
    proc = subprocess.run(args + (["--check", "--diff"] if check else []), capture_output=True, text=True, timeout=300,
                          env={**os.environ, "ANSIBLE_ROLES_PATH": str(ANSIBLE_DIR / "roles"), "ANSIBLE_NOCOLOR": "1",
                               "ANSIBLE_LOCAL_TEMP": str(work / "tmp"), "ASTROLAB_PROXMOX_TOKEN_ID": TOKEN_ID,
                               "ASTROLAB_PROXMOX_TOKEN_SECRET": TOKEN_SECRET})
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert TOKEN_SECRET not in output
    return parse_recap(output)


def test_plan_sends_nothing_apply_clones_and_configures_once(pve, tmp_path):
    plan = run(pve, tmp_path / "plan", check=True)
    assert plan["localhost"]["changed"] == 1  # the clone it would make
    assert pve.changes == [] and 101 not in pve.vms
    assert "/api2/json/cluster/resources" in pve.requests

    apply = run(pve, tmp_path / "apply")
    assert apply["localhost"]["changed"] == 2
    (clone_method, clone_path, clone), (config_method, config_path, config) = pve.changes
    assert (clone_method, clone_path) == ("POST", "/api2/json/nodes/pve1/qemu/9000/clone")
    assert (clone["newid"], clone["name"], clone["full"], clone["storage"]) == ("101", "rke2-s1", "1", "local-zfs")
    assert config_method in ("PUT", "POST") and config_path == "/api2/json/nodes/pve1/qemu/101/config"
    assert (config["cores"], config["memory"], config["ciuser"], config["agent"]) == ("4", "8192", "astrolab", "1")
    assert config["ipconfig0"] == "ip=10.20.0.21/24,gw=10.20.0.1"
    assert config["sshkeys"] == "ssh-ed25519%20AAAAC3NzaC1lZDI1NTE5AAAAITestKey%20ops%40astrolab"
    assert pve.vms[101]["name"] == "rke2-s1"

    again = run(pve, tmp_path / "again")
    assert again["localhost"]["changed"] == 0
    assert len(pve.changes) == 2  # no second clone, no second configuration

"""The proxmox_vms role against a small fake of the Proxmox VE API (tests/tasks/backup/proxmox_fake.py): a plan sends
no POST or PUT, an apply clones the template, configures the clone, grows its boot disk to the spec and starts it, a
second apply sends nothing; a change of cores, memory or disk size is planned, then applied; a spec smaller than the
disk, or a disk the VM does not have, fails with one clear line (Proxmox cannot shrink a disk)."""

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.infra.ansible.playbooks import ANSIBLE_DIR, BIN, parse_recap
from tests.tasks.backup.proxmox_fake import TOKEN_ID, TOKEN_SECRET, FakeProxmox, self_signed

VM = {"name": "rke2-s1", "node": "pve1", "vmid": 101, "template_vmid": 9000, "template": "debian12-cloud",
      "cores": 4, "memory_mb": 8192, "disk_gb": 32, "disk": "scsi0", "address": "10.20.0.21", "gateway": "10.20.0.1"}
CONFIG = "/api2/json/nodes/pve1/qemu/101/config"
RESIZE = "/api2/json/nodes/pve1/qemu/101/resize"


@pytest.fixture
def pve(tmp_path):
    template = {"name": "debian12-cloud", "node": "pve1", "template": 1, "cores": 1, "memory": "2048",
                "scsi0": "local-lvm:base-9000-disk-0,size=2G", "boot": "order=scsi0"}
    server = FakeProxmox({}, self_signed(tmp_path), vms={9000: template})
    server.running_polls = 1  # each task is seen running once, then stopped
    yield server
    server.close()


def existing(pve: FakeProxmox, size: str, cores: int = 4, memory: int = 8192) -> None:
    """VM 101 as an earlier apply left it: configured, its disk at ``size``, running."""
    pve.vms[101] = {"name": "rke2-s1", "node": "pve1", "template": 0, "cores": cores, "memory": str(memory),
                    "scsi0": f"local-zfs:vm-101-disk-0,size={size}", "ciuser": "astrolab"}
    pve.running.add(101)


def play(pve: FakeProxmox, work: Path, vm: dict, check: bool = False) -> subprocess.CompletedProcess:
    """proxmox_vms on localhost, as the flow runs it, with the fake as the API and ``vm`` the one VM."""
    work.mkdir(exist_ok=True)
    playbook = work / "proxmox_vms.yml"
    playbook.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "roles": ["proxmox_vms"]}]))
    port = pve.url.rsplit(":", 1)[1]
    variables = {"proxmox_vms_api_host": "127.0.0.1", "proxmox_vms_api_port": int(port),
                 "proxmox_vms_validate_certs": False, "proxmox_vms_machines": [vm],
                 "proxmox_vms_ssh_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITestKey ops@astrolab"],
                 "ansible_python_interpreter": str(BIN / "python")}
    (work / "vars.yaml").write_text(yaml.safe_dump(variables))
    args = [str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", "-e", f"@{work / 'vars.yaml'}",
            str(playbook)]
    proc = subprocess.run(args + (["--check", "--diff"] if check else []), capture_output=True, text=True, timeout=300,
                          env={**os.environ, "ANSIBLE_ROLES_PATH": str(ANSIBLE_DIR / "roles"), "ANSIBLE_NOCOLOR": "1",
                               "ANSIBLE_LOCAL_TEMP": str(work / "tmp"), "ASTROLAB_PROXMOX_TOKEN_ID": TOKEN_ID,
                               "ASTROLAB_PROXMOX_TOKEN_SECRET": TOKEN_SECRET})
    assert TOKEN_SECRET not in proc.stdout + proc.stderr
    return proc


def run(pve: FakeProxmox, work: Path, vm: dict = VM, check: bool = False) -> dict[str, int]:
    """A run that must succeed: localhost's recap."""
    proc = play(pve, work, vm, check)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return parse_recap(proc.stdout)["localhost"]


def test_plan_sends_nothing_apply_clones_configures_grows_and_starts_once(pve, tmp_path):
    plan = run(pve, tmp_path / "plan", check=True)
    assert plan["changed"] == 1  # the clone it would make (then configure, grow and start)
    assert pve.changes == [] and 101 not in pve.vms
    assert "/api2/json/cluster/resources" in pve.requests

    apply = run(pve, tmp_path / "apply")
    assert apply["changed"] == 4
    (clone_method, clone_path, clone), (config_method, config_path, config), resize, start = pve.changes
    assert (clone_method, clone_path) == ("POST", "/api2/json/nodes/pve1/qemu/9000/clone")
    assert (clone["newid"], clone["name"], clone["full"], clone["storage"]) == ("101", "rke2-s1", "1", "local-zfs")
    assert (config_method, config_path) == ("PUT", CONFIG)
    assert (config["cores"], config["memory"], config["ciuser"], config["agent"]) == ("4", "8192", "astrolab", "1")
    assert config["ipconfig0"] == "ip=10.20.0.21/24,gw=10.20.0.1"
    assert config["sshkeys"] == "ssh-ed25519%20AAAAC3NzaC1lZDI1NTE5AAAAITestKey%20ops%40astrolab"
    assert resize == ("PUT", RESIZE, {"disk": "scsi0", "size": "32G"})  # the template's 2G disk grown to the spec
    assert start == ("POST", "/api2/json/nodes/pve1/qemu/101/status/start", {})
    assert pve.vms[101]["name"] == "rke2-s1" and pve.vms[101]["scsi0"] == "local-zfs:vm-101-disk-0,size=32G"
    assert 101 in pve.running

    pve.requests.clear()
    again = run(pve, tmp_path / "again")
    assert again["changed"] == 0
    assert len(pve.changes) == 4  # no second clone, configuration, resize or start
    assert "/api2/json/nodes/pve1/qemu/101/status/current" in pve.requests  # the start module found it running


def test_a_change_of_cores_memory_and_disk_is_planned_then_applied(pve, tmp_path):
    existing(pve, "32768M")  # 32G as PVE may write it: the same size, no resize
    assert run(pve, tmp_path / "same")["changed"] == 0 and pve.changes == []

    bigger = {**VM, "cores": 6, "memory_mb": 16384, "disk_gb": 40}
    plan = run(pve, tmp_path / "plan", bigger, check=True)
    assert plan["changed"] == 2  # cores and memory; the disk
    assert pve.changes == [] and pve.vms[101]["cores"] == 4

    apply = run(pve, tmp_path / "apply", bigger)
    assert apply["changed"] == 2
    (config_method, config_path, config), resize = pve.changes
    assert (config_method, config_path, config["cores"], config["memory"]) == ("PUT", CONFIG, "6", "16384")
    assert resize == ("PUT", RESIZE, {"disk": "scsi0", "size": "40G"})
    assert pve.vms[101]["scsi0"] == "local-zfs:vm-101-disk-0,size=40G"
    assert run(pve, tmp_path / "again", bigger)["changed"] == 0 and len(pve.changes) == 2


def test_a_stopped_vm_is_planned_then_started(pve, tmp_path):
    existing(pve, "32G")
    pve.running.clear()
    assert run(pve, tmp_path / "plan", check=True)["changed"] == 1 and pve.changes == []
    assert run(pve, tmp_path / "apply")["changed"] == 1
    assert pve.changes == [("POST", "/api2/json/nodes/pve1/qemu/101/status/start", {})] and 101 in pve.running


@pytest.mark.parametrize("check", [True, False], ids=["plan", "apply"])
@pytest.mark.parametrize(("disk", "error"), [
    ("scsi0", "vm rke2-s1 (101): scsi0 is 64G, larger than disk_gb 32; Proxmox cannot shrink a disk: raise disk_gb "
              "in the inventory to at least the disk's size"),
    ("virtio0", "vm rke2-s1 (101): no disk virtio0 with a size in its config (disks: scsi0); set the VM's disk in the "
                "inventory")], ids=["shrink", "missing"])
def test_a_disk_it_cannot_grow_fails_with_one_line_and_sends_nothing(pve, tmp_path, check, disk, error):
    existing(pve, "64G", cores=2)
    proc = play(pve, tmp_path / "fail", {**VM, "disk": disk}, check)
    assert proc.returncode != 0
    assert error in proc.stdout
    assert pve.changes == [] and pve.vms[101]["scsi0"] == "local-zfs:vm-101-disk-0,size=64G"

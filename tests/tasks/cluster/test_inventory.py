"""The astrolab inventory rendered for Ansible: read back by Ansible's own ansible-inventory, and used by a real
`ansible -m ping` (through ansible-runner) over SSH against the test fleet, with the fleet's verified host keys."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import ansible_runner
import pytest

from astrolab.settings import REPO_ROOT
from tasks.cluster.inventory import ansible_inventory, group_name, write_ansible_inventory
from tasks.inventory.load import load_inventory
from tasks.inventory.model import Inventory, Ssh

BIN = Path(sys.executable).parent  # ansible and ansible-inventory come with the venv


def ansible_view(path: Path) -> dict:
    """What Ansible itself reads from an inventory file (ansible-inventory --list)."""
    done = subprocess.run([str(BIN / "ansible-inventory"), "-i", str(path), "--list"], capture_output=True, text=True,
                          check=True, env={**os.environ, "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true"})
    assert "WARNING" not in done.stderr, done.stderr
    return json.loads(done.stdout)


def test_the_lab_inventory_as_ansible_reads_it(tmp_path):
    lab = load_inventory(REPO_ROOT / "infra" / "inventory" / "lab.example.yaml")
    view = ansible_view(write_ansible_inventory(lab, tmp_path / "hosts.yaml"))
    hostvars = view["_meta"]["hostvars"]
    assert set(hostvars) == {h.name for h in lab.hosts}
    vms = {vm["name"]: vm for vm in hostvars["rke2-s1"]["astrolab_vms"]}  # what the proxmox_vms role clones
    assert list(vms) == [vm.name for vm in lab.vms]
    assert vms["rke2-s1"] == {"name": "rke2-s1", "node": "pve1", "vmid": 101, "cores": 4, "memory_mb": 8192,
                              "disk_gb": 32, "disk": "scsi0", "address": "10.20.0.21", "template_vmid": 9000,
                              "template_node": "pve1", "prefix": 24, "gateway": None}
    assert hostvars["rke2-s1"] | {"ansible_ssh_common_args": None, "astrolab_vms": None} == {
        "astrolab_roles": ["rke2-server"], "ansible_connection": "ssh", "ansible_host": "10.20.0.21",
        "ansible_port": 22, "ansible_user": "astrolab", "ansible_ssh_private_key_file": "~/.ssh/astrolab_ed25519",
        "ansible_host_key_checking": True, "ansible_ssh_common_args": None, "astrolab_cluster": "astrolab",
        "astrolab_timezone": "Europe/Berlin", "astrolab_vms": None}
    assert hostvars["rke2-s1"]["ansible_ssh_common_args"] == (
        "-o StrictHostKeyChecking=yes -o 'UserKnownHostsFile=~/.ssh/known_hosts' -o GlobalKnownHostsFile=/dev/null")
    assert sorted(view["rke2_server"]["hosts"]) == ["rke2-s1", "rke2-s2", "rke2-s3"]
    assert sorted(view["gpu"]["hosts"]) == ["pve4", "pve7", "rke2-a1", "rke2-a2"]
    assert sorted(view["all"]["children"]) == sorted(["ungrouped", *{group_name(r) for h in lab.hosts
                                                                     for r in h.roles}])


def test_own_ssh_settings_local_and_mounted_hosts_and_groups(tmp_path):
    inv = Inventory.model_validate({
        "defaults": {"ssh": {"user": "admin"}},
        "nodes": [{"name": "here", "connection": "local", "groups": ["site-a"]},
                  {"name": "image", "connection": "mounted", "root": "/srv/images/node9"},
                  {"name": "far", "address": "192.0.2.7", "roles": ["db"], "groups": ["site-a"],
                   "ssh": {"user": "ops", "port": 2222}}]})
    rendered = ansible_inventory(inv)["all"]
    assert rendered["hosts"]["here"] == {"astrolab_roles": [], "ansible_connection": "local"}
    assert rendered["hosts"]["image"] == {"astrolab_roles": [], "ansible_connection": "community.general.chroot",
                                          "ansible_host": "/srv/images/node9"}
    assert rendered["hosts"]["far"] == {
        "astrolab_roles": ["db"], "ansible_connection": "ssh", "ansible_host": "192.0.2.7", "ansible_port": 2222,
        "ansible_user": "ops", "ansible_host_key_checking": True,
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=yes"}
    assert rendered["children"] == {"db": {"hosts": {"far": {}}}, "site_a": {"hosts": {"here": {}, "far": {}}}}
    view = ansible_view(write_ansible_inventory(inv, tmp_path / "hosts.yaml"))
    assert sorted(view["site_a"]["hosts"]) == ["far", "here"]


def ping(inventory: Inventory, tmp_path: Path, *args: str) -> ansible_runner.Runner:
    """`ansible all -m ping` through ansible-runner against the rendered inventory. Each run gets its own SSH
    ControlMaster sockets: a master left by an earlier run would be reused without a new host key check."""
    path = write_ansible_inventory(inventory, tmp_path / "inventory" / "hosts.yaml")
    (tmp_path / "runner").mkdir()
    control = tempfile.mkdtemp(prefix="astrolab-cp-")  # short: a socket path has at most 107 bytes
    return ansible_runner.run(private_data_dir=str(tmp_path / "runner"), inventory=str(path), host_pattern="all",
                              module="ping", cmdline=" ".join(args) or None, quiet=True, timeout=300,
                              envvars={"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
                                       "ANSIBLE_SSH_CONTROL_PATH_DIR": control,
                                       "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3"})


def oks(runner: ansible_runner.Runner) -> dict[str, dict]:
    """host -> the module's result, for every host the ping answered."""
    return {e["event_data"]["host"]: e["event_data"]["res"] for e in runner.events if e["event"] == "runner_on_ok"}


def test_ansible_pings_every_fleet_host_as_root_and_as_astrolab_with_sudo(fleet, tmp_path):
    names = {h.name for h in fleet.hosts}
    runner = ping(fleet, tmp_path / "root")
    assert (runner.status, runner.rc) == ("successful", 0)
    assert {host: res["ping"] for host, res in oks(runner).items()} == dict.fromkeys(names, "pong")

    user = os.environ.get("ASTROLAB_TEST_FLEET_SUDO_USER", "astrolab")
    as_user = fleet.model_copy(update={"nodes": tuple(
        h.model_copy(update={"ssh": Ssh(**{**fleet.ssh_for(h).model_dump(), "user": user})}) for h in fleet.nodes)})
    runner = ping(as_user, tmp_path / "user", "--become")
    assert (runner.status, runner.rc) == ("successful", 0)
    assert set(oks(runner)) == names


def test_a_host_key_that_does_not_match_stops_ansible(fleet, tmp_path):
    """Even through ansible-runner, which turns host key checking off unless the inventory says otherwise."""
    first, second = fleet.hosts[:2]
    known = Path(str(fleet.ssh_for(first).known_hosts)).read_text().splitlines()
    # every host's entry carries the first host's key: only the first host may answer
    first_key = next(line for line in known if line.startswith(f"[127.0.0.1]:{fleet.ssh_for(first).port} "))
    wrong = tmp_path / "known_hosts"
    wrong.write_text("".join(f"{line.split()[0]} {' '.join(first_key.split()[1:])}\n" for line in known))
    swapped = fleet.model_copy(update={"nodes": tuple(
        h.model_copy(update={"ssh": fleet.ssh_for(h).model_copy(update={"known_hosts": wrong})})
        for h in fleet.nodes)})
    runner = ping(swapped, tmp_path)
    assert runner.status == "failed"
    assert set(oks(runner)) == {first.name}
    unreachable = {e["event_data"]["host"] for e in runner.events if e["event"] == "runner_on_unreachable"}
    assert second.name in unreachable and first.name not in unreachable


@pytest.fixture(autouse=True)
def _no_user_ansible_config(monkeypatch, tmp_path):
    """No ansible.cfg of the machine or the user changes what these tests see."""
    monkeypatch.setenv("ANSIBLE_CONFIG", str(tmp_path / "no-ansible.cfg"))
    monkeypatch.setenv("ANSIBLE_LOCAL_TEMP", str(tmp_path / "ansible-tmp"))

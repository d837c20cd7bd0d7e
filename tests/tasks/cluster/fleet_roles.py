"""Small Ansible roles for the cluster-build tests on the test fleet, all writing under one directory per test
(/tmp/astrolab-test-<id> on each host), and how to look at and clean the hosts from outside, over SSH."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import yaml

from tasks.inventory.model import Inventory

SECRET_VARIABLE = "ASTROLAB_TEST_CLUSTER_SECRET"


def _role(roles: Path, name: str, tasks: list[dict]) -> None:
    (roles / name / "tasks").mkdir(parents=True)
    (roles / name / "tasks" / "main.yml").write_text(yaml.safe_dump(tasks, sort_keys=False))


def write_roles(roles: Path, base: str) -> None:
    """Roles `marker` (a directory and a file; uses the secret in no_log tasks only), `failing` (fails on a host
    where <base>/fail exists, else writes a file), `second` and `later` (each one file, in the directory that
    marker makes)."""
    secret = f"{{{{ lookup('ansible.builtin.env', '{SECRET_VARIABLE}') }}}}"
    _role(roles, "marker", [
        {"name": "Test directory", "ansible.builtin.file": {"path": base, "state": "directory", "mode": "0755"}},
        {"name": "Marker file", "ansible.builtin.copy": {"dest": f"{base}/marker",
                                                         "content": "{{ inventory_hostname }} marked\n",
                                                         "mode": "0644"}},
        {"name": "Secret is there", "ansible.builtin.debug": {"msg": f"the secret is {secret}"}, "no_log": True},
        {"name": "Secret digest", "ansible.builtin.copy": {"dest": f"{base}/digest", "mode": "0600",
                                                           "content": f"{secret}-digest\n"}, "no_log": True},
    ])
    _role(roles, "failing", [
        {"name": "Test directory", "ansible.builtin.file": {"path": base, "state": "directory", "mode": "0755"}},
        {"name": "Fault injected?", "ansible.builtin.stat": {"path": f"{base}/fail"}, "register": "fault"},
        {"name": "Fail where injected", "ansible.builtin.fail": {"msg": "injected fault"},
         "when": "fault.stat.exists"},
        {"name": "Failing done", "ansible.builtin.copy": {"dest": f"{base}/failing", "content": "done\n",
                                                          "mode": "0644"}},
    ])
    for name in ("second", "later"):
        _role(roles, name, [{"name": f"{name} file", "ansible.builtin.copy": {
            "dest": f"{base}/{name}", "content": "{{ astrolab_test_text | default('v1') }}\n", "mode": "0644"}}])


def fresh_base() -> str:
    """A fresh directory name for one test's files on the hosts."""
    return f"/tmp/astrolab-test-{uuid.uuid4().hex[:12]}"


def ssh(inventory: Inventory, host: str, command: str) -> subprocess.CompletedProcess[str]:
    """Run a shell command on a fleet host, from outside Ansible."""
    h = inventory.host(host)
    s = inventory.ssh_for(h)
    args = ["ssh", "-p", str(s.port), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"]
    if s.key:
        args += ["-i", str(s.key)]
    if s.known_hosts:
        args += ["-o", f"UserKnownHostsFile={s.known_hosts}"]
    return subprocess.run([*args, f"{s.user}@{h.address}", command], capture_output=True, text=True, timeout=60)


def files_on(inventory: Inventory, host: str, base: str) -> list[str]:
    """The files under the test directory on a host (empty when it does not exist)."""
    done = ssh(inventory, host, f"ls -1 {base} 2>/dev/null || true")
    assert done.returncode == 0, done.stderr
    return sorted(done.stdout.split())


def clean(inventory: Inventory, base: str) -> None:
    """Remove the test directory from every fleet host."""
    assert base.startswith("/tmp/astrolab-test-")
    for host in inventory.hosts:
        ssh(inventory, host.name, f"rm -rf {base}")


def with_roles(inventory: Inventory, roles: dict[str, tuple[str, ...]]) -> Inventory:
    """The fleet inventory with inventory roles given to some hosts (they become Ansible groups)."""
    nodes = tuple(n.model_copy(update={"roles": roles.get(n.name, ())}) for n in inventory.nodes)
    return inventory.model_copy(update={"nodes": nodes})

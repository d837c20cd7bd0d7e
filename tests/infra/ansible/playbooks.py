"""Running the roles of infra/ansible the way the cluster-build flow does (one generated play per role, the roles path
of the repository) with ansible-playbook, against the test fleet; and what the tests read back from the hosts."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tasks.cluster.inventory import write_ansible_inventory
from tasks.inventory.model import Inventory

ANSIBLE_DIR = Path(__file__).resolve().parents[3] / "infra" / "ansible"
BIN = Path(sys.executable).parent

# The fleet as a small cluster: fleet1 holds the data services, fleet2 a server, fleet3 a GPU agent.
FLEET_ROLES = {"fleet1": ("db", "nfs", "storage", "minio"), "fleet2": ("rke2-server", "prefect", "dask"),
               "fleet3": ("rke2-agent", "dask", "gpu")}

# What the fleet cannot host, said with the roles' own variables (each documented in its defaults): the hosts share
# this machine's kernel and network namespace, and run no init system but sshd as PID 1.
FLEET_VARS = {
    "base_apt_cache_valid_time": 10**9,   # the index in the image is used as is: no mirror needed at test time
    "base_sysctl_apply": False,           # the kernel is this machine's
    "base_chrony_control_clock": False,   # so is the clock
    "hardening_sysctl_apply": False,
    "hardening_firewall_enforce": False,  # so is the network namespace: a drop policy would apply to this machine
    "hardening_auditd_running": False,    # auditd only runs in the kernel's initial PID namespace
    "hardening_rsyslog_running": False,   # Debian 12 ships rsyslog with a systemd unit only
    "nfs_server_running": False,          # nfsd is a kernel server (the fleet has no nfsd module or namespace)
    "nfs_client_mount_state": "present",  # nothing to mount from: fstab only
    "postgresql_port": 56432,             # 5432 may be taken on this machine
    "postgresql_listen_addresses": "localhost",
}


@dataclass(frozen=True)
class Run:
    """One ansible-playbook run: exit status, output and the recap's counts per host."""

    rc: int
    output: str
    recap: dict[str, dict[str, int]]

    def changed(self, host: str) -> int:
        return self.recap[host]["changed"]


def fleet_cluster(fleet: Inventory) -> Inventory:
    """The fleet with the cluster roles of FLEET_ROLES, reached as the sudo user astrolab (hardening refuses root)."""
    user = os.environ.get("ASTROLAB_TEST_FLEET_SUDO_USER", "astrolab")
    nodes = tuple(host.model_copy(update={"roles": FLEET_ROLES[host.name],
                                          "ssh": (host.ssh or fleet.defaults.ssh).model_copy(update={"user": user})})
                  for host in fleet.hosts if host.name in FLEET_ROLES)
    return fleet.model_copy(update={"nodes": nodes, "vms": ()})


def parse_recap(output: str) -> dict[str, dict[str, int]]:
    """The PLAY RECAP lines as {host: {ok, changed, unreachable, failed, skipped, rescued, ignored}}."""
    recap: dict[str, dict[str, int]] = {}
    for line in output.split("PLAY RECAP", 1)[-1].splitlines():
        match = re.match(r"^(\S+)\s+:\s+(.*)$", line.strip())
        if match:
            recap[match[1]] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match[2])}
    return recap


def run_roles(workdir: Path, inventory: Inventory | Path, plays: list[tuple[str, str]], *, check: bool = False,
              extra_vars: dict | None = None, env: dict[str, str] | None = None, limit: str = "") -> Run:
    """Run roles as the flow does, each in a play `hosts: <pattern>, roles: [<role>]` (plays: (role, pattern) pairs,
    one playbook), in check mode (--check --diff, the plan) or apply mode."""
    workdir.mkdir(parents=True, exist_ok=True)
    if isinstance(inventory, Inventory):
        inventory = write_ansible_inventory(inventory, workdir / "inventory.yaml")
    play = workdir / f"{'-'.join(role for role, _ in plays)}.yml"
    play.write_text(yaml.safe_dump([{"hosts": hosts, "become": True, "roles": [role]} for role, hosts in plays]))
    varfile = workdir / "vars.yaml"
    varfile.write_text(yaml.safe_dump({**FLEET_VARS, **(extra_vars or {})}))
    args = [str(BIN / "ansible-playbook"), "-i", str(inventory), "-e", f"@{varfile}", str(play)]
    if check:
        args += ["--check", "--diff"]
    if limit:
        args += ["--limit", limit]
    run_env = {**os.environ, "ANSIBLE_ROLES_PATH": str(ANSIBLE_DIR / "roles"), "ANSIBLE_NOCOLOR": "1",
               "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_PYTHON_INTERPRETER": "auto_silent",
               "ANSIBLE_LOCAL_TEMP": str(workdir / "tmp"), "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
               **(env or {})}
    proc = subprocess.run(args, capture_output=True, text=True, env=run_env, timeout=900)
    output = proc.stdout + proc.stderr
    return Run(proc.returncode, output, parse_recap(output))


def run_role(workdir: Path, inventory: Inventory | Path, role: str, hosts: str, **kwargs: Any) -> Run:
    """One role in one play, as the flow runs it (see run_roles)."""
    return run_roles(workdir, inventory, [(role, hosts)], **kwargs)


def ssh(fleet: Inventory, name: str, command: str, user: str | None = None, stdin: str = "") -> str:
    """Run command on a fleet host over SSH (as root through the sudo user) and return its stdout; fails on error."""
    host = next(h for h in fleet.hosts if h.name == name)
    conn = fleet.ssh_for(host)
    login = user or os.environ.get("ASTROLAB_TEST_FLEET_SUDO_USER", "astrolab")
    args = ["ssh", "-q", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o",
            f"UserKnownHostsFile={conn.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
            "-i", str(conn.key), "-p", str(conn.port), f"{login}@{host.address}",
            "sudo -n sh -c " + shlex.quote(command)]
    proc = subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{command!r} on {name}: rc {proc.returncode}: {proc.stderr}"
    return proc.stdout


# Where the roles write (and apt's own state): every path, its type, mode and owner, and for what is not a directory
# its size and mtime (a directory's mtime moves with ~/.ansible, which is Ansible's, not the roles').
SNAPSHOT = ("find /etc /usr /opt /srv /var/lib /var/spool /home /root -xdev -path '*/.ansible' -prune -o "
            "-type d -printf '%p d %m %U %G\\n' -o -printf '%p %y %m %U %G %s %T@\\n' | sort; dpkg -l | sort; "
            "findmnt -rn -o TARGET,OPTIONS | sort")


def snapshot(fleet: Inventory, name: str) -> list[str]:
    """Files (path, type, mode, owner, size, mtime), installed packages and mounts of a host, read over SSH."""
    return ssh(fleet, name, SNAPSHOT).splitlines()

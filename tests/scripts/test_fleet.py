"""The test fleet of scripts/fleet.sh over real SSH: each host is a Debian 12 system of its own (name, host key, files,
processes), reachable only with its verified host key, with the sudo user and the python3 that Ansible needs."""

import asyncio
import os
import subprocess
import uuid
from pathlib import Path

import asyncssh
import pytest

from tasks.inventory.model import Host, Inventory

FLEET_SH = Path(__file__).resolve().parents[2] / "scripts" / "fleet.sh"


def run(fleet: Inventory, host: Host, command: str, user: str | None = None,
        known_hosts: Path | None = None) -> asyncssh.SSHCompletedProcess:
    """Run one command on a fleet host over SSH (host key checked against the fleet's known_hosts)."""
    ssh = fleet.ssh_for(host)

    async def go() -> asyncssh.SSHCompletedProcess:
        async with asyncssh.connect(host.address, port=ssh.port, username=user or ssh.user,
                                    client_keys=[str(ssh.key)], known_hosts=str(known_hosts or ssh.known_hosts),
                                    agent_path=None, connect_timeout=30) as conn:
            return await conn.run(command, check=True, timeout=60)

    return asyncio.run(go())


def out(fleet: Inventory, host: Host, command: str, user: str | None = None) -> str:
    return str(run(fleet, host, command, user).stdout).strip()


def test_each_host_is_a_debian_12_system_with_its_own_name_and_host_key(fleet):
    assert len(fleet.hosts) >= 2
    keys = {}
    for host in fleet.hosts:
        assert out(fleet, host, "hostname") == host.name
        assert out(fleet, host, "cat /etc/hostname") == host.name
        release = out(fleet, host, "cat /etc/os-release")
        assert "ID=debian" in release.splitlines() and 'VERSION_ID="12"' in release.splitlines()
        keys[host.name] = out(fleet, host, "cat /etc/ssh/ssh_host_ed25519_key.pub").split()[1]
    assert len(set(keys.values())) == len(keys)  # no two hosts share a host key
    lines = Path(fleet.ssh_for(fleet.hosts[0]).known_hosts or "").read_text().splitlines()
    assert sorted(line.split()[2] for line in lines) == sorted(keys.values())


def test_a_host_whose_key_is_not_known_is_refused(fleet, tmp_path):
    first, second = fleet.hosts[:2]
    ssh = fleet.ssh_for(second)
    # fleet1's key filed under fleet2's address: fleet2 presents another key, so the connection must fail
    entry = next(line for line in Path(str(ssh.known_hosts)).read_text().splitlines()
                 if line.startswith(f"[{first.address}]:{fleet.ssh_for(first).port} "))
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"[{second.address}]:{ssh.port} {' '.join(entry.split()[1:])}\n")
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        run(fleet, second, "true", known_hosts=wrong)


def test_a_file_written_on_one_host_is_seen_nowhere_else(fleet):
    name = f"/root/fleet-test-{uuid.uuid4().hex}"
    writer, *others = fleet.hosts
    run(fleet, writer, f"echo {writer.name} > {name}")
    assert out(fleet, writer, f"cat {name}") == writer.name
    for host in others:
        assert out(fleet, host, f"test -e {name} && echo present || echo absent") == "absent"
    assert not Path(name).exists()  # nor on this machine
    run(fleet, writer, f"rm {name}")


def test_a_host_sees_only_its_own_processes_and_mounts(fleet):
    for host in fleet.hosts:
        assert out(fleet, host, "cat /proc/1/comm") == "sshd"  # the host's PID 1 is its sshd, not this machine's init
        commands = out(fleet, host, "ps -e -o comm=").split()
        assert set(commands) <= {"sshd", "bash", "sh", "ps"}, commands  # nothing of this machine (no pytest)
    first, *others = fleet.hosts
    seconds = f"{uuid.uuid4().int % 10**6 + 10**6}"  # a sleep no other process runs
    pid = out(fleet, first, f"setsid sleep {seconds} </dev/null >/dev/null 2>&1 & echo $!")
    try:
        assert out(fleet, first, f"pgrep -x -f 'sleep {seconds}'") == pid
        for host in others:
            assert out(fleet, host, f"pgrep -x -f 'sleep {seconds}' || echo none") == "none"
    finally:
        run(fleet, first, f"kill {pid}")
    machine_mounts = Path("/proc/self/mounts").read_text()
    for host in fleet.hosts:  # the host's /proc, /dev and /run are mounted in its own mount namespace only
        assert f"/{host.name}/root/proc " not in machine_mounts


def test_astrolab_logs_in_with_the_key_and_has_passwordless_sudo(fleet):
    user = os.environ.get("ASTROLAB_TEST_FLEET_SUDO_USER", "astrolab")
    for host in fleet.hosts:
        assert out(fleet, host, "id -un", user=user) == user
        assert out(fleet, host, "sudo -n id -u", user=user) == "0"


def test_python3_is_there_for_ansible(fleet):
    for host in fleet.hosts:
        version = out(fleet, host, "python3 -c 'import sys, apt; print(*sys.version_info[:2])'")
        assert tuple(int(v) for v in version.split()) >= (3, 11)


def test_reset_gives_a_host_its_pristine_root_filesystem_back_with_the_same_host_key(fresh_fleet):
    host = fresh_fleet.hosts[-1]
    run(fresh_fleet, host, "echo changed > /etc/fleet-reset-test && touch /root/reset-marker")
    key = out(fresh_fleet, host, "cat /etc/ssh/ssh_host_ed25519_key.pub")
    env = {**os.environ, "ASTROLAB_TEST_FLEET_DIR": os.environ.get(
        "ASTROLAB_TEST_FLEET_DIR", str(Path(os.environ["ASTROLAB_TEST_FLEET"]).parent))}
    subprocess.run([str(FLEET_SH), "reset", host.name], env=env, check=True, capture_output=True, timeout=120)
    # Same known_hosts entry still verifies it (run checks the host key); what it wrote is gone.
    assert out(fresh_fleet, host, "cat /etc/ssh/ssh_host_ed25519_key.pub") == key
    assert out(fresh_fleet, host, "ls /etc/fleet-reset-test /root/reset-marker 2>/dev/null | wc -l") == "0"

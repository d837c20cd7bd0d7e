"""SshTarget with become (the inventory's ssh.become) on the test fleet: the unprivileged admin `astrolab` reads and
runs as root through `sudo -n`, as hosts whose hardening refuses root logins are scanned; a user without
passwordless sudo gets one clear error."""

import subprocess

import pytest

from tasks.compliance.ssh_target import connect_host
from tasks.compliance.target import TargetError
from tasks.inventory.model import Inventory

ADMIN = "astrolab"  # scripts/fleet.sh: passwordless sudo


def _as(fleet: Inventory, user: str, become: bool):
    host = fleet.hosts[0]
    return host, fleet.ssh_for(host).model_copy(update={"user": user, "become": become})


def test_become_reads_root_only_files_and_runs_as_root(fleet):
    host, ssh = _as(fleet, ADMIN, become=True)
    with connect_host(host, ssh) as target:
        shadow = target.read_lines("/etc/shadow")  # mode 0640 root:shadow
        assert shadow is not None and any(line.startswith("root:") for line in shadow)
        assert target.list_dir("/root") is not None
        done = target.run("id -u", 10)
        assert done is not None and done.stdout == ["0"]
        assert any("sshd" in p for p in target.processes())


def test_without_become_the_same_user_reads_as_itself(fleet):
    host, ssh = _as(fleet, ADMIN, become=False)
    with connect_host(host, ssh) as target:
        with pytest.raises(TargetError, match=f"cannot read /etc/shadow on {host.name}: Permission denied"):
            target.read_lines("/etc/shadow")
        done = target.run("id -u", 10)
        assert done is not None and done.stdout != ["0"]


@pytest.fixture
def user_without_sudo(fleet):
    """A user on the first fleet host that logs in with the fleet's key but has no sudo rights (removed after)."""
    host = fleet.hosts[0]
    ssh = fleet.ssh_for(host)
    name = "nosudo"
    root = ["ssh", "-p", str(ssh.port), "-i", str(ssh.key), "-o", f"UserKnownHostsFile={ssh.known_hosts}",
            "-o", "BatchMode=yes", f"root@{host.address}"]
    subprocess.run([*root, f"useradd --create-home --password '*' {name} && mkdir -p /home/{name}/.ssh && "
                    f"cp /root/.ssh/authorized_keys /home/{name}/.ssh/ && chown -R {name} /home/{name}/.ssh"],
                   check=True, capture_output=True, timeout=60)
    yield name
    subprocess.run([*root, f"userdel -r {name}"], capture_output=True, timeout=60)


def test_become_without_passwordless_sudo_is_one_clear_error(fleet, user_without_sudo):
    host, ssh = _as(fleet, user_without_sudo, become=True)
    with pytest.raises(TargetError) as caught:
        connect_host(host, ssh)
    message = str(caught.value)
    assert f"{user_without_sudo}@" in message and host.name in message and "sudo -n" in message
    assert "\n" not in message

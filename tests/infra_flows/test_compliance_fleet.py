"""`astrolab compliance scan` over the test fleet (scripts/fleet.sh): the lab's policies evaluated on each Debian 12
host over real SSH, one result set per host, and a change made on one host seen on that host only."""

import asyncio
import os

import asyncssh
import pytest

from astrolab.cli import main
from astrolab.resources import build_catalog
from astrolab.settings import load_settings
from tasks.compliance.store import latest_scans, scan_results
from tasks.inventory.model import Host, Inventory

ROOT_LOGIN = 100001  # astrolab_linux_baseline: "SSH: direct root login is refused." (sshd -T)
PASSWORD_AUTH = 100002  # "SSH: password authentication is disabled."
DROP_IN = "/etc/ssh/sshd_config.d/00-compliance-test.conf"  # read before the fleet's own fleet.conf: it wins


def run(fleet: Inventory, host: Host, command: str) -> None:
    ssh = fleet.ssh_for(host)

    async def go() -> None:
        async with asyncssh.connect(host.address, port=ssh.port, username=ssh.user, client_keys=[str(ssh.key)],
                                    known_hosts=str(ssh.known_hosts), agent_path=None, connect_timeout=30) as conn:
            await conn.run(command, check=True, timeout=60)

    asyncio.run(go())


def results(host: str) -> dict[int, str]:
    """check id -> result of the newest baseline scan of one host."""
    with build_catalog(load_settings(), read_only=True) as catalog:
        scans = [s for s in latest_scans(catalog, host) if s["policy_id"] == "astrolab_linux_baseline"]
        return {r["check_id"]: r["result"] for r in scan_results(catalog, [str(s["scan_id"]) for s in scans])}


@pytest.fixture
def fleet_scan_env(fleet, tmp_path, monkeypatch):
    monkeypatch.setenv("ASTROLAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ASTROLAB_COMPLIANCE_CONNECT_TIMEOUT", "30")
    return fleet


def test_the_lab_policies_scan_every_fleet_host_over_ssh(fleet_scan_env, capsys):
    fleet = fleet_scan_env
    path = os.environ["ASTROLAB_TEST_FLEET"]
    assert main(["compliance", "scan", "--inventory", path]) == 0
    printed = capsys.readouterr()
    assert f"scanned {len(fleet.hosts)} hosts: 0 unreachable" in printed.out + printed.err
    with build_catalog(load_settings(), read_only=True) as catalog:
        scans = {(s["host"], s["policy_id"]): s for s in latest_scans(catalog)}
    assert {host for host, _policy in scans} == {h.name for h in fleet.hosts}
    for host in fleet.hosts:
        baseline = scans[(host.name, "astrolab_linux_baseline")]
        assert baseline["status"] == "scanned" and baseline["passed"] > 0 and baseline["failed"] > 0
        assert scans[(host.name, "astrolab_proxmox_host")]["status"] == "not_applicable"  # no pveversion here
        assert scans[(host.name, "astrolab_rke2_node")]["status"] == "not_applicable"
        checks = results(host.name)
        assert checks[PASSWORD_AUTH] == "passed"  # fleet.sh: PasswordAuthentication no
        assert checks[ROOT_LOGIN] == "failed"  # fleet.sh: PermitRootLogin prohibit-password (root logs in with a key)

    changed, *others = fleet.hosts
    run(fleet, changed, f"echo 'PermitRootLogin no' > {DROP_IN}")  # read by sshd -T; the running sshd is untouched
    try:
        assert main(["compliance", "scan", "--inventory", path]) == 0
    finally:
        run(fleet, changed, f"rm -f {DROP_IN}")
    assert results(changed.name)[ROOT_LOGIN] == "passed"
    for host in others:
        assert results(host.name)[ROOT_LOGIN] == "failed"

"""tasks.compliance.scan and .store: a mounted fixture root scanned thrice, results and drift stored."""

from pathlib import Path

import pytest
import yaml

from astrolab.resources import open_catalog
from tasks.compliance.policy import parse_policy
from tasks.compliance.scan import CachedTarget, HostScan, installed_packages, scan_host, scan_target
from tasks.compliance.store import classify, run_results, run_scores, safeguard_scores, save_scan
from tasks.compliance.target import CommandResult, LocalTarget
from tasks.inventory.model import Host, Ssh

POLICY = {
    "policy": {"id": "fixture_linux", "name": "Fixture policy", "file": "fixture.yml"},
    "requirements": {"title": "Linux", "condition": "all", "rules": ["f:/etc/os-release -> r:^ID=debian"]},
    "checks": [
        {"id": 1, "title": "root login off", "condition": "all", "remediation": "PermitRootLogin no",
         "compliance": [{"cis_csc_v8": ["5.4", "4.1"]}],
         "rules": ["f:/etc/ssh/sshd_config -> r:^PermitRootLogin\\s+no"]},
        {"id": 2, "title": "no telnet", "condition": "none", "compliance": [{"cis_csc_v8": ["4.8"]}],
         "rules": ["f:/etc/inetd.conf -> r:^telnet"]},
        {"id": 3, "title": "ip forwarding off", "condition": "all", "compliance": [{"cis_csc_v8": ["4.1"]}],
         "rules": ["f:/proc/sys/net/ipv4/ip_forward -> 0"]},
        {"id": 4, "title": "audit rules", "condition": "all", "compliance": [{"cis_csc_v8": ["8.2"]}],
         "rules": ["d:/etc/audit/rules.d -> r:\\.rules$ -> r:-w /etc/passwd"]},
    ],
}

DPKG_STATUS = """Package: bash
Status: install ok installed
Version: 5.2.15-2

Package: telnet
Status: deinstall ok config-files
Version: 0.17

Package: openssh-server
Status: install ok installed
Version: 1:9.2p1-2
"""


def make_root(root: Path, permit_root: str = "no", forward: str = "0") -> Path:
    files = {"etc/os-release": "ID=debian\nVERSION_ID=12\n",
             "etc/ssh/sshd_config": f"Port 22\nPermitRootLogin {permit_root}\n",
             "etc/inetd.conf": "# no services\n",
             "proc/sys/net/ipv4/ip_forward": f"{forward}\n",
             "etc/audit/rules.d/identity.rules": "-w /etc/passwd -p wa -k identity\n",
             "var/lib/dpkg/status": DPKG_STATUS}
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


@pytest.fixture
def policy(tmp_path):
    return parse_policy(yaml.safe_load(yaml.safe_dump(POLICY)), "fixture.yml")


def mounted(root: Path, name: str = "node1") -> Host:
    return Host(name=name, connection="mounted", root=root)


def test_a_mounted_root_is_scanned_with_its_packages(tmp_path, policy):
    scan = scan_host(mounted(make_root(tmp_path / "r")), Ssh(), [policy])
    assert scan.status == "scanned" and scan.host == "node1"
    (result,) = scan.policies
    assert {c.id: c.status.value for c in result.checks} == {1: "passed", 2: "passed", 3: "passed", 4: "passed"}
    assert (result.passed, result.failed, result.score) == (4, 0, 100.0)
    assert scan.packages == [("bash", "5.2.15-2"), ("openssh-server", "1:9.2p1-2")]  # telnet is not installed


def test_a_missing_mounted_root_is_not_failed_checks(tmp_path, policy):
    scan = scan_host(mounted(tmp_path / "nowhere"), Ssh(), [policy])
    (result,) = scan.policies
    assert not result.applicable and "requirements not met" in result.reason and result.checks == ()


def test_the_cache_asks_the_target_once():
    class Counting(LocalTarget):
        calls = 0

        def run(self, command, timeout):
            Counting.calls += 1
            return CommandResult(["x"])

    cached = CachedTarget(Counting())
    assert cached.run("sshd -T", 1.0) == cached.run("sshd -T", 1.0) == CommandResult(["x"])
    assert Counting.calls == 1


def test_packages_on_this_machine_come_from_dpkg():
    names = dict(installed_packages(LocalTarget()))
    assert "bash" in names and names["bash"]


@pytest.mark.parametrize(("previous", "current", "change"), [
    ("passed", "failed", "regression"), ("failed", "passed", "fix"), (None, "failed", "new"),
    ("passed", None, "removed"), ("passed", "not applicable", "changed"), ("failed", "failed", None)])
def test_classify(previous, current, change):
    assert classify(previous, current) == change


def test_two_scans_store_results_scores_and_drift(catalog_url, tmp_path, policy):
    root = make_root(tmp_path / "r")
    with open_catalog(catalog_url) as catalog:
        first = scan_target(LocalTarget(root, name="node1"), [policy])
        assert save_scan(catalog, first, "run-1") == []  # nothing to drift from
        make_root(root, permit_root="yes", forward="1")  # two regressions
        (root / "etc/audit/rules.d/identity.rules").unlink()  # passed -> failed as well
        second = scan_target(LocalTarget(root, name="node1"), [policy])
        drift = save_scan(catalog, second, "run-2")
        assert [(d.check_id, d.change, d.previous, d.current) for d in drift] == [
            (1, "regression", "passed", "failed"), (3, "regression", "passed", "failed"),
            (4, "regression", "passed", "failed")]
        assert drift[0].safeguards == ("4.1", "5.4")
        make_root(root, permit_root="no", forward="1")  # root login and audit rules fixed, forwarding not
        third = scan_target(LocalTarget(root, name="node1"), [policy])
        assert [(d.check_id, d.change) for d in save_scan(catalog, third, "run-3")] == [(1, "fix"), (4, "fix")]

        (scores,) = run_scores(catalog, "run-2")
        assert (scores["host"], scores["status"], scores["passed"], scores["failed"]) == ("node1", "scanned", 1, 3)
        assert scores["score"] == pytest.approx(25.0)
        by_safeguard = {r["safeguard"]: (r["passed"], r["failed"]) for r in safeguard_scores(catalog, "run-2")}
        assert by_safeguard == {"4.1": (0, 2), "5.4": (0, 1), "4.8": (1, 0), "8.2": (0, 1)}
        failed = run_results(catalog, "run-2", "failed")
        assert [r["check_id"] for r in failed] == [1, 3, 4]
        assert failed[0]["evidence"].endswith("no line matches '" + r"r:^PermitRootLogin\s+no" + "'")
        assert failed[0]["remediation"] == "PermitRootLogin no"
        packages = catalog.query("SELECT count(*) AS n FROM host_packages").to_pylist()
        assert packages == [{"n": 6}]  # two packages per scan, three scans


def test_an_unreachable_host_is_stored_as_unreachable(catalog_url):
    with open_catalog(catalog_url) as catalog:
        save_scan(catalog, HostScan("node9", "unreachable", "node9 127.0.0.1:1: connection refused"), "run-1")
        (row,) = run_scores(catalog, "run-1")
        assert (row["host"], row["status"], row["passed"], row["reason"]) == \
            ("node9", "unreachable", None, "node9 127.0.0.1:1: connection refused")

"""compliance-scan as a Prefect flow run: mounted fixture roots and this machine, scanned twice with a change in
between; results, drift, events, artifacts and the exported files; an unreachable host and a malformed policy."""

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from prefect.artifacts import Artifact

from astrolab.cli import main
from astrolab.resources import build_catalog
from astrolab.settings import REPO_ROOT, load_settings
from infra_flows.compliance import compliance_scan
from tests.tasks.compliance.test_sca_store import POLICY, make_root
from tests.tasks.compliance.wazuh_fake import PASSWORD, USER, FakeWazuh


@pytest.fixture
def lab(tmp_path, monkeypatch, ssh_server):
    """Two mounted hosts, this machine over SSH and directly, a host nobody answers for; the fixture policy and the
    lab's own."""
    port, key, known_hosts = ssh_server
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "fixture.yml").write_text(yaml.safe_dump(POLICY))
    roots = {name: make_root(tmp_path / name) for name in ("node1", "node2")}
    inventory = {
        "cluster": "testlab",
        "defaults": {"ssh": {"user": "root", "port": 1, "known_hosts": str(tmp_path / "known_hosts")}},
        "nodes": [{"name": n, "connection": "mounted", "root": str(r), "roles": ["proxmox"]} for n, r in roots.items()]
        + [{"name": "self", "connection": "local"}, {"name": "ghost", "address": "127.0.0.1", "roles": ["db"]},
           {"name": "self-ssh", "address": "127.0.0.1",
            "ssh": {"user": "root", "port": port, "key": str(key), "known_hosts": str(known_hosts)}}],
    }
    (tmp_path / "known_hosts").write_text("")
    (tmp_path / "inventory.yaml").write_text(yaml.safe_dump(inventory))
    monkeypatch.setenv("ASTROLAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ASTROLAB_COMPLIANCE_INVENTORY", str(tmp_path / "inventory.yaml"))
    monkeypatch.setenv("ASTROLAB_COMPLIANCE_POLICY_DIRS", f"{policies}:{REPO_ROOT / 'infra' / 'policies'}")
    monkeypatch.setenv("ASTROLAB_COMPLIANCE_CONNECT_TIMEOUT", "30")  # a real handshake (self-ssh), on a busy machine
    return roots


def test_two_nightly_scans_give_scores_drift_and_reports(lab, capsys):
    first = compliance_scan()
    assert first["hosts"] == 5 and first["unreachable"] == ["ghost"] and first["regressions"] == 0
    assert first["problems"] == []
    scores = {(s["host"], s["policy_id"]): s for s in first["scores"]}
    assert scores[("node1", "fixture_linux")]["score"] == 100.0
    assert scores[("ghost", "*")]["status"] == "unreachable"
    assert "127.0.0.1:1" in scores[("ghost", "*")]["reason"]
    assert scores[("self", "astrolab_linux_baseline")]["status"] == "scanned"  # this Debian machine
    over_ssh, direct = scores[("self-ssh", "astrolab_linux_baseline")], scores[("self", "astrolab_linux_baseline")]
    assert over_ssh["status"] == "scanned"
    assert (over_ssh["passed"], over_ssh["failed"]) == (direct["passed"], direct["failed"])  # same machine, two ways
    assert scores[("node1", "astrolab_rke2_node")]["status"] == "not_applicable"

    make_root(lab["node2"], permit_root="yes")  # one regression on node2
    second = compliance_scan(hosts=["node1", "node2"])
    assert second["regressions"] == 1
    (change,) = [d for d in second["drift"] if d["change"] == "regression"]
    assert (change["host"], change["check_id"], change["safeguards"]) == ("node2", 1, ("4.1", "5.4"))

    summary = Artifact.get("compliance-summary").data
    assert summary.index("## Regressions") < summary.index("## Scores per host")
    assert "| node2 | 1 | root login off | fixture_linux | 4.1, 5.4 |" in summary
    assert "data:image/png;base64," in summary  # the heat map shows in the UI
    assert "| 1.1 | passed | 2 of 2 inventory hosts answered |" in summary  # the second run scanned two hosts

    with build_catalog(load_settings(), read_only=True) as catalog:
        rows = catalog.query("SELECT host, change FROM compliance_drift").to_pylist()
    assert rows == [{"host": "node2", "change": "regression"}]

    files = {name: Path(url.removeprefix("file://")) for name, url in second["files"].items()}
    exported = json.loads(files["compliance.json"].read_text())
    node2 = next(h for h in exported["hosts"] if h["name"] == "node2")
    fixture = next(p for p in node2["policies"] if p["policy_id"] == "fixture_linux")
    assert (fixture["pass"], fixture["fail"], fixture["score"]) == (3, 1, 75)
    check = next(c for c in fixture["checks"] if c["id"] == 1)
    assert check["result"] == "failed" and check["compliance"] == [{"key": "cis_csc_v8", "value": "5.4,4.1"}]
    suites = ET.fromstring(files["compliance-junit.xml"].read_text())
    suite = next(s for s in suites if s.get("name") == "node2.fixture_linux")
    assert (suite.get("tests"), suite.get("failures")) == ("4", "1")

    capsys.readouterr()
    assert main(["compliance", "report", "--host", "node2"]) == 0
    out = capsys.readouterr().out
    assert '"node2","fixture_linux",1,"root login off","regression","passed","failed"' in out
    assert '"node2","fixture_linux","astrolab","scanned",75,3,1,0,' in out
    assert '"fixture_linux",1,"root login off","4.1,5.4","/etc/ssh/sshd_config: no line matches' in out
    assert main(["compliance", "report", "--host", "nobody"]) == 2
    assert "no compliance scans stored for host 'nobody'" in capsys.readouterr().err


def test_a_malformed_policy_is_reported_and_the_rest_still_runs(lab, tmp_path):
    bad = tmp_path / "policies" / "broken.yml"
    bad.write_text(yaml.safe_dump({**POLICY, "policy": {"id": "broken", "name": "b"},
                                   "checks": [{"id": 99, "title": "t", "condition": "sometimes", "rules": ["f:/x"]}]}))
    out = compliance_scan(hosts=["node1"])
    assert out["problems"] == [f"{bad}: check 99: condition 'sometimes' must be one of all, any, none"]
    assert {s["policy_id"] for s in out["scores"]} >= {"fixture_linux", "astrolab_linux_baseline"}



def test_a_wazuh_managers_agent_results_join_the_store_and_the_evidence(lab, monkeypatch, tmp_path):
    fake = FakeWazuh()
    try:
        inventory = yaml.safe_load((tmp_path / "inventory.yaml").read_text())
        inventory["nodes"] = [{**n, "name": name} for n, name in zip(inventory["nodes"][:2], ("gpu01", "gpu02"))]
        (tmp_path / "inventory.yaml").write_text(yaml.safe_dump(inventory))
        monkeypatch.setenv("ASTROLAB_COMPLIANCE_WAZUH_URL", fake.url)
        monkeypatch.setenv("ASTROLAB_COMPLIANCE_WAZUH_USER", USER)
        monkeypatch.setenv("ASTROLAB_COMPLIANCE_WAZUH_PASSWORD", PASSWORD)
        out = compliance_scan()
    finally:
        fake.close()
    wazuh = {(s["host"], s["policy_id"]): s for s in out["scores"] if s["source"] == "wazuh"}
    assert set(wazuh) == {("gpu01", "cis_debian12"), ("gpu01", "sca_unix_audit"), ("gpu02", "cis_debian12")}
    assert (wazuh[("gpu01", "cis_debian12")]["passed"], wazuh[("gpu01", "cis_debian12")]["failed"]) == (2, 2)
    with build_catalog(load_settings(), read_only=True) as catalog:
        rows = catalog.query("SELECT r.check_id, r.result, r.safeguards FROM compliance_results r "
                             "JOIN compliance_scans s ON s.scan_id = r.scan_id WHERE s.source = 'wazuh' "
                             "AND r.host = 'gpu01' AND r.policy_id = 'sca_unix_audit' ORDER BY 1").to_pylist()
    assert [(r["check_id"], r["result"], r["safeguards"]) for r in rows] == [
        (3000, "failed", "4.7"), (3001, "passed", "4.1"), (3002, "not applicable", ""), (3003, "passed", "3.3"),
        (3004, "failed", "4.8,12.2")]
    summary = out["summary"]
    assert "| 13.1 | failed | 2 of 4 Wazuh agents active" in summary
    assert "not reporting: gpu02, gpu03" in summary
    assert "Wazuh agents not in the inventory: gpu03, wazuh-manager" in summary
    assert PASSWORD not in summary and PASSWORD not in json.dumps(out, default=str)

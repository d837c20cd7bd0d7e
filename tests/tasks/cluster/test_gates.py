"""tasks.cluster.gates: the compliance gate over the catalog's newest scans; the nodes_ready gate against a small
Kubernetes API over HTTPS (NodeList shape, bearer token, the CA checked). The workers_registered gate is tested
against a real Prefect server in tests/infra_flows/test_cluster_build.py."""

import pytest

from astrolab.resources import open_catalog
from tasks.cluster.gates import compliance_gate, k8s_nodes, nodes_ready_gate
from tests.tasks.backup.proxmox_fake import self_signed
from tests.tasks.cluster.k8s_fake import FakeKubernetes, node

TOKEN = "k8s-token-5b2e"


def test_compliance_gate_over_the_newest_scans(tmp_path):
    with open_catalog(f"duckdb:///{tmp_path / 'c.duckdb'}") as cat:
        rows = [("a", "db1", "astrolab_linux_baseline", "scanned", 70.0, "2026-11-30 20:00:00"),
                ("b", "db1", "astrolab_linux_baseline", "scanned", 85.0, "2026-11-30 21:00:00"),  # newest counts
                ("c", "web1", "astrolab_linux_baseline", "scanned", 60.0, "2026-11-30 21:00:00"),
                ("d", "web1", "astrolab_rke2_node", "scanned", 99.0, "2026-11-30 21:00:00"),      # other policy
                ("e", "gpu1", "astrolab_linux_baseline", "unreachable", None, "2026-11-30 21:00:00")]
        for scan_id, host, policy, status, score, at in rows:
            cat._execute("INSERT INTO compliance_scans (scan_id, host, policy_id, source, status, score, finished_at) "
                         "VALUES ($i, $h, $p, 'astrolab', $s, $sc, CAST($t AS TIMESTAMP))",
                         {"i": scan_id, "h": host, "p": policy, "s": status, "sc": score, "t": at})
        verdict = compliance_gate(cat, ["web1", "db1", "gpu1", "new1"], "astrolab_linux_baseline", 80)
        assert not verdict.ok
        assert verdict.message == ("compliance astrolab_linux_baseline below 80% on 3 of 4 host(s): gpu1 "
                                   "(unreachable), new1 (no scan), web1 (60%)")
        passed = compliance_gate(cat, ["db1"], "astrolab_linux_baseline", 80)
        assert passed.ok and passed.message == "compliance astrolab_linux_baseline >= 80% on 1 host(s)"


def test_nodes_ready_against_a_kubernetes_api(tmp_path):
    cert, key = self_signed(tmp_path)
    nodes = [node("srv1"), node("agent1", "False"), node("agent2", "Unknown"), node("other")]
    with FakeKubernetes((cert, key), nodes, token=TOKEN) as api:
        listed = k8s_nodes(api.url, TOKEN, cert)
        assert [n["metadata"]["name"] for n in listed] == ["srv1", "agent1", "agent2", "other"]
        assert api.requests == [("/api/v1/nodes", f"Bearer {TOKEN}")]
        verdict = nodes_ready_gate(listed, ["srv1", "agent1", "agent2", "agent3"])
        assert not verdict.ok and verdict.message == ("RKE2 nodes not Ready: agent1 (Ready=False), agent2 "
                                                      "(Ready=Unknown), agent3 (not registered)")
        api.nodes = [node("srv1"), node("agent1")]
        assert nodes_ready_gate(k8s_nodes(api.url, TOKEN, cert), ["srv1", "agent1"]).message == "2 RKE2 node(s) Ready"
        with pytest.raises(RuntimeError, match=r"GET /api/v1/nodes answered 401 Unauthorized"):
            k8s_nodes(api.url, "wrong", cert)
        with pytest.raises(RuntimeError, match=r"CERTIFICATE_VERIFY_FAILED"):  # the system CAs do not know it
            k8s_nodes(api.url, TOKEN)

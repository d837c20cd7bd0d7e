"""The RKE2 roles' readiness wait (rke2_node tasks/ready.yml) against a small fake Kubernetes API: it asks
GET /api/v1/nodes/{name} with the admin client certificate until the node's Ready condition is True, and fails when
the node never becomes Ready."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.infra.ansible.playbooks import ANSIBLE_DIR, BIN, parse_recap
from tests.tasks.backup.proxmox_fake import self_signed
from tests.tasks.cluster.k8s_fake import FakeKubernetes, node


@pytest.fixture
def tls(tmp_path):
    """An RKE2 server TLS directory: the CA, and the admin client certificate and key (one self-signed pair)."""
    cert, key = self_signed(tmp_path)
    tls_dir = tmp_path / "tls"
    tls_dir.mkdir()
    for name in ("server-ca.crt", "client-admin.crt"):
        shutil.copy(cert, tls_dir / name)
    shutil.copy(key, tls_dir / "client-admin.key")
    return cert, key, tls_dir


def wait_ready(api: str, tls_dir: Path, node: str, work: Path) -> subprocess.CompletedProcess:
    play = work / "ready.yml"
    play.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "Wait", "ansible.builtin.include_role": {"name": "rke2_node", "tasks_from": "ready"}}]}]))
    variables = {"rke2_node_api_url": api, "rke2_node_tls_dir": str(tls_dir), "rke2_node_name": node,
                 "rke2_node_first_server": "localhost", "rke2_node_ready_retries": 4, "rke2_node_ready_delay": 0,
                 "ansible_python_interpreter": str(BIN / "python")}
    (work / "vars.yaml").write_text(yaml.safe_dump(variables))
    return subprocess.run([str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", "-e",
                           f"@{work / 'vars.yaml'}", str(play)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "ANSIBLE_ROLES_PATH": str(ANSIBLE_DIR / "roles"), "ANSIBLE_NOCOLOR": "1",
                               "ANSIBLE_LOCAL_TEMP": str(work / "tmp")})


def test_the_wait_polls_until_the_node_is_ready(tls, tmp_path):
    cert, key, tls_dir = tls
    with FakeKubernetes((cert, key), [node("rke2-a1", "False")], client_ca=cert, ready_after={"rke2-a1": 2}) as kube:
        proc = wait_ready(kube.url, tls_dir, "rke2-a1", tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert [path for path, _ in kube.requests] == ["/api/v1/nodes/rke2-a1"] * 3  # NotReady twice, then Ready
    assert parse_recap(proc.stdout)["localhost"]["changed"] == 0


@pytest.mark.parametrize("nodes", [[node("rke2-a1", "False")], []], ids=["never-ready", "never-registered"])
def test_the_wait_fails_when_the_node_never_becomes_ready(tls, tmp_path, nodes):
    cert, key, tls_dir = tls
    with FakeKubernetes((cert, key), nodes, client_ca=cert) as kube:
        proc = wait_ready(kube.url, tls_dir, "rke2-a1", tmp_path)
    assert proc.returncode == 2
    assert len(kube.requests) == 5  # the first try and 4 retries

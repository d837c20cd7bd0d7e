"""The roles' templates (RKE2 config.yaml, systemd units of Prefect, Dask and MinIO, MinIO's environment, exports,
sshd and nftables settings) rendered with the roles' defaults for hosts of the lab example, compared with the files
under expected/ (which are what those hosts must get)."""

import os
import subprocess
from pathlib import Path

from tests.infra.ansible.playbooks import ANSIBLE_DIR, BIN

HERE = Path(__file__).parent
EXPECTED = HERE / "expected"
SECRETS = {"ASTROLAB_RKE2_TOKEN": "test-rke2-token", "ASTROLAB_MINIO_ROOT_USER": "test-minio-user",
           "ASTROLAB_MINIO_ROOT_PASSWORD": "test-minio-password"}


def render(out: Path) -> None:
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(HERE / "render_inventory.yaml"),
                           str(HERE / "render.yml"), "-e", f"roles={ANSIBLE_DIR / 'roles'}", "-e", f"out={out}"],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, **SECRETS, "ANSIBLE_NOCOLOR": "1",
                               "ANSIBLE_LOCAL_TEMP": str(out.parent / "tmp")})
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]


def files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def test_rendered_templates_match_the_expected_files(tmp_path):
    render(tmp_path / "out")
    rendered, expected = files(tmp_path / "out"), files(EXPECTED)
    assert sorted(rendered) == sorted(expected)
    for name, text in expected.items():
        assert rendered[name] == text, name


def test_the_rke2_configs_join_the_first_server_on_9345_with_the_token():
    first = (EXPECTED / "rke2-s1" / "config.yaml").read_text()
    joining = [(EXPECTED / host / "config.yaml").read_text() for host in ("rke2-s2", "rke2-a1")]
    assert "server:" not in first and 'token: "test-rke2-token"' in first
    for text in joining:
        assert "server: https://10.20.0.21:9345\n" in text and 'token: "test-rke2-token"' in text
    assert 'node-label: ["astrolab/gpu=true"]' in joining[1] and "tls-san" not in joining[1]


def test_gpu_hosts_run_dask_cuda_workers_and_cpu_hosts_plain_workers():
    gpu = (EXPECTED / "rke2-a1" / "dask-worker.service").read_text()
    cpu = (EXPECTED / "prefect1" / "dask-worker.service").read_text()
    assert "/opt/dask/venv/bin/dask cuda worker tcp://10.20.0.51:8786" in gpu
    assert "/opt/dask/venv/bin/dask worker tcp://10.20.0.51:8786" in cpu and "cuda" not in cpu

"""ansible-lint (production profile, offline) passes on every playbook and role of infra/ansible."""

import os
import subprocess

from tests.infra.ansible.playbooks import ANSIBLE_DIR, BIN


def test_ansible_lint_passes_on_infra_ansible():
    proc = subprocess.run([str(BIN / "ansible-lint"), "--offline", "--profile", "production", "-f", "pep8"],
                          cwd=ANSIBLE_DIR, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "NO_COLOR": "1", "PATH": f"{BIN}:{os.environ.get('PATH', '')}"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Passed: 0 failure(s), 0 warning(s)" in proc.stdout + proc.stderr

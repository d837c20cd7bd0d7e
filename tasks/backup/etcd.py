"""RKE2's etcd datastore: an on-demand snapshot taken on a server node over SSH (``rke2 etcd-snapshot save``), so
that restic on that node can back up the snapshot together with the server token, without which a snapshot cannot be
restored (``rke2 server --cluster-reset --cluster-reset-restore-path=<file>`` needs both)."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Sequence
from datetime import datetime

from tasks.inventory.ssh import remote_command


class EtcdSnapshotError(RuntimeError):
    """The snapshot could not be taken or found; one line naming the host."""


def snapshot_name(asset: str, now: datetime) -> str:
    """The ``--name`` of an on-demand snapshot; RKE2 appends the node name and a Unix time to it."""
    return f"astrolab-{asset}-{now:%Y%m%dT%H%M%SZ}"


def save_snapshot(via: Sequence[str], host: str, name: str, snapshot_dir: str, timeout: float = 600) -> str:
    """Run ``rke2 etcd-snapshot save`` on the host reached by ``via`` (an ssh command line ending with ``--``) and
    return the path of the snapshot file it wrote."""
    directory = shlex.quote(snapshot_dir)
    script = (f"command -v rke2 >/dev/null || {{ echo 'rke2 is not installed' >&2; exit 127; }}; "
              f"rke2 etcd-snapshot save --name {shlex.quote(name)} --dir {directory} >&2 && "
              f"cd {directory} && ls -1t -- {shlex.quote(name)}-* | head -n 1")
    try:
        proc = subprocess.run(remote_command(via, script), capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise EtcdSnapshotError(f"host {host}: rke2 etcd-snapshot save gave no answer within {timeout:g}s") from None
    stderr = proc.stderr.decode(errors="replace")
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    if proc.returncode == 255:
        raise EtcdSnapshotError(f"host {host}: ssh failed ({lines[-1] if lines else 'exit code 255'})")
    if proc.returncode != 0:
        reason = lines[-1] if lines else f"exit code {proc.returncode}"
        raise EtcdSnapshotError(f"host {host}: rke2 etcd-snapshot save failed ({reason[:300]})")
    found = proc.stdout.decode(errors="replace").strip()
    if not found:
        raise EtcdSnapshotError(f"host {host}: rke2 etcd-snapshot save wrote no {name}-* file in {snapshot_dir}")
    return f"{snapshot_dir.rstrip('/')}/{found}"

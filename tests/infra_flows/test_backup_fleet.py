"""A path asset on an inventory host (the SSH test fleet): restic runs on that host, started over SSH with the
password on stdin, into an S3 repository both sides reach; the drill restores it here. A host without restic, and a
host that cannot be reached, fail with one line naming the host."""

import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from infra_flows.backup import backup, restore_drill
from tasks.backup.restic import Repository
from tasks.inventory.model import Host, Inventory
from tasks.inventory.ssh import ssh_argv


def on_host(fleet: Inventory, host: Host, script: str, stdin: bytes = b"") -> str:
    out = subprocess.run([*ssh_argv(fleet, host), script], input=stdin, capture_output=True, timeout=120, check=True)
    return out.stdout.decode()


@pytest.fixture
def remote_docs(fleet, s3_endpoint, tmp_path, monkeypatch):
    """A directory of small files on the last fleet host, a registry backing it up into a fresh S3 repository, and
    the settings that reach the fleet; the directory and restic are removed from the host afterwards."""
    host = fleet.hosts[-1]
    where = f"/srv/astrolab-t-{secrets.token_hex(6)}"
    on_host(fleet, host, f"mkdir -p {where}/docs/sub && printf 'alpha\\n' > {where}/docs/a.txt && "
                         f"head -c 5000 /dev/urandom > {where}/docs/sub/b.bin")
    password = secrets.token_urlsafe(16)
    keys = {"AWS_ACCESS_KEY_ID": "astrolab-test", "AWS_SECRET_ACCESS_KEY": "astrolab-test-secret"}
    for name, value in {**keys, "RESTIC_PASSWORD": password, "ASTROLAB_HOME": str(tmp_path / "home"),
                        "ASTROLAB_COMPLIANCE_INVENTORY": os.environ["ASTROLAB_TEST_FLEET"]
                        }.items():
        monkeypatch.setenv(name, value)
    url = f"s3:{s3_endpoint}/restic-{secrets.token_hex(6)}/fleet"
    Repository(url, password, keys, cache_dir=tmp_path / "cache").init()
    registry = tmp_path / "assets.yaml"
    registry.write_text(yaml.safe_dump({
        "repositories": [{"name": "minio", "url": url}],
        "assets": [{"name": "fleet-docs", "class": "documentation", "kind": "path", "host": host.name,
                    "paths": [f"{where}/docs"], "repository": "minio"}]}))
    yield host, where, str(registry), Repository(url, password, keys, cache_dir=tmp_path / "cache")
    on_host(fleet, host, f"rm -rf {where} /usr/local/bin/restic /root/.cache/restic")


def test_a_path_on_a_fleet_host_is_backed_up_there_and_drilled_here(fleet, remote_docs):
    host, where, registry, repo = remote_docs
    state = backup(assets_file=registry, asset="fleet-docs", return_state=True)
    assert state.is_failed()
    assert f"host {host.name}: restic backup" in state.message
    assert "restic is not installed on root@127.0.0.1 (the backup_client role installs it)" in state.message

    # what the backup_client role does on a real host: put restic on it (here the same binary as this machine's)
    restic = Path(shutil.which("restic") or "/usr/bin/restic").read_bytes()
    on_host(fleet, host, "cat > /usr/local/bin/restic && chmod 0755 /usr/local/bin/restic", restic)
    result = backup(assets_file=registry, asset="fleet-docs")
    (snap,) = repo.snapshots(tags=["asset=fleet-docs"])
    assert snap.id.startswith(result["snapshots"]["fleet-docs"])
    assert snap.paths == (f"{where}/docs",) and snap.hostname == on_host(fleet, host, "hostname").strip()
    assert not Path(where).exists()  # the data was read on the host, not here

    drill = restore_drill(assets_file=registry, asset="fleet-docs")
    assert drill["result"] == "passed" and drill["snapshot_id"] == snap.id
    assert drill["detail"].startswith("2 files, 5006 bytes restored vs the backup's record; the live source is on "
                                      f"host {snap.hostname}, not compared here")


def test_an_unreachable_host_fails_naming_it(fleet, remote_docs, tmp_path, monkeypatch):
    host, _where, registry, _repo = remote_docs
    inventory = yaml.safe_load(Path(os.environ["ASTROLAB_TEST_FLEET"]).read_text())
    for node in inventory["nodes"]:
        node["ssh"]["port"] = 1  # nothing listens there
    moved = tmp_path / "unreachable.yaml"
    moved.write_text(yaml.safe_dump(inventory))
    monkeypatch.setenv("ASTROLAB_COMPLIANCE_INVENTORY", str(moved))
    state = backup(assets_file=registry, asset="fleet-docs", return_state=True)
    assert state.is_failed()
    assert f"host {host.name}: restic backup" in state.message and "ssh to root@127.0.0.1 failed (ssh: connect to " \
        "host 127.0.0.1 port 1: Connection refused)" in state.message

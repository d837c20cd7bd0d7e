"""Assets on inventory hosts (the SSH test fleet): restic runs on that host, started over SSH with the password on
stdin (as root, or as the sudo admin with ssh.become), into an S3 repository both sides reach; the drill restores
here. A path asset, and an RKE2 etcd snapshot taken there first (``rke2 etcd-snapshot save``, by a stand-in for
RKE2's CLI, which needs a running etcd). A host without restic or rke2, and a host that cannot be reached, fail with
one line naming the host."""

import os
import secrets
import subprocess
from pathlib import Path

import pytest
import yaml

from infra_flows.backup import backup, restore_drill
from tasks.backup.restic import Repository
from tasks.inventory.model import Host, Inventory
from tasks.inventory.ssh import ssh_argv
from tests.infra.ansible.playbooks import Run, fleet_cluster, run_role

# What `rke2 etcd-snapshot save --name N --dir D` leaves behind: D/N-<node name>-<unix time> (RKE2 docs,
# datastore/backup_restore); the content stands in for etcd's.
FAKE_RKE2 = """#!/bin/sh
[ "$1 $2" = "etcd-snapshot save" ] || { echo "fake rke2: only etcd-snapshot save" >&2; exit 1; }
shift 2
while [ $# -gt 0 ]; do case $1 in --name) name=$2; shift 2;; --dir) dir=$2; shift 2;; *) shift;; esac; done
mkdir -p "$dir" && head -c 20000 /dev/urandom > "$dir/$name-$(hostname)-$(date +%s)"
echo "Saving etcd snapshot to $dir/$name" >&2
"""


def on_host(fleet: Inventory, host: Host, script: str, stdin: bytes = b"") -> str:
    out = subprocess.run([*ssh_argv(fleet, host), script], input=stdin, capture_output=True, timeout=120, check=True)
    return out.stdout.decode()


def put_file(fleet: Inventory, host: Host, path: str, data: bytes) -> None:
    on_host(fleet, host, f"cat > {path} && chmod 0755 {path}", data)


class FleetBackup:
    """A scratch directory on the last fleet host, an S3 repository, and registries written per test; the settings
    reach the fleet through an inventory where that host is an RKE2 server."""

    def __init__(self, fleet: Inventory, s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.fleet, self.tmp_path = fleet, tmp_path
        self.host = fleet.hosts[-1]
        self.where = f"/srv/astrolab-t-{secrets.token_hex(6)}"
        self.password = password = secrets.token_urlsafe(16)
        keys = {"AWS_ACCESS_KEY_ID": "astrolab-test", "AWS_SECRET_ACCESS_KEY": "astrolab-test-secret"}
        inventory = yaml.safe_load(Path(os.environ["ASTROLAB_TEST_FLEET"]).read_text())
        inventory["nodes"][-1]["roles"] = ["rke2-server"]
        self.inventory = tmp_path / "fleet.yaml"
        self.inventory.write_text(yaml.safe_dump(inventory))
        for name, value in {**keys, "RESTIC_PASSWORD": password, "ASTROLAB_HOME": str(tmp_path / "home"),
                            "ASTROLAB_COMPLIANCE_INVENTORY": str(self.inventory)}.items():
            monkeypatch.setenv(name, value)
        self.url = f"s3:{s3_endpoint}/restic-{secrets.token_hex(6)}/fleet"
        self.repo = Repository(self.url, password, keys, cache_dir=tmp_path / "cache")
        self.repo.init()
        on_host(fleet, self.host, f"mkdir -p {self.where}")

    def registry(self, asset: dict) -> str:
        path = self.tmp_path / "assets.yaml"
        path.write_text(yaml.safe_dump({"repositories": [{"name": "minio", "url": self.url}],
                                        "assets": [{"repository": "minio", "host": self.host.name, **asset}]}))
        return str(path)

    def install_restic(self) -> Run:
        """The lab's backup_client role applied to the host by Ansible (as the sudo admin): restic from Debian, the
        repository settings and the password (root only)."""
        run = run_role(self.tmp_path / "backup-client", fleet_cluster(self.fleet), "backup_client", self.host.name,
                       extra_vars={"backup_client_repository": self.url},
                       env={"ASTROLAB_RESTIC_PASSWORD": self.password})
        assert run.rc == 0 and run.changed(self.host.name) > 0, run.output[-4000:]
        return run

    def as_sudo_admin(self) -> None:
        """Reach the host as the fleet's sudo admin with ssh.become, as the lab's inventory does."""
        inventory = yaml.safe_load(self.inventory.read_text())
        inventory["nodes"][-1]["ssh"].update(user="astrolab", become=True)
        self.inventory.write_text(yaml.safe_dump(inventory))

    def cleanup(self) -> None:
        on_host(self.fleet, self.host, f"rm -rf {self.where} /usr/local/bin/rke2 /root/.cache/restic /etc/restic; "
                                       "dpkg --purge restic >/dev/null 2>&1 || true")


@pytest.fixture
def lab(fleet, s3_endpoint, tmp_path, monkeypatch):
    lab = FleetBackup(fleet, s3_endpoint, tmp_path, monkeypatch)
    yield lab
    lab.cleanup()


def test_a_path_on_a_fleet_host_is_backed_up_there_and_drilled_here(fleet, lab):
    on_host(fleet, lab.host, f"mkdir -p {lab.where}/docs/sub && printf 'alpha\\n' > {lab.where}/docs/a.txt && "
                             f"head -c 5000 /dev/urandom > {lab.where}/docs/sub/b.bin")
    registry = lab.registry({"name": "fleet-docs", "class": "documentation", "kind": "path",
                             "paths": [f"{lab.where}/docs"]})
    state = backup(assets_file=registry, asset="fleet-docs", return_state=True)
    assert state.is_failed()
    assert f"host {lab.host.name}: restic backup" in state.message
    assert "restic is not installed on root@127.0.0.1 (the backup_client role installs it)" in state.message

    installed = lab.install_restic()
    assert lab.password not in installed.output
    assert on_host(fleet, lab.host, "stat -c %a:%U /etc/restic/password; cat /etc/restic/password") == \
        f"600:root\n{lab.password}\n"
    assert f"RESTIC_REPOSITORY={lab.url}\n" in on_host(fleet, lab.host, "cat /etc/restic/env")
    result = backup(assets_file=registry, asset="fleet-docs")
    (snap,) = lab.repo.snapshots(tags=["asset=fleet-docs"])
    assert snap.id.startswith(result["snapshots"]["fleet-docs"])
    assert snap.paths == (f"{lab.where}/docs",) and snap.hostname == on_host(fleet, lab.host, "hostname").strip()
    assert not Path(lab.where).exists()  # the data was read on the host, not here

    drill = restore_drill(assets_file=registry, asset="fleet-docs")
    assert drill["result"] == "passed" and drill["snapshot_id"] == snap.id
    assert drill["detail"].startswith("2 files, 5006 bytes restored vs the backup's record; the live source is on "
                                      f"host {snap.hostname}, not compared here")


def test_an_etcd_snapshot_and_the_server_token_are_backed_up_on_the_server(fleet, lab):
    token = f"K10{secrets.token_hex(16)}::server:{secrets.token_hex(8)}"
    # root's only, as RKE2 keeps it: read through sudo by the admin the inventory logs in as (ssh.become)
    on_host(fleet, lab.host, f"mkdir -p {lab.where}/server && chmod 700 {lab.where}/server && "
                             f"cat > {lab.where}/server/token && chmod 600 {lab.where}/server/token", token.encode())
    lab.as_sudo_admin()
    registry = lab.registry({"name": "etcd", "class": "infrastructure", "kind": "rke2-etcd",
                             "snapshot_dir": f"{lab.where}/snapshots", "token_path": f"{lab.where}/server/token"})
    lab.install_restic()
    state = backup(assets_file=registry, asset="etcd", return_state=True)
    assert state.is_failed()
    assert f"etcd: host {lab.host.name}: rke2 etcd-snapshot save failed (rke2 is not installed)" in state.message

    put_file(fleet, lab.host, "/usr/local/bin/rke2", FAKE_RKE2.encode())
    backup(assets_file=registry, asset="etcd")
    (snap,) = lab.repo.snapshots(tags=["asset=etcd"])
    (snapshot_file,) = [p for p in snap.paths if "/snapshots/" in p]
    assert sorted(snap.paths) == sorted([snapshot_file, f"{lab.where}/server/token"])
    assert snapshot_file.startswith(f"{lab.where}/snapshots/astrolab-etcd-") and \
        snapshot_file.endswith(f"Z-{snap.hostname}-" + snapshot_file.rsplit("-", 1)[1])
    assert on_host(fleet, lab.host, f"ls {lab.where}/snapshots").split() == [snapshot_file.rsplit("/", 1)[1]]

    drill = restore_drill(assets_file=registry, asset="etcd")
    assert drill["result"] == "passed"
    assert drill["detail"].startswith(f"2 files, {20000 + len(token)} bytes restored vs the backup's record")
    assert token not in str(drill) + state.message


def test_an_unreachable_host_fails_naming_it(lab, tmp_path, monkeypatch):
    inventory = yaml.safe_load(lab.inventory.read_text())
    for node in inventory["nodes"]:
        node["ssh"]["port"] = 1  # nothing listens there
    moved = tmp_path / "unreachable.yaml"
    moved.write_text(yaml.safe_dump(inventory))
    monkeypatch.setenv("ASTROLAB_COMPLIANCE_INVENTORY", str(moved))
    registry = lab.registry({"name": "fleet-docs", "class": "documentation", "kind": "path", "paths": ["/etc"]})
    state = backup(assets_file=registry, asset="fleet-docs", return_state=True)
    assert state.is_failed()
    assert f"host {lab.host.name}: restic backup" in state.message
    assert "ssh to root@127.0.0.1 failed (ssh: connect to host 127.0.0.1 port 1: Connection refused)" in state.message

"""tasks.backup.drivers: a path asset backed up with real restic under its tag, its catalog record; a VM without the
Proxmox API and a host without an inventory fail with one line before anything runs (the proxmox-vm driver itself:
test_proxmox.py)."""

import pytest

from tasks.backup.drivers import backup_asset, supported
from tasks.backup.registry import parse_assets


def registry(source, **extra):
    return parse_assets({"repositories": [{"name": "local", "url": "/srv/restic"}],
                         "assets": [{"name": "docs", "class": "documentation", "kind": "path", "paths": [str(source)],
                                     "repository": "local", **extra},
                                    {"name": "vm", "class": "development", "kind": "proxmox-vm", "vm": "dev1",
                                     "storage": "pbs"}]}, "test.yaml")


def test_a_path_asset_is_backed_up_under_its_tag_and_recorded(repo, source, digest):
    docs = registry(source).asset("docs")
    result = backup_asset(docs, repo)
    (snap,) = repo.snapshots(tags=["asset=docs"])
    assert snap.id.startswith(result.summary.snapshot_id) and snap.paths == (str(source),)
    regular = [v for v in digest(source).values() if v != "dir" and not v.startswith("link:")]
    assert result.summary.total_files_processed == len(regular)
    record = result.record("run-1")
    assert (record.asset, record.asset_class, record.kind, record.status) == ("docs", "documentation", "path", "ok")
    assert record.bytes_added == result.summary.bytes_added > 0 and record.duration_s >= 0


def test_a_vm_without_the_proxmox_api_and_hosts_without_an_inventory_are_one_line(repo, source):
    reg = registry(source)
    assert supported(reg.asset("docs")) is None and supported(reg.asset("vm")) is None
    with pytest.raises(ValueError, match="^asset vm: a proxmox-vm asset needs the Proxmox API"):
        backup_asset(reg.asset("vm"), repo)
    with pytest.raises(ValueError, match="^asset docs: a path asset needs its restic repository$"):
        backup_asset(reg.asset("docs"), None)
    remote = registry(source, host="nfs1").asset("docs")
    assert supported(remote) is None  # restic runs there over SSH, given the inventory
    with pytest.raises(ValueError, match="^asset docs: host nfs1 needs the inventory"):
        backup_asset(remote, repo)
    assert repo.snapshots() == []

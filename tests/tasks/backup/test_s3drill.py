"""tasks.backup.s3drill with real restic and the test S3 server: an s3 asset's snapshot restored into a scratch bucket
under a fresh prefix, compared with the backup's record and the live bucket, the prefix removed afterwards; a damaged
pack fails the drill with the reason, so does a backed-up copy that differs from its unchanged live object; the live
bucket is refused as the scratch bucket."""

import os
import random
import secrets
from datetime import UTC, datetime

import pytest

from tasks.backup.registry import parse_assets
from tasks.backup.s3drill import UnsafeScratch, drill_s3
from tasks.backup.s3mirror import mirror_prefix
from tasks.storage.s3 import ObjectStore, S3Config
from tests.tasks.backup.conftest import damage_largest_pack

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
# random bytes in the biggest object: restic compresses, and the damaged pack must be the one that holds data
OBJECTS = {"hats/redshifts/properties": b"x" * 10,
           "hats/redshifts/Norder=0/Dir=0/Npix=1.parquet": random.Random(1).randbytes(4000),
           "hats/reports/index.html": b"<html/>", "elsewhere/not-this": b"n"}


@pytest.fixture
def lake(s3_endpoint, repo, tmp_path):
    """A live bucket with OBJECTS, its asset (prefix hats/), mirrored and backed up: (asset, store, backup summary,
    scratch bucket name, not created yet)."""
    store = ObjectStore(S3Config(endpoint=s3_endpoint, access_key="astrolab-test", secret_key="astrolab-test-secret"))
    bucket = f"lake-{secrets.token_hex(6)}"
    store.ensure_bucket(bucket)
    for key, data in OBJECTS.items():
        store.put_bytes(bucket, key, data)
    asset = parse_assets({"repositories": [{"name": "r", "url": "/srv/restic"}],
                          "assets": [{"name": "lake", "class": "research-data", "kind": "s3", "repository": "r",
                                      "endpoint": s3_endpoint, "bucket": bucket, "prefix": "hats/"}]},
                         "assets.yaml").assets[0]
    mirror = tmp_path / "mirrors" / "lake"
    mirror_prefix(store, bucket, asset.prefix, mirror)
    summary = repo.backup_path([mirror], tags=[asset.tag])
    return asset, store, summary, f"drill-scratch-{secrets.token_hex(6)}"


def _keys(store, bucket, prefix=""):
    return sorted(o.key for o in store.list(bucket, prefix))


def test_an_s3_drill_puts_the_objects_back_in_a_scratch_bucket_and_removes_them(lake, repo, tmp_path):
    asset, store, summary, scratch = lake
    store.put_bytes(asset.bucket, "hats/reports/index.html", b"<html>rewritten</html>")  # changed since the backup
    kept = drill_s3(repo, asset, summary.snapshot_id, store, scratch, tmp_path / "scratch", expected_files=3,
                    expected_bytes=4017, now=NOW, keep=True)
    assert kept.passed and kept.mismatches == () and kept.kind == "s3", kept.detail
    assert kept.snapshot_id.startswith(summary.snapshot_id) and kept.within_rto and kept.restore_s > 0
    [prefix] = {k.split("/")[0] for k in _keys(store, scratch)}
    assert prefix.startswith(f"drill-lake-{summary.snapshot_id[:8]}-20260302T120000-")
    # the objects as they were at backup time, under the fresh prefix with their live keys
    restored = {k[len(prefix) + 1:]: store.get_bytes(scratch, k) for k in _keys(store, scratch)}
    assert restored == {k: v for k, v in OBJECTS.items() if k.startswith("hats/")}
    assert kept.detail.startswith(f"3 objects, 4017 bytes restored into s3://{scratch}/{prefix}/ vs the backup's "
                                  "record; 2 compared with the live bucket by sha256, 1 changed since the backup; "
                                  "scratch kept; timed: restic restore and upload; restore ")
    assert [p.name for p in (tmp_path / "scratch").iterdir()][0].startswith(prefix)
    kept_keys = _keys(store, scratch)
    assert len(kept_keys) == 3

    drill = drill_s3(repo, asset, summary.snapshot_id, store, scratch, tmp_path / "scratch", expected_files=3,
                     expected_bytes=4017)
    assert drill.passed, drill.detail
    assert "scratch removed" in drill.detail
    assert _keys(store, scratch) == kept_keys  # the kept drill's objects are left, and only those
    assert len(list((tmp_path / "scratch").iterdir())) == 1
    assert store.get_bytes(asset.bucket, "hats/reports/index.html") == b"<html>rewritten</html>"  # live untouched


def test_a_record_that_does_not_match_fails_the_s3_drill(lake, repo, tmp_path):
    asset, store, summary, scratch = lake
    drill = drill_s3(repo, asset, summary.snapshot_id, store, scratch, tmp_path / "scratch", expected_files=4,
                     expected_bytes=4017)
    assert drill.result == "failed" and drill.mismatches == ("3 objects restored, the backup recorded 4",)
    assert _keys(store, scratch) == []


def test_a_damaged_pack_fails_the_s3_drill_with_the_reason_and_leaves_nothing(lake, repo, tmp_path):
    asset, store, summary, scratch = lake
    damage_largest_pack(repo.url)
    drill = drill_s3(repo, asset, summary.snapshot_id, store, scratch, tmp_path / "scratch", expected_files=3,
                     expected_bytes=4017)
    assert not drill.passed and drill.mismatches and "\n" not in drill.detail
    assert drill.detail.startswith("restore failed: ") and "ciphertext verification failed" in drill.detail
    assert not store.client.bucket_exists(scratch) or _keys(store, scratch) == []
    assert list((tmp_path / "scratch").iterdir()) == []


def test_the_live_bucket_is_refused_as_the_scratch_bucket(lake, repo, tmp_path):
    asset, store, summary, _ = lake
    with pytest.raises(UnsafeScratch) as err:
        drill_s3(repo, asset, summary.snapshot_id, store, asset.bucket, tmp_path / "scratch")
    assert str(err.value) == (f"asset lake: the drill's scratch bucket {asset.bucket!r} is the asset's live bucket "
                              f"s3://{asset.bucket}/hats/: refusing to restore into it (set backup.scratch_bucket to "
                              "another bucket)")
    assert _keys(store, asset.bucket) == sorted(OBJECTS) and not (tmp_path / "scratch").exists()


def test_a_backup_that_differs_from_an_unchanged_live_object_fails_the_drill(lake, repo, tmp_path):
    """The mirror's copy of an object edited in place (same size, the object's mtime put back) before the backup:
    the live object is unchanged since, so its bytes are compared, and the difference fails the drill by key."""
    asset, store, _, scratch = lake
    mirror = tmp_path / "mirrors" / "lake"
    properties = mirror / "redshifts" / "properties"
    st = properties.stat()
    properties.write_bytes(b"y" * 10)
    os.utime(properties, ns=(st.st_atime_ns, st.st_mtime_ns))
    tampered = repo.backup_path([mirror], tags=[asset.tag])
    drill = drill_s3(repo, asset, tampered.snapshot_id, store, scratch, tmp_path / "scratch")
    assert drill.result == "failed" and drill.mismatches == (
        f"s3://{asset.bucket}/hats/redshifts/properties: the scratch copy's bytes differ from the live object "
        "(unchanged since the backup)",)
    assert "3 compared with the live bucket by sha256" in drill.detail and _keys(store, scratch) == []

"""Mirroring an S3 prefix into a directory, against the test S3 server: only changed objects are fetched, files of
removed objects go, directory markers are skipped, and a key that would leave the mirror is refused by name."""

import secrets

import pytest

from tasks.backup.s3mirror import MirrorSummary, UnsafeKey, mirror_prefix, relative_path
from tasks.storage.s3 import ObjectStore, S3Config


@pytest.fixture
def bucket(s3_endpoint):
    store = ObjectStore(S3Config(endpoint=s3_endpoint, access_key="astrolab-test", secret_key="astrolab-test-secret"))
    name = f"mirror-{secrets.token_hex(6)}"
    store.ensure_bucket(name)
    return store, name


def test_only_changed_objects_are_fetched_and_removed_ones_go(bucket, tmp_path):
    store, name = bucket
    for key, data in {"p/a.txt": b"aaa", "p/sub/b.bin": b"b" * 100, "p/dir/": b"", "q/other": b"q"}.items():
        store.put_bytes(name, key, data)
    dest = tmp_path / "mirror"
    assert mirror_prefix(store, name, "p/", dest) == MirrorSummary(objects=2, bytes=103, downloaded=2, removed=0)
    assert (dest / "a.txt").read_bytes() == b"aaa" and (dest / "sub" / "b.bin").read_bytes() == b"b" * 100
    assert not (dest / "dir").exists()  # a directory marker is not a file
    assert mirror_prefix(store, name, "p/", dest) == MirrorSummary(objects=2, bytes=103, downloaded=0, removed=0)

    store.put_bytes(name, "p/a.txt", b"AAAA")
    store.delete_prefix(name, "p/sub/")
    assert mirror_prefix(store, name, "p/", dest) == MirrorSummary(objects=1, bytes=4, downloaded=1, removed=1)
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*")) == ["a.txt"]
    assert (dest / "a.txt").read_bytes() == b"AAAA"


def test_a_local_edit_of_the_mirror_is_undone(bucket, tmp_path):
    store, name = bucket
    store.put_bytes(name, "k", b"from the bucket")
    dest = tmp_path / "mirror"
    mirror_prefix(store, name, "", dest)
    (dest / "k").write_bytes(b"edited here, longer")  # size and mtime now differ from the object's
    (dest / "stray").write_bytes(b"x")
    assert mirror_prefix(store, name, "", dest).downloaded == 1
    assert (dest / "k").read_bytes() == b"from the bucket" and not (dest / "stray").exists()


@pytest.mark.parametrize("key", ["p/../../etc/passwd", "p/a//x", "p/./x", "p/a/../b"])
def test_a_key_that_would_leave_the_mirror_is_refused_by_name(key):
    with pytest.raises(UnsafeKey) as err:
        relative_path(key, "p/", "s3://lake/p/")
    assert str(err.value) == \
        f"s3://lake/p/: object key {key!r} cannot be mirrored as a file (it has '..', '.' or empty parts)"


def test_keys_map_to_paths_below_the_prefix():
    assert str(relative_path("p/x/y.fits", "p/", "w")) == "x/y.fits"
    assert str(relative_path("x/y.fits", "", "w")) == "x/y.fits"
    assert str(relative_path("p//x", "p/", "w")) == "x"  # the prefix's own slashes are not part of the path
    assert relative_path("p/dir/", "p/", "w") is None

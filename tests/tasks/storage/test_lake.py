"""Every lake operation on both lakes (a local directory and an S3 bucket on the test S3 server)."""

import json
import os
import shutil
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from astrolab.resources import build_lake
from astrolab.settings import load_settings
from tasks.hats.writer import write_hats_catalog
from tasks.storage.lake import prune_versions
from tasks.storage.lake_s3 import POINTER, S3Lake
from tasks.storage.s3 import ObjectStore, ObjectStoreError, split_url


@pytest.fixture
def lake(lake_env, tmp_path):
    return build_lake(load_settings(env={"ASTROLAB_HOME": str(tmp_path / "home"), **lake_env}))


def _objects(lake, under: str) -> set[str]:
    """Keys (relative to the lake prefix) of the objects under ``under`` on an S3 lake."""
    base = f"{lake.prefix}/{under}"
    return {o.key[len(lake.prefix) + 1:] for o in lake.store.list(lake.bucket, base)}


def _build(lake, product: str, rows: range, previous: str | None = None) -> str:
    """Build a small HATS version of ``rows`` (on top of ``previous``) in the lake's build directory."""
    staged = lake.run_report_dir("t") / f"staged-{rows.start}.parquet"
    pq.write_table(pa.table({"id": list(rows), "ra": [10.0] * len(rows), "dec": [1.0] * len(rows),
                             "_healpix_29": [i << 20 for i in rows], "_seq": [1] * len(rows)}), staged)
    version, out = lake.new_version(product)
    write_hats_catalog(out, product, pa.schema([("id", pa.int64()), ("ra", pa.float64()), ("dec", pa.float64()),
                                           ("_healpix_29", pa.int64()), ("_seq", pa.int64())]), ["id"], "ra", "dec",
                  [staged], lake.version_dir(product, previous) if previous else None, max_rows=100, highest_order=3)
    return version


def test_staging_save_list_read_age_drop(lake):
    assert lake.staged_files("redshifts") == []
    out = lake.fresh_staging_dir("redshifts", "incoming-a")
    for i in range(3):
        pq.write_table(pa.table({"x": [i]}), out / f"part-{i:05d}.parquet")
    lake.save_staging("redshifts", "incoming-a")
    assert lake.staged_files("redshifts") == ["incoming-a"]
    if isinstance(lake, S3Lake):
        assert _objects(lake, "staging/redshifts/") == {f"staging/redshifts/incoming-a/part-{i:05d}.parquet"
                                                         for i in range(3)}
        shutil.rmtree(out)  # another machine publishes: it downloads the parts
    parts = lake.staged_parts("redshifts", "incoming-a")
    assert [pq.read_table(p)["x"][0].as_py() for p in parts] == [0, 1, 2]
    assert 0 <= lake.staging_age("redshifts", "incoming-a") < 60
    lake.drop_staging("redshifts", "incoming-a")
    assert lake.staged_files("redshifts") == []
    if isinstance(lake, S3Lake):
        assert _objects(lake, "staging/") == set()


def test_versions_publish_resolve_and_remove(lake):
    assert lake.published_version("redshifts") is None
    first = _build(lake, "redshifts", range(50))
    lake.save_version("redshifts", first)
    assert lake.published_version("redshifts") is None  # saved is not published
    lake.publish("redshifts", first)
    assert lake.published_version("redshifts") == first
    assert str(lake.catalog_path("redshifts")).endswith(first) or os.readlink(lake.catalog_path("redshifts"))

    second = _build(lake, "redshifts", range(50, 60), previous=first)  # untouched partitions are linked
    lake.save_version("redshifts", second)
    lake.publish("redshifts", second)
    assert lake.published_version("redshifts") == second
    local = lake.version_dir("redshifts", second)
    assert pq.ParquetDataset(local / "dataset").read().num_rows == 60
    assert lake.remove_versions("redshifts", {second}) == [first]
    assert lake.published_version("redshifts") == second
    if isinstance(lake, S3Lake):
        keys = _objects(lake, "hats/")
        assert not any(first in k for k in keys) and f"hats/redshifts/{POINTER}" in keys
        pointer = json.loads(lake.store.get_bytes(lake.bucket, f"{lake.prefix}/hats/redshifts/{POINTER}"))
        assert pointer["catalog"] == lake.catalog_path("redshifts")
        # a fresh machine (empty work directory) reads the published version from the bucket
        shutil.rmtree(lake.work.root)
        assert pq.ParquetDataset(lake.local_catalog("redshifts") / "dataset").read().num_rows == 60


def test_incomplete_version_is_never_published(lake):
    version, out = lake.new_version("fastspec")
    (out / "dataset").mkdir()
    (out / "dataset" / "_metadata").write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match="not a complete HATS catalog"):
        lake.save_version("fastspec", version)
    with pytest.raises(FileNotFoundError, match="not a complete HATS catalog"):
        lake.publish("fastspec", version)
    assert lake.published_version("fastspec") is None


def test_prune_drops_a_killed_runs_incomplete_build_and_keeps_young_versions(lake):
    first = _build(lake, "redshifts", range(50))
    lake.save_version("redshifts", first)
    lake.publish("redshifts", first)
    superseded = _build(lake, "redshifts", range(50, 60), previous=first)  # complete, young: readers may hold it
    lake.save_version("redshifts", superseded)
    half, out = lake.new_version("redshifts")  # a build killed half-way: partitions, no hats.properties
    part = "dataset/Norder=0/Dir=0/Npix=1.parquet"
    if isinstance(lake, S3Lake):  # killed during the upload, which sends hats.properties last
        lake.store.put_bytes(lake.bucket, f"{lake._version_key('redshifts', half)}/{part}", b"x")
    else:
        (out / part).parent.mkdir(parents=True)
        (out / part).write_bytes(b"x")
    assert lake.versions("redshifts") == sorted([first, superseded, half])
    assert not lake.is_complete("redshifts", half) and lake.is_complete("redshifts", superseded)

    assert prune_versions(lake, "redshifts", first) == [half]
    assert lake.versions("redshifts") == sorted([first, superseded])
    assert lake.published_version("redshifts") == first


def test_reports_are_saved_and_named(lake):
    docs = lake.data_docs_dir()
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "index.html").write_text("<html></html>")
    (docs / "static").mkdir()
    (docs / "static" / "site.css").write_text("body{}")
    run = lake.run_report_dir("run-1")
    (run / "nz.png").write_bytes(b"png")
    lake.save_dir(docs)
    lake.save_dir(run)
    assert lake.url_of(docs / "index.html").endswith("reports/data_docs/index.html")
    assert lake.url_of(run / "nz.png").endswith("reports/runs/run-1/nz.png")
    if isinstance(lake, S3Lake):
        assert lake.url_of(run / "nz.png").startswith(lake.url + "/")
        keys = {"reports/data_docs/index.html", "reports/data_docs/static/site.css", "reports/runs/run-1/nz.png"}
        assert _objects(lake, "reports/") == keys
        # served over HTTP, a browser shows the page and applies its stylesheet only with these types
        types = {key: lake.store.client.stat_object(lake.bucket, lake._key(key)).content_type for key in sorted(keys)}
        assert list(types.values()) == ["text/html", "text/css", "image/png"]


def test_s3_lake_creates_its_bucket_and_keeps_secrets_out(s3_lake_env, tmp_path):
    settings = load_settings(env={"ASTROLAB_HOME": str(tmp_path), **s3_lake_env})
    bucket, _ = split_url(s3_lake_env["ASTROLAB_LAKE_URL"])
    lake = build_lake(settings)
    assert lake.store.client.bucket_exists(bucket)
    build_lake(settings)  # an existing bucket is fine
    assert "astrolab-test-secret" not in repr(lake) + repr(lake.store) + repr(lake.store.config)
    assert "astrolab-test-secret" not in settings.model_dump_json()


def test_s3_unreachable_fails_after_bounded_retries_naming_the_endpoint(s3_lake_env, tmp_path):
    env = {**s3_lake_env, "ASTROLAB_LAKE_S3_ENDPOINT": "http://127.0.0.1:9", "ASTROLAB_LAKE_S3_RETRIES": "2"}
    t0 = time.perf_counter()
    with pytest.raises(ObjectStoreError, match=r"S3 http://127\.0\.0\.1:9 unreachable after 2 retries") as err:
        build_lake(load_settings(env={"ASTROLAB_HOME": str(tmp_path), **env}))
    assert time.perf_counter() - t0 < 10
    assert "astrolab-test-secret" not in str(err.value)


def test_publish_flips_the_pointer_only_after_every_object_is_there(s3_lake_env, tmp_path, monkeypatch):
    lake = build_lake(load_settings(env={"ASTROLAB_HOME": str(tmp_path), **s3_lake_env}))
    first = _build(lake, "redshifts", range(40))
    lake.save_version("redshifts", first)
    lake.publish("redshifts", first)
    second = _build(lake, "redshifts", range(40, 90), previous=first)
    expected = {p.relative_to(lake.version_dir("redshifts", second)).as_posix()
                for p in lake.version_dir("redshifts", second).rglob("*") if p.is_file()}
    seen = []
    real_upload, real_copy, real_put = ObjectStore.upload, ObjectStore.copy, ObjectStore.put_bytes

    def watch(real):
        def op(self, bucket, *args, **kwargs):
            key = args[1] if real is real_copy else args[0]
            # while the version uploads, readers resolve the pointer to the old version
            assert lake.published_version("redshifts") == first
            seen.append(key)
            return real(self, bucket, *args, **kwargs)
        return op

    def put(self, bucket, key, data, **kwargs):
        if key.endswith(POINTER):  # at the flip, every object of the version is on the server
            prefix = f"{lake.prefix}/hats/.versions/redshifts/{second}/"
            assert {o.key[len(prefix):] for o in self.list(bucket, prefix)} == expected
        return real_put(self, bucket, key, data, **kwargs)

    monkeypatch.setattr(ObjectStore, "upload", watch(real_upload))
    monkeypatch.setattr(ObjectStore, "copy", watch(real_copy))
    monkeypatch.setattr(ObjectStore, "put_bytes", put)
    lake.save_version("redshifts", second)
    assert seen[-1].endswith("/hats.properties")  # the completeness marker goes last
    assert len(seen) == len(expected)
    lake.publish("redshifts", second)
    assert lake.published_version("redshifts") == second

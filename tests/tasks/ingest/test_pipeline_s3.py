"""Ingest with the lake and the sources in S3 (the test S3 server): discovery, same rows as a local lake,
reconcile, quarantine names, and the S3 server going away in the middle of a file."""

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import lsdb
import pytest

from astrolab.resources import build_catalog, build_lake, build_source_store, build_validator
from astrolab.settings import load_settings
from tasks.ingest.pipeline import reconcile
from tasks.ingest.sources import discover
from tasks.storage.lake_s3 import S3Lake
from tasks.storage.s3 import ObjectStoreError, split_url
from tests.tasks.ingest.test_pipeline import count, run, zpix_rows


def _setup(tmp_path, env, name="home"):
    settings = load_settings(env={"ASTROLAB_HOME": str(tmp_path / name), "ASTROLAB_INGEST_CHUNK_ROWS": "700",
                                  "ASTROLAB_INGEST_HATS_MAX_ROWS": "1500", **env})
    lake = build_lake(settings)
    return settings, lake, build_catalog(settings), build_validator(settings, lake)


def _upload_sample(sample: Path, settings, under: str = "desi") -> tuple[str, object]:
    """Copy the sample tree into the lake's bucket; return its s3:// URL and the source store."""
    sources = build_source_store(settings)
    bucket, _ = split_url(settings.lake_url)
    sources.store.upload_dir(sample, bucket, under)
    return f"s3://{bucket}/{under}", sources


def _names(files):
    return sorted((Path(f.location).name, f.kind, f.survey, f.program, f.healpix) for f in files)


def test_discovery_under_an_s3_prefix_finds_what_a_local_walk_finds(sample, s3_lake_env, tmp_path):
    settings = load_settings(env={"ASTROLAB_HOME": str(tmp_path), **s3_lake_env})
    build_lake(settings)  # creates the bucket
    url, sources = _upload_sample(sample, settings)
    found = discover(url, sources=sources)
    assert _names(found) == _names(discover(sample))
    assert all(f.url.startswith(url + "/") and f.size > 0 and f.mtime > 0 for f in found)
    zpix = discover(url, {"zpix"}, sources)
    assert {f.kind for f in zpix} == {"zpix"} and len(zpix) == len(list(sample.rglob("zpix-*.fits")))
    one = next(f for f in zpix if f.program == "dark")
    assert discover(one.url, sources=sources) == [one]  # a single object
    with pytest.raises(FileNotFoundError, match="no \\*.fits objects"):
        discover(url + "-nothing", sources=sources)
    with pytest.raises(ValueError, match="needs the S3 settings"):
        discover(url)


def test_s3_sources_into_an_s3_lake_give_the_local_rows(sample, s3_lake_env, tmp_path):
    settings, lake, catalog, validator = _setup(tmp_path, s3_lake_env)
    url, sources = _upload_sample(sample / "spectro", settings, "desi/spectro")
    local = _setup(tmp_path, {}, "local-home")
    with catalog, local[2]:
        results, published = run(url, settings, lake, catalog, validator, sources=sources)
        assert {r.status for r in results.values()} == {"ingested"}, [r.error for r in results.values()]
        assert all(path.startswith(url + "/") for path in results)
        local_results, _ = run(sample / "spectro", *local)
        assert len(local_results) == len(results)
        for table in ("redshifts", "fastspec", "spectra", "zcat_primary"):
            assert count(catalog, f"SELECT count(*) FROM {table}") == count(local[2], f"SELECT count(*) FROM {table}")
        assert count(catalog, "SELECT count(*) FROM redshifts") == sum(zpix_rows(sample).values())
        assert count(catalog, f"SELECT count(*) FROM ingest_lineage WHERE path LIKE '{url}/%'") == len(results)
        assert count(catalog, f"SELECT count(*) FROM spectra WHERE file LIKE '{url}/%'") == \
            count(catalog, "SELECT count(*) FROM spectra")
        for p in published:
            assert p.path == lake.catalog_path(p.product) and p.path.startswith(lake.url + "/hats/.versions/")
            df = lsdb.open_catalog(lake.local_catalog(p.product)).compute()
            assert len(df) == p.nrows == len(lsdb.open_catalog(local[1].catalog_path(p.product)).compute())
        assert lake.staged_files("redshifts") == []
        for product in ("redshifts", "spectra"):  # the DuckDB views read the published S3 objects
            in_lake = count(catalog, f"SELECT count(*) FROM lake_{product}")
            assert in_lake == count(local[2], f"SELECT count(*) FROM lake_{product}")
            assert in_lake == count(catalog, f"SELECT count(*) FROM {product}")
        again, republished = run(url, settings, lake, catalog, validator, sources=sources)
        assert {r.status for r in again.values()} == {"skipped"} and republished == []


def test_crash_between_catalog_commit_and_pointer_put_is_reconciled_on_s3(sample, s3_lake_env, tmp_path,
                                                                           monkeypatch):
    settings, lake, catalog, validator = _setup(tmp_path, s3_lake_env)
    source = next(sample.rglob("zpix-main-dark.fits"))
    real_publish = S3Lake.publish
    monkeypatch.setattr(S3Lake, "publish", lambda self, product, version: (_ for _ in ()).throw(
        KeyboardInterrupt("killed")))
    with catalog, pytest.raises(KeyboardInterrupt):
        run(source, settings, lake, catalog, validator)
    monkeypatch.setattr(S3Lake, "publish", real_publish)
    with build_catalog(settings) as catalog:
        fresh = build_lake(load_settings(env={**s3_lake_env, "ASTROLAB_HOME": str(tmp_path / "other-machine")}))
        assert fresh.published_version("redshifts") is None  # lake as before the run
        wanted = catalog.published_version("redshifts")
        assert reconcile(fresh, catalog) == [f"redshifts: lake now points at {wanted}"]
        df = lsdb.open_catalog(fresh.local_catalog("redshifts")).compute()
        assert len(df) == count(catalog, "SELECT count(*) FROM redshifts") == zpix_rows(sample)[source.name]
        # the margin catalog travelled with the version (uploaded before its hats.properties)
        margin = fresh.local_catalog("redshifts") / "redshifts_10arcs"
        opened = lsdb.open_catalog(fresh.local_catalog("redshifts"), margin_cache=margin)
        assert opened.margin is not None and opened.margin.hc_structure.catalog_info.margin_threshold == 10.0
        assert opened.margin.hc_structure.catalog_info.total_rows == len(opened.margin.compute())


def test_a_bad_s3_file_is_quarantined_under_its_url(sample, s3_lake_env, tmp_path):
    settings, lake, catalog, validator = _setup(tmp_path, s3_lake_env)
    src = tmp_path / "src"
    (src / "zcatalog").mkdir(parents=True)
    shutil.copy(next(sample.rglob("zpix-main-dark.fits")), src / "zcatalog")
    (src / "zcatalog" / "zpix-main-bright.fits").write_text("TARGETID,Z\n1,0.5\n")
    url, sources = _upload_sample(src, settings, "bad")
    with catalog:
        results, _ = run(url, settings, lake, catalog, validator, sources=sources)
        bad = results[f"{url}/zcatalog/zpix-main-bright.fits"]
        assert bad.status == "quarantined" and bad.error.startswith(f"{url}/zcatalog/zpix-main-bright.fits: ")
        assert "not a readable FITS file" in bad.error and str(tmp_path) not in bad.error
        assert results[f"{url}/zcatalog/zpix-main-dark.fits"].status == "ingested"


@pytest.fixture
def private_s3():
    """A moto S3 server of this test's own (the test stops it); yields (endpoint, process)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # it starts in half a second here, in many on a loaded machine: wait until it listens (or has died), and fail
    # here rather than hand the test a server that is not there yet
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, f"moto_server on port {port} exited with {proc.returncode}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                pytest.fail(f"moto_server on port {port} did not listen within 120 s")
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}", proc
    proc.kill()
    proc.wait()


def test_s3_server_gone_in_the_middle_of_a_file_fails_clearly_and_leaves_the_catalog_unchanged(
        sample, s3_lake_env, private_s3, tmp_path, monkeypatch):
    endpoint, server = private_s3
    settings, lake, catalog, validator = _setup(tmp_path, {**s3_lake_env, "ASTROLAB_LAKE_S3_ENDPOINT": endpoint})
    source = next(sample.rglob("zpix-main-dark.fits"))
    real_save = S3Lake.save_staging

    stopped: list[float] = []

    def stop_server_then_save(self, product, key):
        server.kill()
        server.wait()
        stopped.append(time.perf_counter())
        real_save(self, product, key)

    monkeypatch.setattr(S3Lake, "save_staging", stop_server_then_save)
    with catalog, pytest.raises(ObjectStoreError, match=f"S3 {endpoint} unreachable after 1 retries") as err:
        run(source, settings, lake, catalog, validator)
    # bounded retries: the give-up is timed from the server's end, not from the start of the ingest (reading and
    # validating the file before it take seconds, many more on a loaded machine)
    assert stopped and time.perf_counter() - stopped[0] < 30
    assert "astrolab-test-secret" not in str(err.value)
    with build_catalog(settings) as catalog:
        assert count(catalog, "SELECT count(*) FROM ingest_lineage") == 0
        assert count(catalog, "SELECT count(*) FROM redshifts") == 0
        assert catalog.published_version("redshifts") is None

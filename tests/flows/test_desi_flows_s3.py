"""desi-ingest as a Prefect flow with the lake and the sources on the test S3 server, on DuckDB and PostgreSQL."""

import re

import lsdb
import pytest
from prefect.artifacts import Artifact

from astrolab.resources import build_catalog, build_lake, build_source_store
from astrolab.settings import SettingsError, load_settings
from flows.ingest import desi_ingest
from tasks.storage.s3 import ObjectStoreError, split_url
from tests.flows.test_artifacts import embedded_png

PRODUCTS = ("redshifts", "fastspec", "spectra")


def _use(monkeypatch, env: dict[str, str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def _counts(settings) -> dict[str, int]:
    with build_catalog(settings, read_only=True) as catalog:
        return {t: catalog.query(f"SELECT count(*) AS n FROM {t}")["n"][0].as_py()
                for t in (*PRODUCTS, "zcat_primary", "ingest_lineage")}


@pytest.fixture(scope="module")
def local_baseline(sample, tmp_path_factory):
    """Catalog and HATS row counts of the flow on the embedded defaults (local lake, DuckDB)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ASTROLAB_HOME", str(tmp_path_factory.mktemp("local-home")))
        summary = desi_ingest(str(sample / "spectro"))
        settings = load_settings()
        lake = build_lake(settings)
        hats = {p: len(lsdb.open_catalog(lake.catalog_path(p)).compute()) for p in summary["published"]}
        return summary, _counts(settings), hats


def test_ingest_flow_on_an_s3_lake_gives_the_local_rows(sample, local_baseline, catalog_url, s3_lake_env, tmp_path,
                                                       monkeypatch):
    _use(monkeypatch, {"ASTROLAB_HOME": str(tmp_path / "home"), "ASTROLAB_CATALOG_URL": catalog_url, **s3_lake_env})
    settings = load_settings()
    lake = build_lake(settings)
    bucket, _ = split_url(settings.lake_url)
    build_source_store(settings).store.upload_dir(sample / "spectro", bucket, "desi/spectro")
    source = f"s3://{bucket}/desi/spectro"

    summary = desi_ingest(source)
    local_summary, local_counts, local_hats = local_baseline
    assert summary["quarantined"] == {} and summary["ingested"] == local_summary["ingested"]
    assert summary["rows"] == local_summary["rows"]
    assert _counts(settings) == local_counts
    assert {p: len(lsdb.open_catalog(lake.local_catalog(p)).compute()) for p in summary["published"]} == local_hats
    assert set(summary["published"]) == set(local_summary["published"]) == {"redshifts", "spectra"}
    assert {p: lake.published_version(p) for p in summary["published"]} == summary["published"]

    docs = Artifact.get("desi-data-docs").data  # where MinIO serves the lake's reports over HTTP
    endpoint = settings.lake.s3_endpoint.rstrip("/")
    assert f"({endpoint}/{bucket}/lake/reports/data_docs/index.html)" in docs
    assert lake.store.exists(bucket, "lake/reports/data_docs/index.html")
    nz = Artifact.get("desi-nz").data
    # the link's text and its target: one file
    [key] = set(re.findall(rf"{endpoint}/{bucket}/(lake/reports/runs/[^/)\]]+/nz.png)", nz))
    assert embedded_png(nz) == lake.store.get_bytes(bucket, key)
    assert lake.url + "/hats/.versions/redshifts/" in Artifact.get("desi-ingest-summary").data

    again = desi_ingest(source)
    assert again["ingested"] == 0 and again["skipped"] == summary["ingested"] and again["published"] == {}


def test_ingest_flow_fails_clearly_when_s3_is_unreachable(sample, s3_lake_env, tmp_path, monkeypatch):
    endpoint = "http://127.0.0.1:9"  # nothing listens on the discard port
    _use(monkeypatch, {"ASTROLAB_HOME": str(tmp_path / "home"), **s3_lake_env, "ASTROLAB_LAKE_S3_ENDPOINT": endpoint})
    with pytest.raises(ObjectStoreError, match=f"S3 {endpoint} unreachable after 1 retries") as err:
        desi_ingest(str(sample / "spectro" / "redux" / "iron" / "zcatalog"))
    assert "astrolab-test-secret" not in str(err.value)
    counts = _counts(load_settings())
    assert counts["ingest_lineage"] == 0 and counts["redshifts"] == counts["fastspec"] == counts["spectra"] == 0


def test_s3_credentials_from_a_prefect_secret_block(s3_lake_env, tmp_path):
    from prefect.blocks.system import Secret

    Secret(value={"access_key": "block-access", "secret_key": "block-s3cr3t"}).save("astrolab-test-s3", overwrite=True)
    env = {k: v for k, v in s3_lake_env.items() if "_KEY" not in k}
    settings = load_settings(env={"ASTROLAB_HOME": str(tmp_path), **env,
                                  "ASTROLAB_LAKE_S3_CREDENTIALS_SECRET": "astrolab-test-s3"})
    lake = build_lake(settings)
    assert (lake.store.config.access_key, lake.store.config.secret_key) == ("block-access", "block-s3cr3t")
    assert "block-s3cr3t" not in repr(lake) + repr(lake.store.config) + settings.model_dump_json()

    missing = load_settings(env={**env, "ASTROLAB_LAKE_S3_CREDENTIALS_SECRET": "nope"})
    with pytest.raises(SettingsError, match="no Prefect Secret block named 'nope'"):
        build_lake(missing)
    Secret(value="just-a-string").save("astrolab-test-s3-bad", overwrite=True)
    bad = load_settings(env={**env, "ASTROLAB_LAKE_S3_CREDENTIALS_SECRET": "astrolab-test-s3-bad"})
    with pytest.raises(SettingsError, match="must hold a JSON object with access_key and secret_key"):
        build_lake(bad)

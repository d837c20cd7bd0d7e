"""desi-sample then desi-ingest as Prefect flows on the embedded defaults, with their artifacts."""

import json
from pathlib import Path

import lsdb
import pytest
from prefect.artifacts import Artifact

from flows.ingest import desi_ingest
from flows.sample import desi_sample
from tasks.ingest.docs_assets import VENDOR_DIR, links_cdn
from tests.flows.test_artifacts import embedded_png


def ingest_task_runs(flow_run_id) -> list[tuple[str, str]]:
    """(name, state type) of a flow run's ingest-file task runs."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, TaskRunFilter, TaskRunFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                                     task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="ingest-")))
    return [(r.name, r.state_type.value) for r in runs if r.name.startswith("ingest-")]


def again_files(root: Path) -> list[Path]:
    """The sample's DESI files (what discover finds, less what no product recognises)."""
    from tasks.ingest.sources import discover_all

    return [f.path for f in discover_all(str(root), None, None).files]


def test_sample_then_ingest_flows(tmp_path, monkeypatch):
    monkeypatch.setenv("ASTROLAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ASTROLAB_INGEST_HATS_MAX_ROWS", "2000")
    sample = desi_sample(str(tmp_path / "desi"), n_rows=5000, seed=3, n_voids=5)
    assert sample["files"] >= 8
    # one broken file beside the sample: quarantined, the rest goes on
    broken = tmp_path / "desi" / "spectro" / "redux" / "iron" / "zcatalog" / "v1" / "zpix-special-other.fits"
    broken.write_bytes(b"SIMPLE  =                    T" + b" " * 100)
    stranger = broken.with_name("zpix-main-unknown.fits")  # a FITS name no product recognises: listed, not read
    stranger.write_bytes(b"")

    summary = desi_ingest(str(tmp_path / "desi"))
    assert summary["quarantined"] == {str(broken): summary["quarantined"][str(broken)]}
    assert "zpix-special-other.fits: not a readable FITS file" in summary["quarantined"][str(broken)]
    assert summary["ingested"] == summary["files"] - 1
    assert set(summary["published"]) == {"redshifts", "fastspec", "spectra"}
    truth = tmp_path / "desi" / "truth" / "planted_voids.fits"  # the sample's truth table is no DESI product either
    assert summary["not_recognised"] == [str(stranger), str(truth)]

    lake = tmp_path / "home" / "lake"
    assert len(lsdb.open_catalog(lake / "hats" / "redshifts").compute()) == 5000  # zall repeats zpix rows: once each
    assert (lake / "reports" / "data_docs" / "index.html").exists()

    md = Artifact.get("desi-ingest-summary")
    assert "1 quarantined" in md.data and "zpix-special-other.fits" in md.data
    assert "- not recognised: **2** FITS files" in md.data and f"- `{stranger}`" in md.data
    table = Artifact.get("desi-ingest-files")
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert {r["status"] for r in rows} == {"ingested", "quarantined"}
    assert "(http://localhost:8765/data_docs/index.html)" in Artifact.get("desi-data-docs").data
    for key, name in (("desi-nz", "nz.png"), ("desi-sky-density", "sky_density.png")):
        [plot] = (lake / "reports" / "runs").glob(f"*/{name}")  # one run so far
        assert embedded_png(Artifact.get(key).data) == plot.read_bytes()

    again_state = desi_ingest(str(tmp_path / "desi"), return_state=True)
    again = again_state.result()
    assert again["ingested"] == 0 and again["skipped"] == summary["ingested"] and again["published"] == {}
    runs = ingest_task_runs(again_state.state_details.flow_run_id)  # one task run per file, named for it
    files = again_files(tmp_path / "desi")
    assert len(runs) == len(files) == summary["files"] and broken in files
    assert sorted(name for name, _ in runs) == sorted(f"ingest-{p.name}" for p in files)
    assert {state for _, state in runs} == {"COMPLETED"}  # a quarantined file is a completed task run saying why


def test_catalog_password_from_a_prefect_secret_block(pg_database, monkeypatch):
    from prefect.blocks.system import Secret

    from astrolab.resources import build_catalog
    from astrolab.settings import SettingsError, load_settings

    Secret(value="s3cr3t-pw").save("astrolab-test-pg-password", overwrite=True)
    settings = load_settings(env={"ASTROLAB_CATALOG_URL": pg_database,
                                  "ASTROLAB_CATALOG_PASSWORD_SECRET": "astrolab-test-pg-password"})
    with build_catalog(settings) as catalog:
        assert catalog.con.info.password == "s3cr3t-pw"
        assert "s3cr3t-pw" not in catalog.name
    missing = load_settings(env={"ASTROLAB_CATALOG_URL": pg_database, "ASTROLAB_CATALOG_PASSWORD_SECRET": "nope"})
    with pytest.raises(SettingsError, match="no Prefect Secret block named 'nope'"):
        build_catalog(missing)


def test_ingest_on_the_dask_cluster_with_postgresql(sample, pg_database, tmp_path, monkeypatch):
    """With a PostgreSQL catalog the files are ingested by the Dask workers, each file once, Data Docs joined."""
    import psycopg

    monkeypatch.setenv("ASTROLAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ASTROLAB_CATALOG_URL", pg_database)
    monkeypatch.setenv("ASTROLAB_DASK_N_WORKERS", "2")
    state = desi_ingest(str(sample), kinds=["zpix", "fastspec"], return_state=True)
    summary = state.result()
    assert summary["quarantined"] == {} and summary["ingested"] == summary["files"] >= 4
    runs = ingest_task_runs(state.state_details.flow_run_id)
    assert len(runs) == summary["files"] and {state for _, state in runs} == {"COMPLETED"}
    with psycopg.connect(pg_database) as con:
        rows = con.execute("SELECT count(*) FROM redshifts").fetchone()[0]
        lineage = con.execute("SELECT count(*), count(DISTINCT file_hash) FROM ingest_lineage").fetchone()
        lineage_paths = [r[0] for r in con.execute("SELECT path FROM ingest_lineage")]
    assert rows == 4000 and lineage == (summary["files"], summary["files"])
    docs = tmp_path / "home" / "lake" / "reports" / "data_docs"
    index = (docs / "index.html").read_text()
    sites = sorted(p.parent.relative_to(docs).as_posix() for p in (docs / "workers").glob("*/index.html"))
    assert sites and index.count("<li>") == len(sites) and all(f'href="{site}/index.html"' in index for site in sites)
    validated = "".join((docs / site / "index.html").read_text() for site in sites)
    for lineage_path in lineage_paths:  # every file's validation is in one worker's site
        assert Path(lineage_path).name in validated
    cdn = [p.relative_to(docs).as_posix() for p in docs.rglob("*.html") if links_cdn(p)]
    assert not cdn, f"pages still linking CDNs (run scripts/data_docs_assets.py?): {cdn[:3]}"
    assert all((docs / site / VENDOR_DIR / "jquery-3.7.1" / "dist" / "jquery.min.js").is_file() for site in sites)
    assert desi_ingest(str(sample), kinds=["zpix", "fastspec"])["skipped"] == summary["files"]

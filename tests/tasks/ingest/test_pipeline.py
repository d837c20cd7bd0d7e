"""Ingest without Prefect: a generated sample end to end, reruns, bad inputs, interrupted runs."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import lsdb
import numpy as np
import psycopg
import pytest
from astropy.io import fits
from astropy.table import Table, vstack

from astrolab.resources import build_catalog, build_lake, build_validator
from astrolab.settings import REPO_ROOT, load_settings
from tasks.catalog.base import FileLoad
from tasks.ingest.pipeline import ingest_file, publish, reconcile
from tasks.ingest.products import PRODUCTS
from tasks.ingest.sources import discover

ROOT = REPO_ROOT


@pytest.fixture
def env(request, tmp_path):
    """Settings, lake, catalog and validator; the catalog is DuckDB unless parametrized with 'postgresql'."""
    values = {"ASTROLAB_HOME": str(tmp_path / "home"), "ASTROLAB_INGEST_CHUNK_ROWS": "700",
              "ASTROLAB_INGEST_HATS_MAX_ROWS": "1500"}
    if getattr(request, "param", "duckdb") == "postgresql":
        values["ASTROLAB_CATALOG_URL"] = request.getfixturevalue("pg_database")
    settings = load_settings(env=values)
    lake = build_lake(settings)
    catalog = build_catalog(settings)
    yield settings, lake, catalog, build_validator(settings, lake)
    catalog.close()


def run(source, settings, lake, catalog, validator, run_id="run", sources=None):
    """What the flow does, without Prefect."""
    reconcile(lake, catalog)
    results = [ingest_file(f, lake, catalog, validator, settings.ingest.chunk_rows, run_id, sources=sources)
               for f in discover(source, sources=sources)]
    published = [p for p in (publish(prod, lake, catalog, settings.ingest.hats_max_rows,
                                     settings.ingest.hats_highest_order) for prod in PRODUCTS.values()) if p]
    return {r.path: r for r in results}, published


def count(catalog, sql):
    return catalog.query(sql).column(0)[0].as_py()


def zpix_rows(sample):
    return {p.name: fits.getheader(p, "ZCATALOG")["NAXIS2"] for p in sample.rglob("zpix-*.fits")}


@pytest.mark.parametrize("env", ["duckdb", "postgresql"], indirect=True)
def test_sample_end_to_end_and_idempotent_rerun(sample, env):
    settings, lake, catalog, validator = env
    results, published = run(sample, *env)
    assert {r.status for r in results.values()} == {"ingested"}, [r.error for r in results.values()]
    rows = zpix_rows(sample)
    total = sum(rows.values())
    # zall repeats every zpix row: the catalog holds each (targetid, survey, program) once
    assert count(catalog, "SELECT count(*) FROM redshifts") == total
    distinct = "SELECT count(*) FROM (SELECT DISTINCT targetid, survey, program FROM redshifts) AS k"
    assert count(catalog, distinct) == total
    zall = Table.read(next(sample.rglob("zall-pix-*.fits")), hdu="ZCATALOG")
    primary = zall[zall["ZCAT_PRIMARY"]]
    got = catalog.query("SELECT targetid, survey, program FROM zcat_primary").to_pylist()
    assert {(r["targetid"], r["survey"], r["program"]) for r in got} == {
        (int(t), str(s), str(p)) for t, s, p in zip(primary["TARGETID"], primary["SURVEY"], primary["PROGRAM"])}
    # the lake: a HATS catalog lsdb opens, with the same rows
    df = lsdb.open_catalog(lake.catalog_path("redshifts")).compute()
    assert len(df) == total and not df.duplicated(["TARGETID", "SURVEY", "PROGRAM"]).any()
    assert {p.product for p in published} == {"redshifts", "fastspec", "spectra"}
    assert (lake.data_docs_dir() / "index.html").exists() or validator.build_data_docs()

    version = lake.published_version("redshifts")
    again, published_again = run(sample, *env)
    assert {r.status for r in again.values()} == {"skipped"} and published_again == []
    assert count(catalog, "SELECT count(*) FROM redshifts") == total
    assert lake.published_version("redshifts") == version


def _rewrite(src: Path, dst: Path, change) -> Path:
    with fits.open(src) as hdul:
        table = Table(hdul["ZCATALOG"].data)
        header = hdul["ZCATALOG"].header
        changed = change(table)
        table = table if changed is None else changed
        hdu = fits.table_to_hdu(table)
        hdu.name = "ZCATALOG"
        for key in ("SURVEY", "PROGRAM"):
            hdu.header[key] = header[key]
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(dst, overwrite=True)
    return dst


def _set(column, index, value):
    def change(t):
        t[column][index] = value
    return change


BAD_INPUTS = {
    "truncated": (lambda src, dst: dst.write_bytes(src.read_bytes()[: src.stat().st_size // 2]),
                  r"file is truncated"),
    "missing-column": (lambda src, dst: _rewrite(src, dst, lambda t: t.remove_column("Z")),
                       r"HDU ZCATALOG, column Z: required column is missing"),
    "wrong-dtype": (lambda src, dst: _rewrite(src, dst,
                                              lambda t: t.replace_column("TARGET_RA", t["TARGET_RA"].astype("S12"))),
                    r"column TARGET_RA: expected a float column \(D/E\), found TFORM 12A"),
    "nan-coordinate": (lambda src, dst: _rewrite(src, dst, _set("TARGET_RA", 3, np.nan)), r"TARGET_RA"),
    "out-of-range-dec": (lambda src, dst: _rewrite(src, dst, _set("TARGET_DEC", 5, 95.0)), r"TARGET_DEC.*95"),
    "duplicate-rows": (lambda src, dst: _rewrite(src, dst, lambda t: vstack([t, t[:3]])),
                       r"duplicate"),
    "empty-table": (lambda src, dst: _rewrite(src, dst, lambda t: t[:0]), r"no rows"),
    "empty-file": (lambda src, dst: dst.write_bytes(b""), r"not a readable FITS file"),
    "not-fits": (lambda src, dst: dst.write_text("TARGETID,Z\n1,0.5\n"), r"not a readable FITS file"),
    "wrong-healpix": (lambda src, dst: _rewrite(src, dst, _set("HEALPIX", 7, 1)), r"column HEALPIX: 1 rows disagree"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_quarantined_and_others_go_on(sample, env, tmp_path, case):
    settings, lake, catalog, validator = env
    good = next(sample.rglob("zpix-main-dark.fits"))
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(good, source / good.name)
    bad = source / "zpix-main-bright.fits"
    make, message = BAD_INPUTS[case]
    make(next(sample.rglob("zpix-main-bright.fits")), bad)

    results, _ = run(source, *env)
    assert results[str(source / good.name)].status == "ingested"
    result = results[str(bad)]
    assert result.status == "quarantined"
    assert str(bad) in result.error
    assert __import__("re").search(message, result.error), result.error
    assert count(catalog, "SELECT count(*) FROM redshifts WHERE program = 'bright'") == 0
    assert count(catalog, f"SELECT count(*) FROM ingest_lineage WHERE status = 'quarantined' AND path = '{bad}'") == 1
    assert lake.staged_files("redshifts") == []  # the bad file's parts are gone, the good one's published
    lake_df = lsdb.open_catalog(lake.catalog_path("redshifts")).compute()
    assert set(lake_df["PROGRAM"]) == {"dark"}

    # fixed file: the rerun ingests it, the good one is skipped
    shutil.copy(next(sample.rglob("zpix-main-bright.fits")), bad)
    results, _ = run(source, *env)
    assert results[str(bad)].status == "ingested" and results[str(source / good.name)].status == "skipped"
    assert count(catalog, "SELECT count(*) FROM redshifts WHERE program = 'bright'") == zpix_rows(sample)[bad.name]


def test_same_content_under_another_name_is_skipped(sample, env, tmp_path):
    settings, lake, catalog, validator = env
    good = next(sample.rglob("zpix-main-dark.fits"))
    run(good, *env)
    copy = tmp_path / "elsewhere" / good.name
    copy.parent.mkdir()
    shutil.copy(good, copy)
    results, published = run(copy, *env)
    assert results[str(copy)].status == "skipped" and "same content as" in results[str(copy)].notes
    assert published == [] and lake.staged_files("redshifts") == []
    assert count(catalog, "SELECT count(*) FROM redshifts") == zpix_rows(sample)[good.name]


@pytest.mark.parametrize("env", ["duckdb", "postgresql"], indirect=True)
def test_crash_between_catalog_commit_and_lake_swap_is_reconciled(sample, env, monkeypatch):
    settings, lake, catalog, validator = env
    source = next(sample.rglob("zpix-main-dark.fits"))
    real_publish = type(lake).publish
    monkeypatch.setattr(type(lake), "publish", lambda self, product, version: (_ for _ in ()).throw(
        KeyboardInterrupt("killed")))
    with pytest.raises(KeyboardInterrupt):
        run(source, *env)
    monkeypatch.setattr(type(lake), "publish", real_publish)
    assert lake.published_version("redshifts") is None  # lake as before the run
    assert reconcile(lake, catalog) == [f"redshifts: lake now points at {catalog.published_version('redshifts')}"]
    df = lsdb.open_catalog(lake.catalog_path("redshifts")).compute()
    assert len(df) == count(catalog, "SELECT count(*) FROM redshifts") == zpix_rows(sample)[source.name]


KILL_SCRIPT = """
import sys
from astrolab.settings import load_settings
from astrolab.resources import build_catalog, build_lake, build_validator
from tasks.catalog.base import FileLoad
from tasks.ingest.sources import discover
from tasks.ingest.pipeline import ingest_file, publish, reconcile
from tasks.ingest.products import PRODUCTS
s = load_settings()
lake = build_lake(s); v = build_validator(s, lake)
with build_catalog(s) as c:
    reconcile(lake, c, orphan_age_s=float(sys.argv[2]) if len(sys.argv) > 2 else 0)
    print("ready", flush=True)
    for f in discover(sys.argv[1]):
        ingest_file(f, lake, c, v, s.ingest.chunk_rows, "kill")
    for p in PRODUCTS.values():
        publish(p, lake, c, s.ingest.hats_max_rows, s.ingest.hats_highest_order)
print("done", flush=True)
"""


@pytest.mark.slow
def test_sigkill_at_any_point_then_rerun_has_no_duplicates(sample, tmp_path):
    env = dict(os.environ, ASTROLAB_HOME=str(tmp_path / "home"), ASTROLAB_INGEST_CHUNK_ROWS="500",
               ASTROLAB_INGEST_HATS_MAX_ROWS="1000", PYTHONPATH=str(ROOT))
    source = sample / "spectro"
    outcomes = []
    for delay in (0.3, 0.9, 1.6, 2.4):
        proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(source)], env=env, stdout=subprocess.PIPE,
                                text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        outcomes.append(proc.returncode)
        settings = load_settings(env=env)
        with build_catalog(settings) as catalog:
            # at every kill point: no key twice in the catalog, and the lake serves exactly the published version
            lake = build_lake(settings)
            reconcile(lake, catalog, orphan_age_s=0)
            assert count(catalog, "SELECT count(*) - count(DISTINCT (targetid, survey, program)) FROM redshifts") == 0
            if lake.published_version("redshifts"):
                df = lsdb.open_catalog(lake.catalog_path("redshifts")).compute()
                assert not df.duplicated(["TARGETID", "SURVEY", "PROGRAM"]).any()
                assert len(df) == count(catalog, "SELECT nrows FROM hats_versions WHERE product = 'redshifts'")
    done = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(source)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    settings = load_settings(env=env)
    with build_catalog(settings) as catalog:
        total = sum(zpix_rows(sample).values())
        assert count(catalog, "SELECT count(*) FROM redshifts") == total
        assert count(catalog, "SELECT count(*) FROM ingest_lineage WHERE status <> 'published'") == 0
        df = lsdb.open_catalog(build_lake(settings).catalog_path("redshifts")).compute()
        assert len(df) == total and not df.duplicated(["TARGETID", "SURVEY", "PROGRAM"]).any()
    assert any(code == -signal.SIGKILL for code in outcomes)
    assert not list((tmp_path / "home" / "lake" / "staging").rglob("*.parquet"))  # no staged leftovers


@pytest.mark.parametrize("env", ["postgresql"], indirect=True)
def test_postgres_restart_in_the_middle_of_a_load_then_retry(sample, env, monkeypatch):
    """A real server restart while a file's load transaction is open: nothing half-loaded, the retry completes."""
    settings, lake, catalog, validator = env
    source = next(sample.rglob("zpix-main-dark.fits"))
    restarts = []

    def append_then_restart(self, chunk):
        real_append(self, chunk)
        if not restarts:
            restarts.append(subprocess.run([str(ROOT / "scripts" / "services.sh"), "restart"], check=True))

    real_append = FileLoad.append
    monkeypatch.setattr(FileLoad, "append", append_then_restart)
    with pytest.raises(psycopg.OperationalError):
        run(source, *env)
    monkeypatch.setattr(FileLoad, "append", real_append)
    assert restarts

    with build_catalog(settings) as again:  # what the task's retry does: a new connection, the same files
        assert again.query("SELECT count(*) AS n FROM redshifts")["n"][0].as_py() == 0  # rolled back, not half
        results, _ = run(source, settings, lake, again, validator)
        assert results[str(source)].status == "ingested"
        total = zpix_rows(sample)[source.name]
        assert count(again, "SELECT count(*) FROM redshifts") == total
        assert count(again, "SELECT count(DISTINCT targetid) FROM redshifts") == total
        assert lake.staged_files("redshifts") == []


@pytest.mark.slow
def test_two_runs_at_once_on_overlapping_files_ingest_each_file_once(sample, pg_database, tmp_path):
    """Two processes ingest the same tree into one PostgreSQL catalog and one lake at the same time."""
    env = dict(os.environ, ASTROLAB_HOME=str(tmp_path / "home"), ASTROLAB_CATALOG_URL=pg_database,
               ASTROLAB_INGEST_CHUNK_ROWS="600", PYTHONPATH=str(ROOT))
    source = sample / "spectro" / "redux" / "iron" / "zcatalog"
    runs = [subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(source), "3600"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for proc in runs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        assert out.split() == ["ready", "done"]
    total = sum(zpix_rows(sample).values())
    settings = load_settings(env=env)
    with build_catalog(settings) as catalog:
        files = len(list(source.rglob("*.fits")))
        assert count(catalog, "SELECT count(*) FROM ingest_lineage WHERE status = 'published'") == files
        assert count(catalog, "SELECT count(*) FROM redshifts") == total
        assert count(catalog, "SELECT count(*) FROM (SELECT DISTINCT targetid, survey, program FROM redshifts) AS k") \
            == total
        df = lsdb.open_catalog(build_lake(settings).catalog_path("redshifts")).compute()
        assert len(df) == total and not df.duplicated(["TARGETID", "SURVEY", "PROGRAM"]).any()
        assert build_lake(settings).staged_files("redshifts") == []

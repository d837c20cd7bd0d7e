"""The ingest killed (SIGKILL) at each named crash point, on a local lake with DuckDB and on an S3 lake with
PostgreSQL; a normal rerun then leaves the catalog and the lake as an uninterrupted run would."""

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import lsdb
import pytest

from astrolab.resources import build_catalog, build_lake, build_validator
from astrolab.settings import REPO_ROOT, load_settings
from tasks.crashpoints import CRASH_POINTS, VARIABLE
from tasks.ingest import report
from tasks.ingest.pipeline import reconcile
from tasks.storage.lake import LocalLake
from tests.tasks.ingest.test_pipeline import count, run, zpix_rows

FILES = ("zpix-sv3-dark.fits", "zpix-main-bright.fits")  # 2 files of the sample, one product (redshifts)
KEYS = "SELECT targetid, survey, program FROM redshifts"

CRASH_SCRIPT = """
import sys
from astrolab.settings import load_settings
from astrolab.resources import build_catalog, build_lake, build_validator
from tasks.ingest import report
from tasks.ingest.sources import discover
from tasks.ingest.pipeline import ingest_file, publish, reconcile
from tasks.ingest.products import PRODUCTS
s = load_settings()
lake = build_lake(s); v = build_validator(s, lake)
with build_catalog(s) as c:
    reconcile(lake, c)
    for f in discover(sys.argv[1]):
        ingest_file(f, lake, c, v, s.ingest.chunk_rows, "crash")
    for p in PRODUCTS.values():
        publish(p, lake, c, s.ingest.hats_max_rows, s.ingest.hats_highest_order)
    run_dir = lake.run_report_dir("crash")
    report.plots(c, run_dir)
    lake.save_dir(run_dir)
print("done", flush=True)
"""


def test_every_crash_point_is_placed_once():
    sources = "".join((REPO_ROOT / p).read_text() for p in
                      ("tasks/ingest/pipeline.py", "tasks/hats/writer.py", "tasks/ingest/report.py"))
    placed = re.findall(r'crash_point\("([a-z-]+)"\)', sources)
    assert sorted(placed) == sorted(CRASH_POINTS)


@pytest.fixture(params=["local-duckdb", "s3-postgresql"])
def backends(request):
    """Settings variables of the lake and catalog: a local lake with DuckDB, or an S3 lake with PostgreSQL."""
    if request.param == "local-duckdb":
        return {}
    return {**request.getfixturevalue("s3_lake_env"), "ASTROLAB_CATALOG_URL": request.getfixturevalue("pg_database")}


def _state_at_crash(point, lake, catalog, source_rows):
    """What the killed run left: the window named by the crash point."""
    in_catalog = count(catalog, "SELECT count(*) FROM redshifts")
    lineage = catalog.query("SELECT status FROM ingest_lineage").column(0).to_pylist()
    wanted, seen = catalog.published_version("redshifts"), lake.published_version("redshifts")
    if point == "after-stage":  # the first file staged, nothing committed
        assert (in_catalog, lineage, wanted, seen) == (0, [], None, None)
        assert len(lake.staged_files("redshifts")) == 1
    elif point == "after-commit":  # the first file committed, not published
        assert lineage == ["loaded"] and in_catalog in source_rows and (wanted, seen) == (None, None)
    elif point == "during-hats-build":  # both files loaded; a build without hats.properties, recorded nowhere
        assert lineage == ["loaded", "loaded"] and (wanted, seen) == (None, None)
        work = lake if isinstance(lake, LocalLake) else lake.work
        builds = list(work.versions_dir("redshifts").iterdir())
        assert len(builds) == 1 and list(builds[0].rglob("Npix=*.parquet"))
        assert not (builds[0] / "hats.properties").exists()
    elif point == "after-catalog-publish":  # the catalog says published; the lake's pointer was never swapped
        assert lineage == ["published", "published"] and wanted is not None and seen is None
    elif point == "after-pointer-swap":  # published on both sides; the staged parts not dropped yet
        assert lineage == ["published", "published"] and wanted == seen is not None
        assert len(lake.staged_files("redshifts")) == 2
    elif point == "during-report":  # published; the n(z) plot written, the sky map not
        assert wanted == seen is not None
        run_dir = lake.run_report_dir("crash")
        assert (run_dir / "nz.png").exists() and not (run_dir / "sky_density.png").exists()
    return wanted


@pytest.mark.slow
@pytest.mark.parametrize("point", CRASH_POINTS)
def test_killed_at_crash_point_then_rerun_recovers(sample, backends, tmp_path, point):
    source = tmp_path / "src"
    source.mkdir()
    for name in FILES:
        shutil.copy2(next(sample.rglob(name)), source / name)
    values = {"ASTROLAB_HOME": str(tmp_path / "home"), "ASTROLAB_INGEST_CHUNK_ROWS": "500",
              "ASTROLAB_INGEST_HATS_MAX_ROWS": "400", **backends}
    env = {k: v for k, v in os.environ.items() if k != VARIABLE} | values | {
        "PYTHONPATH": str(REPO_ROOT), VARIABLE: point}
    killed = subprocess.run([sys.executable, "-c", CRASH_SCRIPT, str(source)], env=env, capture_output=True,
                            text=True, timeout=240)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]  # the point was reached, and killed it
    assert f"astrolab: crash point {point} ({VARIABLE})" in killed.stderr and "done" not in killed.stdout

    settings = load_settings(env=values)
    lake = build_lake(settings)
    rows = {name: n for name, n in zpix_rows(sample).items() if name in FILES}
    total = sum(rows.values())
    with build_catalog(settings) as catalog:
        wanted = _state_at_crash(point, lake, catalog, set(rows.values()))

        # the rerun: reconcile (the killed run is gone, so its staging is an orphan at once), then ingest and publish
        fixed = reconcile(lake, catalog, orphan_age_s=0)
        if point == "after-catalog-publish":  # reconcile, not the rerun's publish, finishes the interrupted one
            assert fixed == [f"redshifts: lake now points at {wanted}"]
            assert lake.published_version("redshifts") == wanted
        else:
            assert fixed == []
        results, published = run(source, settings, lake, catalog, build_validator(settings, lake))
        statuses = {Path(p).name: r.status for p, r in results.items()}
        loaded_again = {"after-stage": ["ingested", "ingested"], "after-commit": ["ingested", "skipped"]}
        assert sorted(statuses.values()) == loaded_again.get(point, ["skipped", "skipped"]), statuses
        # published by the rerun only when the killed run's publish never reached the catalog
        assert [p.product for p in published] == (["redshifts"] if point in (
            "after-stage", "after-commit", "during-hats-build") else [])

        # the reference state
        assert count(catalog, "SELECT count(*) FROM redshifts") == total
        assert count(catalog, f"SELECT count(*) FROM (SELECT DISTINCT targetid, survey, program FROM ({KEYS}) k) d") \
            == total
        assert catalog.query("SELECT status FROM ingest_lineage").column(0).to_pylist() == ["published"] * 2
        version = catalog.published_version("redshifts")
        assert version is not None and lake.published_version("redshifts") == version
        assert count(catalog, "SELECT nrows FROM hats_versions WHERE product = 'redshifts'") == total
        opened = lake.catalog_path("redshifts") if isinstance(lake, LocalLake) else lake.local_catalog("redshifts")
        df = lsdb.open_catalog(opened).compute()
        assert len(df) == total
        in_lake = set(zip(df["TARGETID"].tolist(), df["SURVEY"].tolist(), df["PROGRAM"].tolist(), strict=True))
        assert in_lake == {(r["targetid"], r["survey"], r["program"]) for r in catalog.query(KEYS).to_pylist()}
        assert lake.staged_files("redshifts") == []
        assert lake.versions("redshifts") == [version]  # a build the killed run left half-done is gone
        if not isinstance(lake, LocalLake):
            assert set(lake.work.versions("redshifts")) <= {version}
        if point == "during-report":  # the rerun's report is whole
            assert [p.name for p in report.plots(catalog, lake.run_report_dir("crash"))] == ["nz.png",
                                                                                            "sky_density.png"]

"""Both catalog backends (DuckDB, PostgreSQL): loads with lineage, the ZCAT_PRIMARY view, cone search, schema."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord

from astrolab.resources import open_catalog
from tasks.catalog.base import CatalogError
from tasks.catalog.schema import SCHEMA_VERSION, LineageRecord
from tasks.ingest.products import REDSHIFTS


def redshift_rows(n, seed, survey="main", program="dark", ids=None):
    rng = np.random.default_rng(seed)
    cols = {}
    for field in REDSHIFTS.schema:
        if pa.types.is_fixed_size_list(field.type):
            continue
        if pa.types.is_string(field.type):
            cols[field.name] = pa.array(["x"] * n)
        elif pa.types.is_boolean(field.type):
            cols[field.name] = pa.array(np.ones(n, bool))
        elif pa.types.is_integer(field.type):
            cols[field.name] = pa.array(rng.integers(0, 100, n), type=field.type)
        else:
            cols[field.name] = pa.array(rng.random(n), type=field.type)
    cols["TARGETID"] = pa.array(np.arange(n) if ids is None else ids, type=pa.int64())
    cols["SURVEY"], cols["PROGRAM"] = pa.array([survey] * n), pa.array([program] * n)
    cols["ZWARN"] = pa.array(rng.choice([0, 0, 4], n), type=pa.int64())
    cols["TSNR2_LRG"] = pa.array(rng.random(n) * 100, type=pa.float32())
    cols["TARGET_RA"] = pa.array(rng.uniform(0, 360, n))
    cols["TARGET_DEC"] = pa.array(np.degrees(np.arcsin(rng.uniform(-1, 1, n))))
    cols["SPECTYPE"] = pa.array(rng.choice(["GALAXY", "QSO", "STAR"], n))
    return pa.table(cols)


def load(catalog, tmp_path, table, name, status="loaded"):
    record = LineageRecord(file_hash=name, path=f"{name}.fits", kind="zpix", product="redshifts", survey=None,
                           program=None, n_rows=table.num_rows, status=status)
    catalog.load_file(REDSHIFTS, table.to_batches(max_chunksize=7000), record)


@pytest.fixture
def catalog(catalog_url):
    with open_catalog(catalog_url) as cat:
        yield cat


def test_load_replaces_rows_of_the_same_key(catalog, tmp_path):
    load(catalog, tmp_path, redshift_rows(100, 1), "a")
    load(catalog, tmp_path, redshift_rows(50, 2, ids=np.arange(50, 100)), "b")  # same keys 50-99, new values
    assert catalog.query("SELECT count(*) AS n FROM redshifts")["n"][0].as_py() == 100
    assert catalog.lineage("b")["status"] == "loaded" and catalog.lineage("b")["n_rows"] == 50
    assert list(catalog.pending("redshifts")) == ["a", "b"]


def test_chunks_with_empty_batches_load(catalog, tmp_path):
    rows = redshift_rows(30, 3)
    chunk = pa.concat_tables([rows.slice(0, 0), rows.slice(0, 20), rows.slice(20, 0), rows.slice(20)])
    record = LineageRecord(file_hash="e", path="e.fits", kind="zpix", product="redshifts", survey=None,
                           program=None, n_rows=30, status="loaded")
    catalog.load_file(REDSHIFTS, [rows.slice(0, 0), chunk], record)
    assert catalog.query("SELECT count(*) AS n FROM redshifts")["n"][0].as_py() == 30


def test_failed_load_leaves_nothing(catalog, tmp_path):
    record = LineageRecord(file_hash="x", path="p", kind="zpix", product="redshifts", survey=None, program=None,
                           n_rows=1, status="loaded")

    def chunks():
        yield redshift_rows(100, 1)
        raise KeyboardInterrupt("killed in the middle of a load")

    with pytest.raises(KeyboardInterrupt):
        catalog.load_file(REDSHIFTS, chunks(), record)
    assert catalog.lineage("x") is None
    assert catalog.query("SELECT count(*) AS n FROM redshifts")["n"][0].as_py() == 0


def test_a_load_holds_no_chunk_it_appended(catalog):
    # DuckDB kept a chunk registered as a view until the transaction ended: a file's load held all its rows
    load = catalog.begin_load(REDSHIFTS)
    try:
        before = pa.total_allocated_bytes()
        for i in range(5):
            load.append(redshift_rows(20_000, i, ids=np.arange(i * 20_000, (i + 1) * 20_000)))
        held = pa.total_allocated_bytes() - before
    finally:
        load.rollback()
    assert held < redshift_rows(20_000, 0).nbytes // 2


def test_primary_view_follows_desi_rule(catalog, tmp_path):
    # the same 300 targets observed in three programs
    tables = [redshift_rows(300, s, program=p) for s, p in enumerate(["bright", "dark", "backup"])]
    for i, t in enumerate(tables):
        load(catalog, tmp_path, t, f"f{i}")
    df = pd.concat([t.select(["TARGETID", "SURVEY", "PROGRAM", "ZWARN", "TSNR2_LRG"]).to_pandas() for t in tables])
    # oracle: prefer ZWARN == 0, then the highest TSNR2_LRG
    df["good"] = df.ZWARN == 0
    expected = df.sort_values(["good", "TSNR2_LRG"], ascending=False).groupby("TARGETID").head(1)
    got = catalog.query("SELECT targetid, program, zcat_nspec FROM zcat_primary ORDER BY targetid").to_pandas()
    assert len(got) == 300 and (got.zcat_nspec == 3).all()
    assert dict(zip(got.targetid, got.program)) == dict(zip(expected.TARGETID, expected.PROGRAM))


def test_cone_matches_astropy(catalog, tmp_path):
    table = redshift_rows(20_000, 7)
    load(catalog, tmp_path, table, "a")
    ra, dec = table["TARGET_RA"].to_numpy(), table["TARGET_DEC"].to_numpy()
    for ra0, dec0, radius in [(10.0, 5.0, 3.0), (359.5, 0.0, 2.0), (0.0, 89.0, 4.0), (180.0, -60.0, 0.5)]:
        sep = SkyCoord(ra, dec, unit="deg").separation(SkyCoord(ra0, dec0, unit="deg")).to_value(u.deg)
        expected = set(table["TARGETID"].to_numpy()[sep <= radius])
        got = catalog.cone(ra0, dec0, radius, table="redshifts")
        assert set(got["targetid"].to_pylist()) == expected
        assert np.all(np.diff(got["sep_deg"].to_numpy()) >= 0)
    with pytest.raises(ValueError, match="radius"):
        catalog.cone(0, 0, -1)


def test_newer_schema_is_refused(catalog_url):
    with open_catalog(catalog_url) as cat:
        cat._execute("UPDATE schema_version SET version = 99")
    with pytest.raises(CatalogError, match="schema version 99 is newer"):
        open_catalog(catalog_url)


def test_older_schema_is_upgraded(catalog_url):
    with open_catalog(catalog_url) as cat:  # make it look like a version-1 catalog with a lineage row
        cat._execute("ALTER TABLE ingest_lineage DROP COLUMN file_size")
        cat._execute("ALTER TABLE ingest_lineage DROP COLUMN file_mtime")
        for table in ("compliance_scans", "compliance_results", "compliance_drift", "compliance_safeguards",
                      "host_packages"):
            cat._execute(f"DROP TABLE {table}")
        cat._execute("UPDATE schema_version SET version = 1")
        cat._execute("INSERT INTO ingest_lineage (file_hash, path, kind, product, status) "
                     "VALUES ('old', 'zpix-main-dark.fits', 'zpix', 'redshifts', 'published')")
    with open_catalog(catalog_url) as cat:
        assert cat._rows("SELECT max(version) FROM schema_version")[0][0] == SCHEMA_VERSION
        assert cat._rows("SELECT count(*) FROM compliance_scans")[0][0] == 0  # version 3 made the tables
        assert cat._rows("SELECT count(*) FROM backup_runs")[0][0] == 0  # version 4 too
        row = cat.lineage("old")
        assert row["path"] == "zpix-main-dark.fits" and row["file_size"] is None and "file_mtime" in row
        assert cat.ensure_schema() == []  # nothing left to apply


def test_lineage_upsert_and_publish_record(catalog):
    record = LineageRecord(file_hash="h1", path="a.fits", kind="zpix", product="redshifts", survey="main",
                           program="dark", n_rows=None, status="quarantined", error="bad", file_size=10)
    catalog.quarantine(record)
    catalog.quarantine(LineageRecord(**{**record.__dict__, "error": "still bad"}))
    assert catalog.lineage("h1")["error"] == "still bad"
    assert catalog.lineage_for_path("a.fits")["file_size"] == 10
    catalog.mark_published("redshifts", "v1", 0, ["h1"])
    assert catalog.published_version("redshifts") == "v1" and catalog.lineage("h1")["status"] == "published"
    catalog.mark_published("redshifts", "v2", 5, [])
    assert catalog.published_version("redshifts") == "v2"


def test_postgres_cone_uses_q3c_and_fallback_agrees(pg_database, tmp_path):
    with open_catalog(pg_database) as catalog:
        assert catalog.has_q3c  # scripts/services.sh installs postgresql-15-q3c
        load(catalog, tmp_path, redshift_rows(5000, 3), "a")
        plan = "\n".join(r[0] for r in catalog._rows(
            "EXPLAIN SELECT * FROM redshifts WHERE q3c_radial_query(target_ra, target_dec, 10, 5, 3)"))
        assert "redshifts_q3c" in plan
        with_q3c = catalog.cone(10.0, 5.0, 3.0)
        catalog.has_q3c = False
        without = catalog.cone(10.0, 5.0, 3.0)
        assert with_q3c["targetid"].to_pylist() == without["targetid"].to_pylist() and with_q3c.num_rows > 0


def test_postgres_connection_errors_do_not_show_the_password():
    with pytest.raises(CatalogError) as err:
        open_catalog("postgresql://astrolab:hunter2@127.0.0.1:1/nowhere")
    assert "hunter2" not in str(err.value) and "postgresql://astrolab:***@127.0.0.1:1/nowhere" in str(err.value)


def test_upsert_replaces_by_key_in_one_transaction(catalog):
    def packages(*rows):
        return pa.table({"scan_id": [r[0] for r in rows], "host": ["h1"] * len(rows),
                         "package": [r[1] for r in rows], "version": [r[2] for r in rows]})

    key = ("scan_id", "package")
    assert catalog.upsert({"host_packages": (key, packages(("s1", "bash", "5.1"), ("s1", "sudo", "1.9")))}) == \
        {"host_packages": 2}
    catalog.upsert({"host_packages": (key, packages(("s1", "bash", "5.2"), ("s2", "bash", "5.2")))})
    got = catalog.query("SELECT scan_id, package, version FROM host_packages ORDER BY 1, 2").to_pylist()
    assert [tuple(r.values()) for r in got] == [("s1", "bash", "5.2"), ("s1", "sudo", "1.9"), ("s2", "bash", "5.2")]
    with pytest.raises(Exception, match="no_such_table|does not exist"):
        catalog.upsert({"host_packages": (key, packages(("s3", "vim", "9"))),
                        "no_such_table": (key, packages(("s3", "x", "1")))})
    assert catalog.query("SELECT count(*) AS n FROM host_packages WHERE scan_id = 's3'").to_pylist() == [{"n": 0}]

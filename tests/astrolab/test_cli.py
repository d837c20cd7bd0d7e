"""The astrolab command line: query, cone, settings, ingest exit codes, one-line errors (exit code 2), secrets."""

import csv
import io
import logging
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import duckdb
import pyarrow as pa
import pytest
import yaml

from astrolab import cli
from astrolab.cli import main
from astrolab.resources import build_catalog, build_lake
from astrolab.settings import load_settings
from tasks.catalog.duckdb_store import DuckDBCatalog
from tasks.catalog.schema import LineageRecord
from tasks.ingest.products import REDSHIFTS
from tasks.redact import install_log_redaction, redact


def make_catalog(home):
    rows = {f.name: pa.nulls(3, f.type) for f in REDSHIFTS.schema if not pa.types.is_fixed_size_list(f.type)}
    rows.update(TARGETID=pa.array([1, 2, 3], pa.int64()), SURVEY=pa.array(["main"] * 3),
                PROGRAM=pa.array(["dark"] * 3), TARGET_RA=pa.array([10.0, 10.5, 200.0]),
                TARGET_DEC=pa.array([0.0, 0.2, 0.0]), ZWARN=pa.array([0, 0, 0], pa.int64()),
                Z=pa.array([0.1, 0.2, 0.3]), SPECTYPE=pa.array(["GALAXY", "QSO", "STAR"]))
    with DuckDBCatalog(home / "catalog.duckdb") as catalog:
        catalog.load_file(REDSHIFTS, [pa.table(rows)], LineageRecord(
            file_hash="h", path="zpix-main-dark.fits", kind="zpix", product="redshifts", survey="main",
            program="dark", n_rows=3, status="loaded"))


def test_query_and_cone(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ASTROLAB_HOME", str(tmp_path))
    make_catalog(tmp_path)
    assert main(["query", "SELECT spectype, z FROM zcat_primary ORDER BY z"]) == 0
    out = capsys.readouterr().out
    assert out.index("GALAXY") < out.index("QSO") < out.index("STAR")
    assert main(["cone", "10", "0", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()  # CSV, since stdout is not a terminal here
    assert lines[0].split(",")[:3] == ['"targetid"', '"survey"', '"program"']
    assert [line.split(",")[0] for line in lines[1:]] == ["1", "2"]  # nearest first, STAR at RA 200 not found
    assert main(["query", "SELECT count(*) AS n FROM ingest_lineage"]) == 0
    assert capsys.readouterr().out.splitlines() == ['"n"', "1"]


def test_settings_and_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ASTROLAB_HOME", str(tmp_path))
    assert main(["settings"]) == 0
    assert str(tmp_path) in capsys.readouterr().out
    assert main(["query", "SELECT 1"]) == 2  # no catalog yet
    assert "no catalog yet; run an ingest first" in capsys.readouterr().err
    monkeypatch.setenv("ASTROLAB_INGEST_CHUNKROWS", "5")
    assert main(["settings"]) == 2
    assert "did you mean 'ASTROLAB_INGEST_CHUNK_ROWS'" in capsys.readouterr().err


def test_lake_resolves_the_published_versions_on_s3(sample, s3_lake_env, tmp_path, monkeypatch, capsys):
    from astrolab.resources import build_catalog, build_lake, build_validator
    from astrolab.settings import load_settings
    from tasks.ingest.pipeline import ingest_file, publish
    from tasks.ingest.sources import discover

    for name, value in {"ASTROLAB_HOME": str(tmp_path), **s3_lake_env}.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    lake = build_lake(settings)
    with build_catalog(settings) as catalog:
        for src in discover(next(sample.rglob("zpix-main-dark.fits"))):
            ingest_file(src, lake, catalog, build_validator(settings, lake), 1000, "cli")
        published = publish(REDSHIFTS, lake, catalog, 1000, 5)
        version = published.version
    assert main(["lake"]) == 0
    rows = {line.split(",")[0]: line for line in capsys.readouterr().out.splitlines()}
    assert f"{lake.url}/hats/.versions/redshifts/{version}" in rows['"redshifts"']
    assert "(none published)" in rows['"fastspec"']
    assert main(["query", "SELECT count(*) AS n FROM lake_redshifts"]) == 0  # a view over the S3 objects
    assert capsys.readouterr().out.splitlines() == ['"n"', str(published.nrows)]
    assert main(["lake", "redshifts", "--download"]) == 0
    assert str(tmp_path / "lake-work" / "hats" / ".versions" / "redshifts" / version) in capsys.readouterr().out

    monkeypatch.setenv("ASTROLAB_LAKE_S3_ENDPOINT", "http://127.0.0.1:9")
    assert main(["lake"]) == 2
    assert "S3 http://127.0.0.1:9 unreachable" in capsys.readouterr().err


# --- exit codes, one-line errors, secrets (issue #13 items 3 and 5) ------------------------------------------------

PG_PASSWORD, S3_SECRET, WAZUH_PASSWORD = "pg-Hunter2-pw", "s3-S3cr3t-key", "wazuh-Pa55-word"
SECRETS = (PG_PASSWORD, S3_SECRET, WAZUH_PASSWORD)


def one_error_line(err: str) -> str:
    """The stderr of a failed command: exactly one line, no traceback; returns it."""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def secret_env(tmp_path, monkeypatch):
    monkeypatch.setenv("ASTROLAB_HOME", str(tmp_path))
    monkeypatch.setenv("ASTROLAB_CATALOG_URL", f"postgresql://astrolab:{PG_PASSWORD}@127.0.0.1:9/astrolab")
    monkeypatch.setenv("ASTROLAB_LAKE_S3_SECRET_KEY", S3_SECRET)
    monkeypatch.setenv("ASTROLAB_COMPLIANCE_WAZUH_PASSWORD", WAZUH_PASSWORD)
    return tmp_path


def test_settings_output_shows_values_in_effect_and_no_secret(secret_env, capsys):
    assert main(["settings"]) == 0
    out = capsys.readouterr().out
    assert not any(secret in out for secret in SECRETS)
    assert '"url": "postgresql://astrolab:***@127.0.0.1:9/astrolab"' in out
    assert f'"url": "{secret_env / "lake"}"' in out and f'"work_dir": "{secret_env / "lake-work"}"' in out
    assert out.count('"**********"') == 2  # lake.s3_secret_key, compliance.wazuh_password
    assert not any(secret in repr(load_settings()) + str(load_settings()) for secret in SECRETS)


def test_unreachable_postgres_error_has_no_password(secret_env, capsys):
    assert main(["query", "SELECT 1"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith("error: postgresql://astrolab:***@127.0.0.1:9/astrolab: cannot connect (")
    assert not any(secret in line for secret in SECRETS)
    assert main(["--debug", "query", "SELECT 1"]) == 2  # the traceback, and still no password in it
    err = capsys.readouterr().err
    assert "Traceback" in err and not any(secret in err for secret in SECRETS)


@pytest.mark.parametrize(("text", "clean"), [
    ("postgresql://user:pw@db.lab:5432/astro", "postgresql://user:***@db.lab:5432/astro"),
    ("s3://AKIA:abc/def@bucket/key", "s3://AKIA:***@bucket/key"),
    ("see http://bob:p@ss@proxy:8080/x and more", "see http://bob:***@proxy:8080/x and more"),
    ("host=db user=u password=secret1 dbname=a", "host=db user=u password=*** dbname=a"),
    ("https://h/x?token=abc&y=1", "https://h/x?token=***&y=1"),
    ("s3://a:b@bucket/x@y.fits", "s3://a:***@bucket/x@y.fits"),
    ("postgresql://user@db/astro and /plain/path:with@colon", "postgresql://user@db/astro and /plain/path:with@colon"),
])
def test_redact(text, clean):
    assert redact(text) == clean


def test_log_records_and_lineage_are_redacted(tmp_path, caplog):
    install_log_redaction(["extra-secret-value"])
    logging.getLogger("astrolab.test").warning("cannot reach %s (%s)", "postgresql://u:topsecret@h/db",
                                               "extra-secret-value")
    assert caplog.messages[-1] == "cannot reach postgresql://u:***@h/db (***)"
    with DuckDBCatalog(tmp_path / "c.duckdb") as catalog:
        catalog.quarantine(LineageRecord(file_hash="q", path="s3://k:topsecret@bucket/zpix.fits", kind="zpix",
                                         product="redshifts", survey=None, program=None, n_rows=None,
                                         status="quarantined", error="postgresql://u:topsecret@h/db refused"))
        assert catalog.lineage("q")["path"] == "s3://k:***@bucket/zpix.fits"
        assert catalog.lineage("q")["error"] == "postgresql://u:***@h/db refused"


def _summary(**kw):
    return {"files": 2, "ingested": 2, "skipped": 0, "rows": 10, "quarantined": {}, **kw}


@pytest.mark.parametrize(("summary", "code", "last_line"), [
    (_summary(), 0, "ingested 2 files (10 rows), skipped 0, quarantined 0"),
    (_summary(ingested=1, quarantined={"/d/zpix-bad.fits": "TARGETID: nulls"}), 3,
     "error: 1 file(s) quarantined (reasons above and in the ingest_lineage table); fix or replace them and ingest "
     "again"),
    (_summary(files=0, ingested=0, rows=0), 4, None),
])
def test_ingest_exit_codes(tmp_path, monkeypatch, capsys, summary, code, last_line):
    import flows.ingest

    seen = {}

    def fake_ingest(source, kinds=None, config=None):
        from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

        seen.update(env=os.environ.get(cli.EPHEMERAL_TIMEOUT_VAR),
                    setting=PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value())
        return summary

    monkeypatch.setenv("ASTROLAB_HOME", str(tmp_path))
    monkeypatch.delenv(cli.EPHEMERAL_TIMEOUT_VAR, raising=False)
    monkeypatch.setenv("ASTROLAB_PREFECT_EPHEMERAL_TIMEOUT", "75")
    monkeypatch.setattr(flows.ingest, "desi_ingest", fake_ingest)
    assert main(["ingest", str(tmp_path)]) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.splitlines()[-1] == (last_line or f"error: no DESI files found under {tmp_path}; check the path and "
                                    "--kinds (file names as in DR1: zpix-*, zall-*, fastspec-*, coadd-*, redrock-*)")
    assert seen == {"env": "75", "setting": 75}  # the ephemeral server's start-up timeout, from the settings
    assert cli.EPHEMERAL_TIMEOUT_VAR not in os.environ
    monkeypatch.setenv(cli.EPHEMERAL_TIMEOUT_VAR, "33")  # the user's own value wins
    main(["ingest", str(tmp_path)])
    assert seen["env"] == "33"


def test_ingest_missing_path_and_prefect_unreachable(tmp_path, monkeypatch, capsys):
    import flows.ingest

    monkeypatch.setenv("ASTROLAB_HOME", str(tmp_path))
    assert main(["ingest", str(tmp_path / "nope")]) == 2
    assert one_error_line(capsys.readouterr().err) == (
        f"error: {tmp_path / 'nope'}: no such file or directory; give a DESI FITS file, a directory of them or "
        "s3://bucket/prefix")

    def no_server(*args, **kwargs):
        raise RuntimeError("Timed out while attempting to connect to ephemeral Prefect API server.")

    monkeypatch.setattr(flows.ingest, "desi_ingest", no_server)
    monkeypatch.delenv(cli.EPHEMERAL_TIMEOUT_VAR, raising=False)
    assert main(["ingest", str(tmp_path)]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "error: the ephemeral Prefect server did not start within 90 s; raise ASTROLAB_PREFECT_EPHEMERAL_TIMEOUT "
        "(prefect.ephemeral_timeout) or point at a running server instead: PREFECT_API_URL=http://host:4200/api "
        "(start one with `prefect server start`)")
    assert cli._prefect_problem(RuntimeError("Failed to create flow run. Failed to reach API at "
                                             "http://prefect.lab:4200/api/.")) == (
        "cannot reach the Prefect server at http://prefect.lab:4200/api/; start it, or point at a running server "
        "instead: PREFECT_API_URL=http://host:4200/api (start one with `prefect server start`)")


def test_locked_catalog_waits_then_names_the_holder(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ASTROLAB_HOME", str(tmp_path))
    make_catalog(tmp_path)
    hold = ("import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); print('locked', flush=True); "
            "time.sleep(float(sys.argv[2]))")
    holder = subprocess.Popen([sys.executable, "-c", hold, str(tmp_path / "catalog.duckdb"), "60"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        monkeypatch.setenv("ASTROLAB_CATALOG_LOCK_TIMEOUT", "0.5")
        started = time.monotonic()
        assert main(["query", "SELECT 1"]) == 2
        assert time.monotonic() - started >= 0.5
        line = one_error_line(capsys.readouterr().err)
        assert line.startswith(f"error: {tmp_path / 'catalog.duckdb'}: locked by process {holder.pid} (")
        assert line.endswith(f"waited 0.5 s (catalog.lock_timeout). Wait for it to finish (or stop it: kill "
                             f"{holder.pid}) and try again, or raise ASTROLAB_CATALOG_LOCK_TIMEOUT")
    finally:
        holder.kill()
        holder.wait()
    short = subprocess.Popen([sys.executable, "-c", hold, str(tmp_path / "catalog.duckdb"), "1"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert short.stdout.readline().strip() == "locked"
        monkeypatch.setenv("ASTROLAB_CATALOG_LOCK_TIMEOUT", "30")
        assert main(["query", "SELECT count(*) AS n FROM zcat_primary"]) == 0  # waited for the lock to go
        assert capsys.readouterr().out.splitlines() == ['"n"', "3"]
    finally:
        short.wait()


@pytest.mark.parametrize("sql", [
    "COPY zcat_primary TO 'out.csv'", "ATTACH 'other.duckdb'", "INSTALL httpfs", "LOAD httpfs",
    "EXPORT DATABASE 'dump'", "IMPORT DATABASE 'dump'", "CREATE TABLE t AS SELECT 1",
    "INSERT INTO redshifts VALUES (1)",
    "UPDATE redshifts SET z = 0", "DELETE FROM redshifts", "DROP TABLE redshifts", "ALTER TABLE redshifts ADD c INT",
    "SET threads = 1", "PRAGMA show_tables", "CALL pragma_version()", "SELECT 1; DROP TABLE redshifts",
    "EXPLAIN ANALYZE DELETE FROM redshifts", "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_parquet('/tmp/*.parquet')", "SELECT * FROM '/etc/hosts.csv'", "SELECT * FROM glob('/*')",
    "SELECT getenv('HOME')", "SELECT * FROM zcat_primary WHERE z IN (SELECT 1 FROM read_text('/etc/passwd'))",
    "SELECT pg_read_file('/etc/passwd')", "SELECT * FROM sqlite_scan('x.db', 't')", "DETACH x", "USE x",
    "CHECKPOINT", "VACUUM",
])
def test_query_refuses_writes_and_files(tmp_path, monkeypatch, capsys, sql):
    monkeypatch.setenv("ASTROLAB_HOME", str(tmp_path))
    make_catalog(tmp_path)
    assert main(["query", sql]) == 2
    assert one_error_line(capsys.readouterr().err).startswith(("error: query: refused ", "error: query: cannot"))


def test_query_allows_reads_on_a_read_only_catalog(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ASTROLAB_HOME", str(tmp_path))
    make_catalog(tmp_path)
    for sql in ["SELECT count(*) FROM zcat_primary", "WITH a AS (SELECT z FROM redshifts) SELECT max(z) FROM a",
                "EXPLAIN SELECT * FROM zcat_primary", "DESCRIBE zcat_primary", "SHOW TABLES", "FROM ingest_lineage",
                "SELECT 'a.csv' AS name, range FROM range(3)"]:
        assert main(["query", sql]) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert cli.check_read_only_sql("SELECT * FROM zcat_primary") is None
    with build_catalog(load_settings(), read_only=True) as catalog, pytest.raises(duckdb.Error, match="read-only"):
        catalog.query("DELETE FROM redshifts")  # the catalog is opened read-only as well
    assert main(["query", "SELECT nope FROM zcat_primary"]) == 2
    assert one_error_line(capsys.readouterr().err).startswith(
        'error: SQL: Binder Error: Referenced column "nope" not found in FROM clause!')


@pytest.mark.parametrize(("args", "line"), [
    (["nan", "0", "1"], "error: cone: RA nan is outside 0 <= RA < 360 (degrees, finite)"),
    (["360", "0", "1"], "error: cone: RA 360 is outside 0 <= RA < 360 (degrees, finite)"),
    (["-0.5", "0", "1"], "error: cone: RA -0.5 is outside 0 <= RA < 360 (degrees, finite)"),
    (["inf", "0", "1"], "error: cone: RA inf is outside 0 <= RA < 360 (degrees, finite)"),
    (["10", "nan", "1"], "error: cone: DEC nan is outside -90 <= DEC <= 90 (degrees, finite)"),
    (["10", "91", "1"], "error: cone: DEC 91 is outside -90 <= DEC <= 90 (degrees, finite)"),
    (["10", "0", "0"], "error: cone: RADIUS 0 is outside 0 < RADIUS <= 180 (degrees, finite)"),
])
def test_cone_checks_the_position(tmp_path, monkeypatch, capsys, args, line):
    monkeypatch.setenv("ASTROLAB_HOME", str(tmp_path))
    assert main(["cone", *args]) == 2
    assert one_error_line(capsys.readouterr().err) == line


def test_bad_settings_name_the_variable_or_file_and_value(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ASTROLAB_HOME", str(tmp_path))
    monkeypatch.setenv("ASTROLAB_CATALOG_LOCK_TIMEOUT", "soon")
    assert main(["settings"]) == 2
    assert one_error_line(capsys.readouterr().err) == (
        "error: environment variable ASTROLAB_CATALOG_LOCK_TIMEOUT: catalog.lock_timeout: Input should be a valid "
        "number, unable to parse string as a number (got 'soon')")
    monkeypatch.delenv("ASTROLAB_CATALOG_LOCK_TIMEOUT")
    cfg = tmp_path / "astrolab.yaml"
    cfg.write_text("dask:\n  gpu: maybe\n")
    assert main(["--config", str(cfg), "settings"]) == 2
    assert one_error_line(capsys.readouterr().err) == (
        f"error: {cfg}: dask.gpu: Input should be a valid boolean, unable to interpret input (got 'maybe')")


def test_debug_prints_the_traceback_and_a_bug_exits_1(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ASTROLAB_HOME", str(tmp_path))
    assert main(["--debug", "cone", "400", "0", "1"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err
    assert err.splitlines()[-1] == "error: cone: RA 400 is outside 0 <= RA < 360 (degrees, finite)"

    def broken(args):
        raise KeyError("bug")

    monkeypatch.setattr(cli, "cmd_settings", broken)
    monkeypatch.setattr(cli, "build_parser", _parser_with(broken))
    assert main(["settings"]) == 1
    assert one_error_line(capsys.readouterr().err) == (
        "error: unexpected KeyError: 'bug' (a bug? rerun with --debug for the traceback and report it)")


def _parser_with(func):
    build = cli.build_parser

    def parser():
        p = build()
        p._subparsers._group_actions[0].choices["settings"].set_defaults(func=func)
        return p

    return parser


def test_every_argument_help_says_its_default():
    parser = cli.build_parser()

    def check(p):
        for action in p._actions:
            if action.dest == "help":
                continue
            if action.choices and isinstance(action.choices, dict):
                for sub in action.choices.values():
                    check(sub)
                continue
            assert action.help and "default" in action.help, (p.prog, action.dest)

    check(parser)


@pytest.mark.slow
def test_no_secret_in_any_output_of_a_real_run(sample, pg_database, s3_lake_env, tmp_path):
    """An ingest with a PostgreSQL password (the test server trusts, so any password works) and an S3 secret key:
    its stdout and stderr, the Prefect server's database (logs, artifacts, parameters), every file the run left
    locally and every object it wrote to the bucket hold neither secret."""
    url = pg_database.replace("postgresql://astrolab@", f"postgresql://astrolab:{PG_PASSWORD}@")
    env = {**os.environ, **s3_lake_env, "ASTROLAB_LAKE_S3_SECRET_KEY": S3_SECRET, "ASTROLAB_CATALOG_URL": url,
           "ASTROLAB_HOME": str(tmp_path / "home"), "PREFECT_HOME": str(tmp_path / "prefect"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    done = subprocess.run([sys.executable, "-m", "astrolab.cli", "ingest", str(sample), "--kinds", "zpix"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    outputs = {"stdout": done.stdout.encode(), "stderr": done.stderr.encode()}
    outputs.update({str(p): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()})
    settings = load_settings(env=env)
    lake = build_lake(settings)
    keys = [obj.key for obj in lake.store.list(lake.bucket, lake.prefix)]
    assert any(k.endswith("_published.json") for k in keys) and len(outputs) > 10
    for key in keys:
        outputs[f"s3://{lake.bucket}/{key}"] = lake.store.get_bytes(lake.bucket, key) or b""
    with build_catalog(settings, read_only=True) as catalog:
        outputs["lineage"] = str(catalog.query("SELECT * FROM ingest_lineage").to_pylist()).encode()
    leaks = [where for where, data in outputs.items() if PG_PASSWORD.encode() in data or S3_SECRET.encode() in data]
    assert leaks == []


def test_piped_query_prints_every_row_unless_limited(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ASTROLAB_HOME", str(tmp_path))
    make_catalog(tmp_path)
    assert main(["query", "SELECT * FROM range(120) t(i)"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == ['"i"', *map(str, range(120))] and err == ""
    assert main(["query", "SELECT * FROM range(120) t(i)", "--limit", "7"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == ['"i"', *map(str, range(7))]
    assert "(120 rows, first 7 shown; use --limit)" in err


def test_terminal_shows_50_rows_and_wide_rows_one_block_each(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ASTROLAB_HOME", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "80")
    make_catalog(tmp_path)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert main(["query", "SELECT i, i * 2 AS twice FROM range(60) t(i)"]) == 0
    out, err = capsys.readouterr()
    assert "│ 49 │ 98    │" in out and "│ 50 │ 100" not in out and "RECORD" not in out
    assert "(60 rows, first 50 shown; use --limit)" in err
    wide = ", ".join(f"'{'v' * 12}{c}' AS column_{c}" for c in range(8))
    assert main(["query", f"SELECT {wide} FROM range(2)"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("-[ RECORD 1 ]") and lines[9].startswith("-[ RECORD 2 ]")
    assert lines[1] == "column_0 | vvvvvvvvvvvv0" and lines[8] == "column_7 | vvvvvvvvvvvv7"
    assert max(map(len, lines)) <= 80


def test_lake_refuses_an_unknown_product(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ASTROLAB_HOME", str(tmp_path))
    assert main(["lake", "redshift"]) == 2
    assert capsys.readouterr().err.strip() == "error: lake: unknown product 'redshift' (did you mean 'redshifts'?)"


def test_docs_serves_the_reports_where_the_ui_links_point(tmp_path, monkeypatch, capsys):
    import threading
    import urllib.request

    monkeypatch.setenv("ASTROLAB_HOME", str(tmp_path))
    assert main(["docs"]) == 2
    assert "no Data Docs yet under" in capsys.readouterr().err
    settings = load_settings()
    lake = build_lake(settings)
    index = lake.data_docs_dir() / "index.html"
    index.parent.mkdir(parents=True)
    index.write_text("<html>expectations</html>")
    server = cli.serve_reports(lake.data_docs_dir().parent, 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/data_docs/index.html"
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.read() == b"<html>expectations</html>"
    finally:
        server.shutdown()
        server.server_close()
    monkeypatch.setenv("ASTROLAB_LAKE_URL", "s3://lab-lake/desi")
    monkeypatch.setenv("ASTROLAB_LAKE_S3_ENDPOINT", "http://minio1:9000")
    assert main(["docs"]) == 0
    assert "served at http://minio1:9000/lab-lake/desi/reports/data_docs/index.html" in capsys.readouterr().err


def test_docs_on_an_s3_lake_says_when_a_browser_cannot_read_the_reports(s3_lake_env, tmp_path, monkeypatch, capsys):
    import urllib.request

    from tasks.storage.s3 import split_url
    from tests.conftest import allow_anonymous_reads

    for name, value in {**s3_lake_env, "ASTROLAB_HOME": str(tmp_path)}.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    lake = build_lake(settings)
    index = f"{settings.reports_url}/data_docs/index.html"
    bucket, prefix = split_url(settings.lake_url)
    allow_anonymous_reads(lake.store.client, bucket, f"{prefix}/reports")
    assert main(["docs"]) == 2
    assert capsys.readouterr().err.strip() == f"error: no Data Docs yet at {index}; run an ingest first"

    lake.store.client.delete_bucket_policy(bucket)  # a private bucket, as MinIO creates it
    (lake.data_docs_dir() / "index.html").parent.mkdir(parents=True)
    (lake.data_docs_dir() / "index.html").write_text("<html>expectations</html>")
    lake.save_dir(lake.data_docs_dir())
    assert main(["docs"]) == 2
    err = capsys.readouterr().err
    assert f"error: docs: {index} answers HTTP 403 to a browser" in err
    assert f"`mc anonymous set download ALIAS/{bucket}/{prefix}/reports`" in err

    allow_anonymous_reads(lake.store.client, bucket, f"{prefix}/reports")
    assert main(["docs"]) == 0
    assert capsys.readouterr().err.strip() == f"the lake is on S3; its reports are served at {index} (reports.base_url)"
    with urllib.request.urlopen(index, timeout=30) as response:
        assert response.read() == b"<html>expectations</html>"
def _backup_registry(path, repos, assets):
    path.write_text(yaml.safe_dump({
        "repositories": [{"name": n, "url": u, "password_env": "ASTROLAB_TEST_RESTIC_PW"} for n, u in repos.items()],
        "assets": [{"name": n, "class": c, "kind": "path", "paths": ["/srv/x"], "repository": r}
                   for n, c, r in assets]}))
    return str(path)


def test_backups_status_table_and_exit_codes(tmp_path, monkeypatch, capsys):
    from tasks.backup import rpo
    from tasks.backup.drill import DrillResult
    from tasks.backup.records import PruneRun, Verification, record_drill, record_prune, record_verification
    from tasks.backup.restic import Repository

    monkeypatch.setenv("ASTROLAB_HOME", str(tmp_path))
    monkeypatch.setenv("ASTROLAB_TEST_RESTIC_PW", "pw-cli-status-7")
    now = datetime.now(UTC)
    # the command reads the RPO states at this test's `now`: restic and the catalog below take seconds (tens on a
    # loaded machine), and 30 s more would turn "10m ... (17%)" into "(18%)"
    real_check_rpo = rpo.check_rpo
    monkeypatch.setattr(rpo, "check_rpo", lambda registry, _now, **kw: real_check_rpo(registry, now, **kw))
    repo = Repository(str(tmp_path / "repo"), "pw-cli-status-7", cache_dir=tmp_path / "cache")
    repo.init()
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f").write_text("x")
    repo.backup_path([tmp_path / "src"], tags=["asset=docs"], at=now - timedelta(minutes=10))
    repo.backup_path([tmp_path / "src"], tags=["asset=infra"], at=now - timedelta(hours=3, minutes=30))
    with DuckDBCatalog(tmp_path / "catalog.duckdb") as catalog:
        record_verification(catalog, Verification("local", now - timedelta(hours=1), True, read_data_subset="1/7"))
        record_drill(catalog, DrillResult("docs", "path", "abcd1234", now - timedelta(days=1), 42.0,
                                          timedelta(hours=1), (), "3 files"))
        pruned = datetime(2026, 3, 1, 4, 0, tzinfo=UTC)
        record_prune(catalog, PruneRun("p1", "docs", "local", pruned, pruned, "ok", kept=5, removed=1))

    ok_only = _backup_registry(tmp_path / "ok.yaml", {"local": repo.url}, [("docs", "documentation", "local")])
    assert main(["backups", "status", "--assets", ok_only]) == 0
    out, err = capsys.readouterr()
    [row] = list(csv.DictReader(io.StringIO(out)))
    assert (row["asset"], row["class"], row["kind"], row["state"]) == ("docs", "documentation", "path", "ok")
    assert row["age_vs_rpo"].startswith("10m") and row["age_vs_rpo"].endswith("of 1h (17%)")
    assert row["last_verification"].startswith("ok ") and row["last_drill_vs_rto"].startswith("passed 42s of 1h (")
    assert row["last_prune"] == "kept 5, removed 1 (2026-03-01 04:00 UTC)"
    assert "problem" not in err

    mixed = _backup_registry(tmp_path / "mixed.yaml", {"local": repo.url, "other": str(tmp_path / "nothing")},
                             [("docs", "documentation", "local"), ("infra", "infrastructure", "local"),
                              ("dev", "development", "local"), ("lake", "research-data", "other")])
    assert main(["backups", "status", "--assets", mixed]) == 1
    out, err = capsys.readouterr()
    states = {r["asset"]: r["state"] for r in csv.DictReader(io.StringIO(out))}
    assert states == {"docs": "ok", "infra": "warning", "dev": "never", "lake": "unknown"}
    err = " ".join(err.split())
    assert "problem infra: warning, last backup 3h30m ago, RPO 4h" in err
    assert "problem dev: never backed up (RPO 1d)" in err
    assert "problem lake: unknown, repository other: restic snapshots" in err and "no restic repository there" in err
    assert "pw-cli-status-7" not in out + err

    monkeypatch.setenv("ASTROLAB_TEST_RESTIC_PW", "a-wrong-password")
    assert main(["backups", "status", "--assets", ok_only]) == 1
    out, err = capsys.readouterr()
    assert "unknown" in out and "wrong password" in err and "a-wrong-password" not in out + err

    (tmp_path / "bad.yaml").write_text("repositories: [{name: r, url: /srv/r}]\nassets: [{name: a, class: docs, "
                                       "kind: path, paths: [/x], repository: r}]\n")
    assert main(["backups", "status", "--assets", str(tmp_path / "bad.yaml")]) == 2
    assert one_error_line(capsys.readouterr().err).startswith(f"error: {tmp_path / 'bad.yaml'}: assets.0.class")

    # without --assets the backup.assets setting names the registry; with neither, one line says what to do
    monkeypatch.setenv("ASTROLAB_TEST_RESTIC_PW", "pw-cli-status-7")
    monkeypatch.setenv("ASTROLAB_BACKUP_ASSETS", mixed)
    assert main(["backups", "status"]) == 1
    rows = csv.DictReader(io.StringIO(capsys.readouterr().out))
    assert {r["asset"] for r in rows} == {"docs", "infra", "dev", "lake"}
    monkeypatch.delenv("ASTROLAB_BACKUP_ASSETS")
    assert main(["backups", "status"]) == 2
    assert one_error_line(capsys.readouterr().err).startswith("error: no asset registry: pass one or set backup.assets")


def test_backups_status_of_a_version_5_catalog_shows_its_records_and_leaves_it_as_it_is(tmp_path, monkeypatch,
                                                                                         capsys):
    from tasks.backup.drill import DrillResult
    from tasks.backup.records import Verification, record_drill, record_verification

    monkeypatch.setenv("ASTROLAB_HOME", str(tmp_path))
    monkeypatch.setenv("ASTROLAB_TEST_RESTIC_PW", "pw-cli-status-5")
    now = datetime.now(UTC)
    with DuckDBCatalog(tmp_path / "catalog.duckdb") as catalog:  # as astrolab left it before prunes (version 6)
        catalog._execute("DROP TABLE backup_prunes")
        catalog._execute("UPDATE schema_version SET version = 5")
        record_verification(catalog, Verification("local", now - timedelta(hours=1), True, read_data_subset="1/7"))
        record_drill(catalog, DrillResult("docs", "path", "abcd1234", now - timedelta(days=1), 42.0,
                                          timedelta(hours=1), (), "3 files"))
    assets = _backup_registry(tmp_path / "a.yaml", {"local": str(tmp_path / "no-repo")},
                              [("docs", "documentation", "local")])
    assert main(["backups", "status", "--assets", assets]) == 1  # docs: unknown, there is no repository
    out, err = capsys.readouterr()
    [row] = list(csv.DictReader(io.StringIO(out)))
    assert row["last_verification"].startswith("ok ") and row["last_drill_vs_rto"].startswith("passed 42s of 1h (")
    assert row["last_prune"] == "unknown"
    err = " ".join(err.split())
    assert f"catalog {tmp_path / 'catalog.duckdb'} is at schema version 5, older than this astrolab's 6: it has no " \
           "prune records (shown as unknown)" in err
    with DuckDBCatalog(tmp_path / "catalog.duckdb", read_only=True) as catalog:  # nothing written
        assert catalog.schema_version() == 5 and "backup_prunes" not in catalog.tables()

"""The astrolab command line: query, cone, settings, and errors as messages with exit code 2."""

import pyarrow as pa

from astrolab.cli import main
from tasks.catalog.duckdb_store import DuckDBCatalog
from tasks.catalog.schema import LineageRecord
from tasks.ingest.products import REDSHIFTS


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

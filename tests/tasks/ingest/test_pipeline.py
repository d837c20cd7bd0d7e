"""Ingest without Prefect: a generated sample end to end, reruns, bad inputs, interrupted runs."""

import calendar
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import lsdb
import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy.io import fits
from astropy.table import Table, vstack

from astrolab.resources import build_catalog, build_lake, build_validator
from astrolab.settings import REPO_ROOT, load_settings
from tasks.catalog.base import FileLoad
from tasks.ingest.pipeline import ingest_file, publish, reconcile
from tasks.ingest.products import PRODUCTS
from tasks.ingest.sources import discover
from tasks.storage.lake import LocalLake, VersionRetention, retained_versions, version_name, version_time
from tasks.storage.s3 import split_url

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


# --- integrity and every DR1 file form (issue #13) ------------------------------------------------------------
def _flip_bit(path: Path, offset: int, bit: int = 0x10) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= bit
    path.write_bytes(bytes(raw))


def _zcatalog_sums(path: Path) -> tuple[int, str, str]:
    """(offset of the ZCATALOG data, its DATASUM, its CHECKSUM)."""
    with fits.open(path) as hdul:
        return hdul.fileinfo(1)["datLoc"], hdul["ZCATALOG"].header["DATASUM"], hdul["ZCATALOG"].header["CHECKSUM"]


def _data_bit(src: Path, dst: Path) -> str:
    shutil.copy(src, dst)
    offset, datasum, checksum = _zcatalog_sums(dst)
    _flip_bit(dst, offset + 1000)  # inside row 1: the header's cards stay as they were
    with fits.open(dst) as hdul:
        computed = hdul["ZCATALOG"]._calculate_datasum()  # astropy's sum of the damaged data, to compare with
    return (rf"FITS checksum mismatch in HDU ZCATALOG: DATASUM expected {datasum} \(header\), computed {computed} "
            rf"\(data\); CHECKSUM expected '{checksum}' \(header\), computed '[^']{{16}}'$")


def _header_bit(src: Path, dst: Path) -> str:
    shutil.copy(src, dst)
    _, datasum, checksum = _zcatalog_sums(dst)
    raw = dst.read_bytes()
    _flip_bit(dst, raw.index(b"binary table extension", raw.index(b"XTENSION= 'BINTABLE")), 0x01)
    return rf"FITS checksum mismatch in HDU ZCATALOG: CHECKSUM expected '{checksum}' \(header\), computed '[^']{{16}}'$"


def _datasum_removed(src: Path, dst: Path) -> str:
    raw = bytearray(src.read_bytes())
    card = raw.index(b"DATASUM =", raw.index(b"XTENSION= 'BINTABLE"))
    raw[card:card + 80] = b" " * 80
    dst.write_bytes(bytes(raw))
    return r"FITS checksum mismatch in HDU ZCATALOG: CHECKSUM expected '[^']{16}' \(header\), computed '[^']{16}'$"


def _gz(src: Path, dst: Path, damage=lambda raw: raw) -> None:
    import gzip

    dst.write_bytes(damage(gzip.compress(src.read_bytes())))


def _copy(src: Path, dst: Path) -> str:
    shutil.copy(src, dst)
    return r"not a valid gzip stream: Not a gzipped file"


def _empty(src: Path, dst: Path) -> str:
    dst.write_bytes(b"")
    return r"not a valid gzip stream: empty file"


def _corrupt_gz(raw: bytes) -> bytes:
    middle = bytearray(raw)
    for k in range(len(raw) // 2, len(raw) // 2 + 64):
        middle[k] ^= 0x5A
    return bytes(middle)


CORRUPT_INPUTS = {  # name of the bad file, how to make it, what the error says after "<file>: "
    "data-bit": ("zpix-main-bright.fits", _data_bit),
    "header-bit": ("zpix-main-bright.fits", _header_bit),
    "datasum-removed": ("zpix-main-bright.fits", _datasum_removed),
    "gzip-corrupt": ("zpix-main-bright.fits.gz", lambda s, d: _gz(s, d, _corrupt_gz) or
                     r"not a valid gzip stream: (Error -3 while decompressing|CRC check failed)"),
    "gzip-truncated": ("zpix-main-bright.fits.gz", lambda s, d: _gz(s, d, lambda raw: raw[: len(raw) // 2]) or
                       r"not a valid gzip stream: Compressed file ended before the end-of-stream marker"),
    "not-gzip": ("zpix-main-bright.fits.gz", _copy),  # plain FITS under a .gz name
    "gzip-empty": ("zpix-main-bright.fits.gz", _empty),
}


def _lake_files(lake) -> set[str]:
    return {str(p.relative_to(lake.root)) for p in lake.root.rglob("*") if "reports" not in p.parts}


@pytest.mark.parametrize("case", list(CORRUPT_INPUTS))
def test_corrupt_file_is_quarantined_and_catalog_and_lake_are_unchanged(sample, env, tmp_path, case):
    import hashlib
    import re

    settings, lake, catalog, validator = env
    run(next(sample.rglob("zpix-main-dark.fits")), *env)
    before = (count(catalog, "SELECT count(*) FROM redshifts"), lake.published_version("redshifts"),
              catalog.query("SELECT * FROM ingest_lineage ORDER BY path").to_pylist(), _lake_files(lake))

    name, make = CORRUPT_INPUTS[case]
    bad = tmp_path / "src" / name
    bad.parent.mkdir()
    message = make(next(sample.rglob("zpix-main-bright.fits")), bad)
    results, published = run(bad, *env)
    result = results[str(bad)]
    assert result.status == "quarantined" and published == []
    assert result.error.startswith(f"{bad}: ") and "\n" not in result.error
    assert re.search(message, result.error[len(f"{bad}: "):]), result.error
    assert result.file_hash == hashlib.sha256(bad.read_bytes()).hexdigest()  # the bytes as stored
    lineage = catalog.query("SELECT * FROM ingest_lineage ORDER BY path").to_pylist()
    assert [r for r in lineage if r["path"] != str(bad)] == before[2]
    (row,) = [r for r in lineage if r["path"] == str(bad)]
    assert row["status"] == "quarantined" and row["error"] == result.error
    after = (count(catalog, "SELECT count(*) FROM redshifts"), lake.published_version("redshifts"),
             _lake_files(lake))
    assert after == (before[0], before[1], before[3])  # no row, no staged part, no new version


def test_files_without_checksums_are_accepted_and_lineage_says_so(sample, env, tmp_path):
    settings, lake, catalog, validator = env
    plain = _rewrite(next(sample.rglob("zpix-main-bright.fits")), tmp_path / "zpix-main-bright.fits", lambda t: None)
    with fits.open(plain) as hdul:
        assert not any("CHECKSUM" in h.header or "DATASUM" in h.header for h in hdul)
    results, _ = run(plain, *env)
    assert results[str(plain)].status == "ingested"
    assert results[str(plain)].notes.startswith("no FITS checksums")
    assert catalog.lineage(results[str(plain)].file_hash)["notes"].startswith("no FITS checksums")
    good = next(sample.rglob("zpix-main-dark.fits"))  # checksummed: verified, nothing to note
    results, _ = run(good, *env)
    assert results[str(good)].status == "ingested" and results[str(good)].notes is None


def test_gzipped_files_are_found_hashed_as_stored_and_read_through_a_deleted_temporary_copy(sample, env, tmp_path):
    import gzip
    import hashlib

    settings, lake, catalog, validator = env
    source = tmp_path / "src"
    source.mkdir()
    for path in sample.rglob("zpix-*.fits"):
        (source / f"{path.name}.gz").write_bytes(gzip.compress(path.read_bytes()))
    work = tmp_path / "work"
    found = discover(source)
    assert {f.path.name for f in found} == {f"{p.name}.gz" for p in sample.rglob("zpix-*.fits")}
    results = {f.location: ingest_file(f, lake, catalog, validator, settings.ingest.chunk_rows, "gz", work_dir=work)
               for f in found}
    assert {r.status for r in results.values()} == {"ingested"}, [r.error for r in results.values()]
    assert not list(work.rglob("*"))  # decompressed copies are gone
    for location, result in results.items():
        assert result.file_hash == hashlib.sha256(Path(location).read_bytes()).hexdigest()
        assert result.rows == zpix_rows(sample)[Path(location).name[:-3]]
        assert catalog.lineage(result.file_hash)["path"] == location
    publish(PRODUCTS["redshifts"], lake, catalog, settings.ingest.hats_max_rows, settings.ingest.hats_highest_order)
    assert count(catalog, "SELECT count(*) FROM redshifts") == sum(zpix_rows(sample).values())
    again, published = run(source, *env)
    assert {r.status for r in again.values()} == {"skipped"} and published == []


def test_a_zero_row_file_is_loaded_then_published_and_nothing_downstream_breaks(sample, env, tmp_path):
    from tasks.ingest import report

    settings, lake, catalog, validator = env
    (tmp_path / "a").mkdir()
    empty = _rewrite(next(sample.rglob("zpix-main-bright.fits")), tmp_path / "a" / "zpix-main-bright.fits",
                     lambda t: t[:0])
    results, published = run(empty, *env)  # first ever: nothing to publish yet, the file waits as loaded
    result = results[str(empty)]
    assert (result.status, result.rows, published) == ("ingested", 0, [])
    assert catalog.lineage(result.file_hash)["status"] == "loaded" and catalog.lineage(result.file_hash)["n_rows"] == 0
    assert lake.staged_files("redshifts") == [] and lake.published_version("redshifts") is None
    assert "0 quarantined" in report.summary_markdown(list(results.values()), published, None, 0)

    good = next(sample.rglob("zpix-main-dark.fits"))
    results, published = run(good, *env)  # the next version takes the waiting zero-row file along
    assert [p.product for p in published] == ["redshifts"] and published[0].files == 2
    assert catalog.lineage(result.file_hash)["status"] == "published"
    version = lake.published_version("redshifts")

    other = _rewrite(next(sample.rglob("zpix-sv3-dark.fits")), tmp_path / "a" / "zpix-sv3-dark.fits", lambda t: t[:0])
    results, published = run(other, *env)  # zero new rows on top of a version: published into it, no rebuild
    assert results[str(other)].status == "ingested" and published == []
    assert catalog.lineage(results[str(other)].file_hash)["status"] == "published"
    assert catalog.lineage(results[str(other)].file_hash)["hats_version"] == version == lake.published_version(
        "redshifts")
    assert count(catalog, "SELECT count(*) FROM redshifts") == zpix_rows(sample)[good.name]
    assert len(lsdb.open_catalog(lake.catalog_path("redshifts")).compute()) == zpix_rows(sample)[good.name]
    assert report.file_table(list(results.values()))[0]["rows"] == 0


def test_files_no_product_recognises_are_listed(sample, tmp_path):
    from tasks.ingest import report
    from tasks.ingest.sources import discover_all

    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(next(sample.rglob("zpix-main-dark.fits")), source)
    for name in ("zpix-main-darker.fits", "notes.fits.gz", "zpix-main-dark.fits.bz2", "README.txt"):
        (source / name).write_text("x")
    found = discover_all(source)
    assert [f.path.name for f in found.files] == ["zpix-main-dark.fits"]
    assert found.not_recognised == [str(source / "notes.fits.gz"), str(source / "zpix-main-darker.fits")]
    assert discover_all(source, {"fastspec"}).files == []  # a kind left out is not "not recognised"
    md = report.summary_markdown([], [], None, 0, found.not_recognised)
    assert "- not recognised: **2** FITS files whose names match no DESI DR1 product (nothing matched)" in md
    assert f"- `{source / 'notes.fits.gz'}`" in md


def _version_parts(lake, product: str) -> dict[str, bytes | Path]:
    """What a reader resolved: the published version's partition files (local paths, or S3 keys)."""
    if isinstance(lake, LocalLake):
        opened = Path(os.path.realpath(lake.catalog_path(product)))  # what lsdb resolves when it opens the catalog
        return {str(p): p for p in sorted(opened.rglob("Npix=*.parquet"))}
    bucket, prefix = split_url(lake.catalog_path(product))
    return {o.key: o.key for o in lake.store.list(bucket, prefix + "/") if "/Npix=" in o.key}


def _rows_of(lake, parts: dict) -> int:
    """Rows in the resolved partitions, read now (fails if a file is gone)."""
    if isinstance(lake, LocalLake):
        return sum(pq.read_metadata(p).num_rows for p in parts.values())
    data = [lake.store.get_bytes(lake.bucket, key) for key in parts.values()]
    assert all(d is not None for d in data), "a resolved partition was deleted"
    return sum(pq.read_metadata(pa.BufferReader(d)).num_rows for d in data)


def test_a_reader_of_a_version_keeps_its_files_through_two_more_publishes(sample, lake_env, tmp_path):
    settings = load_settings(env={"ASTROLAB_HOME": str(tmp_path / "home"), "ASTROLAB_INGEST_HATS_MAX_ROWS": "1500",
                                  **lake_env})
    lake = build_lake(settings)
    zpix = sorted(sample.rglob("zpix-*.fits"))
    with build_catalog(settings) as catalog:
        validator = build_validator(settings, lake)
        run(zpix[0], settings, lake, catalog, validator)
        seen = lake.published_version("redshifts")
        parts = _version_parts(lake, "redshifts")
        assert parts
        for source in zpix[1:3]:
            run(source, settings, lake, catalog, validator)
        assert lake.published_version("redshifts") not in (None, seen)
        assert _rows_of(lake, parts) == zpix_rows(sample)[zpix[0].name]
        assert seen in lake.versions("redshifts")
        # a lake told to keep only the newest version, and nothing for its age, lets the old ones go at the next
        # publish
        lake.retention = VersionRetention(keep_last=1, keep_hours=0)
        run(zpix[3], settings, lake, catalog, validator)
        assert lake.versions("redshifts") == [lake.published_version("redshifts")]


def test_versions_made_within_one_second_sort_by_age():
    second = datetime(2026, 12, 1, 3, 2, 33, tzinfo=UTC)
    older, newer = (version_name(second.replace(microsecond=us)) for us in (1000, 900_000))
    assert version_time(newer) - version_time(older) == pytest.approx(0.899)
    keep = retained_versions([older, newer, "20261201T030232Z-a"], None, VersionRetention(keep_last=1, keep_hours=0),
                             now=second.timestamp() + 60)
    assert keep == {newer}


def test_retention_keeps_the_current_the_newest_and_the_young():
    now = calendar.timegm((2026, 11, 30, 12, 0, 0))
    versions = ["20261101T000000Z-a", "20261120T000000Z-b", "20261129T000000Z-c", "20261130T110000Z-d",
                "20261130T115900Z-e", "odd-name"]
    keep = retained_versions(versions, "20261101T000000Z-a", VersionRetention(keep_last=2, keep_hours=6), now)
    assert keep == {"20261101T000000Z-a", "odd-name", "20261130T110000Z-d", "20261130T115900Z-e"}
    assert retained_versions(versions, None, VersionRetention(keep_last=1, keep_hours=0), now) == \
        {"odd-name", "20261130T115900Z-e"}

"""tasks.backup.drill with real restic and real PostgreSQL: restores into scratch compared with the backup's record
and the live source; a damaged pack, a tampered record or a wrong target fail the drill with a clear reason."""

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from tasks.backup.drill import DrillResult, drill_path, drill_postgres
from tasks.backup.postgres import backup_database
from tasks.backup.registry import parse_assets
from tests.conftest import fresh_pg_database
from tests.tasks.backup.conftest import damage_largest_pack

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def _asset(kind="path", **fields):
    base = {"name": "lab-docs", "class": "documentation", "kind": kind, "repository": "r", **fields}
    return parse_assets({"repositories": [{"name": "r", "url": "/srv/restic"}], "assets": [base]},
                        "assets.yaml").assets[0]


def _regular_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]


def test_a_path_drill_restores_and_matches_the_record_and_the_live_source(repo, source, tmp_path, digest):
    asset = _asset(paths=[str(source)])
    before = digest(source)
    summary = repo.backup_path([source], tags=[asset.tag])
    files = _regular_files(source)
    assert summary.total_files_processed == len(files)
    (source / "notes.txt").write_text("edited after the backup: not compared, not a failure\n")

    scratch = tmp_path / "scratch"
    drill = drill_path(repo, asset, summary.snapshot_id, scratch, expected_files=summary.total_files_processed,
                       expected_bytes=summary.total_bytes_processed, now=NOW)
    assert drill.passed and drill.result == "passed" and drill.mismatches == ()
    assert drill.snapshot_id.startswith(summary.snapshot_id) and drill.started == NOW and drill.rto == asset.rto
    assert drill.within_rto and drill.restore_s > 0
    assert f"{len(files)} files, {summary.total_bytes_processed} bytes restored vs the backup's record" in drill.detail
    assert f"{len(files) - 1} compared with the live source by sha256, 1 changed since the backup" in drill.detail
    assert list(scratch.iterdir()) == []  # the restore is removed afterwards
    assert digest(source) != before and (source / "notes.txt").read_text().startswith("edited")  # live untouched

    kept = drill_path(repo, asset, summary.snapshot_id, scratch, keep=True)
    [target] = scratch.iterdir()
    assert kept.passed and "(no record to compare counts with)" in kept.detail  # restic 0.14 keeps no summary
    assert (target / str(source).lstrip("/") / "sub").is_dir()


def test_a_drill_of_single_files_counts_and_compares_them(repo, tmp_path):
    one, two = tmp_path / "etc" / "hosts", tmp_path / "etc" / "fstab"
    one.parent.mkdir()
    one.write_text("127.0.0.1 localhost\n")
    two.write_bytes(b"x" * 300)
    asset = _asset(paths=[str(one), str(two)])
    summary = repo.backup_path([one, two], tags=[asset.tag])
    drill = drill_path(repo, asset, summary.snapshot_id, tmp_path / "scratch", expected_files=2,
                       expected_bytes=320, now=NOW)
    assert drill.passed, drill.detail
    assert drill.detail.startswith("2 files, 320 bytes restored vs the backup's record; 2 compared with the live "
                                   "source by sha256, 0 changed since the backup")


def test_a_same_size_edit_within_the_second_of_the_backup_is_a_change_not_a_mismatch(repo, source, tmp_path):
    """A file rewritten (same size) within the same second as the version backed up is 'changed since the backup',
    not a restore that differs: the modification times are compared to the nanosecond, not to the second."""
    asset = _asset(paths=[str(source)])
    notes = source / "notes.txt"
    second = 1_772_000_000 * 10**9  # a whole second; the backed-up version at +0.1 s, the edit at +0.6 s
    os.utime(notes, ns=(second + 10**8, second + 10**8))
    summary = repo.backup_path([source], tags=[asset.tag])
    notes.write_bytes(notes.read_bytes().upper())  # the same size, other bytes
    os.utime(notes, ns=(second + 6 * 10**8, second + 6 * 10**8))

    drill = drill_path(repo, asset, summary.snapshot_id, tmp_path / "scratch", now=NOW)
    assert drill.passed and drill.mismatches == ()
    files = _regular_files(source)
    assert f"{len(files) - 1} compared with the live source by sha256, 1 changed since the backup" in drill.detail


def test_two_kept_drills_of_one_snapshot_within_one_second_get_their_own_directories(repo, source, tmp_path):
    asset = _asset(paths=[str(source)])
    snap = repo.backup_path([source], tags=[asset.tag]).snapshot_id
    scratch = tmp_path / "scratch"
    first, second = (drill_path(repo, asset, snap, scratch, now=NOW, keep=True) for _ in range(2))
    assert first.passed and second.passed, second.detail
    assert len(list(scratch.iterdir())) == 2


def test_a_record_that_does_not_match_fails_the_drill(repo, source, tmp_path):
    asset = _asset(paths=[str(source)])
    summary = repo.backup_path([source], tags=[asset.tag])
    drill = drill_path(repo, asset, summary.snapshot_id, tmp_path / "scratch",
                       expected_files=summary.total_files_processed + 1, expected_bytes=summary.total_bytes_processed)
    assert not drill.passed and drill.result == "failed"
    assert drill.mismatches == (f"{summary.total_files_processed} files restored, the backup recorded "
                                f"{summary.total_files_processed + 1}",)
    assert drill.detail.startswith("1 mismatch(es), first: ")

    other = repo.backup_path([source], tags=["asset=someone-else"])
    wrong = drill_path(repo, asset, other.snapshot_id, tmp_path / "scratch2")
    assert not wrong.passed and "is not tagged asset=lab-docs" in wrong.mismatches[0]


def test_a_damaged_pack_fails_the_drill_with_the_reason(repo, source, tmp_path):
    asset = _asset(paths=[str(source)])
    summary = repo.backup_path([source], tags=[asset.tag])
    damage_largest_pack(repo.url)
    drill = drill_path(repo, asset, summary.snapshot_id, tmp_path / "scratch",
                       expected_files=summary.total_files_processed, expected_bytes=summary.total_bytes_processed)
    assert not drill.passed and drill.mismatches
    assert "\n" not in drill.detail
    assert drill.detail.startswith("restore failed: ") and "the repository contains errors" in drill.detail
    assert f"first: ignoring error for {source}/" in drill.detail and "ciphertext verification failed" in drill.detail


def test_a_drill_never_restores_into_the_live_source(repo, source, digest):
    asset = _asset(paths=[str(source)])
    summary = repo.backup_path([source], tags=[asset.tag])
    before = digest(source)
    drill = drill_path(repo, asset, summary.snapshot_id, source / "sub")
    assert not drill.passed and drill.detail.startswith("restore failed: ")
    assert "would write over the live source" in drill.detail
    assert digest(source) == before


def test_the_rto_decides_too():
    rto = timedelta(hours=1)
    assert DrillResult("a", "path", "s", NOW, 3600.0, rto, (), "").passed
    slow = DrillResult("a", "path", "s", NOW, 3600.5, rto, (), "")
    assert not slow.within_rto and not slow.passed and slow.result == "failed"


TABLES = ["objects", "science.redshifts"]


@pytest.fixture
def source_db(pg_database):
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE objects (id bigint PRIMARY KEY, name text)")
        conn.execute("INSERT INTO objects SELECT i, 'obj-' || i FROM generate_series(1, 3000) i")
        conn.execute("CREATE SCHEMA science")
        conn.execute("CREATE TABLE science.redshifts (id bigint REFERENCES objects, z real)")
        conn.execute("INSERT INTO science.redshifts SELECT i, i / 3000.0 FROM generate_series(1, 3000, 3) i")
    return pg_database


def test_a_postgres_drill_compares_the_dump_and_the_row_counts(repo, source_db, pg_url):
    asset = _asset("postgres", name="catalog-db", **{"class": "research-data"}, database_url=source_db,
                   tables=TABLES)
    backup = backup_database(repo, source_db, TABLES, tags=[asset.tag])
    with fresh_pg_database(pg_url) as scratch:
        drill = drill_postgres(repo, asset, backup.snapshot_id, scratch, backup.row_counts, backup.sha256, now=NOW)
        assert drill.passed, drill.detail
        assert drill.kind == "postgres" and drill.rto == timedelta(hours=2) and drill.started == NOW
        assert "sha256 and row counts of 2 tables compared" in drill.detail
    with fresh_pg_database(pg_url) as scratch:
        tampered = drill_postgres(repo, asset, backup.snapshot_id, scratch, {**backup.row_counts, "objects": 2999},
                                  "0" * 64)
        assert not tampered.passed
        assert tampered.mismatches == (f"dump sha256 {backup.sha256[:12]} differs from the backup's 000000000000",
                                       "table objects: 3000 rows restored, 2999 backed up")
    over_source = drill_postgres(repo, asset, backup.snapshot_id, source_db, backup.row_counts, backup.sha256)
    assert not over_source.passed and "refusing to restore over the live source database" in over_source.detail


def test_a_damaged_dump_pack_fails_the_postgres_drill(repo, source_db, pg_url):
    asset = _asset("postgres", name="catalog-db", **{"class": "research-data"}, database_url=source_db,
                   tables=TABLES)
    backup = backup_database(repo, source_db, TABLES, tags=[asset.tag])
    damage_largest_pack(repo.url)
    with fresh_pg_database(pg_url) as scratch:
        drill = drill_postgres(repo, asset, backup.snapshot_id, scratch, backup.row_counts, backup.sha256)
    assert not drill.passed and drill.detail.startswith("restore failed: "), drill.detail
    assert "\n" not in drill.detail

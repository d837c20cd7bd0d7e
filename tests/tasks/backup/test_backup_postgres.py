"""tasks.backup.postgres with real PostgreSQL and real restic: pg_dump | restic, then the restore drill into a
scratch database gives identical rows; failures leave no snapshot; the drill never writes over the source."""

import uuid

import psycopg
import pytest

from tasks.backup.postgres import PostgresBackupError, backup_database, compare_row_counts, restore_database
from tasks.backup.restic import ResticError
from tests.conftest import fresh_pg_database

TABLES = ["objects", "science.redshifts"]


@pytest.fixture
def scratch_database(pg_url):
    """A second fresh database (the drill's target), dropped after."""
    with fresh_pg_database(pg_url) as url:
        yield url


@pytest.fixture
def catalog(pg_database):
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE objects (id bigint PRIMARY KEY, ra double precision, dec double precision, "
                     "name text)")
        conn.execute("INSERT INTO objects SELECT i, i * 0.01, -i * 0.005, 'obj-' || i FROM generate_series(1, 5000) i")
        conn.execute("CREATE SCHEMA science")
        conn.execute("CREATE TABLE science.redshifts (id bigint REFERENCES objects, z real, zwarn int)")
        conn.execute("INSERT INTO science.redshifts SELECT i, i / 5000.0, i % 3 FROM generate_series(1, 5000, 2) i")
    return pg_database


def _content(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [conn.execute(f"SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {table} t").fetchone()[0]
                for table in TABLES]


def test_dump_restore_gives_identical_rows(repo, catalog, scratch_database):
    backup = backup_database(repo, catalog, TABLES, tags=["asset=catalog-db"], host="db1")
    assert backup.row_counts == {"objects": 5000, "science.redshifts": 2500}
    assert backup.size > 0 and len(backup.sha256) == 64 and backup.filename.endswith(".pgdump")
    [snap] = repo.snapshots(tags=["asset=catalog-db"])
    assert snap.id.startswith(backup.snapshot_id) and snap.hostname == "db1"

    drill = restore_database(repo, backup.snapshot_id, backup.filename, scratch_database, TABLES,
                             source_url=catalog, expected=backup)
    assert drill.ok, drill.mismatches
    assert drill.row_counts == backup.row_counts and drill.sha256 == backup.sha256 and drill.size == backup.size
    assert _content(scratch_database) == _content(catalog)


def test_the_drill_refuses_the_source_and_a_database_in_use(repo, catalog, scratch_database):
    backup = backup_database(repo, catalog, TABLES)
    with pytest.raises(PostgresBackupError, match="refusing to restore over the live source database"):
        restore_database(repo, backup.snapshot_id, backup.filename, catalog, TABLES, source_url=catalog)
    with pytest.raises(PostgresBackupError, match=r"the scratch database is not empty \(2 tables\)"):
        restore_database(repo, backup.snapshot_id, backup.filename, catalog, TABLES)


def test_mismatches_are_listed(repo, catalog, scratch_database):
    backup = backup_database(repo, catalog, TABLES)
    with psycopg.connect(catalog, autocommit=True) as conn:
        conn.execute("DELETE FROM science.redshifts WHERE id < 100")
    later = backup_database(repo, catalog, TABLES)
    drill = restore_database(repo, later.snapshot_id, later.filename, scratch_database, TABLES, expected=backup)
    assert not drill.ok
    assert any("sha256" in m for m in drill.mismatches)
    assert "table science.redshifts: 2450 rows restored, 2500 backed up" in drill.mismatches
    assert compare_row_counts({"a": 1}, {}) == ["table a: not counted rows restored, 1 backed up"]


def test_failures_leave_no_snapshot(repo, catalog, pg_url):
    with pytest.raises(PostgresBackupError, match=r"table 'nope' does not exist"):
        backup_database(repo, catalog, ["nope"])
    missing = pg_url.rsplit("/", 1)[0] + "/no_such_db_" + uuid.uuid4().hex[:6]
    with pytest.raises(PostgresBackupError, match=r"pg_dump 127\.0\.0\.1:\d+/no_such_db_\w+: cannot connect"):
        backup_database(repo, missing)
    assert repo.snapshots() == []


def test_a_dump_that_fails_midway_is_forgotten(repo, catalog, monkeypatch, tmp_path):
    """pg_dump dies after starting (its snapshot no longer exists): the backup fails and keeps no snapshot."""
    import tasks.backup.postgres as pg

    wrapper = tmp_path / "pg_dump"
    wrapper.write_text(f'#!/bin/sh\n"{pg.pg_tool("pg_dump")}" "$@" | head -c 1000\necho "pg_dump: error: lost" >&2\n'
                       "exit 1\n")
    wrapper.chmod(0o755)
    real = pg.pg_tool
    monkeypatch.setattr(pg, "pg_tool", lambda name: str(wrapper) if name == "pg_dump" else real(name))
    with pytest.raises(ResticError) as err:
        backup_database(repo, catalog, TABLES)
    assert err.value.kind == "producer-failed" and "no snapshot kept" in str(err.value)
    assert repo.snapshots() == []


"""tasks.backup.verify: the rolling --read-data-subset covers every part over N days; pg_restore --list of a dump read
back from a real repository names the tables' data, and a snapshot that is not a dump is reported, not trusted."""

from datetime import date, timedelta

import psycopg
import pytest

from tasks.backup.postgres import backup_database
from tasks.backup.verify import list_dump, rolling_subset


def test_the_rolling_subset_reads_every_part_once_in_n_days():
    start = date(2026, 3, 2)
    parts = [rolling_subset(start + timedelta(days=d), 7) for d in range(14)]
    assert sorted(parts[:7]) == [f"{n}/7" for n in range(1, 8)] and parts[7:] == parts[:7]
    assert rolling_subset(start, 1) == "1/1"
    with pytest.raises(ValueError, match="at least 1"):
        rolling_subset(start, 0)


def test_pg_restore_list_of_a_dump_in_the_repository(repo, pg_database, source):
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE objects (id int)")
        conn.execute("INSERT INTO objects SELECT generate_series(1, 100)")
        conn.execute("CREATE SCHEMA science")
        conn.execute("CREATE TABLE science.z (id int)")
    backup_database(repo, pg_database, ["objects"], tags=["asset=db"])
    (snap,) = repo.snapshots(tags=["asset=db"])
    check = list_dump(repo, snap, ("objects", "science.z"))
    assert check.ok and check.entries >= 3 and check.missing_tables == ()
    assert list_dump(repo, snap, ("objects", "science.missing")).missing_tables == ("science.missing",)

    repo.backup_path([source], tags=["asset=docs"])
    (not_a_dump,) = repo.snapshots(tags=["asset=docs"])
    with pytest.raises(ValueError, match="not one database dump"):
        list_dump(repo, not_a_dump.__class__(**{**not_a_dump.__dict__, "paths": (*not_a_dump.paths, "/x")}))
    garbage = list_dump(repo, not_a_dump.__class__(**{**not_a_dump.__dict__,
                                                      "paths": (f"{not_a_dump.paths[0]}/notes.txt",)}))
    assert not garbage.ok and "pg_restore --list" in garbage.error

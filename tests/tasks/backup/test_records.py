"""tasks.backup.records on both catalog backends (DuckDB, PostgreSQL): runs, verifications, drills and prunes stored
and read back newest-first per asset or repository (a prune's counts are restic's snapshots before and after); bad
records refused before writing; version-3 and version-5 catalogs upgraded with their data kept, and a version-5
catalog read as it is when opened read-only."""

import os
from datetime import UTC, datetime, timedelta

import pytest

from astrolab.resources import open_catalog
from tasks.backup.drill import DrillResult
from tasks.backup.records import (
    BackupRun,
    PruneRun,
    Verification,
    backup_of_snapshot,
    latest_backups,
    latest_drills,
    latest_prunes,
    latest_verifications,
    record_backup,
    record_drill,
    record_prune,
    record_verification,
    status_records,
)
from tasks.backup.registry import Retention, parse_assets
from tasks.backup.restic import BackupSummary, CheckResult, ResticError
from tasks.catalog.schema import SCHEMA_VERSION
from tests.tasks.backup.conftest import make_tree

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
M = timedelta(minutes=1)
REGISTRY = parse_assets({
    "repositories": [{"name": "nfs", "url": "/srv/restic"}],
    "assets": [{"name": "docs", "class": "documentation", "kind": "path", "paths": ["/srv/docs"], "repository": "nfs"},
               {"name": "db", "class": "research-data", "kind": "postgres", "repository": "nfs",
                "database_url": "postgresql://astrolab@db1/astrolab", "tables": ["objects"]}]}, "assets.yaml")


def _summary(snapshot_id, files=3, size=3000):
    return BackupSummary(snapshot_id=snapshot_id, files_new=files, files_changed=0, files_unmodified=0,
                         data_added=size // 2, total_files_processed=files, total_bytes_processed=size, duration=1.5)


@pytest.fixture
def store(catalog_url):
    with open_catalog(catalog_url) as cat:
        yield cat


def test_runs_newest_per_asset_with_their_checksums_and_row_counts(store):
    docs = REGISTRY.asset("docs")
    record_backup(store, BackupRun.of_summary("run-1", docs, _summary("aaaa1111"), T0, T0 + 2 * M))
    record_backup(store, BackupRun.failure("run-2", docs, "restic backup /srv/restic: the repository is locked\n"
                                                          "by another restic process", T0 + 60 * M, T0 + 61 * M))
    record_backup(store, BackupRun(run_id="run-1", asset="db", asset_class="research-data", kind="postgres",
                                   repository="nfs", started=T0, finished=T0 + 5 * M, status="ok",
                                   snapshot_id="bbbb2222" + "0" * 56, bytes_added=700, files_new=1, total_files=1,
                                   total_bytes=1400, sha256="ab" * 32, row_counts={"objects": 1234}))
    newest = latest_backups(store)
    assert set(newest) == {"docs", "db"}
    assert newest["docs"]["status"] == "failed" and newest["docs"]["run_id"] == "run-2"
    assert newest["docs"]["error"] == "restic backup /srv/restic: the repository is locked by another restic process"
    assert newest["docs"]["finished_at"] == T0 + 61 * M  # aware UTC again
    good = latest_backups(store, status="ok")["docs"]
    assert (good["snapshot_id"], good["files_new"], good["total_files"], good["total_bytes"], good["bytes_added"]) \
        == ("aaaa1111", 3, 3, 3000, 1500)
    assert good["duration_s"] == 120.0 and good["asset_class"] == "documentation" and good["kind"] == "path"
    dump = newest["db"]
    assert dump["row_counts"] == {"objects": 1234} and dump["sha256"] == "ab" * 32
    assert backup_of_snapshot(store, "db", "bbbb2222")["sha256"] == "ab" * 32  # short id finds the full one
    assert backup_of_snapshot(store, "docs", "aaaa1111" + "f" * 56)["run_id"] == "run-1"  # and the reverse
    assert backup_of_snapshot(store, "docs", "cccc3333") is None

    record_backup(store, BackupRun.of_summary("run-2", docs, _summary("dddd4444"), T0 + 60 * M, T0 + 62 * M))
    assert latest_backups(store)["docs"]["status"] == "ok"  # the rerun of run-2 replaced its failed row
    assert store.query("SELECT count(*) AS n FROM backup_runs")["n"][0].as_py() == 3


def test_bad_records_are_refused_before_anything_is_written(store):
    docs = REGISTRY.asset("docs")
    for bad, words in ((BackupRun("r", "docs", "documentation", "path", "nfs", T0, T0, "ok"), "snapshot id"),
                       (BackupRun("r", "docs", "documentation", "path", "nfs", T0, T0, "failed"), "error"),
                       (BackupRun("r", "docs", "documentation", "path", "nfs", T0, T0, "done", "x"), "ok or failed"),
                       (BackupRun.of_summary("r", docs, _summary("x"), T0.replace(tzinfo=None), T0), "timezone")):
        with pytest.raises(ValueError, match=words):
            record_backup(store, bad)
    assert latest_backups(store) == {}


def test_errors_are_one_line_without_passwords(store):
    docs = REGISTRY.asset("docs")
    record_backup(store, BackupRun.failure("r", docs, "pg_dump postgresql://astrolab:hunter2@db1/astrolab:\n  "
                                                      "connection refused", T0, T0 + M))
    record_verification(store, Verification("nfs", T0, False, ("pack 1a2b: ciphertext\nverification failed "
                                                               "password=hunter2",)))
    assert latest_backups(store)["docs"]["error"] == \
        "pg_dump postgresql://astrolab:***@db1/astrolab: connection refused"
    assert latest_verifications(store)["nfs"]["errors"] == ["pack 1a2b: ciphertext verification failed password=***"]


def test_verifications_and_drills_newest_first(store):
    check = CheckResult(ok=True, errors=(), read_data="2/5", duration=3.5)
    record_verification(store, Verification.of_check("nfs", check, T0, run_id="v1"))
    broken = CheckResult(ok=False, errors=("pack 1a2b3c4d: damaged",), broken_packs=("1a2b3c4d",), read_data="3/5")
    record_verification(store, Verification.of_check("nfs", broken, T0 + 60 * M, run_id="v2"))
    record_verification(store, Verification.of_check("minio", check, T0 + 5 * M))
    newest = latest_verifications(store)
    assert newest["nfs"]["ok"] is False and newest["nfs"]["errors"] == ["pack 1a2b3c4d: damaged"]
    assert newest["nfs"]["read_data_subset"] == "3/5" and newest["nfs"]["run_id"] == "v2"
    assert newest["minio"]["ok"] is True and newest["minio"]["duration_s"] == 3.5 and newest["minio"]["errors"] == []

    rto = timedelta(hours=1)
    record_drill(store, DrillResult("docs", "path", "s1", T0, 42.0, rto, (), "3 files"), run_id="d1")
    record_drill(store, DrillResult("docs", "path", "s2", T0 + 7 * 24 * 60 * M, 4000.0, rto, (), "slow"))
    record_drill(store, DrillResult("db", "postgres", "s3", T0, 10.0, 2 * rto, ("table objects: 1 rows",), "bad"))
    drills = latest_drills(store)
    assert (drills["docs"]["snapshot_id"], drills["docs"]["result"], drills["docs"]["restore_s"],
            drills["docs"]["rto_s"]) == ("s2", "failed", 4000.0, 3600.0)  # over the RTO
    assert drills["db"]["result"] == "failed" and drills["db"]["kind"] == "postgres"
    assert drills["docs"]["started_at"] == T0 + 7 * 24 * 60 * M


def test_a_version_3_catalog_is_upgraded_with_its_data_kept(catalog_url):
    with open_catalog(catalog_url) as cat:  # make it look like a version-3 catalog with a compliance scan and lineage
        for table in ("backup_runs", "backup_verifications", "restore_drills", "backup_prunes"):
            cat._execute(f"DROP TABLE {table}")
        cat._execute("UPDATE schema_version SET version = 3")
        cat._execute("INSERT INTO compliance_scans (scan_id, host, policy_id, source, status, score) "
                     "VALUES ('s1', 'gpu01', 'cis_debian12', 'astrolab', 'scanned', 87.5)")
        cat._execute("INSERT INTO ingest_lineage (file_hash, path, kind, product, status) "
                     "VALUES ('old', 'zpix-main-dark.fits', 'zpix', 'redshifts', 'published')")
    with open_catalog(catalog_url) as cat:
        assert SCHEMA_VERSION >= 4  # upgraded through 4 to the latest
        assert cat._rows("SELECT max(version) FROM schema_version")[0][0] == SCHEMA_VERSION
        assert cat._rows("SELECT scan_id, score FROM compliance_scans") == [("s1", 87.5)]
        assert cat.lineage("old")["status"] == "published"
        assert latest_backups(cat) == {} and latest_verifications(cat) == {} and latest_drills(cat) == {}
        assert latest_prunes(cat) == {}
        record_backup(cat, BackupRun.of_summary("r", REGISTRY.asset("docs"), _summary("eeee5555"), T0, T0 + M))
        assert latest_backups(cat)["docs"]["snapshot_id"] == "eeee5555"


def test_prunes_record_the_snapshots_restic_kept_and_removed(store, repo, make_repo, tmp_path):
    docs = REGISTRY.asset("docs")
    src = make_tree(tmp_path / "docs", files=3)
    for day in range(1, 5):  # four snapshots, each with 60 kB of its own data (freed when the snapshot goes)
        (src / "daily.bin").write_bytes(os.urandom(60_000))
        repo.backup_path([src], tags=[docs.tag], at=datetime(2026, 3, day, 12, tzinfo=UTC))
    repo.backup_path([src], tags=["asset=other"])  # another asset's: never counted
    before = repo.snapshots(tags=[docs.tag])

    preview = repo.forget_prune(Retention(keep_last=2), tags=[docs.tag], dry_run=True)
    record_prune(store, PruneRun.of_forget("p0", docs, preview, T0, T0 + M))
    assert latest_prunes(store) == {}  # a dry run removes nothing: not the last prune
    result = repo.forget_prune(Retention(keep_last=2), tags=[docs.tag])
    after = repo.snapshots(tags=[docs.tag])
    record_prune(store, PruneRun.of_forget("p1", docs, result, T0 + M, T0 + 2 * M))

    row = latest_prunes(store)["docs"]
    assert (row["snapshots_kept"], row["snapshots_removed"]) == (len(after), len(before) - len(after)) == (2, 2)
    assert {s.id for s in after} == set(result.keep) and set(result.remove) == {s.id for s in before} - set(result.keep)
    assert 120_000 <= row["bytes_freed"] <= 125_000  # the two removed snapshots' own data, plus their trees
    assert (row["status"], row["repository"], row["dry_run"], row["error"]) == ("ok", "nfs", False, None)
    assert row["started_at"] == T0 + M and row["finished_at"] == T0 + 2 * M
    dry = store.query("SELECT * FROM backup_prunes WHERE run_id = 'p0'").to_pylist()[0]
    assert (dry["dry_run"], dry["snapshots_kept"], dry["snapshots_removed"], dry["bytes_freed"]) == (True, 2, 2, None)

    wrong = make_repo(repo.url, password="hunter2-not-it")
    with pytest.raises(ResticError) as err:
        wrong.forget_prune(Retention(keep_last=1), tags=[docs.tag])
    record_prune(store, PruneRun.failure("p2", docs, str(err.value), T0 + 3 * M, T0 + 4 * M))
    failed = latest_prunes(store)["docs"]
    assert failed["status"] == "failed" and failed["snapshots_kept"] is None
    assert "wrong password" in failed["error"] and "\n" not in failed["error"] and "hunter2" not in failed["error"]
    assert len(repo.snapshots(tags=[docs.tag])) == 2  # the failed prune removed nothing
    with pytest.raises(ValueError, match="needs its error"):
        record_prune(store, PruneRun("p3", "docs", "nfs", T0, T0, "failed"))


def test_a_version_5_catalog_is_upgraded_to_record_prunes(catalog_url):
    with open_catalog(catalog_url) as cat:
        cat._execute("DROP TABLE backup_prunes")
        cat._execute("UPDATE schema_version SET version = 5")
        record_drill(cat, DrillResult("docs", "path", "s1", T0, 42.0, timedelta(hours=1), (), "3 files"))
    with open_catalog(catalog_url) as cat:
        assert cat._rows("SELECT max(version) FROM schema_version")[0][0] == SCHEMA_VERSION == 6
        assert latest_drills(cat)["docs"]["snapshot_id"] == "s1" and latest_prunes(cat) == {}
        record_prune(cat, PruneRun("p", "docs", "nfs", T0, T0 + M, "ok", kept=1, removed=0))
        assert latest_prunes(cat)["docs"]["snapshots_kept"] == 1


def test_a_version_5_catalog_opened_read_only_gives_its_records_and_unknown_prunes(catalog_url):
    with open_catalog(catalog_url) as cat:
        cat._execute("DROP TABLE backup_prunes")
        cat._execute("UPDATE schema_version SET version = 5")
        record_verification(cat, Verification("nfs", T0, True, read_data_subset="1/7"))
        record_drill(cat, DrillResult("docs", "path", "s1", T0, 42.0, timedelta(hours=1), (), "3 files"))
    with open_catalog(catalog_url, read_only=True) as cat:
        verifications, drills, prunes = status_records(cat)
        assert verifications is not None and verifications["nfs"]["read_data_subset"] == "1/7"
        assert drills is not None and drills["docs"]["restore_s"] == 42.0
        assert prunes is None
        assert cat.schema_version() == 5 and "backup_prunes" not in cat.tables()  # read-only: never upgraded
    with open_catalog(catalog_url) as cat:  # opened to write, it is upgraded and prunes are known (none yet)
        assert cat.schema_version() == SCHEMA_VERSION and status_records(cat)[2] == {}

"""The backup flows as Prefect flow runs on the session's Prefect server, with real restic and real PostgreSQL:
backup of a path and a postgres asset (a proxmox-vm asset without the Proxmox API configured fails alone, saying what
to set), an s3 bucket mirrored and backed up then drilled into a scratch bucket, due_only, rpo-check
states on a controlled clock with their events, backup-verify catching a damaged pack, prune's retention and records;
a proxmox-vm asset backed up, checked, drilled and pruned through the flows against the local Proxmox API fake."""

import os
import secrets
import shutil
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import yaml
from prefect.artifacts import Artifact

from astrolab.resources import build_catalog
from astrolab.settings import load_settings
from infra_flows.backup import backup, backup_verify, prune, restore_drill, rpo_check
from tasks.backup.records import latest_backups, latest_drills, latest_prunes
from tasks.backup.restic import Repository
from tasks.storage.s3 import ObjectStore, S3Config
from tests.tasks.backup.conftest import damage_largest_pack, make_tree
from tests.tasks.backup.proxmox_fake import TOKEN_ID, TOKEN_SECRET, FakeProxmox, self_signed

TABLES = ["objects", "science.redshifts"]
UNSET = ("asset vm: the Proxmox API is not configured: set backup.proxmox_url, backup.proxmox_token_id and "
         "backup.proxmox_token or backup.proxmox_token_secret")


@pytest.fixture(scope="module")
def restic_installed():
    if not shutil.which("restic"):
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("restic is required under CI=true: run scripts/services.sh start (apt-get install restic)")
        pytest.skip("restic not installed; run scripts/services.sh start")


@pytest.fixture
def catalog_db(pg_database):
    """A small catalog database (two tables, one in its own schema)."""
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE objects (id bigint PRIMARY KEY, ra double precision, name text)")
        conn.execute("INSERT INTO objects SELECT i, i * 0.01, 'obj-' || i FROM generate_series(1, 3000) i")
        conn.execute("CREATE SCHEMA science")
        conn.execute("CREATE TABLE science.redshifts (id bigint REFERENCES objects, z real)")
        conn.execute("INSERT INTO science.redshifts SELECT i, i / 3000.0 FROM generate_series(1, 3000, 3) i")
    return pg_database


class Lab:
    """A registry file with a local repository (its password in RESTIC_PASSWORD), written per test."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self.repo_path = root / "repo"
        self.password = secrets.token_urlsafe(16)
        monkeypatch.setenv("RESTIC_PASSWORD", self.password)
        monkeypatch.setenv("ASTROLAB_HOME", str(root / "home"))
        self.repo = Repository(str(self.repo_path), self.password, cache_dir=root / "cache")
        self.repo.init()

    def registry(self, *assets: dict) -> str:
        path = self.root / "assets.yaml"
        path.write_text(yaml.safe_dump({"repositories": [{"name": "local", "url": str(self.repo_path)}],
                                        "assets": [a if a["kind"] == "proxmox-vm" else {"repository": "local", **a}
                                                   for a in assets]}))
        return str(path)


@pytest.fixture
def lab(tmp_path, monkeypatch, restic_installed):
    return Lab(tmp_path, monkeypatch)


def docs_asset(root: Path) -> dict:
    return {"name": "docs", "class": "documentation", "kind": "path", "paths": [str(make_tree(root / "live" / "docs"))]}


def events_named(name: str, resource_id: str, count: int = 1, timeout: float = 90.0) -> list:
    """The events ``name`` of ``resource_id`` on the Prefect server, once ``count`` have arrived (polled)."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    query = EventFilter(event=EventNameFilter(name=[name]), resource=EventResourceFilter(id=[resource_id]))
    deadline = time.monotonic() + timeout
    while True:
        with get_client(sync_client=True) as client:
            found = client.read_events(query, limit=50).events
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(1)


def test_backup_of_a_path_and_a_postgres_asset_and_a_vm_without_the_proxmox_api(lab, catalog_db):
    url = catalog_db
    assets = lab.registry(docs_asset(lab.root),
                          {"name": "catalog", "class": "research-data", "kind": "postgres", "database_url": url,
                           "tables": TABLES},
                          {"name": "vm", "class": "development", "kind": "proxmox-vm", "vm": "rke2-s1",
                           "storage": "pbs"})
    state = backup(assets_file=assets, return_state=True)
    assert state.is_failed()
    assert f"backup: 1 failed: vm: {UNSET}" in state.message

    docs = lab.repo.snapshots(tags=["asset=docs"])
    catalog = lab.repo.snapshots(tags=["asset=catalog"])
    assert len(docs) == len(catalog) == 1
    assert docs[0].paths == (str(lab.root / "live" / "docs"),) and catalog[0].paths[0].endswith(".pgdump")

    table = Artifact.get("backup-run").data
    assert "| docs | documentation | path | completed | " + docs[0].short_id in table
    assert "| vm | development | proxmox-vm | failed |" in table and "the Proxmox API is not configured" in table

    (done,) = events_named("astrolab.backup.completed", "astrolab.backup.asset.docs")
    assert done.resource["astrolab.backup.class"] == "documentation"
    assert docs[0].id.startswith(done.payload["snapshot_id"]) and done.payload["bytes_added"] > 0
    (pg,) = events_named("astrolab.backup.completed", "astrolab.backup.asset.catalog")
    assert catalog[0].id.startswith(pg.payload["snapshot_id"]) and len(pg.payload["sha256"]) == 64
    (failed,) = events_named("astrolab.backup.failed", "astrolab.backup.asset.vm")
    assert failed.payload["error"] == UNSET

    with build_catalog(load_settings(), read_only=True) as store:
        runs = latest_backups(store)
    assert runs["docs"]["status"] == "ok" and docs[0].id.startswith(runs["docs"]["snapshot_id"])
    assert runs["catalog"]["row_counts"] == {"objects": 3000, "science.redshifts": 1000}
    assert runs["catalog"]["sha256"] == pg.payload["sha256"]
    vm = runs["vm"]
    assert (vm["status"], vm["error"]) == ("failed", UNSET)


def test_an_s3_bucket_is_mirrored_backed_up_and_drilled(lab, s3_endpoint, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "astrolab-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "astrolab-test-secret")
    store = ObjectStore(S3Config(endpoint=s3_endpoint))
    bucket = f"lake-{secrets.token_hex(6)}"
    store.ensure_bucket(bucket)
    objects = {"hats/redshifts/properties": b"x" * 10, "hats/redshifts/Norder=0/Dir=0/Npix=1.parquet": b"p" * 4000,
               "reports/index.html": b"<html/>", "elsewhere/not-this": b"n"}
    for key, data in objects.items():
        store.put_bytes(bucket, key, data)
    assets = lab.registry({"name": "lake", "class": "research-data", "kind": "s3", "endpoint": s3_endpoint,
                           "bucket": bucket, "prefix": "hats/"})
    assert backup(assets_file=assets, asset="lake")["assets"] == ["lake"]
    (snap,) = lab.repo.snapshots(tags=["asset=lake"])
    mirror = lab.root / "home" / "backup-mirrors" / "lake"
    assert snap.paths == (str(mirror),)
    assert sorted(p.relative_to(mirror).as_posix() for p in mirror.rglob("*") if p.is_file()) == \
        ["redshifts/Norder=0/Dir=0/Npix=1.parquet", "redshifts/properties"]

    # the bucket changes: one object rewritten, one removed, one added; the next backup mirrors exactly that
    store.put_bytes(bucket, "hats/redshifts/properties", b"y" * 12)
    store.delete_prefix(bucket, "hats/redshifts/Norder=0/")
    store.put_bytes(bucket, "hats/voids/properties", b"v" * 7)
    backup(assets_file=assets, asset="lake")
    newest = max(lab.repo.snapshots(tags=["asset=lake"]), key=lambda s: s.time)
    assert (mirror / "redshifts" / "properties").read_bytes() == b"y" * 12
    assert not (mirror / "redshifts" / "Norder=0").exists()
    with build_catalog(load_settings(), read_only=True) as catalog:
        run = latest_backups(catalog)["lake"]
    assert newest.id.startswith(run["snapshot_id"]) and (run["total_files"], run["total_bytes"]) == (2, 19)

    scratch = f"scratch-{secrets.token_hex(6)}"  # created by the drill
    monkeypatch.setenv("ASTROLAB_BACKUP_SCRATCH_BUCKET", scratch)
    drill = restore_drill(assets_file=assets, asset="lake")
    assert drill["result"] == "passed" and drill["snapshot_id"] == newest.id
    assert drill["detail"].startswith(f"2 objects, 19 bytes restored into s3://{scratch}/drill-lake-{newest.id[:8]}-")
    assert "/ vs the backup's record; 2 compared with the live bucket by sha256, 0 changed since the backup; " \
        "scratch removed" in drill["detail"]
    assert store.client.bucket_exists(scratch) and list(store.list(scratch, "")) == []  # the drill's prefix is gone

    monkeypatch.setenv("ASTROLAB_BACKUP_SCRATCH_BUCKET", bucket)  # never into the live bucket
    state = restore_drill(assets_file=assets, asset="lake", return_state=True)
    assert state.is_failed() and f"the drill's scratch bucket '{bucket}' is the asset's live bucket" in state.message
    assert sorted(o.key for o in store.list(bucket, "")) == \
        sorted(["elsewhere/not-this", "hats/redshifts/properties", "hats/voids/properties", "reports/index.html"])


def test_due_only_backs_up_what_its_schedule_says(lab):
    yearly = "0 0 1 1 *"  # fires at the new year only
    assets = lab.registry({**docs_asset(lab.root), "schedule": yearly},
                          {**docs_asset(lab.root / "s"), "name": "stale", "schedule": yearly},
                          {**docs_asset(lab.root / "n"), "name": "new", "schedule": yearly})
    lab.repo.backup_path([lab.root / "live" / "docs"], tags=["asset=docs"])  # now: the next new year is ahead
    lab.repo.backup_path([lab.root / "s" / "live" / "docs"], tags=["asset=stale"], at=datetime(2020, 6, 1, tzinfo=UTC))
    assert backup(assets_file=assets, due_only=True)["assets"] == ["stale", "new"]  # fired since 2020 / never
    assert backup(assets_file=assets, due_only=True)["assets"] == []
    assert [len(lab.repo.snapshots(tags=[f"asset={a}"])) for a in ("docs", "stale", "new")] == [1, 2, 1]


def test_rpo_check_states_on_a_controlled_clock(lab):
    assets = lab.registry(docs_asset(lab.root), {**docs_asset(lab.root / "n"), "name": "never"})
    noon = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    lab.repo.backup_path([lab.root / "live" / "docs"], tags=["asset=docs"], at=noon)

    assert rpo_check(assets_file=assets, now=noon + timedelta(minutes=30))["states"] == {"docs": "ok",
                                                                                          "never": "never"}
    assert rpo_check(assets_file=assets, now=noon + timedelta(minutes=50))["states"]["docs"] == "warning"
    result = rpo_check(assets_file=assets, now=noon + timedelta(hours=2))
    assert result["states"]["docs"] == "breach" and result["counts"]["breach"] == 1

    summary = Artifact.get("backup-rpo").data
    row = "| docs | documentation | path | 2026-03-02 12:00 UTC | 2h of 1h (200%) | breach | never | never |"
    assert row in summary
    assert "| never | documentation | path | never | - | never | never | never |" in summary
    assert "- docs: breach, last backup 2h ago, RPO 1h\n- never: never backed up (RPO 1h)" in summary
    assert "11.2 Perform automated backups" in summary and "11.3 Protect recovery data" in summary
    assert "11.5 Test data recovery" in summary

    (breach,) = events_named("astrolab.backup.rpo-breach", "astrolab.backup.asset.docs")
    assert breach.payload["state"] == "breach" and breach.payload["age_s"] == 7200
    assert breach.payload["rpo_s"] == 3600 and breach.resource["astrolab.backup.class"] == "documentation"
    (warning,) = events_named("astrolab.backup.rpo-warning", "astrolab.backup.asset.docs")
    assert warning.payload["age_s"] == 3000
    never = events_named("astrolab.backup.rpo-breach", "astrolab.backup.asset.never", count=3)
    assert [e.payload["state"] for e in never] == ["never"] * 3


def test_an_unreadable_repository_is_unknown_and_alerts_never_ok(lab, monkeypatch):
    monkeypatch.setenv("WRONG_RESTIC_PASSWORD", "not-the-password")
    path = lab.root / "assets.yaml"
    path.write_text(yaml.safe_dump({
        "repositories": [{"name": "local", "url": str(lab.repo_path), "password_env": "WRONG_RESTIC_PASSWORD"}],
        "assets": [{**docs_asset(lab.root), "name": "locked-out", "repository": "local"}]}))
    lab.repo.backup_path([lab.root / "live" / "docs"], tags=["asset=locked-out"])  # fresh, but unreadable to us
    result = rpo_check(assets_file=str(path))
    assert result["states"] == {"locked-out": "unknown"}
    assert result["problems"][0].startswith("locked-out: unknown, repository local: ")
    assert "wrong password" in result["problems"][0] and "not-the-password" not in result["problems"][0]
    (event,) = events_named("astrolab.backup.rpo-breach", "astrolab.backup.asset.locked-out")
    assert event.payload["state"] == "unknown" and "wrong password" in event.payload["reason"]
    state = backup(assets_file=str(path), return_state=True)
    assert state.is_failed() and "locked-out: restic backup " in state.message and "wrong password" in state.message


def test_verify_passes_a_sound_repository_and_fails_a_damaged_pack(lab, catalog_db):
    assets = lab.registry(docs_asset(lab.root), {"name": "catalog", "class": "research-data", "kind": "postgres",
                                                 "database_url": catalog_db, "tables": TABLES})
    backup(assets_file=assets)
    sound = backup_verify(assets_file=assets, day=date(2026, 3, 3), parts=7)
    assert sound["subset"] == f"{date(2026, 3, 3).toordinal() % 7 + 1}/7" and sound["failures"] == []
    listing = next(r for r in sound["rows"] if r["what"] == "asset catalog")
    assert listing["result"] == "ok" and int(listing["detail"].split()[0]) >= 4

    damage_largest_pack(lab.repo_path)
    state = backup_verify(assets_file=assets, read_all=True, return_state=True)
    assert state.is_failed() and "backup-verify: " in state.message and "repository local: " in state.message
    table = Artifact.get("backup-verify").data
    assert "| repository local | restic check, data all | FAILED |" in table
    (failed,) = events_named("astrolab.backup.verify-failed", "astrolab.backup.repository.local")
    assert failed.payload["ok"] is False and failed.payload["errors"]


def test_prune_keeps_exactly_the_retention_policy(lab, monkeypatch):
    assets = lab.registry({**docs_asset(lab.root), "retention": {"keep_daily": 2, "keep_last": 1}})
    source = lab.root / "live" / "docs"
    times = [datetime(2026, 3, 1, 10, tzinfo=UTC), datetime(2026, 3, 1, 12, tzinfo=UTC),
             datetime(2026, 3, 2, 10, tzinfo=UTC), datetime(2026, 3, 3, 9, tzinfo=UTC),
             datetime(2026, 3, 3, 11, tzinfo=UTC)]
    ids = [lab.repo.backup_path([source], tags=["asset=docs"], at=t).snapshot_id[:8] for t in times]
    other = lab.repo.backup_path([source], tags=["asset=other"], at=times[0]).snapshot_id[:8]  # not this asset's
    kept = sorted([ids[2], ids[4]])  # the newest of each of the last two days that have snapshots

    preview = prune(assets_file=assets, dry_run=True)
    assert len(lab.repo.snapshots()) == 6 and sorted(i[:8] for i in preview["kept"]["docs"]) == kept
    result = prune(assets_file=assets)
    assert sorted(i[:8] for i in result["kept"]["docs"]) == kept and result["removed"] == {"docs": 3}
    assert sorted(s.short_id for s in lab.repo.snapshots()) == sorted([*kept, other])
    assert lab.repo.check(read_data=True).ok
    with build_catalog(load_settings(), read_only=True) as catalog:  # recorded: restic's 5 snapshots, then 2
        recorded = latest_prunes(catalog)["docs"]
        runs = catalog.query("SELECT run_id, dry_run FROM backup_prunes ORDER BY started_at").to_pylist()
    assert (recorded["snapshots_kept"], recorded["snapshots_removed"], recorded["status"]) == (2, 3, "ok")
    assert recorded["run_id"] == result["run_id"] and recorded["bytes_freed"] is not None
    assert [r["dry_run"] for r in runs] == [True, False]

    monkeypatch.setenv("RESTIC_PASSWORD", "not-the-password")
    state = prune(assets_file=assets, return_state=True)
    assert state.is_failed() and "prune: 1 failed: docs: " in state.message
    with build_catalog(load_settings(), read_only=True) as catalog:
        failed = latest_prunes(catalog)["docs"]
    assert failed["status"] == "failed" and "wrong password" in failed["error"]
    assert "not-the-password" not in failed["error"] and failed["snapshots_kept"] is None


def test_restore_drills_give_identical_bytes_and_rows_and_catch_a_damaged_pack(lab, catalog_db):
    docs = docs_asset(lab.root)
    files = sum(1 for p in Path(docs["paths"][0]).rglob("*") if p.is_file() and not p.is_symlink())
    assets = lab.registry(docs, {"name": "catalog", "class": "research-data", "kind": "postgres",
                                 "database_url": catalog_db, "tables": TABLES})
    backup(assets_file=assets)

    first = restore_drill(assets_file=assets, seed=1)  # sampled: neither was drilled yet
    second = restore_drill(assets_file=assets, seed=1)  # then the one not drilled
    assert {first["asset"], second["asset"]} == {"docs", "catalog"}
    by_asset = {d["asset"]: d for d in (first, second)}
    path, pg = by_asset["docs"], by_asset["catalog"]
    assert path["result"] == "passed" and path["mismatches"] == [] and path["within_rto"]
    assert f"{files} files" in path["detail"] and f"{files} compared with the live source by sha256" in path["detail"]
    assert pg["result"] == "passed" and "sha256 and row counts of 2 tables compared" in pg["detail"]
    assert pg["rto_s"] == 7200 and path["rto_s"] == 3600
    assert "11.5 Test data recovery" in Artifact.get("backup-drill").data
    with psycopg.connect(catalog_db) as conn:  # the drill's scratch database is gone
        left = conn.execute("SELECT count(*) FROM pg_database WHERE datname LIKE 'astrolab_drill_%'").fetchone()[0]
    assert left == 0

    for pack in (lab.repo_path / "data").rglob("*"):  # damage every pack: the restore cannot give the bytes back
        if pack.is_file():
            raw = bytearray(pack.read_bytes())
            raw[len(raw) // 2] ^= 0xFF
            pack.chmod(0o644)
            pack.write_bytes(bytes(raw))
    state = restore_drill(assets_file=assets, asset="docs", return_state=True)
    assert state.is_failed() and "restore-drill: docs failed: " in state.message

    with build_catalog(load_settings(), read_only=True) as catalog:
        drills = latest_drills(catalog)
    assert drills["docs"]["result"] == "failed" and drills["catalog"]["result"] == "passed"


def test_a_proxmox_vm_through_the_flows_against_the_api_fake(lab, tmp_path, monkeypatch):
    tls = self_signed(tmp_path)
    wazuh = {"name": "wazuh1", "node": "pve3", "template": 0, "scsi0": "local-lvm:vm-141-disk-0,size=32G",
             "ide2": "none,media=cdrom"}
    pve = FakeProxmox({("pve3", "pbs-lab"): []}, tls, vms={141: wazuh}, nodes=("pve3",))
    try:
        from prefect.blocks.system import Secret

        block = f"pve-token-{secrets.token_hex(4)}"
        Secret(value=TOKEN_SECRET).save(block)  # the token's secret from a Secret block, as in production
        for name, value in (("URL", pve.url), ("TOKEN_ID", TOKEN_ID), ("TOKEN_SECRET", block), ("VERIFY", tls[0]),
                            ("POLL_INTERVAL", "0.05"), ("TASK_TIMEOUT", "20"), ("SCRATCH_VMIDS", "9900-9909")):
            monkeypatch.setenv(f"ASTROLAB_BACKUP_PROXMOX_{name}", value)
        assets = lab.registry({"name": "wazuh-vm", "class": "security", "kind": "proxmox-vm", "vm": "wazuh1",
                               "storage": "pbs-lab", "retention": {"keep_last": 1}})  # wazuh1: vm 141 on pve3

        first = backup(assets_file=assets)["snapshots"]["wazuh-vm"]
        second = backup(assets_file=assets)["snapshots"]["wazuh-vm"]
        assert [i["volid"] for i in pve.storages[("pve3", "pbs-lab")]] == [first, second]
        assert first.startswith("pbs-lab:backup/vzdump-qemu-141-") and lab.repo.snapshots() == []  # no restic
        table = Artifact.get("backup-run").data
        assert f"| wazuh-vm | security | proxmox-vm | completed | {second} | {2 << 20} |" in table
        done = events_named("astrolab.backup.completed", "astrolab.backup.asset.wazuh-vm", count=2)
        assert sorted(e.payload["snapshot_id"] for e in done) == sorted([first, second])
        with build_catalog(load_settings(), read_only=True) as store:
            run = latest_backups(store)["wazuh-vm"]
        assert (run["status"], run["snapshot_id"], run["total_bytes"]) == ("ok", second, 2 << 20)

        pve.task_errors["vzdump"] = "job errors"
        state = backup(assets_file=assets, return_state=True)
        assert state.is_failed() and ("wazuh-vm: proxmox vzdump of vm wazuh1 (141) on node pve3 onto pbs-lab: task "
                                      "failed: job errors") in state.message
        with build_catalog(load_settings(), read_only=True) as store:
            assert latest_backups(store)["wazuh-vm"]["status"] == "failed"
            assert latest_backups(store, status="ok")["wazuh-vm"]["snapshot_id"] == second
        pve.task_errors.clear()

        assert rpo_check(assets_file=assets)["states"] == {"wazuh-vm": "ok"}  # read from the storage's content list
        assert "/api2/json/nodes/pve3/storage/pbs-lab/content" in pve.requests

        drill = restore_drill(assets_file=assets)  # sampled: the only asset
        assert drill["result"] == "passed" and drill["snapshot_id"] == second and drill["rto_s"] == 4 * 3600
        assert "restored into scratch vm 9900 on node pve3; 1 disk(s) compared" in drill["detail"]
        assert sorted(pve.vms) == [141] and pve.vms[141] == wazuh
        with build_catalog(load_settings(), read_only=True) as store:
            assert latest_drills(store)["wazuh-vm"]["result"] == "passed"

        pruned = prune(assets_file=assets)
        assert (pruned["kept"], pruned["removed"]) == ({"wazuh-vm": [second]}, {"wazuh-vm": 1})
        with build_catalog(load_settings(), read_only=True) as store:
            recorded = latest_prunes(store)["wazuh-vm"]
        assert (recorded["status"], recorded["snapshots_kept"], recorded["snapshots_removed"]) == ("ok", 1, 1)
        assert [i["volid"] for i in pve.storages[("pve3", "pbs-lab")]] == [second]
        shown = " ".join(Artifact.get(k).data for k in ("backup-run", "backup-rpo", "backup-drill", "backup-prune"))
        assert TOKEN_SECRET not in shown + state.message
    finally:
        pve.close()


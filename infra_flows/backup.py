"""Backups of the asset registry's assets: backup, rpo-check, backup-verify, restore-drill and prune.

Thin flows over tasks/backup: one task run per asset (or repository), so the UI shows each one's state. A completed
backup emits ``astrolab.backup.completed`` (resource: the asset, labelled with its class); prefect.yaml's proactive
automations fire when that event does not arrive within a class's RPO, which also catches a dead worker or scheduler.
rpo-check reads the repositories themselves and emits ``astrolab.backup.rpo-breach`` per asset outside its RPO, which
the notify/backup-rpo-breach deployment turns into a message.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run
from psycopg import sql

from astrolab.resources import PROXMOX_UNSET, build_catalog, build_freshness_readers, build_proxmox
from astrolab.retries import retrying
from astrolab.settings import Settings, load_settings
from tasks.backup.drill import DrillResult, drill_path, drill_postgres
from tasks.backup.drivers import BackupResult, backup_asset, postgres_password, s3_store, supported
from tasks.backup.proxmox import ProxmoxApi, drill_vm, inventory_vm, prune_vm
from tasks.backup.records import (
    BackupRun,
    PruneRun,
    Verification,
    backup_of_snapshot,
    latest_drills,
    latest_prunes,
    latest_verifications,
    record_backup,
    record_drill,
    record_prune,
    record_verification,
)
from tasks.backup.registry import (
    Asset,
    PathAsset,
    PostgresAsset,
    ProxmoxVmAsset,
    Registry,
    RepositorySpec,
    Rke2EtcdAsset,
    S3Asset,
    format_duration,
    registry_of,
)
from tasks.backup.restic import CheckResult, ForgetResult, Repository, open_repository
from tasks.backup.rpo import RpoStatus, check_rpo, last_backups
from tasks.backup.s3drill import drill_s3
from tasks.backup.schedule import is_due
from tasks.backup.status import problems, status_rows
from tasks.backup.verify import DumpCheck, list_dump, rolling_subset
from tasks.inventory.load import load_inventory

COMPLETED_EVENT = "astrolab.backup.completed"
FAILED_EVENT = "astrolab.backup.failed"
BREACH_EVENT = "astrolab.backup.rpo-breach"
WARNING_EVENT = "astrolab.backup.rpo-warning"
VERIFIED_EVENT = "astrolab.backup.verified"
VERIFY_FAILED_EVENT = "astrolab.backup.verify-failed"
LOCK_WAIT = 600.0  # seconds a command waits behind another's lock (a backup behind a prune) before failing
SAFEGUARDS = {"11.2": "Perform automated backups", "11.3": "Protect recovery data",
              "11.5": "Test data recovery"}


class BackupFailed(RuntimeError):
    """Some assets (or repositories) of a run failed; the message lists each with its one-line reason."""


def asset_resource(asset: Asset) -> dict[str, str]:
    """The Prefect event resource of an asset, labelled with its class and kind (the automations match on them)."""
    return {"prefect.resource.id": f"astrolab.backup.asset.{asset.name}", "prefect.resource.name": asset.name,
            "astrolab.backup.class": asset.asset_class, "astrolab.backup.kind": asset.kind}


def repository(spec: RepositorySpec | None, settings: Settings) -> Repository:
    """An opened repository (password from its Secret block or environment), with astrolab's restic cache."""
    if spec is None:  # the registry gives every kind backed up by restic a repository
        raise ValueError("this asset is not backed up into a restic repository")
    return open_repository(spec, cache_dir=settings.home / "restic-cache", lock_wait=LOCK_WAIT)


def select_assets(registry: Registry, asset: str | None, asset_class: str | None) -> list[Asset]:
    """One named asset, the enabled assets of a class, or every enabled asset."""
    if asset:
        return [registry.asset(asset)]
    return registry.select(classes=[asset_class] if asset_class else None)


def _emit(event: str, resource: dict[str, str], payload: dict[str, Any]) -> None:
    emit_event(event, resource=resource, payload=payload)


def _fail_if(failures: list[str], what: str) -> None:
    if failures:
        raise BackupFailed(f"{what}: {len(failures)} failed: " + "; ".join(failures))


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "never"


def proxmox_api(settings: Settings, asset: Asset | None = None) -> ProxmoxApi:
    """The Proxmox API of the proxmox-vm assets; a ValueError (naming the asset) saying what to set when it is not
    configured."""
    api = build_proxmox(settings)
    if api is None:
        raise ValueError(f"asset {asset.name}: {PROXMOX_UNSET}" if asset else PROXMOX_UNSET)
    return api


# -- backup ---------------------------------------------------------------------------------------------------------

@task(name="backup-asset", cache_policy=NO_CACHE, **retrying(2))
def backup_one(asset: Asset, spec: RepositorySpec | None, settings: Settings) -> BackupResult:
    """Back up one asset and emit ``astrolab.backup.completed``; an unsupported kind fails with one line."""
    reason = supported(asset)
    if reason:
        raise ValueError(reason)  # before opening the repository: no password needed to say so
    mirrors = settings.backup.mirror_dir or settings.home / "backup-mirrors"
    inventory = load_inventory(settings.compliance.inventory) if settings.compliance.inventory else None
    if isinstance(asset, ProxmoxVmAsset):  # vzdump onto a Proxmox storage: no restic repository involved
        result = backup_asset(asset, None, inventory=inventory, proxmox=proxmox_api(settings, asset))
    else:
        result = backup_asset(asset, repository(spec, settings), mirrors, inventory)
    summary = result.summary
    _emit(COMPLETED_EVENT, asset_resource(asset),
          {"asset": asset.name, "class": asset.asset_class, "kind": asset.kind, "snapshot_id": summary.snapshot_id,
           "bytes_added": summary.bytes_added, "bytes_processed": summary.total_bytes_processed,
           "files": summary.total_files_processed, "duration_s": round(result.duration, 3),
           "sha256": result.sha256 or "", "repository": asset.destination})
    get_run_logger().info("%s: snapshot %s, %d bytes added in %.1fs", asset.name, result.short_id,
                          summary.bytes_added, result.duration)
    return result


@task(name="due-assets", cache_policy=NO_CACHE)
def due_assets(registry: Registry, targets: list[Asset], now: datetime, settings: Settings) -> list[Asset]:
    """The targets whose schedule has fired since their last backup (read from the repositories); an asset whose
    last backup cannot be read is due (a backup attempt will say why it fails)."""
    last = last_backups(registry, open_repo=lambda spec: repository(spec, settings),
                        readers=build_freshness_readers(settings))
    return [a for a in targets
            if is_due(a.schedule, v if isinstance(v := last.get(a.name), datetime) else None, now)]


@flow(name="backup", log_prints=True)
def backup(assets_file: str | None = None, asset: str | None = None, asset_class: str | None = None,
           due_only: bool = False, config: str | None = None) -> dict[str, Any]:
    """Back up one asset, a class, or every enabled asset; with ``due_only`` only those whose schedule has fired
    since their last backup. Every asset is tried; the run fails at the end naming each asset that failed."""
    settings = load_settings(config)
    registry = registry_of(assets_file, settings)
    targets = select_assets(registry, asset, asset_class)
    if due_only:
        targets = due_assets(registry, targets, datetime.now(UTC), settings)
    dispatched = datetime.now(UTC)
    futures: list[tuple[Asset, PrefectFuture[BackupResult]]] = [
        (a, backup_one.with_options(task_run_name=f"backup-{a.name}").submit(a, registry.repository_of(a),
                                                                            settings))
        for a in targets]
    run_id = str(flow_run.id or "local")
    rows, done, failures, records = [], [], [], []
    for a, future in futures:
        future.wait()
        if future.state.is_completed():
            r = future.result()
            records.append(r.record(run_id))
            done.append(r)
            rows.append({"asset": a.name, "class": a.asset_class, "kind": a.kind, "state": "completed",
                         "snapshot": r.short_id, "bytes added": r.summary.bytes_added,
                         "duration": f"{r.duration:.1f}s", "error": ""})
            continue
        message = _state_message(future)
        failures.append(f"{a.name}: {message}")
        records.append(BackupRun.failure(run_id, a, message, dispatched, datetime.now(UTC)))
        _emit(FAILED_EVENT, asset_resource(a), {"asset": a.name, "class": a.asset_class, "kind": a.kind,
                                                "error": message, "repository": a.destination})
        rows.append({"asset": a.name, "class": a.asset_class, "kind": a.kind, "state": "failed",
                     "snapshot": "", "bytes added": 0, "duration": "", "error": message})
    with build_catalog(settings) as catalog:  # once the backups are done: a DuckDB catalog has one writer at a time
        for record in records:
            record_backup(catalog, record)
    create_markdown_artifact(_markdown("backup", rows, f"{len(done)} of {len(targets)} asset(s) backed up"),
                             key="backup-run", description="Backups of this run")
    print(f"backup: {len(done)} of {len(targets)} asset(s) backed up, {len(failures)} failed")
    _fail_if(failures, "backup")
    return {"run_id": run_id, "assets": [a.name for a in targets],
            "snapshots": {r.asset.name: r.summary.snapshot_id for r in done}}


def _state_message(future: PrefectFuture[Any]) -> str:
    """The one-line reason of a failed task run (its exception's message)."""
    try:
        future.result()
    except Exception as exc:  # noqa: BLE001 - reported, not handled
        return " ".join(str(exc).split()) or type(exc).__name__
    return future.state.message or "failed"


def _markdown(title: str, rows: list[dict[str, Any]], summary: str, extra: str = "") -> str:
    if not rows:
        return f"# {title}\n\n{summary}\n{extra}"
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(r[h]).replace("|", "\\|") for h in header) + " |" for r in rows]
    return f"# {title}\n\n{summary}\n\n" + "\n".join(lines) + "\n" + extra


# -- rpo-check ------------------------------------------------------------------------------------------------------

def _age(status: RpoStatus) -> str:
    if status.age is None:
        return status.reason or "no backup"
    return f"{format_duration(status.age)} of {format_duration(status.rpo)} ({status.fraction:.0%})"


@task(name="check-rpo", cache_policy=NO_CACHE)
def rpo_states(registry: Registry, now: datetime, settings: Settings) -> list[RpoStatus]:
    """Each enabled asset's last backup, read from its repository, against its RPO."""
    return check_rpo(registry, now, open_repo=lambda spec: repository(spec, settings),
                     readers=build_freshness_readers(settings))


@flow(name="rpo-check", log_prints=True)
def rpo_check(assets_file: str | None = None, now: datetime | None = None,
              config: str | None = None) -> dict[str, Any]:
    """Every asset's age against its RPO; ``astrolab.backup.rpo-breach`` per asset outside it (also never backed up
    or unreadable), ``astrolab.backup.rpo-warning`` past 75% of it. ``now`` fixes the clock (default: the time now)."""
    settings = load_settings(config)
    registry = registry_of(assets_file, settings)
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    statuses = rpo_states(registry, now, settings)
    assets = {a.name: a for a in registry.select()}
    for s in statuses:
        if s.state == "ok":
            continue
        event = WARNING_EVENT if s.state == "warning" else BREACH_EVENT
        _emit(event, asset_resource(assets[s.asset]),
              {"asset": s.asset, "class": s.asset_class, "state": s.state, "last_backup": _when(s.last_backup),
               "age_s": None if s.age is None else int(s.age.total_seconds()), "rpo_s": int(s.rpo.total_seconds()),
               "age": _age(s), "reason": s.reason, "repository": s.repository, "checked_at": now.isoformat()})
    with build_catalog(settings) as catalog:
        verifications, drills, prunes = latest_verifications(catalog), latest_drills(catalog), latest_prunes(catalog)
    rows = status_rows(statuses, verifications, drills, prunes)
    counts = {state: sum(s.state == state for s in statuses) for state in ("ok", "warning", "breach", "never",
                                                                            "unknown")}
    summary = f"{len(statuses)} asset(s) at {_when(now)}: " + ", ".join(f"{n} {k}" for k, n in counts.items() if n)
    found = problems(statuses, verifications, drills, prunes)
    listed = "".join(f"- {line}\n" for line in found)
    extra = (f"\n## Problems\n\n{listed}" if found else "") + _safeguards(statuses, drills)
    create_markdown_artifact(_markdown("rpo-check", rows, summary, extra), key="backup-rpo",
                             description="Every asset's last backup against its RPO")
    create_table_artifact(rows, key="backup-rpo-table", description="RPO state per asset")
    print(f"rpo-check: {summary}")
    return {"now": now.isoformat(), "states": {s.asset: s.state for s in statuses}, "counts": counts,
            "problems": found}


def _safeguards(statuses: list[RpoStatus], drills: dict[str, dict[str, Any]]) -> str:
    """What this check evidences for CIS Controls v8: 11.2 automated backups, 11.3 protected recovery data, 11.5
    tested recovery (from the drills' records)."""
    fresh = sum(s.state in ("ok", "warning") for s in statuses)
    drilled = [drills[s.asset] for s in statuses if s.asset in drills]
    passed = sum(d["result"] == "passed" for d in drilled)
    return ("\n## CIS Controls v8\n\n| safeguard | evidence |\n|---|---|\n"
            f"| 11.2 {SAFEGUARDS['11.2']} | {fresh} of {len(statuses)} asset(s) have an automated backup inside "
            "their RPO (read from the repositories) |\n"
            f"| 11.3 {SAFEGUARDS['11.3']} | every repository is restic-encrypted; passwords come from Secret "
            "blocks or the environment, never the registry |\n"
            f"| 11.5 {SAFEGUARDS['11.5']} | {len(drilled)} of {len(statuses)} asset(s) restore-drilled, the last "
            f"drill passed for {passed} (restore-drill flow: restored, compared, timed against the RTO) |\n")


# -- backup-verify --------------------------------------------------------------------------------------------------

@task(name="check-repository", cache_policy=NO_CACHE, **retrying(2))
def check_repository(spec: RepositorySpec, subset: str, settings: Settings) -> CheckResult:
    """``restic check`` of one repository (structure, plus the day's part of the data, or ``all`` of it)."""
    read_all = subset == "all"
    return repository(spec, settings).check(read_data_subset=None if read_all else subset, read_data=read_all)


@task(name="check-dump", cache_policy=NO_CACHE, **retrying(2))
def check_dump(asset: Asset, spec: RepositorySpec, settings: Settings) -> DumpCheck | None:
    """``pg_restore --list`` of a postgres asset's latest dump (None when it has no backup yet)."""
    repo = repository(spec, settings)
    snapshots = repo.snapshots(tags=[asset.tag], latest=1)
    if not snapshots:
        return None
    return list_dump(repo, snapshots[-1], tuple(getattr(asset, "tables", ())))


@flow(name="backup-verify", log_prints=True)
def backup_verify(assets_file: str | None = None, day: date | None = None, parts: int | None = None,
                  read_all: bool = False, config: str | None = None) -> dict[str, Any]:
    """``restic check`` of every repository reading part n of N of its data (n advances by day, N =
    ``backup.verify_days``; ``read_all``: all of it) and ``pg_restore --list`` of each postgres asset's latest dump.
    A damaged repository or unreadable dump fails the run; it is never reported ok."""
    settings = load_settings(config)
    registry = registry_of(assets_file, settings)
    parts = parts or settings.backup.verify_days
    subset = "all" if read_all else rolling_subset(day or datetime.now(UTC).date(), parts)
    assets = registry.select()
    used = [r for r in registry.repositories if any(a.repository == r.name for a in assets)]
    checks = {r.name: check_repository.with_options(task_run_name=f"check-{r.name}").submit(r, subset, settings)
              for r in used}
    # restic check holds the repository's exclusive lock: a dump's listing reads the repository after its check
    dumps = {a.name: check_dump.with_options(task_run_name=f"pg-restore-list-{a.name}").submit(
        a, registry.repository_of(a), settings, wait_for=[checks[a.destination]], return_state=False)
        for a in assets if a.kind == "postgres"}
    failures, rows = [], []
    run_id = str(flow_run.id or "local")
    for name, future in checks.items():
        checked_at = datetime.now(UTC)
        future.wait()
        if future.state.is_completed():
            result = future.result()
        else:  # the repository could not be opened or read: a failed check, never an ok
            result = CheckResult(ok=False, errors=(_state_message(future),), read_data=subset)
        v = Verification.of_check(name, result, checked_at, run_id)
        with build_catalog(settings) as catalog:
            record_verification(catalog, v)
        if not v.ok:
            failures.append(f"repository {name}: " + "; ".join(v.errors[:3]))
        _emit(VERIFIED_EVENT if v.ok else VERIFY_FAILED_EVENT,
              {"prefect.resource.id": f"astrolab.backup.repository.{name}", "prefect.resource.name": name},
              {"repository": name, "ok": v.ok, "read_data_subset": subset, "errors": list(v.errors[:10]),
               "broken_packs": list(result.broken_packs), "duration_s": round(result.duration, 2)})
        rows.append({"what": f"repository {name}", "check": f"restic check, data {subset}",
                     "result": "ok" if v.ok else "FAILED", "detail": "; ".join(v.errors[:3])})
    for name, dump_future in dumps.items():
        dump_future.wait()
        if not dump_future.state.is_completed():
            failures.append(f"asset {name}: {_state_message(dump_future)}")
            rows.append({"what": f"asset {name}", "check": "pg_restore --list", "result": "FAILED",
                         "detail": _state_message(dump_future)})
            continue
        d = dump_future.result()
        if d is None:
            rows.append({"what": f"asset {name}", "check": "pg_restore --list", "result": "no backup yet",
                         "detail": ""})
            continue
        detail = d.error or (f"tables without data: {', '.join(d.missing_tables)}" if d.missing_tables
                             else f"{d.entries} entries")
        if not d.ok:
            failures.append(f"asset {name}: {detail}")
        rows.append({"what": f"asset {name}", "check": f"pg_restore --list (snapshot {d.snapshot_id[:8]})",
                     "result": "ok" if d.ok else "FAILED", "detail": detail})
    create_markdown_artifact(_markdown("backup-verify", rows, f"{len(checks)} repository(ies), {len(dumps)} dump(s); "
                                       f"{len(failures)} problem(s)"), key="backup-verify",
                             description="Repository checks and dump listings")
    print(f"backup-verify: {len(checks)} repositories (data {subset}), {len(dumps)} dumps, {len(failures)} failures")
    _fail_if(failures, "backup-verify")
    return {"subset": subset, "failures": failures, "rows": rows}


# -- prune ----------------------------------------------------------------------------------------------------------

@task(name="prune-asset", cache_policy=NO_CACHE, **retrying(2))
def prune_one(asset: Asset, spec: RepositorySpec | None, settings: Settings, dry_run: bool) -> ForgetResult:
    """``restic forget --prune`` of one asset's snapshots by its retention policy (a proxmox-vm asset: its archives
    deleted through the Proxmox API by the same policy)."""
    if isinstance(asset, ProxmoxVmAsset):
        vm = inventory_vm(load_inventory(settings.compliance.inventory), asset)
        r = prune_vm(proxmox_api(settings, asset), vm, asset.storage, asset.retention, dry_run=dry_run)
        return ForgetResult(keep=r.keep, remove=r.remove, pruned=r.pruned)
    return repository(spec, settings).forget_prune(asset.retention, tags=[asset.tag], dry_run=dry_run)


@flow(name="prune", log_prints=True)
def prune(assets_file: str | None = None, asset: str | None = None, dry_run: bool = False,
          config: str | None = None) -> dict[str, Any]:
    """Apply each asset's retention (``restic forget --prune``, its snapshots only); ``dry_run`` only lists. Every
    prune (and its failure) is recorded in the catalog's backup_prunes."""
    settings = load_settings(config)
    registry = registry_of(assets_file, settings)
    run_id = str(flow_run.id or "local")
    rows, failures, kept, records = [], [], {}, []
    for a in select_assets(registry, asset, None):
        started = datetime.now(UTC)
        future = prune_one.with_options(task_run_name=f"prune-{a.name}").submit(
            a, registry.repository_of(a), settings, dry_run)
        future.wait()
        if not future.state.is_completed():
            message = _state_message(future)
            failures.append(f"{a.name}: {message}")
            records.append(PruneRun.failure(run_id, a, message, started, datetime.now(UTC), dry_run))
            continue
        r = future.result()
        records.append(PruneRun.of_forget(run_id, a, r, started, datetime.now(UTC)))
        kept[a.name] = list(r.keep)
        rows.append({"asset": a.name, "retention": " ".join(a.retention.restic_args()), "kept": len(r.keep),
                     "removed": len(r.remove), "pruned": r.pruned,
                     "freed": "" if r.bytes_freed is None else f"{r.bytes_freed} B"})
    with build_catalog(settings) as catalog:
        for record in records:
            record_prune(catalog, record)
    create_markdown_artifact(_markdown("prune", rows, f"{len(rows)} asset(s)" + (" (dry run)" if dry_run else "")),
                             key="backup-prune", description="Snapshots kept and removed per asset")
    _fail_if(failures, "prune")
    return {"run_id": run_id, "kept": kept, "removed": {r["asset"]: r["removed"] for r in rows}}


# -- restore-drill --------------------------------------------------------------------------------------------------

DRILL_EVENT = "astrolab.backup.drill"


@contextmanager
def scratch_database(asset: PostgresAsset, settings: Settings) -> Iterator[str]:
    """A fresh empty database for a drill (on ``backup.scratch_database_url``'s server, else the asset's own),
    dropped afterwards; yields its URL (no password: PGPASSWORD / the asset's Secret)."""
    server = settings.backup.scratch_database_url or asset.database_url
    password = None if settings.backup.scratch_database_url else postgres_password(asset)
    name = f"astrolab_drill_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, password=password, autocommit=True, connect_timeout=10) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlunsplit(urlsplit(server)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(server, password=password, autocommit=True, connect_timeout=10) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@task(name="restore-drill", cache_policy=NO_CACHE)
def drill_one(asset: Asset, spec: RepositorySpec | None, settings: Settings) -> DrillResult:
    """Restore the asset's newest snapshot into scratch and compare it with the backup's record; time it (a
    proxmox-vm asset: its newest good archive into a scratch VM, compared with the archive's config, destroyed)."""
    if isinstance(asset, ProxmoxVmAsset):
        return drill_vm(proxmox_api(settings, asset), asset, inventory_vm(load_inventory(settings.compliance.inventory),
                                                                   asset))
    repo = repository(spec, settings)
    snapshots = repo.snapshots(tags=[asset.tag])
    if not snapshots:
        raise ValueError(f"asset {asset.name}: no snapshot in repository {asset.repository} to drill")
    snap = max(snapshots, key=lambda s: s.time)
    with build_catalog(settings, read_only=True) as catalog:
        record = backup_of_snapshot(catalog, asset.name, snap.id) or {}
    scratch = settings.backup.scratch_dir or settings.home / "backup-scratch"
    if isinstance(asset, S3Asset):  # into the scratch bucket, via a scratch directory
        return drill_s3(repo, asset, snap, s3_store(asset), settings.backup.scratch_bucket, scratch,
                        record.get("total_files"), record.get("total_bytes"))
    if isinstance(asset, PathAsset | Rke2EtcdAsset):  # etcd: the snapshot file and the token
        scratch.mkdir(parents=True, exist_ok=True)
        return drill_path(repo, asset, snap, scratch, record.get("total_files"), record.get("total_bytes"),
                          live=isinstance(asset, PathAsset) and not asset.host)
    if isinstance(asset, PostgresAsset):
        counts = record.get("row_counts") or {}
        with scratch_database(asset, settings) as url:
            password = None if settings.backup.scratch_database_url else postgres_password(asset)
            return drill_postgres(repo, asset, snap, url, counts, record.get("sha256"), password=password)
    raise ValueError(supported(asset) or f"asset {asset.name}: no restore drill for kind {asset.kind}")


def sample_asset(candidates: list[Asset], drills: dict[str, dict[str, Any]], rng: random.Random) -> Asset:
    """The asset to drill: one never drilled, else the one whose last drill is oldest (ties drawn at random)."""
    never = [a for a in candidates if a.name not in drills]
    if never:
        return rng.choice(never)
    oldest = min(drills[a.name]["started_at"] for a in candidates)
    return rng.choice([a for a in candidates if drills[a.name]["started_at"] == oldest])


@flow(name="restore-drill", log_prints=True)
def restore_drill(assets_file: str | None = None, asset: str | None = None, seed: int | None = None,
                  config: str | None = None) -> dict[str, Any]:
    """Restore one asset (named, or sampled: never drilled first, then the longest since its last drill) into
    scratch, compare with what its backup recorded and measure the restore time against its RTO (CIS 11.5)."""
    settings = load_settings(config)
    registry = registry_of(assets_file, settings)
    if asset:
        chosen = registry.asset(asset)
    else:
        proxmox = settings.backup.proxmox_url is not None  # VMs are sampled only where the API is configured
        candidates = [a for a in registry.select() if supported(a) is None and (proxmox or a.kind != "proxmox-vm")]
        if not candidates:
            raise ValueError("restore-drill: no enabled asset of a kind that can be drilled "
                             "(path, postgres, s3, rke2-etcd; proxmox-vm with backup.proxmox_url)")
        with build_catalog(settings, read_only=True) as catalog:
            drills = latest_drills(catalog)
        chosen = sample_asset(candidates, drills, random.Random(seed))
    future = drill_one.with_options(task_run_name=f"drill-{chosen.name}").submit(
        chosen, registry.repository_of(chosen), settings)
    result = future.result()
    run_id = str(flow_run.id or "local")
    with build_catalog(settings) as catalog:
        record_drill(catalog, result, run_id)
    payload = {"asset": result.asset, "class": chosen.asset_class, "snapshot_id": result.snapshot_id,
               "result": result.result, "restore_s": round(result.restore_s, 3), "rto_s": result.rto.total_seconds(),
               "within_rto": result.within_rto, "detail": result.detail}
    _emit(DRILL_EVENT, asset_resource(chosen), payload)
    snapshot = result.snapshot_id if isinstance(chosen, ProxmoxVmAsset) else result.snapshot_id[:8]
    row = {"asset": result.asset, "class": chosen.asset_class, "snapshot": snapshot,
           "restore vs RTO": f"{result.restore_s:.1f}s of {format_duration(result.rto)}", "result": result.result,
           "detail": result.detail}
    evidence = ("\n## CIS Controls v8\n\n| safeguard | evidence |\n|---|---|\n"
                f"| 11.5 {SAFEGUARDS['11.5']} | {result.asset} restored from snapshot {snapshot} and "
                f"compared: {result.result}, restore {result.restore_s:.1f}s against an RTO of "
                f"{format_duration(result.rto)} |\n")
    create_markdown_artifact(_markdown("restore-drill", [row], f"{result.asset}: {result.result}", evidence),
                             key="backup-drill", description="Restore drill: restored, compared, timed")
    print(f"restore-drill: {result.asset} {result.result} ({result.detail})")
    if not result.passed:
        raise BackupFailed(f"restore-drill: {result.asset} failed: {result.detail}")
    return {"run_id": run_id, **payload, "mismatches": list(result.mismatches)}

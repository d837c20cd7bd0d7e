"""One backup of one asset, by its kind: ``path`` (local directories and git repositories, ``restic backup``),
``postgres`` (``pg_dump -Fc`` into ``restic backup --stdin``) and ``s3`` (the bucket prefix mirrored into a local
directory, then ``restic backup`` of that directory) and ``rke2-etcd`` (``rke2 etcd-snapshot save`` on the server
node, then that snapshot and the server token backed up there) and ``proxmox-vm`` (vzdump through the Proxmox API onto
the asset's Proxmox storage: the archive is the backup, its volid the snapshot id, its size the bytes; restic is not
involved). A path asset on an inventory host, and an etcd snapshot, are backed up by restic on that host, started over
SSH (the repository must be reachable from there)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tasks.backup.etcd import save_snapshot, snapshot_name
from tasks.backup.postgres import backup_database
from tasks.backup.proxmox import ProxmoxApi, inventory_vm, vzdump
from tasks.backup.records import BackupRun
from tasks.backup.registry import Asset, PathAsset, PostgresAsset, ProxmoxVmAsset, Rke2EtcdAsset, S3Asset
from tasks.backup.restic import BackupSummary, Repository, ResticError
from tasks.backup.s3mirror import mirror_prefix
from tasks.inventory.model import Inventory
from tasks.inventory.ssh import ssh_argv
from tasks.storage.s3 import ObjectStore, S3Config


class UnsupportedAsset(ValueError):
    """An asset whose kind (or placement) astrolab cannot back up yet."""


@dataclass(frozen=True)
class BackupResult:
    """One completed backup: restic's summary, when it ran, and for a dump its sha256 and row counts."""

    asset: Asset
    summary: BackupSummary
    started: datetime
    finished: datetime
    sha256: str | None = None
    row_counts: dict[str, int] | None = None

    @property
    def duration(self) -> float:
        return (self.finished - self.started).total_seconds()

    @property
    def short_id(self) -> str:
        """The snapshot id as reports show it: restic's first 8 hex digits, a Proxmox volid whole."""
        sid = self.summary.snapshot_id
        return sid if isinstance(self.asset, ProxmoxVmAsset) else sid[:8]

    def record(self, run_id: str) -> BackupRun:
        """The catalog record of this backup."""
        return BackupRun.of_summary(run_id, self.asset, self.summary, self.started, self.finished, self.sha256,
                                    self.row_counts)


def secret_value(name: str, what: str) -> str:
    """The value of a Prefect Secret block (imported lazily: the drivers run without Prefect)."""
    from prefect.blocks.system import Secret

    try:
        return str(Secret.load(name).get())  # type: ignore[union-attr]
    except ValueError as exc:
        raise ValueError(f"{what}: no Prefect Secret block named {name!r} ({exc})") from None


def postgres_password(asset: PostgresAsset) -> str | None:
    """The database password: the asset's Secret block, else PGPASSWORD (else libpq's .pgpass)."""
    if asset.password_secret:
        return secret_value(asset.password_secret, f"asset {asset.name}.password_secret")
    return os.environ.get("PGPASSWORD") or None


def s3_store(asset: S3Asset) -> ObjectStore:
    """A client for the asset's S3 server: keys from its Secret block ({access_key, secret_key}), else AWS_*."""
    access = secret = None
    if asset.credentials_secret:
        from prefect.blocks.system import Secret

        value = Secret.load(asset.credentials_secret).get()  # type: ignore[union-attr]
        if not isinstance(value, dict) or not {"access_key", "secret_key"} <= set(value):
            raise ValueError(f"asset {asset.name}.credentials_secret: Secret block {asset.credentials_secret!r} "
                             "must hold {access_key, secret_key}")
        access, secret = str(value["access_key"]), str(value["secret_key"])
    return ObjectStore(S3Config(endpoint=asset.endpoint, access_key=access, secret_key=secret))


def mirror_dir(asset: S3Asset, mirror_root: Path) -> Path:
    """Where an S3 asset is mirrored (kept between backups, so that only changed objects are downloaded)."""
    return mirror_root / asset.name


def supported(asset: Asset) -> str | None:
    """None when the asset can be backed up here, else the one-line reason why not."""
    if isinstance(asset, PathAsset | PostgresAsset | S3Asset | Rke2EtcdAsset | ProxmoxVmAsset):
        return None
    return f"asset {asset.name}: kind {asset.kind} is not supported yet"


def remote_via(asset: PathAsset | Rke2EtcdAsset, inventory: Inventory | None) -> list[str] | None:
    """The ssh command line to the asset's host, or None for an asset where the flow runs."""
    if not asset.host:
        return None
    if inventory is None:
        raise ValueError(f"asset {asset.name}: host {asset.host} needs the inventory (compliance.inventory, "
                         "ASTROLAB_COMPLIANCE_INVENTORY) to be reached over SSH")
    return ssh_argv(inventory, inventory.host(asset.host))


def backup_vm(asset: ProxmoxVmAsset, proxmox: ProxmoxApi | None, inventory: Inventory | None) -> BackupResult:
    """vzdump of a proxmox-vm asset's VM (node and vmid from the inventory) onto its storage: the new archive as a
    backup result (snapshot id = volid, bytes = its size, one file; no checksum: PVE lists none)."""
    if proxmox is None:
        raise ValueError(f"asset {asset.name}: a proxmox-vm asset needs the Proxmox API (backup.proxmox_url, "
                         "backup.proxmox_token_id and backup.proxmox_token or backup.proxmox_token_secret)")
    vm = inventory_vm(inventory, asset)
    started = datetime.now(UTC)
    archive = vzdump(proxmox, vm, asset.storage, asset.mode)
    finished = datetime.now(UTC)
    summary = BackupSummary(snapshot_id=archive.volid, files_new=1, files_changed=0, files_unmodified=0,
                            data_added=archive.size, total_files_processed=1, total_bytes_processed=archive.size,
                            duration=(finished - started).total_seconds())
    return BackupResult(asset, summary, started, finished)


def backup_asset(asset: Asset, repo: Repository | None, mirror_root: Path | None = None,
                 inventory: Inventory | None = None, proxmox: ProxmoxApi | None = None) -> BackupResult:
    """Back up one asset into its repository (snapshots tagged ``asset=<name>``); a failure raises with one line.
    S3 assets are mirrored under ``mirror_root`` first; a path asset on an inventory host is backed up there; a
    proxmox-vm asset is dumped through ``proxmox`` onto its Proxmox storage (no repository needed)."""
    reason = supported(asset)
    if reason:
        raise UnsupportedAsset(reason)
    if isinstance(asset, ProxmoxVmAsset):
        return backup_vm(asset, proxmox, inventory)
    if repo is None:
        raise ValueError(f"asset {asset.name}: a {asset.kind} asset needs its restic repository")
    started = datetime.now(UTC)
    if isinstance(asset, PathAsset | Rke2EtcdAsset):
        via = remote_via(asset, inventory)
        try:
            if isinstance(asset, PathAsset):
                summary = repo.backup_path(asset.paths, tags=[asset.tag], excludes=asset.excludes, via=via)
            else:
                assert via is not None  # an rke2-etcd asset always names its host
                snapshot = save_snapshot(via, asset.host, snapshot_name(asset.name, started), asset.snapshot_dir)
                summary = repo.backup_path([snapshot, asset.token_path], tags=[asset.tag], via=via)
        except ResticError as exc:
            if via:  # the inventory's hosts may share an address: name the host
                raise type(exc)(exc.kind, f"host {asset.host}: {exc}", exc.snapshot_id) from None
            raise
        return BackupResult(asset, summary, started, datetime.now(UTC))
    if isinstance(asset, S3Asset):
        if mirror_root is None:
            raise ValueError(f"asset {asset.name}: an s3 asset needs a mirror directory")
        local = mirror_dir(asset, mirror_root)
        mirror_prefix(s3_store(asset), asset.bucket, asset.prefix, local)
        summary = repo.backup_path([str(local)], tags=[asset.tag])
        return BackupResult(asset, summary, started, datetime.now(UTC))
    assert isinstance(asset, PostgresAsset)
    dump = backup_database(repo, asset.database_url, asset.tables, postgres_password(asset), tags=[asset.tag])
    return BackupResult(asset, dump.summary, started, datetime.now(UTC), dump.sha256, dump.row_counts)

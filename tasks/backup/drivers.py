"""One backup of one asset, by its kind: ``path`` (local directories and git repositories, ``restic backup``) and
``postgres`` (``pg_dump -Fc`` into ``restic backup --stdin``). The other kinds have no driver yet and fail with one
line saying so; a path asset on another host does too (restic would have to run there, over SSH)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tasks.backup.postgres import backup_database
from tasks.backup.registry import Asset, PathAsset, PostgresAsset
from tasks.backup.restic import Repository


class UnsupportedAsset(ValueError):
    """An asset whose kind (or placement) astrolab cannot back up yet."""


@dataclass(frozen=True)
class BackupResult:
    """What one completed backup produced (what the event, the artifact and the catalog record carry)."""

    asset: str
    asset_class: str
    kind: str
    snapshot_id: str
    bytes_added: int
    bytes_processed: int
    files: int
    duration: float
    sha256: str | None = None  # of the dump (postgres)
    row_counts: dict[str, int] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


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


def supported(asset: Asset) -> str | None:
    """None when the asset can be backed up here, else the one-line reason why not."""
    if isinstance(asset, PathAsset):
        return (f"asset {asset.name}: path assets on another host ({asset.host}) are not supported yet "
                "(restic would run there over SSH)") if asset.host else None
    if isinstance(asset, PostgresAsset):
        return None
    return f"asset {asset.name}: kind {asset.kind} is not supported yet"


def backup_asset(asset: Asset, repo: Repository, at: datetime | None = None) -> BackupResult:
    """Back up one asset into its repository (snapshots tagged ``asset=<name>``); a failure raises with one line."""
    reason = supported(asset)
    if reason:
        raise UnsupportedAsset(reason)
    started = time.monotonic()
    common: dict[str, Any] = {"asset": asset.name, "asset_class": asset.asset_class, "kind": asset.kind}
    if isinstance(asset, PathAsset):
        summary = repo.backup_path(asset.paths, tags=[asset.tag], excludes=asset.excludes, at=at)
        return BackupResult(**common, snapshot_id=summary.snapshot_id, bytes_added=summary.bytes_added,
                            bytes_processed=summary.total_bytes_processed, files=summary.total_files_processed,
                            duration=time.monotonic() - started, warnings=summary.warnings)
    assert isinstance(asset, PostgresAsset)
    dump = backup_database(repo, asset.database_url, asset.tables, postgres_password(asset), tags=[asset.tag])
    return BackupResult(**common, snapshot_id=dump.snapshot_id, bytes_added=dump.summary.bytes_added,
                        bytes_processed=dump.size, files=1, duration=time.monotonic() - started, sha256=dump.sha256,
                        row_counts=dump.row_counts)


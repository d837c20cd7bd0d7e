"""One backup of one asset, by its kind: ``path`` (local directories and git repositories, ``restic backup``) and
``postgres`` (``pg_dump -Fc`` into ``restic backup --stdin``). The other kinds have no driver yet and fail with one
line saying so; a path asset on another host does too (restic would have to run there, over SSH)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime

from tasks.backup.postgres import backup_database
from tasks.backup.records import BackupRun
from tasks.backup.registry import Asset, PathAsset, PostgresAsset
from tasks.backup.restic import BackupSummary, Repository


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


def supported(asset: Asset) -> str | None:
    """None when the asset can be backed up here, else the one-line reason why not."""
    if isinstance(asset, PathAsset):
        return (f"asset {asset.name}: path assets on another host ({asset.host}) are not supported yet "
                "(restic would run there over SSH)") if asset.host else None
    if isinstance(asset, PostgresAsset):
        return None
    return f"asset {asset.name}: kind {asset.kind} is not supported yet"


def backup_asset(asset: Asset, repo: Repository) -> BackupResult:
    """Back up one asset into its repository (snapshots tagged ``asset=<name>``); a failure raises with one line."""
    reason = supported(asset)
    if reason:
        raise UnsupportedAsset(reason)
    started = datetime.now(UTC)
    if isinstance(asset, PathAsset):
        summary = repo.backup_path(asset.paths, tags=[asset.tag], excludes=asset.excludes)
        return BackupResult(asset, summary, started, datetime.now(UTC))
    assert isinstance(asset, PostgresAsset)
    dump = backup_database(repo, asset.database_url, asset.tables, postgres_password(asset), tags=[asset.tag])
    return BackupResult(asset, dump.summary, started, datetime.now(UTC), dump.sha256, dump.row_counts)

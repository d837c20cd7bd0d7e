"""The RPO check: how old each asset's last good backup is, read from where the backups live, against its RPO.

Freshness comes from the repositories themselves, not from astrolab's own records: one ``restic snapshots --json``
per repository (whatever the number of assets in it), grouped by the ``asset=<name>`` tag, the newest snapshot per
asset. restic writes a snapshot only once a backup has completed, so a killed or failed backup never counts.
Kinds whose backups live elsewhere have their own reader (``FreshnessReader``, by kind in ``readers``): a Proxmox VM's
vzdump archives are on a Proxmox storage, read from its content list (:func:`tasks.backup.proxmox.proxmox_reader`).
The RESTIC_KINDS without a reader (``path``, ``postgres``, ``s3``, and ``rke2-etcd``, whose snapshot the backup flow
copies into the repository under the asset's tag) are read from restic; any other kind without a reader is unknown.

States: ``never`` (no backup), ``ok``, ``warning`` (older than 75% of the RPO), ``breach`` (older than the RPO), and
``unknown``: the freshness could not be read (wrong password, missing repository, unreachable S3, Proxmox API down).
An unknown is never folded into ok or never; it carries the one-line reason and counts as a problem like a breach.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from tasks.backup.registry import Asset, Registry, RepositorySpec
from tasks.backup.restic import Repository, ResticError, open_repository

RpoState = Literal["ok", "warning", "breach", "never", "unknown"]
WARNING_FRACTION = 0.75
PROBLEM_STATES: tuple[RpoState, ...] = ("warning", "breach", "never", "unknown")
RESTIC_KINDS = ("path", "postgres", "s3", "rke2-etcd")  # kinds whose backups are restic snapshots in the repository


@dataclass(frozen=True)
class Unreadable:
    """Freshness that could not be read, and why (one line, no secret)."""

    reason: str


Freshness = datetime | None | Unreadable  # the last completed backup, none yet, or could not be read
FreshnessReader = Callable[[Sequence[Asset]], dict[str, Freshness]]
RepoOpener = Callable[[RepositorySpec], Repository]


@dataclass(frozen=True)
class RpoStatus:
    """One asset's last backup against its RPO."""

    asset: str
    asset_class: str
    kind: str
    rpo: timedelta
    last_backup: datetime | None
    age: timedelta | None
    state: RpoState
    reason: str = ""  # why the state is unknown
    repository: str = ""

    @property
    def fraction(self) -> float | None:
        """Age as a fraction of the RPO (1.0: exactly at the RPO); None when there is no backup or it is unknown."""
        return None if self.age is None else self.age / self.rpo

    @property
    def problem(self) -> bool:
        return self.state in PROBLEM_STATES


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError(f"the RPO check needs a timezone-aware time, got {now.isoformat()}")
    return now


def assess(asset: Asset, last_backup: Freshness, now: datetime) -> RpoStatus:
    """The state of one asset: never / breach (age > RPO) / warning (age > 75% of the RPO) / ok, or unknown when its
    freshness could not be read."""
    def status(state: RpoState, last: datetime | None = None, age: timedelta | None = None,
               reason: str = "") -> RpoStatus:
        return RpoStatus(asset=asset.name, asset_class=asset.asset_class, kind=asset.kind, rpo=asset.rpo,
                         last_backup=last, age=age, state=state, reason=reason, repository=asset.destination)

    if isinstance(last_backup, Unreadable):
        return status("unknown", reason=last_backup.reason)
    if last_backup is None:
        return status("never")
    age = _aware(now) - last_backup
    return status("breach" if age > asset.rpo else "warning" if age > asset.rpo * WARNING_FRACTION else "ok",
                  last_backup, age)


def restic_freshness(spec: RepositorySpec, assets: Sequence[Asset], open_repo: RepoOpener = open_repository
                     ) -> dict[str, Freshness]:
    """The newest completed snapshot of each asset in one repository, from a single ``restic snapshots``; every
    asset is Unreadable when the repository cannot be opened or read."""
    try:
        snapshots = open_repo(spec).snapshots()
    except ResticError as exc:
        return {a.name: Unreadable(f"repository {spec.name}: {exc}") for a in assets}
    newest: dict[str, Freshness] = {a.name: None for a in assets}
    tags = {a.tag: a.name for a in assets}
    for snap in snapshots:
        for tag in snap.tags:
            name = tags.get(tag)
            if name is not None:
                current = newest[name]
                completed = snap.completed
                if not isinstance(current, datetime) or completed > current:
                    newest[name] = completed
    return newest


def last_backups(registry: Registry, open_repo: RepoOpener = open_repository,
                 readers: Mapping[str, FreshnessReader] | None = None) -> dict[str, Freshness]:
    """Each enabled asset's last completed backup (None: never; Unreadable: could not be read, with the reason):
    ``readers`` by kind where the kind has one, else one ``restic snapshots`` per repository (RESTIC_KINDS)."""
    readers = readers or {}
    assets = registry.select()
    out: dict[str, Freshness] = {}
    for kind, reader in readers.items():
        mine = [a for a in assets if a.kind == kind]
        if mine:
            out.update(reader(mine))
    by_repo: dict[str, list[Asset]] = {}
    for a in assets:
        if a.kind in readers:
            continue
        if a.kind in RESTIC_KINDS:
            by_repo.setdefault(a.destination, []).append(a)
        else:
            out[a.name] = Unreadable(f"no freshness reader for kind {a.kind} (its backups are not in restic)")
    for repo_name, members in by_repo.items():
        out.update(restic_freshness(registry.repository(repo_name), members, open_repo))
    return {a.name: out.get(a.name) for a in assets}


def check_rpo(registry: Registry, now: datetime, open_repo: RepoOpener = open_repository,
              readers: Mapping[str, FreshnessReader] | None = None) -> list[RpoStatus]:
    """Every enabled asset's RPO state at ``now`` (timezone-aware), in registry order."""
    _aware(now)
    freshness = last_backups(registry, open_repo, readers)
    return [assess(a, freshness[a.name], now) for a in registry.select()]

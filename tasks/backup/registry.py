"""The asset registry: what is backed up (its class, kind and source), into which repository, how often and for how
long. One YAML file, validated like the inventory: every mistake is one line naming the file, the place and the value,
with a "did you mean" hint.

Each class carries the lab's recovery objectives (docs RPO 1h / RTO 1h, infrastructure config 4h / 2h, security
framework config 8h / 4h, research data 12h / 2h, development environment 24h / 6h). An asset may set a tighter RPO or
RTO, never a looser one. Its schedule is derived from its RPO (a run every RPO/2 or more often, rounded to a cron
step, at a minute spread by the asset's name) unless set, and a set schedule must still fire at least once per RPO.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, ValidationInfo, model_validator
from pydantic_core import ErrorDetails

from tasks.errors import read_yaml
from tasks.inventory.load import load_inventory
from tasks.inventory.model import Inventory, did_you_mean

if TYPE_CHECKING:
    from astrolab.settings import Settings


class RegistryError(ValueError):
    """An asset registry that cannot be used."""


@dataclass(frozen=True)
class Objectives:
    """Recovery point and recovery time objectives of a class of assets."""

    rpo: timedelta
    rto: timedelta


H = timedelta(hours=1)
CLASSES: dict[str, Objectives] = {
    "documentation": Objectives(rpo=1 * H, rto=1 * H),
    "infrastructure": Objectives(rpo=4 * H, rto=2 * H),
    "security": Objectives(rpo=8 * H, rto=4 * H),
    "research-data": Objectives(rpo=12 * H, rto=2 * H),
    "development": Objectives(rpo=24 * H, rto=6 * H),
}
KINDS = ("path", "postgres", "s3", "proxmox-vm", "rke2-etcd")
SCHEDULE_FRACTION = 2  # a derived schedule runs at least every RPO / 2, so one failed run does not breach the RPO

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_NAME = r"^[a-z0-9][a-z0-9_.-]*$"


def parse_duration(value: Any) -> Any:
    """``"90m"``, ``"1h30m"``, ``"2d"`` or seconds as a number -> timedelta (anything else is left to pydantic)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str):
        match = _DURATION.match(value.strip())
        if match and any(match.groups()):
            d, h, m, s = (int(g or 0) for g in match.groups())
            return timedelta(days=d, hours=h, minutes=m, seconds=s)
        raise ValueError(f"not a duration like 30m, 4h, 1h30m or 2d: {value!r}")
    return value


def format_duration(value: timedelta) -> str:
    """timedelta -> the registry's own notation (``4h``, ``1h30m``, ``2d``)."""
    seconds = int(value.total_seconds())
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            out += f"{seconds // size}{unit}"
            seconds %= size
    return out or "0s"


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Retention(_Model):
    """How many snapshots ``restic forget`` keeps: the newest per hour/day/week/month/year for the last n such
    periods that have snapshots (calendar periods in UTC), plus the last n whatever their age."""

    keep_last: int | None = Field(default=None, ge=1)
    keep_hourly: int | None = Field(default=None, ge=1)
    keep_daily: int | None = Field(default=None, ge=1)
    keep_weekly: int | None = Field(default=None, ge=1)
    keep_monthly: int | None = Field(default=None, ge=1)
    keep_yearly: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _keeps_something(self) -> Retention:
        if not self.restic_args():
            raise ValueError("a retention policy must keep something (keep_last/hourly/daily/weekly/monthly/yearly)")
        return self

    def restic_args(self) -> list[str]:
        """The ``--keep-*`` options of ``restic forget``."""
        args: list[str] = []
        for name, value in self:
            if value is not None:
                args += [f"--{name.replace('_', '-')}", str(value)]
        return args


DEFAULT_RETENTION: dict[str, Retention] = {
    "documentation": Retention(keep_hourly=24, keep_daily=14, keep_weekly=8, keep_monthly=12),
    "infrastructure": Retention(keep_hourly=12, keep_daily=14, keep_weekly=8, keep_monthly=12),
    "security": Retention(keep_daily=30, keep_weekly=12, keep_monthly=24),
    "research-data": Retention(keep_daily=14, keep_weekly=8, keep_monthly=12),
    "development": Retention(keep_daily=7, keep_weekly=4, keep_monthly=3),
}


def derived_schedule(rpo: timedelta, name: str) -> str:
    """A cron schedule firing at least every ``rpo / SCHEDULE_FRACTION``, on a cron step (a divisor of 60 minutes or
    24 hours, else daily), at a minute offset spread by the asset's name so that assets do not all start at once."""
    every = rpo / SCHEDULE_FRACTION
    spread = zlib.crc32(name.encode())
    if every < H:
        step = max((d for d in (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30) if d * 60 <= every.total_seconds()), default=1)
        return f"{spread % step}-59/{step} * * * *" if step > 1 else "* * * * *"
    minute = spread % 60
    if every < 24 * H:
        step = max(d for d in (1, 2, 3, 4, 6, 8, 12) if d * 3600 <= every.total_seconds())
        return f"{minute} */{step} * * *" if step > 1 else f"{minute} * * * *"
    return f"{minute} {spread // 60 % 24} * * *"


def _cron_field(field: str, low: int, high: int) -> list[int] | None:
    """The values of one cron field (``*``, ``a``, ``a-b``, ``*/n``, ``a-b/n``, lists); None if not understood."""
    values: set[int] = set()
    for part in field.split(","):
        match = re.fullmatch(r"(\*|\d+(?:-\d+)?)(?:/(\d+))?", part)
        if not match:
            return None
        span, step = match.group(1), int(match.group(2) or 1)
        if span == "*":
            a, b = low, high
        elif "-" in span:
            a, b = (int(x) for x in span.split("-"))
        else:
            a = int(span)
            b = high if match.group(2) else a
        if not low <= a <= b <= high or step < 1:
            return None
        values.update(range(a, b + 1, step))
    return sorted(values)


def schedule_gap(schedule: str) -> timedelta | None:
    """The longest time between two runs of a daily-repeating cron schedule (day, month and weekday ``*``);
    None when the schedule is not of that form (then it is not checked against the RPO)."""
    fields = schedule.split()
    if len(fields) != 5 or fields[2:] != ["*", "*", "*"]:
        return None
    minutes, hours = _cron_field(fields[0], 0, 59), _cron_field(fields[1], 0, 23)
    if not minutes or not hours:
        return None
    times = [h * 60 + m for h in hours for m in minutes]
    gaps = [b - a for a, b in zip(times, times[1:])] + [times[0] + 1440 - times[-1]]
    return timedelta(minutes=max(gaps))


def _check_schedule(schedule: str) -> None:
    fields = schedule.split()
    if len(fields) != 5:
        raise ValueError(f"schedule {schedule!r} is not a 5-field cron expression (minute hour day month weekday)")


def _context_inventory(info: ValidationInfo) -> Inventory | None:
    return (info.context or {}).get("inventory") if isinstance(info.context, dict) else None


def _host_in(inventory: Inventory | None, name: str | None, what: str, role: str | None = None) -> None:
    if inventory is None or name is None:
        return
    names = [h.name for h in inventory.hosts]
    if name not in names:
        raise ValueError(f"{what} {name!r} is not in the inventory{did_you_mean(name, names)}")
    if role and role not in inventory.host(name).roles:
        raise ValueError(f"{what} {name!r} does not have the role {role} in the inventory")


class _Asset(_Model):
    """What every asset has: a class (its RPO/RTO), a kind (how it is backed up), where its backups go (a restic
    repository; a proxmox-vm asset's go to its Proxmox storage instead) and a retention."""

    name: str = Field(pattern=_NAME)
    asset_class: Literal["documentation", "infrastructure", "security", "research-data", "development"] = Field(
        alias="class")
    repository: str | None = None
    rpo: Duration
    rto: Duration
    schedule: str
    retention: Retention
    tags: tuple[str, ...] = ()
    enabled: bool = True
    description: str = ""

    @property
    def destination(self) -> str:
        """Where the asset's backups go, as records name it: its restic repository."""
        return self.repository or ""

    @model_validator(mode="before")
    @classmethod
    def _class_defaults(cls, data: Any) -> Any:
        """Fill rpo/rto/retention from the class and the schedule from the RPO (only where not set)."""
        if not isinstance(data, dict) or data.get("class") not in CLASSES:
            return data
        objectives = CLASSES[data["class"]]
        data = {"rpo": objectives.rpo, "rto": objectives.rto, "retention": DEFAULT_RETENTION[data["class"]]} | data
        if "schedule" not in data:
            try:
                rpo = parse_duration(data["rpo"])
            except ValueError:
                return data  # the rpo field reports it
            if isinstance(rpo, timedelta) and rpo > timedelta(0):
                data["schedule"] = derived_schedule(rpo, str(data.get("name", "")))
        return data

    @model_validator(mode="after")
    def _within_class(self) -> _Asset:
        objectives = CLASSES[self.asset_class]
        for what, mine, limit in (("rpo", self.rpo, objectives.rpo), ("rto", self.rto, objectives.rto)):
            if mine <= timedelta(0):
                raise ValueError(f"asset {self.name}: {what} must be positive")
            if mine > limit:
                raise ValueError(f"asset {self.name}: {what} {format_duration(mine)} is looser than the class "
                                 f"{self.asset_class}'s {format_duration(limit)}")
        _check_schedule(self.schedule)
        gap = schedule_gap(self.schedule)
        if gap is not None and gap > self.rpo:
            raise ValueError(f"asset {self.name}: schedule {self.schedule!r} leaves {format_duration(gap)} between "
                             f"runs, more than the rpo {format_duration(self.rpo)}")
        return self

    @property
    def tag(self) -> str:
        """The restic tag every snapshot of this asset carries (the RPO check and retention select by it)."""
        return f"asset={self.name}"


class PathAsset(_Asset):
    """Directories and git repositories on a host (``restic backup`` of the paths)."""

    kind: Literal["path"]
    host: str | None = None  # an inventory host; None: where the flow runs
    paths: tuple[str, ...] = Field(min_length=1)
    excludes: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _paths(self, info: ValidationInfo) -> PathAsset:
        for p in self.paths:
            if not PurePosixPath(p).is_absolute():
                raise ValueError(f"asset {self.name}: path {p!r} must be absolute")
        _host_in(_context_inventory(info), self.host, "host")
        return self


class PostgresAsset(_Asset):
    """A PostgreSQL database: ``pg_dump -Fc`` streamed into ``restic backup --stdin``, with the dump's sha256 and the
    row counts of ``tables`` (read in the dump's own snapshot) recorded."""

    kind: Literal["postgres"]
    host: str | None = None
    database_url: str
    password_secret: str | None = None  # Prefect Secret block; else PGPASSWORD / .pgpass
    tables: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _url(self, info: ValidationInfo) -> PostgresAsset:
        parts = urlsplit(self.database_url)
        if parts.scheme not in ("postgresql", "postgres") or not parts.path.strip("/"):
            raise ValueError(f"asset {self.name}: database_url must be postgresql://user@host:port/dbname")
        if parts.password:
            raise ValueError(f"asset {self.name}: database_url must not carry a password; use password_secret")
        _host_in(_context_inventory(info), self.host, "host")
        return self


class S3Asset(_Asset):
    """A bucket (or a prefix of it) on an S3 server, mirrored to a staging directory and backed up with restic."""

    kind: Literal["s3"]
    endpoint: str
    bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    prefix: str = ""
    credentials_secret: str | None = None  # Prefect Secret block {access_key, secret_key}; else AWS_* variables

    @model_validator(mode="after")
    def _endpoint(self) -> S3Asset:
        parts = urlsplit(self.endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.username:
            raise ValueError(f"asset {self.name}: endpoint must be http(s)://host[:port] without credentials")
        return self


class ProxmoxVmAsset(_Asset):
    """A Proxmox VM, backed up by ``vzdump`` through the Proxmox API onto a Proxmox storage."""

    kind: Literal["proxmox-vm"]
    vm: str  # the inventory VM (its node and vmid come from there)
    storage: str
    mode: Literal["snapshot", "suspend", "stop"] = "snapshot"

    @property
    def destination(self) -> str:
        """The Proxmox storage that holds its vzdump archives."""
        return f"proxmox:{self.storage}"

    @model_validator(mode="after")
    def _vm(self, info: ValidationInfo) -> ProxmoxVmAsset:
        inventory = _context_inventory(info)
        if inventory is not None:
            names = [v.name for v in inventory.vms]
            if self.vm not in names:
                raise ValueError(f"vm {self.vm!r} is not a vm in the inventory{did_you_mean(self.vm, names)}")
        return self


class Rke2EtcdAsset(_Asset):
    """The RKE2 etcd datastore: ``rke2 etcd-snapshot save`` over SSH on a server node; the snapshot and the server
    token (without which a snapshot cannot be restored) go to the repository."""

    kind: Literal["rke2-etcd"]
    host: str
    snapshot_dir: str = "/var/lib/rancher/rke2/server/db/snapshots"
    token_path: str = "/var/lib/rancher/rke2/server/token"

    @model_validator(mode="after")
    def _server(self, info: ValidationInfo) -> Rke2EtcdAsset:
        _host_in(_context_inventory(info), self.host, "host", role="rke2-server")
        return self


Asset = Annotated[PathAsset | PostgresAsset | S3Asset | ProxmoxVmAsset | Rke2EtcdAsset, Field(discriminator="kind")]
ASSET_MODELS: dict[str, type[_Asset]] = {"path": PathAsset, "postgres": PostgresAsset, "s3": S3Asset,
                                         "proxmox-vm": ProxmoxVmAsset, "rke2-etcd": Rke2EtcdAsset}


class RepositorySpec(_Model):
    """A restic repository: a local directory or ``s3:http(s)://host:port/bucket/prefix`` (path-style, e.g. MinIO).
    Always encrypted; the password comes from a Prefect Secret block or an environment variable, never the file."""

    name: str = Field(pattern=_NAME)
    url: str
    password_secret: str | None = None
    password_env: str = "RESTIC_PASSWORD"
    s3_credentials_secret: str | None = None  # Secret block {access_key, secret_key}; else the AWS_* variables
    description: str = ""

    @model_validator(mode="after")
    def _url(self) -> RepositorySpec:
        if self.url.startswith("s3://"):
            raise ValueError(f"repository {self.name}: restic writes S3 urls as s3:http(s)://host:port/bucket/prefix, "
                             f"not {self.url!r}")
        if self.url.startswith("s3:"):
            parts = urlsplit(self.url[3:])
            if parts.scheme not in ("http", "https") or not parts.hostname or not parts.path.strip("/"):
                raise ValueError(f"repository {self.name}: an S3 url is s3:http(s)://host[:port]/bucket[/prefix]")
            if parts.username or parts.password:
                raise ValueError(f"repository {self.name}: the url must not carry credentials")
        elif "://" in self.url or ":" in self.url.split("/")[0]:
            raise ValueError(f"repository {self.name}: url must be an absolute path or s3:http(s)://host/bucket/prefix")
        elif not PurePosixPath(self.url).is_absolute():
            raise ValueError(f"repository {self.name}: a local repository path must be absolute")
        return self

    @property
    def is_s3(self) -> bool:
        return self.url.startswith("s3:")


class Registry(_Model):
    """The whole asset registry: repositories and the assets backed up into them."""

    repositories: tuple[RepositorySpec, ...] = Field(min_length=1)
    assets: tuple[Asset, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> Registry:
        for what, names in (("repository", [r.name for r in self.repositories]),
                            ("asset", [a.name for a in self.assets])):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{what} names must be unique: {', '.join(dupes)} appear more than once")
        repos = [r.name for r in self.repositories]
        for asset in self.assets:
            if isinstance(asset, ProxmoxVmAsset):
                if asset.repository is not None:
                    raise ValueError(f"asset {asset.name}: a proxmox-vm asset's archives go to its Proxmox storage "
                                     f"({asset.storage}), not to a restic repository: remove repository")
            elif asset.repository is None:
                raise ValueError(f"asset {asset.name}: repository is required (a {asset.kind} asset is backed up "
                                 f"into a restic repository: one of {', '.join(repos)})")
            elif asset.repository not in repos:
                raise ValueError(f"asset {asset.name}: repository {asset.repository!r} is not in repositories"
                                 f"{did_you_mean(asset.repository, repos)}")
        return self

    def asset(self, name: str) -> Asset:
        for a in self.assets:
            if a.name == name:
                return a
        raise KeyError(f"no asset {name!r} in the registry{did_you_mean(name, [a.name for a in self.assets])}")

    def repository_of(self, asset: Asset) -> RepositorySpec | None:
        """The restic repository an asset is backed up into (None for a proxmox-vm asset)."""
        return self.repository(asset.repository) if asset.repository else None

    def repository(self, name: str) -> RepositorySpec:
        for r in self.repositories:
            if r.name == name:
                return r
        raise KeyError(f"no repository {name!r}{did_you_mean(name, [r.name for r in self.repositories])}")

    def select(self, kinds: list[str] | None = None, classes: list[str] | None = None) -> list[Asset]:
        """Enabled assets, by kind and/or class (no filter: all); an unknown kind or class is an error with a hint."""
        for value, known in ((kinds, KINDS), (classes, tuple(CLASSES))):
            for v in value or ():
                if v not in known:
                    raise KeyError(f"unknown {v!r}{did_you_mean(v, known)}")
        return [a for a in self.assets if a.enabled and (not kinds or a.kind in kinds)
                and (not classes or a.asset_class in classes)]


def _fields(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model whose keys are valid at ``loc`` (for did-you-mean on an unknown key)."""
    if loc[:1] == ("repositories",):
        return RepositorySpec if len(loc) == 3 else None
    if loc[:1] == ("assets",) and len(loc) >= 4 and loc[2] in ASSET_MODELS:
        model: type[BaseModel] = ASSET_MODELS[loc[2]]
        return Retention if loc[3:4] == ("retention",) and len(loc) == 5 else (model if len(loc) == 4 else None)
    return Registry if len(loc) == 1 else None


def _describe(error: ErrorDetails, data: Any) -> str:
    loc = tuple(error["loc"])
    shown = tuple(p for i, p in enumerate(loc) if not (loc[:1] == ("assets",) and i == 2 and p in ASSET_MODELS))
    where = ".".join(str(p) for p in shown)
    name = None
    if len(loc) >= 2 and loc[0] in ("assets", "repositories") and isinstance(loc[1], int):
        try:
            name = data[loc[0]][loc[1]].get("name")
        except (KeyError, IndexError, AttributeError, TypeError):
            name = None
    label = f" ({'asset' if loc[0] == 'assets' else 'repository'} {name})" if name else ""
    if error["type"] == "extra_forbidden":
        model = _model_at(loc)
        hint = did_you_mean(str(loc[-1]), _fields(model)) if model else ""
        return f"unknown key {where}{label}{hint}"
    if error["type"] == "union_tag_invalid":
        kind = str((error.get("ctx") or {}).get("tag", ""))
        return f"{where}.kind{label}: unknown kind {kind!r}{did_you_mean(kind, KINDS)}"
    if error["type"] == "union_tag_not_found":
        return f"{where}{label}: missing kind (one of {', '.join(KINDS)})"
    if error["type"] == "literal_error" and loc[-1] == "class":
        value = str(error.get("input"))
        return f"{where}{label}: unknown class {value!r}{did_you_mean(value, tuple(CLASSES))}"
    message = error["msg"].removeprefix("Value error, ")
    tail = "" if error["type"] in ("value_error", "missing") else f", got {error.get('input')!r}"
    return f"{where}{label}: {message}{tail}"


def parse_assets(data: Any, source: str, inventory: Inventory | None = None) -> Registry:
    """Validate registry data already read from ``source`` (named in every error); hosts and VMs are checked against
    the inventory when one is given."""
    if not isinstance(data, dict):
        raise RegistryError(f"{source}: the asset registry must be a mapping at the top level")
    try:
        return Registry.model_validate(data, context={"inventory": inventory})
    except ValidationError as exc:
        raise RegistryError(f"{source}: {_describe(exc.errors()[0], data)}") from None


def load_assets(path: str | Path, inventory: Inventory | str | Path | None = None) -> Registry:
    """Read and validate an asset registry YAML file (and check it against an inventory, given or its path)."""
    path = Path(path)
    if isinstance(inventory, str | Path):
        inventory = load_inventory(inventory)
    return parse_assets(read_yaml(path, "the asset registry", RegistryError), str(path), inventory)


def registry_of(assets_file: str | Path | None, settings: Settings) -> Registry:
    """The asset registry named by ``assets_file`` or ``backup.assets``, checked against the compliance inventory."""
    path = assets_file or settings.backup.assets
    if not path:
        raise RegistryError("no asset registry: pass one or set backup.assets (ASTROLAB_BACKUP_ASSETS); "
                            "infra/backup/assets.example.yaml shows the format")
    return load_assets(path, inventory=settings.compliance.inventory)

"""One typed settings object, from ``ASTROLAB_*`` environment variables and an optional YAML file.

Precedence (highest first): environment variables, the YAML file named by ``ASTROLAB_CONFIG`` (or passed
explicitly), the defaults below. A misspelt key, in YAML or in an ``ASTROLAB_*`` variable, is an error with a
"did you mean" hint. Environment variables are ``ASTROLAB_<SECTION>_<FIELD>``, e.g. ``ASTROLAB_LAKE_URL``,
``ASTROLAB_CATALOG_URL``, ``ASTROLAB_DASK_ADDRESS``, ``ASTROLAB_INGEST_CHUNK_ROWS``; ``ASTROLAB_HOME`` sets the
directory the embedded defaults live in. ``ASTROLAB_TEST_*`` variables belong to the test suite and are ignored.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from tasks.errors import did_you_mean
from tasks.hats.margin_order import margin_pixel_order  # not tasks.hats.margin: settings load without hats
from tasks.redact import install_log_redaction, redact

REPO_ROOT = Path(__file__).resolve().parent.parent


class SettingsError(ValueError):
    """Settings that cannot be used: unknown key, bad value, unreadable file."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def __repr_args__(self) -> Any:
        """repr() and str() without passwords in URLs (SecretStr fields already show ``**********``)."""
        for name, value in super().__repr_args__():
            yield name, redact(value) if isinstance(value, str) else value


class LakeSettings(_Section):
    """Where files go: a local directory (embedded default) or, in production, an S3/MinIO URL.

    The ``s3_*`` settings also serve ``s3://`` ingest sources.
    """

    url: str = Field(default="", description="Lake root: a directory path, file:// URL or s3://bucket/prefix; "
                                             "default <home>/lake")
    s3_endpoint: str = Field(
        default="https://s3.amazonaws.com", description="S3 endpoint URL (MinIO: http://host:9000)"
    )
    s3_region: str = Field(default="us-east-1", description="S3 region")
    s3_path_style: bool = Field(default=True, description="Path-style addressing (endpoint/bucket/key), as MinIO uses")
    s3_access_key: str | None = Field(default=None, description="S3 access key (default: $AWS_ACCESS_KEY_ID)")
    s3_secret_key: SecretStr | None = Field(default=None, description="S3 secret key (default: $AWS_SECRET_ACCESS_KEY)")
    s3_credentials_secret: str | None = Field(
        default=None, description="Name of a Prefect Secret block holding {access_key, secret_key} for S3"
    )
    s3_retries: int = Field(default=3, ge=0, description="Retries of an S3 request on network errors before failing")
    keep_versions: int = Field(default=3, ge=1, description="Published HATS versions of a product kept readable "
                                                           "after newer ones (the newest N)")
    keep_versions_hours: float = Field(default=24.0, ge=0, description="...and every version younger than this "
                                                                       "(hours), so running readers keep their files")
    work_dir: Path | None = Field(
        default=None, description="Local work directory of an S3 lake; default <home>/lake-work"
    )


class CatalogSettings(_Section):
    """The SQL catalog: a DuckDB file (embedded default) or a PostgreSQL URL."""

    url: str = Field(
        default="", description="duckdb:///path/catalog.duckdb or postgresql://...; default <home>/catalog.duckdb"
    )
    password_secret: str | None = Field(
        default=None, description="Name of a Prefect Secret block holding the PostgreSQL password (kept out of the URL)"
    )
    lock_timeout: float = Field(
        default=10.0, ge=0, description="Seconds to wait for a DuckDB catalog another process holds locked, then fail "
                                        "naming that process"
    )


class DaskSettings(_Section):
    """The compute cluster the heavy steps run on."""

    address: str | None = Field(default=None, description="Scheduler address of an existing cluster (tcp://host:8786)")
    n_workers: int = Field(default=2, ge=1, description="Workers of the LocalCluster started when no address is given")
    threads_per_worker: int = Field(default=1, ge=1, description="Threads per LocalCluster worker")
    memory_limit: str = Field(default="4GiB", description="Memory limit per LocalCluster worker")
    gpu: bool = Field(default=False, description="Start a dask_cuda.LocalCUDACluster instead of a LocalCluster")


class IngestSettings(_Section):
    """How DESI files are read, checked and partitioned."""

    chunk_rows: int = Field(default=120_000, ge=1, description="Rows read, validated and written per chunk")
    hats_max_rows: int = Field(default=500_000, ge=1, description="Most rows in one HATS partition")
    hats_highest_order: int = Field(
        default=8, ge=0, le=19, description="Finest HEALPix order a HATS partition may have"
    )
    hats_margin_arcsec: float = Field(
        default=10.0, ge=0, description="Width (arcsec) of each published catalog's margin catalog, the rows of "
                                        "neighbouring partitions lsdb and desi-crossmatch match against; 0: none"
    )
    expectations_dir: Path = Field(
        default=REPO_ROOT / "expectations", description="Great Expectations suites (JSON)"
    )
    on_cluster: bool | None = Field(
        default=None,
        description="Ingest files in parallel on the Dask cluster; default: when the catalog is PostgreSQL "
                    "(a DuckDB file takes one writer process, so its files load in the flow's process)")

    @model_validator(mode="after")
    def _margin_fits_the_partitions(self) -> IngestSettings:
        """A margin too wide for partitions of the highest order is refused now, not at the first publish."""
        if self.hats_margin_arcsec > 0:
            margin_pixel_order(self.hats_margin_arcsec, [(self.hats_highest_order, 0)])
        return self


class AlertSettings(_Section):
    """Where astrolab's alerts (compliance regressions, quarantined files, ...) are sent."""

    notify_block: str | None = Field(default=None, description="A Prefect notification block, 'type-slug/name' "
                                                               "(e.g. slack-webhook/lab-alerts)")


class PrefectSettings(_Section):
    """How the command line talks to Prefect."""

    ephemeral_timeout: float = Field(
        default=90.0, gt=0, description="Seconds to wait for the ephemeral Prefect server to start (when "
                                        "PREFECT_API_URL is unset); sets "
                                        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS unless that is set")


class ReportSettings(_Section):
    """Where a browser opens the lake's reports (Data Docs, plots, run files) from links in the Prefect UI."""

    base_url: str = Field(default="", description="HTTP address of the lake's reports/ directory; default "
                                                  "http://localhost:<port> (served by `astrolab docs`) for a local "
                                                  "lake, <s3_endpoint>/<bucket>/<prefix>/reports for an S3 lake "
                                                  "(give that prefix an anonymous read-only policy in MinIO)")
    port: int = Field(default=8765, ge=1, le=65535, description="Port `astrolab docs` serves the reports on")


class ComplianceSettings(_Section):
    """The nightly compliance scans: which hosts, which SCA policies, how long to wait, where Wazuh is."""

    inventory: Path = Field(default=REPO_ROOT / "infra" / "inventory" / "lab.example.yaml",
                            description="Inventory YAML (hosts, roles, SSH); shared with backups and the cluster build")
    policy_dirs: list[Path] = Field(default=[REPO_ROOT / "infra" / "policies"],
                                    description="Directories (or files) of Wazuh SCA policies, e.g. a manager's "
                                                "ruleset/sca/ next to the lab's own infra/policies/")
    max_parallel: int = Field(default=8, ge=1, description="Hosts scanned at once")

    @field_validator("policy_dirs", mode="before")
    @classmethod
    def _path_list(cls, value: object) -> object:
        """From the environment: directories separated by ':' as in PATH."""
        return [p for p in value.split(os.pathsep) if p] if isinstance(value, str) else value

    command_timeout: float = Field(default=30.0, gt=0, description="Seconds one c: rule's command may run (Wazuh: 30)")
    connect_timeout: float = Field(default=10.0, gt=0, description="Seconds to wait for an SSH connection")
    wazuh_url: str | None = Field(default=None, description="Wazuh manager API, e.g. https://wazuh.lab:55000")
    wazuh_user: str = Field(default="wazuh-wui", description="Wazuh API user")
    wazuh_password: SecretStr | None = Field(default=None, description="Wazuh API password (or wazuh_password_secret)")
    wazuh_password_secret: str | None = Field(default=None, description="Name of a Prefect Secret block with the Wazuh "
                                                                "API password")
    wazuh_verify: str = Field(default="true", description="TLS verification of the Wazuh API: true, false or a CA file")


class BackupSettings(_Section):
    """The backups: the asset registry, where restore drills write, how verification rolls over the data."""

    assets: Path | None = Field(default=None, description="Asset registry YAML (infra/backup/assets.example.yaml "
                                                          "shows the format); the backup deployments need it")
    scratch_dir: Path | None = Field(default=None, description="Where restore drills restore path (and "
                                                               "s3) assets; default <home>/backup-scratch")
    scratch_database_url: str | None = Field(default=None, description="A PostgreSQL URL (no password) whose server "
                                             "hosts the drills' scratch databases; default: the asset's own server")
    scratch_bucket: str = Field(default="astrolab-drill-scratch", pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
                                description="Bucket (on each s3 asset's own endpoint, created when missing) where "
                                            "restore drills put s3 assets back, under a fresh prefix per drill; "
                                            "never an asset's live bucket")
    mirror_dir: Path | None = Field(default=None, description="Where s3 assets are mirrored before restic backs "
                                                              "them up (kept: only changed objects are fetched); "
                                                              "default <home>/backup-mirrors")
    verify_days: int = Field(default=7, ge=1, description="backup-verify reads 1/N of each repository's data a day, "
                                                          "all of it every N days (restic check --read-data-subset)")
    proxmox_url: str | None = Field(default=None, description="Proxmox VE API of the proxmox-vm assets, "
                                                               "https://host:8006 (any node of the cluster)")
    proxmox_token_id: str | None = Field(default=None, description="Proxmox API token id, user@realm!tokenname (needs "
                                                                   "VM.Backup, VM.Allocate on the scratch vmids, "
                                                                   "Datastore.Allocate* on the storages)")
    proxmox_token: SecretStr | None = Field(default=None, description="That token's secret (or proxmox_token_secret)")
    proxmox_token_secret: str | None = Field(default=None, description="Name of a Prefect Secret block holding the "
                                                                       "token's secret")
    proxmox_verify: str = Field(default="true", description="TLS verification of the Proxmox API: true, false or a "
                                                            "CA bundle file")
    proxmox_task_timeout: float = Field(default=3600.0, gt=0, description="Seconds a vzdump, restore or destroy task "
                                                                          "may run before it is reported as failed")
    proxmox_poll_interval: float = Field(default=2.0, gt=0, description="Seconds between polls of a running task")
    proxmox_scratch_vmids: str | None = Field(default=None, description="vmids restore drills may use, 'low-high' "
                                                                        "(e.g. 9900-9999); default the cluster's "
                                                                        "nextid")
    proxmox_scratch_storage: str | None = Field(default=None, description="Storage a drill restores disks onto; "
                                                                          "default the archive's own storages")

    @field_validator("proxmox_url")
    @classmethod
    def _proxmox_url(cls, value: str | None) -> str | None:
        parts = urlsplit(value) if value else None
        if parts is not None and (parts.scheme != "https" or not parts.hostname or parts.path.strip("/")
                                  or parts.username):
            raise ValueError("must be https://host[:port] (no path, no credentials)")
        return value

    @field_validator("proxmox_token_id")
    @classmethod
    def _proxmox_token_id(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[^\s@!=]+@[^\s@!=]+![A-Za-z][A-Za-z0-9._-]*", value):
            raise ValueError("must be user@realm!tokenname")
        return value

    @field_validator("proxmox_verify")
    @classmethod
    def _proxmox_verify(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must be true, false or a CA bundle file")
        return value

    @field_validator("proxmox_scratch_vmids")
    @classmethod
    def _proxmox_scratch_vmids(cls, value: str | None) -> str | None:
        found = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", value) if value is not None else None
        if value is not None and (not found or not 100 <= int(found[1]) <= int(found[2]) <= 999_999_999):
            raise ValueError("must be low-high, two vmids from 100 with low <= high")
        return value

    @property
    def proxmox_scratch_range(self) -> tuple[int, int] | None:
        """``proxmox_scratch_vmids`` as (low, high), None when unset."""
        if self.proxmox_scratch_vmids is None:
            return None
        low, high = self.proxmox_scratch_vmids.split("-")
        return int(low), int(high)

    @property
    def proxmox_tls_verify(self) -> bool | str:
        """``proxmox_verify`` for requests: True, False or the CA bundle's path."""
        return {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}.get(
            self.proxmox_verify.strip().lower(), self.proxmox_verify)


class ClusterSettings(_Section):
    """The cluster build (infra_flows/cluster_build.py): the phases file, the roles, and what its gates ask."""

    inventory: Path | None = Field(default=None, description="Inventory of the build; default compliance.inventory")
    phases: Path = Field(default=REPO_ROOT / "infra" / "ansible" / "phases.yaml",
                         description="Phases file: roles, hosts, order, gates and secrets")
    roles_path: Path = Field(default=REPO_ROOT / "infra" / "ansible" / "roles", description="Ansible roles directory")
    role_timeout: int = Field(default=3600, ge=1, description="Seconds one role run may take")
    k8s_api_url: str | None = Field(default=None, description="Kubernetes API of the RKE2 cluster, e.g. "
                                                              "https://rke2.lab:6443 (the nodes_ready gate)")
    k8s_token: SecretStr | None = Field(default=None, description="Bearer token that may list nodes "
                                                                  "(or k8s_token_secret)")
    k8s_token_secret: str | None = Field(default=None, description="Prefect Secret block with that bearer token")
    k8s_ca_file: Path | None = Field(default=None, description="CA of the Kubernetes API (default: system CAs)")
    work_pools: list[str] = Field(default=["astrolab-process"], description="Work pools that must have an online "
                                                                            "worker (the workers_registered gate)")


class Settings(_Section):
    """Everything astrolab reads from the environment and the settings YAML."""

    home: Path = Field(default=Path("astrolab-data"), description="Directory of the embedded lake and catalog")
    lake: LakeSettings = LakeSettings()
    catalog: CatalogSettings = CatalogSettings()
    dask: DaskSettings = DaskSettings()
    ingest: IngestSettings = IngestSettings()
    compliance: ComplianceSettings = ComplianceSettings()
    alerts: AlertSettings = AlertSettings()
    prefect: PrefectSettings = PrefectSettings()
    reports: ReportSettings = ReportSettings()
    backup: BackupSettings = BackupSettings()
    cluster: ClusterSettings = ClusterSettings()

    @property
    def lake_url(self) -> str:
        """The lake root, defaulting to ``<home>/lake``."""
        return self.lake.url or str(self.home / "lake")

    def under_home(self, path: str | Path) -> Path:
        """``path`` as given when absolute, else below ``home`` (so that a deployment's relative paths mean the same
        on every worker, whatever directory it runs in)."""
        path = Path(path).expanduser()
        return path if path.is_absolute() else self.home / path

    @property
    def lake_work_dir(self) -> Path:
        """Where an S3 lake stages, builds and caches locally, defaulting to ``<home>/lake-work``."""
        return self.lake.work_dir or self.home / "lake-work"

    @property
    def reports_url(self) -> str:
        """The browser address of the lake's reports/ directory (no trailing slash); see ReportSettings."""
        if self.reports.base_url:
            return self.reports.base_url.rstrip("/")
        if self.lake_url.startswith("s3://"):
            return f"{self.lake.s3_endpoint.rstrip('/')}/{self.lake_url[len('s3://'):].strip('/')}/reports"
        return f"http://localhost:{self.reports.port}"

    @property
    def catalog_url(self) -> str:
        """The catalog URL, defaulting to a DuckDB file under home."""
        return self.catalog.url or f"duckdb:///{(self.home / 'catalog.duckdb').as_posix()}"

    def secret_values(self) -> list[str]:
        """Every secret the settings hold (SecretStr values, URL passwords), to mask wherever text is shown."""
        values = [s.get_secret_value() for s in (self.lake.s3_secret_key, self.compliance.wazuh_password,
                                                 self.cluster.k8s_token, self.backup.proxmox_token) if s]
        for url in (self.catalog.url, self.lake.url, self.lake.s3_endpoint, self.compliance.wazuh_url or ""):
            found = _URL_PASSWORD.match(url)
            if found:
                values.append(found.group(1))
        return values

    def effective(self) -> dict[str, Any]:
        """The settings in effect, for display: defaults resolved (lake and catalog URLs, the lake work dir),
        passwords in URLs shown as ``***`` and secret fields as ``**********``."""
        data = self.model_dump(mode="json")
        data["lake"]["url"] = self.lake_url
        data["lake"]["work_dir"] = str(self.lake_work_dir)
        data["catalog"]["url"] = self.catalog_url

        def clean(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items()}
            if isinstance(value, list):
                return [clean(v) for v in value]
            return redact(value, self.secret_values()) if isinstance(value, str) else value

        return clean(data)


_URL_PASSWORD = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*:([^\s/]*)@")


_SECTIONS: dict[str, type[_Section]] = {
    "lake": LakeSettings, "catalog": CatalogSettings, "dask": DaskSettings, "ingest": IngestSettings,
    "compliance": ComplianceSettings, "alerts": AlertSettings, "prefect": PrefectSettings,
    "reports": ReportSettings,
    "backup": BackupSettings, "cluster": ClusterSettings,
}
_TOP_LEVEL = {"home"}
_TEST_PREFIX = "ASTROLAB_TEST_"  # the test suite's own variables (e.g. ASTROLAB_TEST_PG_URL), not settings


def _role_secrets() -> set[str]:
    """The variables the cluster build's roles read (infra/ansible/phases.yaml `secrets`): not settings, and an
    admin may set them in the environment instead of keeping them in Prefect Secret blocks."""
    try:
        data = yaml.safe_load((REPO_ROOT / "infra" / "ansible" / "phases.yaml").read_text())
        return {str(name) for name in (data.get("secrets") or {})}
    except (OSError, yaml.YAMLError, AttributeError):
        return set()


def _check_keys(data: Mapping[str, Any], source: str) -> None:
    for key, value in data.items():
        if key in _TOP_LEVEL:
            continue
        if key not in _SECTIONS:
            raise SettingsError(f"{source}: unknown section {key!r}{did_you_mean(key, [*_SECTIONS, *_TOP_LEVEL])}")
        if not isinstance(value, Mapping):
            raise SettingsError(f"{source}: section {key!r} must be a mapping, got {type(value).__name__}")
        fields = list(_SECTIONS[key].model_fields)
        for field in value:
            if field not in fields:
                raise SettingsError(f"{source}: unknown key {key}.{field}{did_you_mean(field, fields)}")


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    known = ["ASTROLAB_HOME", "ASTROLAB_CONFIG"] + [
        f"ASTROLAB_{s.upper()}_{f.upper()}" for s, cls in _SECTIONS.items() for f in cls.model_fields
    ]
    passed_through = _role_secrets()
    for name, value in env.items():
        if not name.startswith("ASTROLAB_") or name == "ASTROLAB_CONFIG" or name.startswith(_TEST_PREFIX):
            continue
        if name in passed_through:
            continue
        if name == "ASTROLAB_HOME":
            data["home"] = value
            continue
        if name not in known:
            raise SettingsError(f"environment: unknown variable {name}{did_you_mean(name, known)}")
        section, field = name[len("ASTROLAB_"):].lower().split("_", 1)
        data.setdefault(section, {})[field] = value
    return data


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        out[key] = _merge(out.get(key, {}), value) if isinstance(value, Mapping) else value
    return out


def _origins(data: Mapping[str, Any], source: str) -> dict[tuple[str, ...], str]:
    """Where each setting came from: (section, field) or (key,) -> the file or the variable."""
    out: dict[tuple[str, ...], str] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            for field in value:
                out[(key, field)] = source if source != "environment" else \
                    f"environment variable ASTROLAB_{key.upper()}_{str(field).upper()}"
        else:
            out[(key,)] = source if source != "environment" else f"environment variable ASTROLAB_{key.upper()}"
    return out


def _is_secret(loc: tuple[Any, ...]) -> bool:
    section = _SECTIONS.get(str(loc[0])) if loc else None
    field = section.model_fields.get(str(loc[1])) if section is not None and len(loc) > 1 else None
    return field is not None and "SecretStr" in repr(field.annotation)


def _shown(value: Any, secret: bool) -> str:
    """A bad value as the error message shows it: quoted, passwords masked, secrets not at all."""
    if secret:
        return "a value (not shown: a secret)"
    text = redact(repr(value))
    return text if len(text) <= 80 else text[:77] + "..."


def load_settings(config: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from defaults, the YAML file (``config`` or ``$ASTROLAB_CONFIG``) and the environment.

    Every error (unreadable file, unknown key or variable, bad value) is a `SettingsError` naming the file or the
    variable and, for a bad value, the value itself (passwords masked, secrets left out).
    """
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    origins: dict[tuple[str, ...], str] = {}
    named_by = "" if config else " (named by ASTROLAB_CONFIG)"
    config = config or env.get("ASTROLAB_CONFIG")
    if config:
        path = Path(config)
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            reason = " ".join(str(exc).split())
            raise SettingsError(f"{path}{named_by}: cannot read settings ({reason})") from exc
        if not isinstance(loaded, Mapping):
            raise SettingsError(f"{path}{named_by}: settings must be a mapping at the top level, "
                                f"got {type(loaded).__name__}")
        _check_keys(loaded, str(path))
        data = dict(loaded)
        origins = _origins(data, str(path))
    from_env = _from_env(env)
    _check_keys(from_env, "environment")
    origins.update(_origins(from_env, "environment"))
    data = _merge(data, from_env)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            loc = tuple(str(part) for part in e["loc"])
            where = origins.get(loc[:2]) or origins.get(loc[:1]) or "settings"
            problems.append(f"{where}: {'.'.join(loc)}: {e['msg']} (got {_shown(e['input'], _is_secret(loc))})")
        raise SettingsError("; ".join(problems)) from None
    # every flow starts here: from now on this process's log lines (Prefect's run logs too) never show a secret
    install_log_redaction(settings.secret_values())
    return settings

"""One typed settings object, from ``ASTROLAB_*`` environment variables and an optional YAML file.

Precedence (highest first): environment variables, the YAML file named by ``ASTROLAB_CONFIG`` (or passed
explicitly), the defaults below. A misspelt key, in YAML or in an ``ASTROLAB_*`` variable, is an error with a
"did you mean" hint. Environment variables are ``ASTROLAB_<SECTION>_<FIELD>``, e.g. ``ASTROLAB_LAKE_URL``,
``ASTROLAB_CATALOG_URL``, ``ASTROLAB_DASK_ADDRESS``, ``ASTROLAB_INGEST_CHUNK_ROWS``; ``ASTROLAB_HOME`` sets the
directory the embedded defaults live in. ``ASTROLAB_TEST_*`` variables belong to the test suite and are ignored.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

REPO_ROOT = Path(__file__).resolve().parent.parent


class SettingsError(ValueError):
    """Settings that cannot be used: unknown key, bad value, unreadable file."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


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
    expectations_dir: Path = Field(
        default=REPO_ROOT / "expectations", description="Great Expectations suites (JSON)"
    )
    on_cluster: bool | None = Field(
        default=None,
        description="Ingest files in parallel on the Dask cluster; default: when the catalog is PostgreSQL "
                    "(a DuckDB file takes one writer process, so its files load in the flow's process)")


class AlertSettings(_Section):
    """Where astrolab's alerts (compliance regressions, quarantined files, ...) are sent."""

    notify_block: str | None = Field(default=None, description="A Prefect notification block, 'type-slug/name' "
                                                               "(e.g. slack-webhook/lab-alerts)")


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


class Settings(_Section):
    """Everything astrolab reads from the environment and the settings YAML."""

    home: Path = Field(default=Path("astrolab-data"), description="Directory of the embedded lake and catalog")
    lake: LakeSettings = LakeSettings()
    catalog: CatalogSettings = CatalogSettings()
    dask: DaskSettings = DaskSettings()
    ingest: IngestSettings = IngestSettings()
    compliance: ComplianceSettings = ComplianceSettings()
    alerts: AlertSettings = AlertSettings()

    @property
    def lake_url(self) -> str:
        """The lake root, defaulting to ``<home>/lake``."""
        return self.lake.url or str(self.home / "lake")

    @property
    def lake_work_dir(self) -> Path:
        """Where an S3 lake stages, builds and caches locally, defaulting to ``<home>/lake-work``."""
        return self.lake.work_dir or self.home / "lake-work"

    @property
    def catalog_url(self) -> str:
        """The catalog URL, defaulting to a DuckDB file under home."""
        return self.catalog.url or f"duckdb:///{(self.home / 'catalog.duckdb').as_posix()}"


_SECTIONS: dict[str, type[_Section]] = {
    "lake": LakeSettings, "catalog": CatalogSettings, "dask": DaskSettings, "ingest": IngestSettings,
    "compliance": ComplianceSettings, "alerts": AlertSettings,
}
_TOP_LEVEL = {"home"}
_TEST_PREFIX = "ASTROLAB_TEST_"  # the test suite's own variables (e.g. ASTROLAB_TEST_PG_URL), not settings


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(sorted(choices))})"


def _check_keys(data: Mapping[str, Any], source: str) -> None:
    for key, value in data.items():
        if key in _TOP_LEVEL:
            continue
        if key not in _SECTIONS:
            raise SettingsError(f"{source}: unknown section {key!r}{_did_you_mean(key, [*_SECTIONS, *_TOP_LEVEL])}")
        if not isinstance(value, Mapping):
            raise SettingsError(f"{source}: section {key!r} must be a mapping, got {type(value).__name__}")
        fields = list(_SECTIONS[key].model_fields)
        for field in value:
            if field not in fields:
                raise SettingsError(f"{source}: unknown key {key}.{field}{_did_you_mean(field, fields)}")


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    known = ["ASTROLAB_HOME", "ASTROLAB_CONFIG"] + [
        f"ASTROLAB_{s.upper()}_{f.upper()}" for s, cls in _SECTIONS.items() for f in cls.model_fields
    ]
    for name, value in env.items():
        if not name.startswith("ASTROLAB_") or name == "ASTROLAB_CONFIG" or name.startswith(_TEST_PREFIX):
            continue
        if name == "ASTROLAB_HOME":
            data["home"] = value
            continue
        if name not in known:
            raise SettingsError(f"environment: unknown variable {name}{_did_you_mean(name, known)}")
        section, field = name[len("ASTROLAB_"):].lower().split("_", 1)
        data.setdefault(section, {})[field] = value
    return data


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        out[key] = _merge(out.get(key, {}), value) if isinstance(value, Mapping) else value
    return out


def load_settings(config: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from defaults, the YAML file (``config`` or ``$ASTROLAB_CONFIG``) and the environment."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    config = config or env.get("ASTROLAB_CONFIG")
    if config:
        path = Path(config)
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise SettingsError(f"{path}: cannot read settings ({exc})") from exc
        if not isinstance(loaded, Mapping):
            raise SettingsError(f"{path}: settings must be a mapping at the top level")
        _check_keys(loaded, str(path))
        data = dict(loaded)
    from_env = _from_env(env)
    _check_keys(from_env, "environment")
    data = _merge(data, from_env)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise SettingsError(f"invalid settings: {problems}") from None

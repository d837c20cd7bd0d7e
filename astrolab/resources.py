"""Build the stores and the compute cluster the settings ask for.

Flows never branch on the backend: they call these builders and use the same methods on what comes back.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from fsspec import AbstractFileSystem

from astrolab.settings import Settings, SettingsError
from tasks.catalog.base import SqlCatalog
from tasks.catalog.duckdb_store import DuckDBCatalog
from tasks.ingest.sources import SourceStore
from tasks.ingest.validate import BatchValidator
from tasks.redact import install_log_redaction, redact
from tasks.storage.lake import Lake, LocalLake, VersionRetention
from tasks.storage.lake_s3 import S3Lake
from tasks.storage.s3 import ObjectStore, S3Config, fsspec_filesystem

if TYPE_CHECKING:
    from distributed import Client
    from prefect.filesystems import LocalFileSystem
    from pydantic import SecretStr

    from tasks.backup.proxmox import ProxmoxApi
    from tasks.backup.rpo import FreshnessReader
    from tasks.compliance.wazuh_api import WazuhClient


def _secret(name: str, setting: str) -> Any:
    """The value of the Prefect Secret block ``name`` (named by the setting ``setting``)."""
    from prefect.blocks.system import Secret

    try:
        block = cast("Secret[Any]", Secret.load(name))  # called from sync code: the block, not a coroutine
        return block.get()
    except ValueError as exc:
        raise SettingsError(f"{setting}: no Prefect Secret block named {name!r} ({exc})") from None


def _s3_config(settings: Settings) -> S3Config:
    """``settings.lake.s3_*``, with credentials from the settings or a Prefect Secret block."""
    lake = settings.lake
    access, secret = lake.s3_access_key, lake.s3_secret_key.get_secret_value() if lake.s3_secret_key else None
    if lake.s3_credentials_secret:
        value = _secret(lake.s3_credentials_secret, "lake.s3_credentials_secret")
        if not isinstance(value, dict) or not {"access_key", "secret_key"} <= set(value):
            raise SettingsError(f"lake.s3_credentials_secret: the Secret block {lake.s3_credentials_secret!r} must "
                                "hold a JSON object with access_key and secret_key")
        access, secret = value["access_key"], value["secret_key"]
    return S3Config(endpoint=lake.s3_endpoint, region=lake.s3_region, path_style=lake.s3_path_style,
                    access_key=access, secret_key=secret, retries=lake.s3_retries)


def build_object_store(settings: Settings) -> ObjectStore:
    """The S3 endpoint of ``settings.lake.s3_*``."""
    return ObjectStore(_s3_config(settings))


def build_source_store(settings: Settings) -> SourceStore:
    """Where s3:// ingest sources are read from (the lake's S3 settings) and downloaded to."""
    return SourceStore(build_object_store(settings), settings.lake_work_dir / "downloads")


def build_lake(settings: Settings) -> Lake:
    """The lake at ``settings.lake_url``: a directory (or file://), or an S3 bucket (s3://bucket/prefix)."""
    url = settings.lake_url
    retention = VersionRetention(settings.lake.keep_versions, settings.lake.keep_versions_hours)
    if url.startswith("s3://"):
        return S3Lake(url, build_object_store(settings), settings.lake_work_dir, retention)
    if "://" in url and not url.startswith("file://"):
        raise SettingsError(f"lake.url {redact(url)!r}: use a directory, file:///path or s3://bucket/prefix")
    return LocalLake(url, retention)


def report_url(settings: Settings, lake: Lake, path: Path) -> str:
    """The address a browser opens a report file of the lake at (Data Docs, plots, run files): ``path`` relative
    to the lake's reports directory, under ``settings.reports_url``."""
    reports = lake.data_docs_dir().parent.resolve()
    try:
        rel = Path(path).resolve().relative_to(reports)
    except ValueError:
        raise ValueError(f"{path}: not under the lake's reports directory {reports}") from None
    return f"{settings.reports_url}/{rel.as_posix()}"


def open_catalog(url: str, read_only: bool = False, password: str | None = None,
                 s3_filesystem: AbstractFileSystem | None = None, lock_timeout: float = 10.0) -> SqlCatalog:
    """The catalog at a URL: ``duckdb:///path`` or ``postgresql://user@host:port/db`` (password apart).

    ``s3_filesystem`` (fsspec) lets a DuckDB catalog's ``lake_*`` views read an S3 lake; ``lock_timeout``: seconds a
    DuckDB file locked by another process is waited for.
    """
    if url.startswith("duckdb:///"):  # SQLAlchemy style: duckdb:///relative/path, duckdb:////absolute/path
        return DuckDBCatalog(Path(url[len("duckdb:///"):]), read_only=read_only, s3_filesystem=s3_filesystem,
                             lock_timeout=lock_timeout)
    if url.startswith(("postgresql://", "postgres://")):
        from tasks.catalog.postgres_store import PostgresCatalog

        return PostgresCatalog(url, read_only=read_only, password=password)
    scheme = url.split("://", 1)[0] if "://" in url else url
    raise SettingsError(f"catalog.url: unsupported scheme {scheme!r} in {redact(url)!r} "
                        "(supported: duckdb:///path, postgresql://...)")


def build_catalog(settings: Settings, read_only: bool = False) -> SqlCatalog:
    """The catalog at ``settings.catalog_url``, with the password from a Prefect Secret block if one is named;
    a DuckDB catalog over an S3 lake gets the lake's S3 filesystem for its ``lake_*`` views."""
    password = None
    if settings.catalog.password_secret:
        password = _secret(settings.catalog.password_secret, "catalog.password_secret")
    s3 = None
    if settings.lake_url.startswith("s3://") and settings.catalog_url.startswith("duckdb:"):
        s3 = fsspec_filesystem(_s3_config(settings))
    return open_catalog(settings.catalog_url, read_only=read_only, password=password, s3_filesystem=s3,
                        lock_timeout=settings.catalog.lock_timeout)


def build_validator(settings: Settings, lake: Lake, docs_subdir: str | None = None) -> BatchValidator:
    """The Great Expectations validator with the suites in ``ingest.expectations_dir``; its Data Docs go to the
    lake's Data Docs directory (or a sub-directory of it: one per Dask worker)."""
    docs = lake.data_docs_dir()
    return BatchValidator(settings.ingest.expectations_dir, docs / docs_subdir if docs_subdir else docs)


@contextmanager
def gpu_node_slot(node: str | None = None, timeout_seconds: float | None = None) -> Iterator[str]:
    """Hold this node's GPU slot: the Prefect global concurrency limit ``gpu:<node>`` (created with limit 1 when
    missing), so two GPU flows on one node queue one behind the other instead of sharing its GPUs."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.concurrency.sync import concurrency
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    name = f"gpu:{node or socket.gethostname()}"
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            with contextlib.suppress(ObjectAlreadyExists):  # another flow made it first
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
    with concurrency(name, occupy=1, timeout_seconds=timeout_seconds, strict=True):
        yield name


def worker_numba_threads(n_workers: int, cores: int | None = None) -> int:
    """numba threads per Dask worker process so that workers x threads never exceed the machine's cores."""
    return max(1, (cores or os.cpu_count() or 1) // max(1, n_workers))


@contextmanager
def dask_client(settings: Settings) -> Iterator[Client]:
    """A Dask client: to ``dask.address`` if set, else to a LocalCluster (or, with ``dask.gpu``, a LocalCUDACluster
    held under this node's GPU slot, see `gpu_node_slot`)."""
    from distributed import Client, LocalCluster

    if settings.dask.address:
        with Client(settings.dask.address) as client:
            yield client
        return
    if settings.dask.gpu:
        try:
            from dask_cuda import LocalCUDACluster  # imported lazily: fails on machines without CUDA
        except ImportError as exc:
            raise SettingsError(f"dask.gpu is set but dask_cuda cannot be imported ({exc}); "
                                "install the 'gpu' extra on a CUDA machine") from exc
        with gpu_node_slot(), LocalCUDACluster(threads_per_worker=settings.dask.threads_per_worker) as cluster, \
                Client(cluster) as client:
            yield client
        return
    numba_threads = worker_numba_threads(settings.dask.n_workers)
    cluster = LocalCluster(n_workers=settings.dask.n_workers, threads_per_worker=settings.dask.threads_per_worker,
                           memory_limit=settings.dask.memory_limit, processes=True, dashboard_address=None,
                           env={"NUMBA_NUM_THREADS": str(numba_threads)})
    with cluster, Client(cluster) as client:
        yield client


def _secret_setting(section: str, url_field: str, field: str, value: SecretStr | None, block: str | None) -> str:
    """A secret setting ``section.field`` needed because ``section.url_field`` is set: from the Prefect Secret block
    ``section.field_secret`` names, else the value itself; an error naming both when neither is set."""
    if block:
        return str(_secret(block, f"{section}.{field}_secret"))
    if value is not None and value.get_secret_value():
        return value.get_secret_value()
    raise SettingsError(f"{section}.{url_field} is set but neither {section}.{field} nor {section}.{field}_secret is")


def build_wazuh_client(settings: Settings) -> WazuhClient | None:
    """The Wazuh manager's API client when ``compliance.wazuh_url`` is set (password from the settings or a
    Prefect Secret block); None without a manager."""
    c = settings.compliance
    if not c.wazuh_url:
        return None
    from tasks.compliance.wazuh_api import WazuhClient

    password = _secret_setting("compliance", "wazuh_url", "wazuh_password", c.wazuh_password,
                               c.wazuh_password_secret)
    verify: bool | str = {"true": True, "false": False}.get(c.wazuh_verify.lower(), c.wazuh_verify)
    return WazuhClient(c.wazuh_url, c.wazuh_user, password, verify=verify)


def build_proxmox(settings: Settings) -> ProxmoxApi | None:
    """The Proxmox API of the proxmox-vm assets when ``backup.proxmox_url`` is set (token secret from the settings or
    a Prefect Secret block, masked in every log line from then on); None without one."""
    b = settings.backup
    if not b.proxmox_url:
        return None
    from tasks.backup.proxmox import ProxmoxApi, connect

    token = _secret_setting("backup", "proxmox_url", "proxmox_token", b.proxmox_token, b.proxmox_token_secret)
    if not b.proxmox_token_id:
        raise SettingsError("backup.proxmox_url is set but backup.proxmox_token_id (user@realm!tokenname) is not")
    install_log_redaction([token])
    verify = b.proxmox_tls_verify
    if isinstance(verify, str) and not Path(verify).is_file():
        raise SettingsError(f"backup.proxmox_verify: {verify!r} is not true, false or a CA bundle file")
    client = connect(b.proxmox_url, b.proxmox_token_id, token, verify=verify)
    return ProxmoxApi(client, task_timeout=b.proxmox_task_timeout, poll_interval=b.proxmox_poll_interval,
                      scratch_vmids=b.proxmox_scratch_range, scratch_storage=b.proxmox_scratch_storage)


PROXMOX_UNSET = ("the Proxmox API is not configured: set backup.proxmox_url, backup.proxmox_token_id and "
                 "backup.proxmox_token or backup.proxmox_token_secret")


def build_freshness_readers(settings: Settings) -> dict[str, FreshnessReader]:
    """The RPO check's readers beyond restic: proxmox-vm archives from the Proxmox storages' content lists, or, when
    the API is not configured (or its settings are incomplete), every proxmox-vm asset unknown, saying what to set."""
    from tasks.backup.proxmox import ProxmoxError, proxmox_reader
    from tasks.backup.rpo import Unreadable
    from tasks.inventory.load import load_inventory

    try:
        api = build_proxmox(settings)
        inventory = load_inventory(settings.compliance.inventory) if api is not None else None
    except (ValueError, ProxmoxError) as exc:  # settings, Secret block, inventory: the VMs' state says why
        api, reason = None, Unreadable(" ".join(str(exc).split()))
    except Exception as exc:  # noqa: BLE001 - e.g. the Prefect API down while loading the Secret block: only the
        # proxmox-vm assets are unknown, the restic ones are still checked
        api, reason = None, Unreadable(f"the Proxmox API client could not be built: {type(exc).__name__}: "
                                       + redact(" ".join(str(exc).split()))[:300])
    else:
        reason = Unreadable(PROXMOX_UNSET)
    if api is None or inventory is None:
        return {"proxmox-vm": lambda assets: {a.name: reason for a in assets}}
    return {"proxmox-vm": proxmox_reader(api.client, inventory)}


def build_result_storage(settings: Settings) -> LocalFileSystem:
    """Where cached task results persist: ``<lake>/results`` of a local lake, ``<lake.work_dir>/results`` for an
    S3 lake (a shared file system in production: Prefect's S3 storage would need s3fs)."""
    from prefect.filesystems import LocalFileSystem

    url = settings.lake_url
    root = settings.lake_work_dir if url.startswith("s3://") else Path(url.removeprefix("file://"))
    basepath = str((root / "results").resolve())
    storage = LocalFileSystem(basepath=basepath)
    # Prefect wants result storage saved server-side; one block per directory, named after it
    storage.save(f"astrolab-results-{hashlib.sha256(basepath.encode()).hexdigest()[:12]}", overwrite=True)
    return storage


def catalog_state(settings: Settings) -> str:
    """A token that changes whenever the catalog's rows change (files loaded or published): part of the cache key
    of every task that reads the catalog, so a cached result never outlives the rows it came from."""
    with build_catalog(settings, read_only=True) as catalog:
        count, last = catalog.query("SELECT count(*) AS n, max(finished_at) AS last FROM ingest_lineage "
                                    "WHERE status IN ('loaded', 'published')").to_pylist()[0].values()
        versions = catalog.query("SELECT product, version FROM hats_versions ORDER BY product").to_pylist()
    return f"{count}:{last}:" + ",".join(f"{v['product']}={v['version']}" for v in versions)

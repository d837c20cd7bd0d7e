"""Build the stores and the compute cluster the settings ask for.

Flows never branch on the backend: they call these builders and use the same methods on what comes back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from astrolab.settings import Settings, SettingsError
from tasks.catalog.base import SqlCatalog
from tasks.catalog.duckdb_store import DuckDBCatalog
from tasks.lake import LocalLake
from tasks.validate import BatchValidator


def build_lake(settings: Settings) -> LocalLake:
    """The lake at ``settings.lake_url``."""
    url = settings.lake_url
    if "://" in url and not url.startswith("file://"):
        raise SettingsError(f"lake.url {url!r}: only local directories (or file://) are supported so far")
    return LocalLake(url)


def open_catalog(url: str, read_only: bool = False, password: str | None = None) -> SqlCatalog:
    """The catalog at a URL: ``duckdb:///path`` or ``postgresql://user@host:port/db`` (password apart)."""
    if url.startswith("duckdb:///"):  # SQLAlchemy style: duckdb:///relative/path, duckdb:////absolute/path
        return DuckDBCatalog(Path(url[len("duckdb:///"):]), read_only=read_only)
    if url.startswith(("postgresql://", "postgres://")):
        from tasks.catalog.postgres_store import PostgresCatalog

        return PostgresCatalog(url, read_only=read_only, password=password)
    scheme = url.split("://", 1)[0] if "://" in url else url
    raise SettingsError(f"catalog.url: unsupported scheme {scheme!r} (supported: duckdb:///path, postgresql://...)")


def build_catalog(settings: Settings, read_only: bool = False) -> SqlCatalog:
    """The catalog at ``settings.catalog_url``, with the password from a Prefect Secret block if one is named."""
    password = None
    if settings.catalog.password_secret:
        from prefect.blocks.system import Secret

        try:
            password = Secret.load(settings.catalog.password_secret).get()
        except ValueError as exc:
            raise SettingsError(f"catalog.password_secret: no Prefect Secret block named "
                                f"{settings.catalog.password_secret!r} ({exc})") from None
    return open_catalog(settings.catalog_url, read_only=read_only, password=password)


def build_validator(settings: Settings, lake: LocalLake) -> BatchValidator:
    """The Great Expectations validator with the suites in ``ingest.expectations_dir``."""
    return BatchValidator(settings.ingest.expectations_dir, lake.data_docs_dir())


@contextmanager
def dask_client(settings: Settings) -> Iterator[object]:
    """A Dask client: to ``dask.address`` if set, else to a LocalCluster (or LocalCUDACluster with ``dask.gpu``)."""
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
        cluster = LocalCUDACluster(threads_per_worker=settings.dask.threads_per_worker)
    else:
        cluster = LocalCluster(n_workers=settings.dask.n_workers, threads_per_worker=settings.dask.threads_per_worker,
                               memory_limit=settings.dask.memory_limit, processes=True, dashboard_address=None)
    with cluster, Client(cluster) as client:
        yield client

"""desi-ingest: DESI DR1 files -> validated, enriched HATS lake + catalog + data-quality report."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_table_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run

from astrolab import progress
from astrolab.resources import (
    build_catalog,
    build_lake,
    build_source_store,
    build_validator,
    dask_client,
    report_url,
)
from astrolab.retries import retrying
from astrolab.settings import Settings, load_settings
from flows.artifacts import publish_image, publish_link
from tasks.ingest import report
from tasks.ingest.pipeline import FileResult, PublishResult, publish, reconcile
from tasks.ingest.products import PRODUCTS
from tasks.ingest.sessions import SessionParts, close_sessions, ingest_in_session
from tasks.ingest.sources import Discovery, SourceFile, discover_all


@task(name="reconcile-lake")
def reconcile_lake(settings: Settings) -> list[str]:
    """Finish what an interrupted run left: lake pointer swaps, unpublished builds."""
    with build_catalog(settings) as catalog:
        return reconcile(build_lake(settings), catalog)


@task(name="discover-files", **retrying(2))
def discover_files(source: str, kinds: list[str] | None, settings: Settings) -> Discovery:
    """Find DESI DR1 files under ``source`` (a path or an s3:// prefix) by their file-name patterns, and the FITS
    files there that no product recognises."""
    sources = build_source_store(settings) if source.startswith("s3://") else None
    return discover_all(source, set(kinds) if kinds else None, sources)


def open_session_parts(settings: Settings, on_cluster: bool) -> Callable[[int], SessionParts]:
    """How an ingest session opens its parts: in the flow's process one validator writes the Data Docs at the lake's
    Data Docs root; on a Dask worker each session writes its own site below ``workers/`` (joined by one index)."""

    def open_parts(number: int) -> SessionParts:
        lake = build_lake(settings)
        subdir = f"workers/{socket.gethostname()}-{os.getpid()}-{number}" if on_cluster else None
        return SessionParts(lake=lake, validator=build_validator(settings, lake, subdir),
                            catalog=build_catalog(settings), sources=build_source_store(settings),
                            work_dir=settings.lake_work_dir / "decompress", chunk_rows=settings.ingest.chunk_rows)

    return open_parts


def ingest_here(src: SourceFile, settings: Settings, run_id: str, on_cluster: bool) -> FileResult:
    """Ingest one file with this thread's session (in the flow's process, or on a Dask worker)."""
    progress.start_file(src.path.name)
    return ingest_in_session(src, run_id, open_session_parts(settings, on_cluster), progress.advance)


@task(name="ingest-file", cache_policy=NO_CACHE, **retrying(2))
def ingest_one(src: SourceFile, settings: Settings, run_id: str, on_cluster: bool) -> FileResult:
    """Ingest one file (hash, read, validate, enrich, stage, load), on the flow run's Dask cluster when
    ``on_cluster``; a bad file is quarantined (the task completes and says why), a lost catalog connection fails the
    task and Prefect retries it (an interrupted load was rolled back and is loaded again)."""
    if on_cluster:
        from distributed import default_client

        result: FileResult = default_client().submit(ingest_here, src, settings, run_id, True, pure=False).result()
    else:
        result = ingest_here(src, settings, run_id, False)
    logger = get_run_logger()
    if result.status == "quarantined":
        logger.warning("quarantined %s: %s", result.path, result.error)
    else:
        logger.info("%s %s: %d rows", result.status, result.path, result.rows)
    return result


def _ingest_on_cluster(files: list[SourceFile], settings: Settings, run_id: str) -> tuple[list[FileResult],
                                                                                              list[str]]:
    """One ingest-file task run per file, as many in flight as the Dask cluster has threads; then each worker's
    sessions are closed and their Data Docs sites returned."""
    with dask_client(settings) as client:
        window = max(1, sum(client.nthreads().values()))
        futures: list[PrefectFuture[FileResult]] = []
        try:
            for src in files:
                if len(futures) >= window:
                    futures[len(futures) - window].wait()
                futures.append(ingest_one.with_options(task_run_name=f"ingest-{src.path.name}").submit(
                    src, settings, run_id, True))
            results = [future.result() for future in futures]
        finally:
            for future in futures:
                future.wait()
            closed = client.run(close_sessions, run_id)
    lake = build_lake(settings)
    sites = [Path(index) for indexes in closed.values() for index in indexes]
    for site in sites:
        lake.save_dir(site.parent)
    return results, [site.relative_to(lake.data_docs_dir()).as_posix() for site in sites]


def ingest_files(files: list[SourceFile], settings: Settings, run_id: str) -> list[FileResult]:
    """Ingest every file as its own task run (the UI shows each file's state, retries and quarantine reason).

    With a PostgreSQL catalog (or ``ingest.on_cluster``) the files run on the Dask cluster's worker threads, each
    thread loading through its own connection (concurrent loads are locked per file in the catalog), and the
    workers' Data Docs are joined under one index; with DuckDB (one writer) they run one after another here.
    """
    on_cluster = settings.ingest.on_cluster
    if on_cluster is None:
        on_cluster = settings.catalog_url.startswith(("postgresql://", "postgres://"))
    if on_cluster and len(files) > 1:
        results, sites = _ingest_on_cluster(files, settings, run_id)
        lake = build_lake(settings)
        index = report.join_data_docs(lake.data_docs_dir(), sites)
        lake.save_dir(index.parent)
        return results
    try:
        results = [ingest_one.with_options(task_run_name=f"ingest-{src.path.name}")(src, settings, run_id, False)
                   for src in files]
    finally:
        indexes = close_sessions(run_id)
    lake = build_lake(settings)
    for index in indexes:
        lake.save_dir(index.parent)
    return results


@task(name="publish-hats", **retrying(1))
def publish_hats(settings: Settings) -> list[PublishResult]:
    """Rebuild and atomically publish the HATS catalog of every product with newly loaded files."""
    lake = build_lake(settings)
    with build_catalog(settings) as catalog:
        out = []
        for product in PRODUCTS.values():
            result = publish(product, lake, catalog, settings.ingest.hats_max_rows, settings.ingest.hats_highest_order,
                             settings.ingest.hats_margin_arcsec)
            if result:
                out.append(result)
        return out


PUBLISHED_EVENT = "astrolab.ingest.published"
QUARANTINED_EVENT = "astrolab.ingest.quarantined"


def product_resource(product: str) -> dict[str, str]:
    """The Prefect event resource of a lake product (what the science deployments' triggers match)."""
    return {"prefect.resource.id": f"astrolab.product.{product}", "prefect.resource.name": product}


def emit_ingest_events(results: list[FileResult], published: list[PublishResult], config: str | None,
                       run_id: str) -> None:
    """One event per quarantined file and per newly published product version; ``config`` travels in the payload
    so that the deployments they trigger read the same settings."""
    for result in results:
        if result.status == "quarantined":
            emit_event(QUARANTINED_EVENT,
                       resource={"prefect.resource.id": f"astrolab.desi-file.{result.file_hash or result.path}",
                                 "prefect.resource.name": result.path},
                       related=[{"prefect.resource.id": f"astrolab.product.{result.product}",
                                 "prefect.resource.role": "product"}],
                       payload={"path": result.path, "kind": result.kind, "reason": result.error,
                                "config": config or "", "run_id": run_id})
    for version in published:
        emit_event(PUBLISHED_EVENT, resource=product_resource(version.product),
                   payload={"product": version.product, "version": version.version, "rows": version.nrows,
                            "catalog": version.path, "config": config or "", "run_id": run_id})


@task(name="report")
def write_report(results: list[FileResult], published: list[PublishResult], settings: Settings,
                 run_id: str, not_recognised: list[str] | None = None) -> str:
    """Publish the run's Prefect artifacts: summary, file table, Data Docs link, n(z) and sky plots."""
    lake = build_lake(settings)
    docs = lake.data_docs_dir() / "index.html"
    docs_url = report_url(settings, lake, docs) if docs.exists() else None
    with build_catalog(settings) as catalog:
        primary = catalog.query("SELECT count(*) AS n FROM zcat_primary")["n"][0].as_py()
        run_dir = lake.run_report_dir(run_id)
        images = report.plots(catalog, run_dir)
    lake.save_dir(run_dir)
    markdown = report.summary_markdown(results, published, docs_url, primary, not_recognised or [])
    create_markdown_artifact(markdown, key="desi-ingest-summary", description="DESI ingest run summary")
    create_table_artifact(report.file_table(results), key="desi-ingest-files",
                          description="Files, rows and quarantine reasons")
    if docs_url:
        publish_link(docs, "desi-data-docs", "Great Expectations Data Docs", settings, lake)
    for image in images:
        publish_image(image, f"desi-{image.stem.replace('_', '-')}", image.stem.replace("_", " "), settings, lake)
    return markdown


@flow(name="desi-ingest", log_prints=True)
def desi_ingest(source: str, kinds: list[str] | None = None, config: str | None = None) -> dict:
    """Ingest DESI DR1 files under ``source`` into the lake (HATS) and the catalog, and report on them."""
    settings = load_settings(config)
    run_id = str(flow_run.get_id() or "local")
    for line in reconcile_lake(settings):
        print(f"recovered: {line}")
    found = discover_files(source, kinds, settings)
    print(f"found {len(found.files)} DESI files under {source}"
          + (f"; {len(found.not_recognised)} FITS files not recognised" if found.not_recognised else ""))
    results = ingest_files(found.files, settings, run_id)
    published = publish_hats(settings)
    emit_ingest_events(results, published, config, run_id)
    summary = write_report(results, published, settings, run_id, found.not_recognised)
    print(summary)
    return {
        "files": len(results),
        "ingested": sum(r.status == "ingested" for r in results),
        "skipped": sum(r.status == "skipped" for r in results),
        "quarantined": {r.path: r.error for r in results if r.status == "quarantined"},
        "rows": sum(r.rows for r in results if r.status == "ingested"),
        "published": {p.product: p.version for p in published},
        "not_recognised": found.not_recognised,
    }

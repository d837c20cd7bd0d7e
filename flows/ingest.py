"""desi-ingest: DESI DR1 files -> validated, enriched HATS lake + catalog + data-quality report."""

from __future__ import annotations

from collections.abc import Callable

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_table_artifact,
)
from prefect.events import emit_event
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
from tasks.ingest.pipeline import FileResult, PublishResult, ingest_file, publish, reconcile
from tasks.ingest.products import PRODUCTS
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


def ingest_group(files: list[SourceFile], settings: Settings, run_id: str, docs_subdir: str | None = None,
                 on_file: Callable[[FileResult], None] | None = None) -> tuple[list[FileResult], str | None]:
    """Ingest files one after another with one catalog connection and one validator; build their Data Docs.

    Returns the results and the Data Docs index's path relative to the lake's Data Docs directory. This runs in
    the flow's process, or on a Dask worker for a share of the files.
    """
    lake = build_lake(settings)
    validator = build_validator(settings, lake, docs_subdir)
    sources = build_source_store(settings) if any(src.url for src in files) else None
    results = []
    with build_catalog(settings) as catalog:
        for src in files:
            progress.start_file(src.path.name)
            result = ingest_file(src, lake, catalog, validator, settings.ingest.chunk_rows, run_id,
                                 progress=progress.advance, sources=sources,
                                 work_dir=settings.lake_work_dir / "decompress")
            results.append(result)
            if on_file:
                on_file(result)
    docs = validator.build_data_docs()
    if docs is None:
        return results, None
    lake.save_dir(docs.parent)
    return results, docs.relative_to(lake.data_docs_dir()).as_posix()


@task(name="ingest-files", **retrying(2))
def ingest_files(files: list[SourceFile], settings: Settings, run_id: str) -> list[FileResult]:
    """Ingest each file (hash, read, validate, enrich, stage, load); bad files are quarantined, others go on.

    With a PostgreSQL catalog (or ``ingest.on_cluster``) the files are shared out over the Dask cluster's worker
    threads, each loading through its own connection (concurrent loads are locked per file in the catalog), and
    the workers' Data Docs are joined under one index. A lost catalog connection (a database restart) fails the
    task and Prefect retries it: files loaded before are skipped by their lineage, an interrupted one was rolled
    back and is loaded again.
    """
    logger = get_run_logger()

    def log(result: FileResult) -> None:
        if result.status == "quarantined":
            logger.warning("quarantined %s: %s", result.path, result.error)
        else:
            logger.info("%s %s: %d rows", result.status, result.path, result.rows)

    on_cluster = settings.ingest.on_cluster
    if on_cluster is None:
        on_cluster = settings.catalog_url.startswith(("postgresql://", "postgres://"))
    if not on_cluster or len(files) < 2:
        return ingest_group(files, settings, run_id, on_file=log)[0]
    with dask_client(settings) as client:
        slots = max(1, min(len(files), sum(client.nthreads().values())))
        groups = [files[k::slots] for k in range(slots)]
        futures = [client.submit(ingest_group, group, settings, run_id, f"workers/{k}", pure=False)
                   for k, group in enumerate(groups)]
        done = client.gather(futures)
    results = [r for group_results, _ in done for r in group_results]
    for result in results:
        log(result)
    lake = build_lake(settings)
    index = report.join_data_docs(lake.data_docs_dir(), [docs for _, docs in done if docs])
    lake.save_dir(index.parent)
    return results


@task(name="publish-hats", **retrying(1))
def publish_hats(settings: Settings) -> list[PublishResult]:
    """Rebuild and atomically publish the HATS catalog of every product with newly loaded files."""
    lake = build_lake(settings)
    with build_catalog(settings) as catalog:
        out = []
        for product in PRODUCTS.values():
            result = publish(product, lake, catalog, settings.ingest.hats_max_rows, settings.ingest.hats_highest_order)
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

"""desi-clustering: the Landy-Szalay correlation function xi(s) of one DESI tracer, with randoms from its footprint."""

from __future__ import annotations

import numpy as np
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from astrolab.caching import by_content, persisted
from astrolab.resources import (
    build_catalog,
    build_lake,
    build_result_storage,
    catalog_state,
    dask_client,
    report_url,
)
from astrolab.settings import Settings, load_settings
from flows.artifacts import publish_image
from tasks.science.clustering import Points, XiResult, footprint_randoms, measure_xi, select_tracers, xi_plot_png


# Pure, expensive steps cache on the content of their inputs (the catalog's state among them) with results
# persisted where build_result_storage says; steps that write (report) never cache.
@task(name="select-tracers", cache_policy=by_content())
def select(settings: Settings, tracer: str, z_min: float, z_max: float, catalog_version: str) -> Points:
    """Primary, secure redshifts of the tracer in the redshift range, from the catalog (in state
    ``catalog_version``)."""
    with build_catalog(settings, read_only=True) as catalog:
        return select_tracers(catalog, tracer, z_min, z_max)


@task(name="footprint-randoms", cache_policy=by_content())
def randoms(data: Points, factor: float, order: int, seed: int) -> Points:
    """Randoms over the data's HEALPix footprint with the data's redshift distribution."""
    return footprint_randoms(data, factor, order, seed)


@task(name="pair-counts", cache_policy=by_content())
def count_pairs(data: Points, rand: Points, s_edges: list[float], n_mu: int, settings: Settings) -> XiResult:
    """DD, DR and RR on the configured Dask cluster (GPU workers with dask.gpu), then xi(s, mu) and multipoles."""
    with dask_client(settings) as client:
        return measure_xi(data, rand, np.asarray(s_edges), n_mu, client, gpu=settings.dask.gpu)


@task(name="report", cache_policy=NO_CACHE)
def report(result: XiResult, settings: Settings, tracer: str, run_id: str) -> str:
    """Write xi(s) (ECSV) and its plot to the lake; publish the table, the plot and a summary as artifacts."""
    from astropy.table import Table

    lake = build_lake(settings)
    run_dir = lake.run_report_dir(run_id)
    table = result.table()
    Table(table.to_pydict()).write(run_dir / f"xi_{tracer}.ecsv", overwrite=True)
    plot = run_dir / f"xi_{tracer}.png"
    plot.write_bytes(xi_plot_png(result, f"DESI {tracer}: {result.n_data} galaxies, {result.n_randoms} randoms"))
    lake.save_dir(run_dir)
    rows = [{k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()} for row in table.to_pylist()]
    create_table_artifact(rows, key=f"desi-xi-{tracer.lower()}", description=f"xi_0 and xi_2 of {tracer}")
    publish_image(plot, f"desi-xi-plot-{tracer.lower()}", f"s^2 xi_l(s) of {tracer}", settings, lake)
    table_url = report_url(settings, lake, run_dir / f"xi_{tracer}.ecsv")
    summary = (f"# desi-clustering: {tracer}\n\n{result.n_data} galaxies, {result.n_randoms} randoms, "
               f"{len(result.s_edges) - 1} separation bins from {result.s_edges[0]:g} to {result.s_edges[-1]:g} "
               f"Mpc/h, {result.mu_edges.size - 1} mu bins (pair-midpoint line of sight).\n\n"
               f"xi_0 in the first bin: {result.xi0[0]:.4f}. Table: {table_url}")
    create_markdown_artifact(summary, key=f"desi-clustering-{tracer.lower()}", description="desi-clustering summary")
    return summary


@flow(name="desi-clustering", log_prints=True)
def desi_clustering(tracer: str = "BGS", z_min: float = 0.05, z_max: float = 0.4, s_min: float = 5.0,
                    s_max: float = 50.0, n_s: int = 9, n_mu: int = 10, randoms_factor: float = 3.0,
                    footprint_order: int = 5, seed: int = 0, config: str | None = None) -> dict:
    """xi(s) of one tracer (BGS, LRG, ELG, QSO) from the catalog, counted on the configured Dask cluster."""
    settings = load_settings(config)
    run_id = str(flow_run.get_id() or "local")
    storage = build_result_storage(settings)
    data = persisted(select, storage)(settings, tracer, z_min, z_max, catalog_state(settings))
    if len(data) < 2:
        raise ValueError(f"only {len(data)} {tracer} galaxies with {z_min} <= z < {z_max} in the catalog")
    rand = persisted(randoms, storage)(data, randoms_factor, footprint_order, seed)
    print(f"{len(data)} {tracer} galaxies, {len(rand)} randoms")
    result = persisted(count_pairs, storage)(data, rand, list(np.linspace(s_min, s_max, n_s + 1)), n_mu, settings)
    report(result, settings, tracer, run_id)
    return {"tracer": tracer, "n_data": result.n_data, "n_randoms": result.n_randoms,
            "s_mid": result.table()["S_MID"].to_pylist(), "xi0": result.xi0.tolist(), "xi2": result.xi2.tolist()}

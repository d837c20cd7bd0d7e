"""desi-crossmatch: nearest-neighbour match of two HATS catalogs within a radius, partition by partition."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from astrolab.resources import build_lake, dask_client
from astrolab.settings import Settings, load_settings
from flows.artifacts import publish_image
from tasks.hats.reader import HatsCatalog, catalog_rows, open_hats
from tasks.science.crossmatch import crossmatch, match_stats, separation_histogram_png


@task(name="open-catalogs")
def open_catalogs(left: str, right: str, settings: Settings) -> tuple[HatsCatalog, HatsCatalog]:
    """Each side is a HATS catalog path or the name of a catalog published in the lake (e.g. ``redshifts``)."""
    lake = build_lake(settings)

    def resolve(name: str) -> HatsCatalog:
        path = Path(name)
        if not path.exists() and "/" not in name:  # a product name: its published version (from S3: a local copy)
            path = lake.local_catalog(name)
        return open_hats(path)

    return resolve(left), resolve(right)


@task(name="match-partitions", cache_policy=NO_CACHE)
def match(left: HatsCatalog, right: HatsCatalog, radius_arcsec: float, left_columns: list[str],
          right_columns: list[str], settings: Settings, run_id: str) -> tuple[str, dict]:
    """Match on the configured Dask cluster (on its GPUs with dask.gpu), one task per left partition; write the
    matches to the lake."""
    with dask_client(settings) as client:
        matches = crossmatch(left, right, radius_arcsec, left_columns, right_columns, client=client,
                             gpu=settings.dask.gpu)
    stats = match_stats(matches, catalog_rows(left), catalog_rows(right), radius_arcsec)
    lake = build_lake(settings)
    run_dir = lake.run_report_dir(run_id)
    out = run_dir / "crossmatch.parquet"
    pq.write_table(matches, out)
    plot = run_dir / "crossmatch_separations.png"
    plot.write_bytes(separation_histogram_png(matches, radius_arcsec))
    lake.save_dir(run_dir)
    publish_image(plot, "desi-crossmatch-separations", "match separations", settings, lake)
    return lake.url_of(out), stats


@flow(name="desi-crossmatch", log_prints=True)
def desi_crossmatch(left: str = "redshifts", right: str = "fastspec", radius_arcsec: float = 1.0,
                    left_columns: list[str] | None = None, right_columns: list[str] | None = None,
                    config: str | None = None) -> dict:
    """Nearest right-catalog row within ``radius_arcsec`` of each left-catalog row (any two HATS catalogs)."""
    settings = load_settings(config)
    run_id = str(flow_run.get_id() or "local")
    lcat, rcat = open_catalogs(left, right, settings)
    url, stats = match(lcat, rcat, radius_arcsec, left_columns or [], right_columns or [], settings, run_id)
    create_table_artifact([stats], key="desi-crossmatch-stats", description=f"{left} x {right}")
    create_markdown_artifact(
        f"# desi-crossmatch: {left} x {right}\n\n{stats['matched']} of {stats['left_rows']} rows matched within "
        f"{radius_arcsec:g} arcsec ({stats['matched_fraction']:.1%}); median separation "
        f"{stats['median_separation_arcsec']:.3f} arcsec.\n\nMatches: {url}",
        key="desi-crossmatch-summary", description="desi-crossmatch summary")
    print(stats)
    return {**stats, "matches": url}

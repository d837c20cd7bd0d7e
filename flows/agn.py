"""desi-agn: BPT / broad-line / WISE AGN classification of the catalog's FastSpecFit rows -> `agn` table + FITS."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.runtime import flow_run

from astrolab.resources import build_catalog, build_lake, dask_client
from astrolab.retries import retrying
from astrolab.settings import Settings, load_settings
from flows.artifacts import publish_image
from tasks.science.agn import classify as agn
from tasks.science.agn.plots import bpt_diagram_png
from tasks.storage.lake import save_product

AGN_FITS = "DESI_AGN_BPT_WISE.fits"


@task(name="classify-agn", **retrying(2))
def classify(settings: Settings, chunk_rows: int, cuts: dict[str, float], run_id: str) -> tuple[dict[str, int], str]:
    """Classify the fastspec rows once, chunk by chunk on the configured Dask cluster, streaming every chunk both
    into a new `agn` table (one transaction) and into the AGN FITS file in the lake; returns the counts and the
    FITS URL."""
    counts = agn.summarize([])

    def counted(chunks: Iterable[pa.Table]) -> Iterator[pa.Table]:
        for chunk in chunks:
            for key, n in agn.summarize(chunk).items():
                counts[key] += n
            yield chunk

    with build_catalog(settings) as catalog, dask_client(settings) as client:
        rows = agn.iter_agn_catalog(catalog, chunk_rows, **cuts, client=client, gpu=settings.dask.gpu)

        def write(path: Path) -> None:
            agn.write_agn_table(catalog, agn.fits_rows(counted(rows), path, **cuts))

        url = save_product(build_lake(settings), run_id, AGN_FITS, write)
    return counts, url


@task(name="bpt-diagram")
def bpt_diagram(settings: Settings, run_id: str) -> Path:
    """The [NII]-BPT diagram of the `agn` table's classified rows as a PNG in the lake; returns its path."""
    with build_catalog(settings) as catalog:
        rows = catalog.query("SELECT bpt_nii, log_nii_ha, log_oiii_hb FROM agn WHERE bpt_nii <> 0 ORDER BY targetid")
    png = bpt_diagram_png(rows.rename_columns([n.upper() for n in rows.column_names]))
    lake = build_lake(settings)
    save_product(lake, run_id, "agn_bpt.png", lambda path: path.write_bytes(png))
    return lake.run_report_dir(run_id) / "agn_bpt.png"


@flow(name="desi-agn", log_prints=True)
def desi_agn(config: str | None = None, snr_min: float = 3.0, fwhm_min: float = 1200.0, wise_cut: float = 0.8,
             chunk_rows: int = agn.CHUNK_ROWS) -> dict:
    """Classify every FastSpecFit row of the catalog (BPT with S/N >= snr_min, broad Halpha FWHM >= fwhm_min km/s,
    WISE W1-W2 >= wise_cut), write the `agn` table and an AGN FITS file in the lake, and report the counts."""
    settings = load_settings(config)
    run_id = str(flow_run.get_id() or "local")
    cuts = {"snr_min": snr_min, "fwhm_min": fwhm_min, "wise_cut": wise_cut}
    counts, fits_url = classify(settings, chunk_rows, cuts, run_id)
    image = bpt_diagram(settings, run_id)
    create_table_artifact([{"count": k, "rows": v} for k, v in counts.items()], key="desi-agn-counts",
                          description=f"AGN classes and AGN_MASKBITS bits; FITS: {fits_url}")
    lake = build_lake(settings)
    publish_image(image, "desi-agn-bpt", "[NII]-BPT diagram", settings, lake)
    print(f"{counts['rows']} fastspec rows classified; FITS {fits_url}")
    return {"counts": counts, "fits": fits_url, "image": lake.url_of(image)}

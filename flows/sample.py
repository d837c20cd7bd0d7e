"""desi-sample: write a deterministic synthetic DESI DR1 sample (exact DR1 formats, planted voids)."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.events import emit_event

from astrolab import progress
from astrolab.settings import load_settings
from tasks.synthetic import SampleConfig, SampleManifest, generate_sample

SAMPLE_DIR = "desi-sample"  # below the settings' home, unless out_dir says otherwise
WRITTEN_EVENT = "astrolab.sample.written"  # starts desi-ingest/synthetic (prefect.yaml)


@task(name="generate-sample")
def write_sample(out_dir: str, config: SampleConfig) -> SampleManifest:
    """Generate the sample files under ``out_dir``."""
    done = 0

    def report(rows: int, total: int) -> None:
        nonlocal done
        progress.advance(rows - done)
        done = rows

    return generate_sample(Path(out_dir), config, progress=report)


@flow(name="desi-sample", log_prints=True)
def desi_sample(out_dir: str | None = None, n_rows: int = 10_000, seed: int = 42, n_voids: int = 40,
                spectra: bool = True, config: str | None = None) -> dict:
    """Write a synthetic DESI DR1 sample of about ``n_rows`` redshifts under ``out_dir`` (relative: below the
    settings' home; default ``<home>/desi-sample``), then emit ``astrolab.sample.written`` with its root."""
    settings = load_settings(config)
    root = settings.under_home(out_dir or SAMPLE_DIR)
    sample_config = SampleConfig(n_rows=n_rows, seed=seed, n_voids=n_voids, write_spectra=spectra)
    manifest = write_sample(str(root), sample_config)
    rows = [{"file": str(f.path.relative_to(manifest.root)), "kind": f.kind, "rows": f.rows} for f in manifest.files]
    create_table_artifact(rows, key="desi-sample-files", description=f"Synthetic DESI sample, seed {seed}")
    print(f"wrote {len(rows)} files ({n_rows} redshift rows) under {manifest.root}; "
          f"planted voids in {manifest.truth_voids}")
    emit_event(WRITTEN_EVENT, resource={"prefect.resource.id": f"astrolab.sample.{manifest.root}",
                                        "prefect.resource.name": str(manifest.root)},
               payload={"root": str(manifest.root), "truth_voids": str(manifest.truth_voids), "rows": n_rows,
                        "seed": seed, "config": config or ""})
    return {"root": str(manifest.root), "files": len(rows), "truth_voids": str(manifest.truth_voids)}

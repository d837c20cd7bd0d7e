"""generate_sample: write a deterministic synthetic DESI DR1 sample, block by block, in bounded memory."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from .blocks import Context, generate_block
from .catalogs import CatalogWriters
from .config import SampleConfig, SampleManifest
from .paths import manifest_path, truth_voids_path
from .spectra import coadd_pixels, write_pixel
from .voids import write_truth

Progress = Callable[[int, int], None]


def _coadd_program(config: SampleConfig, counts_by_program: dict[tuple[str, str], int]) -> tuple[str, str]:
    if ("main", "dark") in config.programs:
        return ("main", "dark")
    return max(counts_by_program, key=counts_by_program.__getitem__)


def generate_sample(out_dir: Path, config: SampleConfig | None = None, progress: Progress | None = None
                    ) -> SampleManifest:
    """Write the sample under out_dir (laid out like DESI's public/dr1/) and return its manifest."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = config or SampleConfig()
    ctx = Context.build(config)
    plan = ctx.plan
    truth = truth_voids_path(out_dir)
    write_truth(truth, ctx.voids, config.seed)

    tmp = Path(tempfile.mkdtemp(prefix=".sample-", dir=out_dir))
    writers = CatalogWriters(out_dir, tmp, ctx)
    try:
        done = 0
        for i in range(len(plan.blocks)):
            block = generate_block(ctx, i)
            writers.add(block, plan.nside1_pixel(i))
            done += len(block.rows["TARGETID"])
            if progress is not None:
                progress(done, config.n_rows)
        files = writers.close()
    except BaseException:
        writers.abort()
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if done != config.n_rows:
        raise AssertionError(f"generated {done} rows, config asked for {config.n_rows}")

    if config.write_spectra and config.n_coadd_pixels and config.coadd_nspec:
        rows_by_program = {prog: int(writers.counts[p].sum()) for p, prog in enumerate(writers.programs)}
        survey, program = _coadd_program(config, rows_by_program)
        counts = writers.counts[writers.programs.index((survey, program))]
        for pixel in coadd_pixels(counts, config.n_coadd_pixels):
            files += write_pixel(out_dir, ctx, survey, program, pixel)

    manifest = SampleManifest(out_dir, tuple(files), truth, config)
    manifest_path(out_dir).write_text(manifest.to_json() + "\n")
    return manifest

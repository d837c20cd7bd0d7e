"""HATS import benchmark: one zpix file to a published HATS catalog with its margin, astrolab against hats-import.

    python bench/hats_import.py [--rows 2000000] [--repeats 3] [--cores 2]

Both methods start from the same generated FITS file (bench/ingest.py's sample) and write a HATS catalog of the
same columns, partitioned with the same settings (``ingest.hats_max_rows`` rows at most per partition, HEALPix
orders up to ``ingest.hats_highest_order``), with a margin catalog of ``ingest.hats_margin_arcsec``:
- astrolab: the flow's path, as bench/ingest.py measures it (hash, chunked read, Great Expectations validation,
  enrichment, staging, catalog load with lineage, then the versioned HATS publish with its margin);
- hats-import: ``hats_import`` catalog import of the FITS file (the catalog columns the file holds; astrolab's
  derived distance columns it cannot make) then its margin pipeline on the new catalog (hats-import 0.11 has no
  fine filtering: its margin keeps every row of the ring pixels, so it holds more rows than are within the
  threshold, where astrolab's holds exactly those), on a local Dask cluster of ``--cores`` single-threaded
  worker processes started before the clock.
Each run is a process of its own; its peak memory is the largest summed resident memory of the process and its
children (the Dask workers), sampled every 50 ms. Prints the medians, the ratio and the peaks, and writes
bench/out/hats_import.json.

hats-import is the ``bench`` extra: ``pip install -e '.[bench]'`` (or ``pip install 'hats-import>=0.11.1,<0.12'``,
the release that matches hats 0.11).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# this script's own directory first on the path would make ``import hats_import`` find this file
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench")]

from bench.ingest import OUT, make_sample, run_astrolab  # noqa: E402  (after the path set-up, as a script)

MISSING = ("hats-import is not installed: pip install -e '.[bench]' "
           "(or pip install 'hats-import>=0.11.1,<0.12', the release matching hats 0.11)")


class TreePeak:
    """Largest summed resident memory of this process and its descendants, sampled in a thread."""

    def __init__(self, every_s: float = 0.05):
        import psutil

        self.me, self.every_s, self.peak, self.done = psutil.Process(), every_s, 0, threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        import psutil

        while not self.done.is_set():
            total = 0
            for proc in [self.me, *self.me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):  # a worker that just exited
                    total += proc.memory_info().rss
            self.peak = max(self.peak, total)
            self.done.wait(self.every_s)

    def stop(self) -> float:
        """Stop sampling; the peak in MiB."""
        self.done.set()
        self.thread.join()
        return self.peak / 2**20


def catalog_rows(work: Path) -> dict[str, int]:
    """Rows of the primary and margin catalogs written under ``work`` (from their hats.properties)."""
    rows: dict[str, int] = {}
    for props in {p.resolve() for p in work.rglob("hats.properties")}:
        values = dict(line.split("=", 1) for line in props.read_text().splitlines() if "=" in line
                      and not line.startswith("#"))
        kind = values["dataproduct_type"].strip()
        rows[kind] = rows.get(kind, 0) + int(values["hats_nrows"])
    return rows


def run_hats_import(path: Path, work: Path, cores: int) -> dict:
    from astropy.io import fits
    from dask.distributed import Client
    from hats_import.catalog.arguments import ImportArguments
    from hats_import.catalog.file_readers import FitsReader
    from hats_import.margin_cache.margin_cache_arguments import MarginCacheArguments
    from hats_import.pipeline import pipeline_with_client

    from astrolab.settings import load_settings
    from tasks.hats.margin import margin_name
    from tasks.ingest.products import REDSHIFTS

    settings = load_settings(env={"ASTROLAB_HOME": str(work / "home")}).ingest
    with fits.open(path, memmap=True) as hdul:
        hdu = hdul.index_of("ZCATALOG")
        columns = [c for c in REDSHIFTS.catalog_columns if c in hdul[hdu].columns.names]
    common = dict(output_path=work, progress_bar=False, resume=False, tmp_dir=work / "tmp")
    catalog_args = ImportArguments(
        output_artifact_name=REDSHIFTS.name, input_file_list=[path], ra_column=REDSHIFTS.ra,
        dec_column=REDSHIFTS.dec, file_reader=FitsReader(chunksize=settings.chunk_rows, column_names=columns,
                                                         hdu=hdu, flatten_tensors=False),
        pixel_threshold=settings.hats_max_rows, highest_healpix_order=settings.hats_highest_order, **common)
    with Client(n_workers=cores, threads_per_worker=1, processes=True, dashboard_address=None) as client:
        t0 = time.perf_counter()
        pipeline_with_client(catalog_args, client)
        t1 = time.perf_counter()
        if settings.hats_margin_arcsec:
            pipeline_with_client(MarginCacheArguments(
                input_catalog_path=work / REDSHIFTS.name,
                output_artifact_name=margin_name(REDSHIFTS.name, settings.hats_margin_arcsec),
                margin_threshold=settings.hats_margin_arcsec, **common), client)
        t2 = time.perf_counter()
    return {"seconds": t2 - t0, "import_seconds": t1 - t0, "margin_seconds": t2 - t1, "columns": len(columns)}


def run_ours(path: Path, work: Path, cores: int) -> dict:
    return run_astrolab(path, work)


METHODS = {"astrolab": run_ours, "hats-import": run_hats_import}


def child(method: str, path: Path, cores: int) -> None:
    work = OUT / f"work-hats-{method}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    peak = TreePeak()
    result = METHODS[method](path, work, cores)
    result["peak_mib"] = peak.stop()
    result["catalog_rows"] = catalog_rows(work)
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, default=str))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="Dask workers for hats-import")
    parser.add_argument("--child", choices=list(METHODS), help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if importlib.util.find_spec("hats_import") is None:
        sys.exit(MISSING)
    if args.child:
        child(args.child, args.file, args.cores)
        return

    OUT.mkdir(parents=True, exist_ok=True)
    path = make_sample(args.rows)
    print(f"file: {path} ({path.stat().st_size / 2**30:.2f} GiB), hats-import on {args.cores} workers",
          file=sys.stderr)
    runs: dict[str, list[dict]] = {m: [] for m in METHODS}
    for i in range(args.repeats):
        for method in METHODS:  # interleaved, so drift in machine load hits both alike
            os.sync()  # the previous run's written files reach the disk before this one starts, not during it
            proc = subprocess.run([sys.executable, __file__, "--child", method, "--file", str(path),
                                   "--cores", str(args.cores)], capture_output=True, text=True, check=False)
            if proc.returncode:
                sys.exit(f"{method} failed:\n{proc.stderr[-3000:]}")
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            runs[method].append(r)
            print(f"  repeat {i + 1} {method:11s} {r['seconds']:7.2f} s  peak {r['peak_mib']:7.0f} MiB  "
                  f"rows {r['catalog_rows']}", file=sys.stderr)

    summary: dict[str, object] = {"rows": args.rows, "cores": args.cores}
    print(f"\n{'method':12s} {'median s':>9s} {'peak MiB':>9s} {'catalog rows':>13s} {'margin rows':>12s}")
    for method, rs in runs.items():
        s = {"median_s": statistics.median(r["seconds"] for r in rs), "peak_mib": max(r["peak_mib"] for r in rs),
             "catalog_rows": rs[0]["catalog_rows"], "runs": rs}
        summary[method] = s
        print(f"{method:12s} {s['median_s']:9.2f} {s['peak_mib']:9.0f} {s['catalog_rows'].get('object', 0):13,d} "
              f"{s['catalog_rows'].get('margin', 0):12,d}")
    ours, theirs = summary["astrolab"], summary["hats-import"]
    assert isinstance(ours, dict) and isinstance(theirs, dict)
    ratio = theirs["median_s"] / ours["median_s"]
    summary["speedup_vs_hats_import"] = ratio
    print(f"astrolab (ingest {statistics.median(r['ingest_seconds'] for r in ours['runs']):.2f} s + publish "
          f"{statistics.median(r['publish_seconds'] for r in ours['runs']):.2f} s) vs hats-import (import "
          f"{statistics.median(r['import_seconds'] for r in theirs['runs']):.2f} s + margin "
          f"{statistics.median(r['margin_seconds'] for r in theirs['runs']):.2f} s): {ratio:.2f}x "
          f"({'not slower' if ratio >= 1 else 'SLOWER'})")
    (OUT / "hats_import.json").write_text(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
    main()

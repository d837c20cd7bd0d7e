"""Ingest benchmark: one large zpix file through astrolab's path, side by side with the naive path and the limit.

    python bench/ingest.py [--rows 2000000] [--repeats 3]

Each measurement runs in its own process (peak memory is that process's ru_maxrss) on the same file, in one run:
- naive: astropy ``Table.read`` -> ``to_pandas`` -> ``to_parquet`` (vector columns such as COEFF dropped, since
  ``to_pandas`` refuses them);
- limit: FITS rows into numpy (``fits.getdata``) then ``pyarrow.parquet.write_table``, nothing else;
- astrolab: the ingest path as the flow runs it (hash, chunked read, Great Expectations validation, enrichment,
  staging, DuckDB load with lineage) and the HATS publish, reported separately and together.
Prints a table of median seconds, rows/s, ratios and peak memory, the extrapolation to the full DR1 zall file, and
writes bench/out/ingest.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "out"
DR1_ZALL_ROWS = (20_000_000, 30_000_000)


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_naive(path: Path, work: Path) -> dict:
    from astropy.table import Table

    t0 = time.perf_counter()
    table = Table.read(path, hdu="ZCATALOG")
    flat = [name for name in table.colnames if len(table[name].shape) <= 1]
    df = table[flat].to_pandas()
    df.to_parquet(work / "naive.parquet")
    return {"seconds": time.perf_counter() - t0, "rows": len(df)}


def run_limit(path: Path, work: Path) -> dict:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from astropy.io import fits

    t0 = time.perf_counter()
    data = fits.getdata(path, extname="ZCATALOG", memmap=False).view(np.ndarray)
    columns = {}
    for name in data.dtype.names:
        col = data[name]
        col = col.astype(col.dtype.newbyteorder("="), copy=False)
        if col.ndim == 2:
            columns[name] = pa.FixedSizeListArray.from_arrays(pa.array(col.reshape(-1)), col.shape[1])
        else:
            columns[name] = pa.array(col)
    pq.write_table(pa.table(columns), work / "limit.parquet")
    return {"seconds": time.perf_counter() - t0, "rows": len(data)}


def run_astrolab(path: Path, work: Path) -> dict:
    from astrolab.resources import build_catalog, build_lake, build_validator
    from astrolab.settings import load_settings
    from tasks.ingest.pipeline import ingest_file, publish
    from tasks.ingest.products import REDSHIFTS
    from tasks.ingest.sources import discover

    settings = load_settings(env={"ASTROLAB_HOME": str(work / "home")})
    lake = build_lake(settings)
    validator = build_validator(settings, lake)  # GX import and context set-up happen once per process
    (src,) = discover(path)
    t0 = time.perf_counter()
    with build_catalog(settings) as catalog:
        result = ingest_file(src, lake, catalog, validator, settings.ingest.chunk_rows, "bench")
        t1 = time.perf_counter()
        if result.status != "ingested":
            raise RuntimeError(f"ingest failed: {result.error}")
        published = publish(REDSHIFTS, lake, catalog, settings.ingest.hats_max_rows,
                            settings.ingest.hats_highest_order, settings.ingest.hats_margin_arcsec)
    t2 = time.perf_counter()
    return {"seconds": t2 - t0, "ingest_seconds": t1 - t0, "publish_seconds": t2 - t1, "rows": result.rows,
            "timings": result.timings, "partitions": published.partitions if published else 0}


METHODS = {"naive": run_naive, "limit": run_limit, "astrolab": run_astrolab}


def child(method: str, path: Path) -> None:
    work = OUT / f"work-{method}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    result = METHODS[method](path, work)
    result["peak_mib"] = peak_mib()
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))


def make_sample(rows: int) -> Path:
    from tasks.synthetic import SampleConfig, generate_sample

    root = OUT / f"sample-{rows}"
    manifest = root / "sample-manifest.json"
    if not manifest.exists():
        shutil.rmtree(root, ignore_errors=True)
        t0 = time.perf_counter()
        generate_sample(root, SampleConfig(n_rows=rows, seed=7, programs=(("main", "dark"),), write_zall=False,
                                           write_fastspec=False, write_spectra=False))
        print(f"generated {rows:,} rows in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    (path,) = root.rglob("zpix-main-dark.fits")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    parser.add_argument("--child", choices=list(METHODS), help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.file)
        return

    OUT.mkdir(parents=True, exist_ok=True)
    path = make_sample(args.rows)
    size_gib = path.stat().st_size / 2**30
    print(f"file: {path} ({size_gib:.2f} GiB)", file=sys.stderr)
    runs: dict[str, list[dict]] = {m: [] for m in args.methods}
    for i in range(args.repeats):
        for method in args.methods:  # interleaved, so drift in machine load hits every method alike
            proc = subprocess.run([sys.executable, __file__, "--child", method, "--file", str(path)],
                                  capture_output=True, text=True, check=False)
            if proc.returncode:
                sys.exit(f"{method} failed:\n{proc.stderr[-3000:]}")
            runs[method].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            r = runs[method][-1]
            print(f"  repeat {i + 1} {method:9s} {r['seconds']:7.2f} s  peak {r['peak_mib']:7.0f} MiB", file=sys.stderr)

    summary = {}
    for method, rs in runs.items():
        seconds = statistics.median(r["seconds"] for r in rs)
        rows = rs[0]["rows"]
        summary[method] = {"median_s": seconds, "rows": rows, "rows_per_s": rows / seconds,
                           "peak_mib": max(r["peak_mib"] for r in rs), "runs": rs}
    print(f"\n{'method':10s} {'median s':>9s} {'rows/s':>12s} {'peak MiB':>9s}")
    for method, s in summary.items():
        print(f"{method:10s} {s['median_s']:9.2f} {s['rows_per_s']:12,.0f} {s['peak_mib']:9.0f}")
    if "astrolab" in summary:
        ours = summary["astrolab"]
        ingest_only = statistics.median(r["ingest_seconds"] for r in ours["runs"])
        print(f"astrolab ingest (catalog loaded, before HATS publish): {ingest_only:.2f} s "
              f"= {ours['rows'] / ingest_only:,.0f} rows/s")
        for base, target in (("naive", 5.0), ("limit", 0.6)):
            if base in summary:
                ratio = ours["rows_per_s"] / summary[base]["rows_per_s"]
                summary[f"ratio_vs_{base}"] = ratio
                print(f"astrolab / {base}: {ratio:.2f}x rows/s (target >= {target}x): "
                      f"{'met' if ratio >= target else 'MISSED'}")
        print(f"peak memory {ours['peak_mib']:.0f} MiB (target <= 2048): "
              f"{'met' if ours['peak_mib'] <= 2048 else 'MISSED'}")
        lo, hi = (n / ours["rows_per_s"] / 60 for n in DR1_ZALL_ROWS)
        summary["dr1_zall_minutes"] = [lo, hi]
        print(f"extrapolated full DR1 zall ({DR1_ZALL_ROWS[0] / 1e6:.0f}-{DR1_ZALL_ROWS[1] / 1e6:.0f} M rows) on this "
              f"machine: {lo:.1f}-{hi:.1f} min")
    (OUT / "ingest.json").write_text(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
    main()

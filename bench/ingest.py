"""Ingest benchmark: one large zpix file through astrolab's path, side by side with the naive path and the limit.

    python bench/ingest.py [--rows 2000000] [--repeats 3] [--ref-tree DIR]

Each measurement runs in its own process (peak memory is that process's ru_maxrss) on the same file, in one run:
- naive: astropy ``Table.read`` -> ``to_pandas`` -> ``to_parquet`` (vector columns such as COEFF dropped, since
  ``to_pandas`` refuses them);
- limit: FITS rows into numpy (``fits.getdata``) then ``pyarrow.parquet.write_table``, nothing else;
- astrolab: the ingest path as the flow runs it (hash, checksum verification, chunked read, Great Expectations
  validation, enrichment, staging, DuckDB load with lineage) and the HATS publish, in one process as the flow runs
  them, timed and peak-measured separately (the peak is reset between the two) and together.
With ``--ref-tree`` (another checkout, e.g. ``git archive`` of an older commit), "astrolab-ref" runs the same path
with that tree's code, interleaved with the rest: a before/after comparison under the same machine load.
Prints a table of median seconds, rows/s, ratios and peak memory, the load alone against the limit, the extrapolation
to the full DR1 zall file, and writes bench/out/ingest.json.
"""

from __future__ import annotations

import argparse
import json
import os
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
    """This process's peak resident memory since it started or since the last ``reset_peak``."""
    try:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> bool:
    """Start a new peak from the current resident memory (Linux: VmHWM); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


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
        ingest_peak = peak_mib()
        separate = reset_peak()  # the publish's own peak (what it holds on top of what the process keeps)
        published = publish(REDSHIFTS, lake, catalog, settings.ingest.hats_max_rows,
                            settings.ingest.hats_highest_order, settings.ingest.hats_margin_arcsec)
    t2 = time.perf_counter()
    publish_peak = peak_mib() if separate else None
    return {"seconds": t2 - t0, "ingest_seconds": t1 - t0, "publish_seconds": t2 - t1, "rows": result.rows,
            "timings": result.timings, "partitions": published.partitions if published else 0,
            "ingest_peak_mib": ingest_peak, "publish_peak_mib": publish_peak,
            "peak_mib": max(ingest_peak, publish_peak or peak_mib())}


METHODS = {"naive": run_naive, "limit": run_limit, "astrolab": run_astrolab}


def child(method: str, path: Path, tree: Path | None) -> None:
    work = OUT / f"work-{method}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    if tree is not None:  # that tree's astrolab, tasks and kernels instead of this one's
        sys.path.insert(0, str(tree))
    result = METHODS[method.removesuffix("-ref")](path, work)
    result.setdefault("peak_mib", peak_mib())
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
    parser.add_argument("--ref-tree", type=Path, help="also run astrolab with the code of this source tree")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.file, args.ref_tree)
        return
    if args.ref_tree:
        args.methods.append("astrolab-ref")

    OUT.mkdir(parents=True, exist_ok=True)
    path = make_sample(args.rows)
    size_gib = path.stat().st_size / 2**30
    print(f"file: {path} ({size_gib:.2f} GiB)", file=sys.stderr)
    runs: dict[str, list[dict]] = {m: [] for m in args.methods}
    for i in range(args.repeats):
        for method in args.methods:  # interleaved, so drift in machine load hits every method alike
            ref = ["--ref-tree", str(args.ref_tree.resolve())] if method.endswith("-ref") else []
            os.sync()  # the previous run's written files reach the disk before this one starts, not during it
            proc = subprocess.run([sys.executable, __file__, "--child", method, "--file", str(path), *ref],
                                  capture_output=True, text=True, check=False)
            if proc.returncode:
                sys.exit(f"{method} failed:\n{proc.stderr[-3000:]}")
            runs[method].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            r = runs[method][-1]
            parts = "" if not method.startswith("astrolab") else (
                f" (ingest {r['ingest_seconds']:.2f} s, peak {r['ingest_peak_mib']:.0f} MiB; publish "
                f"{r['publish_seconds']:.2f} s, peak {r['publish_peak_mib'] or 0:.0f} MiB)")
            print(f"  repeat {i + 1} {method:12s} {r['seconds']:7.2f} s  peak {r['peak_mib']:7.0f} MiB{parts}",
                  file=sys.stderr)

    summary = {}
    for method, rs in runs.items():
        seconds = statistics.median(r["seconds"] for r in rs)
        rows = rs[0]["rows"]
        summary[method] = {"median_s": seconds, "rows": rows, "rows_per_s": rows / seconds,
                           "peak_mib": max(r["peak_mib"] for r in rs), "runs": rs}
    print(f"\n{'method':12s} {'median s':>9s} {'rows/s':>12s} {'peak MiB':>9s}")
    for method, s in summary.items():
        print(f"{method:12s} {s['median_s']:9.2f} {s['rows_per_s']:12,.0f} {s['peak_mib']:9.0f}")
    for name in ("astrolab-ref", "astrolab"):  # the reference first, so the current code is read last
        if name in summary:
            print(f"\n{name}:")
            report_astrolab(summary, name)
    (OUT / "ingest.json").write_text(json.dumps(summary, indent=2, default=str))


def report_astrolab(summary: dict, name: str) -> None:
    """Print and add to ``summary`` astrolab's ingest and publish figures, and its ratios to the naive path and
    the limit."""
    ours = summary[name]
    runs = ours["runs"]
    ingest_only = statistics.median(r["ingest_seconds"] for r in runs)
    publish_only = statistics.median(r["publish_seconds"] for r in runs)
    ours["ingest"] = {"median_s": ingest_only, "rows_per_s": ours["rows"] / ingest_only,
                      "peak_mib": max(r["ingest_peak_mib"] for r in runs),
                      "timings_median": {k: statistics.median(r["timings"].get(k, 0.0) for r in runs)
                                         for k in runs[0]["timings"]}}
    publish_peaks = [r["publish_peak_mib"] for r in runs if r["publish_peak_mib"] is not None]
    ours["publish"] = {"median_s": publish_only, "peak_mib": max(publish_peaks) if publish_peaks else None}
    print(f"astrolab ingest (verified, validated, staged, catalog loaded; before HATS publish): {ingest_only:.2f} s"
          f" = {ours['ingest']['rows_per_s']:,.0f} rows/s, peak {ours['ingest']['peak_mib']:.0f} MiB")
    print("  inside the ingest (median s): " + ", ".join(f"{k} {v:.2f}"
                                                          for k, v in ours["ingest"]["timings_median"].items()))
    print(f"astrolab HATS publish: {publish_only:.2f} s, peak "
          + (f"{ours['publish']['peak_mib']:.0f} MiB" if publish_peaks else "not separable here"))
    checks = [("astrolab / naive", "naive", ours["rows_per_s"], 5.0, "ratio_vs_naive"),
              ("astrolab / limit", "limit", ours["rows_per_s"], 0.6, "ratio_vs_limit"),
              ("astrolab ingest / limit", "limit", ours["ingest"]["rows_per_s"], 0.9, "ratio_ingest_vs_limit")]
    for label, base, rows_per_s, target, key in checks:
        if base in summary:
            ratio = rows_per_s / summary[base]["rows_per_s"]
            ours[key] = ratio
            if name == "astrolab":
                summary[key] = ratio
            print(f"{label}: {ratio:.2f}x rows/s (target >= {target}x): {'met' if ratio >= target else 'MISSED'}")
    for label, peak in (("whole path", ours["peak_mib"]), ("ingest", ours["ingest"]["peak_mib"]),
                        ("publish", ours["publish"]["peak_mib"])):
        if peak is not None:
            print(f"peak memory, {label}: {peak:.0f} MiB (target <= 2048): {'met' if peak <= 2048 else 'MISSED'}")
    lo, hi = (n / ours["rows_per_s"] / 60 for n in DR1_ZALL_ROWS)
    ours["dr1_zall_minutes"] = [lo, hi]
    if name == "astrolab":
        summary["dr1_zall_minutes"] = [lo, hi]
    print(f"extrapolated full DR1 zall ({DR1_ZALL_ROWS[0] / 1e6:.0f}-{DR1_ZALL_ROWS[1] / 1e6:.0f} M rows) on this "
          f"machine: {lo:.1f}-{hi:.1f} min")


if __name__ == "__main__":
    main()

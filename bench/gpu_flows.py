"""desi-clustering, desi-crossmatch and desi-agn as real Prefect flow runs on the GPU node (run by bench/gpu.sh).

    python bench/gpu_flows.py --out DIR [--data .whl/flowdata.tar.xz] [--tracer BGS] [--randoms-factor 2]
                              [--compare-cpu]

The node cannot run desi-ingest (Great Expectations is too big to carry), so bench/gpu_flowenv.sh ingests a small
synthetic sample here and packs its DuckDB catalog and HATS lake into .whl/flowdata.tar.xz; this script unpacks it
at the absolute path it was built at (the catalog's lake_* views name absolute paths), points ASTROLAB_HOME at it and
calls the flows in-process, so Prefect records them as flow runs on its ephemeral server (sqlite, under a
temporary PREFECT_HOME). ASTROLAB_DASK_GPU is taken from the environment: set, the flows' Dask cluster is a
dask_cuda.LocalCUDACluster; a first check starts that cluster alone and records its type and workers. One failing
step does not hide the others: each records its error, and DIR/gpu_flows.json is rewritten after every step.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tarfile
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
HOME = Path("/tmp/astrolab-gpuflows")  # where bench/gpu_flowenv.sh built the catalog and lake

# Before Prefect is imported: an ephemeral server of our own, no UI, no analytics, time for a cold start.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="prefect-home-"))
PREFECT_ENV = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_UI_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_ENABLED": "true",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
}
for name, value in PREFECT_ENV.items():
    os.environ.setdefault(name, value)
os.environ.pop("PREFECT_API_URL", None)


def unpack(archive: Path) -> None:
    """A fresh copy of the prepared catalog and lake at HOME (the archive holds the path below /)."""
    shutil.rmtree(HOME, ignore_errors=True)
    with tarfile.open(archive) as tar:
        tar.extractall("/", filter="tar")
    os.environ["ASTROLAB_HOME"] = str(HOME)


def versions() -> dict:
    """Versions of what the flows import: carried (prefect, duckdb, dask, ...) and the image's own."""
    from importlib.metadata import PackageNotFoundError, version

    names = ["prefect", "duckdb", "pydantic", "sqlalchemy", "dask", "distributed", "dask-cuda", "astropy", "healpy",
             "cupy-cuda13x", "nvidia-ml-py", "numpy", "numba", "pyarrow", "pandas", "anyio", "httpx", "click",
             "rich", "typer", "typing-extensions", "uvloop"]
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def run_step(results: dict, out: Path, name: str, func: Callable[[], dict]) -> None:
    """Run one step, record its result or error and its wall time, and rewrite the JSON."""
    t0 = time.perf_counter()
    try:
        results[name] = {"ok": True, **func()}  # a flow that ran and failed says ok: false itself
    except Exception as exc:  # noqa: BLE001 - a failing flow must not hide the other's result
        results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}",
                         "traceback": traceback.format_exc()[-3000:]}
    results[name]["wall_s"] = round(time.perf_counter() - t0, 2)
    print(f"== {name}: {json.dumps(results[name], default=str)[:1500]}", flush=True)
    (out / "gpu_flows.json").write_text(json.dumps(results, indent=2, default=str))


def cluster_check() -> dict:
    """The Dask cluster the flows get from astrolab.resources.dask_client: its type and its workers' GPUs."""
    from astrolab.resources import dask_client
    from astrolab.settings import load_settings

    settings = load_settings()
    with dask_client(settings) as client:
        workers = client.scheduler_info()["workers"]
        visible = client.run(lambda: os.environ.get("CUDA_VISIBLE_DEVICES"))
        return {"dask_gpu_setting": settings.dask.gpu, "cluster": type(client.cluster).__name__,
                "n_workers": len(workers), "cuda_visible_devices": sorted(visible.values(), key=str),
                "n_gpu_workers": sum(v is not None for v in visible.values())}


def flow_result(state, keys: tuple[str, ...] | None = None) -> dict:
    """A flow run's id, final state (and the state the Prefect API recorded), and its return value (the ``keys``
    of it) or, if it failed, its error."""
    from prefect import get_client

    run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        recorded = client.read_flow_run(run_id).state
    out = {"ok": state.is_completed(), "flow_run_id": str(run_id), "state": state.name,
           "recorded_state": recorded.name if recorded else None}
    result = state.result(raise_on_failure=False)
    if isinstance(result, BaseException):
        out["error"] = f"{type(result).__name__}: {result}"
        out["traceback"] = "".join(traceback.format_exception(result))[-3000:]
    elif isinstance(result, dict):
        out.update({k: result[k] for k in keys or result})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "gpu")
    parser.add_argument("--data", type=Path, default=ROOT / ".whl" / "flowdata.tar.xz")
    parser.add_argument("--tracer", default="BGS")  # the prepared sample is bright time: mostly BGS
    parser.add_argument("--z-min", type=float, default=0.05)
    parser.add_argument("--z-max", type=float, default=0.4)
    parser.add_argument("--randoms-factor", type=float, default=2.0)
    parser.add_argument("--flows", default="clustering,crossmatch,agn", help="comma-separated, from the default")
    parser.add_argument("--compare-cpu", action="store_true", help="rerun the flows on a CPU cluster and compare")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {"dask_gpu_env": os.environ.get("ASTROLAB_DASK_GPU"), "python": sys.version.split()[0],
                     "versions": versions()}
    unpack(args.data)

    def clustering() -> dict:
        from flows.clustering import desi_clustering

        state = desi_clustering(tracer=args.tracer, z_min=args.z_min, z_max=args.z_max,
                                randoms_factor=args.randoms_factor, return_state=True)
        return flow_result(state, ("tracer", "n_data", "n_randoms", "s_mid", "xi0", "xi2"))

    def crossmatch() -> dict:
        from flows.crossmatch import desi_crossmatch

        return flow_result(desi_crossmatch(left="redshifts", right="fastspec", radius_arcsec=1.0, return_state=True))

    def agn() -> dict:
        from flows.agn import desi_agn

        return flow_result(desi_agn(return_state=True), ("counts",))

    flows = {"desi_clustering": clustering, "desi_crossmatch": crossmatch, "desi_agn": agn}
    chosen = [f"desi_{name}" for name in args.flows.split(",")]
    run_step(results, args.out, "dask_cluster", cluster_check)
    for name in chosen:
        run_step(results, args.out, name, flows[name])
    ok = all(results[name]["ok"] for name in chosen)
    if args.compare_cpu and os.environ.get("ASTROLAB_DASK_GPU"):
        # The same flows on a CPU LocalCluster: the GPU runs must give the same pair counts, matches and classes.
        gpu_env = os.environ.pop("ASTROLAB_DASK_GPU")
        for name in chosen:
            run_step(results, args.out, f"{name}_cpu", flows[name])
        os.environ["ASTROLAB_DASK_GPU"] = gpu_env
        results["gpu_equals_cpu"] = {name: same_result(results[name], results[f"{name}_cpu"]) for name in chosen}
        (args.out / "gpu_flows.json").write_text(json.dumps(results, indent=2, default=str))
        print(f"== gpu_equals_cpu: {results['gpu_equals_cpu']}", flush=True)
    print(f"gpu_flows: {'all flows completed' if ok else 'FAILED'}; {args.out / 'gpu_flows.json'}", flush=True)
    return 0 if ok else 1


def same_result(gpu: dict, cpu: dict) -> bool:
    """The results a GPU and a CPU run of one flow must share: xi exactly (NaN where no pairs), match counts,
    AGN class counts, and median separations to rounding."""
    same = all(np.array_equal(np.asarray(gpu.get(k), float), np.asarray(cpu.get(k), float), equal_nan=True)
               for k in ("xi0", "xi2") if k in gpu)
    same &= all(gpu.get(k) == cpu.get(k) for k in ("matched", "counts", "n_data", "n_randoms"))
    return bool(same and np.isclose(gpu.get("median_separation_arcsec", 0.0),
                                    cpu.get("median_separation_arcsec", 0.0), rtol=1e-9, equal_nan=True))


if __name__ == "__main__":
    sys.exit(main())

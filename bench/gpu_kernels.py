"""GPU versus CPU kernel figures, side by side on one machine (run by bench/gpu.sh on a GPU node).

    python bench/gpu_kernels.py --out DIR [--quick] [--only paircount_s,paircount_smu,...]

Each case times the same kernel on numpy (all CPU cores through numba where the kernel has a compiled loop) and
on cupy, checks the two give the same answer, and adds the anchor where the issue names one: Corrfunc on all CPU
cores for pair counts, astropy's match_coordinates_sky for the crossmatch. GPU times include building the cell
grid on the device and copying the result back, not the host-to-device copy of the input. The results go to
DIR/gpu_kernels.json after every case, so a run cut short still reports what it measured.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cupy as cp  # noqa: E402
import numpy as np  # noqa: E402

from bench.kernels import median_time as cpu_median_time  # noqa: E402
from kernels import agn  # noqa: E402
from kernels import paircount as paircount_module  # noqa: E402
from kernels.cosmology import comoving_distance  # noqa: E402
from kernels.crossmatch import nearest_within  # noqa: E402
from kernels.healpix import ang2pix_nest  # noqa: E402
from kernels.paircount import dask_pair_counts, pair_counts  # noqa: E402


def median_time(func: Callable[[], object], repeats: int, gpu: bool = False) -> float:
    """bench/kernels.py's median after a warm-up; on the GPU, each clock read waits for the device."""
    return cpu_median_time(func, repeats, cp.cuda.Device().synchronize if gpu else lambda: None)


def load_previous_paircount() -> ModuleType | None:
    """The pair-count module this one replaced, if bench/gpu.sh was given it (.whl/prev/paircount_prev.py)."""
    path = ROOT / ".whl" / "prev" / "paircount_prev.py"
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location("kernels.paircount_prev", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def sky(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    return rng.uniform(0, 360, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the script itself")
    parser.add_argument("--only", default="", help="comma-separated case names (default: all)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    scale = 0.01 if args.quick else 1.0
    repeats = 3
    rng = np.random.default_rng(0)
    results: dict[str, dict] = {"device": cp.cuda.runtime.getDeviceProperties(0)["name"].decode(),
                                "cpu_cores": os.cpu_count()}

    def record(name: str, **fields: object) -> None:
        results[name] = fields
        print(name, json.dumps(fields), flush=True)
        (args.out / "gpu_kernels.json").write_text(json.dumps(results, indent=2))

    def case(name: str, body: Callable[[], None]) -> None:
        try:
            body()
        except Exception as exc:  # one failing case must not hide the others' figures
            record(name, error=f"{type(exc).__name__}: {exc}")

    n = int(10_000_000 * scale)
    z = rng.uniform(0, 3, n)
    ra, dec = sky(rng, n)

    def distances() -> None:
        z_d = cp.asarray(z)
        cpu = median_time(lambda: comoving_distance(z, compiled=False), repeats)
        numba_cpu = median_time(lambda: comoving_distance(z), repeats)
        gpu = median_time(lambda: comoving_distance(z_d), repeats, gpu=True)
        err = float(np.max(np.abs(cp.asnumpy(comoving_distance(z_d)) / comoving_distance(z) - 1)))
        record("distance", n=n, cpu_s=cpu, numba_cpu_s=numba_cpu, gpu_s=gpu, ratio=cpu / gpu,
               ratio_vs_numba=numba_cpu / gpu, target=10, max_rel_diff=err)

    def healpix() -> None:
        ra_d, dec_d = cp.asarray(ra), cp.asarray(dec)
        cpu = median_time(lambda: ang2pix_nest(29, ra, dec, compiled=False), repeats)
        numba_cpu = median_time(lambda: ang2pix_nest(29, ra, dec), repeats)
        gpu = median_time(lambda: ang2pix_nest(29, ra_d, dec_d), repeats, gpu=True)
        same = bool((cp.asnumpy(ang2pix_nest(29, ra_d, dec_d)) == ang2pix_nest(29, ra, dec)).all())
        record("ang2pix_order29", n=n, cpu_s=cpu, numba_cpu_s=numba_cpu, gpu_s=gpu, ratio=cpu / gpu,
               ratio_vs_numba=numba_cpu / gpu, target=10, identical=same)

    def agn_classify() -> None:
        cols = {c: rng.uniform(0.1, 10, n) for c in agn.INPUT_COLUMNS}
        cols_d = {k: cp.asarray(v) for k, v in cols.items()}
        cpu = median_time(lambda: agn.classify(cols), repeats)
        gpu = median_time(lambda: agn.classify(cols_d), repeats, gpu=True)
        want, got = agn.classify(cols), agn.classify(cols_d)
        # Integer outputs (classes, bits) must agree exactly; floats (log ratios) to the last few ulps, since
        # cupy's and numpy's log10 may round differently. A row whose ratio sits on a demarcation line within
        # that rounding can flip class: count such rows rather than hide them.
        differ = {}
        for k, v in want.items():
            g = cp.asnumpy(got[k])
            if np.issubdtype(v.dtype, np.floating):
                both = np.isfinite(v) & np.isfinite(g)
                differ[k] = float(np.max(np.abs(g[both] - v[both]) / np.maximum(np.abs(v[both]), 1e-300),
                                         initial=0.0))
            else:
                differ[k] = int((g != v).sum())
        record("agn_classify", n=n, cpu_s=cpu, gpu_s=gpu, ratio=cpu / gpu, target=10,
               differing_rows_or_max_rel_diff=differ)

    previous = load_previous_paircount()

    def paircount(n_mu: int) -> Callable[[], None]:
        def body() -> None:
            npts = int(2_000_000 * scale)
            box = 1000.0 * scale ** (1 / 3)
            pos = rng.uniform(0, box, (npts, 3))
            edges = np.geomspace(1.0, 60.0, 16)
            pos_d = cp.asarray(pos)
            default = dict(paircount_module.GPU_TUNING)
            by_tuning, same_by_tuning = {}, {}
            try:
                for refine in (2, 3):  # cell width rmax / refine
                    for threads in (128, 256, 512):
                        paircount_module.GPU_TUNING.update(threads=threads, refine=refine)
                        name = f"refine={refine},threads={threads}"
                        by_tuning[name] = median_time(lambda: pair_counts(pos_d, edges, n_mu=n_mu), repeats, gpu=True)
                        same_by_tuning[name] = pair_counts(pos_d, edges, n_mu=n_mu).npairs
            finally:
                paircount_module.GPU_TUNING.update(default)
            gpu = median_time(lambda: pair_counts(pos_d, edges, n_mu=n_mu), repeats, gpu=True)
            ours_cpu = median_time(lambda: pair_counts(pos, edges, n_mu=n_mu), 1)
            got = pair_counts(pos_d, edges, n_mu=n_mu).npairs
            same_cpu = bool((got == pair_counts(pos, edges, n_mu=n_mu).npairs).all())
            same_by_tuning = {name: bool((counts == got).all()) for name, counts in same_by_tuning.items()}
            fields = dict(n=npts, box=box, rmax=60.0, n_mu=n_mu, gpu_s=gpu, tuning=default,
                          gpu_s_by_tuning=by_tuning, identical_by_tuning=same_by_tuning, ours_cpu_s=ours_cpu,
                          gpu_vs_ours_cpu=ours_cpu / gpu,
                          identical_to_ours_cpu=same_cpu, target_vs_corrfunc=20)
            if previous is not None:  # the kernel this one replaces, on the same machine
                prev_s = median_time(lambda: previous.pair_counts(pos_d, edges, n_mu=n_mu), repeats, gpu=True)
                fields.update(previous_kernel_gpu_s=prev_s, speedup_vs_previous_kernel=prev_s / gpu,
                              previous_identical=bool((previous.pair_counts(pos_d, edges, n_mu=n_mu).npairs
                                                       == got).all()))
            try:
                from Corrfunc.theory import DD, DDsmu

                threads = os.cpu_count() or 1
                if n_mu:
                    run = lambda: DDsmu(1, threads, edges, 1.0, n_mu, *pos.T, periodic=False)  # noqa: E731
                else:
                    run = lambda: DD(1, threads, edges, *pos.T, periodic=False)  # noqa: E731
                corrfunc = median_time(run, repeats)
                fields.update(corrfunc_s=corrfunc, ratio_vs_corrfunc=corrfunc / gpu,
                              best_tuning_ratio_vs_corrfunc=corrfunc / min(by_tuning.values()),
                              ours_cpu_vs_corrfunc=corrfunc / ours_cpu,
                              identical_to_corrfunc=bool((run()["npairs"] == got.ravel()).all()))
            except ImportError as exc:
                fields.update(corrfunc_s=None, corrfunc_error=str(exc))
            record(f"paircount_{'smu' if n_mu else 's'}", **fields)
        return body

    def crossmatch() -> None:
        npts = int(1_000_000 * scale)
        ra1, dec1 = sky(rng, npts)
        ra2 = (ra1 + rng.normal(0, 0.5 / 3600, npts)) % 360
        dec2 = np.clip(dec1 + rng.normal(0, 0.5 / 3600, npts), -90, 90)
        radius = 2 / 3600
        dev = [cp.asarray(a) for a in (ra1, dec1, ra2, dec2)]
        gpu = median_time(lambda: nearest_within(*dev, radius), repeats, gpu=True)
        cpu = median_time(lambda: nearest_within(ra1, dec1, ra2, dec2, radius), repeats)
        got = cp.asnumpy(nearest_within(*dev, radius).index)
        fields = dict(n=npts, radius_arcsec=2.0, gpu_s=gpu, ours_cpu_s=cpu, ratio=cpu / gpu, target=10,
                      identical_to_ours_cpu=bool((got == nearest_within(ra1, dec1, ra2, dec2, radius).index).all()))
        try:
            import astropy.units as u
            from astropy.coordinates import SkyCoord, match_coordinates_sky

            c1, c2 = SkyCoord(ra1 * u.deg, dec1 * u.deg), SkyCoord(ra2 * u.deg, dec2 * u.deg)
            astro = median_time(lambda: match_coordinates_sky(c1, c2), 1)
            idx, sep, _ = match_coordinates_sky(c1, c2)
            ref = np.where(sep.deg <= radius, idx, -1)
            fields.update(astropy_s=astro, gpu_vs_astropy=astro / gpu, ours_cpu_vs_astropy=astro / cpu,
                          agreement_with_astropy=float((ref == got).mean()))
        except ImportError as exc:
            fields.update(astropy_error=str(exc))
        record("crossmatch_1e6x1e6", **fields)

    def cuda_cluster() -> None:
        from dask_cuda import LocalCUDACluster
        from distributed import Client

        npts = int(1_000_000 * scale)
        pos = rng.uniform(0, 1000.0 * scale ** (1 / 3), (npts, 3))
        edges = np.geomspace(1.0, 40.0, 12)
        t0 = time.perf_counter()
        with LocalCUDACluster(n_workers=1) as cluster, Client(cluster) as client:
            started = time.perf_counter() - t0
            pos_d = cp.asarray(pos)
            t1 = time.perf_counter()
            split = dask_pair_counts(client, pos_d, edges, chunks=8)
            on_cluster = time.perf_counter() - t1
        direct = pair_counts(pos_d, edges)
        record("local_cuda_cluster_paircount", n=npts, cluster_start_s=started, on_cluster_s=on_cluster,
               identical_to_direct=bool((split.npairs == direct.npairs).all()))

    def bounded_memory() -> None:
        npts = int(10_000_000 * scale)
        pos = cp.random.uniform(0, 2000.0 * scale ** (1 / 3), (npts, 3))
        pool = cp.get_default_memory_pool()
        pool.free_all_blocks()
        before = pool.used_bytes()
        t0 = time.perf_counter()
        counts = pair_counts(pos, np.geomspace(1.0, 20.0, 10))
        cp.cuda.Device().synchronize()
        record("paircount_10M_points", n=npts, gpu_s=time.perf_counter() - t0, pairs=int(counts.npairs.sum()),
               input_mib=pos.nbytes / 2**20, pool_total_mib=pool.total_bytes() / 2**20,
               pool_used_after_mib=(pool.used_bytes() - before) / 2**20)

    for name, body in [("distance", distances), ("ang2pix_order29", healpix), ("agn_classify", agn_classify),
                       ("paircount_s", paircount(0)), ("paircount_smu", paircount(20)),
                       ("crossmatch_1e6x1e6", crossmatch), ("local_cuda_cluster_paircount", cuda_cluster),
                       ("paircount_10M_points", bounded_memory)]:
        if not args.only or name in args.only.split(","):
            case(name, body)


if __name__ == "__main__":
    main()

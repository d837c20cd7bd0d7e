"""Kernel benchmarks, each side by side with its anchor in one run (numpy on this machine's CPU).

    python bench/kernels.py [--repeats 5] [--only distance,ang2pix,paircount,crossmatch]

- Planck18 comoving distance: kernels.cosmology on 1e6 z versus astropy's Planck18.comoving_distance on 1e5 z
  (scaled to 1e6; astropy integrates numerically and is too slow for 1e6 in a benchmark loop);
- HEALPix NESTED ang2pix at order 29 and 6 on 1e6 points: kernels.healpix versus healpy;
- pair counts (auto, 15 separation bins up to 30 Mpc/h, 400k points in a 500 Mpc/h box, unweighted and weighted):
  kernels.paircount versus Corrfunc.theory.DD, and with 10 mu bins versus Corrfunc.theory.DDsmu, both on every
  core of this machine, timed in turn within each repeat, with the counts checked identical;
- crossmatch of 1e6 x 1e6 within 2 arcsec: kernels.crossmatch versus astropy's match_coordinates_sky.
Prints medians and ratios, writes bench/out/kernels.json. The void finder has its own bench/voids.py; GPU figures
come from bench/gpu.sh.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import healpy as hp  # noqa: E402
import numba  # noqa: E402
import numpy as np  # noqa: E402
from astropy.cosmology import Planck18  # noqa: E402

from kernels.cosmology import comoving_distance  # noqa: E402
from kernels.crossmatch import nearest_within  # noqa: E402
from kernels.healpix import ang2pix_nest  # noqa: E402
from kernels.paircount import pair_counts  # noqa: E402

OUT = ROOT / "bench" / "out"
CASES = ("distance", "ang2pix", "paircount", "crossmatch")


def median_time(func: Callable[[], object], repeats: int, sync: Callable[[], object] = lambda: None) -> float:
    """Median wall time of `func` over `repeats` calls after one warm-up call (compilation, caches, memory
    pools); `sync` waits for asynchronous work (a GPU stream) before each clock read."""
    func()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        func()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def interleaved_medians(funcs: list[Callable[[], object]], repeats: int) -> list[float]:
    """Median wall time of each of `funcs`, called in turn in every repeat (after one warm-up call each), so that
    other load on the machine falls on all of them alike rather than on whichever ran during it."""
    for func in funcs:
        func()
    times: list[list[float]] = [[] for _ in funcs]
    for _ in range(repeats):
        for func, spent in zip(funcs, times):
            t0 = time.perf_counter()
            func()
            spent.append(time.perf_counter() - t0)
    return [statistics.median(spent) for spent in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", default=",".join(CASES),
                        help=f"comma-separated cases to run, of {', '.join(CASES)} (default: all)")
    parser.add_argument("--memory", action="store_true",
                        help="only the 10-million-point memory check (peak RSS of pair counts and crossmatch)")
    args = parser.parse_args()
    only = set(args.only.split(","))
    if only - set(CASES):
        parser.error(f"unknown case(s) {', '.join(sorted(only - set(CASES)))}; known: {', '.join(CASES)}")
    if args.memory:
        memory_check()
        return
    rng = np.random.default_rng(0)
    n = 1_000_000
    z = rng.uniform(0, 3, n)
    ra = rng.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    comoving_distance(z[:10])  # build the table once, outside the timing (as a long-running worker would)

    results = {}
    if "distance" in only:
        ours = median_time(lambda: comoving_distance(z), args.repeats)
        astropy_1e5 = median_time(lambda: Planck18.comoving_distance(z[:100_000]), max(1, args.repeats // 2))
        results["distance"] = {"kernel_s_1e6": ours, "astropy_s_1e6": astropy_1e5 * 10,
                               "ratio": astropy_1e5 * 10 / ours, "target": 300}
    for order in (29, 6) if "ang2pix" in only else ():
        mine = median_time(lambda o=order: ang2pix_nest(o, ra, dec), args.repeats)
        ref = median_time(lambda o=order: hp.ang2pix(2**o, ra, dec, nest=True, lonlat=True), args.repeats)
        assert np.array_equal(ang2pix_nest(order, ra, dec), hp.ang2pix(2**order, ra, dec, nest=True, lonlat=True))
        results[f"ang2pix_order{order}"] = {"kernel_s_1e6": mine, "healpy_s_1e6": ref, "ratio": ref / mine,
                                            "target": 1}
    # Each case has its own seed, so a run with --only times the same data as a full run.
    if "paircount" in only:
        results |= paircount(np.random.default_rng(1), args.repeats)
    if "crossmatch" in only:
        results["crossmatch"] = crossmatch(np.random.default_rng(2), args.repeats)
    for name, r in results.items():
        base = r.get("astropy_s_1e6", r.get("healpy_s_1e6", r.get("corrfunc_s")))
        verdict = "met" if r["ratio"] >= r["target"] else "MISSED"
        print(f"{name:22s} kernel {r['kernel_s_1e6'] * 1000:8.1f} ms  anchor {base * 1000:9.1f} ms  "
              f"{r['ratio']:7.2f}x (target >= {r['target']}x): {verdict}")
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "kernels.json"
    previous = json.loads(path.read_text()) if path.exists() and only != set(CASES) else {}
    path.write_text(json.dumps(previous | results, indent=2))  # a partial run keeps the other cases' figures


def paircount(rng: np.random.Generator, repeats: int) -> dict[str, dict]:
    """kernels.paircount against Corrfunc on the same points, bins and number of threads, timed in turn within each
    repeat: separation only (DD) and (s, mu) (DDsmu, 10 mu bins), unweighted and with pair-product weights."""
    from Corrfunc.theory import DD, DDsmu

    pos = rng.uniform(0, 500, (400_000, 3))
    weights = rng.uniform(0.5, 1.5, len(pos))
    edges = np.geomspace(1.0, 30.0, 16)
    threads = numba.get_num_threads()
    results = {}
    for name, n_mu, w in (("paircount", 0, None), ("paircount_weighted", 0, weights),
                          ("paircount_smu", 10, None), ("paircount_smu_weighted", 10, weights)):
        extra = {} if w is None else {"weights1": w, "weight_type": "pair_product"}

        def ours(n_mu: int = n_mu, w: np.ndarray | None = w) -> object:
            return pair_counts(pos, edges, weights1=w, n_mu=n_mu, conventions="corrfunc")

        def ref(n_mu: int = n_mu, extra: dict = extra) -> dict:
            if n_mu:
                return DDsmu(1, threads, edges, 1.0, n_mu, *pos.T, periodic=False, verbose=False, **extra)
            return DD(1, threads, edges, *pos.T, periodic=False, verbose=False, **extra)

        mine, anchor = interleaved_medians([ours, ref], repeats)
        got, want = ours(), ref()
        assert np.array_equal(got.npairs.ravel(), want["npairs"])
        if w is not None:
            np.testing.assert_allclose(got.wpairs.ravel(), want["npairs"] * want["weightavg"], rtol=1e-10)
        results[name] = {"kernel_s_1e6": mine, "corrfunc_s": anchor, "ratio": anchor / mine, "target": 1,
                         "threads": threads, "n": len(pos)}
    return results


def crossmatch(rng: np.random.Generator, repeats: int) -> dict:
    """kernels.crossmatch against astropy's match_coordinates_sky (KD-tree) on 1e6 x 1e6 points, 2 arcsec."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord, match_coordinates_sky

    n = 1_000_000
    ra1, dec1 = rng.uniform(0, 360, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    ra2 = (ra1 + rng.normal(0, 0.5 / 3600, n)) % 360
    dec2 = np.clip(dec1 + rng.normal(0, 0.5 / 3600, n), -90, 90)
    radius = 2 / 3600
    c1, c2 = SkyCoord(ra1 * u.deg, dec1 * u.deg), SkyCoord(ra2 * u.deg, dec2 * u.deg)
    ours, ref = interleaved_medians([lambda: nearest_within(ra1, dec1, ra2, dec2, radius),
                                     lambda: match_coordinates_sky(c1, c2)], repeats)
    idx, sep, _ = match_coordinates_sky(c1, c2)
    got = nearest_within(ra1, dec1, ra2, dec2, radius)
    agree = float((np.where(sep.deg <= radius, idx, -1) == got.index).mean())
    matched = got.index >= 0
    sep_diff = float(np.abs(got.separation_deg[matched] - sep.deg[matched]).max(initial=0.0)) * 3600
    return {"kernel_s_1e6": ours, "astropy_s_1e6": ref, "ratio": ref / ours, "target": 3, "agreement": agree,
            "max_separation_difference_arcsec": sep_diff}


def memory_check(n: int = 10_000_000) -> None:
    """Peak RSS of pair counts (auto, up to 10 Mpc/h) and a crossmatch (1 arcsec) on `n` points each, each in a
    fresh process, against the size of the input arrays."""
    import subprocess

    code = f"""
import resource, sys, time
import numpy as np
sys.path.insert(0, {str(ROOT)!r})
from kernels.paircount import pair_counts
from kernels.crossmatch import nearest_within
rng = np.random.default_rng(1)
n = {n}
if sys.argv[1] == "paircount":
    data = rng.uniform(0, 2000, (n, 3)); nbytes = data.nbytes
    t = time.perf_counter(); total = int(pair_counts(data, np.geomspace(1, 10, 8)).npairs.sum())
else:
    ra, dec = rng.uniform(0, 360, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    ra2 = (ra + rng.normal(0, 0.3 / 3600, n)) % 360
    nbytes = 3 * ra.nbytes
    t = time.perf_counter(); total = int((nearest_within(ra, dec, ra2, dec, 1 / 3600).index >= 0).sum())
print(sys.argv[1], n, round(time.perf_counter() - t, 1), total, nbytes >> 20,
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10)
"""
    results = {}
    for kind in ("paircount", "crossmatch"):
        out = subprocess.run([sys.executable, "-c", code, kind], capture_output=True, text=True, check=True)
        name, npts, secs, total, input_mib, peak_mib = out.stdout.split()
        results[name] = {"n": int(npts), "seconds": float(secs), "result": int(total),
                         "input_mib": int(input_mib), "peak_rss_mib": int(peak_mib)}
        print(f"{name:10s} {npts} points: {secs} s, input {input_mib} MiB, peak RSS {peak_mib} MiB")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "kernels_memory.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

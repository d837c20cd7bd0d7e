"""Kernel benchmarks, each side by side with its anchor in one run (numpy on this machine's CPU).

    python bench/kernels.py [--repeats 5]

- Planck18 comoving distance: kernels.cosmology on 1e6 z versus astropy's Planck18.comoving_distance on 1e5 z
  (scaled to 1e6; astropy integrates numerically and is too slow for 1e6 in a benchmark loop);
- HEALPix NESTED ang2pix at order 29 and 6 on 1e6 points: kernels.healpix versus healpy.
Prints medians and ratios, writes bench/out/kernels.json. The other kernels of issue 4 are not written yet.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import healpy as hp  # noqa: E402
import numpy as np  # noqa: E402
from astropy.cosmology import Planck18  # noqa: E402

from kernels.cosmology import comoving_distance  # noqa: E402
from kernels.healpix import ang2pix_nest  # noqa: E402

OUT = ROOT / "bench" / "out"


def median_time(func, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        func()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n = 1_000_000
    z = rng.uniform(0, 3, n)
    ra = rng.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    comoving_distance(z[:10])  # build the table once, outside the timing (as a long-running worker would)

    results = {}
    ours = median_time(lambda: comoving_distance(z), args.repeats)
    astropy_1e5 = median_time(lambda: Planck18.comoving_distance(z[:100_000]), max(1, args.repeats // 2))
    results["distance"] = {"kernel_s_1e6": ours, "astropy_s_1e6": astropy_1e5 * 10,
                           "ratio": astropy_1e5 * 10 / ours, "target": 300}
    for order in (29, 6):
        mine = median_time(lambda o=order: ang2pix_nest(o, ra, dec), args.repeats)
        ref = median_time(lambda o=order: hp.ang2pix(2**o, ra, dec, nest=True, lonlat=True), args.repeats)
        assert np.array_equal(ang2pix_nest(order, ra, dec), hp.ang2pix(2**order, ra, dec, nest=True, lonlat=True))
        results[f"ang2pix_order{order}"] = {"kernel_s_1e6": mine, "healpy_s_1e6": ref, "ratio": ref / mine,
                                            "target": 1}
    for name, r in results.items():
        base = r.get("astropy_s_1e6", r.get("healpy_s_1e6"))
        verdict = "met" if r["ratio"] >= r["target"] else "MISSED"
        print(f"{name:18s} kernel {r['kernel_s_1e6'] * 1000:8.1f} ms  anchor {base * 1000:9.1f} ms  "
              f"{r['ratio']:7.2f}x (target >= {r['target']}x): {verdict}")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "kernels.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

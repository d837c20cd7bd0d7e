"""Void finder benchmark: time and peak memory of kernels.voids.find_voids on uniform boxes with carved voids.

    python bench/voids.py [--sizes 1000000 10000000]

Each size runs in its own process (so peak RSS is its own), after a small warm-up run that loads the numba
cache. Densities: 5e-3 h^3 Mpc^-3 (DESIVAST-like BGS) for sizes up to 1e6; 5e-2 above, so that 1e7 points fit
a few minutes on 2 cores (same box as 1e6, ten times the points) and show memory grows with the points, not the
grid. 20 spheres of radius 20-30 h^-1 Mpc are carved out and scored. Writes bench/out/voids.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np

from kernels.voids import box_mask, find_voids
from tasks.science.voids.desivast import score_voids

OUT = ROOT / "bench" / "out"


def carved_box(n: int, density: float, n_voids: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
    """(points, planted spheres, box side): n uniform points minus n_voids non-overlapping spheres."""
    rng = np.random.default_rng(seed)
    side = float(np.cbrt(n / density))
    spheres: list[np.ndarray] = []
    while len(spheres) < n_voids:
        r = rng.uniform(20.0, 30.0)
        c = rng.uniform(r + 15.0, side - r - 15.0, 3)
        if all(np.linalg.norm(c - s[:3]) > r + s[3] + 5.0 for s in spheres):
            spheres.append(np.append(c, r))
    planted = np.array(spheres)
    chunks = []
    for start in range(0, n, 2_000_000):
        pts = rng.uniform(0.0, side, size=(min(2_000_000, n - start), 3))
        for s in planted:
            pts = pts[np.sum((pts - s[:3]) ** 2, axis=1) > s[3] ** 2]
        chunks.append(pts)
    return np.concatenate(chunks), planted, side


def run_one(n: int, density: float) -> dict:
    """Time find_voids on one carved box; peak RSS of this process."""
    warm, _, side = carved_box(20_000, 5e-3, 1, seed=1)
    find_voids(warm, box_mask([0.0] * 3, [side] * 3))
    pts, planted, side = carved_box(n, density, 20)
    rss_input = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    cat = find_voids(pts, box_mask([0.0] * 3, [side] * 3))
    seconds = time.perf_counter() - t0
    score = score_voids(cat.maximals, planted)
    big = cat.maximals[cat.maximals[:, 3] > 19.0]
    return {
        "n_points": len(pts), "density": density, "box_side": side, "seconds": round(seconds, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_after_input_mib": round(rss_input, 1), "n_voids": len(cat.maximals), "n_holes": len(cat.holes),
        "n_field": int(cat.is_field.sum()), "completeness": score.completeness,
        "purity_r_gt_19": score_voids(big, planted).purity,
        "median_center_error": round(score.median_center_error, 3),
        "median_radius_error": round(score.median_radius_error, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--density", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.density)))
        return
    results = []
    for n in args.sizes:
        density = 5e-3 if n <= 1_000_000 else 5e-2
        proc = subprocess.run([sys.executable, __file__, "--one", str(n), "--density", str(density)],
                              capture_output=True, text=True, check=True)
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "voids.json").write_text(json.dumps({"machine_cores": len(__import__("os").sched_getaffinity(0)),
                                                "runs": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Fill numba's disk cache with the void finder's kernels, so that a cold process loads them instead of compiling:

    python -m kernels.warmup        # e.g. once when an image is built, as the user the workers run as

Every numba kernel here is `cache=True`. numba keeps the cache in NUMBA_CACHE_DIR when that is set, else next to
the module (`kernels/__pycache__`) when that is writable, else in the user's cache directory (~/.cache/numba); a
directory it cannot write is skipped, silently, so the image sets a NUMBA_CACHE_DIR its user owns. Entries are keyed
by the source file's content and by the CPU model: a cache built on another CPU is recompiled there, once.
"""

from __future__ import annotations

import time

import numpy as np
from numba.core.registry import CPUDispatcher

import kernels.voids
from kernels.cosmology import comoving_distance
from kernels.healpix import ang2pix_nest
from kernels.voids import box_mask, find_voids


def dispatchers() -> dict[str, CPUDispatcher]:
    """The void finder's numba kernels by name."""
    return {name: obj for name, obj in vars(kernels.voids).items() if isinstance(obj, CPUDispatcher)}


def warm_up() -> None:
    """Run the void finder once on a small box with one empty sphere (every kernel runs: holes, maximals, joining,
    volumes), and the distance and HEALPix kernels its flow uses."""
    rng = np.random.default_rng(0)
    xyz = rng.uniform(0.0, 60.0, (3000, 3))
    xyz = xyz[np.linalg.norm(xyz - 30.0, axis=1) > 15.0]
    find_voids(xyz, box_mask(np.zeros(3), np.full(3, 60.0)))
    comoving_distance(np.array([0.05, 0.1]), "Mpc/h")
    ang2pix_nest(6, np.array([10.0, 200.0]), np.array([-20.0, 40.0]))


def main() -> int:
    """Warm the cache; print what was compiled or loaded, and how long it took."""
    start = time.perf_counter()
    warm_up()
    seconds = time.perf_counter() - start
    stats = {name: d.stats for name, d in dispatchers().items()}
    hits = sum(sum(s.cache_hits.values()) for s in stats.values())
    misses = sum(sum(s.cache_misses.values()) for s in stats.values())
    path = next(iter(stats.values())).cache_path
    print(f"void finder kernels: {misses} compiled, {hits} loaded from {path} in {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

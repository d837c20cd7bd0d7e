"""numba's disk cache for the void finder's kernels: every kernel caches, and a new process loads what one compiled."""

import os
import subprocess
import sys
from pathlib import Path

from numba.core.caching import FunctionCache

from kernels.warmup import dispatchers, warm_up

ROOT = Path(__file__).resolve().parents[2]

# Two of the kernels (the cheapest to compile) run through the public API on small inputs, then the cache hits and
# misses of every kernel (only those two ran).
_RUN = """
import numpy as np
from kernels.voids import join_holes, select_maximals
from kernels.warmup import dispatchers
holes = np.array([[0.0, 0, 0, 20], [32.4, 0, 0, 15], [5.0, 0, 0, 6]])
join_holes(holes, holes[select_maximals(holes)])
stats = [d.stats for d in dispatchers().values()]
print(sum(sum(s.cache_hits.values()) for s in stats), sum(sum(s.cache_misses.values()) for s in stats))
"""


def test_every_void_kernel_caches_on_disk():
    kernels = dispatchers()
    assert {"_grow_holes", "_nearest", "_next_bound", "_select_maximals", "_join", "_union_volumes"} <= set(kernels)
    for name, kernel in kernels.items():
        assert isinstance(kernel._cache, FunctionCache), f"{name} is not cache=True"


def test_a_new_process_loads_the_kernels_a_first_one_compiled(tmp_path):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}

    def run() -> list[int]:
        out = subprocess.run([sys.executable, "-c", _RUN], env=env, cwd=ROOT, capture_output=True, text=True,
                             check=True, timeout=300)
        return [int(v) for v in out.stdout.split()]

    assert run() == [0, 2]  # hits, misses: compiled, then written
    index = {p.name.split("-")[0] for p in tmp_path.rglob("*.nbi")}
    data = {p.name.split("-")[0] for p in tmp_path.rglob("*.nbc")}
    assert index == data == {"voids._select_maximals", "voids._join"}
    assert run() == [2, 0]  # loaded, nothing compiled


def test_warm_up_runs_every_void_kernel():
    warm_up()
    # The kernels called from Python; the others run inside them (and load with them from the cache).
    entry = {"_grow_holes", "_select_maximals", "_join", "_union_volumes"}
    assert entry <= {name for name, kernel in dispatchers().items() if kernel.signatures}

#!/usr/bin/env bash
# The one prepared GPU run (the `device` tool's machine: one GPU, 16 cores, no network).
#   bench/gpu.sh            kernel tests with cupy, then bench/gpu_kernels.py (GPU vs CPU vs anchors)
# Packages the machine lacks travel in .whl/ (gitignored; made by bench/gpu_wheels.sh): wheels, plus a
# Corrfunc built for Python 3.12 with -march=x86-64-v4 and the GSL libraries it links.
# Results go to $OUT (the device tool brings that folder back) or bench/out/gpu.
set -uo pipefail
OUT=${OUT:-bench/out/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 NUMBA_CACHE_DIR=/tmp/numba-cache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || { echo "wheel install failed"; exit 1; }
export PYTHONPATH=/tmp/site:$PWD LD_LIBRARY_PATH=$PWD/.whl/lib:${LD_LIBRARY_PATH:-}
if grep -qw avx512f /proc/cpuinfo; then
  cp -r .whl/Corrfunc /tmp/site/
else
  echo "no AVX-512 on this CPU: Corrfunc (built for x86-64-v4) left out, its comparisons are skipped"
fi
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  lscpu | grep -E "^Model name|^CPU\(s\)"
  python3 -c "import numpy, numba, cupy; print('numpy', numpy.__version__, 'numba', numba.__version__, 'cupy', cupy.__version__)"
} 2>&1 | tee "$OUT/device.txt"

# All kernel tests, the GPU ones included (tests/conftest.py needs the database stack; not loaded here).
timeout 150 python3 -m pytest -q -p no:cacheprovider --confcutdir=tests/kernels -m "gpu or not gpu" \
  tests/kernels/test_xp.py tests/kernels/test_cosmology.py tests/kernels/test_healpix.py \
  tests/kernels/test_paircount.py tests/kernels/test_crossmatch.py tests/kernels/test_agn.py 2>&1 \
  | tee "$OUT/pytest.txt" | tail -n 25

timeout 290 python3 bench/gpu_kernels.py --out "$OUT" ${GPU_BENCH_ARGS:-} 2>&1 | tee "$OUT/bench.txt"

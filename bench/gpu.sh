#!/usr/bin/env bash
# The one prepared GPU run (the `device` tool's machine: one GPU, 16 cores, no network).
#   bench/gpu.sh   kernel tests with cupy, bench/gpu_kernels.py (GPU vs CPU vs anchors), then bench/gpu_flows.py
#                  (desi-clustering, desi-crossmatch, desi-agn: Prefect flow runs on a LocalCUDACluster and on CPU)
# What the machine lacks travels in .whl/ (gitignored): base.tar.xz from bench/gpu_wheels.sh (dask, dask-cuda,
# astropy, healpy; Corrfunc built for Python 3.12 with -march=x86-64-v4 and the GSL libraries it links),
# flowenv.tar.xz and flowdata.tar.xz from bench/gpu_flowenv.sh (Prefect and its needs, duckdb; a small catalog),
# and, optionally, prev/paircount_prev.py (the pair-count module being replaced, timed beside the new one).
# The phases' time limits add up to under the 600 s one device call may run. Results go to $OUT (the device tool brings that folder back) or bench/out/gpu. To rerun a part:
#   GPU_TESTS="tests/kernels/test_paircount.py" GPU_BENCH_ARGS="--only paircount_s" GPU_FLOWS=0 bench/gpu.sh
set -uo pipefail
OUT=${OUT:-bench/out/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 NUMBA_CACHE_DIR=/tmp/numba-cache
env_dir=/tmp/gpuenv
mkdir -p "$env_dir"
start=$SECONDS
tar -xJf .whl/base.tar.xz -C "$env_dir" && tar -xJf .whl/flowenv.tar.xz -C "$env_dir/site" \
  || { echo "unpacking .whl failed"; exit 1; }
echo "unpacked in $((SECONDS - start)) s"
export PYTHONPATH=$env_dir/site:$PWD LD_LIBRARY_PATH=$env_dir/lib:${LD_LIBRARY_PATH:-}
if grep -qw avx512f /proc/cpuinfo; then
  cp -r "$env_dir/corrfunc/Corrfunc" "$env_dir/site/"
else
  echo "no AVX-512 on this CPU: Corrfunc (built for x86-64-v4) left out, its comparisons are skipped"
fi
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  lscpu | grep -E "^Model name|^CPU\(s\)"
  python3 -c "import numpy, numba, cupy; print('numpy', numpy.__version__, 'numba', numba.__version__, 'cupy', cupy.__version__)"
} 2>&1 | tee "$OUT/device.txt"

# All kernel tests, the GPU ones included (tests/conftest.py needs the database stack; not loaded here).
start=$SECONDS
tests=${GPU_TESTS:-tests/kernels/test_xp.py tests/kernels/test_cosmology.py tests/kernels/test_healpix.py
  tests/kernels/test_paircount.py tests/kernels/test_crossmatch.py tests/kernels/test_agn.py}
timeout 120 python3 -m pytest -q -p no:cacheprovider --confcutdir=tests/kernels -m "gpu or not gpu" $tests 2>&1 \
  | tee "$OUT/pytest.txt" | tail -n 25
echo "tests in $((SECONDS - start)) s"

start=$SECONDS
timeout 250 python3 bench/gpu_kernels.py --out "$OUT" ${GPU_BENCH_ARGS:-} 2>&1 | tee "$OUT/bench.txt"
echo "kernel figures in $((SECONDS - start)) s"

[ "${GPU_FLOWS:-1}" = 0 ] && exit 0
start=$SECONDS
ASTROLAB_DASK_GPU=1 timeout 180 python3 bench/gpu_flows.py --out "$OUT" --compare-cpu ${GPU_FLOWS_ARGS:-} 2>&1 | tee "$OUT/flows.txt" \
  | grep -E "^==|gpu_flows|Error|error" | cut -c1-600
echo "flows in $((SECONDS - start)) s"

#!/usr/bin/env bash
# Fill .whl/ (gitignored) with what bench/gpu.sh needs on the GPU machine, which has no network and Python 3.12:
# wheels for dask/distributed/dask-cuda/astropy/healpy, and Corrfunc built here for CPython 3.12.
#   PY312=/path/to/python3.12 bench/gpu_wheels.sh
# Corrfunc has no wheels on PyPI and its sdist (91 MB) is too big to carry, so it is built here with
# -march=x86-64-v4 (AVX-512, which H100 hosts have) instead of Corrfunc's -march=native, and the GSL
# libraries it links travel in .whl/lib.
set -euo pipefail
PY312=${PY312:-python3.12}
cd "$(dirname "$0")/.."
mkdir -p .whl/lib
grep -qx '/.whl/' .git/info/exclude || echo /.whl/ >> .git/info/exclude
platforms=""
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
         manylinux1_x86_64 manylinux_2_31_x86_64 manylinux_2_34_x86_64; do platforms="$platforms --platform $p"; done
for pkg in dask==2026.8.0 distributed==2026.8.0 dask-cuda astropy astropy-iers-data pyerfa healpy partd locket \
           tblib zict tornado wurlitzer future; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $platforms \
    -d .whl "$pkg"
done
build=$(mktemp -d)
"$PY312" -m venv "$build/venv"
"$build/venv/bin/pip" install -q --only-binary :all: numpy setuptools wheel
"$build/venv/bin/pip" download -q --no-deps --no-binary :all: --no-build-isolation Corrfunc==2.5.3 -d "$build" || true
tar -xzf "$build"/[cC]orrfunc-2.5.3.tar.gz -C "$build"
sed -i 's/^  opt := -march=native/  opt := -march=x86-64-v4/' "$build"/[cC]orrfunc-2.5.3/common.mk
(cd "$build"/[cC]orrfunc-2.5.3 && "$build/venv/bin/pip" wheel -q --no-build-isolation --no-deps . -w "$build/wheel")
(cd "$build" && python3 -m zipfile -e wheel/*.whl unpacked)
rm -rf .whl/Corrfunc && cp -r "$build/unpacked/Corrfunc" .whl/ && rm -rf .whl/Corrfunc/tests
cp -L /usr/lib/x86_64-linux-gnu/libgsl.so.27 /usr/lib/x86_64-linux-gnu/libgslcblas.so.0 .whl/lib/
du -sh .whl

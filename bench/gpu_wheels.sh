#!/usr/bin/env bash
# Fill .whl/ (gitignored) with what bench/gpu.sh needs on the GPU machine, which has no network and Python 3.12:
#   .whl/base.tar.xz   site/      dask, distributed, dask-cuda, astropy, healpy and their needs, installed
#                      corrfunc/  Corrfunc built here for CPython 3.12 (the anchor of the pair-count figures)
#                      lib/       the GSL libraries Corrfunc links
#   PY312=/path/to/python3.12 bench/gpu_wheels.sh
# Corrfunc has no wheels on PyPI and its sdist (91 MB) is too big to carry, so it is built here with
# -march=x86-64-v4 (AVX-512, which H100 hosts have) instead of Corrfunc's -march=native. Everything travels as one
# xz archive of installed, stripped trees (about 10 MB; the wheels themselves are 35 MB), so that it fits the
# 64 MiB a device call carries next to bench/gpu_flowenv.sh's archives.
set -euo pipefail
PY312=${PY312:-python3.12}
cd "$(dirname "$0")/.."
mkdir -p .whl
grep -qx '/.whl/' .git/info/exclude || echo /.whl/ >> .git/info/exclude
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
platforms=""
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
         manylinux1_x86_64 manylinux_2_31_x86_64 manylinux_2_34_x86_64; do platforms="$platforms --platform $p"; done
python3 -m pip install -q --no-deps --no-compile --only-binary=:all: --python-version 3.12 --implementation cp \
  $platforms --target "$build/pack/site" dask==2026.8.0 distributed==2026.8.0 dask-cuda==26.10.0 astropy astropy-iers-data \
  pyerfa healpy partd locket tblib zict tornado wurlitzer future

"$PY312" -m venv "$build/venv"
"$build/venv/bin/pip" install -q --only-binary :all: numpy setuptools wheel
# pip download of an sdist also prepares its metadata, which can fail here after the download: check the file.
"$build/venv/bin/pip" download -q --no-deps --no-binary :all: --no-build-isolation Corrfunc==2.5.3 -d "$build" || true
ls "$build"/[cC]orrfunc-2.5.3.tar.gz >/dev/null || { echo "Corrfunc 2.5.3 sdist not downloaded"; exit 1; }
tar -xzf "$build"/[cC]orrfunc-2.5.3.tar.gz -C "$build"
sed -i 's/^  opt := -march=native/  opt := -march=x86-64-v4/' "$build"/[cC]orrfunc-2.5.3/common.mk
(cd "$build"/[cC]orrfunc-2.5.3 && "$build/venv/bin/pip" wheel -q --no-build-isolation --no-deps . -w "$build/wheel")
(cd "$build" && python3 -m zipfile -e wheel/*.whl unpacked)
mkdir -p "$build/pack/corrfunc" "$build/pack/lib"
cp -r "$build/unpacked/Corrfunc" "$build/pack/corrfunc/" && rm -rf "$build/pack/corrfunc/Corrfunc/tests"
cp -L /usr/lib/x86_64-linux-gnu/libgsl.so.27 /usr/lib/x86_64-linux-gnu/libgslcblas.so.0 "$build/pack/lib/"

# Smaller without changing what runs: no byte code, no test suites (astropy's own package excepted: astropy
# imports it at start-up), no symbol tables in the extension modules of the wheels.
(cd "$build/pack/site"
 find . -depth -name __pycache__ -type d -exec rm -rf {} +
 find . -depth -name tests -type d ! -path ./astropy/tests -exec rm -rf {} +
 find . -type f -name '*.so*' -exec strip --strip-unneeded {} +)
tar --owner=0 --group=0 --numeric-owner -C "$build/pack" -cf - site corrfunc lib \
  | xz --x86 --lzma2=preset=9e,dict=64MiB -T1 > "$build/base.tar.xz"
rm -rf .whl/*.whl .whl/Corrfunc .whl/lib
mv "$build/base.tar.xz" .whl/base.tar.xz
du -sh .whl/base.tar.xz .whl

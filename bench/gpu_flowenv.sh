#!/usr/bin/env bash
# Pack, here, what bench/gpu_flows.py needs on the GPU machine (no network, CPython 3.12) into .whl/ (gitignored):
#   .whl/flowenv.tar.xz   an installed site-packages tree: prefect 3.9.1 and the part of its dependency closure the
#                         machine's image lacks, duckdb 2.0.1, minio; bench/gpu.sh extracts it onto the site/
#                         folder of .whl/base.tar.xz (bench/gpu_wheels.sh).
#   .whl/flowdata.tar.xz  a small DuckDB catalog + HATS lake (a synthetic sample, then desi-ingest, with .venv),
#                         stored under tmp/astrolab-gpuflows: the catalog's lake_* views name absolute paths, so
#                         it is built at /tmp/astrolab-gpuflows here and unpacked at / there.
#   bench/gpu_flowenv.sh        (needs the repo's .venv: `make venv`; ROWS=4000 by default)
# Prefect and friends as wheels (~61 MB) would not fit the 64 MiB a device call carries next to the rest of .whl,
# so the tree is pruned (see prune()) and xz-compressed. Versions are those of .venv (pip freeze). Left out, as
# the machine has them (KINDS.md): numpy, pyarrow, pandas, httpx/httpcore/h11, anyio, pyyaml, rich, typer, click,
# jinja2, markupsafe, fsspec, cloudpickle, packaging, pluggy, prometheus-client, python-dateutil, six, urllib3,
# certifi, idna, requests, humanize, pathspec, attrs, pygments, markdown-it-py, regex, ...; also left out, as
# .whl carries them as wheels: dask, distributed, dask-cuda, astropy, pyerfa, healpy, tornado, zict, partd, ...
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-4000}
VENV=${VENV:-.venv}
HOME_DIR=/tmp/astrolab-gpuflows
mkdir -p .whl
grep -qx '/.whl/' .git/info/exclude || echo /.whl/ >> .git/info/exclude
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# What prefect, duckdb, minio and pydantic (astrolab.settings) need at run time that the image lacks. Prefect
# requirements never imported by the two flows or the ephemeral server are not installed: apprise (notification
# blocks), docker, cyclopts/rich-rst/docstring-parser/readchar (the CLI), dateparser/tzlocal, jsonpatch,
# python-json-logger, ruamel-yaml, semver, python-slugify's text-unidecode (non-ASCII names only), oauthlib,
# requests-oauthlib. typing-extensions travels although the image has one: pydantic 2.14 needs >= 4.16.
packages="prefect duckdb minio pydantic pydantic-core pydantic-settings pydantic-extra-types annotated-types
  typing-inspection typing-extensions aiosqlite alembic mako sqlalchemy greenlet asyncpg asgi-lifespan fastapi
  starlette uvicorn websockets amplitude-analytics cachetools coolname cronsim cryptography cffi pycparser
  exceptiongroup graphviz griffe griffecli griffelib h2 hpack hyperframe jinja2-humanize-extension jsonschema
  jsonschema-specifications jsonpointer referencing rpds-py opentelemetry-api orjson pendulum tzdata pytz whenever
  pydocket burner-redis redis py-key-value-aio beartype uncalled-for python-dotenv python-slugify rfc3339-validator
  sniffio toml argon2-cffi argon2-cffi-bindings pycryptodome"
freeze=$("$VENV/bin/pip" freeze)
pins=""
for p in $packages; do
  pin=$(grep -i -m1 -E "^${p//-/[-_.]}==" <<<"$freeze") || { echo "$p is not installed in $VENV"; exit 1; }
  pins="$pins $pin"
done
platforms=""
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
         manylinux1_x86_64 manylinux_2_5_x86_64 manylinux_2_31_x86_64 manylinux_2_34_x86_64; do
  platforms="$platforms --platform $p"
done
site="$work/site"
python3 -m pip install -q --no-deps --no-compile --only-binary=:all: --python-version 3.12 --implementation cp \
  $platforms --target "$site" $pins

prune() {  # only what neither flow nor the ephemeral server imports (checked by running both, see gpu_flows.py)
  cd "$1"
  rm -rf bin include _duckdb-stubs adbc_driver_duckdb \
    prefect/server/ui prefect/server/ui-v2 \
    sqlalchemy/dialects/mssql sqlalchemy/dialects/mysql sqlalchemy/dialects/oracle sqlalchemy/testing \
    alembic/testing asyncpg/_testbase \
    Crypto/SelfTest Crypto/PublicKey Crypto/Signature Crypto/Protocol Crypto/IO Crypto/Math
  # ^ the UI is served by `prefect server start`, never by the ephemeral server; the dialects are other
  # databases'; pycryptodome's public-key half (minio imports AES and ChaCha20-Poly1305 only).
  find . -depth \( -name __pycache__ -o -name tests \) -type d -exec rm -rf {} +
  find . -type f \( -name '*.pyi' -o -name '*.pyx' -o -name '*.pxd' -o -name '*.pxi' -o -name '*.c' -o -name '*.h' \
    -o -name '*.cpp' \) -delete
  find . -name '*.dist-info' -type d -exec rm -f {}/RECORD \;
  find . -type f -name '*.so*' -exec strip --strip-unneeded {} +  # symbol tables only; dynamic symbols stay
  cd - >/dev/null
}
prune "$site"
echo "flowenv: $(du -sh "$site" | cut -f1) installed"
# .so files together, then the rest: xz (x86 branch filter + LZMA2 at -9e) finds more to share that way.
(cd "$site" && find . -type f -name '*.so*' | LC_ALL=C sort > "$work/files"
 find . \( -type f -o -type l \) ! -name '*.so*' | LC_ALL=C sort >> "$work/files"
 tar --owner=0 --group=0 --numeric-owner -cf - -T "$work/files") \
  | xz --x86 --lzma2=preset=9e,dict=128MiB -T1 > "$work/flowenv.tar.xz"
mv "$work/flowenv.tar.xz" .whl/flowenv.tar.xz

# The catalog and lake: a synthetic sample, ingested on the embedded defaults (DuckDB catalog, local lake).
rm -rf "$HOME_DIR"
export ASTROLAB_HOME=$HOME_DIR PREFECT_HOME=$work/prefect PREFECT_SERVER_ANALYTICS_ENABLED=false
unset ASTROLAB_CONFIG ASTROLAB_CATALOG_URL ASTROLAB_LAKE_URL PREFECT_API_URL
# Bright time only (70% BGS: ROWS=4000 gives ~2400 BGS galaxies at 0.05 <= z < 0.4, desi-clustering's default
# range), no zall/spectra/voids: the smallest sample that feeds both flows (desi-crossmatch: redshifts x fastspec).
"$VENV/bin/python" -c "import sys; from tasks.synthetic import SampleConfig, generate_sample
generate_sample(sys.argv[1], SampleConfig(n_rows=int(sys.argv[2]), programs=(('main', 'bright'),), n_voids=0,
                write_zall=False, write_spectra=False))" "$work/sample" "$ROWS"
"$VENV/bin/astrolab" ingest "$work/sample" >"$work/ingest.log" 2>&1 || { cat "$work/ingest.log"; exit 1; }
tail -n 2 "$work/ingest.log" | head -n 1
tar --owner=0 --group=0 --numeric-owner -C / -cf - "${HOME_DIR#/}/catalog.duckdb" "${HOME_DIR#/}/lake/hats" \
  | xz -9e -T1 > "$work/flowdata.tar.xz"
mv "$work/flowdata.tar.xz" .whl/flowdata.tar.xz
rm -rf "$HOME_DIR"
ls -l .whl/flowenv.tar.xz .whl/flowdata.tar.xz
du -sh .whl

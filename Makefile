# One command runs the main job, one runs the tests; each sets itself up (venv, packages).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ROWS ?= 100000
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

.PHONY: demo test lint venv bench clean

## venv: the virtual environment with the project; then the CDN files of the Data Docs pages, fetched once from the
## npm registry and checked against pinned hashes (offline: one line, and the pages keep their CDN links)
venv: $(VENV)/.installed
	@$(BIN)/python scripts/data_docs_assets.py || true

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "astrolab needs Python >= 3.11 (set PYTHON=python3.11)"; exit 1; }
	@$(PYTHON) -m venv --help >/dev/null 2>&1 || \
	  { apt-get update -qq && apt-get install -y -qq python3-venv; }
	@command -v gsl-config >/dev/null || \
	  { apt-get update -qq && apt-get install -y -qq libgsl-dev; }  # Corrfunc (test oracle) builds against GSL
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

## demo: synthetic DESI sample -> desi-ingest flow -> HATS lake, DuckDB catalog, Data Docs (embedded defaults)
demo: venv
	$(BIN)/astrolab demo --rows $(ROWS)

## lint: ruff and mypy (settings in pyproject.toml)
lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy

## test: lint, then the whole test suite, with its services (PostgreSQL + q3c, the moto S3 server, sshd, the test
## fleet of Debian 12 hosts, scripts/fleet.sh; loopback) started and stopped around it
SERVICES_DIR ?= /tmp/astrolab-services
test: lint
	ASTROLAB_SERVICES_DIR=$(SERVICES_DIR) scripts/services.sh start
	set -a; . $(SERVICES_DIR)/env; set +a; \
	  $(BIN)/pytest -q $(PYTEST_ARGS); status=$$?; \
	  ASTROLAB_SERVICES_DIR=$(SERVICES_DIR) scripts/services.sh stop; exit $$status

## bench: ingest benchmark (bench/ingest.py)
bench: venv
	$(BIN)/python bench/ingest.py

clean:
	rm -rf astrolab-data bench/out

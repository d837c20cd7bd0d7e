"""Fixtures for tests that need services: PostgreSQL (started by scripts/services.sh, see `make test`)."""

import os
import uuid

import psycopg
import pytest


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def pg_url():
    """URL of the test PostgreSQL server; fails under CI=true when it is missing, skips elsewhere."""
    url = os.environ.get("ASTROLAB_TEST_PG_URL")
    problem = None
    if not url:
        problem = "ASTROLAB_TEST_PG_URL is not set"
    else:
        try:
            psycopg.connect(url, connect_timeout=5).close()
        except psycopg.OperationalError as exc:
            problem = f"cannot connect: {str(exc).strip().splitlines()[-1]}"
    if problem:
        if _in_ci():
            pytest.fail(f"PostgreSQL is required under CI=true: {problem}")
        pytest.skip(f"PostgreSQL not available ({problem}); run scripts/services.sh start, then "
                    "export $(cat /tmp/astrolab-services/env)")
    return url


@pytest.fixture
def pg_database(pg_url):
    """A fresh, empty PostgreSQL database for one test (dropped after); yields its URL."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    yield pg_url.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture(params=["duckdb", "postgresql"])
def catalog_url(request, tmp_path):
    """A catalog URL for each backend: a DuckDB file, and a fresh PostgreSQL database."""
    if request.param == "duckdb":
        return f"duckdb:///{tmp_path / 'catalog.duckdb'}"
    return request.getfixturevalue("pg_database")

"""Fixtures for tests that need services: PostgreSQL, the S3 server, sshd and the test fleet (started by
scripts/services.sh, see `make test`)."""

import json
import os
import socket
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from minio import Minio

from tasks.inventory.load import load_inventory
from tasks.inventory.model import Inventory
from tasks.synthetic import SampleConfig, generate_sample


@pytest.fixture(scope="session")
def sample(tmp_path_factory):
    """A small synthetic DESI DR1 tree (4000 rows), shared by the ingest tests."""
    root = tmp_path_factory.mktemp("desi")
    generate_sample(root, SampleConfig(n_rows=4000, seed=11, n_coadd_pixels=1, coadd_nspec=5))
    return root


def in_ci() -> bool:
    """Whether the tests run under CI (CI=true): a missing service then fails instead of skipping."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing_service(service: str, variable: str, problem: str) -> None:
    """Fail under CI=true, skip elsewhere, saying how to start the service."""
    if in_ci():
        pytest.fail(f"{service} is required under CI=true: {problem}")
    pytest.skip(f"{service} not available ({problem}); run scripts/services.sh start, then "
                f"export $(cat /tmp/astrolab-services/env)  # sets {variable}")


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
        missing_service("PostgreSQL", "ASTROLAB_TEST_PG_URL", problem)
    return url


@pytest.fixture(scope="session")
def s3_endpoint():
    """Endpoint URL of the test S3 server (moto); fails under CI=true when it is missing, skips elsewhere."""
    url = os.environ.get("ASTROLAB_TEST_S3_ENDPOINT")
    if not url:
        missing_service("The S3 server", "ASTROLAB_TEST_S3_ENDPOINT", "ASTROLAB_TEST_S3_ENDPOINT is not set")
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname, parts.port or 80), timeout=5).close()
    except OSError as exc:
        missing_service("The S3 server", "ASTROLAB_TEST_S3_ENDPOINT", f"cannot connect to {url}: {exc}")
    return url


@pytest.fixture(scope="session")
def ssh_server():
    """(port, client key, known_hosts) of the test sshd on 127.0.0.1, which lets the user running the tests log in
    with that key; fails under CI=true when it is missing, skips elsewhere."""
    names = ("ASTROLAB_TEST_SSH_PORT", "ASTROLAB_TEST_SSH_KEY", "ASTROLAB_TEST_SSH_KNOWN_HOSTS")
    unset = [name for name in names if not os.environ.get(name)]
    if unset:
        missing_service("The test sshd", "ASTROLAB_TEST_SSH_*", f"{', '.join(unset)} not set")
    port = int(os.environ["ASTROLAB_TEST_SSH_PORT"])
    key = Path(os.environ["ASTROLAB_TEST_SSH_KEY"])
    known_hosts = Path(os.environ["ASTROLAB_TEST_SSH_KNOWN_HOSTS"])
    for path in (key, known_hosts):
        if not path.is_file():
            missing_service("The test sshd", "ASTROLAB_TEST_SSH_*", f"{path} does not exist")
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except OSError as exc:
        missing_service("The test sshd", "ASTROLAB_TEST_SSH_*", f"cannot connect to 127.0.0.1:{port}: {exc}")
    return port, key, known_hosts


@pytest.fixture(scope="session")
def fleet() -> Inventory:
    """The test fleet (scripts/fleet.sh) as the inventory it writes: Debian 12 hosts on this machine, each with its
    own sshd on 127.0.0.1; fails under CI=true when it is not running, skips elsewhere."""
    path = os.environ.get("ASTROLAB_TEST_FLEET")
    if not path:
        missing_service("The test fleet", "ASTROLAB_TEST_FLEET", "ASTROLAB_TEST_FLEET is not set")
    if not Path(path).is_file():
        missing_service("The test fleet", "ASTROLAB_TEST_FLEET", f"{path} does not exist")
    inventory = load_inventory(path)
    for host in inventory.hosts:
        port = inventory.ssh_for(host).port
        try:
            socket.create_connection((host.address, port), timeout=5).close()
        except OSError as exc:
            missing_service("The test fleet", "ASTROLAB_TEST_FLEET",
                     f"cannot connect to {host.name} ({host.address}:{port}): {exc}")
    return inventory


FLEET_SH = Path(__file__).resolve().parents[1] / "scripts" / "fleet.sh"


@pytest.fixture(scope="module")
def fresh_fleet(fleet: Inventory) -> Iterator[Inventory]:
    """The test fleet for tests that change its hosts (apply roles): after the module, every host gets its pristine
    root filesystem back (`scripts/fleet.sh reset`, root only), so the fleet's other tests never see the changes."""
    if os.geteuid() != 0:
        missing_service("A resettable test fleet", "ASTROLAB_TEST_FLEET", "resetting fleet hosts needs root")
    env = {**os.environ, "ASTROLAB_TEST_FLEET_DIR": os.environ.get(
        "ASTROLAB_TEST_FLEET_DIR", str(Path(os.environ["ASTROLAB_TEST_FLEET"]).parent))}
    yield fleet
    subprocess.run([str(FLEET_SH), "reset", *(host.name for host in fleet.hosts)], env=env, check=True,
                   capture_output=True, timeout=300)


@pytest.fixture
def s3_lake_env(s3_endpoint):
    """Settings variables for a lake in a fresh bucket (created by the lake) of the test S3 server."""
    bucket = f"astrolab-t-{uuid.uuid4().hex[:12]}"
    return {"ASTROLAB_LAKE_URL": f"s3://{bucket}/lake", "ASTROLAB_LAKE_S3_ENDPOINT": s3_endpoint,
            "ASTROLAB_LAKE_S3_ACCESS_KEY": "astrolab-test", "ASTROLAB_LAKE_S3_SECRET_KEY": "astrolab-test-secret",
            "ASTROLAB_LAKE_S3_RETRIES": "1"}


def allow_anonymous_reads(client: Minio, bucket: str, prefix: str) -> None:
    """What the README asks of the MinIO admin (`mc anonymous set download lab/lake/reports`): anyone may GET the
    objects under ``prefix``, and nothing else."""
    statement = {"Effect": "Allow", "Principal": {"AWS": ["*"]}, "Action": ["s3:GetObject"],
                 "Resource": [f"arn:aws:s3:::{bucket}/{prefix}/*"]}
    client.set_bucket_policy(bucket, json.dumps({"Version": "2012-10-17", "Statement": [statement]}))


@pytest.fixture(params=["local", "s3"])
def lake_env(request):
    """Settings variables for each lake backend: a local directory (under ASTROLAB_HOME), and a fresh S3 bucket."""
    return {} if request.param == "local" else request.getfixturevalue("s3_lake_env")


@contextmanager
def fresh_pg_database(pg_url: str) -> Iterator[str]:
    """A fresh, empty database on the test server (dropped after); yields its URL."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    yield pg_url.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture
def pg_database(pg_url):
    """A fresh PostgreSQL database for one test."""
    with fresh_pg_database(pg_url) as url:
        yield url


@pytest.fixture(scope="module")
def pg_module_database(pg_url):
    """A fresh PostgreSQL database shared by one test module."""
    with fresh_pg_database(pg_url) as url:
        yield url


@pytest.fixture(params=["duckdb", "postgresql"])
def catalog_url(request, tmp_path):
    """A catalog URL for each backend: a DuckDB file, and a fresh PostgreSQL database."""
    if request.param == "duckdb":
        return f"duckdb:///{tmp_path / 'catalog.duckdb'}"
    return request.getfixturevalue("pg_database")


@pytest.fixture
def prefect_env(tmp_path):
    """A real `prefect server start` on SQLite in tmp_path (tests/prefect_cli.py); yields the environment that
    points at it, for the prefect CLI and workers."""
    from tests.prefect_cli import started_server

    with started_server(tmp_path) as env:
        yield env


@pytest.fixture(scope="session")
def prefect_server():
    """One temporary Prefect server (SQLite) for the flow tests of a session (tests/flows, tests/infra_flows)."""
    from prefect.testing.utilities import prefect_test_harness

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    with prefect_test_harness(server_startup_timeout=60):
        yield

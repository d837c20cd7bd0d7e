"""astrolab.retries: Prefect retries a task after a transient failure only."""

import psycopg
import pytest
from prefect import flow, task

from astrolab.retries import retrying
from tasks.compliance.wazuh_api import WazuhApiError, WazuhApiUnreachable
from tasks.errors import is_transient
from tasks.storage.s3 import ObjectStoreError, ObjectStoreUnreachable

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.mark.parametrize(("exc", "transient"), [
    (psycopg.OperationalError("server closed the connection unexpectedly"), True),
    (ObjectStoreUnreachable("S3 http://minio:9000 unreachable after 3 retries"), True),
    (WazuhApiUnreachable("Wazuh API https://wazuh:55000: agents (unreachable: refused)"), True),
    (ConnectionResetError(), True), (TimeoutError(), True),
    (ObjectStoreError("S3 http://minio:9000: PUT s3://b/k: AccessDenied"), False),
    (WazuhApiError("Wazuh API https://wazuh:55000: sign in (HTTP 401: Invalid credentials)"), False),
    (FileNotFoundError("/data/desi: no such directory"), False), (ValueError("bad setting"), False),
    (KeyError("bug"), False),
])
def test_what_counts_as_transient(exc, transient):
    assert is_transient(exc) is transient


def _attempts(exc: Exception) -> int:
    calls = []

    @task(**{**retrying(2), "retry_delay_seconds": 0})
    def flaky() -> None:
        calls.append(1)
        raise exc

    @flow
    def run() -> None:
        flaky()

    with pytest.raises(type(exc)):
        run()
    return len(calls)


def test_a_lost_connection_is_retried_and_a_missing_path_is_not():
    assert _attempts(ConnectionResetError("peer went away")) == 3
    assert _attempts(FileNotFoundError("/data/desi does not exist")) == 1

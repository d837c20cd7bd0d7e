import pytest


@pytest.fixture(scope="session", autouse=True)
def _flows_talk_to_a_test_server(prefect_server):
    """Every flow test here runs against the session's temporary Prefect server."""

"""The Wazuh manager API client against the in-memory fake in wazuh_fake.py (page size 2, so every list pages)."""

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tasks.compliance.evaluate import Status
from tasks.compliance.wazuh_api import WazuhApiError, WazuhClient, agent_results, alerting_evidence
from tests.tasks.compliance.wazuh_fake import PASSWORD, USER, FakeWazuh

P, F, NA = Status.PASSED, Status.FAILED, Status.NOT_APPLICABLE
AUTH = "POST /security/user/authenticate"


@pytest.fixture
def fake() -> Iterator[FakeWazuh]:
    server = FakeWazuh()
    yield server
    server.close()


@pytest.fixture
def client(fake: FakeWazuh) -> WazuhClient:
    return WazuhClient(fake.url, USER, PASSWORD, timeout=5, page_size=2)


def test_agents_are_read_page_by_page(fake: FakeWazuh, client: WazuhClient) -> None:
    agents = client.agents()
    assert [(a.id, a.name, a.status) for a in agents] == [
        ("000", "wazuh-manager", "active"), ("001", "gpu01", "active"),
        ("002", "gpu02", "disconnected"), ("003", "gpu03", "never_connected"),
    ]
    gpu01, gpu03 = agents[1], agents[3]
    assert (gpu01.ip, gpu01.os_name, gpu01.os_version, gpu01.os_platform, gpu01.version) == (
        "10.0.0.11", "Debian GNU/Linux", "12", "debian", "Wazuh v4.14.7")
    assert gpu01.last_keepalive == datetime(2026, 5, 1, 10, tzinfo=UTC)
    assert (gpu03.os_name, gpu03.version, gpu03.last_keepalive) == ("", "", None)  # fields the API left out
    assert fake.requests == [AUTH, "GET /agents?offset=0&limit=2", "GET /agents?offset=2&limit=2"]


def test_policies_and_checks_keep_the_api_fields(client: WazuhClient) -> None:
    [policy] = client.sca_policies("002")
    assert (policy.policy_id, policy.passed, policy.failed, policy.invalid, policy.total_checks, policy.score) == (
        "cis_debian12", 2, 2, 1, 5, 50)
    assert policy.end_scan == datetime(2026, 4, 19, 23, 5, tzinfo=UTC)
    assert policy.start_scan == datetime(2026, 4, 19, 23, 0, tzinfo=UTC)
    checks = client.sca_checks("002", "cis_debian12")
    assert [c.id for c in checks] == [33162, 33169, 33001, 33050, 33100]
    first = checks[0]
    assert (first.policy_id, first.result, first.command, first.remediation, first.condition) == (
        "cis_debian12", "passed", "sshd -T", "Fix 33162.", "all")
    assert first.compliance == (("cis", "62.1"), ("cis_csc_v8", "4.1,5.2"))
    assert first.rules == (("command", "c:id"),)
    assert checks[3].compliance_ids("cis_csc_v8") == ("8.2", "8.5")
    assert checks[3].file == "/etc/audit/auditd.conf"


def test_agent_results_convert_to_astrolab_statuses_and_safeguards(client: WazuhClient) -> None:
    scans = {scan.agent.name: scan for scan in agent_results(client, None)}
    assert sorted(scans) == ["gpu01", "gpu02", "gpu03", "wazuh-manager"]
    gpu01 = scans["gpu01"]
    assert [(p.policy_id, p.passed, p.failed, p.invalid, p.score) for p in gpu01.policies] == [
        ("cis_debian12", 2, 2, 1, 50), ("sca_unix_audit", 2, 2, 1, 50)]
    assert gpu01.policies[1].end_scan == datetime(2026, 5, 1, 9, 5, 30, tzinfo=UTC)
    assert [(c.check_id, c.result, c.reason, c.cis_csc_v8) for c in gpu01.policies[0].checks] == [
        (33162, P, "", ("4.1", "5.2")),
        (33169, F, "", ("8.5",)),
        (33001, NA, "modprobe missing", ("4.8",)),
        (33050, F, "", ("8.2", "8.5")),
        (33100, P, "", ()),
    ]
    assert [(c.check_id, c.result, c.reason, c.cis_csc_v8) for c in gpu01.policies[1].checks] == [
        (3000, F, "", ("4.7",)),
        (3001, P, "", ("4.1",)),
        (3002, NA, "Could not open '/etc/fstab'", ()),  # no result field, only a reason: not applicable
        (3003, P, "", ("3.3",)),
        (3004, F, "", ("4.8", "12.2")),
    ]
    check = gpu01.policies[0].checks[1]
    assert (check.title, check.remediation) == ("Ensure sshd MaxAuthTries is configured.", "Fix 33169.")
    assert {gpu01.source, gpu01.policies[0].source, check.source} == {"wazuh"}
    assert (scans["gpu03"].policies, scans["gpu03"].note) == ((), "never connected: no SCA results")


def test_agent_filter_by_inventory_names(fake: FakeWazuh, client: WazuhClient) -> None:
    scans = agent_results(client, {"gpu02", "gpu03", "not-enrolled"})
    assert [scan.agent.name for scan in scans] == ["gpu02", "gpu03"]
    assert [p.policy_id for p in scans[0].policies] == ["cis_debian12"]
    assert not any("/sca/001" in r or "/sca/003" in r for r in fake.requests)  # nothing fetched for the others


def test_expired_token_reauthenticates_once_and_retries(fake: FakeWazuh, client: WazuhClient) -> None:
    client.agents()
    fake.expire_tokens()
    assert [p.policy_id for p in client.sca_policies("001")] == ["cis_debian12", "sca_unix_audit"]
    assert fake.requests.count(AUTH) == 2
    assert fake.requests[-3:] == ["GET /sca/001?offset=0&limit=2", AUTH, "GET /sca/001?offset=0&limit=2"]


def test_token_refused_after_reauthentication_is_an_error(fake: FakeWazuh, client: WazuhClient) -> None:
    class Refusing(set[str]):
        def __contains__(self, item: object) -> bool:
            return False

    fake.tokens = Refusing()
    with pytest.raises(WazuhApiError) as error:
        client.agents()
    assert str(error.value) == (
        f"Wazuh API {fake.url}: GET /agents (HTTP 401: Unauthorized - Invalid token after re-authenticating)")
    assert fake.requests.count(AUTH) == 2


def test_bad_credentials_give_one_line_without_the_password(fake: FakeWazuh) -> None:
    client = WazuhClient(fake.url, USER, "wrong-" + PASSWORD, timeout=5)
    with pytest.raises(WazuhApiError) as error:
        client.agents()
    message = str(error.value)
    assert message == (
        f"Wazuh API {fake.url}: authentication as {USER!r} failed (HTTP 401: Unauthorized - Invalid credentials)")
    assert "\n" not in message and PASSWORD not in message and PASSWORD not in repr(error.value)
    assert error.value.__cause__ is None and (error.value.__context__ is None or error.value.__suppress_context__)
    assert PASSWORD not in repr(client) and PASSWORD not in str(vars(client))


def test_unreachable_port_fails_quickly_naming_the_url() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago and has no listener
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = WazuhClient(f"http://127.0.0.1:{port}", USER, PASSWORD, timeout=3)
    started = time.monotonic()
    with pytest.raises(WazuhApiError, match=rf"^Wazuh API http://127\.0\.0\.1:{port}: .*unreachable: .*refused"):
        client.agents()
    assert time.monotonic() - started < 3


def test_http_errors_and_failed_items(fake: FakeWazuh, client: WazuhClient) -> None:
    with pytest.raises(WazuhApiError, match=r": GET /sca/999 \(1 failed item\(s\): Agent does not exist"):
        client.sca_policies("999")
    with pytest.raises(WazuhApiError, match=r": GET /nowhere \(HTTP 404: Not Found - 404: Not Found\)$"):
        client.get("/nowhere")


def test_alerting_evidence(fake: FakeWazuh, client: WazuhClient) -> None:
    assert alerting_evidence(client, {"gpu01", "gpu04"}) == {
        "safeguard": "13.1",
        "source": "wazuh",
        "manager": fake.url,
        "agents_total": 4,
        "agents_active": 2,
        "active_ratio": 0.5,
        "disconnected": ["gpu02"],
        "never_connected": ["gpu03"],
        "pending": [],
        "last_sca_scan": {
            "gpu01": "2026-05-01T09:05:30+00:00",
            "gpu02": "2026-04-19T23:05:00+00:00",
            "gpu03": None,
            "wazuh-manager": "2026-05-01T09:05:00+00:00",
        },
        "oldest_sca_scan": "2026-04-19T23:05:00+00:00",
        "not_enrolled": ["gpu04"],
    }
    assert "not_enrolled" not in alerting_evidence(client)


def test_url_is_checked_and_carries_no_credentials() -> None:
    with pytest.raises(ValueError, match="http"):
        WazuhClient("ftp://wazuh:55000", USER, PASSWORD)
    with pytest.raises(ValueError, match="must not carry credentials") as error:
        WazuhClient(f"https://{USER}:{PASSWORD}@wazuh:55000", USER, PASSWORD)
    assert PASSWORD not in str(error.value)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_https_with_a_self_signed_certificate(tmp_path: Path) -> None:
    cert, key = tmp_path / "manager.pem", tmp_path / "manager.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=wazuh-manager",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    server = FakeWazuh(tls=(str(cert), str(key)))
    try:
        assert server.url.startswith("https://")
        assert len(WazuhClient(server.url, USER, PASSWORD, verify=str(cert), timeout=5).agents()) == 4
        assert len(WazuhClient(server.url, USER, PASSWORD, verify=False, timeout=5).agents()) == 4
        with pytest.raises(WazuhApiError, match="TLS failed: .*CERTIFICATE_VERIFY_FAILED"):
            WazuhClient(server.url, USER, PASSWORD, verify=True, timeout=5).agents()
    finally:
        server.close()

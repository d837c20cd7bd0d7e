"""A small in-memory Wazuh 4.x manager API (plain HTTP on 127.0.0.1) with the shapes of spec.yaml at v4.14.7.

``POST /security/user/authenticate`` (basic auth) issues a token; ``GET /agents``, ``/sca/{agent}`` and
``/sca/{agent}/checks/{policy}`` need ``Authorization: Bearer <token>`` (401 otherwise), page with
``offset``/``limit`` and answer in the ``affected_items`` envelope. ``expire_tokens()`` invalidates every token.
"""

import base64
import json
import secrets
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

USER, PASSWORD = "astrolab-ro", "s3cret-Pa55word"


def _agent(id_: str, name: str, status: str, ip: str, os_: dict[str, str] | None, seen: str | None) -> dict[str, Any]:
    agent: dict[str, Any] = {"id": id_, "name": name, "status": status, "ip": ip, "registerIP": ip}
    if os_ is not None:  # the API leaves out fields it has no value for, as for agents that never connected
        agent |= {"os": os_, "version": "Wazuh v4.14.7", "lastKeepAlive": seen, "status_code": 0}
    return agent


DEBIAN = {"name": "Debian GNU/Linux", "version": "12", "platform": "debian", "arch": "x86_64", "major": "12"}
AGENTS = [
    _agent("000", "wazuh-manager", "active", "127.0.0.1", DEBIAN, "9999-12-31T23:59:59+00:00"),
    _agent("001", "gpu01", "active", "10.0.0.11", DEBIAN, "2026-05-01T10:00:00+00:00"),
    _agent("002", "gpu02", "disconnected", "10.0.0.12", DEBIAN, "2026-04-20T08:00:00+00:00"),
    _agent("003", "gpu03", "never_connected", "any", None, None),
]


def _policy(policy_id: str, name: str, counts: tuple[int, int, int], end: str) -> dict[str, Any]:
    (passed, failed, invalid), start = counts, end.replace(":05:", ":00:")
    return {"policy_id": policy_id, "name": name, "description": f"{name}.", "references": "https://www.cisecurity.org/",
            "pass": passed, "fail": failed, "invalid": invalid, "total_checks": sum(counts), "hash_file": "ab" * 32,
            "score": passed * 100 // (passed + failed), "start_scan": start, "end_scan": end}


CIS = "CIS Debian Linux 12 Benchmark v1.1.0"
POLICIES = {
    "000": [_policy("cis_debian12", CIS, (2, 2, 1), "2026-05-01T09:05:00+00:00")],
    "001": [_policy("cis_debian12", CIS, (2, 2, 1), "2026-05-01T09:05:00+00:00"),
            _policy("sca_unix_audit", "System audit for Unix based systems", (2, 2, 1), "2026-05-01T09:05:30+00:00")],
    "002": [_policy("cis_debian12", CIS, (2, 2, 1), "2026-04-19T23:05:00+00:00")],
}


def _check(id_: int, title: str, result: str, csc: str | None, **extra: str) -> dict[str, Any]:
    compliance = [{"key": "cis", "value": f"{id_ % 100}.1"}] + [{"key": "cis_csc_v8", "value": csc}] * bool(csc)
    check = {"id": id_, "title": title, "description": f"{title}.", "rationale": "Why.", "remediation": f"Fix {id_}.",
             "condition": "all", "compliance": compliance, "rules": [{"type": "command", "rule": "c:id"}], **extra}
    return check | ({"result": result} if result else {})  # no result: the API leaves the field out


CHECKS = {policy: [check | {"policy_id": policy} for check in checks] for policy, checks in {
    "cis_debian12": [
        _check(33162, "Ensure sshd PermitRootLogin is disabled.", "passed", "4.1,5.2", command="sshd -T"),
        _check(33169, "Ensure sshd MaxAuthTries is configured.", "failed", "8.5", command="sshd -T"),
        _check(33001, "Ensure cramfs is disabled.", "not applicable", "4.8", reason="modprobe missing"),
        _check(33050, "Ensure auditd is installed.", "failed", "8.2, 8.5", file="/etc/audit/auditd.conf"),
        _check(33100, "Ensure AIDE is installed.", "passed", None, command="dpkg -s aide"),
    ],
    "sca_unix_audit": [
        _check(3000, "SSH Hardening: Port should not be 22", "failed", "4.7"),
        _check(3001, "SSH Hardening: Protocol should be set to 2", "passed", "4.1"),
        _check(3002, "Ensure /tmp is a partition", "", None, reason="Could not open '/etc/fstab'"),
        _check(3003, "Ensure nodev is set on /tmp", "passed", "3.3"),
        _check(3004, "Ensure IP forwarding is disabled", "failed", "4.8,12.2"),
    ],
}.items()}


class FakeWazuh(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, tls: tuple[str, str] | None = None) -> None:
        """``tls``: (certificate, key) PEM paths to serve HTTPS instead of HTTP."""
        super().__init__(("127.0.0.1", 0), _Handler)
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.socket = context.wrap_socket(self.socket, server_side=True)
        self.tokens: set[str] = set()
        self.requests: list[str] = []  # "METHOD path?query" in arrival order
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True).start()

    def expire_tokens(self) -> None:
        self.tokens.clear()  # as after auth_token_exp_timeout (900 s by default)

    def close(self) -> None:
        self.shutdown()
        self.server_close()


def _page(items: list[dict[str, Any]], query: dict[str, list[str]], failed: list[Any] | None = None) -> dict[str, Any]:
    offset, limit = int(query.get("offset", ["0"])[0]), int(query.get("limit", ["500"])[0])
    data = {"affected_items": items[offset:offset + limit], "total_affected_items": len(items),
            "failed_items": failed or [], "total_failed_items": len(failed or [])}
    return {"data": data, "message": "All selected items were returned", "error": 1 if failed else 0}


class _Handler(BaseHTTPRequestHandler):
    server: FakeWazuh

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        """No access log on stderr."""

    def _reply(self, code: int, body: dict[str, Any]) -> None:
        raw = json.dumps(body).encode()
        self.send_response(code)
        for name, value in (("Content-Type", "application/json"), ("Content-Length", str(len(raw)))):
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(raw)

    def do_POST(self) -> None:
        self.server.requests.append(f"POST {self.path}")
        basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if urlsplit(self.path).path != "/security/user/authenticate" or self.headers.get("Authorization") != basic:
            self._reply(401, {"title": "Unauthorized", "detail": "Invalid credentials"})
        else:
            self.server.tokens.add(token := secrets.token_hex(16))
            self._reply(200, {"data": {"token": token}, "error": 0})

    def do_GET(self) -> None:
        self.server.requests.append(f"GET {self.path}")
        url = urlsplit(self.path)
        query, parts = parse_qs(url.query), url.path.strip("/").split("/")
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth.removeprefix("Bearer ") not in self.server.tokens:
            self._reply(401, {"title": "Unauthorized", "detail": "Invalid token" if auth else "No authorization token"})
        elif not 1 <= int(query.get("limit", ["500"])[0]) <= 100000:
            self._reply(400, {"title": "Bad Request", "detail": "limit must be 1..100000"})
        elif parts == ["agents"]:
            self._reply(200, _page(AGENTS, query))
        elif parts[0] == "sca" and parts[1:] and parts[1] not in {a["id"] for a in AGENTS}:
            error = {"error": {"code": 1701, "message": "Agent does not exist"}, "id": [parts[1]]}
            self._reply(200, _page([], query, [error]))
        elif parts[0] == "sca" and len(parts) == 2:
            self._reply(200, _page(POLICIES.get(parts[1], []), query))
        elif parts[0] == "sca" and len(parts) == 4 and parts[2] == "checks":
            self._reply(200, _page(CHECKS.get(parts[3], []), query))
        else:
            self._reply(404, {"title": "Not Found", "detail": "404: Not Found"})

"""A small Kubernetes API over HTTPS on 127.0.0.1, answering the documented shapes of the two reads astrolab makes:
``GET /api/v1/nodes`` (a NodeList, for the nodes_ready gate) and ``GET /api/v1/nodes/{name}`` (a Node, for the RKE2
roles' readiness wait; a 404 Status while the node has not registered). It authenticates as the real API server
does for each client: a bearer token (the gate's service account), or a client certificate signed by the given CA
(RKE2's admin client certificate). Requests are recorded as (path, Authorization header)."""

from __future__ import annotations

import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

NODES = "/api/v1/nodes"


def node(name: str, ready: str = "True") -> dict[str, Any]:
    """A Node as the API returns it (the fields astrolab reads, plus a neighbour condition)."""
    return {"kind": "Node", "apiVersion": "v1", "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"conditions": [
                {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory"},
                {"type": "Ready", "status": ready, "reason": "KubeletReady" if ready == "True" else "KubeletNotReady",
                 "lastTransitionTime": "2026-11-30T22:00:00Z"}]}}


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": reason,
            "code": code}


class FakeKubernetes:
    """Serves ``nodes`` (mutable) at ``url``. ``token``: bearer token required; ``client_ca``: a client certificate
    signed by that CA required instead. ``ready_after``: node name -> how many GETs of that node answer NotReady
    before its Ready condition turns True."""

    def __init__(self, tls: tuple[str, str], nodes: list[dict[str, Any]] | None = None, *, token: str | None = None,
                 client_ca: str | None = None, ready_after: dict[str, int] | None = None) -> None:
        if (token is None) == (client_ca is None):
            raise ValueError("give the fake one way to authenticate: token or client_ca")
        self.nodes = nodes or []
        self.ready_after = ready_after or {}
        self.requests: list[tuple[str, str]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                auth = self.headers.get("Authorization", "")
                fake.requests.append((self.path, auth))
                if token is not None and auth != f"Bearer {token}":
                    self._send(401, _status(401, "Unauthorized", "Unauthorized"))
                elif self.path == NODES:
                    self._send(200, {"kind": "NodeList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"},
                                     "items": [fake.current(n) for n in fake.nodes]})
                elif self.path.startswith(NODES + "/"):
                    name = self.path.removeprefix(NODES + "/")
                    found = [n for n in fake.nodes if n["metadata"]["name"] == name]
                    if found:
                        self._send(200, fake.current(found[0]))
                    else:
                        self._send(404, _status(404, "NotFound", f'nodes "{name}" not found'))
                else:
                    self._send(404, _status(404, "NotFound", "the server could not find the requested resource"))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        if client_ca is not None:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(client_ca)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def current(self, item: dict[str, Any]) -> dict[str, Any]:
        """The node as answered now: Ready once it has been asked for more than its ready_after count."""
        name = item["metadata"]["name"]
        after = self.ready_after.get(name)
        if after is None:
            return item
        asked = sum(path == f"{NODES}/{name}" for path, _ in self.requests)
        return node(name, "True" if asked > after else "False")

    def __enter__(self) -> FakeKubernetes:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

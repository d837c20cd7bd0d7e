"""A small Kubernetes API for the gate tests: GET /api/v1/nodes answers a NodeList (the documented shape: items
with metadata.name and status.conditions of type Ready), over HTTPS, to a bearer token only."""

from __future__ import annotations

import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def node(name: str, ready: str = "True") -> dict[str, Any]:
    """A Node as the API lists it (only the fields the gate reads, plus a neighbour condition)."""
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"conditions": [
                {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory"},
                {"type": "Ready", "status": ready, "reason": "KubeletReady" if ready == "True" else "KubeletNotReady",
                 "lastTransitionTime": "2026-11-30T22:00:00Z"}]}}


class FakeKubernetes:
    """Serves `nodes` (mutable) at https://127.0.0.1:<port>; `requests` records (path, authorization)."""

    def __init__(self, token: str, tls: tuple[str, str], nodes: list[dict[str, Any]] | None = None) -> None:
        self.nodes = nodes or []
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

            def do_GET(self) -> None:  # noqa: N802
                auth = self.headers.get("Authorization", "")
                fake.requests.append((self.path, auth))
                if auth != f"Bearer {token}":
                    self._send(401, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                     "message": "Unauthorized", "reason": "Unauthorized", "code": 401})
                elif self.path == "/api/v1/nodes":
                    self._send(200, {"kind": "NodeList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"},
                                     "items": fake.nodes})
                else:
                    self._send(404, {"kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeKubernetes:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

"""A small Kubernetes API (HTTPS on 127.0.0.1, client certificates required, as RKE2's API server asks the admin
client) answering ``GET /api/v1/nodes/{name}``: a 404 Status while the node has not registered, then a Node whose
Ready condition turns True after a given number of requests. Requests are recorded by path."""

import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeKube:
    """``nodes``: name -> how many GETs of that node answer before it is Ready (None: never Ready); a node that is not
    in it is unknown (404)."""

    def __init__(self, nodes: dict[str, int | None], cert: str, key: str) -> None:
        self.nodes = nodes
        self.requests: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                fake.requests.append(self.path)
                name = self.path.removeprefix("/api/v1/nodes/")
                if not self.path.startswith("/api/v1/nodes/") or name not in fake.nodes:
                    status, body = 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                         "message": f'nodes "{name}" not found', "reason": "NotFound", "code": 404}
                else:
                    after = fake.nodes[name]
                    ready = after is not None and fake.requests.count(self.path) > after
                    status, body = 200, {"kind": "Node", "apiVersion": "v1", "metadata": {"name": name}, "status": {
                        "conditions": [{"type": "MemoryPressure", "status": "False"},
                                       {"type": "Ready", "status": "True" if ready else "False",
                                        "reason": "KubeletReady" if ready else "KubeletNotReady"}]}}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        context.verify_mode = ssl.CERT_REQUIRED  # only the admin client certificate gets in
        context.load_verify_locations(cert)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

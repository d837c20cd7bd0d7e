"""A small Proxmox VE API (HTTPS on 127.0.0.1, self-signed certificate) answering the documented shape of
``GET /api2/json/nodes/{node}/storage/{storage}/content?content=backup[&vmid=N]`` (pve-storage Content.pm):
``{"data": [{volid, vmid, ctime, size, format, notes, verification?, ...}]}``. Every call needs
``Authorization: PVEAPIToken=<user@realm!name>=<secret>`` (401 otherwise); an unknown node or storage is an HTTP 500
with the reason as the status text, as PVE answers it. Requests are counted per path.

For the cluster build (infra/ansible role proxmox_vms) it also answers what cloning a template takes
(qemu-server API2/Qemu.pm): ``GET /version``, ``GET /nodes``, ``GET /cluster/resources?type=vm``,
``GET /nodes/{node}/qemu[/{vmid}/config]``,
``POST /nodes/{node}/qemu/{vmid}/clone`` (-> a UPID; the clone exists at once),
``GET /nodes/{node}/tasks/{upid}/status`` (always stopped, OK) and ``PUT|POST /nodes/{node}/qemu/{vmid}/config``;
every POST and PUT is recorded in ``changes`` with its form parameters."""

import json
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN_ID, TOKEN_SECRET = "astrolab@pve!backup-ro", "0b5e3a52-2c1f-4f7e-9d3a-5a1c2b3d4e5f"


def archive(storage: str, vmid: int, ctime: int, verification: str | None = None, size: int = 1 << 30) -> dict:
    """One content item of a backup storage, as PVE lists it."""
    stamp = time.strftime("%Y_%m_%d-%H_%M_%S", time.gmtime(ctime))
    item: dict[str, Any] = {"volid": f"{storage}:backup/vzdump-qemu-{vmid}-{stamp}.vma.zst", "vmid": vmid,
                            "ctime": ctime, "size": size, "format": "vma.zst", "content": "backup",
                            "notes": f"vm {vmid}", "subtype": "qemu"}
    if verification:
        item["verification"] = {"state": verification, "upid": f"UPID:pve:0000:0000:{ctime:08X}:verify::root@pam:"}
    return item


def self_signed(directory: Path) -> tuple[str, str]:
    cert, key = directory / "pve.pem", directory / "pve.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=pve",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return str(cert), str(key)


class FakeProxmox:
    """``storages``: (node, storage) -> content items."""

    def __init__(self, storages: dict[tuple[str, str], list[dict]], tls: tuple[str, str],
                 vms: dict[int, dict] | None = None, nodes: tuple[str, ...] = ("pve1",)) -> None:
        self.storages = storages
        self.requests: list[str] = []
        self.vms = vms if vms is not None else {}  # vmid -> {name, node, template (0|1)}
        self.nodes = nodes
        self.changes: list[tuple[str, str, dict[str, str]]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, body: Any, reason: str | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status, reason)
                self.send_header("Content-Type", "application/json;charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorised(self, path: str) -> bool:
                fake.requests.append(path)
                if self.headers.get("Authorization") != f"PVEAPIToken={TOKEN_ID}={TOKEN_SECRET}":
                    self._send(401, {"data": None}, "authentication failure")
                    return False
                return True

            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                url = urlsplit(self.path)
                if not self._authorised(url.path):
                    return
                parts = url.path.strip("/").split("/")
                query = parse_qs(url.query)
                if parts[2:] == ["version"]:
                    self._send(200, {"data": {"version": "8.2.4", "release": "8.2", "repoid": "faa83925"}})
                elif parts[2:] == ["nodes"]:
                    self._send(200, {"data": [{"node": n, "status": "online", "type": "node"} for n in fake.nodes]})
                elif parts[2:] == ["cluster", "resources"]:
                    self._send(200, {"data": [{"vmid": vmid, "id": f"qemu/{vmid}", "type": "qemu", "status": "stopped",
                                               **vm} for vmid, vm in sorted(fake.vms.items())]})
                elif len(parts) == 5 and parts[2] == "nodes" and parts[4] == "qemu":
                    self._send(200, {"data": [{"vmid": vmid, "name": vm["name"], "status": "stopped"}
                                              for vmid, vm in sorted(fake.vms.items()) if vm["node"] == parts[3]]})
                elif len(parts) == 7 and parts[2] == "nodes" and parts[4] == "qemu" and parts[6] == "config" \
                        and int(parts[5]) in fake.vms:
                    self._send(200, {"data": {k: v for k, v in fake.vms[int(parts[5])].items() if k != "node"}})
                elif len(parts) == 7 and parts[2] == "nodes" and parts[4] == "tasks" and parts[6] == "status":
                    self._send(200, {"data": {"upid": parts[5], "node": parts[3], "status": "stopped",
                                              "exitstatus": "OK"}})
                elif len(parts) == 7 and parts[2] == "nodes" and parts[4] == "storage" and parts[6] == "content":
                    key = (parts[3], parts[5])
                    if key not in fake.storages:
                        self._send(500, {"data": None}, f"storage '{parts[5]}' does not exist on node '{parts[3]}'")
                        return
                    items = [i for i in fake.storages[key] if query.get("content", ["backup"])[0] == i["content"]]
                    if "vmid" in query:
                        items = [i for i in items if str(i["vmid"]) == query["vmid"][0]]
                    self._send(200, {"data": items})
                else:
                    self._send(501, {"data": None}, f"Method 'GET {url.path}' not implemented")

            def _change(self) -> None:
                url = urlsplit(self.path)
                if not self._authorised(url.path):
                    return
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                fake.changes.append((self.command, url.path, form))
                parts = url.path.strip("/").split("/")
                if len(parts) != 7 or parts[2] != "nodes" or parts[4] != "qemu" or parts[6] not in ("clone", "config"):
                    self._send(501, {"data": None}, f"Method '{self.command} {url.path}' not implemented")
                    return
                vmid = int(parts[5])
                if vmid not in fake.vms:
                    self._send(500, {"data": None}, f"Configuration file 'nodes/{parts[3]}/qemu-server/{vmid}.conf' "
                                                    "does not exist")
                elif parts[6] == "clone":
                    newid = int(form["newid"])
                    fake.vms[newid] = {"name": form.get("name", f"Copy-of-VM-{vmid}"),
                                       "node": form.get("target", parts[3]), "template": 0}
                    self._send(200, {"data": f"UPID:{parts[3]}:0000A1B2:00C3D4E5:6740A000:qmclone:{vmid}:"
                                             f"{TOKEN_ID}:"})
                else:
                    fake.vms[vmid].update(form)
                    self._send(200, {"data": None})

            do_POST = do_PUT = _change  # noqa: N815 - the http.server API

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

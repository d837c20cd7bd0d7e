"""A small Proxmox VE API (HTTPS on 127.0.0.1, self-signed certificate) answering the documented shape of
``GET /api2/json/nodes/{node}/storage/{storage}/content?content=backup[&vmid=N]`` (pve-storage Content.pm):
``{"data": [{volid, vmid, ctime, size, format, notes, verification?, ...}]}``. Every call needs
``Authorization: PVEAPIToken=<user@realm!name>=<secret>`` (401 otherwise); an unknown node or storage is an HTTP 500
with the reason as the status text, as PVE answers it. Requests are counted per path.

For the cluster build (infra/ansible role proxmox_vms) it also answers what cloning a template takes
(qemu-server API2/Qemu.pm): ``GET /version``, ``GET /nodes``, ``GET /cluster/resources?type=vm``,
``GET /nodes/{node}/qemu[/{vmid}/config]``,
``POST /nodes/{node}/qemu/{vmid}/clone`` (-> a UPID; the clone exists at once, with the template's config and its
disks as ``<storage>:vm-<newid>-disk-<n>,size=...``), ``GET /nodes/{node}/tasks/{upid}/status``,
``PUT|POST /nodes/{node}/qemu/{vmid}/config``, ``PUT /nodes/{node}/qemu/{vmid}/resize`` (disk, size: ``[+]N[KMGT]``,
absolute or added -> a UPID, as PVE 8 answers it; a smaller size is refused, "shrinking disks is not supported"),
``POST /nodes/{node}/qemu/{vmid}/status/start`` (-> a UPID; the VM runs when the task stops OK) and
``GET /nodes/{node}/qemu/{vmid}/status/current`` (``status``: running or stopped, also in the VM lists). Pending
changes are not modelled: a config PUT applies at once. Every POST, PUT and DELETE is recorded in ``changes`` with its
form (or query) parameters.

For backups (pve-manager VZDump.pm, qemu-server Qemu.pm, pve-storage Content.pm, Tasks.pm) it answers
``POST /nodes/{node}/vzdump`` (vmid, storage, mode, compress -> a UPID; the archive,
``vzdump-qemu-<vmid>-<time>.vma.zst`` with the VM's config, appears when the task stops OK),
``GET /nodes/{node}/vzdump/extractconfig?volume=`` (the archive's config text), ``GET /cluster/nextid``,
``POST /nodes/{node}/qemu`` with ``archive`` (a restore into a new vmid: refused when it exists; once accepted the VM
is listed at once with ``lock: create``, as PVE shows a restoring VM, gone again if the restore fails; its disks named
for the new vmid on ``storage``, sizes kept), ``DELETE /nodes/{node}/qemu/{vmid}`` and
``DELETE /nodes/{node}/storage/{storage}/content/{volid}`` (-> UPIDs). A task's status is ``running`` for
``running_polls`` polls, then ``stopped`` with ``exitstatus`` "OK" or ``task_errors[type]``; a type in ``hang`` runs
forever. Tasks the fake did not start (a clone) are stopped, OK. A task type in ``drop_answers`` is accepted (started)
and its request's connection then closed unanswered, as when a connection resets after PVE took the request."""

import json
import re
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

TOKEN_ID, TOKEN_SECRET = "astrolab@pve!backup-ro", "0b5e3a52-2c1f-4f7e-9d3a-5a1c2b3d4e5f"
UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
DISK_KEY = re.compile(r"(?:ide|sata|scsi|virtio|efidisk|tpmstate)\d+")


def size_bytes(size: str) -> int:
    """A PVE disk size (``32G``, ``2252M``, ``512``: bytes without a unit) in bytes."""
    found = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)", size)
    if found is None:
        raise ValueError(f"unrecognised size {size!r}")
    return int(float(found.group(1)) * UNITS[found.group(2)])


def format_size(size: int) -> str:
    """Bytes as PVE writes a disk's size: in the largest unit that divides it."""
    for unit in "TGMK":
        if size % UNITS[unit] == 0:
            return f"{size // UNITS[unit]}{unit}"
    return str(size)


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
        self.vms = vms if vms is not None else {}  # vmid -> {name, node, template (0|1), config keys (scsi0, ...)}
        self.nodes = nodes
        self.running: set[int] = set()  # vmids whose status is running
        self.changes: list[tuple[str, str, dict[str, str]]] = []
        self.archive_configs: dict[str, str] = {}  # volid -> the config text vzdump stored in it
        self.tasks: dict[str, dict[str, Any]] = {}  # upid -> {type, polls, done (effect on success)}
        self.running_polls = 2
        self.next_vmid: int | None = None  # what /cluster/nextid answers (default: the highest vmid + 1)
        self.restore_drops: set[str] = set()  # disks a restore leaves out (to show that a drill catches it)
        self.task_errors: dict[str, str] = {}  # task type -> its exitstatus instead of OK
        self.hang: set[str] = set()
        self.drop_answers: set[str] = set()  # task types started without answering (the connection dropped)
        self.clock = time.time
        self._lock = threading.Lock()
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
                    self._send(200, {"data": [{"vmid": vmid, "id": f"qemu/{vmid}", "type": "qemu",
                                               "status": fake.status(vmid), **vm}
                                              for vmid, vm in sorted(fake.vms.items())]})
                elif len(parts) == 5 and parts[2] == "nodes" and parts[4] == "qemu":
                    self._send(200, {"data": [{"vmid": vmid, "status": fake.status(vmid),
                                               **{k: vm[k] for k in ("name", "lock") if k in vm}}
                                              for vmid, vm in sorted(fake.vms.items()) if vm["node"] == parts[3]]})
                elif len(parts) == 8 and parts[2] == "nodes" and parts[4] == "qemu" \
                        and parts[6:] == ["status", "current"] and int(parts[5]) in fake.vms:
                    vmid, vm = int(parts[5]), fake.vms[int(parts[5])]
                    self._send(200, {"data": {"vmid": vmid, "status": fake.status(vmid), "qmpstatus": fake.status(vmid),
                                              **{k: vm[k] for k in ("name", "lock") if k in vm}}})
                elif len(parts) == 7 and parts[2] == "nodes" and parts[4] == "qemu" and parts[6] == "config" \
                        and int(parts[5]) in fake.vms:
                    self._send(200, {"data": {k: v for k, v in fake.vms[int(parts[5])].items() if k != "node"}})
                elif len(parts) == 7 and parts[2] == "nodes" and parts[4] == "tasks" and parts[6] == "status":
                    self._send(200, {"data": fake.task_status(parts[3], unquote(parts[5]))})
                elif parts[2:] == ["cluster", "nextid"]:
                    nextid = fake.next_vmid or max([100, *fake.vms]) + 1
                    self._send(200, {"data": str(nextid)})  # PVE answers the id as a string
                elif len(parts) == 6 and parts[2] == "nodes" and parts[4:] == ["vzdump", "extractconfig"]:
                    volume = query.get("volume", [""])[0]
                    if volume not in fake.archive_configs:
                        self._send(500, {"data": None}, f"volume '{volume}' does not exist")
                        return
                    self._send(200, {"data": fake.archive_configs[volume]})
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
                if self.command == "POST" and len(parts) == 5 and parts[2] == "nodes" and parts[4] in ("vzdump",
                                                                                                        "qemu"):
                    status, body, reason = (fake.vzdump if parts[4] == "vzdump" else fake.restore)(parts[3], form)
                    if status == 200 and fake.tasks[body]["type"] in fake.drop_answers:
                        self.close_connection = True  # started, and no answer: the client sees the connection drop
                        return
                    self._send(status, {"data": body}, reason)
                    return
                action = (self.command, *parts[6:])
                if len(parts) < 7 or parts[2] != "nodes" or parts[4] != "qemu" or action not in (
                        ("POST", "clone"), ("POST", "config"), ("PUT", "config"), ("PUT", "resize"),
                        ("POST", "status", "start")):
                    self._send(501, {"data": None}, f"Method '{self.command} {url.path}' not implemented")
                    return
                vmid = int(parts[5])
                if vmid not in fake.vms:
                    self._send(500, {"data": None}, f"Configuration file 'nodes/{parts[3]}/qemu-server/{vmid}.conf' "
                                                    "does not exist")
                elif action[1] == "clone":
                    newid = int(form["newid"])
                    config = {k: v for k, v in fake.vms[vmid].items() if k not in ("name", "node", "template")}
                    fake.vms[newid] = {**fake.rehome_disks(config, newid, form.get("storage")),
                                       "name": form.get("name", f"Copy-of-VM-{vmid}"),
                                       "node": form.get("target", parts[3]), "template": 0}
                    self._send(200, {"data": f"UPID:{parts[3]}:0000A1B2:00C3D4E5:6740A000:qmclone:{vmid}:"
                                             f"{TOKEN_ID}:"})
                elif action[1] == "config":
                    fake.vms[vmid].update(form)
                    self._send(200, {"data": None})
                else:
                    status, body, reason = (fake.resize(parts[3], vmid, form) if action[1] == "resize"
                                            else fake.start(parts[3], vmid))
                    self._send(status, {"data": body}, reason)

            do_POST = do_PUT = _change  # noqa: N815 - the http.server API

            def do_DELETE(self) -> None:  # noqa: N802 - the http.server API
                url = urlsplit(self.path)
                if not self._authorised(url.path):
                    return
                fake.changes.append(("DELETE", url.path, {k: v[0] for k, v in parse_qs(url.query).items()}))
                parts = url.path.strip("/").split("/")  # a volid's '/' arrives as %2F: still one segment
                if len(parts) == 6 and parts[2] == "nodes" and parts[4] == "qemu":
                    status, body, reason = fake.destroy(parts[3], int(parts[5]))
                elif len(parts) == 8 and parts[2] == "nodes" and parts[4] == "storage" and parts[6] == "content":
                    status, body, reason = fake.delete_volume(parts[3], parts[5], unquote(parts[7]))
                else:
                    status, body, reason = 501, None, f"Method 'DELETE {url.path}' not implemented"
                self._send(status, {"data": body}, reason)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def _task(self, node: str, kind: str, ident: str | int, done: Any, failed: Any = None) -> str:
        """Start a task: its UPID (pid, pstart and start time in hex, as PVE writes them); ``done`` runs when it
        stops OK, ``failed`` when it stops with an error."""
        with self._lock:
            upid = (f"UPID:{node}:{0xA000 + len(self.tasks):08X}:{0x00C3D4E5:08X}:{int(self.clock()):08X}:{kind}:"
                    f"{ident}:{TOKEN_ID}:")
            self.tasks[upid] = {"type": kind, "id": str(ident), "node": node, "polls": 0, "done": done,
                                "failed": failed}
        return upid

    def task_status(self, node: str, upid: str) -> dict[str, Any]:
        """A task's status as Tasks.pm answers it; a task's effect happens when it stops OK."""
        with self._lock:
            task = self.tasks.get(upid)
            if task is None:  # a task this fake did not start (a clone): done
                return {"upid": upid, "node": node, "status": "stopped", "exitstatus": "OK"}
            task["polls"] += 1
            base = {"upid": upid, "node": task["node"], "type": task["type"], "id": task["id"],
                    "user": TOKEN_ID, "starttime": int(upid.split(":")[4], 16)}
            if task["type"] in self.hang or task["polls"] <= self.running_polls:
                return {**base, "status": "running"}
            exitstatus = self.task_errors.get(task["type"], "OK")
            done, failed = task.pop("done", None), task.pop("failed", None)  # once, when first seen stopped
            effect = done if exitstatus == "OK" else failed
            if effect is not None:
                effect()
            return {**base, "status": "stopped", "exitstatus": exitstatus}

    def vzdump(self, node: str, form: dict[str, str]) -> tuple[int, Any, str | None]:
        vmid, storage = int(form["vmid"]), form["storage"]
        if (node, storage) not in self.storages:
            return 500, None, f"storage '{storage}' does not exist on node '{node}'"
        if vmid not in self.vms or self.vms[vmid]["node"] != node:
            return 500, None, f"unable to find VM {vmid} on node '{node}'"
        if form.get("mode", "snapshot") not in ("snapshot", "suspend", "stop") or form.get("compress") not in (
                None, "0", "1", "gzip", "lzo", "zstd"):
            return 400, None, "Parameter verification failed."

        def done() -> None:
            taken = {i["ctime"] for i in self.storages[(node, storage)] if i["vmid"] == vmid}
            ctime = max([int(self.clock()), *(t + 1 for t in taken)])  # vzdump's file names are per second
            item = archive(storage, vmid, ctime, size=self.vms[vmid].get("archive_size", 2 << 20))
            self.storages[(node, storage)].append(item)
            self.archive_configs[item["volid"]] = "".join(
                f"{k}: {v}\n" for k, v in self.vms[vmid].items() if k not in ("node", "template", "archive_size"))

        return 200, self._task(node, "vzdump", vmid, done), None

    def restore(self, node: str, form: dict[str, str]) -> tuple[int, Any, str | None]:
        vmid, volid = int(form["vmid"]), form.get("archive")
        if volid is None:
            return 501, None, "only restores (archive=...) are implemented"
        if vmid in self.vms and form.get("force") not in ("1", "true"):
            where = self.vms[vmid]["node"]
            return 500, None, f"unable to create VM {vmid} - VM {vmid} already exists on node '{where}'"
        if volid not in self.archive_configs:
            return 500, None, f"volume '{volid}' does not exist"

        def done() -> None:
            lines = (line.split(": ", 1) for line in self.archive_configs[volid].splitlines())
            config = {key: value for key, value in lines if key not in self.restore_drops}
            self.vms[vmid] = {"node": node, "template": 0, **self.rehome_disks(config, vmid, form.get("storage"))}

        self.vms[vmid] = {"node": node, "template": 0, "lock": "create"}
        return 200, self._task(node, "qmrestore", vmid, done, lambda: self.vms.pop(vmid, None)), None

    def status(self, vmid: int) -> str:
        return "running" if vmid in self.running else "stopped"

    @staticmethod
    def rehome_disks(config: dict[str, Any], vmid: int, storage: str | None) -> dict[str, Any]:
        """``config`` with its disks (not CD-ROMs) as new volumes of ``vmid``, ``<storage>:vm-<vmid>-disk-<n>``
        (``storage`` unset: each disk's own), their sizes kept: what a restore or a full clone makes."""
        disks, out = 0, {}
        for key, value in config.items():
            if DISK_KEY.fullmatch(key) and "media=cdrom" not in value:
                size = re.search(r"size=([^,]+)", value)
                value = f"{storage or value.split(':')[0]}:vm-{vmid}-disk-{disks}" + (
                    f",size={size.group(1)}" if size else "")
                disks += 1
            out[key] = value
        return out

    def resize(self, node: str, vmid: int, form: dict[str, str]) -> tuple[int, Any, str | None]:
        """PUT .../resize as qemu-server checks it: the disk must exist, a size is ``[+]N[KMGT]``, never smaller."""
        disk, size = form.get("disk", ""), form.get("size", "")
        grow = re.fullmatch(r"(\+)?(\d+(?:\.\d+)?[KMGT]?)", size)
        if not DISK_KEY.fullmatch(disk) or grow is None:
            return 400, None, "Parameter verification failed."
        value = self.vms[vmid].get(disk)
        current = re.search(r"(?:^|,)size=([^,]+)", value or "")
        if value is None or current is None:
            return 500, None, f"disk '{disk}' does not exist"
        old = size_bytes(current.group(1))
        new = old + size_bytes(grow.group(2)) if grow.group(1) else size_bytes(grow.group(2))
        if new < old:
            return 500, None, "shrinking disks is not supported"

        def done() -> None:
            self.vms[vmid][disk] = value[:current.start(1)] + format_size(new) + value[current.end(1):]

        return 200, self._task(node, "resize", vmid, done), None

    def start(self, node: str, vmid: int) -> tuple[int, Any, str | None]:
        if vmid in self.running:
            return 500, None, f"VM {vmid} already running"
        return 200, self._task(node, "qmstart", vmid, lambda: self.running.add(vmid)), None

    def destroy(self, node: str, vmid: int) -> tuple[int, Any, str | None]:
        if vmid not in self.vms or self.vms[vmid]["node"] != node:
            return 500, None, f"Configuration file 'nodes/{node}/qemu-server/{vmid}.conf' does not exist"
        return 200, self._task(node, "qmdestroy", vmid, lambda: self.vms.pop(vmid, None)), None

    def delete_volume(self, node: str, storage: str, volid: str) -> tuple[int, Any, str | None]:
        items = self.storages.get((node, storage))
        if items is None:
            return 500, None, f"storage '{storage}' does not exist on node '{node}'"
        found = [i for i in items if i["volid"] == volid]
        if not found:
            return 500, None, f"volume '{volid}' does not exist"
        if found[0].get("protected"):
            return 500, None, "cannot delete protected backup"

        def done() -> None:
            items.remove(found[0])
            self.archive_configs.pop(volid, None)

        return 200, self._task(node, "imgdel", "", done), None  # PVE's imgdel task has no id

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

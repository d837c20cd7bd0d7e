"""Proxmox VE vzdump backups through the Proxmox API (``proxmoxer``): the archives on a storage and, from them, the
freshness of ``proxmox-vm`` assets for the RPO check; a backup (vzdump), a restore drill into a scratch VM, and the
retention applied to a VM's archives.

A VM's archives are listed by ``GET /nodes/{node}/storage/{storage}/content?content=backup`` (pve-storage's
Content.pm): items ``{volid, vmid, ctime (epoch), size, format, verification{state}, ...}``; the VM's node and vmid
come from the inventory. One listing per (node, storage), whatever the number of VMs on it. An archive whose
verification failed is not a good backup and does not count. The API token authenticates every call
(``Authorization: PVEAPIToken=user@realm!name=secret``); it is never part of a message.

Long operations are tasks: the call returns a UPID (``UPID:node:pid:pstart:starttime:type:id:user:``), polled through
``GET /nodes/{node}/tasks/{upid}/status`` until ``status`` is ``stopped``; only ``exitstatus == "OK"`` is success
(anything else, warnings included, fails with that text). A backup is ``POST /nodes/{node}/vzdump`` (vmid, storage,
mode, ``compress=zstd``), its archive the one that was not on the storage before. A drill restores the newest good
archive with ``POST /nodes/{node}/qemu`` (``archive``, a scratch ``vmid``, ``unique=1``, never ``force``: PVE refuses
an existing vmid) into a vmid of the configured scratch range or ``GET /cluster/nextid``, compares its disks with the
archive's own config (``GET /nodes/{node}/vzdump/extractconfig``) and destroys it
(``DELETE /nodes/{node}/qemu/{vmid}``); the live vmid is never a target. A restore request whose answer is lost
(connection reset, read timeout) may still have been accepted: when its vmid then exists, the drill's line says the
scratch VM may be left on that node. Prune deletes the archives that the asset's
retention does not keep (``DELETE /nodes/{node}/storage/{storage}/content/{volid}``); the newest and protected
archives are always kept.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

import requests
import urllib3
from proxmoxer import ProxmoxAPI
from proxmoxer.core import AuthenticationError, ResourceException

from tasks.backup.drill import DrillResult, drill_detail
from tasks.backup.registry import Asset, ProxmoxVmAsset, Retention
from tasks.backup.retention import kept
from tasks.backup.rpo import Freshness, FreshnessReader, Unreadable
from tasks.inventory.model import Inventory, Vm

DISK_KEY = re.compile(r"^(?:ide|sata|scsi|virtio|efidisk|tpmstate)\d+$")


class ProxmoxError(Exception):
    """A Proxmox API call that failed; one line, no token."""


class ProxmoxNoAnswer(ProxmoxError):
    """A request whose answer was lost (connection reset or dropped, read timeout): PVE may have acted on it."""


@dataclass(frozen=True)
class ProxmoxApi:
    """The Proxmox API client and how astrolab uses it: how long a task may run and how often it is polled, the
    vmids restore drills may use (None: the cluster's nextid) and the storage their disks go to (None: the
    archive's)."""

    client: ProxmoxAPI
    task_timeout: float = 3600.0
    poll_interval: float = 2.0
    scratch_vmids: tuple[int, int] | None = None
    scratch_storage: str | None = None


@dataclass(frozen=True)
class VzdumpArchive:
    """One vzdump archive on a Proxmox storage."""

    volid: str
    vmid: int
    created: datetime
    size: int
    format: str
    verification: str | None = None  # ok / failed (PBS verify), None when never verified
    protected: bool = False

    @classmethod
    def from_api(cls, item: dict[str, Any]) -> VzdumpArchive:
        """An archive from one item of the storage's content list."""
        verification = item.get("verification") or {}
        return cls(volid=str(item["volid"]), vmid=int(item["vmid"]),
                   created=datetime.fromtimestamp(int(item["ctime"]), UTC), size=int(item.get("size") or 0),
                   format=str(item.get("format", "")), verification=verification.get("state"),
                   protected=bool(int(item.get("protected") or 0)))


def connect(url: str, token_id: str, token_secret: str, verify: bool | str = True, timeout: float = 10) -> ProxmoxAPI:
    """A client of the PVE API at ``https://host:8006`` with an API token ``user@realm!name`` and its secret;
    ``verify``: check TLS (True), not (False), or a CA bundle path."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ProxmoxError(f"proxmox: the API url must be https://host[:port], not {url!r}")
    if "!" not in token_id:
        raise ProxmoxError(f"proxmox: the token id must be user@realm!tokenname, not {token_id!r}")
    user, name = token_id.split("!", 1)
    return ProxmoxAPI(parts.hostname, port=parts.port or 8006, user=user, token_name=name, token_value=token_secret,
                      verify_ssl=verify, timeout=timeout, service="PVE")


def _reason(exc: Exception, where: str) -> str:
    if isinstance(exc, ResourceException):
        text = f"HTTP {exc.status_code} {exc.status_message}"
        detail = " ".join(str(exc.content or "").split())
        return f"{where}: {text}" + (f" ({detail[:200]})" if detail and detail not in text else "")
    if isinstance(exc, requests.exceptions.SSLError):  # a ConnectionError too: test it first
        return f"{where}: TLS verification of the Proxmox API failed"
    if isinstance(exc, requests.ConnectionError | requests.Timeout):
        return f"{where}: the Proxmox API cannot be reached ({type(exc).__name__})"
    return f"{where}: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"


def _refused(exc: requests.RequestException) -> bool:
    """Whether the connection itself could not be made (refused, no route, name unknown): the request was never sent."""
    reason = exc.args[0] if exc.args else None
    return isinstance(getattr(reason, "reason", reason), urllib3.exceptions.NewConnectionError)


def _call(where: str, request: Callable[[], Any]) -> Any:
    """One API call; its failure is a ProxmoxError naming ``where`` and the reason (never the token)."""
    try:
        return request()
    except (requests.ReadTimeout, requests.ConnectionError) as exc:
        if isinstance(exc, requests.exceptions.SSLError | requests.ConnectTimeout) or _refused(exc):  # never sent
            raise ProxmoxError(_reason(exc, where)) from None
        raise ProxmoxNoAnswer(_reason(exc, where)) from None
    except (ResourceException, AuthenticationError, requests.RequestException) as exc:
        raise ProxmoxError(_reason(exc, where)) from None


def backup_archives(client: ProxmoxAPI, node: str, storage: str, vmid: int | None = None) -> list[VzdumpArchive]:
    """The vzdump archives on a node's storage (of one VM with ``vmid``), oldest first."""
    where = f"proxmox nodes/{node}/storage/{storage}/content"
    params: dict[str, Any] = {"content": "backup", **({"vmid": vmid} if vmid is not None else {})}
    items = _call(where, lambda: client.nodes(node).storage(storage).content.get(**params))
    try:
        archives = [VzdumpArchive.from_api(item) for item in items or ()]
    except (KeyError, TypeError, ValueError) as exc:
        raise ProxmoxError(f"{where}: unexpected answer ({type(exc).__name__}: {exc})") from None
    return sorted(archives, key=lambda a: a.created)


def wait_task(api: ProxmoxApi, node: str, upid: str, what: str) -> dict[str, Any]:
    """Poll a task until it has stopped and return its status; a ProxmoxError naming ``what`` with the task's
    exitstatus when that is not OK, or when it still runs after ``api.task_timeout`` seconds."""
    deadline = time.monotonic() + api.task_timeout
    task = api.client.nodes(node).tasks(quote(upid, safe=":!@=")).status  # one path segment, whatever its id holds
    while True:
        status = _call(f"{what}: task status", task.get) or {}
        if status.get("status") == "stopped":
            exitstatus = " ".join(str(status.get("exitstatus") or "no exit status").split())
            if exitstatus != "OK":
                raise ProxmoxError(f"{what}: task failed: {exitstatus[:300]}")
            return dict(status)
        left = deadline - time.monotonic()
        if left <= 0:
            raise ProxmoxError(f"{what}: task still running after {api.task_timeout:g} s, gave up waiting ({upid})")
        time.sleep(min(api.poll_interval, left))


def inventory_vm(inventory: Inventory | None, asset: ProxmoxVmAsset) -> Vm:
    """The inventory VM of a proxmox-vm asset (its node and vmid)."""
    vm = next((v for v in inventory.vms if v.name == asset.vm), None) if inventory is not None else None
    if vm is None:
        raise ProxmoxError(f"asset {asset.name}: vm {asset.vm!r} is not in the inventory"
                           + ("" if inventory is not None else " (no inventory given)"))
    return vm


def vzdump(api: ProxmoxApi, vm: Vm, storage: str, mode: str = "snapshot") -> VzdumpArchive:
    """Back up a VM with vzdump (``mode``, zstd) onto ``storage``, wait for the task and return the new archive."""
    what = f"proxmox vzdump of vm {vm.name} ({vm.vmid}) on node {vm.node} onto {storage}"
    before = {a.volid for a in backup_archives(api.client, vm.node, storage, vm.vmid)}
    upid = _call(what, lambda: api.client.nodes(vm.node).vzdump.post(vmid=vm.vmid, storage=storage, mode=mode,
                                                                       compress="zstd"))
    wait_task(api, vm.node, str(upid), what)
    new = [a for a in backup_archives(api.client, vm.node, storage, vm.vmid) if a.volid not in before]
    if not new:
        raise ProxmoxError(f"{what}: the task ended OK but no new archive of vm {vm.vmid} is on {storage}")
    return new[-1]


def config_disks(config: Mapping[str, Any] | str) -> dict[str, str]:
    """The disks of a VM config (a ``GET .../config`` answer, or the text of an archive's config): key -> size; CD-ROM
    drives and snapshot sections left out."""
    if isinstance(config, str):
        lines = config.split("\n[", 1)[0].splitlines()  # "[snapshot]" sections follow the current config
        config = dict(line.split(": ", 1) for line in lines if ": " in line and not line.startswith("#"))
    disks = {}
    for key, value in config.items():
        options = str(value).split(",")
        if DISK_KEY.match(key) and "media=cdrom" not in options and options[0] != "none":
            size = next((o.split("=", 1)[1] for o in options if o.startswith("size=")), "?")
            disks[key] = size
    return disks


def scratch_vmid(api: ProxmoxApi, live: int) -> int:
    """A vmid for a drill's scratch VM: the first free one of ``api.scratch_vmids``, else the cluster's nextid;
    never ``live``."""
    if api.scratch_vmids:
        low, high = api.scratch_vmids
        used = {int(r["vmid"]) for r in _call("proxmox cluster/resources",
                                               lambda: api.client.cluster.resources.get(type="vm")) or ()}
        free = [v for v in range(low, high + 1) if v not in used and v != live]
        if not free:
            raise ProxmoxError(f"proxmox: no free scratch vmid in {low}-{high}")
        return free[0]
    vmid = int(_call("proxmox cluster/nextid", lambda: api.client.cluster.nextid.get()))
    if vmid == live:
        raise ProxmoxError(f"proxmox cluster/nextid answered the live vmid {live}")
    return vmid


def node_vmids(api: ProxmoxApi, node: str, what: str) -> set[int]:
    """The vmids of the VMs on a node (``GET /nodes/{node}/qemu``)."""
    return {int(v["vmid"]) for v in _call(what, lambda: api.client.nodes(node).qemu.get()) or ()}


def destroy_scratch(api: ProxmoxApi, node: str, vmid: int, live: int) -> bool:
    """Destroy a drill's scratch VM (its disks purged) if it exists; True when one was destroyed. Refuses ``live``."""
    if vmid == live:
        raise ProxmoxError(f"proxmox: refusing to destroy vm {vmid} on node {node}: it is the live vm")
    what = f"proxmox destroy of scratch vm {vmid} on node {node}"
    if vmid not in node_vmids(api, node, what):
        return False
    upid = _call(what, lambda: api.client.nodes(node).qemu(vmid).delete(**{"purge": 1,
                                                                        "destroy-unreferenced-disks": 1}))
    wait_task(api, node, str(upid), what)
    return True


def unanswered_restore(api: ProxmoxApi, node: str, vmid: int) -> str | None:
    """After a restore into ``vmid`` whose answer was lost: a line saying the scratch VM may be left when ``vmid``
    exists now (PVE shows a restoring VM at once, locked) or when that cannot be checked; None when it does not exist.
    Such a VM is not destroyed: without the restore's task id it cannot be told from a VM created meanwhile."""
    what = f"proxmox check of scratch vm {vmid} on node {node}"
    try:
        present = vmid in node_vmids(api, node, what)
    except ProxmoxError as exc:
        return f"scratch vm {vmid} may be left on node {node} (the restore's answer was lost; {exc})"
    if not present:
        return None
    return (f"scratch vm {vmid} may be left on node {node} (the restore's answer was lost and vm {vmid} exists now; "
            f"not destroyed: check that it is the drill's restore and destroy it)")


def drill_vm(api: ProxmoxApi, asset: ProxmoxVmAsset, vm: Vm, now: datetime | None = None) -> DrillResult:
    """Restore the VM's newest good archive into a scratch VM on its node, compare the scratch VM's disks with the
    archive's config, time it against the RTO and destroy the scratch VM; a failure is a failed drill with its
    reason. No archive to drill is a ProxmoxError."""
    node = vm.node
    good = [a for a in backup_archives(api.client, node, asset.storage, vm.vmid) if a.verification != "failed"]
    if not good:
        raise ProxmoxError(f"asset {asset.name}: no good archive of vm {vm.vmid} on {node}/{asset.storage} to drill")
    archive = good[-1]
    started = now or datetime.now(UTC)
    clock = time.monotonic()
    what = f"proxmox restore drill of vm {vm.name} ({vm.vmid}) on node {node}"
    mismatches: list[str] = []
    scratch: int | None = None  # set once PVE has accepted the restore: from then on the vmid is ours to destroy
    unanswered: int | None = None  # a vmid whose restore PVE may have accepted, though its answer was lost
    body = ""
    try:
        expected = config_disks(str(_call(f"{what}: extractconfig", lambda: api.client.nodes(node).vzdump
                                          .extractconfig.get(volume=archive.volid))))
        vmid = scratch_vmid(api, vm.vmid)
        params = {"vmid": vmid, "archive": archive.volid, "unique": 1, "storage": api.scratch_storage}
        try:
            upid = _call(f"{what}: restore into vm {vmid}", lambda: api.client.nodes(node).qemu.post(**params))
        except ProxmoxNoAnswer:
            unanswered = vmid
            raise
        scratch = vmid  # not before: a vmid taken meanwhile by another VM is refused by PVE and never destroyed
        wait_task(api, node, str(upid), f"{what}: restore into vm {scratch}")
        restored = config_disks(_call(f"{what}: config of vm {scratch}",
                                      lambda: api.client.nodes(node).qemu(scratch).config.get()) or {})
        restore_s = time.monotonic() - clock
        for key in sorted(expected.keys() | restored.keys()):
            if expected.get(key) != restored.get(key):
                mismatches.append(f"disk {key}: {restored.get(key, 'missing')} in scratch vm {scratch}, "
                                  f"{expected.get(key, 'absent')} in the archive")
        body = (f"archive {archive.volid} restored into scratch vm {scratch} on node {node}; {len(restored)} disk(s) "
                f"compared with the archive's config")
    except ProxmoxError as exc:
        restore_s = time.monotonic() - clock
        mismatches.append(str(exc))
        body = f"restore failed: {exc}"
    if scratch is not None:
        try:
            destroy_scratch(api, node, scratch, vm.vmid)
            body += f"; scratch vm {scratch} destroyed"
        except ProxmoxError as exc:
            mismatches.append(f"scratch vm {scratch} left behind: {exc}")
    elif unanswered is not None and (left := unanswered_restore(api, node, unanswered)) is not None:
        mismatches.append(left)
        body += f"; {left}"
    return DrillResult(asset.name, asset.kind, archive.volid, started, restore_s, asset.rto, tuple(mismatches),
                       drill_detail(mismatches, restore_s, asset.rto, body))


@dataclass(frozen=True)
class PruneResult:
    """What the retention kept and removed of a VM's archives (volids), and whether they were deleted."""

    keep: tuple[str, ...]
    remove: tuple[str, ...]
    pruned: bool


def prune_vm(api: ProxmoxApi, vm: Vm, storage: str, retention: Retention, dry_run: bool = False) -> PruneResult:
    """Delete the VM's archives on ``storage`` that ``retention`` does not keep (restic's forget semantics, see
    tasks.backup.retention). The retention counts good archives only (a failed verification never takes a good
    archive's place); the newest good and protected archives are always kept, and failed ones newer than the newest
    good (left for inspection); ``dry_run`` only lists."""
    archives = backup_archives(api.client, vm.node, storage, vm.vmid)
    good = [i for i, a in enumerate(archives) if a.verification != "failed"]
    keep = {good[j] for j in kept([archives[i].created for i in good], retention)}
    keep |= {i for i, a in enumerate(archives) if a.protected} | ({good[-1]} if good else set())
    newest_good = archives[good[-1]].created if good else None
    keep |= {i for i, a in enumerate(archives)
             if a.verification == "failed" and (newest_good is None or a.created > newest_good)}
    remove = [a for i, a in enumerate(archives) if i not in keep]
    for archive in [] if dry_run else remove:
        what = f"proxmox prune of vm {vm.name} ({vm.vmid}) on node {vm.node}: delete {archive.volid}"
        volume = api.client.nodes(vm.node).storage(storage).content(quote(archive.volid, safe=""))  # volids hold '/'
        upid = _call(what, volume.delete)
        if upid:  # PVE answers a task id, or null when the deletion finished at once
            wait_task(api, vm.node, str(upid), what)
    return PruneResult(tuple(archives[i].volid for i in sorted(keep)), tuple(a.volid for a in remove),
                       pruned=not dry_run)


def proxmox_reader(client: ProxmoxAPI, inventory: Inventory) -> FreshnessReader:
    """The RPO check's freshness reader for ``proxmox-vm`` assets: the newest good archive of each VM, one storage
    listing per (node, storage); a listing that fails makes its assets Unreadable with the reason."""

    def read(assets: Sequence[Asset]) -> dict[str, Freshness]:
        vms = {vm.name: vm for vm in inventory.vms}
        out: dict[str, Freshness] = {}
        groups: dict[tuple[str, str], list[tuple[ProxmoxVmAsset, int]]] = {}
        for asset in assets:
            if not isinstance(asset, ProxmoxVmAsset):
                raise TypeError(f"proxmox_reader reads proxmox-vm assets, not {asset.kind} ({asset.name})")
            vm = vms.get(asset.vm)
            if vm is None:
                out[asset.name] = Unreadable(f"vm {asset.vm!r} of asset {asset.name} is not in the inventory")
                continue
            groups.setdefault((vm.node, asset.storage), []).append((asset, vm.vmid))
        for (node, storage), members in groups.items():
            try:
                archives = backup_archives(client, node, storage)
            except ProxmoxError as exc:
                out.update({asset.name: Unreadable(str(exc)) for asset, _ in members})
                continue
            for asset, vmid in members:
                good = [a.created for a in archives if a.vmid == vmid and a.verification != "failed"]
                out[asset.name] = max(good, default=None)
        return out

    return read

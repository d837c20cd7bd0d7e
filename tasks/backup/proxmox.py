"""Proxmox VE vzdump backups seen through the Proxmox API (``proxmoxer``): the archives on a storage and, from them,
the freshness of ``proxmox-vm`` assets for the RPO check.

A VM's archives are listed by ``GET /nodes/{node}/storage/{storage}/content?content=backup`` (pve-storage's
Content.pm): items ``{volid, vmid, ctime (epoch), size, format, verification{state}, ...}``; the VM's node and vmid
come from the inventory. One listing per (node, storage), whatever the number of VMs on it. An archive whose
verification failed is not a good backup and does not count. The API token authenticates every call
(``Authorization: PVEAPIToken=user@realm!name=secret``); it is never part of a message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from proxmoxer import ProxmoxAPI
from proxmoxer.core import AuthenticationError, ResourceException

from tasks.backup.registry import Asset, ProxmoxVmAsset
from tasks.backup.rpo import Freshness, FreshnessReader, Unreadable
from tasks.inventory.model import Inventory


class ProxmoxError(Exception):
    """A Proxmox API call that failed; one line, no token."""


@dataclass(frozen=True)
class VzdumpArchive:
    """One vzdump archive on a Proxmox storage."""

    volid: str
    vmid: int
    created: datetime
    size: int
    format: str
    verification: str | None = None  # ok / failed (PBS verify), None when never verified

    @classmethod
    def from_api(cls, item: dict[str, Any]) -> VzdumpArchive:
        verification = item.get("verification") or {}
        return cls(volid=str(item["volid"]), vmid=int(item["vmid"]),
                   created=datetime.fromtimestamp(int(item["ctime"]), UTC), size=int(item.get("size") or 0),
                   format=str(item.get("format", "")), verification=verification.get("state"))


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


def backup_archives(client: ProxmoxAPI, node: str, storage: str, vmid: int | None = None) -> list[VzdumpArchive]:
    """The vzdump archives on a node's storage (of one VM with ``vmid``), oldest first."""
    where = f"proxmox nodes/{node}/storage/{storage}/content"
    params: dict[str, Any] = {"content": "backup", **({"vmid": vmid} if vmid is not None else {})}
    try:
        items = client.nodes(node).storage(storage).content.get(**params)
    except (ResourceException, AuthenticationError, requests.RequestException) as exc:
        raise ProxmoxError(_reason(exc, where)) from None
    try:
        archives = [VzdumpArchive.from_api(item) for item in items or ()]
    except (KeyError, TypeError, ValueError) as exc:
        raise ProxmoxError(f"{where}: unexpected answer ({type(exc).__name__}: {exc})") from None
    return sorted(archives, key=lambda a: a.created)


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

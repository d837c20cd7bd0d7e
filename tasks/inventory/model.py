"""The inventory file, as typed models: hosts (Proxmox nodes and VMs) with their roles and how to reach them."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tasks.errors import did_you_mean

ROLES = ("proxmox", "rke2-server", "rke2-agent", "gpu", "storage", "nfs", "db", "minio", "prefect", "dask",
         "wazuh")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Ssh(_Model):
    """How to log in to a host: key authentication, host keys checked against known_hosts."""

    user: str = "root"
    port: int = Field(default=22, ge=1, le=65535)
    key: Path | None = None
    known_hosts: Path | None = None
    # Scans read and run as root through `sudo -n` (as Ansible's become): for a user other than root, on hosts
    # whose hardening refuses root logins. The user needs passwordless sudo.
    become: bool = False


class Host(_Model):
    """A machine astrolab scans, backs up or configures."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    address: str = ""
    roles: tuple[str, ...] = ()
    connection: Literal["ssh", "local", "mounted"] = "ssh"
    root: Path | None = None  # connection: mounted: where the host's root filesystem is mounted
    ssh: Ssh | None = None
    groups: tuple[str, ...] = ()

    @field_validator("roles")
    @classmethod
    def _known_roles(cls, roles: tuple[str, ...]) -> tuple[str, ...]:
        for role in roles:
            if role not in ROLES:
                raise ValueError(f"unknown role {role!r}{did_you_mean(role, ROLES)}")
        return roles

    @model_validator(mode="after")
    def _reachable(self) -> Host:
        if self.connection == "ssh" and not self.address:
            raise ValueError(f"host {self.name}: connection ssh needs an address")
        if self.connection == "mounted" and self.root is None:
            raise ValueError(f"host {self.name}: connection mounted needs root (where its filesystem is mounted)")
        return self


class Vm(Host):
    """A VM on a Proxmox node, cloned from a template."""

    node: str
    template: str
    vmid: int = Field(ge=100)
    cores: int = Field(default=2, ge=1)
    memory_mb: int = Field(default=4096, ge=256)
    disk_gb: int = Field(default=32, ge=1)  # the boot disk is grown to this, never shrunk (Proxmox cannot)
    disk: str = Field(default="scsi0", pattern=r"^(?:scsi|virtio|sata|ide)\d+$")  # the boot disk's slot


class Network(_Model):
    """A lab network (bridge or VLAN)."""

    name: str
    cidr: str
    vlan: int | None = Field(default=None, ge=1, le=4094)
    gateway: str | None = None
    bridge: str = "vmbr0"

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        ipaddress.ip_network(value, strict=True)
        return value


class VmTemplate(_Model):
    """A cloud-init template on a Proxmox node that VMs are cloned from."""

    name: str
    node: str
    vmid: int = Field(ge=100)
    image: str = ""


class Defaults(_Model):
    """What every host gets unless it says otherwise."""

    ssh: Ssh = Ssh()


class Inventory(_Model):
    """The whole lab: Proxmox nodes, VMs, networks, templates and where each service runs."""

    cluster: str = "astrolab"
    timezone: str = "UTC"
    defaults: Defaults = Defaults()
    nodes: tuple[Host, ...] = ()
    vms: tuple[Vm, ...] = ()
    networks: tuple[Network, ...] = ()
    vm_templates: tuple[VmTemplate, ...] = ()
    services: dict[str, tuple[str, ...]] = {}

    @property
    def hosts(self) -> tuple[Host, ...]:
        """Every host, nodes first, then VMs."""
        return (*self.nodes, *self.vms)

    def host(self, name: str) -> Host:
        """The host of that name."""
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(f"no host {name!r} in the inventory{did_you_mean(name, [h.name for h in self.hosts])}")

    def ssh_for(self, host: Host) -> Ssh:
        """The host's SSH settings, falling back to the defaults."""
        return host.ssh or self.defaults.ssh

    def select(self, names: list[str] | None = None, roles: list[str] | None = None) -> list[Host]:
        """Hosts by name and/or role (no filter: all); an unknown name is an error with a hint."""
        chosen = list(self.hosts)
        if names:
            wanted = [self.host(n) for n in names]
            chosen = [h for h in chosen if h in wanted]
        if roles:
            for role in roles:
                if role not in ROLES:
                    raise KeyError(f"unknown role {role!r}{did_you_mean(role, ROLES)}")
            chosen = [h for h in chosen if set(h.roles) & set(roles)]
        return chosen

    @model_validator(mode="after")
    def _consistent(self) -> Inventory:
        names = [h.name for h in self.hosts]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"host names must be unique: {', '.join(dupes)} appear more than once")
        nodes = {n.name for n in self.nodes}
        templates = {t.name for t in self.vm_templates}
        for vm in self.vms:
            if vm.node not in nodes:
                raise ValueError(f"vm {vm.name}: node {vm.node!r} is not in nodes"
                                 f"{did_you_mean(vm.node, sorted(nodes))}")
            if vm.template not in templates:
                raise ValueError(f"vm {vm.name}: template {vm.template!r} is not in vm_templates"
                                 f"{did_you_mean(vm.template, sorted(templates))}")
        for service, hosts in self.services.items():
            for name in hosts:
                if name not in names:
                    raise ValueError(f"services.{service}: host {name!r} is not in the inventory"
                                     f"{did_you_mean(name, names)}")
        return self

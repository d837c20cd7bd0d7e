"""The astrolab inventory rendered as an Ansible inventory (YAML): one host entry per inventory host with how to reach
it, one group per role and per inventory group. The astrolab file stays the only one an admin edits."""

from __future__ import annotations

import ipaddress
import shlex
from pathlib import Path
from typing import Any

import yaml

from tasks.inventory.model import Host, Inventory


def group_name(name: str) -> str:
    """An inventory role or group as an Ansible group name ('-' is not valid there: rke2-server -> rke2_server)."""
    return name.replace("-", "_").replace(".", "_")


def host_vars(inventory: Inventory, host: Host) -> dict[str, Any]:
    """How Ansible reaches one host: address, port, user, key, and the known_hosts its host key is checked against."""
    out: dict[str, Any] = {"astrolab_roles": list(host.roles)}
    if host.connection == "local":
        out["ansible_connection"] = "local"
        return out
    if host.connection == "mounted":  # a root filesystem mounted here: Ansible reaches it with the chroot plugin
        out.update(ansible_connection="community.general.chroot", ansible_host=str(host.root))
        return out
    ssh = inventory.ssh_for(host)
    out.update(ansible_connection="ssh", ansible_host=host.address, ansible_port=ssh.port, ansible_user=ssh.user)
    if ssh.key is not None:
        out["ansible_ssh_private_key_file"] = str(ssh.key)
    # Host keys are checked, never accepted on first sight; a known_hosts of the inventory replaces the user's own.
    # The host variable outranks ANSIBLE_HOST_KEY_CHECKING, which ansible-runner sets to False for every run it starts.
    out["ansible_host_key_checking"] = True
    args = ["-o", "StrictHostKeyChecking=yes"]
    if ssh.known_hosts is not None:
        args += ["-o", f"UserKnownHostsFile={ssh.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null"]
    out["ansible_ssh_common_args"] = shlex.join(args)
    return out


def vm_specs(inventory: Inventory) -> list[dict[str, Any]]:
    """The VMs as the proxmox_vms role takes them: node, vmid, the template's vmid and node, size, and the address
    with its network's prefix length and gateway (the network whose CIDR holds the address)."""
    templates = {t.name: t for t in inventory.vm_templates}
    specs = []
    for vm in inventory.vms:
        template = templates.get(vm.template)
        spec: dict[str, Any] = {"name": vm.name, "node": vm.node, "vmid": vm.vmid, "cores": vm.cores,
                                "memory_mb": vm.memory_mb, "disk_gb": vm.disk_gb, "disk": vm.disk,
                                "address": vm.address,
                                "template_vmid": template.vmid if template else None,
                                "template_node": template.node if template else vm.node}
        for network in inventory.networks:
            net = ipaddress.ip_network(network.cidr)
            if vm.address and ipaddress.ip_address(vm.address) in net:
                spec.update(prefix=net.prefixlen, gateway=network.gateway)
                break
        specs.append(spec)
    return specs


def ansible_inventory(inventory: Inventory) -> dict[str, Any]:
    """The inventory as Ansible's YAML inventory structure (the `all` group with hosts, vars and children)."""
    children: dict[str, dict[str, Any]] = {}
    for host in inventory.hosts:
        for name in (*host.roles, *host.groups):
            children.setdefault(group_name(name), {"hosts": {}})["hosts"][host.name] = {}
    return {"all": {
        "vars": {"astrolab_cluster": inventory.cluster, "astrolab_timezone": inventory.timezone,
                 "astrolab_vms": vm_specs(inventory)},
        "hosts": {host.name: host_vars(inventory, host) for host in inventory.hosts},
        "children": dict(sorted(children.items())),
    }}


def write_ansible_inventory(inventory: Inventory, path: Path) -> Path:
    """Write the rendered inventory to path (YAML) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(ansible_inventory(inventory), sort_keys=False))
    tmp.replace(path)
    return path

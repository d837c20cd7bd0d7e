"""The OpenSSH command line that reaches an inventory host: key authentication only, host keys checked against the
inventory's known_hosts and never accepted on first sight, no agent, no password prompt."""

from __future__ import annotations

from tasks.inventory.model import Host, Inventory


def ssh_argv(inventory: Inventory, host: Host) -> list[str]:
    """``ssh ... user@address`` for ``host``; append the remote command."""
    ssh = inventory.ssh_for(host)
    argv = ["ssh", "-p", str(ssh.port), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", "ConnectTimeout=30", "-o", "ForwardAgent=no", "-o", "IdentityAgent=none"]
    if ssh.key is not None:
        argv += ["-i", str(ssh.key.expanduser()), "-o", "IdentitiesOnly=yes"]
    if ssh.known_hosts is not None:
        argv += ["-o", f"UserKnownHostsFile={ssh.known_hosts.expanduser()}", "-o", "GlobalKnownHostsFile=/dev/null"]
    return [*argv, f"{ssh.user}@{host.address}", "--"]

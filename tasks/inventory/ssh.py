"""The OpenSSH command line that reaches an inventory host: key authentication only, host keys checked against the
inventory's known_hosts and never accepted on first sight, no agent, no password prompt. With the host's
``ssh.become`` the remote shell code runs as root through ``sudo -n`` (as the compliance scans do)."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from tasks.inventory.model import Host, Inventory

SUDO = ("sudo", "-n", "sh", "-c")


def ssh_argv(inventory: Inventory, host: Host) -> list[str]:
    """``ssh ... user@address --`` for ``host`` (then ``sudo -n sh -c`` with ``ssh.become``); give it to
    :func:`remote_command` with the shell code to run."""
    ssh = inventory.ssh_for(host)
    argv = ["ssh", "-p", str(ssh.port), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", "ConnectTimeout=30", "-o", "ForwardAgent=no", "-o", "IdentityAgent=none"]
    if ssh.key is not None:
        argv += ["-i", str(ssh.key.expanduser()), "-o", "IdentitiesOnly=yes"]
    if ssh.known_hosts is not None:
        argv += ["-o", f"UserKnownHostsFile={ssh.known_hosts.expanduser()}", "-o", "GlobalKnownHostsFile=/dev/null"]
    return [*argv, f"{ssh.user}@{host.address}", "--", *(SUDO if ssh.become else ())]


def remote_command(via: Sequence[str], script: str) -> list[str]:
    """The command line that runs shell code ``script`` through ``via`` (:func:`ssh_argv`): as it is for the login
    shell, or as one quoted word after ``sudo -n sh -c`` (ssh joins its arguments into one line for the remote
    shell)."""
    return [*via, shlex.quote(script) if tuple(via[-len(SUDO):]) == SUDO else script]


def login_of(via: Sequence[str]) -> str:
    """The ``user@address`` that ``via`` logs in as (for messages)."""
    return via[list(via).index("--") - 1] if "--" in via else "the host"

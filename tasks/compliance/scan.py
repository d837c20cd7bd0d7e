"""Scanning one host: open its target, evaluate every policy, collect its installed packages, close.

A host that cannot be reached is reported as unreachable, never as failed checks. Within one scan the same file
or command is read once (many checks read sshd -T or sshd_config): the target is wrapped in a per-scan cache.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tasks.compliance.evaluate import DEFAULT_COMMAND_TIMEOUT, PolicyResult, evaluate_policy
from tasks.compliance.policy import Policy
from tasks.compliance.target import CommandResult, LocalTarget, Target, TargetError
from tasks.inventory.model import Host, Ssh

DPKG_QUERY = "dpkg-query -W -f='${Package}\\t${Version}\\n'"  # quoted alike for shlex and a login shell


class CachedTarget:
    """A target whose answers are remembered for the length of one scan (the host is not expected to change)."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.name = target.name
        self._cache: dict[tuple[str, ...], object] = {}

    def _get(self, key: tuple[str, ...], fetch: Callable[[], object]) -> object:
        if key not in self._cache:
            self._cache[key] = fetch()
        return self._cache[key]

    def read_lines(self, path: str) -> list[str] | None:
        """See Target.read_lines."""
        return self._get(("read", path), lambda: self.target.read_lines(path))  # type: ignore[return-value]

    def is_file(self, path: str) -> bool:
        """See Target.is_file."""
        return bool(self._get(("is_file", path), lambda: self.target.is_file(path)))

    def is_dir(self, path: str) -> bool:
        """See Target.is_dir."""
        return bool(self._get(("is_dir", path), lambda: self.target.is_dir(path)))

    def is_symlink(self, path: str) -> bool:
        """See Target.is_symlink."""
        return bool(self._get(("is_symlink", path), lambda: self.target.is_symlink(path)))

    def exists(self, path: str) -> bool:
        """See Target.exists."""
        return bool(self._get(("exists", path), lambda: self.target.exists(path)))

    def list_dir(self, path: str) -> list[str] | None:
        """See Target.list_dir."""
        return self._get(("list", path), lambda: self.target.list_dir(path))  # type: ignore[return-value]

    def processes(self) -> list[str]:
        """See Target.processes."""
        return self._get(("processes",), self.target.processes)  # type: ignore[return-value]

    def run(self, command: str, timeout: float) -> CommandResult | None:
        """See Target.run (a timed-out command is not cached: a later check may give it its own time)."""
        key = ("run", command)
        if key in self._cache:
            return self._cache[key]  # type: ignore[return-value]
        result = self.target.run(command, timeout)
        if result is None or not result.timed_out:
            self._cache[key] = result
        return result


@dataclass
class HostScan:
    """One host's scan: per-policy results, its packages, or why it could not be scanned."""

    host: str
    status: str  # scanned | unreachable | error
    reason: str = ""
    policies: list[PolicyResult] = field(default_factory=list)
    packages: list[tuple[str, str]] = field(default_factory=list)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None
    seconds: float = 0.0
    scan_id: str = field(default_factory=lambda: uuid.uuid4().hex)


def open_target(host: Host, ssh: Ssh, connect_timeout: float = 10.0) -> Target:
    """The target of an inventory host: this machine, a mounted root filesystem, or an SSH login."""
    if host.connection == "local":
        return LocalTarget(name=host.name)
    if host.connection == "mounted":
        assert host.root is not None  # the inventory model requires it
        return LocalTarget(Path(host.root), name=host.name)
    from tasks.compliance.ssh_target import connect_host  # asyncssh is only needed for SSH hosts

    return connect_host(host, ssh, connect_timeout)


def installed_packages(target: Target, timeout: float = DEFAULT_COMMAND_TIMEOUT) -> list[tuple[str, str]]:
    """(package, version) of every installed Debian package: dpkg's status file on a mounted root, else
    dpkg-query; empty where neither answers (not a Debian-family host)."""
    if isinstance(target, LocalTarget) and not target.is_host:
        return _dpkg_status(target.read_lines("/var/lib/dpkg/status") or [])
    done = target.run(DPKG_QUERY, timeout)
    if done is None or done.exit_code != 0:
        return []
    return sorted(tuple(line.split("\t", 1)) for line in done.stdout if "\t" in line)  # type: ignore[misc]


def _dpkg_status(lines: list[str]) -> list[tuple[str, str]]:
    packages, name, version, installed = [], "", "", False
    for line in [*lines, ""]:
        if not line.strip():
            if name and installed:
                packages.append((name, version))
            name, version, installed = "", "", False
        elif line.startswith("Package: "):
            name = line[len("Package: "):].strip()
        elif line.startswith("Version: "):
            version = line[len("Version: "):].strip()
        elif line.startswith("Status: "):
            installed = line.rstrip().endswith(" installed")
    return sorted(packages)


def scan_target(target: Target, policies: Sequence[Policy], command_timeout: float = DEFAULT_COMMAND_TIMEOUT,
                with_packages: bool = True) -> HostScan:
    """Evaluate every policy on an open target (cached for this scan) and collect its packages."""
    scan = HostScan(target.name, "scanned")
    start = time.perf_counter()
    cached = CachedTarget(target)
    try:
        scan.policies = [evaluate_policy(p, cached, command_timeout=command_timeout) for p in policies]
        scan.packages = installed_packages(target, command_timeout) if with_packages else []
    except TargetError as exc:  # the connection went away in the middle of the scan
        scan.status, scan.reason, scan.policies = "unreachable", str(exc), []
    scan.finished_at = datetime.now(UTC)
    scan.seconds = time.perf_counter() - start
    return scan


def scan_host(host: Host, ssh: Ssh, policies: Sequence[Policy], command_timeout: float = DEFAULT_COMMAND_TIMEOUT,
              connect_timeout: float = 10.0) -> HostScan:
    """Scan one inventory host; unreachable (or a refused host key) is a status with its reason, not an error."""
    start = time.perf_counter()
    try:
        target = open_target(host, ssh, connect_timeout)
    except TargetError as exc:
        return HostScan(host.name, "unreachable", str(exc), finished_at=datetime.now(UTC),
                        seconds=time.perf_counter() - start)
    try:
        target.name = host.name
        return scan_target(target, policies, command_timeout)
    finally:
        close = getattr(target, "close", None)
        if close is not None:
            close()

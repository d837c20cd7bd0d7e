"""What the SCA evaluator may ask of a host, and the local/mounted-root implementation. Read-only by design."""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Protocol, runtime_checkable

_MAX_SYMLINKS = 40


@dataclass(frozen=True)
class CommandResult:
    """A finished command: its output lines (stdout, then stderr) and exit status."""

    stdout: list[str]
    stderr: list[str] = field(default_factory=list)
    exit_code: int = 0
    timed_out: bool = False


class TargetError(OSError):
    """The target could not answer (permission denied, unreadable file, commands not available)."""


@runtime_checkable
class Target(Protocol):
    """A host seen by the evaluator; paths are absolute paths on that host."""

    name: str

    def read_lines(self, path: str) -> list[str] | None:
        """Lines of a regular file without line endings; None when it does not exist; TargetError if unreadable."""
        ...

    def is_file(self, path: str) -> bool:
        """True when path (symlinks followed) is a regular file."""
        ...

    def is_dir(self, path: str) -> bool:
        """True when path (symlinks followed) is a directory."""
        ...

    def is_symlink(self, path: str) -> bool:
        """True when path itself is a symbolic link."""
        ...

    def exists(self, path: str) -> bool:
        """True when path (symlinks followed) exists."""
        ...

    def list_dir(self, path: str) -> list[str] | None:
        """Entry names of a directory, sorted; None when it is not a directory; TargetError if unreadable."""
        ...

    def processes(self) -> list[str]:
        """Process names and full command lines of running processes."""
        ...

    def run(self, command: str, timeout: float) -> CommandResult | None:
        """Run a command (no shell); None when it cannot be found or run; TargetError when commands are unavailable."""
        ...


class LocalTarget:
    """This machine (root "/") or a mounted root filesystem (any other root: files and /proc read under it).

    Symlinks are resolved inside the root, so an absolute link in a mounted image never escapes to the host.
    Commands run only when root is "/".
    """

    def __init__(self, root: Path = Path("/"), *, name: str | None = None) -> None:
        self.root = Path(root).resolve()
        self.name = name or ("localhost" if self.is_host else str(self.root))

    @property
    def is_host(self) -> bool:
        """True when this target is the running machine itself."""
        return self.root == Path("/")

    def _resolve(self, path: str) -> Path:
        """Map a target path to a host path, following symlinks without leaving the root."""
        pending = list(PurePosixPath("/", path).parts[1:])
        resolved: list[str] = []
        hops = 0
        while pending:
            part = pending.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                if resolved:
                    resolved.pop()
                continue
            candidate = self.root.joinpath(*resolved, part)
            if candidate.is_symlink():
                hops += 1
                if hops > _MAX_SYMLINKS:
                    raise TargetError(f"too many symlinks resolving {path!r} on {self.name}")
                link = os.readlink(candidate)
                if link.startswith("/"):
                    resolved = []
                pending = list(PurePosixPath(link).parts) + pending
                if link.startswith("/"):
                    pending = pending[1:]
                continue
            resolved.append(part)
        return self.root.joinpath(*resolved)

    def read_lines(self, path: str) -> list[str] | None:
        """See Target.read_lines."""
        host = self._resolve(path)
        if not host.exists():
            return None
        if not host.is_file():
            raise TargetError(f"{path} on {self.name} is not a regular file")
        try:
            return host.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError as exc:
            raise TargetError(f"cannot read {path} on {self.name}: {exc.strerror}") from None

    def is_file(self, path: str) -> bool:
        """See Target.is_file."""
        return self._resolve(path).is_file()

    def is_dir(self, path: str) -> bool:
        """See Target.is_dir."""
        return self._resolve(path).is_dir()

    def is_symlink(self, path: str) -> bool:
        """See Target.is_symlink."""
        parent = self._resolve(str(PurePosixPath("/", path).parent))
        return parent.joinpath(PurePosixPath(path).name).is_symlink()

    def exists(self, path: str) -> bool:
        """See Target.exists."""
        return self._resolve(path).exists()

    def list_dir(self, path: str) -> list[str] | None:
        """See Target.list_dir."""
        host = self._resolve(path)
        if not host.is_dir():
            return None
        try:
            return sorted(entry.name for entry in host.iterdir())
        except OSError as exc:
            raise TargetError(f"cannot list {path} on {self.name}: {exc.strerror}") from None

    def processes(self) -> list[str]:
        """See Target.processes (read from /proc under the root)."""
        proc = self.root / "proc"
        found: list[str] = []
        if not proc.is_dir():
            return found
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                comm = (entry / "comm").read_text(errors="replace").strip()
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                continue  # the process ended, or we may not look
            found.extend(item for item in (comm, cmdline) if item)
        return found

    def run(self, command: str, timeout: float) -> CommandResult | None:
        """See Target.run."""
        if not self.is_host:
            raise TargetError(f"commands cannot run on mounted root {self.root}")
        try:
            argv = shlex.split(command)
        except ValueError:
            return None
        if not argv:
            return None
        try:
            done = subprocess.run(
                argv, check=False, capture_output=True, text=True, errors="replace", timeout=timeout,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            return CommandResult([], [], -1, timed_out=True)
        except OSError:
            return None
        return CommandResult(done.stdout.splitlines(), done.stderr.splitlines(), done.returncode)

"""A host scanned over SSH: one asyncssh connection per target, host keys checked against known_hosts. Read-only.

The evaluator is synchronous; each SshTarget drives its connection from a private event loop in a background thread
(``asyncio.run_coroutine_threadsafe``) and keeps it open until ``close()`` (or the end of a ``with`` block).

- Authentication: public key only (the inventory's key, else the default ~/.ssh/id_* files); no password, no
  keyboard-interactive, no agent, no agent forwarding; ~/.ssh/config is not read. Encrypted keys are not supported.
- Host keys: checked against known_hosts (default ~/.ssh/known_hosts) and never accepted or written: an unknown or
  changed key raises HostKeyError, which says how to add the key once its fingerprint is verified.
- Files are read through SFTP (opened read-only), processes from /proc by one remote command, SCA commands run as
  given. Nothing is ever written to the host: no SFTP writes, no temporary files.
- SCA commands: the SSH server runs the command string through the login shell of the remote user (``$SHELL -c``),
  so it is passed exactly as the policy gives it, with nothing quoted or wrapped. A command that the shell cannot
  find or run (exit status 127 or 126) yields None, as LocalTarget does; a program that itself exits 126 or 127 is
  indistinguishable from that over SSH. A command past its timeout is sent a KILL signal request and its channel is
  closed; OpenSSH honours signal requests only for non-root logins, so as root the command runs on until it ends.
- asyncssh, unlike OpenSSH, also trusts a known_hosts entry for the bare host (port 22) on another port.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import posixpath
import shlex
import stat
import threading
from collections.abc import Coroutine
from contextlib import suppress
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, cast

import asyncssh

from tasks.compliance.target import CommandResult, TargetError
from tasks.inventory.model import Host, Ssh

DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_OPERATION_TIMEOUT = 60.0  # one SFTP request or the process listing; SCA commands have their own timeout
DEFAULT_KNOWN_HOSTS = Path("~/.ssh/known_hosts")
_READ_CHUNK = 1 << 16
_NOT_RUNNABLE = (126, 127)  # the shell's "cannot execute" and "command not found"

# pid, comm and cmdline (NULs as spaces) of every process, NUL-separated; only /proc is read. Run by sh whatever the
# user's login shell is; `read` is a builtin, so one tr per process is the only fork.
_PROCESSES = (
    "sh -c 'for p in /proc/[0-9]*; do "
    'IFS= read -r c < "$p/comm" 2>/dev/null || continue; '
    'a=$(tr "\\000" " " < "$p/cmdline" 2>/dev/null) || continue; '
    'printf "%s\\000%s\\000%s\\000" "${p#/proc/}" "$c" "$a"; '
    "done'"
)

T = TypeVar("T")


class HostKeyError(TargetError):
    """The host's key is not in known_hosts, or differs from the one there: nothing was sent to the host."""


class UnreachableError(TargetError):
    """No SSH connection could be opened (refused, timed out, no route, unknown name)."""


class _Client(asyncssh.SSHClient):
    """Remembers the host key the server presented when known_hosts did not trust it, and refuses it."""

    def __init__(self) -> None:
        self.presented: asyncssh.SSHKey | None = None

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        self.presented = key
        return False


class SshTarget:
    """A host reached over SSH; see the module docstring. Connects on construction; use as a context manager."""

    def __init__(
        self,
        address: str,
        *,
        user: str = "root",
        port: int = 22,
        key: Path | None = None,
        known_hosts: Path | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        operation_timeout: float = DEFAULT_OPERATION_TIMEOUT,
        name: str | None = None,
    ) -> None:
        self.address = address
        self.user = user
        self.port = port
        self.key = Path(key).expanduser() if key is not None else None
        self.known_hosts = Path(known_hosts or DEFAULT_KNOWN_HOSTS).expanduser()
        self.connect_timeout = connect_timeout
        self.operation_timeout = operation_timeout
        self.name = name or address
        self._closed = False
        self._sftp: asyncssh.SFTPClient | None = None
        self._sftp_problem = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"ssh-{self.name}", daemon=True)
        self._thread.start()
        try:
            self._conn = self._call(self._connect(), connect_timeout + 5)
        except BaseException:
            self._stop_loop()
            raise

    @property
    def where(self) -> str:
        """host:port as it appears in messages ([addr]:port for IPv6)."""
        return f"[{self.address}]:{self.port}" if ":" in self.address else f"{self.address}:{self.port}"

    # -- the event loop ------------------------------------------------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run a coroutine on the private loop and wait for it; asyncssh and OS errors become TargetError."""
        if self._closed:
            coro.close()
            raise TargetError(f"the SSH connection to {self.name} ({self.where}) is closed")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TargetError(f"{self.name} ({self.where}) did not answer within {timeout:g}s") from None
        except TargetError:
            raise
        except asyncssh.Error as exc:
            raise TargetError(f"SSH to {self.name} ({self.where}) failed: {exc.reason}") from None
        except OSError as exc:
            raise TargetError(f"SSH to {self.name} ({self.where}) failed: {exc.strerror or exc}") from None

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()

    def close(self) -> None:
        """Close the SFTP session and the connection, and stop the loop; safe to call twice."""
        if self._closed:
            return
        with suppress(TargetError):
            self._call(self._aclose(), 5)
        self._closed = True
        self._stop_loop()

    async def _aclose(self) -> None:
        if self._sftp is not None:
            self._sftp.exit()
            with suppress(asyncssh.Error, OSError):
                await self._sftp.wait_closed()
        self._conn.close()
        with suppress(asyncssh.Error, OSError):
            await self._conn.wait_closed()

    def __enter__(self) -> SshTarget:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    # -- connecting ----------------------------------------------------------------------------------------------

    def _known_keys(self) -> tuple[asyncssh.SSHKnownHosts, bool]:
        """known_hosts as asyncssh reads it (a missing file trusts nothing), and whether it lists this host."""
        try:
            text = self.known_hosts.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            text = ""
        except OSError as exc:
            raise TargetError(f"cannot read known_hosts {self.known_hosts}: {exc.strerror}") from None
        try:
            # a comment keeps the text non-empty: asyncssh treats empty known_hosts as "use ~/.ssh/known_hosts"
            known = asyncssh.import_known_hosts(text + "\n# astrolab\n")
        except ValueError as exc:
            raise TargetError(f"known_hosts {self.known_hosts} is not valid: {exc}") from None
        host_keys, ca_keys, *_ = known.match(self.address, self.address, self.port if self.port != 22 else None)
        return known, bool(host_keys or ca_keys)

    def _host_key_error(self, client: _Client, listed: bool) -> HostKeyError:
        seen = ""
        if client.presented is not None:
            seen = f" ({client.presented.get_algorithm()} {client.presented.get_fingerprint('sha256')})"
        add = f"ssh-keyscan -p {self.port} {self.address} >> {self.known_hosts}"
        if listed:
            return HostKeyError(
                f"host key of {self.name} ({self.where}){seen} does not match {self.known_hosts}: refusing to connect; "
                f"if the host was reinstalled, verify the new fingerprint out of band, remove the old entry "
                f"(ssh-keygen -R '[{self.address}]:{self.port}' -f {self.known_hosts}), then: {add}"
            )
        return HostKeyError(
            f"host key of {self.name} ({self.where}){seen} is not in {self.known_hosts}: refusing to connect; "
            f"verify the fingerprint out of band, then: {add}"
        )

    async def _connect(self) -> asyncssh.SSHClientConnection:
        known, listed = self._known_keys()
        client = _Client()
        if self.key is not None and not self.key.is_file():
            raise TargetError(f"SSH key {self.key} for {self.name} does not exist")
        keys: Any = [str(self.key)] if self.key is not None else ()  # (): the default ~/.ssh/id_* files
        try:
            conn = await asyncssh.connect(
                self.address, self.port, username=self.user, client_factory=lambda: client,
                known_hosts=known, client_keys=keys, agent_path=None, agent_forwarding=False, config=None,
                password_auth=False, kbdint_auth=False, gss_auth=False, host_based_auth=False,
                connect_timeout=self.connect_timeout,
            )  # fmt: skip
        except asyncssh.HostKeyNotVerifiable:
            raise self._host_key_error(client, listed) from None
        except asyncssh.KeyExchangeFailed as exc:
            if listed:  # the server offers none of the key types known_hosts lists for it
                raise self._host_key_error(client, listed) from None
            raise TargetError(f"SSH key exchange with {self.name} ({self.where}) failed: {exc.reason}") from None
        except asyncssh.PermissionDenied:
            which = str(self.key) if self.key is not None else "the default ~/.ssh/id_* keys"
            raise TargetError(
                f"{self.user}@{self.where} ({self.name}) refused public key authentication with {which}"
            ) from None
        except asyncssh.KeyImportError as exc:
            raise TargetError(f"cannot load SSH key {self.key} for {self.name}: {exc}") from None
        except TimeoutError:
            raise UnreachableError(
                f"cannot reach {self.name} ({self.where}): timed out after {self.connect_timeout:g}s"
            ) from None
        except ConnectionRefusedError:
            raise UnreachableError(f"cannot reach {self.name} ({self.where}): connection refused") from None
        except asyncssh.ConnectionLost as exc:
            raise UnreachableError(f"cannot reach {self.name} ({self.where}): {exc.reason}") from None
        except asyncssh.Error as exc:
            raise TargetError(f"SSH to {self.name} ({self.where}) failed: {exc.reason}") from None
        except OSError as exc:
            raise UnreachableError(f"cannot reach {self.name} ({self.where}): {exc.strerror or exc}") from None
        try:
            self._sftp = await conn.start_sftp_client(path_errors="surrogateescape")
        except (asyncssh.Error, OSError) as exc:  # file rules become not applicable; commands still run
            self._sftp_problem = str(getattr(exc, "reason", exc))
        return conn

    # -- files (SFTP) --------------------------------------------------------------------------------------------

    def _sftp_client(self) -> asyncssh.SFTPClient:
        if self._sftp is None:
            raise TargetError(f"SFTP is not available on {self.name} ({self.where}): {self._sftp_problem}")
        return self._sftp

    @staticmethod
    def _absolute(path: str) -> str:
        return posixpath.join("/", path)  # SFTP resolves relative paths from the home directory

    async def _stat(self, path: str, *, follow: bool = True) -> asyncssh.SFTPAttrs | None:
        sftp = self._sftp_client()
        try:
            return await (sftp.stat(path) if follow else sftp.lstat(path))
        except asyncssh.SFTPNoSuchFile:
            return None
        except asyncssh.SFTPError as exc:
            raise TargetError(f"cannot stat {path} on {self.name}: {exc.reason}") from None

    def _mode(self, path: str, *, follow: bool = True) -> int | None:
        attrs = self._call(self._stat(self._absolute(path), follow=follow), self.operation_timeout)
        return attrs.permissions if attrs is not None else None

    async def _read(self, path: str) -> bytes | None:
        attrs = await self._stat(path)
        if attrs is None:
            return None
        if not stat.S_ISREG(attrs.permissions or 0):
            raise TargetError(f"{path} on {self.name} is not a regular file")
        chunks: list[bytes] = []
        try:
            async with self._sftp_client().open(path, "rb") as remote:
                # read to EOF in chunks: files under /proc and /sys report size 0
                while chunk := await remote.read(_READ_CHUNK):
                    chunks.append(cast(bytes, chunk))
        except asyncssh.SFTPNoSuchFile:
            return None
        except asyncssh.SFTPError as exc:
            raise TargetError(f"cannot read {path} on {self.name}: {exc.reason}") from None
        return b"".join(chunks)

    def read_lines(self, path: str) -> list[str] | None:
        """See Target.read_lines."""
        data = self._call(self._read(self._absolute(path)), self.operation_timeout)
        return None if data is None else data.decode("utf-8", errors="replace").splitlines()

    def is_file(self, path: str) -> bool:
        """See Target.is_file."""
        return stat.S_ISREG(self._mode(path) or 0)

    def is_dir(self, path: str) -> bool:
        """See Target.is_dir."""
        return stat.S_ISDIR(self._mode(path) or 0)

    def is_symlink(self, path: str) -> bool:
        """See Target.is_symlink."""
        return stat.S_ISLNK(self._mode(path, follow=False) or 0)

    def exists(self, path: str) -> bool:
        """See Target.exists."""
        return self._mode(path) is not None

    async def _list(self, path: str) -> list[str] | None:
        attrs = await self._stat(path)
        if attrs is None or not stat.S_ISDIR(attrs.permissions or 0):
            return None
        try:
            names = await self._sftp_client().listdir(path)
        except asyncssh.SFTPError as exc:
            raise TargetError(f"cannot list {path} on {self.name}: {exc.reason}") from None
        return sorted(str(name) for name in names if name not in (".", ".."))

    def list_dir(self, path: str) -> list[str] | None:
        """See Target.list_dir."""
        return self._call(self._list(self._absolute(path)), self.operation_timeout)

    # -- processes and commands ----------------------------------------------------------------------------------

    async def _exec(self, command: str, timeout: float) -> asyncssh.SSHCompletedProcess | None:
        """Run a command on the host; None when it ran past the timeout (then it is killed and its channel closed)."""
        process = await self._conn.create_process(command, stdin=asyncssh.DEVNULL, encoding="utf-8", errors="replace")
        try:
            return await process.wait(timeout=timeout)
        except asyncssh.TimeoutError:
            with suppress(asyncssh.Error, OSError):
                process.kill()  # a "signal" request; servers that ignore it see the channel close
            process.close()
            return None

    def processes(self) -> list[str]:
        """See Target.processes (comm and cmdline of every process under the host's /proc, as LocalTarget)."""
        done = self._call(self._exec(_PROCESSES, self.operation_timeout), self.operation_timeout + 5)
        if done is None or done.returncode != 0:
            why = "timed out" if done is None else f"exit {done.returncode}: {str(done.stderr or '').strip()[:200]}"
            raise TargetError(f"cannot list processes on {self.name} ({why})")
        fields = str(done.stdout or "").split("\0")
        rows = sorted(zip(fields[0::3], fields[1::3], fields[2::3]), key=lambda row: int(row[0]))  # /proc's order
        found: list[str] = []
        for _pid, comm, cmdline in rows:
            found.extend(item for item in (comm.strip(), cmdline.strip()) if item)
        return found

    def run(self, command: str, timeout: float) -> CommandResult | None:
        """See Target.run; the command string goes to the SSH server as is (it runs it with the user's shell)."""
        try:
            argv = shlex.split(command)
        except ValueError:
            return None  # unbalanced quotes: LocalTarget cannot run it either
        if not argv:
            return None
        done = self._call(self._exec(command, timeout), timeout + self.operation_timeout)
        if done is None:
            return CommandResult([], [], -1, timed_out=True)
        code = done.returncode if done.returncode is not None else -1
        if code in _NOT_RUNNABLE:
            return None
        return CommandResult(str(done.stdout or "").splitlines(), str(done.stderr or "").splitlines(), code)


def connect_host(host: Host, ssh: Ssh, timeout: float = DEFAULT_CONNECT_TIMEOUT) -> SshTarget:
    """Open an SshTarget for an inventory host with its SSH settings (Inventory.ssh_for(host))."""
    if host.connection != "ssh":
        raise ValueError(f"host {host.name} has connection {host.connection!r}, not ssh")
    return SshTarget(
        host.address, user=ssh.user, port=ssh.port, key=ssh.key, known_hosts=ssh.known_hosts,
        connect_timeout=timeout, name=host.name,
    )  # fmt: skip

"""A host scanned over SSH: one asyncssh connection per target, host keys checked against known_hosts. Read-only.

The evaluator is synchronous; each SshTarget drives its connection from a private event loop in a background thread
(``asyncio.run_coroutine_threadsafe``) and keeps it open until ``close()`` (or the end of a ``with`` block).

- Authentication: public key only (the inventory's key, else the default ~/.ssh/id_* files); no password, no
  keyboard-interactive, no agent, no agent forwarding; ~/.ssh/config is not read. Encrypted keys are not supported.
- Host keys: checked against known_hosts (default ~/.ssh/known_hosts) and never accepted or written: an unknown or
  changed key raises HostKeyError, which says how to add the key once its fingerprint is verified.
- Files are read through SFTP (opened read-only), processes from /proc by one remote command, SCA commands run as
  given. Nothing is ever written to the host: no SFTP writes, no temporary files, no fifos.
- SCA commands (and the process listing) go to ONE long-lived ``/bin/sh`` per connection, started on first use as
  the command of one SSH channel (so the remote user's login shell, and its ~/.bashrc, start once, not once per
  command) and fed over stdin. Each command runs as ``timeout -k 1 SECS sh -c -- 'COMMAND' </dev/null``, the string
  single-quoted exactly as the policy gives it, stdout and stderr on the channel's two streams; the shell then
  prints, on both, an end marker with the exit status behind a random nonce (new for each shell), which command
  output cannot know. A command that sh cannot find or run (exit status 127 or 126) yields None, as LocalTarget
  does; a program that itself exits 126 or 127 is indistinguishable from that. Exit status 124 (or 137 after the
  KILL) once the timeout has passed is a timeout: the command and its process group are really killed, as root
  too. A command killed by a signal N reads as exit status 128+N. If the shell ends or its channel breaks, it is
  started again and the command sent once more; a second failure raises TargetError (the next call starts afresh).
- A host without a usable ``timeout`` (checked once when the shell starts) gets one SSH channel per command
  instead, run by the login shell (``$SHELL -c``): past its timeout a command is sent a KILL signal request and its
  channel is closed; OpenSSH honours signal requests only for non-root logins, so as root it runs on until it ends.
- asyncssh, unlike OpenSSH, also trusts a known_hosts entry for the bare host (port 22) on another port.
- ``become=True`` (the inventory's ``ssh.become``): a user other than root scans as root through ``sudo -n``, which
  is checked once on connecting (a password prompt is an error, never answered). The SFTP server is then started
  through sudo on a command channel, the long-lived shell is ``sudo -n /bin/sh``, and per-command channels run
  ``sudo -n sh -c``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import posixpath
import secrets
import shlex
import stat
import threading
import time
from collections.abc import Coroutine
from contextlib import suppress
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, TypeVar, cast

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

# The long-lived shell: how it is started, the `timeout` program it wraps each command in, how long after TERM that
# sends KILL, and how long past a command's timeout (and the KILL) the end marker may still take before the shell is
# deemed stuck (then it is closed and the command reported timed out).
_SHELL = "exec /bin/sh"
_SUDO = "sudo -n"
# The SFTP server where Debian, Red Hat and Arch install it, run as root (become); 127 when there is none.
_SFTP_SERVER = ("sh -c 'for p in /usr/lib/openssh/sftp-server /usr/libexec/openssh/sftp-server "
                "/usr/lib/ssh/sftp-server /usr/libexec/sftp-server; do [ -x \"$p\" ] && exec \"$p\"; done; "
                "echo no sftp-server >&2; exit 127'")
_TIMEOUT = "timeout"
_KILL_AFTER = 1
_GRACE = 5.0
_TIMED_OUT = (124, 128 + 9)  # timeout's own status when it fired; KILL's status after -k

T = TypeVar("T")


def _quote(text: str) -> str:
    """text as one single-quoted sh word (a quote inside becomes '\\'')."""
    return "'" + text.replace("'", "'\\''") + "'"


class _ShellBroken(Exception):
    """The long-lived shell ended, or its channel broke, before it printed the end marker."""


class _ShellStuck(Exception):
    """The end marker did not come within the command's timeout plus the KILL and the grace period."""


class _Done(NamedTuple):
    stdout: str
    stderr: str
    exit_code: int
    timed_out: bool = False


class _Shell:
    """One /bin/sh on the host, reading commands from its channel's stdin; every coroutine runs on the target's loop.

    After each command the shell prints "\\n<nonce> <exit status>\\n" on stdout and on stderr: what comes before it on a
    stream is the command's output (the leading newline is the marker's, so output without a final newline keeps its
    last line)."""

    def __init__(self, process: asyncssh.SSHClientProcess[bytes]) -> None:
        self.process = process
        self.nonce = "astrolab-" + secrets.token_hex(16)
        self.pid = 0  # the shell's process id on the host ($$)
        self.has_timeout = False
        self.closed = False

    async def start(self, wait: float) -> None:
        """Wait out the login shell's start, note the pid, and check that `timeout -k ... sh -c --` works there."""
        probe = f"printf '%s\\n' \"$$\"; {_TIMEOUT} -k {_KILL_AFTER} 9.5 sh -c -- 'exit 3' </dev/null >/dev/null 2>&1"
        stdout, _stderr, status = await self.send(probe, wait)
        lines = stdout.splitlines()  # whatever the login shell printed first, then the pid
        try:
            self.pid = int(lines[-1])
        except (IndexError, ValueError):
            raise _ShellBroken(f"the shell started with unexpected output {stdout[-80:]!r}") from None
        self.has_timeout = status == 3

    async def send(self, body: str, wait: float) -> tuple[str, str, int]:
        """Run shell code `body` and return its stdout, stderr and exit status."""
        marker = f"\n{self.nonce} "
        end = f"printf '\\n%s %d\\n' {self.nonce} \"$s\""
        script = f"{body}\ns=$?; {end}; {end} >&2\n"
        try:
            self.process.stdin.write(script.encode("utf-8", "surrogateescape"))
            await self.process.stdin.drain()
            (stdout, out_status), (stderr, err_status) = await asyncio.wait_for(
                asyncio.gather(
                    self._read_to(self.process.stdout, marker.encode()),
                    self._read_to(self.process.stderr, marker.encode()),
                ),
                wait,
            )
        except TimeoutError:
            raise _ShellStuck() from None
        except (asyncssh.Error, OSError, asyncio.IncompleteReadError) as exc:
            raise _ShellBroken(str(getattr(exc, "reason", "") or exc or type(exc).__name__)) from None
        if out_status != err_status:
            raise _ShellBroken(f"end markers disagree ({out_status!r}, {err_status!r})")
        try:
            status = int(out_status)
        except ValueError:
            raise _ShellBroken(f"unreadable exit status {out_status[:40]!r}") from None
        return stdout.decode("utf-8", "replace"), stderr.decode("utf-8", "replace"), status

    @staticmethod
    async def _read_to(reader: asyncssh.SSHReader[bytes], marker: bytes) -> tuple[bytes, bytes]:
        """The stream's bytes up to the end marker, and the marker's exit status; _ShellBroken at end of stream."""
        data = bytearray()
        start = 0
        while True:
            at = data.find(marker, start)
            if at >= 0:
                end = data.find(b"\n", at + len(marker))
                if end >= 0:  # anything after the marker is stray output of a background process: dropped
                    return bytes(data[:at]), bytes(data[at + len(marker) : end])
            else:
                start = max(0, len(data) - len(marker) + 1)
            chunk = await reader.read(_READ_CHUNK)
            if not chunk:
                raise _ShellBroken("the shell ended")
            data += chunk

    async def run(self, command: str, timeout: float) -> _Done:
        """Run an SCA command under `timeout`; see the module docstring."""
        seconds = max(timeout, 0.001)
        body = f"{_TIMEOUT} -k {_KILL_AFTER} {seconds:.3f} sh -c -- {_quote(command)} </dev/null"
        started = time.monotonic()
        try:
            stdout, stderr, status = await self.send(body, seconds + _KILL_AFTER + _GRACE)
        except _ShellStuck:
            self.close()
            return _Done("", "", -1, timed_out=True)
        if status in _TIMED_OUT and time.monotonic() - started >= seconds:
            return _Done("", "", -1, timed_out=True)
        return _Done(stdout, stderr, status)

    def close(self) -> None:
        """Close the channel: the shell reads end of input and exits."""
        self.closed = True
        with suppress(asyncssh.Error, OSError):
            self.process.close()


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
        become: bool = False,
    ) -> None:
        self.address = address
        self.user = user
        self.become = become
        self.port = port
        self.key = Path(key).expanduser() if key is not None else None
        self.known_hosts = Path(known_hosts or DEFAULT_KNOWN_HOSTS).expanduser()
        self.connect_timeout = connect_timeout
        self.operation_timeout = operation_timeout
        self.name = name or address
        self._closed = False
        self._sftp: asyncssh.SFTPClient | None = None
        self._sftp_problem = ""
        self._shell: _Shell | None = None
        self._per_command = False  # no usable `timeout` on the host: one SSH channel per command
        self._shell_lock = threading.Lock()
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
        if self._shell is not None:
            self._shell.close()
            with suppress(asyncssh.Error, OSError):
                await asyncio.wait_for(self._shell.process.wait_closed(), 2)
            self._shell = None
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
        if self.become:
            await self._check_sudo(conn)
        try:
            self._sftp = await (self._root_sftp(conn) if self.become
                                else conn.start_sftp_client(path_errors="surrogateescape"))
        except (asyncssh.Error, OSError) as exc:  # file rules become not applicable; commands still run
            self._sftp_problem = str(getattr(exc, "reason", exc))
        return conn

    async def _check_sudo(self, conn: asyncssh.SSHClientConnection) -> None:
        """Fail once, clearly, when the user cannot become root without a password."""
        try:
            done = await conn.run(f"{_SUDO} true", stdin=asyncssh.DEVNULL, timeout=self.operation_timeout)
        except (asyncssh.Error, OSError, TimeoutError) as exc:
            conn.close()
            raise TargetError(f"{self.user}@{self.where} ({self.name}): cannot run sudo -n: {exc}") from None
        if done.exit_status != 0:
            conn.close()
            said = " ".join(str(done.stderr or "").split())[:200] or f"exit {done.exit_status}"
            raise TargetError(f"{self.user}@{self.where} ({self.name}) cannot become root with sudo -n ({said}); "
                              f"ssh.become needs passwordless sudo for {self.user}")

    async def _root_sftp(self, conn: asyncssh.SSHClientConnection) -> asyncssh.SFTPClient:
        """An SFTP client of an sftp-server started as root through sudo on a command channel (the "sftp"
        subsystem would run as the login user); asyncssh's own start_sftp_client does the same over the subsystem."""
        writer, reader, _ = await conn.open_session(f"{_SUDO} {_SFTP_SERVER}", encoding=None)
        try:
            return await asyncssh.sftp.start_sftp_client(conn, asyncio.get_running_loop(), "strict", reader, writer,
                                                         "utf-8", "surrogateescape", asyncssh.sftp.MIN_SFTP_VERSION)
        except BaseException:
            writer.close()
            raise

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

    async def _exec(self, command: str, timeout: float) -> _Done:
        """Run a command on its own channel (hosts without `timeout`); past the timeout it is killed and closed."""
        if self.become:
            command = f"{_SUDO} sh -c -- {_quote(command)}"
        process = await self._conn.create_process(command, stdin=asyncssh.DEVNULL, encoding="utf-8", errors="replace")
        try:
            done = await process.wait(timeout=timeout)
        except asyncssh.TimeoutError:
            with suppress(asyncssh.Error, OSError):
                process.kill()  # a "signal" request; servers that ignore it see the channel close
            process.close()
            return _Done("", "", -1, timed_out=True)
        code = done.returncode if done.returncode is not None else -1
        return _Done(str(done.stdout or ""), str(done.stderr or ""), code)

    async def _start_shell(self) -> _Shell:
        process = await self._conn.create_process(f"exec {_SUDO} /bin/sh" if self.become else _SHELL, encoding=None)
        shell = _Shell(process)
        try:
            await shell.start(self.operation_timeout)
        except _ShellStuck:
            shell.close()
            raise _ShellBroken(f"the shell did not start within {self.operation_timeout:g}s") from None
        except BaseException:
            shell.close()
            raise
        return shell

    def _drop_shell(self) -> None:
        shell, self._shell = self._shell, None
        if shell is not None and not self._closed:
            self._loop.call_soon_threadsafe(shell.close)

    def _command(self, command: str, timeout: float) -> _Done:
        """Run a command through the long-lived shell (started, or restarted once, as needed), or on its own channel
        on hosts without `timeout`."""
        with self._shell_lock:
            problem = ""
            for _attempt in range(2):
                try:
                    if self._shell is not None and self._shell.closed:
                        self._shell = None
                    if self._shell is None and not self._per_command:
                        self._shell = self._call(self._start_shell(), self.operation_timeout + 5)
                        if not self._shell.has_timeout:
                            self._drop_shell()
                            self._per_command = True
                    if self._shell is None:
                        return self._call(self._exec(command, timeout), timeout + self.operation_timeout)
                    return self._call(self._shell.run(command, timeout), timeout + _KILL_AFTER + _GRACE + 5)
                except _ShellBroken as exc:
                    problem = str(exc).replace("\n", " ")
                    self._drop_shell()
                except TargetError:
                    self._drop_shell()
                    raise
            raise TargetError(
                f"the remote shell on {self.name} ({self.where}) broke twice running {command[:60]!r}: {problem}"
            )

    def processes(self) -> list[str]:
        """See Target.processes (comm and cmdline of every process under the host's /proc, as LocalTarget)."""
        done = self._command(_PROCESSES, self.operation_timeout)
        if done.timed_out or done.exit_code != 0:
            why = "timed out" if done.timed_out else f"exit {done.exit_code}: {done.stderr.strip()[:200]}"
            raise TargetError(f"cannot list processes on {self.name} ({why})")
        fields = done.stdout.split("\0")
        rows = sorted(zip(fields[0::3], fields[1::3], fields[2::3]), key=lambda row: int(row[0]))  # /proc's order
        found: list[str] = []
        for _pid, comm, cmdline in rows:
            found.extend(item for item in (comm.strip(), cmdline.strip()) if item)
        return found

    def run(self, command: str, timeout: float) -> CommandResult | None:
        """See Target.run and the module docstring (the string runs as is under sh -c, or the login shell)."""
        try:
            argv = shlex.split(command)
        except ValueError:
            return None  # unbalanced quotes: LocalTarget cannot run it either
        if not argv or "\0" in command:
            return None
        done = self._command(command, timeout)
        if done.timed_out:
            return CommandResult([], [], -1, timed_out=True)
        if done.exit_code in _NOT_RUNNABLE:
            return None
        return CommandResult(done.stdout.splitlines(), done.stderr.splitlines(), done.exit_code)


def connect_host(host: Host, ssh: Ssh, timeout: float = DEFAULT_CONNECT_TIMEOUT) -> SshTarget:
    """Open an SshTarget for an inventory host with its SSH settings (Inventory.ssh_for(host))."""
    if host.connection != "ssh":
        raise ValueError(f"host {host.name} has connection {host.connection!r}, not ssh")
    return SshTarget(
        host.address, user=ssh.user, port=ssh.port, key=ssh.key, known_hosts=ssh.known_hosts,
        connect_timeout=timeout, name=host.name, become=ssh.become,
    )  # fmt: skip

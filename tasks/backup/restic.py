"""restic, driven through ``subprocess`` with ``--json`` and parsed into dataclasses.

One :class:`Repository` per restic repository: a local directory or ``s3:http(s)://host:port/bucket/prefix`` (restic's
s3 backend, path-style for MinIO via ``-o s3.bucket-lookup=path``). restic always encrypts; the password reaches restic
through ``RESTIC_PASSWORD_FILE`` (a 0600 file in a private temporary directory, removed after each command), never the
command line, and it is scrubbed from every message. Every failure is a :class:`ResticError` with a one-line message and
a ``kind`` (wrong-password, repository-missing, unreachable, disk-full, locked, ...), so a flow can never mistake a
failure for an ok.

Written against restic 0.14 (Debian 12) and later: 0.14 exits 1 for every fatal error (newer: 10 no repository,
11 lock failed, 12 wrong password), has no ``check --json`` (0.18+), no ``--retry-lock`` (0.16+) and no snapshot
``summary`` (0.17+); the stderr text is classified for the old versions and the exit codes are used for the new ones.
All commands run with ``TZ=UTC``: ``--time`` and the calendar buckets of ``forget`` are UTC.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import IO, Any

from tasks.backup.registry import RepositorySpec, Retention
from tasks.errors import TransientError
from tasks.inventory.ssh import login_of, remote_command

CHUNK = 1 << 20
EXIT_PARTIAL = 3  # backup: some source files could not be read (the snapshot exists but is incomplete)
EXIT_NO_REPOSITORY, EXIT_LOCKED, EXIT_WRONG_PASSWORD = 10, 11, 12  # restic >= 0.17
STALE_LOCK_AGE = timedelta(minutes=30)  # restic's own rule: a lock not refreshed for 30 minutes is stale


class ResticError(Exception):
    """A restic command that failed; ``kind`` says why, the message is one line and never holds a secret."""

    def __init__(self, kind: str, message: str, snapshot_id: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.snapshot_id = snapshot_id


class ResticUnavailable(ResticError, TransientError):
    """A failure worth retrying later: the repository is locked or its server does not answer."""


_KINDS: list[tuple[str, re.Pattern[str]]] = [
    ("wrong-password", re.compile(r"wrong password|no key found", re.I)),
    ("unreachable", re.compile(r"connection refused|no such host|i/o timeout|dial tcp|network is unreachable|"
                               r"connection reset|TLS handshake|context deadline exceeded|EOF$", re.I)),
    ("disk-full", re.compile(r"no space left on device|disk quota exceeded", re.I)),
    ("locked", re.compile(r"repository is already locked|unable to create lock", re.I)),
    ("access-denied", re.compile(r"Access ?Denied|InvalidAccessKeyId|SignatureDoesNotMatch|permission denied", re.I)),
    ("already-initialised", re.compile(r"config file already exists|repository master key and config already", re.I)),
    ("repository-missing", re.compile(r"Is there a repository at the following location|repository does not exist|"
                                      r"unable to open config file|NoSuchBucket|bucket does not exist", re.I)),
    ("corrupt", re.compile(r"repository contains errors|ciphertext verification failed|Pack ID does not match|"
                           r"invalid data returned|unexpected pack", re.I)),
]
_EXIT_KINDS = {EXIT_NO_REPOSITORY: "repository-missing", EXIT_LOCKED: "locked", EXIT_WRONG_PASSWORD: "wrong-password"}
_WHAT = {"wrong-password": "wrong password (no key in the repository opens with it)",
         "repository-missing": "no restic repository there (run init)",
         "unreachable": "the repository's server cannot be reached",
         "disk-full": "no space left on the device",
         "locked": "the repository is locked by another restic process",
         "already-initialised": "a repository already exists there",
         "access-denied": "access denied by the storage",
         "corrupt": "the repository contains errors"}


def classify(returncode: int, stderr: str) -> str:
    """The kind of a failure from restic's exit code (>= 0.17) and its stderr (all versions)."""
    if returncode in _EXIT_KINDS:
        return _EXIT_KINDS[returncode]
    for kind, pattern in _KINDS:
        if pattern.search(stderr):
            return kind
    return "failed"


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("{")]
    fatal = [ln for ln in lines if ln.startswith("Fatal:")]
    return (fatal or lines or [""])[-1][:300]


@cache
def restic_version(binary: str = "restic") -> tuple[int, ...]:
    """restic's version as a tuple, e.g. (0, 14, 0)."""
    exe = shutil.which(binary)
    if not exe:
        raise ResticError("not-installed", f"{binary} not found on PATH (apt-get install restic)")
    out = subprocess.run([exe, "version"], capture_output=True, text=True, check=False).stdout
    match = re.search(r"restic (\d+)\.(\d+)\.(\d+)", out)
    if not match:
        raise ResticError("not-installed", f"cannot read the version of {exe}: {out.strip()[:100]!r}")
    return tuple(int(g) for g in match.groups())


def parse_time(value: str) -> datetime:
    """restic's RFC 3339 time (nanoseconds, Z or an offset) -> an aware datetime."""
    value = re.sub(r"(\.\d{6})\d+", r"\1", value.strip()).replace("Z", "+00:00")
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class BackupSummary:
    """The final ``summary`` message of ``restic backup --json``."""

    snapshot_id: str
    files_new: int
    files_changed: int
    files_unmodified: int
    data_added: int
    total_files_processed: int
    total_bytes_processed: int
    duration: float
    warnings: tuple[str, ...] = ()  # per-file errors (exit code 3): the snapshot is incomplete

    @property
    def bytes_added(self) -> int:
        return self.data_added

    @classmethod
    def from_json(cls, msg: dict[str, Any], warnings: Sequence[str] = ()) -> BackupSummary:
        return cls(snapshot_id=str(msg.get("snapshot_id") or ""), files_new=int(msg.get("files_new", 0)),
                   files_changed=int(msg.get("files_changed", 0)),
                   files_unmodified=int(msg.get("files_unmodified", 0)), data_added=int(msg.get("data_added", 0)),
                   total_files_processed=int(msg.get("total_files_processed", 0)),
                   total_bytes_processed=int(msg.get("total_bytes_processed", 0)),
                   duration=float(msg.get("total_duration", 0.0)), warnings=tuple(warnings))


@dataclass(frozen=True)
class Snapshot:
    """One snapshot from ``restic snapshots --json``; ``summary`` only from restic >= 0.17."""

    id: str
    short_id: str
    time: datetime
    hostname: str
    paths: tuple[str, ...]
    tags: tuple[str, ...]
    tree: str = ""
    parent: str | None = None
    summary: dict[str, Any] | None = None

    @property
    def completed(self) -> datetime:
        """When the backup ended (``summary.backup_end`` where restic records it, else its start ``time``)."""
        end = (self.summary or {}).get("backup_end")
        return parse_time(end) if end else self.time

    @classmethod
    def from_json(cls, msg: dict[str, Any]) -> Snapshot:
        return cls(id=msg["id"], short_id=msg.get("short_id") or msg["id"][:8], time=parse_time(msg["time"]),
                   hostname=msg.get("hostname", ""), paths=tuple(msg.get("paths") or ()),
                   tags=tuple(msg.get("tags") or ()), tree=msg.get("tree", ""), parent=msg.get("parent"),
                   summary=msg.get("summary"))


@dataclass(frozen=True)
class CheckResult:
    """``restic check``: ok only when restic exited 0 and reported no error."""

    ok: bool
    errors: tuple[str, ...]
    broken_packs: tuple[str, ...] = ()
    read_data: str | None = None
    duration: float = 0.0


@dataclass(frozen=True)
class ForgetResult:
    """What ``forget`` kept and removed (snapshot ids), over all groups."""

    keep: tuple[str, ...]
    remove: tuple[str, ...]
    pruned: bool
    bytes_freed: int | None = None  # prune's "total prune" size (restic rounds it to 4 digits); None: not reported


_TOTAL_PRUNE = re.compile(r"^total prune:\s+\d+ blobs / ([\d.]+) (B|KiB|MiB|GiB|TiB)\s*$", re.MULTILINE)
_UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}


def bytes_freed(prune_output: str) -> int | None:
    """The bytes a prune removed, from its "total prune: N blobs / 1.036 KiB" line (None when there is none)."""
    found = _TOTAL_PRUNE.search(prune_output)
    return None if found is None else round(float(found.group(1)) * _UNITS[found.group(2)])


@dataclass(frozen=True)
class Lock:
    """A lock file in the repository (``restic cat lock``)."""

    id: str
    time: datetime
    exclusive: bool
    hostname: str
    username: str
    pid: int

    def age(self, now: datetime | None = None) -> timedelta:
        return (now or datetime.now(UTC)) - self.time


@dataclass(frozen=True)
class StdinBackup:
    """A stream backed up through ``restic backup --stdin``: its summary, size and sha256."""

    summary: BackupSummary
    filename: str
    size: int
    sha256: str


class _Secret:
    """Holds a secret so that neither ``repr`` nor ``vars()`` of its owner shows it."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "_Secret('***')"


def _process_gone(pid: int) -> bool:
    """True when no process ``pid`` runs on this host (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


class Repository:
    """A restic repository. ``env`` holds what the backend needs (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` for
    S3); ``secrets`` lists further values to scrub from messages; ``lock_wait`` retries a command that found the
    repository locked for up to that many seconds (serialising a backup behind a prune, say)."""

    def __init__(self, url: str, password: str, env: dict[str, str] | None = None, *,
                 cache_dir: str | Path | None = None, binary: str = "restic",
                 lock_wait: float = 0.0, timeout: float | None = None,
                 secrets: Iterable[str] = ()) -> None:
        if not password:
            raise ResticError("no-password", f"restic {url}: no password given (the repository is always encrypted)")
        self.url = url
        self.__password = _Secret(password)
        env = dict(env or {})
        self._env = _Secret(env)
        self._secrets = _Secret([s for s in (password, env.get("AWS_SECRET_ACCESS_KEY", ""), *secrets) if s])
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.binary = binary
        self.lock_wait = lock_wait
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"Repository({self.url!r})"

    @property
    def is_s3(self) -> bool:
        return self.url.startswith("s3:")

    # -- running restic -------------------------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        for secret in self._secrets.value:
            text = text.replace(secret, "***")
        return text

    def _error(self, command: str, returncode: int, stderr: str, kind: str | None = None,
               snapshot_id: str | None = None) -> ResticError:
        kind = kind or classify(returncode, stderr)
        detail = self._scrub(last_line(stderr)).removeprefix("Fatal: ")
        first = next((ln.strip() for ln in stderr.splitlines() if ln.startswith("ignoring error for ")), None)
        if first and first not in detail:  # restore and dump name the first damaged file only there
            detail += f"; first: {self._scrub(first)[:300]}"
        what = _WHAT.get(kind)
        message = f"restic {command} {self.url}: " + (f"{what} ({detail})" if what and detail else
                                                      what or detail or f"exit code {returncode}")
        cls = ResticUnavailable if kind in ("locked", "unreachable") else ResticError
        return cls(kind, message.replace("\n", " "), snapshot_id)

    @contextlib.contextmanager
    def _environment(self) -> Iterator[dict[str, str]]:
        """The child environment, with the password in a 0600 file that is removed afterwards."""
        with tempfile.TemporaryDirectory(prefix="astrolab-restic-") as tmp:
            pw = Path(tmp) / "password"
            fd = os.open(pw, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(self.__password.value)
            env = {k: v for k, v in os.environ.items()
                   if not k.startswith("RESTIC_") and k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
            env.update(self._env.value)
            env.update(RESTIC_PASSWORD_FILE=str(pw), RESTIC_REPOSITORY=self.url, TZ="UTC")
            if self.cache_dir:
                env["RESTIC_CACHE_DIR"] = str(self.cache_dir)
            yield env

    def _argv(self, args: Sequence[str]) -> list[str]:
        exe = shutil.which(self.binary)
        if not exe:
            raise ResticError("not-installed", f"{self.binary} not found on PATH (apt-get install restic)")
        options = ["-o", "s3.bucket-lookup=path"] if self.is_s3 else []
        return [exe, *options, *args]

    def _remote(self, via: Sequence[str], args: Sequence[str]) -> tuple[list[str], bytes]:
        """The command line and stdin that run restic on another host through ``via`` (an ssh command line ending
        with ``--``): the password and the backend's keys travel on stdin, one NAME=value per line, never on a
        command line or in a file there."""
        env = {**self._env.value, "RESTIC_PASSWORD": self.__password.value, "RESTIC_REPOSITORY": self.url, "TZ": "UTC"}
        if any("\n" in value for value in env.values()):
            raise ResticError("failed", f"restic {args[0]} {self.url}: a password or key holds a line break; it "
                                        "cannot be sent to another host")
        options = ["-o", "s3.bucket-lookup=path"] if self.is_s3 else []
        missing = '{ echo "restic-not-installed" >&2; exit 127; }'
        script = ('while IFS= read -r kv && [ -n "$kv" ]; do export "$kv"; done; '
                  f"command -v {shlex.quote(self.binary)} >/dev/null || {missing}; "
                  f"exec {shlex.join([self.binary, *options, *args])}")
        stdin = "".join(f"{name}={value}\n" for name, value in env.items()) + "\n"
        return remote_command(via, script), stdin.encode()

    def _remote_error(self, via: Sequence[str], args: Sequence[str], returncode: int, stderr: str) -> ResticError:
        """ssh's own failures (exit code 255) and a host without restic, named by the host."""
        where = login_of(via)
        if "restic-not-installed" in stderr:
            return ResticError("not-installed", f"restic {args[0]} {self.url}: {self.binary} is not installed on "
                                                f"{where} (the backup_client role installs it)")
        detail = self._scrub(last_line(stderr)) or f"exit code {returncode}"
        return ResticUnavailable("unreachable", f"restic {args[0]} {self.url}: ssh to {where} failed ({detail})")

    def _run(self, args: Sequence[str], ok: Callable[[int], bool] = lambda rc: rc == 0,
             input_: bytes | None = None, via: Sequence[str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run restic (on another host when ``via`` is an ssh command line); retries while locked (up to
        ``lock_wait``); a failure is a ResticError."""
        deadline = time.monotonic() + self.lock_wait
        delay = 0.5
        while True:
            with self._environment() as env:
                argv, stdin = self._remote(via, args) if via else (self._argv(args), input_)
                try:
                    proc = subprocess.run(argv, env=env, capture_output=True, timeout=self.timeout,
                                          check=False, input=stdin)
                except subprocess.TimeoutExpired:
                    raise ResticError("timeout", f"restic {args[0]} {self.url}: no answer within {self.timeout}s")\
                        from None
            out = subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(errors="replace"),
                                              proc.stderr.decode(errors="replace"))
            if ok(out.returncode):
                return out
            if via and (out.returncode == 255 or "restic-not-installed" in out.stderr):
                raise self._remote_error(via, args, out.returncode, out.stderr)
            error = self._error(args[0], out.returncode, out.stderr)
            if error.kind != "locked" or time.monotonic() + delay > deadline:
                raise error
            time.sleep(delay)
            delay = min(delay * 2, 10.0)

    def _json(self, args: Sequence[str]) -> Any:
        out = self._run([*args, "--json"])
        try:
            return json.loads(out.stdout or "null")
        except json.JSONDecodeError:
            raise ResticError("failed", f"restic {args[0]} {self.url}: output is not JSON "
                                        f"({self._scrub(out.stdout[:100])!r})") from None

    # -- repository -----------------------------------------------------------------------------------------------

    def init(self) -> None:
        """Create the repository (encrypted with the password); an existing one is an error."""
        self._run(["init"])

    def exists(self) -> bool:
        """True if a repository opens with the password; False if there is none; any other failure raises."""
        try:
            self._run(["cat", "config", "--no-lock"])
        except ResticError as exc:
            if exc.kind == "repository-missing":
                return False
            raise
        return True

    def ensure_initialised(self) -> bool:
        """Initialise the repository unless one is there (True if it was created)."""
        if self.exists():
            return False
        try:
            self.init()
        except ResticError as exc:
            if exc.kind != "already-initialised":  # someone else initialised it meanwhile
                raise
            return False
        return True

    # -- backup ---------------------------------------------------------------------------------------------------

    @staticmethod
    def _backup_options(tags: Sequence[str], host: str | None, at: datetime | None) -> list[str]:
        options = [arg for tag in tags for arg in ("--tag", tag)]
        if host:
            options += ["--host", host]
        if at is not None:
            options += ["--time", at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")]
        return options

    def _summary(self, stdout: str, returncode: int, stderr: str) -> BackupSummary:
        summary: dict[str, Any] | None = None
        warnings = []
        for line in stdout.splitlines():
            if not line.startswith("{"):
                continue
            try:
                msg = json.loads(line)
            except json.JSONDecodeError:
                continue
            if msg.get("message_type") == "summary":
                summary = msg
            elif msg.get("message_type") == "error":
                error = msg.get("error") or {}
                warnings.append(self._scrub(f"{msg.get('item', '')}: {error.get('message', error)}"))
        if returncode == EXIT_PARTIAL:  # 0.14 reports per-file errors on stderr as text
            warnings += [self._scrub(ln.strip()) for ln in stderr.splitlines()
                         if ln.strip() and not ln.startswith(("Warning:", "{"))]
        if summary is None or not summary.get("snapshot_id"):
            raise self._error("backup", returncode or 1, stderr, kind=None if returncode else "failed")
        return BackupSummary.from_json(summary, warnings)

    def backup_path(self, paths: Sequence[str | Path], tags: Sequence[str] = (), host: str | None = None,
                    excludes: Sequence[str] = (), at: datetime | None = None,
                    allow_partial: bool = False, via: Sequence[str] | None = None) -> BackupSummary:
        """``restic backup`` of the paths, here or (``via`` an ssh command line) on the host that holds them.
        Unreadable source files (exit code 3) leave an incomplete snapshot: an error (kind ``partial``, with its
        ``snapshot_id``) unless ``allow_partial``."""
        missing = [] if via else [str(p) for p in paths if not Path(p).exists()]
        if missing:
            raise ResticError("source-missing", f"restic backup {self.url}: no such source path {missing[0]}")
        args = ["backup", "--json", *self._backup_options(tags, host, at),
                *[arg for ex in excludes for arg in ("--exclude", ex)],
                *[str(p) if via else str(Path(p).absolute()) for p in paths]]
        out = self._run(args, ok=lambda rc: rc in (0, EXIT_PARTIAL), via=via)
        summary = self._summary(out.stdout, out.returncode, out.stderr)
        if out.returncode == EXIT_PARTIAL and not allow_partial:
            raise ResticError("partial", f"restic backup {self.url}: snapshot {summary.snapshot_id[:8]} is "
                              f"incomplete, {len(summary.warnings)} source item(s) unreadable "
                              f"({(summary.warnings or ('?',))[0][:200]})", summary.snapshot_id)
        return summary

    def backup_stdin(self, command: Sequence[str], filename: str, tags: Sequence[str] = (), host: str | None = None,
                     at: datetime | None = None, producer_env: dict[str, str] | None = None,
                     producer_secrets: Iterable[str] = ()) -> StdinBackup:
        """Pipe a producer (``pg_dump ...``) through Python (sha256, size) into ``restic backup --stdin``. A producer
        that fails fails the backup, and the snapshot restic made of its truncated output is forgotten."""
        return self.backup_stream(lambda: _Producer(command, producer_env), filename, tags, host, at,
                                  secrets=producer_secrets)

    def backup_stream(self, open_producer: Callable[[], _Producer], filename: str, tags: Sequence[str] = (),
                      host: str | None = None, at: datetime | None = None,
                      secrets: Iterable[str] = ()) -> StdinBackup:
        """:meth:`backup_stdin` with a producer object (``stdout``, ``finish() -> error or None``)."""
        secrets = [s for s in secrets if s]
        self._secrets.value += [s for s in secrets if s not in self._secrets.value]
        args = ["backup", "--json", "--stdin", "--stdin-filename", filename, *self._backup_options(tags, host, at)]
        with self._environment() as env:
            producer = open_producer()
            restic = subprocess.Popen(self._argv(args), env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE)
            stdout, stderr = PipeReader(restic.stdout), PipeReader(restic.stderr)
            digest, size, write_error = hashlib.sha256(), 0, False
            try:
                assert restic.stdin is not None
                for chunk in iter(lambda: producer.stdout.read(CHUNK), b""):
                    digest.update(chunk)
                    size += len(chunk)
                    try:
                        restic.stdin.write(chunk)
                    except BrokenPipeError:
                        write_error = True
                        break
            finally:
                producer_error = producer.finish(kill=write_error)
                with contextlib.suppress(BrokenPipeError):
                    restic.stdin.close()  # type: ignore[union-attr]
                returncode = restic.wait()
                stdout.join()
                stderr.join()
        out_text, err_text = stdout.text, stderr.text
        snapshot_id = None
        try:
            summary = self._summary(out_text, returncode, err_text)
            snapshot_id = summary.snapshot_id
        except ResticError:
            if producer_error is None:
                raise
        if producer_error is not None:
            if snapshot_id:
                self.forget([snapshot_id])
            raise ResticError("producer-failed", self._scrub(
                f"restic backup --stdin {self.url}: {producer_error}; no snapshot kept"), None)
        if returncode != 0:
            raise self._error("backup", returncode, err_text, snapshot_id=snapshot_id)
        return StdinBackup(summary=summary, filename=filename, size=size, sha256=digest.hexdigest())

    # -- reading --------------------------------------------------------------------------------------------------

    def snapshots(self, tags: Sequence[str] = (), host: str | None = None, paths: Sequence[str] = (),
                  latest: int | None = None) -> list[Snapshot]:
        """Snapshots, oldest first; ``tags`` must all be present (``restic --tag a,b``)."""
        args = ["snapshots", "--no-lock"]
        if tags:
            args += ["--tag", ",".join(tags)]
        if host:
            args += ["--host", host]
        args += [arg for p in paths for arg in ("--path", p)]
        if latest:
            args += ["--latest", str(latest)]
        data = self._json(args) or []
        return sorted((Snapshot.from_json(s) for s in data), key=lambda s: s.time)

    def restore(self, snapshot: str | Snapshot, target: str | Path, include: Sequence[str] = (),
                allow_nonempty: bool = False) -> Path:
        """Restore a snapshot under ``target`` (restic recreates the snapshot's absolute paths below it). Refused when
        the target is, or is inside, one of the snapshot's live source paths, is ``/``, or is not empty."""
        snap = snapshot if isinstance(snapshot, Snapshot) else self.snapshot(snapshot)
        target = Path(target).absolute().resolve()
        for source in snap.paths:
            live = Path(source).resolve() if Path(source).is_absolute() else None
            if target == Path("/") or (live is not None and _inside(target, live)):
                raise ResticError("unsafe-restore", f"restic restore {self.url}: refusing to restore snapshot "
                                  f"{snap.short_id} into {target}: it would write over the live source {source}")
        if target.exists() and any(target.iterdir()) and not allow_nonempty:
            raise ResticError("unsafe-restore", f"restic restore {self.url}: target {target} is not empty")
        target.mkdir(parents=True, exist_ok=True)
        self._run(["restore", snap.id, "--target", str(target), *[a for i in include for a in ("--include", i)]])
        return target

    def snapshot(self, snapshot_id: str) -> Snapshot:
        """One snapshot by (short) id or ``latest``."""
        data = self._json(["snapshots", "--no-lock", snapshot_id]) or []
        if not data:
            raise ResticError("no-snapshot", f"restic snapshots {self.url}: no snapshot {snapshot_id}")
        return Snapshot.from_json(data[-1])

    @contextlib.contextmanager
    def dump(self, snapshot: str, filename: str) -> Iterator[IO[bytes]]:
        """A stream of one file of a snapshot (``restic dump``); a failure of restic raises on leaving."""
        with self._environment() as env:
            proc = subprocess.Popen(self._argv(["dump", snapshot, filename]), env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)
            stderr = PipeReader(proc.stderr)
            assert proc.stdout is not None
            try:
                yield proc.stdout
            except BaseException:
                proc.kill()
                proc.wait()
                raise
            for _ in iter(lambda: proc.stdout.read(CHUNK), b""):  # type: ignore[union-attr]
                pass  # what the reader left: let restic finish
            proc.stdout.close()
            returncode = proc.wait()
            stderr.join()
        if returncode != 0:
            raise self._error("dump", returncode, stderr.text)

    # -- maintenance ----------------------------------------------------------------------------------------------

    def check(self, read_data_subset: str | None = None, read_data: bool = False) -> CheckResult:
        """``restic check`` (structure), with ``--read-data`` or ``--read-data-subset=1/5|10%|1G`` (pack contents).
        A damaged repository is a result with ok False and the errors; a repository that cannot be opened
        (password, missing, unreachable, locked) raises."""
        args = ["check"]
        if read_data:
            args.append("--read-data")
        elif read_data_subset:
            args.append(f"--read-data-subset={read_data_subset}")
        json_mode = restic_version(self.binary) >= (0, 18, 0)
        if json_mode:
            args.append("--json")
        started = time.monotonic()
        out = self._run(args, ok=lambda rc: True)
        duration = time.monotonic() - started
        errors, broken = _check_errors(out.stdout, out.stderr, json_mode)
        if out.returncode != 0:
            kind = classify(out.returncode, out.stderr)
            if kind not in ("corrupt", "failed"):
                raise self._error("check", out.returncode, out.stderr, kind)
            if not errors:
                errors = [last_line(out.stderr) or f"exit code {out.returncode}"]
        errors = [self._scrub(e) for e in errors]
        return CheckResult(ok=out.returncode == 0 and not errors, errors=tuple(errors), broken_packs=tuple(broken),
                           read_data="all" if read_data else read_data_subset, duration=duration)

    def forget(self, snapshot_ids: Sequence[str], prune: bool = False) -> None:
        """Forget snapshots by id."""
        if snapshot_ids:
            self._run(["forget", *(["--prune"] if prune else []), *snapshot_ids])

    def forget_prune(self, keep: Retention, tags: Sequence[str] = (), host: str | None = None,
                     group_by: str = "host,paths,tags", prune: bool = True, dry_run: bool = False) -> ForgetResult:
        """Apply a retention policy (to the snapshots with all of ``tags``, per group) and prune unreferenced data."""
        args = ["forget", "--json", *keep.restic_args(), "--group-by", group_by]
        if tags:
            args += ["--tag", ",".join(tags)]
        if host:
            args += ["--host", host]
        if dry_run:
            args.append("--dry-run")
        elif prune:
            args.append("--prune")
        out = self._run(args)
        groups: list[dict[str, Any]] = []
        for line in out.stdout.splitlines():
            if line.startswith("["):
                groups = json.loads(line)
                break
        keep_ids = [s["id"] for g in groups for s in g.get("keep") or ()]
        remove_ids = [s["id"] for g in groups for s in g.get("remove") or ()]
        pruned = prune and not dry_run
        return ForgetResult(keep=tuple(keep_ids), remove=tuple(remove_ids), pruned=pruned,
                            bytes_freed=bytes_freed(out.stdout) if pruned else None)

    def locks(self) -> list[Lock]:
        """The repository's locks (``restic list locks`` + ``cat lock``), without taking one."""
        ids = self._run(["list", "locks", "--no-lock"]).stdout.split()
        found = []
        for lock_id in ids:
            try:
                data = json.loads(self._run(["cat", "lock", lock_id, "--no-lock"]).stdout)
            except (ResticError, json.JSONDecodeError):
                continue  # removed meanwhile
            found.append(Lock(id=lock_id, time=parse_time(data["time"]), exclusive=bool(data.get("exclusive")),
                              hostname=data.get("hostname", ""), username=data.get("username", ""),
                              pid=int(data.get("pid", 0))))
        return found

    def stale_locks(self, max_age: timedelta = STALE_LOCK_AGE, hostname: str | None = None,
                    now: datetime | None = None) -> list[Lock]:
        """Locks left behind: their process is gone (on this host), or they are older than ``max_age`` (restic
        refreshes a live lock every 5 minutes)."""
        here = hostname or socket.gethostname()
        return [lock for lock in self.locks()
                if lock.age(now) > max_age or (lock.hostname == here and _process_gone(lock.pid))]

    def unlock(self, remove_all: bool = False) -> None:
        """``restic unlock``: removes stale locks (restic's rule), or every lock with ``remove_all``."""
        self._run(["unlock", *(["--remove-all"] if remove_all else [])])


def _check_errors(stdout: str, stderr: str, json_mode: bool) -> tuple[list[str], list[str]]:
    """Error lines and broken pack ids from ``restic check`` (text on 0.14; JSON lines on 0.18+)."""
    errors: list[str] = []
    broken: list[str] = []
    for line in stderr.splitlines() + (stdout.splitlines() if json_mode else []):
        line = line.strip()
        if not line:
            continue
        if line.startswith("{"):
            try:
                msg = json.loads(line)
            except json.JSONDecodeError:
                continue
            if msg.get("message_type") == "error":
                errors.append(str(msg.get("message", msg)))
            elif msg.get("message_type") == "summary":
                broken += [str(p) for p in msg.get("broken_packs") or ()]
                if msg.get("num_errors") and not errors:
                    errors.append(f"{msg['num_errors']} error(s)")
            continue
        if line.startswith(("Fatal: repository contains errors", "using temporary cache", "create exclusive lock")):
            continue
        errors.append(line)
        match = re.search(r"(?:want|pack) ([0-9a-f]{8,64})", line)
        if match and re.search(r"pack", line, re.I):
            broken.append(match.group(1))
    return errors, sorted(set(broken))


class PipeReader:
    """Reads a child's pipe in a thread (so that it never fills and blocks the child)."""

    def __init__(self, stream: IO[bytes] | None) -> None:
        self.chunks: list[bytes] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[bytes] | None) -> None:
        if stream is not None:
            self.chunks.extend(iter(lambda: stream.read(CHUNK), b""))

    def join(self, timeout: float = 30) -> None:
        self._thread.join(timeout)

    @property
    def text(self) -> str:
        return b"".join(self.chunks).decode(errors="replace")


class _Producer:
    """A producer process (``pg_dump``): its stdout, and at the end its exit status as an error or None."""

    def __init__(self, command: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.command = list(command)
        self.proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env={**os.environ, **(env or {})})
        self._stderr = PipeReader(self.proc.stderr)
        assert self.proc.stdout is not None
        self.stdout: IO[bytes] = self.proc.stdout

    def finish(self, kill: bool = False) -> str | None:
        if kill:
            self.proc.send_signal(signal.SIGTERM)
        returncode = self.proc.wait()
        self._stderr.join()
        if returncode == 0 and not kill:
            return None
        detail = last_line(self._stderr.text)
        name = Path(self.command[0]).name
        return f"{name} failed (exit code {returncode})" + (f": {detail}" if detail else "")


def _secret_value(name: str, what: str) -> Any:
    """The value of a Prefect Secret block (imported lazily: the drivers run without Prefect)."""
    from prefect.blocks.system import Secret

    try:
        return Secret.load(name).get()  # type: ignore[union-attr]
    except ValueError as exc:
        raise ResticError("no-password", f"{what}: no Prefect Secret block named {name!r} ({exc})") from None


def open_repository(spec: RepositorySpec, **kwargs: Any) -> Repository:
    """The Repository of a registry entry: the password from its Prefect Secret block, else its environment variable;
    for S3, the keys from its Secret block ({access_key, secret_key}), else AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY."""
    what = f"repository {spec.name}"
    if spec.password_secret:
        password = str(_secret_value(spec.password_secret, f"{what}.password_secret"))
    else:
        password = os.environ.get(spec.password_env, "")
    if not password:
        raise ResticError("no-password", f"{what}: no password (set {spec.password_env} or password_secret)")
    env: dict[str, str] = {}
    if spec.is_s3:
        if spec.s3_credentials_secret:
            value = _secret_value(spec.s3_credentials_secret, f"{what}.s3_credentials_secret")
            if not isinstance(value, dict) or not {"access_key", "secret_key"} <= set(value):
                raise ResticError("no-credentials", f"{what}: the Secret block {spec.s3_credentials_secret!r} must "
                                  "hold a JSON object with access_key and secret_key")
            env = {"AWS_ACCESS_KEY_ID": value["access_key"], "AWS_SECRET_ACCESS_KEY": value["secret_key"]}
        else:
            env = {k: os.environ[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY") if k in os.environ}
        if len(env) != 2:
            raise ResticError("no-credentials", f"{what}: no S3 keys (set s3_credentials_secret or "
                              "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)")
    return Repository(spec.url, password, env, **kwargs)

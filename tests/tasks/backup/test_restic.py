"""tasks.backup.restic against real restic: local and S3 repositories, restores with identical bytes, the errors a
flow must never mistake for an ok, corruption, retention, locks and a backup killed half-way."""

import os
import signal
import subprocess
import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tasks.backup.registry import RepositorySpec, Retention
from tasks.backup.restic import (
    Repository,
    ResticError,
    ResticUnavailable,
    bytes_freed,
    classify,
    open_repository,
)
from tasks.errors import is_transient
from tests.tasks.backup.conftest import damage_largest_pack


def _one_line(exc: BaseException, *secrets: str) -> str:
    text = str(exc)
    assert "\n" not in text
    for s in secrets:
        assert s not in text
    return text


def test_path_backup_restores_identical_bytes(repo, source, digest, tmp_path):
    summary = repo.backup_path([source], tags=["asset=lab-docs"], host="nfs1")
    regular_files = sum(p.is_file() and not p.is_symlink() for p in source.rglob("*"))
    assert summary.snapshot_id and summary.files_new == regular_files
    assert summary.bytes_added > 0 and summary.total_bytes_processed > 0 and summary.duration > 0
    [snap] = repo.snapshots(tags=["asset=lab-docs"])
    assert snap.id.startswith(summary.snapshot_id) and snap.hostname == "nfs1" and snap.paths == (str(source),)
    assert snap.completed <= datetime.now(UTC)
    assert repo.snapshots(tags=["asset=other"]) == [] and repo.snapshots(host="nfs2") == []

    again = repo.backup_path([source], tags=["asset=lab-docs"], host="nfs1")
    assert again.files_new == 0 and again.files_unmodified == summary.files_new

    restored = repo.restore(snap, tmp_path / "restore")
    assert digest(restored / str(source).lstrip("/")) == digest(source)
    assert repo.check().ok


def test_s3_repository_on_the_test_server(make_repo, s3_repo_url, s3_env, source, digest, tmp_path):
    repo = make_repo(s3_repo_url, env=s3_env)
    assert repo.exists() is False
    assert repo.ensure_initialised() is True and repo.ensure_initialised() is False
    summary = repo.backup_path([source], tags=["asset=lab-docs"])
    restored = repo.restore(summary.snapshot_id, tmp_path / "restore")
    assert digest(restored / str(source).lstrip("/")) == digest(source)
    result = repo.check(read_data_subset="1/1")
    assert result.ok and result.errors == () and result.read_data == "1/1"


def test_stdin_backup_keeps_the_stream_and_its_sha256(repo):
    command = ["sh", "-c", "head -c 300000 /dev/zero | tr '\\0' 'x'; echo end"]
    result = repo.backup_stdin(command, "stream.txt", tags=["asset=s"])
    assert result.size == 300004 and len(result.sha256) == 64
    with repo.dump(result.summary.snapshot_id, "/stream.txt") as stream:
        data = stream.read()
    assert data == b"x" * 300000 + b"end\n"
    import hashlib
    assert hashlib.sha256(data).hexdigest() == result.sha256


def test_a_failed_producer_fails_the_backup_and_leaves_no_snapshot(repo):
    with pytest.raises(ResticError) as err:
        repo.backup_stdin(["sh", "-c", "echo half a dump; echo 'pg_dump: error: connection lost' >&2; exit 1"],
                          "db.pgdump", tags=["asset=db"])
    assert err.value.kind == "producer-failed"
    assert "sh failed (exit code 1): pg_dump: error: connection lost" in _one_line(err.value)
    assert repo.snapshots(tags=["asset=db"]) == []


def test_wrong_password_missing_repository_and_unreachable_s3_are_clear_errors(repo, make_repo, tmp_path, s3_env,
                                                                                 s3_repo_url):
    wrong = make_repo(repo.url, password="not-the-password-42")
    with pytest.raises(ResticError) as err:
        wrong.snapshots()
    assert err.value.kind == "wrong-password"
    assert "wrong password" in _one_line(err.value, "not-the-password-42")

    missing = make_repo(str(tmp_path / "nowhere"))
    with pytest.raises(ResticError) as err:
        missing.snapshots()
    assert err.value.kind == "repository-missing" and "no restic repository there" in _one_line(err.value)
    with pytest.raises(ResticError) as err:
        missing.check()
    assert err.value.kind == "repository-missing"
    assert missing.exists() is False

    s3_missing = make_repo(s3_repo_url, env=s3_env)
    with pytest.raises(ResticError) as err:
        s3_missing.backup_path([tmp_path])
    assert err.value.kind == "repository-missing"

    unreachable = make_repo("s3:http://127.0.0.1:9/restic-bucket/lab", env=s3_env)
    for call in (unreachable.snapshots, unreachable.check, unreachable.init, unreachable.exists):
        with pytest.raises(ResticError) as err:
            call()
        assert err.value.kind == "unreachable", str(err.value)
        assert isinstance(err.value, ResticUnavailable) and is_transient(err.value)
        assert "cannot be reached" in _one_line(err.value, "astrolab-test-secret")


def test_the_password_never_reaches_the_command_line_or_a_message(tmp_path):
    """A stand-in restic records its argv and the password file it was given, then fails as restic would."""
    record = tmp_path / "record"
    fake = tmp_path / "restic"
    fake.write_text(f"""#!/bin/sh
echo "$@" > {record}; stat -c %a "$RESTIC_PASSWORD_FILE" >> {record}
cat "$RESTIC_PASSWORD_FILE" >> {record}; echo >> {record}
echo "$RESTIC_PASSWORD_FILE" >> {record}
echo "Fatal: unexpected: key s3cr3t-pw was rejected" >&2; exit 1
""")
    fake.chmod(0o755)
    repo = Repository(str(tmp_path / "r"), "s3cr3t-pw", binary=str(fake))
    with pytest.raises(ResticError) as err:
        repo.snapshots()
    argv, mode, content, pwfile = record.read_text().splitlines()
    assert "s3cr3t-pw" not in argv and mode == "600" and content == "s3cr3t-pw"
    assert not Path(pwfile).exists()
    assert "s3cr3t-pw" not in str(err.value) and "***" in str(err.value)
    assert "s3cr3t-pw" not in repr(repo) and "s3cr3t-pw" not in str(vars(repo))


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_full_disk_is_a_clear_error(make_repo, tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        repo = make_repo(str(mount / "repo"))
        repo.init()
        data = tmp_path / "data"
        data.mkdir()
        (data / "big.bin").write_bytes(os.urandom(8 << 20))
        with pytest.raises(ResticError) as err:
            repo.backup_path([data])
        assert err.value.kind == "disk-full" and "no space left" in _one_line(err.value)
        assert repo.snapshots() == []
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.parametrize("returncode, stderr, kind", [
    (12, "Fatal: wrong password or no key found", "wrong-password"),  # restic >= 0.17
    (10, "Fatal: repository does not exist: unable to open config file", "repository-missing"),
    (11, "Fatal: unable to create lock in backend: repository is already locked", "locked"),
    (1, "Fatal: unable to open config file: Stat: Get \"http://h:9000/b/?location=\": dial tcp: lookup h: "
        "no such host\nIs there a repository at the following location?", "unreachable"),
    (1, "Fatal: unable to save snapshot: write /srv/r/data/ab/x: no space left on device", "disk-full"),
    (1, "Fatal: unable to open config file: Stat: Access Denied.\n", "access-denied"),
    (1, "Fatal: unable to open config file: stat /r/config: no such file or directory\nIs there a repository at the "
        "following location?", "repository-missing"),
    (1, "something else went wrong", "failed"),
])
def test_classify_old_and_new_restic(returncode, stderr, kind):
    assert classify(returncode, stderr) == kind


def test_a_damaged_pack_is_detected_and_never_trusted(repo, source):
    repo.backup_path([source])
    pack = damage_largest_pack(repo.url)

    result = repo.check(read_data=True)
    assert result.ok is False and result.errors and result.read_data == "all"
    assert pack.name in result.broken_packs or any(pack.name[:8] in e for e in result.errors)
    subset = repo.check(read_data_subset="100%")
    assert subset.ok is False


def test_retention_keeps_exactly_the_expected_snapshots(repo, tmp_path):
    src = tmp_path / "small"
    src.mkdir()
    (src / "a").write_text("a")
    times = [datetime(2024, 1, d, 12, tzinfo=UTC) for d in range(1, 15)]  # Mon 1 .. Sun 14 January 2024
    times.append(datetime(2024, 1, 14, 9, tzinfo=UTC))  # a second one on the last day (older)
    ids = {}
    for t in times:
        ids[t] = repo.backup_path([src], tags=["asset=r"], at=t).snapshot_id
    repo.backup_path([src], tags=["asset=other"], at=times[0])  # another asset: not touched

    result = repo.forget_prune(Retention(keep_daily=3, keep_weekly=2), tags=["asset=r"])
    # daily: 14th (12:00), 13th, 12th; weekly (Mon-Sun): week of 8-14 -> 14th, week of 1-7 -> 7th
    expected = {datetime(2024, 1, d, 12, tzinfo=UTC) for d in (14, 13, 12, 7)}
    kept = {s.time for s in repo.snapshots(tags=["asset=r"])}
    assert kept == expected
    assert {i[:8] for i in result.keep} == {ids[t] for t in expected}
    assert len(result.remove) == len(times) - 4 and result.pruned
    assert len(repo.snapshots(tags=["asset=other"])) == 1
    assert repo.check().ok


def test_bytes_freed_is_read_from_prune_s_total_line():
    assert bytes_freed("to delete:   4 blobs / 1.036 KiB\ntotal prune:           4 blobs / 1.036 KiB\n") == 1061
    assert bytes_freed("total prune:           12 blobs / 2.500 GiB") == 2_684_354_560
    assert bytes_freed("total prune:           0 blobs / 0 B\n") == 0
    assert bytes_freed("done\n") is None  # a restic that does not say: unknown, not zero


def test_concurrent_backups_both_land(repo, tmp_path, source):
    other = tmp_path / "other"
    other.mkdir()
    (other / "x").write_bytes(os.urandom(500_000))
    results: dict[str, object] = {}

    def run(name, path):
        try:
            results[name] = repo.backup_path([path], tags=[f"asset={name}"])
        except Exception as exc:  # noqa: BLE001 - reported below
            results[name] = exc

    threads = [threading.Thread(target=run, args=(n, p)) for n, p in (("a", source), ("b", other))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(not isinstance(r, Exception) for r in results.values()), results
    assert len(repo.snapshots()) == 2 and repo.check(read_data=True).ok


@contextmanager
def _raw_restic(repo: Repository, args: list[str]):
    """A restic process started directly (with the repository's environment), for the tests that stop or kill one."""
    with repo._environment() as env:
        proc = subprocess.Popen(repo._argv(args), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
            proc.wait()


def _wait_for(condition, proc: subprocess.Popen, what: str) -> None:
    """Poll the repository directory (cheap) until condition() holds, failing if the process ended first."""
    deadline = time.monotonic() + 60
    while not condition():
        assert proc.poll() is None, f"restic finished before {what}: make the data bigger"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def _complete_lock(locks: Path) -> bool:
    """A lock file restic has finished writing: its local backend makes a file read-only once written, so a file
    seen earlier may still be empty (and ``restic list locks`` would not show it yet)."""
    return any(p.stat().st_size > 0 and not p.stat().st_mode & 0o222 for p in locks.iterdir())


def test_a_backup_waits_for_an_exclusive_lock_and_then_runs(make_repo, source, tmp_path):
    repo = make_repo(lock_wait=0)
    repo.init()
    (tmp_path / "bulk").mkdir()
    for i in range(8):
        (tmp_path / "bulk" / f"b{i}").write_bytes(os.urandom(4 << 20))
    repo.backup_path([tmp_path / "bulk"])
    locks = Path(repo.url, "locks")
    with _raw_restic(repo, ["check", "--read-data"]) as holder:
        _wait_for(lambda: _complete_lock(locks), holder, "check took its lock")
        holder.send_signal(signal.SIGSTOP)  # holds its exclusive lock until SIGCONT
        [lock] = repo.locks()
        assert lock.exclusive and lock.pid == holder.pid and repo.stale_locks() == []
        with pytest.raises(ResticUnavailable) as err:
            repo.backup_path([source])
        assert err.value.kind == "locked" and "locked by another restic process" in _one_line(err.value)
        waiting = make_repo(repo.url, password=repo._Repository__password.value, lock_wait=60)
        done: list[object] = []
        thread = threading.Thread(target=lambda: done.append(waiting.backup_path([source])))
        thread.start()
        time.sleep(1.5)
        assert not done  # still waiting for the lock
        holder.send_signal(signal.SIGCONT)
        assert holder.wait(60) == 0
    thread.join(90)
    assert done and len(repo.snapshots()) == 2


def test_kill_9_mid_backup_then_the_next_run_succeeds_and_the_stale_lock_is_found(repo, tmp_path, source):
    big = tmp_path / "big"
    big.mkdir()
    for i in range(16):
        (big / f"part{i:02d}.bin").write_bytes(os.urandom(4 << 20))
    data, locks = Path(repo.url, "data"), Path(repo.url, "locks")
    with _raw_restic(repo, ["backup", str(big)]) as proc:
        _wait_for(lambda: any(locks.iterdir()) and any(p.is_file() for p in data.rglob("*")), proc,
                  "it wrote a pack")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    [stale] = repo.stale_locks()
    assert stale.pid == proc.pid and not stale.exclusive and repo.snapshots() == []

    summary = repo.backup_path([big, source])  # a shared lock: runs despite the stale one
    assert summary.snapshot_id and len(repo.snapshots()) == 1

    repo.unlock()  # removes stale locks only
    assert repo.locks() == [] and repo.stale_locks() == []
    result = repo.check(read_data=True)
    assert result.ok, result.errors


def test_restore_never_writes_over_the_live_source(repo, source, digest, tmp_path):
    before = digest(source)
    snap = repo.snapshot(repo.backup_path([source]).snapshot_id)
    for target in (source, source / "sub", Path("/")):
        with pytest.raises(ResticError) as err:
            repo.restore(snap, target)
        assert err.value.kind == "unsafe-restore" and "live source" in _one_line(err.value)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep").write_text("mine")
    with pytest.raises(ResticError, match="is not empty"):
        repo.restore(snap, busy)
    assert digest(source) == before


def test_open_repository_takes_the_password_and_keys_from_the_environment(monkeypatch, restic_bin, s3_env,
                                                                          s3_repo_url, tmp_path):
    spec = RepositorySpec(name="minio", url=s3_repo_url, password_env="ASTROLAB_TEST_RESTIC_PW")
    monkeypatch.delenv("ASTROLAB_TEST_RESTIC_PW", raising=False)
    with pytest.raises(ResticError, match=r"repository minio: no password \(set ASTROLAB_TEST_RESTIC_PW"):
        open_repository(spec)
    monkeypatch.setenv("ASTROLAB_TEST_RESTIC_PW", "pw-from-env")
    for key in s3_env:
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(ResticError, match="no S3 keys"):
        open_repository(spec)
    for key, value in s3_env.items():
        monkeypatch.setenv(key, value)
    repo = open_repository(spec, cache_dir=tmp_path / "cache")
    assert repo.ensure_initialised() and repo.snapshots() == []

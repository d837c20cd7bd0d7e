"""SshTarget against the real test sshd on 127.0.0.1 (scripts/services.sh), which runs on this same machine: every
answer is compared with LocalTarget("/"). Host keys are refused when unknown or changed; nothing is written."""

import getpass
import os
import pwd
import socket
import time
from pathlib import Path

import asyncssh
import pytest
import yaml

from tasks.compliance.evaluate import PolicyResult, evaluate_policy
from tasks.compliance.policy import Policy, load_policy
from tasks.compliance.ssh_target import HostKeyError, SshTarget, UnreachableError, connect_host
from tasks.compliance.target import LocalTarget, TargetError
from tasks.inventory.model import Host, Ssh

USER = getpass.getuser()  # services.sh authorizes the client key for the user that started sshd: the test user


def _ssh(ssh_server, **changes) -> Ssh:
    port, key, known_hosts = ssh_server
    return Ssh(**{"user": USER, "port": port, "key": key, "known_hosts": known_hosts, **changes})


def _host() -> Host:
    return Host(name="loopback", address="127.0.0.1", roles=("db",))


@pytest.fixture(scope="module")
def remote(ssh_server):
    with connect_host(_host(), _ssh(ssh_server), timeout=10) as target:
        yield target


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """Files, links and directories to compare (written here by the test, read there through SFTP)."""
    root = tmp_path_factory.mktemp("ssh-tree")
    (root / "etc/conf.d/sub").mkdir(parents=True)
    (root / "etc/app.conf").write_text("# comment\nkey = 1\nPermitRootLogin no\n")
    (root / "etc/conf.d/a.conf").write_text("key = 2\n")
    (root / "etc/conf.d/sub/b.conf").write_text("other\r\nkey = 3\r\n")
    (root / "etc/conf.d/notes.txt").write_text("key = 4\n")
    (root / "etc/latin1").write_bytes("caf\xe9\n".encode("latin-1"))
    (root / "etc/empty").write_text("")
    (root / "etc/link").symlink_to("app.conf")
    (root / "etc/dirlink").symlink_to("conf.d")
    (root / "etc/broken").symlink_to("nowhere")
    return root


def _answers(target, path: str) -> dict[str, object]:
    def ask(method):
        try:
            return getattr(target, method)(path)
        except TargetError as exc:
            return f"TargetError: {type(exc).__name__}"

    return {m: ask(m) for m in ("read_lines", "is_file", "is_dir", "is_symlink", "exists", "list_dir")}


SYSTEM_PATHS = ["/etc/passwd", "/etc/os-release", "/proc/sys/kernel/ostype", "/proc/sys/net/ipv4/ip_forward",
                "/etc/nope", "/etc/nope/deeper", "/etc", "/etc/ssh", "/bin", "/usr/bin/env", "/", "etc/hostname"]
TREE_PATHS = ["etc/app.conf", "etc/conf.d", "etc/conf.d/sub/b.conf", "etc/latin1", "etc/empty", "etc/link",
              "etc/dirlink", "etc/broken", "etc/missing", "etc/conf.d/../app.conf"]


@pytest.mark.parametrize("path", SYSTEM_PATHS)
def test_system_files_same_as_local(remote, path):
    assert _answers(remote, path) == _answers(LocalTarget(), path)


@pytest.mark.parametrize("path", TREE_PATHS)
def test_tree_same_as_local(remote, tree, path):
    full = f"{tree}/{path}"
    assert _answers(remote, full) == _answers(LocalTarget(), full)


def test_file_kinds(remote, tree):
    assert remote.read_lines(f"{tree}/etc/missing") is None
    assert remote.read_lines(f"{tree}/etc/latin1") == ["caf\ufffd"]
    assert remote.read_lines(f"{tree}/etc/conf.d/sub/b.conf") == ["other", "key = 3"]
    assert remote.read_lines("/proc/sys/kernel/ostype") == ["Linux"]  # size 0 in stat: read to EOF
    assert remote.list_dir(f"{tree}/etc/dirlink") == ["a.conf", "notes.txt", "sub"]
    assert remote.is_symlink(f"{tree}/etc/broken") and not remote.exists(f"{tree}/etc/broken")
    with pytest.raises(TargetError, match="not a regular file"):
        remote.read_lines(str(tree))


def test_processes_same_as_local(remote):
    before = set(LocalTarget().processes())
    over_ssh = remote.processes()
    after = set(LocalTarget().processes())
    # processes that lived through the remote listing; a kworker's name follows the work it is doing
    stable = {p for p in before & after if not p.startswith("kworker/")}
    assert "sshd" in over_ssh
    assert any("sshd_config" in p for p in over_ssh)  # the test sshd's command line
    assert stable - set(over_ssh) == set()


@pytest.mark.parametrize(
    "command",
    ["uname -s", "id -u", "cat /etc/hostname", "ls /etc/nope", "sh -c 'echo out; echo err >&2; exit 3'",
     "no-such-command-astrolab", "/etc/passwd", "", "echo 'unbalanced", "printf 'a\\nb\\n'"],
)
def test_commands_same_as_local(remote, command):
    assert remote.run(command, 10) == LocalTarget().run(command, 10)


def test_command_not_found_is_none(remote):
    assert remote.run("no-such-command-astrolab --version", 5) is None


def test_command_timeout(remote):
    started = time.monotonic()
    result = remote.run("sleep 5", 0.5)
    assert result is not None and result.timed_out
    assert time.monotonic() - started < 3
    assert LocalTarget().run("sleep 5", 0.5) == result
    assert remote.run("echo still usable", 5).stdout == ["still usable"]


def test_commands_go_through_the_login_shell(remote):
    """Documented difference: the SSH server runs the string with the user's shell; LocalTarget splits it."""
    assert LocalTarget().run("echo a && echo b", 5).stdout == ["a && echo b"]
    assert remote.run("echo a && echo b", 5).stdout == ["a", "b"]


POLICY = {
    "policy": {"id": "ssh_parity", "name": "SSH parity", "file": "ssh_parity.yml", "description": "tiny"},
    "requirements": {"title": "Linux", "condition": "all", "rules": ["f:/proc/sys/kernel/ostype -> r:Linux"]},
    "variables": {"$conf": "TREE/etc/app.conf,TREE/etc/nope.conf"},
    "checks": [
        {"id": 1, "title": "passwd has root", "condition": "all", "rules": ["f:/etc/passwd -> r:^root:"]},
        {"id": 2, "title": "no empty passwords", "condition": "all", "rules": ["not f:/etc/shadow -> r:^\\w+::"]},
        {"id": 3, "title": "missing file", "condition": "all", "rules": ["f:/etc/nope-astrolab"]},
        {"id": 4, "title": "content of a missing file", "condition": "all", "rules": ["f:/etc/nope -> r:x"]},
        {"id": 5, "title": "root login", "condition": "any", "rules": ["f:$conf -> r:^PermitRootLogin\\s+no"]},
        {"id": 6, "title": "dirs", "condition": "all", "rules": ["d:/etc", "d:TREE/etc/conf.d", "not d:/nope"]},
        {"id": 7, "title": "conf walk", "condition": "all",
         "rules": ["d:TREE/etc/conf.d -> r:\\.conf$ -> r:^key = 3", "not d:TREE/etc -> r:\\.txt$ -> r:^key = 5"]},
        {"id": 8, "title": "sshd runs", "condition": "all", "rules": ["p:sshd", "not p:no-such-daemon-astrolab"]},
        {"id": 9, "title": "kernel", "condition": "all",
         "rules": ["c:uname -s -> r:Linux", "c:id -u -> n:^(\\d+) compare >= 0"]},
        {"id": 10, "title": "missing command", "condition": "any", "rules": ["c:no-such-command-astrolab -> r:x"]},
        {"id": 11, "title": "none", "condition": "none", "rules": ["f:/etc/passwd -> r:^nobody-astrolab:"]},
        {"id": 12, "title": "symlinked file", "condition": "all", "rules": ["f:TREE/etc/link -> r:^key"]},
    ],
}


@pytest.fixture
def policy(tree, tmp_path) -> Policy:
    path = tmp_path / "ssh_parity.yml"
    path.write_text(yaml.safe_dump(POLICY).replace("TREE", str(tree)))
    return load_policy(path)


def _comparable(result: PolicyResult):
    checks = [(c.id, c.status, c.reason, [(r.rule, r.status, r.reason, r.evidence) for r in c.rules])
              for c in result.checks]
    return result.applicable, result.score, result.passed, result.failed, result.not_applicable, checks


def test_policy_same_as_local(remote, policy):
    over_ssh = evaluate_policy(policy, remote, command_timeout=10)
    local = evaluate_policy(policy, LocalTarget(), command_timeout=10)
    assert over_ssh.applicable and over_ssh.passed and over_ssh.failed and over_ssh.not_applicable
    assert _comparable(over_ssh) == _comparable(local)


# -- host keys and reachability -----------------------------------------------------------------------------------


def _host_key(known_hosts: Path) -> asyncssh.SSHKey:
    return asyncssh.import_public_key(" ".join(known_hosts.read_text().split()[1:3]))


def _refused(ssh: Ssh, policy: Policy) -> HostKeyError:
    evaluated = []
    with pytest.raises(HostKeyError) as caught, connect_host(_host(), ssh, timeout=10) as target:
        evaluated.append(evaluate_policy(policy, target))
    assert evaluated == []
    message = str(caught.value)
    assert "\n" not in message and "loopback (127.0.0.1:" in message and "refusing to connect" in message
    return caught.value


def test_unknown_host_key_refused(ssh_server, policy, tmp_path):
    port, _, known_hosts = ssh_server
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    error = _refused(_ssh(ssh_server, known_hosts=empty), policy)
    message = str(error)
    assert f"is not in {empty}" in message
    assert f"ssh-keyscan -p {port} 127.0.0.1 >> {empty}" in message
    assert _host_key(known_hosts).get_fingerprint("sha256") in message
    assert empty.read_text() == ""  # never accepted
    _refused(_ssh(ssh_server, known_hosts=tmp_path / "absent"), policy)
    assert not (tmp_path / "absent").exists()


def test_changed_host_key_refused(ssh_server, policy, tmp_path):
    port, _, known_hosts = ssh_server
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    changed = tmp_path / "known_hosts"
    changed.write_text(f"[127.0.0.1]:{port} {other}\n")
    message = str(_refused(_ssh(ssh_server, known_hosts=changed), policy))
    assert f"does not match {changed}" in message and "ssh-keygen -R" in message
    assert _host_key(known_hosts).get_fingerprint("sha256") in message
    assert changed.read_text() == f"[127.0.0.1]:{port} {other}\n"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_closed_port_unreachable(ssh_server):
    port = _free_port()
    started = time.monotonic()
    with pytest.raises(UnreachableError, match=f"^cannot reach loopback \\(127.0.0.1:{port}\\): connection refused$"):
        connect_host(_host(), _ssh(ssh_server, port=port), timeout=10)
    assert time.monotonic() - started < 2


def test_silent_port_times_out(ssh_server):
    with socket.socket() as listener:  # accepts TCP but never says a word
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(UnreachableError, match=f"127.0.0.1:{port}\\): timed out after 0.5s"):
            connect_host(_host(), _ssh(ssh_server, port=port), timeout=0.5)
        assert time.monotonic() - started < 3


def test_wrong_key_refused(ssh_server, tmp_path):
    key = tmp_path / "other_ed25519"
    asyncssh.generate_private_key("ssh-ed25519").write_private_key(key)
    with pytest.raises(TargetError, match="refused public key authentication"):
        connect_host(_host(), _ssh(ssh_server, key=key), timeout=10)


def test_closed_target_says_so(ssh_server):
    target = SshTarget("127.0.0.1", user=USER, port=ssh_server[0], key=ssh_server[1], known_hosts=ssh_server[2])
    target.close()
    target.close()
    with pytest.raises(TargetError, match="is closed"):
        target.is_file("/etc/passwd")


# -- read-only ------------------------------------------------------------------------------------------------------


def _snapshot(directories: list[Path]) -> dict[str, int]:
    """mtime of each directory and of each entry in it (not followed)."""
    seen: dict[str, int] = {}
    for directory in directories:
        seen[str(directory)] = directory.stat().st_mtime_ns
        for entry in os.scandir(directory):
            try:
                seen[entry.path] = entry.stat(follow_symlinks=False).st_mtime_ns
            except FileNotFoundError:
                continue
    return seen


def _changes(before: dict[str, int], after: dict[str, int]) -> list[str]:
    return sorted(path for path in before.keys() | after.keys() if before.get(path) != after.get(path))


def test_scan_writes_nothing(ssh_server, policy, tree):
    """Home and /tmp look the same before and after a whole scan. Others share this machine's /tmp, so a scan is
    retried when something changed; a scan that wrote would change them every time."""
    home = Path(pwd.getpwnam(USER).pw_dir)
    directories = [home, Path("/tmp"), tree, tree / "etc"]
    log = ssh_server[2].parent / "sftp.log"  # services.sh has sftp-server log each request there
    log_start = log.stat().st_size if log.exists() else 0
    attempts = []
    for _ in range(5):
        before = _snapshot(directories)
        with connect_host(_host(), _ssh(ssh_server), timeout=10) as target:
            result = evaluate_policy(policy, target, command_timeout=10)
            target.list_dir(str(home))
            target.list_dir("/tmp")
        attempts.append(_changes(before, _snapshot(directories)))
        if not attempts[-1]:
            break
    assert result.applicable
    assert [] in attempts, f"every scan changed something: {attempts}"
    if log.exists():
        requests = log.read_bytes()[log_start:].decode(errors="replace").splitlines()
        opened = [line for line in requests if line.startswith("open ")]
        closed = [line for line in requests if line.startswith("close ")]
        assert opened and all(" flags READ mode " in line for line in opened), opened
        assert closed and all(line.endswith(" written 0") for line in closed), closed
        changing = ("mkdir", "rmdir", "remove", "rename", "posix-rename", "set ", "symlink", "hardlink", "fsync")
        assert [line for line in requests if line.startswith(changing)] == []


def test_connect_host_needs_an_ssh_host(ssh_server):
    with pytest.raises(ValueError, match="host here has connection 'local', not ssh"):
        connect_host(Host(name="here", connection="local"), _ssh(ssh_server))

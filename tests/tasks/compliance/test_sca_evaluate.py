"""Rule, check and policy evaluation against small root filesystems in tmp_path.

Condition cases are ported from wazuh/wazuh src/wazuh_modules/sca/sca_impl/tests/check_condition_evaluator_test.cpp,
pattern cases from sca_impl/tests/sca_utils_test.cpp and file/directory cases from file_rule_evaluator_test.cpp and
directory_rule_evaluator_test.cpp (same inputs, same expected results unless a comment says 4.x differs).
"""

import sys
from pathlib import Path

import pytest

from tasks.compliance.evaluate import (
    RuleResult,
    Status,
    combine,
    evaluate_policy,
    evaluate_rule,
    score,
)
from tasks.compliance.policy import parse_policy
from tasks.compliance.rules import parse_rule
from tasks.compliance.target import CommandResult, LocalTarget

P, F, NA = Status.PASSED, Status.FAILED, Status.NOT_APPLICABLE


@pytest.fixture
def root(tmp_path: Path) -> Path:
    files = {
        "etc/ssh/sshd_config": "# comment\nPort 22\nPermitRootLogin no\nMaxAuthTries 10\nProtocol 2\n",
        "etc/login.defs": "PASS_WARN_AGE\t7\n",
        "etc/passwd": "root:x:0:0:root:/root:/bin/bash\nuser:x:0:0::/home/user:/bin/sh\n",
        "etc/audit/rules.d/50-scope.rules": "-w /etc/sudoers -p wa -k scope\n",
        "etc/audit/rules.d/sub/60-time.rules": "-a always,exit -F arch=b64 -S adjtimex -k time-change\n",
        "etc/audit/rules.d/notes.txt": "-w /etc/shadow -p wa -k identity\n",
        "etc/empty": "",
        "proc/sys/net/ipv4/ip_forward": "0\n",
        "proc/123/comm": "sshd\n",
        "proc/123/cmdline": "/usr/sbin/sshd\0-D\0",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / "etc/cron.d").mkdir()
    (tmp_path / "etc/sshd_link").symlink_to("/etc/ssh/sshd_config")  # absolute link resolved inside the root
    return tmp_path


def run(rule: str, root: Path, variables: dict[str, str] | None = None) -> RuleResult:
    return evaluate_rule(parse_rule(rule, variables), LocalTarget(root))


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        # f: existence and content
        ("f:/etc/passwd", P),
        ("f:/etc/nope", F),
        ("not f:/etc/nope", P),
        ("f:/etc/cron.d", NA),  # exists but is not a regular file
        ("f:/etc/nope,/etc/passwd", P),
        (r"f:/etc/ssh/sshd_config -> r:^PermitRootLogin\s+no", P),
        (r"f:/etc/ssh/sshd_config -> r:^PasswordAuthentication\s+no", F),
        ("f:/etc/nope -> r:foo", NA),  # content rule on a missing file
        ("not f:/etc/nope -> r:foo", NA),  # not leaves N/A alone
        (r"f:/etc/nope,/etc/ssh/sshd_config -> r:^Port", P),  # a later file can still decide
        (r"f:/etc/nope,/etc/ssh/sshd_config -> r:^Nothing", NA),
        ("f:/proc/sys/net/ipv4/ip_forward -> 0", P),
        ("f:/proc/sys/net/ipv4/ip_forward -> 1", F),
        ("f:/etc/sshd_link -> r:^Port 22", P),
        ("f:/etc/empty -> !r:^#", F),  # no lines at all
        # !r: matches any line that does NOT match (4.x); && needs all on the same line
        ("f:/etc/ssh/sshd_config -> !r:^#", P),
        ("f:/etc/ssh/sshd_config -> !r:^# && r:Protocol && r:2", P),
        ("f:/etc/ssh/sshd_config -> r:Port && r:no", F),  # on different lines
        (r"not f:/etc/passwd -> !r:^# && !r:^root: && r:^\w+:\w+:0:", F),  # sca_utils_test DocExample_UIDCheck
        # n: compare
        (r"f:/etc/ssh/sshd_config -> n:^MaxAuthTries\s(\d+) compare <= 4", F),
        (r"f:/etc/ssh/sshd_config -> n:^MaxAuthTries\s(\d+) compare == 10", P),
        (r"f:/etc/login.defs -> n:^\s*PASS_WARN_AGE\s*\t*(\d+) compare >= 7", P),
        (r"f:/etc/login.defs -> n:^\s*PASS_WARN_AGE\s*\t*(\d+) compare > 7", F),
        # d: existence and chains (walked recursively; names by OS_Regex or OS_Match)
        ("d:/etc/cron.d", P),
        ("d:/etc/nope", F),
        ("d:/etc/passwd", NA),
        (r"d:/etc/audit/rules.d -> r:\.+.rules$ -> r:^-w && r:/etc/sudoers && r:-p wa && r:-k scope", P),
        (r"d:/etc/audit/rules.d -> r:\.+.rules$ -> r:adjtimex", P),  # found in a subdirectory
        (r"d:/etc/audit/rules.d -> r:\.+.rules$ -> r:/etc/shadow", F),  # only in notes.txt
        ("d:/etc/audit/rules.d -> notes -> r:/etc/shadow", P),
        (r"d:/etc/audit/rules.d -> r:\.+.conf$", F),
        (r"d:/etc/nope -> r:\.+.rules$ -> r:x", NA),
        ("d:/etc/nope,/etc/audit/rules.d -> scope.rules", P),
        # p: from /proc under the root: names and command lines
        ("p:sshd", P),
        ("p:/usr/sbin/sshd -D", P),
        ("not p:sshd", F),
        ("p:cron", F),
        ("p:r:^/usr/sbin/ssh", P),
        # r: is Windows-only
        (r"r:HKLM\SYSTEM\CurrentControlSet\Control\Lsa -> LimitBlankPasswordUse -> 1", NA),
        # c: cannot run on a mounted root
        ("c:sshd -T -> r:^PermitRootLogin", NA),
    ],
)
def test_rules(root: Path, rule: str, expected: Status) -> None:
    assert run(rule, root).status is expected


def test_evidence_and_reasons(root: Path) -> None:
    passed = run(r"f:/etc/ssh/sshd_config -> r:^PermitRootLogin", root)
    assert passed.evidence == "/etc/ssh/sshd_config: PermitRootLogin no"
    missing = run("f:/etc/nope -> r:foo", root)
    assert "/etc/nope" in missing.reason
    assert "Windows-only" in run(r"r:HKLM\X -> Y", root).reason
    assert "mounted root" in run("c:true", root).reason
    long_line = run(r"f:/etc/long -> r:^x", _with_file(root, "etc/long", "x" * 500))
    assert len(long_line.evidence) == 200 and long_line.evidence.endswith("...")


def _with_file(root: Path, name: str, text: str) -> Path:
    (root / name).write_text(text)
    return root


def test_variables_expand_to_several_files(root: Path) -> None:
    variables = {"$sshd_file": "/etc/sshd_config,/etc/ssh/sshd_config"}
    assert run(r"f:$sshd_file -> r:^Port\s+22", root, variables).status is P


def test_symlinks_never_leave_the_root(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/escape").symlink_to("../../../../../../etc/hostname")
    target = LocalTarget(tmp_path)
    assert target.read_lines("/etc/escape") is None  # resolved to <root>/etc/hostname, which does not exist
    assert target.read_lines("/../../etc/escape") is None


@pytest.mark.skipif(sys.platform != "linux", reason="runs host commands")
def test_commands_on_the_host() -> None:
    host = LocalTarget()
    assert evaluate_rule(parse_rule("c:echo PermitRootLogin no -> r:^PermitRootLogin\\s+no"), host).status is P
    assert evaluate_rule(parse_rule("c:echo MaxAuthTries 3 -> n:^MaxAuthTries\\s(\\d+) compare <= 4"), host).status is P
    assert evaluate_rule(parse_rule("not c:echo enabled -> r:^enabled"), host).status is F
    assert evaluate_rule(parse_rule("c:sh -c 'echo oops >&2' -> oops"), host).status is P  # stderr counts (wm_exec)
    missing = evaluate_rule(parse_rule("c:/nonexistent/astrolab-cmd -> r:x"), host)
    assert missing.status is NA and "run command" in missing.reason
    slow = evaluate_rule(parse_rule("c:sleep 5 -> r:x"), host, command_timeout=0.2)
    assert slow.status is NA and "Timeout" in slow.reason


def test_local_target_run_returns_lines() -> None:
    result = LocalTarget().run("printf 'a\\nb\\n'", 5)
    assert result == CommandResult(["a", "b"], [], 0)


def r(status: Status) -> RuleResult:
    return RuleResult("x", status)


# check_condition_evaluator_test.cpp: Found -> passed, NotFound -> failed, Invalid -> not applicable
@pytest.mark.parametrize(
    ("condition", "rules", "expected", "evaluated"),
    [
        ("all", [P, P, P], P, 3),
        ("all", [P, P, P, NA], NA, 4),
        ("all", [P, P, P, NA, F], F, 5),  # AllConditionBehavior: a later NotFound still fails
        ("all", [F, P], F, 1),  # AddResultStopsAfterResultDetermined
        ("any", [F, F], F, 2),
        ("any", [F, F, P], P, 3),
        ("any", [P, F], P, 1),
        ("any", [F, NA], NA, 2),  # AnyConditionWithInvalidCanBeTrueAsLongAsOnePassed
        ("any", [F, NA, P], P, 3),
        ("none", [F, F], P, 2),
        ("none", [F, F, NA], NA, 3),
        ("none", [F, F, NA, P], F, 4),
        ("none", [P, NA], F, 1),
    ],
)
def test_condition_truth_table(condition: str, rules: list[Status], expected: Status, evaluated: int) -> None:
    status, seen = combine(condition, (r(s) for s in rules))  # type: ignore[arg-type]
    assert status is expected
    assert len(seen) == evaluated  # short-circuit: later rules are not evaluated


@pytest.mark.parametrize(("passed", "failed", "expected"), [(0, 0, 0.0), (3, 1, 75.0), (1, 2, 100 / 3), (5, 0, 100.0)])
def test_score(passed: int, failed: int, expected: float) -> None:
    assert score(passed, failed) == pytest.approx(expected)


def _policy(requirement: str) -> dict:
    return {
        "policy": {"id": "lab", "name": "Lab"},
        "requirements": {"title": "Linux host", "description": "", "condition": "all", "rules": [requirement]},
        "checks": [
            {"id": 1, "title": "root login", "condition": "all", "compliance": [{"cis_csc_v8": ["5.4"]}],
             "rules": [r"f:/etc/ssh/sshd_config -> r:^PermitRootLogin\s+no"]},
            {"id": 2, "title": "auth tries", "condition": "all",
             "rules": [r"f:/etc/ssh/sshd_config -> n:^MaxAuthTries\s(\d+) compare <= 4"]},
            {"id": 3, "title": "no uid 0 but root", "condition": "none",
             "rules": [r"f:/etc/passwd -> !r:^root: && r:^\w+:\w+:0:"]},
            {"id": 4, "title": "sshd via command", "condition": "any", "rules": ["c:sshd -T -> r:^permitrootlogin"]},
            {"id": 5, "title": "forwarding off", "condition": "any",
             "rules": ["f:/etc/nope -> 0", "f:/proc/sys/net/ipv4/ip_forward -> 0"]},
        ],
    }  # fmt: skip


def test_policy_result(root: Path) -> None:
    result = evaluate_policy(parse_policy(_policy("d:/etc/ssh")), LocalTarget(root))
    statuses = {c.id: c.status for c in result.checks}
    assert statuses == {1: P, 2: F, 3: F, 4: NA, 5: P}
    assert (result.passed, result.failed, result.not_applicable) == (2, 2, 1)
    assert result.score == 50.0 and result.applicable
    assert result.checks[0].compliance == (("cis_csc_v8", ("5.4",)),)
    assert "mounted root" in result.checks[3].reason
    assert result.start_time <= result.end_time


@pytest.mark.parametrize(("requirement", "why"), [("d:/etc/nope", "failed"), ("f:/etc/nope -> r:x", "not applicable")])
def test_failed_requirements_make_the_policy_not_applicable(root: Path, requirement: str, why: str) -> None:
    result = evaluate_policy(parse_policy(_policy(requirement)), LocalTarget(root))
    assert not result.applicable and result.checks == ()
    assert result.reason.startswith(f"requirements not met (Linux host): {why}")
    assert (result.passed, result.failed, result.score) == (0, 0, 0.0)

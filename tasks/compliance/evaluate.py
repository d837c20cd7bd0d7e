"""Evaluate SCA rules, checks and whole policies against a Target, as Wazuh 4.x wm_sca.c does.

A rule first yields FOUND / NOT_FOUND / INVALID; ``not`` swaps FOUND and NOT_FOUND and leaves INVALID alone.
The check condition then aggregates, stopping at the first deciding rule:
``all`` stops on NOT_FOUND, ``any`` and ``none`` stop on FOUND; an INVALID rule met before that makes the
check not applicable; ``none`` finally inverts a decided result. Score = passed / (passed + failed) * 100.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum, StrEnum
from pathlib import PurePosixPath

from tasks.compliance.policy import Check, Condition, Policy
from tasks.compliance.rules import Content, Rule, RuleType, Undecidable
from tasks.compliance.target import Target, TargetError

EVIDENCE_CHARS = 200
DEFAULT_COMMAND_TIMEOUT = 30.0  # sca.commands_timeout in 4.x internal_options.conf


class Status(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    NOT_APPLICABLE = "not applicable"


class _Found(Enum):
    FOUND = "found"
    NOT_FOUND = "not found"
    INVALID = "invalid"


_STATUS = {_Found.FOUND: Status.PASSED, _Found.NOT_FOUND: Status.FAILED, _Found.INVALID: Status.NOT_APPLICABLE}


@dataclass(frozen=True)
class RuleResult:
    """One rule's outcome (after ``not``), why it is not applicable, and the line or output that decided it."""

    rule: str
    status: Status
    reason: str = ""
    evidence: str = ""


@dataclass(frozen=True)
class CheckResult:
    id: int
    title: str
    status: Status
    reason: str
    rules: tuple[RuleResult, ...]
    compliance: tuple[tuple[str, tuple[str, ...]], ...] = ()
    remediation: str = ""


@dataclass(frozen=True)
class PolicyResult:
    policy_id: str
    name: str
    source: str
    applicable: bool
    reason: str
    checks: tuple[CheckResult, ...]
    passed: int
    failed: int
    not_applicable: int
    score: float
    start_time: datetime
    end_time: datetime
    requirements: CheckResult | None = None


@dataclass
class _Outcome:
    found: _Found
    reason: str = ""
    evidence: str = ""
    notes: list[str] = field(default_factory=list)


def _trim(text: str) -> str:
    return text if len(text) <= EVIDENCE_CHARS else text[: EVIDENCE_CHARS - 3] + "..."


def _merge(outcomes: Iterable[Callable[[], _Outcome]]) -> _Outcome:
    """Across the targets of one rule: the first FOUND wins; otherwise any INVALID; otherwise NOT_FOUND."""
    merged = _Outcome(_Found.NOT_FOUND)
    for make in outcomes:
        outcome = make()
        if outcome.found is _Found.FOUND:
            return outcome
        if outcome.found is _Found.INVALID:
            if merged.found is not _Found.INVALID:
                merged = outcome
        elif merged.found is _Found.NOT_FOUND and not merged.evidence:
            merged = outcome
    return merged


def scan_lines(lines: Iterable[str], content: Content, where: str) -> _Outcome:
    """FOUND at the first line on which all operators hold (Wazuh reads line by line)."""
    for line in lines:
        line = line.rstrip("\r\n")
        try:
            if content.matches(line):
                return _Outcome(_Found.FOUND, evidence=_trim(f"{where}: {line}"))
        except Undecidable as exc:
            return _Outcome(_Found.INVALID, reason=str(exc), evidence=_trim(f"{where}: {line}"))
    return _Outcome(_Found.NOT_FOUND, evidence=_trim(f"{where}: no line matches '{content.text}'"))


def _file_outcome(target: Target, path: str, content: Content | None) -> _Outcome:
    try:
        if content is None:
            if target.is_file(path):
                return _Outcome(_Found.FOUND, evidence=f"{path} exists")
            if target.exists(path):
                return _Outcome(_Found.INVALID, reason=f"{path} is not a regular file")
            return _Outcome(_Found.NOT_FOUND, evidence=f"{path} does not exist")
        lines = target.read_lines(path)
    except TargetError as exc:
        return _Outcome(_Found.INVALID, reason=str(exc))
    if lines is None:
        return _Outcome(_Found.INVALID, reason=f"Could not open file '{path}': it does not exist")
    return scan_lines(lines, content, path)


def _walk(target: Target, directory: str, rule: Rule) -> _Outcome:
    """d: DIR -> NAME [-> CONTENT]: walk DIR recursively; entries whose name matches are checked like f: rules."""
    assert rule.name_filter is not None
    try:
        names = target.list_dir(directory)
    except TargetError as exc:
        return _Outcome(_Found.INVALID, reason=str(exc))
    if names is None:
        return _Outcome(_Found.INVALID, reason=f"Could not open dir '{directory}'")
    checks: list[Callable[[], _Outcome]] = []
    for name in names:
        path = str(PurePosixPath(directory, name))
        if target.is_dir(path):
            if not target.is_symlink(path):  # a linked directory could loop; 5.0 skips symlinks too
                checks.append(lambda p=path: _walk(target, p, rule))  # type: ignore[misc]
        elif rule.name_filter.matches(name):
            checks.append(lambda p=path: _file_outcome(target, p, rule.content))  # type: ignore[misc]
    outcome = _merge(checks)
    if outcome.found is _Found.NOT_FOUND and not outcome.evidence:
        outcome.evidence = _trim(f"{directory}: no entry named '{rule.name_filter.text}' matches")
    return outcome


def _dir_outcome(target: Target, directory: str, rule: Rule) -> _Outcome:
    if rule.name_filter is not None:
        return _walk(target, directory, rule)
    try:
        if target.is_dir(directory):
            return _Outcome(_Found.FOUND, evidence=f"{directory} is a directory")
        if target.exists(directory):
            return _Outcome(_Found.INVALID, reason=f"{directory} exists but is not a directory")
    except TargetError as exc:
        return _Outcome(_Found.INVALID, reason=str(exc))
    return _Outcome(_Found.NOT_FOUND, evidence=f"{directory} does not exist")


def _process_outcome(target: Target, rule: Rule) -> _Outcome:
    assert rule.content is not None
    try:
        processes = target.processes()
    except TargetError as exc:
        return _Outcome(_Found.INVALID, reason=str(exc))
    if not processes:
        return _Outcome(_Found.INVALID, reason=f"no process list available on {target.name}")
    outcome = scan_lines(processes, rule.content, "process")
    if outcome.found is _Found.NOT_FOUND:
        outcome.evidence = _trim(f"no running process matches '{rule.content.text}'")
    return outcome


def _command_outcome(target: Target, rule: Rule, timeout: float) -> _Outcome:
    command = rule.targets[0]
    try:
        result = target.run(command, timeout)
    except TargetError as exc:
        return _Outcome(_Found.INVALID, reason=f"command rules are not applicable: {exc}")
    if result is None:
        return _Outcome(_Found.INVALID, reason=f"Invalid path or wrong permissions to run command '{command}'")
    if result.timed_out:
        return _Outcome(_Found.INVALID, reason=f"Timeout of {timeout:g}s overtaken running command '{command}'")
    if rule.content is None:
        return _Outcome(_Found.FOUND, evidence=_trim(f"$ {command}: exit {result.exit_code}"))
    # wm_exec sends stderr to the same pipe as stdout, so both are searched
    return scan_lines([*result.stdout, *result.stderr], rule.content, f"$ {command}")


def evaluate_rule(rule: Rule, target: Target, *, command_timeout: float = DEFAULT_COMMAND_TIMEOUT) -> RuleResult:
    """Evaluate one parsed rule on a target; ``not`` inverts passed/failed, not applicable stays."""
    if rule.problem:
        return RuleResult(rule.text, Status.NOT_APPLICABLE, f"malformed rule: {rule.problem}")
    if rule.type is RuleType.FILE:
        outcome = _merge(lambda p=p: _file_outcome(target, p, rule.content) for p in rule.targets)  # type: ignore[misc]
    elif rule.type is RuleType.DIRECTORY:
        outcome = _merge(lambda d=d: _dir_outcome(target, d, rule) for d in rule.targets)  # type: ignore[misc]
    elif rule.type is RuleType.PROCESS:
        outcome = _process_outcome(target, rule)
    elif rule.type is RuleType.COMMAND:
        outcome = _command_outcome(target, rule, command_timeout)
    else:
        outcome = _Outcome(_Found.INVALID, reason="not applicable: registry rules are Windows-only")
    found = outcome.found
    if rule.negated and found is not _Found.INVALID:
        found = _Found.NOT_FOUND if found is _Found.FOUND else _Found.FOUND
    return RuleResult(rule.text, _STATUS[found], outcome.reason, outcome.evidence)


def combine(condition: Condition, results: Iterable[RuleResult]) -> tuple[Status, tuple[RuleResult, ...]]:
    """Aggregate rule results lazily by Wazuh's truth table; returns the status and the rules actually evaluated."""
    decided: Status | None = None
    invalid = False
    seen: list[RuleResult] = []
    for result in results:
        seen.append(result)
        if condition == "all" and result.status is Status.FAILED:
            decided = Status.FAILED
        elif condition == "any" and result.status is Status.PASSED:
            decided = Status.PASSED
        elif condition == "none" and result.status is Status.PASSED:
            decided = Status.FAILED
        if decided is not None:
            return decided, tuple(seen)
        invalid = invalid or result.status is Status.NOT_APPLICABLE
    if invalid:
        return Status.NOT_APPLICABLE, tuple(seen)
    return (Status.FAILED if condition == "any" else Status.PASSED), tuple(seen)


def _evaluate_rules(
    condition: Condition, rules: Iterable[Rule], target: Target, command_timeout: float
) -> tuple[Status, str, tuple[RuleResult, ...]]:
    status, seen = combine(condition, (evaluate_rule(r, target, command_timeout=command_timeout) for r in rules))
    reason = ""
    if status is Status.NOT_APPLICABLE:
        reason = next((r.reason for r in seen if r.status is Status.NOT_APPLICABLE and r.reason), "Unknown reason")
    return status, reason, seen


def evaluate_check(check: Check, target: Target, *, command_timeout: float = DEFAULT_COMMAND_TIMEOUT) -> CheckResult:
    """Evaluate one check's rules under its condition."""
    status, reason, seen = _evaluate_rules(check.condition, check.rules, target, command_timeout)
    return CheckResult(check.id, check.title, status, reason, seen, check.compliance, check.remediation)


def score(passed: int, failed: int) -> float:
    """Wazuh's policy score: passed / (passed + failed) * 100, 0 when nothing passed or failed."""
    return passed * 100.0 / (passed + failed) if passed + failed else 0.0


def evaluate_policy(
    policy: Policy, target: Target, *, command_timeout: float = DEFAULT_COMMAND_TIMEOUT
) -> PolicyResult:
    """Evaluate a policy: its requirements first (not met -> the policy is not applicable), then every check."""
    start = datetime.now(UTC)
    requirements: CheckResult | None = None
    if policy.requirements is not None:
        req = policy.requirements
        status, reason, seen = _evaluate_rules(req.condition, req.rules, target, command_timeout)
        requirements = CheckResult(0, req.title, status, reason, seen)
        if status is not Status.PASSED:
            why = f"requirements not met ({req.title}): {status.value}" + (f": {reason}" if reason else "")
            return PolicyResult(
                policy.info.id, policy.info.name, policy.source, False, why, (), 0, 0, 0, 0.0,
                start, datetime.now(UTC), requirements,
            )  # fmt: skip
    checks = tuple(evaluate_check(c, target, command_timeout=command_timeout) for c in policy.checks)
    passed = sum(c.status is Status.PASSED for c in checks)
    failed = sum(c.status is Status.FAILED for c in checks)
    not_applicable = len(checks) - passed - failed
    return PolicyResult(
        policy.info.id, policy.info.name, policy.source, True, "", checks, passed, failed, not_applicable,
        score(passed, failed), start, datetime.now(UTC), requirements,
    )  # fmt: skip

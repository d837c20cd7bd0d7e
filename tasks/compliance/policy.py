"""Wazuh 4.x SCA policy files (policy / requirements / variables / checks) loaded into typed, validated models."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import yaml

from tasks.compliance.rules import PolicyError, Rule, malformed_rule, parse_rule
from tasks.errors import did_you_mean

Condition = Literal["all", "any", "none"]
CONDITIONS: tuple[str, ...] = ("all", "any", "none")

_POLICY_KEYS = ("id", "file", "name", "description", "references", "regex_type")
_REQUIREMENT_KEYS = ("title", "description", "condition", "rules")
_CHECK_KEYS = (
    "id", "title", "description", "rationale", "remediation", "impact",
    "compliance", "references", "condition", "rules", "regex_type",
)  # fmt: skip
_TOP_KEYS = ("policy", "requirements", "variables", "checks")


@dataclass(frozen=True)
class PolicyInfo:
    id: str
    name: str
    file: str = ""
    description: str = ""
    references: tuple[str, ...] = ()


@dataclass(frozen=True)
class Requirements:
    title: str
    description: str
    condition: Condition
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class Check:
    id: int
    title: str
    condition: Condition
    rules: tuple[Rule, ...]
    description: str = ""
    rationale: str = ""
    remediation: str = ""
    impact: str = ""
    references: tuple[str, ...] = ()
    compliance: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def compliance_ids(self, framework: str) -> tuple[str, ...]:
        """Ids this check maps to in one framework, e.g. ``compliance_ids("cis_csc_v8") == ("5.4",)``."""
        return tuple(i for name, ids in self.compliance if name == framework for i in ids)


@dataclass(frozen=True)
class Policy:
    info: PolicyInfo
    checks: tuple[Check, ...]
    requirements: Requirements | None = None
    variables: tuple[tuple[str, str], ...] = ()
    source: str = ""

    @property
    def problems(self) -> list[str]:
        """One line per rule that cannot be evaluated as written (its check reports not applicable)."""
        rules = [*(self.requirements.rules if self.requirements else ()), *(r for c in self.checks for r in c.rules)]
        return [r.problem for r in rules if r.problem]


def _fail(source: str, where: str, what: str) -> PolicyError:
    return PolicyError(f"{source}: {where}: {what}")


def _check_keys(data: Any, allowed: tuple[str, ...], source: str, where: str) -> dict[str, Any]:
    """The mapping itself, or a PolicyError naming the first unknown key with a did-you-mean hint."""
    if not isinstance(data, dict):
        raise _fail(source, where, f"expected a mapping, got {type(data).__name__}")
    for key in data:
        if key not in allowed:
            raise _fail(source, where, f"unknown key {key!r}{did_you_mean(key, allowed)}")
    return data


def _text(data: dict[str, Any], key: str, source: str, where: str, *, required: bool = False) -> str:
    value = data.get(key)
    if value is None:
        if required:
            raise _fail(source, where, f"missing required key {key!r}")
        return ""
    if not isinstance(value, str | int | float):
        raise _fail(source, where, f"{key!r} must be text, got {type(value).__name__}")
    return str(value)


def _strings(value: Any, source: str, where: str, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str | int | float) for v in value):
        raise _fail(source, where, f"{key!r} must be a list of strings")
    return tuple(str(v) for v in value)


def _condition(data: dict[str, Any], source: str, where: str) -> Condition:
    value = data.get("condition")
    if value not in CONDITIONS:
        raise _fail(source, where, f"condition {value!r} must be one of all, any, none")
    return cast(Condition, value)


def _rules(data: dict[str, Any], variables: dict[str, str], source: str, where: str,
           check_id: int | None) -> tuple[Rule, ...]:
    rules = data.get("rules")
    if not isinstance(rules, list) or not rules:
        raise _fail(source, where, "'rules' must be a non-empty list of rule strings")
    for rule in rules:
        if not isinstance(rule, str):
            raise _fail(source, where, f"rule {rule!r} must be a string")
    parsed = []
    for text in rules:
        try:
            parsed.append(parse_rule(text, variables, source=source, check_id=check_id))
        except PolicyError as problem:
            parsed.append(malformed_rule(text, problem))
    return tuple(parsed)


def _regex_type(data: dict[str, Any], source: str, where: str) -> None:
    engine = data.get("regex_type", "osregex")
    if engine != "osregex":
        raise _fail(source, where, f"regex_type {engine!r} is not supported (only osregex)")


def _compliance(value: Any, source: str, where: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _fail(source, where, "'compliance' must be a list of one-key maps, e.g. - cis_csc_v8: [\"5.4\"]")
    entries = []
    for item in value:
        if not isinstance(item, dict) or len(item) != 1:
            raise _fail(source, where, f"compliance entry {item!r} must be a one-key map")
        ((framework, ids),) = item.items()
        entries.append((str(framework), _strings(ids, source, where, f"compliance.{framework}")))
    return tuple(entries)


def _check(raw: Any, index: int, variables: dict[str, str], source: str) -> Check:
    check_id = raw.get("id") if isinstance(raw, dict) else None
    data = _check_keys(raw, _CHECK_KEYS, source, f"check {check_id}" if check_id is not None else f"checks[{index}]")
    if not isinstance(check_id, int) or isinstance(check_id, bool):
        raise _fail(source, f"checks[{index}]", f"check id {check_id!r} must be an integer")
    where = f"check {check_id}"
    _regex_type(data, source, where)
    return Check(
        id=check_id,
        title=_text(data, "title", source, where, required=True),
        condition=_condition(data, source, where),
        rules=_rules(data, variables, source, where, check_id),
        description=_text(data, "description", source, where),
        rationale=_text(data, "rationale", source, where),
        remediation=_text(data, "remediation", source, where),
        impact=_text(data, "impact", source, where),
        references=_strings(data.get("references"), source, where, "references"),
        compliance=_compliance(data.get("compliance"), source, where),
    )


def parse_policy(document: Any, source: str = "<policy>") -> Policy:
    """Validate a loaded YAML document as a policy; raises PolicyError naming source and problem."""
    top = _check_keys(document, _TOP_KEYS, source, "top level")
    info_raw = _check_keys(top.get("policy"), _POLICY_KEYS, source, "policy")
    _regex_type(info_raw, source, "policy")
    info = PolicyInfo(
        id=_text(info_raw, "id", source, "policy", required=True),
        name=_text(info_raw, "name", source, "policy", required=True),
        file=_text(info_raw, "file", source, "policy"),
        description=_text(info_raw, "description", source, "policy"),
        references=_strings(info_raw.get("references"), source, "policy", "references"),
    )

    variables_raw = top.get("variables") or {}
    if not isinstance(variables_raw, dict):
        raise _fail(source, "variables", "expected a mapping of $name: value")
    variables: dict[str, str] = {}
    for name, value in variables_raw.items():
        if not str(name).startswith("$"):
            raise _fail(source, "variables", f"variable {name!r} must start with '$'")
        variables[str(name)] = ",".join(str(v) for v in value) if isinstance(value, list) else str(value)

    requirements = None
    if top.get("requirements") is not None:
        req = _check_keys(top["requirements"], _REQUIREMENT_KEYS, source, "requirements")
        requirements = Requirements(
            title=_text(req, "title", source, "requirements", required=True),
            description=_text(req, "description", source, "requirements"),
            condition=_condition(req, source, "requirements"),
            rules=_rules(req, variables, source, "requirements", None),
        )

    checks_raw = top.get("checks")
    if not isinstance(checks_raw, list) or not checks_raw:
        raise _fail(source, "checks", "'checks' must be a non-empty list")
    checks = tuple(_check(raw, i, variables, source) for i, raw in enumerate(checks_raw))
    seen: set[int] = set()
    for check in checks:
        if check.id in seen:
            raise _fail(source, f"check {check.id}", "duplicate check id")
        seen.add(check.id)
    return Policy(info, checks, requirements, tuple(variables.items()), source)


def load_policy(path: Path) -> Policy:
    """Read and validate one policy YAML file."""
    try:
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise PolicyError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    return parse_policy(document, str(path))


def load_policies(directories: Iterable[Path], errors: list[str] | None = None) -> list[Policy]:
    """Load every *.yml / *.yaml under the directories (or policy files named directly); policy ids and check ids
    must be unique across files. With ``errors``, a bad file is skipped and its one-line error appended there
    (so one malformed policy does not stop a scan); without, the first bad file raises PolicyError."""
    policies: list[Policy] = []
    policy_ids: dict[str, str] = {}
    check_ids: dict[int, str] = {}
    for directory in directories:
        directory = Path(directory)
        if not directory.exists():
            problem = PolicyError(f"{directory}: no such policy file or directory")
            if errors is None:
                raise problem
            errors.append(str(problem))
            continue
        files = [directory] if directory.is_file() else sorted(
            p for p in directory.rglob("*") if p.suffix in (".yml", ".yaml") and p.is_file())
        for path in files:
            try:
                policy = load_policy(path)
                if policy.info.id in policy_ids:
                    raise PolicyError(f"{path}: policy id {policy.info.id!r} already used by "
                                      f"{policy_ids[policy.info.id]}")
                for check in policy.checks:
                    if check.id in check_ids:
                        raise PolicyError(f"{path}: check {check.id}: id already used by {check_ids[check.id]}")
            except (PolicyError, OSError) as exc:
                if errors is None:
                    raise
                errors.append(str(exc) if isinstance(exc, PolicyError) else f"{path}: cannot read ({exc.strerror})")
                continue
            policy_ids[policy.info.id] = str(path)
            check_ids.update((check.id, str(path)) for check in policy.checks)
            policies.append(policy)
    return policies

"""SCA rule strings (``not f:/etc/x -> r:^a && !r:b``) parsed into a typed tree, with policy variables expanded.

Grammar (Wazuh 4.x wm_sca.c, creating-custom-policies docs):
``[not ]TYPE:TARGET[ -> NAME][ -> CONTENT]`` where TYPE is f d p c r; only d: and r: take the middle NAME part.
CONTENT is operators joined by `` && ``; each is ``[!]r:REGEX``, ``[!]n:REGEX compare OP N`` or a literal line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from tasks.compliance.osregex import OSRegex, OSRegexError, compile_osregex, os_match

COMPARE_OPS = ("<", "<=", "==", "!=", ">=", ">")
_ARROW = " -> "
_AND = " && "
# after " compare ": an operator and an integer, spaces between them optional ("compare <=15" is in Wazuh's own
# CIS files, and wm_sca.c reads it)
_COMPARE = re.compile(r"^(?P<regex>.*) compare\s+(?P<op>==|!=|<=|>=|<|>|=)\s*(?P<value>[+-]?\d+)\s*$")


class PolicyError(ValueError):
    """A policy file or rule is malformed; the message names the file, the check and the problem."""


class RuleType(StrEnum):
    FILE = "f"
    DIRECTORY = "d"
    PROCESS = "p"
    COMMAND = "c"
    REGISTRY = "r"


class Undecidable(Exception):
    """An n: operator matched a line but captured no integer (Wazuh reports the rule as invalid)."""


@dataclass(frozen=True)
class Operator:
    """One content operator: a literal line, an OS_Regex (r:), or a numeric comparison (n:)."""

    text: str
    negated: bool
    regex: OSRegex | None = None
    compare_op: str | None = None
    compare_value: int | None = None

    def _positive(self, line: str) -> bool:
        if self.regex is None:
            # wm_sca.c compares literal lines with strcasecmp
            return line.lower() == self.text.lower()
        if self.compare_op is None:
            return self.regex.search(line)
        captured = self.regex.captures(line)
        if captured is None:
            return False
        if not captured or not captured[0].strip().lstrip("+-").isdigit():
            raise Undecidable(f"n: pattern {self.regex.source!r} matched {line!r} but captured no integer")
        return _compare(int(captured[0]), self.compare_op, self.compare_value or 0)

    def matches(self, line: str) -> bool:
        """Whether this operator (with its ``!``) holds for one line."""
        return self._positive(line) != self.negated


@dataclass(frozen=True)
class Content:
    """`` && ``-joined operators; all must hold on the same line."""

    text: str
    operators: tuple[Operator, ...]

    def matches(self, line: str) -> bool:
        """Whether every operator holds for this line (raises Undecidable as Operator.matches does)."""
        undecided: Undecidable | None = None
        for operator in self.operators:
            try:
                if not operator.matches(line):
                    return False
            except Undecidable as exc:
                undecided = exc
        if undecided is not None:
            raise undecided
        return True


@dataclass(frozen=True)
class NameFilter:
    """The file-name part of a d: chain: ``r:REGEX`` (OS_Regex) or a plain name (OS_Match, a substring test)."""

    text: str
    regex: OSRegex | None

    def matches(self, name: str) -> bool:
        """Whether a directory entry name is selected."""
        return self.regex.search(name) if self.regex else os_match(self.text, name)


@dataclass(frozen=True)
class Rule:
    """A parsed rule. ``targets`` are the comma-separated locations after variable expansion.

    For p: rules ``content`` is the process pattern itself; for r: rules it is the unparsed key/value part.
    """

    text: str
    negated: bool
    type: RuleType
    targets: tuple[str, ...]
    name_filter: NameFilter | None = None
    content: Content | None = None
    problem: str = ""  # why the rule cannot be evaluated as written (it then counts as not applicable)


def malformed_rule(text: str, problem: PolicyError) -> Rule:
    """A rule that could not be parsed, kept so its check reports not applicable with the reason (as wm_sca.c
    treats a rule it cannot use at scan time) instead of one bad rule refusing a whole policy file."""
    return Rule(text, False, RuleType.FILE, (), problem=str(problem))


def _compare(actual: int, op: str | None, expected: int) -> bool:
    return {
        "<": actual < expected,
        "<=": actual <= expected,
        "==": actual == expected,
        "!=": actual != expected,
        ">=": actual >= expected,
        ">": actual > expected,
    }[op or "=="]


def _regex(pattern: str, fail: _Fail) -> OSRegex:
    try:
        return compile_osregex(pattern)
    except OSRegexError as exc:
        raise fail(f"bad regex: {exc}") from None


class _Fail:
    """Builds one-line PolicyErrors that name the file, check and rule."""

    def __init__(self, source: str, check_id: int | str | None, rule: str) -> None:
        self.where = f"{source}: check {check_id}" if check_id is not None else f"{source}: requirements"
        self.rule = rule

    def __call__(self, what: str) -> PolicyError:
        return PolicyError(f"{self.where}: rule {self.rule!r}: {what}")


def parse_operator(text: str, fail: _Fail) -> Operator:
    """Parse one content operator (``!`` prefix, r:, n:, or literal)."""
    negated = text.startswith("!")
    body = text[1:] if negated else text
    if body.startswith("r:"):
        return Operator(text, negated, regex=_regex(body[2:], fail))
    if body.startswith("n:"):
        parsed = _COMPARE.match(body[2:])
        if not parsed:
            raise fail(f"n: operator {body!r} needs 'REGEX compare OP INTEGER'")
        op = "==" if parsed["op"] == "=" else parsed["op"]  # wm_sca.c reads a leading '=' as '=='
        regex = _regex(parsed["regex"], fail)
        if "(" not in parsed["regex"].replace("\\(", ""):
            raise fail(f"n: regex {parsed['regex']!r} has no capture group for the number")
        return Operator(text, negated, regex=regex, compare_op=op, compare_value=int(parsed["value"]))
    if not body:
        raise fail("empty content operator")
    return Operator(text, negated)


def parse_content(text: str, fail: _Fail) -> Content:
    """Parse `` && ``-joined operators."""
    return Content(text, tuple(parse_operator(part, fail) for part in text.split(_AND)))


def expand_variables(location: str, variables: dict[str, str]) -> str:
    """Replace ``$name`` occurrences, longest names first (so ``$sshd_file`` wins over ``$sshd``)."""
    for name in sorted(variables, key=len, reverse=True):
        location = location.replace(name, variables[name])
    return location


def parse_rule(
    text: str,
    variables: dict[str, str] | None = None,
    *,
    source: str = "<policy>",
    check_id: int | str | None = None,
) -> Rule:
    """Parse one rule string; raises PolicyError naming source, check id and the problem."""
    fail = _Fail(source, check_id, text)
    if not isinstance(text, str) or not text.strip():
        raise fail("empty rule")
    body = text.strip()
    negated = body[:4] in ("not ", "NOT ")
    if negated:
        body = body[4:].lstrip()
    kind, sep, rest = body.partition(":")
    kind = kind.lstrip("!")  # 4.x ignores a leading '!' on the type
    if not sep or kind not in {t.value for t in RuleType}:
        raise fail(f"unknown rule type {kind!r} (expected one of f: d: p: c: r:)")
    rule_type = RuleType(kind)
    parts = rest.split(_ARROW)
    location = parts[0].strip()
    if not location:
        raise fail("missing target")
    max_parts = 3 if rule_type in (RuleType.DIRECTORY, RuleType.REGISTRY) else 2
    if rule_type is RuleType.PROCESS:
        max_parts = 1
    if len(parts) > max_parts:
        raise fail(f"{rule_type.value}: rules take at most {max_parts - 1} ' -> ' part(s), found {len(parts) - 1}")
    if any(not part.strip() for part in parts[1:]):
        raise fail("empty part after ' -> '")

    if rule_type in (RuleType.FILE, RuleType.DIRECTORY, RuleType.COMMAND):
        location = expand_variables(location, variables or {})
        unknown = re.findall(r"\$\w+", location) if rule_type is not RuleType.COMMAND else []
        if unknown:
            raise fail(f"unknown variable {unknown[0]!r}")
    if rule_type is RuleType.PROCESS:
        # 4.x matches the p: value as a content pattern against each process (so p:r:REGEX works too)
        return Rule(text, negated, rule_type, (location,), None, parse_content(location, fail))
    if rule_type is RuleType.COMMAND:
        targets: tuple[str, ...] = (location,)
    else:
        targets = tuple(t.strip() for t in location.split(",") if t.strip())

    name_filter: NameFilter | None = None
    content_text: str | None = None
    if rule_type is RuleType.DIRECTORY and len(parts) >= 2:
        name = parts[1]
        name_filter = NameFilter(name, _regex(name[2:], fail) if name.startswith("r:") else None)
        content_text = parts[2] if len(parts) == 3 else None
    elif rule_type is RuleType.REGISTRY:
        content_text = _ARROW.join(parts[1:]) or None  # key -> value -> data: kept verbatim, never evaluated here
        return Rule(text, negated, rule_type, (location,), None, Content(content_text, ()) if content_text else None)
    elif len(parts) == 2:
        content_text = parts[1]
    content = parse_content(content_text, fail) if content_text is not None else None
    return Rule(text, negated, rule_type, targets, name_filter, content)

"""Wazuh's OS_Regex dialect (the `r:` / `n:` patterns of 4.x SCA policies), translated to Python `re`.

Semantics, as OS_Regex (wazuh/wazuh v4.14.7 src/os_regex/) implements them:
- Backslash classes: \\w = A-Z a-z 0-9 and ``-@_``; \\d digits; \\s a space only (not a tab); \\t a tab;
  \\p = ``!"#$%&'()*+,-.:;<=>?[]{|}``; \\W \\D \\S their complements; \\. any character; \\$ \\( \\) \\\\ \\| \\<
  the character itself. Any other backslash escape is an error.
- ``+`` and ``*`` quantify only a preceding backslash class; after anything else they are literal characters.
- ``^`` is an anchor only at the start of a ``|`` branch, ``$`` only at its end; elsewhere both are literal.
- ``|`` splits top-level branches, tried in order (the first branch matching anywhere wins).
- ``(`` ``)`` only capture; one level, no ``|`` inside. Every other character (``.``, ``[``, ``?``, ``{``) is literal.
- Matching is case-insensitive: SCA compiles with OS_RETURN_SUBSTRING only, without OS_CASE_SENSITIVE.

OS_Regex consumes a quantified class lazily (it moves to the next token as soon as that token matches) but keeps
consuming when only optional tokens follow; we mirror that with lazy quantifiers, greedy before an optional tail.
OS_Regex backtracks at most four times; Python's full backtracking can match a few lines that OS_Regex misses
(wazuh/wazuh src/unit_tests/os_regex/test_os_regex_execute.json lists them as known issues) — we report the
documented intent there.

Wazuh 5.0 SCA (src/wazuh_modules/sca/sca_impl/src/sca_utils.cpp) evaluates `r:`/`n:` with PCRE2 (caseless,
multiline) instead; 4.x policy files written for OS_Regex are what admins run, so OS_Regex is implemented here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_CLASSES: dict[str, str] = {
    "w": r"[A-Za-z0-9@_\-]",
    "d": r"[0-9]",
    "s": r"[ ]",
    "p": r"""[!"#$%&'()*+,\-.:;<=>?\[\]{|}]""",
    "W": r"[^A-Za-z0-9@_\-]",
    "D": r"[^0-9]",
    "S": r"[^ ]",
    ".": r"[\s\S]",
    "t": r"\t",
    "$": r"\$",
    "(": r"\(",
    ")": r"\)",
    "\\": r"\\",
    "|": r"\|",
    "<": r"<",
}


class OSRegexError(ValueError):
    """The pattern is not valid OS_Regex (the message says why)."""


@dataclass(frozen=True)
class OSRegex:
    """A compiled OS_Regex pattern: one Python regex per top-level branch."""

    source: str
    branches: tuple[re.Pattern[str], ...] = field(repr=False)

    def search(self, text: str) -> bool:
        """True when any branch matches somewhere in text."""
        return any(branch.search(text) for branch in self.branches)

    def captures(self, text: str) -> tuple[str, ...] | None:
        """The capture groups of the first branch that matches, or None when nothing matches."""
        for branch in self.branches:
            match = branch.search(text)
            if match:
                return tuple(group or "" for group in match.groups())
        return None


def _split_branches(pattern: str) -> list[str]:
    """Split at unescaped top-level ``|``; a ``|`` inside parentheses is an error (as in OS_Regex)."""
    branches, current, depth, i = [], [], 0, 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            current.append(pattern[i : i + 2])
            i += 2
            continue
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|":
            if depth != 0:
                raise OSRegexError(f"'|' inside parentheses in {pattern!r}")
            branches.append("".join(current))
            current = []
            i += 1
            continue
        if depth not in (0, 1):
            raise OSRegexError(f"unbalanced or nested parentheses in {pattern!r}")
        current.append(char)
        i += 1
    if depth != 0:
        raise OSRegexError(f"unbalanced parentheses in {pattern!r}")
    branches.append("".join(current))
    return branches


def _translate_branch(branch: str, whole: str) -> str:
    """One OS_Regex branch as a Python regex."""
    begin = branch.startswith("^")
    if begin:
        branch = branch[1:]
    # a trailing '$' anchors unless it is the escaped "\$" (an odd run of backslashes before it)
    trailing_backslashes = len(branch[:-1]) - len(branch[:-1].rstrip("\\"))
    end = branch.endswith("$") and trailing_backslashes % 2 == 0
    if end:
        branch = branch[:-1]

    tokens: list[tuple[str, str]] = []  # (kind, regex) with kind in {"lit", "class", "quant", "group"}
    i = 0
    while i < len(branch):
        char = branch[i]
        if char == "\\":
            if i + 1 >= len(branch) or branch[i + 1] not in _CLASSES:
                escape = branch[i : i + 2]
                raise OSRegexError(f"unknown escape {escape!r} in {whole!r}")
            cls = _CLASSES[branch[i + 1]]
            i += 2
            if i < len(branch) and branch[i] in "+*":
                tokens.append(("quant", cls + branch[i]))
                i += 1
            else:
                tokens.append(("class", cls))
        elif char in "()":
            tokens.append(("group", char))
            i += 1
        else:
            tokens.append(("lit", re.escape(char)))
            i += 1

    parts = ["^" if begin else ""]
    for index, (kind, regex) in enumerate(tokens):
        # greedy when only groups and optional (*) classes follow, as OS_Regex then keeps consuming
        tail_optional = all(k == "group" or (k == "quant" and r.endswith("*")) for k, r in tokens[index + 1 :])
        parts.append(regex if kind != "quant" or tail_optional else regex + "?")
    parts.append("$" if end else "")
    return "".join(parts)


def compile_osregex(pattern: str, *, case_sensitive: bool = False) -> OSRegex:
    """Compile an OS_Regex pattern; raises OSRegexError when OS_Regex would refuse it."""
    flags = 0 if case_sensitive else re.IGNORECASE
    branches = tuple(re.compile(_translate_branch(b, pattern), flags) for b in _split_branches(pattern))
    return OSRegex(pattern, branches)


def os_match(pattern: str, text: str) -> bool:
    """OS_Match, the simpler dialect 4.x uses for a d: rule's literal file name.

    Each ``|`` branch is a case-insensitive substring test, anchored by a leading ``^`` / trailing ``$``.
    """
    text = text.lower()
    for branch in pattern.lower().split("|"):
        begin, end = branch.startswith("^"), branch.endswith("$") and len(branch) > 1
        core = branch[1 if begin else 0 : -1 if end else None]
        if begin and end:
            found = text == core
        elif begin:
            found = text.startswith(core)
        elif end:
            found = text.endswith(core)
        else:
            found = core in text
        if found:
            return True
    return False

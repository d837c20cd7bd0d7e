"""OS_Regex dialect. Expected results come from wazuh/wazuh src/unit_tests/os_regex/test_os_regex_execute.json
(cases not marked ignore_result) and from OS_Regex's character maps (src/os_regex/os_regex_maps.c)."""

import pytest

from tasks.compliance.osregex import OSRegexError, compile_osregex, os_match

# (pattern, text, expected captures or None for "no match"), from test_os_regex_execute.json
EXECUTE_CASES = [
    ("hi Wazuh", "hi Wazuh", ()),
    ("(hi) (Wazuh)", "prefixhi Wazuh", ("hi", "Wazuh")),
    ("hi Wazuh$", "hi Wazuh 123", None),
    ("hi Wazuh", "bye Wazuh", None),
    ("^(hi) (Wazuh)", "hi Wa hi WazuhXX", None),
    ("(hi) (Wazuh)", "XX hi Wa hi WazuhXX", ("hi", "Wazuh")),
    (r"\w(\w\s\S)\S(\S\S\S)", "hi Wazuh", ("i W", "zuh")),
    (r"\w\w\s\S\S\S\S\S", "hi Waz", None),
    (r"^\w+$", "Wazuh ", None),
    (r"(\w+)\s", "Wazuh ", ("Wazuh",)),
    (r"(\d+)\w", "12345", ("1",)),
    (r"\d+(\w)", "12345", ("2",)),
    (r"^(\d+)\w$", "12345", ("1234",)),
    (r"^\d+(\w)$", "12345", ("5",)),
    (r"^\d+(\w)$", "12345&&&&&&&", None),
    (r"(\d*)\w", "12345", ("",)),
    (r"(\w+)\d*(\s+)", "Wazuh123 ", ("Wazuh", " ")),
    (r"(\w+)\s*", "w", ("w",)),
    (r"\w+_1 \w+_2 \w+_3 \w+_4 \w+_5 \w+_6", "wa_11 wa_1 wa_2 wa_3 wa_4 wa_5 wa_6", ()),
    (r"^hi|bye$|^$", "123456", None),
    (r"\d+^\d\d\d", "123^456", ()),
    (r"\d+$\d\d\d", "123$456", ()),
    (r"(\d\d)$", "1234", ("34",)),
    ("^$", "", ()),
    ("^$", "hi digits", None),
    (r"^\d*(\w)$", "12", ("2",)),
    (r"Backslash character is (\.+)", "Backslash character is \\", ("\\",)),
    (r"Special characters are (\p*)", "Special characters are $()|<\\", ("$()|<",)),
    ("hi (\\w+).", "Hi Wazuh.", ("Wazuh",)),  # case-insensitive, and '.' is literal
]


@pytest.mark.parametrize(("pattern", "text", "expected"), EXECUTE_CASES)
def test_wazuh_execute_cases(pattern, text, expected):
    assert compile_osregex(pattern).captures(text) == expected


@pytest.mark.parametrize(
    ("cls", "members", "non_members"),
    [
        ("w", "aZ09-@_", " .!/\t"),
        ("d", "0123456789", "aZ -"),
        ("s", " ", "\ta_"),  # \s is the space only; a tab needs \t
        ("p", "!\"#$%&'()*+,-.:;<=>?[]{|}", "/\\^_`@~a0 "),
        ("W", " .!/\t", "aZ09-@_"),
        ("D", "aZ -", "0123456789"),
        ("S", "a\t!", " "),
        (".", "a \t!\\", ""),
        ("t", "\t", " a"),
    ],
)
def test_character_classes(cls, members, non_members):
    regex = compile_osregex(f"^\\{cls}$")
    assert all(regex.search(c) for c in members)
    assert not any(regex.search(c) for c in non_members)


@pytest.mark.parametrize(
    ("pattern", "text", "matches"),
    [
        ("a.b", "axb", False),  # '.' is literal
        ("a.b", "a.b", True),
        ("[x]", "a[x]", True),  # brackets are literal
        ("a?", "a?", True),
        ("a+", "aa", False),  # '+' after a literal is a literal '+'
        ("a+", "a+", True),
        (r"\d++", "1+", True),  # the second '+' is literal
        (r"\$HOME", "echo $HOME", True),
        (r"a\|b", "a|b", True),
        (r"\(x\)", "(x)", True),
        (r"c:\\w", "c:\\w", True),
        ("^PermitRootLogin\\s+no", "permitrootlogin no", True),  # case-insensitive, as SCA compiles it
        ("^x|^y", "y1", True),
        (r"12\.", "12.", True),
        (r"\.+.rules$", "audit.rules", True),
        (r"\.+.rules$", "audit.rules.bak", False),
    ],
)
def test_literal_and_quantifier_quirks(pattern, text, matches):
    assert compile_osregex(pattern).search(text) is matches


def test_branches_are_tried_in_order():
    # OS_Regex returns the first branch that matches anywhere, not the leftmost match
    assert compile_osregex(r"b=(\d+)|a=(\d+)").captures("a=1 b=2") == ("2",)


def test_case_sensitive_option():
    assert not compile_osregex("^abc", case_sensitive=True).search("ABC")


@pytest.mark.parametrize("pattern", [r"\x", "a(b|c)", "ab)", "((a))", "(a", "trailing\\"])
def test_invalid_patterns_are_refused(pattern):
    with pytest.raises(OSRegexError):
        compile_osregex(pattern)


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("sshd_config", "sshd_config", True),
        ("sshd_config", "sshd_config.bak", True),  # OS_Match is a substring test
        ("^sshd_config$", "sshd_config.bak", False),
        ("rules$", "audit.RULES", True),
        ("^a|^b", "bc", True),
        ("x", "abc", False),
    ],
)
def test_os_match(pattern, name, matches):
    assert os_match(pattern, name) is matches

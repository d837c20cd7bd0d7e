"""Rule parsing: types, targets, chains, operators, variables and malformed rules."""

import pytest

from tasks.compliance.rules import PolicyError, RuleType, Undecidable, parse_rule


def test_file_rule_with_compound_content():
    rule = parse_rule("not f:/etc/ssh_config -> !r:^# && r:Protocol && r:2")
    assert rule.negated and rule.type is RuleType.FILE
    assert rule.targets == ("/etc/ssh_config",)
    assert rule.content is not None
    operators = [(op.negated, op.regex is not None) for op in rule.content.operators]
    assert operators == [(True, True), (False, True), (False, True)]
    assert rule.content.matches("Protocol 2") and not rule.content.matches("# Protocol 2")


def test_file_list_and_variables():
    variables = {"$sshd_file": "/etc/ssh/sshd_config,/etc/sshd_config", "$sshd": "/x"}
    rule = parse_rule("f:$sshd_file -> r:^Port", variables)
    assert rule.targets == ("/etc/ssh/sshd_config", "/etc/sshd_config")
    assert parse_rule("f:/a,/b").targets == ("/a", "/b")


def test_directory_chain():
    rule = parse_rule(r"d:/etc/audit/rules.d -> r:\.+.rules$ -> r:^-w && r:/etc/sudoers")
    assert rule.type is RuleType.DIRECTORY and rule.targets == ("/etc/audit/rules.d",)
    assert rule.name_filter is not None and rule.name_filter.matches("50-scope.rules")
    assert not rule.name_filter.matches("50-scope.rules.bak")
    assert rule.content is not None and len(rule.content.operators) == 2
    plain = parse_rule("d:/etc/ssh -> sshd_config")
    assert plain.name_filter is not None and plain.name_filter.regex is None and plain.content is None


def test_literal_operator_is_whole_line_case_insensitive():
    rule = parse_rule("f:/proc/sys/net/ipv4/ip_forward -> 1")
    assert rule.content is not None
    assert rule.content.matches("1") and not rule.content.matches("10")
    assert parse_rule("c:x -> Enabled").content.matches("enabled")  # wm_sca.c uses strcasecmp


@pytest.mark.parametrize(
    ("op", "value", "line", "expected"),
    [
        ("<", 5, "deny = 4", True), ("<", 5, "deny = 5", False),
        ("<=", 5, "deny = 5", True), ("<=", 5, "deny = 6", False),
        ("==", 5, "deny = 5", True), ("==", 5, "deny = 4", False),
        ("!=", 5, "deny = 4", True), ("!=", 5, "deny = 5", False),
        (">=", 5, "deny = 5", True), (">=", 5, "deny = 4", False),
        (">", 5, "deny = 6", True), (">", 5, "deny = 5", False),
    ],
)  # fmt: skip
def test_numeric_compare(op, value, line, expected):
    rule = parse_rule(rf"f:/etc/security/faillock.conf -> n:^\s*\t*deny\s*\t*=\s*\t*(\d+) compare {op} {value}")
    assert rule.content is not None
    assert rule.content.matches(line) is expected


def test_numeric_compare_multi_digit_capture():
    rule = parse_rule(r"c:sshd -T -> n:^MaxAuthTries\s(\d+) compare <= 4")
    assert rule.content is not None
    assert not rule.content.matches("maxauthtries 10")  # captures 10, not 1
    assert rule.content.matches("maxauthtries 4")
    assert not rule.content.matches("PermitRootLogin no")  # no match -> operator false


def test_numeric_compare_without_a_number_is_undecidable():
    rule = parse_rule(r"f:/x -> n:^deny=(\d*) compare <= 5")
    assert rule.content is not None
    with pytest.raises(Undecidable):
        rule.content.matches("deny=")


def test_process_and_registry_rules():
    proc = parse_rule("not p:sshd")
    assert proc.type is RuleType.PROCESS and proc.negated and proc.content is not None
    assert proc.content.matches("SSHD") and not proc.content.matches("/usr/sbin/sshd -D")
    assert parse_rule("p:r:sshd").content.matches("/usr/sbin/sshd -D")
    reg = parse_rule(r"r:HKLM\SYSTEM\CurrentControlSet\Control\Lsa -> LimitBlankPasswordUse -> 1")
    assert reg.type is RuleType.REGISTRY and reg.targets == (r"HKLM\SYSTEM\CurrentControlSet\Control\Lsa",)


def test_uppercase_not_is_accepted_as_in_wm_sca():
    assert parse_rule("NOT f:/etc/shadow").negated


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        (r"f:/etc/security/pwquality.conf -> n:^minlen\s*=\s*(\d+) compare ~ 14", "needs 'REGEX compare OP INTEGER'"),
        (r"f:/x -> n:^minlen\s*=\s*(\d+) compare >= many", "needs 'REGEX compare OP INTEGER'"),
        (r"f:/x -> n:^minlen\s*=\s*\d+ compare >= 14", "no capture group"),
        ("x:/etc/passwd", "unknown rule type 'x'"),
        ("/etc/passwd", "unknown rule type"),
        (r"f:/x -> r:\q", "bad regex"),
        ("f:/x -> r:a -> r:b", "at most 1"),
        ("p:sshd -> r:x", "at most 0"),
        ("f:$missing -> r:x", "unknown variable '$missing'"),
        ("f: -> r:x", "missing target"),
        ("f:/x -> r:a &&  && r:b", "empty content operator"),
    ],
)
def test_malformed_rules_name_file_check_and_problem(rule, problem):
    with pytest.raises(PolicyError) as info:
        parse_rule(rule, source="cis_debian12.yml", check_id=33191)
    message = str(info.value)
    assert message.startswith("cis_debian12.yml: check 33191: rule ")
    assert problem in message
    assert "\n" not in message

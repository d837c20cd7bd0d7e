"""Policy loading: the 4.x layout, did-you-mean errors, duplicate ids, compliance helper."""

import textwrap

import pytest

from tasks.compliance.policy import load_policies, load_policy
from tasks.compliance.rules import PolicyError, RuleType

POLICY = """\
policy:
  id: lab_linux
  file: lab_linux.yml
  name: Lab Linux baseline
  description: Small test policy.
  references: ["https://example.org"]
requirements:
  title: Check Linux
  description: Linux only
  condition: all
  rules:
    - 'f:/proc/sys/kernel/ostype -> r:Linux'
variables:
  $sshd_file: /etc/ssh/sshd_config,/etc/sshd_config
checks:
  - id: {first_id}
    title: Ensure sshd PermitRootLogin is disabled.
    description: d
    rationale: r
    remediation: Set PermitRootLogin no.
    impact: none
    compliance:
      - cis: ["5.1.20"]
      - cis_csc_v8: ["5.4", "6.2"]
    references: ["x"]
    condition: {condition}
    rules:
      - 'f:$sshd_file -> r:^PermitRootLogin\\s+no'
  - id: 2
    title: Second
    condition: none
    rules:
      - 'd:/etc/cron.d'
"""


def write(tmp_path, name="lab.yml", first_id=1, condition="all", extra=""):
    path = tmp_path / name
    path.write_text(POLICY.replace("{first_id}", str(first_id)).replace("{condition}", condition) + extra)
    return path


def test_load_policy(tmp_path):
    policy = load_policy(write(tmp_path))
    assert policy.info.id == "lab_linux" and policy.info.references == ("https://example.org",)
    assert policy.requirements is not None and policy.requirements.condition == "all"
    check = policy.checks[0]
    assert check.id == 1 and check.impact == "none" and check.remediation == "Set PermitRootLogin no."
    assert check.compliance_ids("cis_csc_v8") == ("5.4", "6.2")
    assert check.compliance_ids("cis") == ("5.1.20",)
    assert check.compliance_ids("nist_sp_800-53") == ()
    assert check.rules[0].targets == ("/etc/ssh/sshd_config", "/etc/sshd_config")
    assert policy.checks[1].rules[0].type is RuleType.DIRECTORY


def test_bad_condition(tmp_path):
    with pytest.raises(PolicyError, match=r"lab.yml: check 1: condition 'most' must be one of all, any, none"):
        load_policy(write(tmp_path, condition="most"))


@pytest.mark.parametrize(
    ("before", "after", "message"),
    [
        ("    rationale: r", "    rationale: r\n    remedation: x",
         r"check 1: unknown key 'remedation' \(did you mean 'remediation'\?\)"),
        ("    condition: none", "    conditon: none", r"unknown key 'conditon' \(did you mean 'condition'\?\)"),
        ("  file: lab_linux.yml", "  fiel: lab_linux.yml", r"policy: unknown key 'fiel' \(did you mean 'file'\?\)"),
        ("checks:", "check:\n", r"top level: unknown key 'check' \(did you mean 'checks'\?\)"),
    ],
)  # fmt: skip
def test_unknown_keys_have_a_hint_naming_the_file(tmp_path, before, after, message):
    path = tmp_path / "typo.yml"
    path.write_text(POLICY.replace("{first_id}", "1").replace("{condition}", "all").replace(before, after, 1))
    with pytest.raises(PolicyError, match=message) as info:
        load_policy(path)
    assert str(path) in str(info.value)


def test_duplicate_check_id_in_one_file(tmp_path):
    with pytest.raises(PolicyError, match="check 2: duplicate check id"):
        load_policy(write(tmp_path, first_id=2))


def test_compare_equals_is_refused(tmp_path):
    path = tmp_path / "eq.yml"
    path.write_text(
        POLICY.replace("{first_id}", "33191").replace("{condition}", "all").replace(
            r"'f:$sshd_file -> r:^PermitRootLogin\s+no'", r"'f:/etc/login.defs -> n:^UMASK\s+(\d+) compare = 0'"
        )
    )
    with pytest.raises(PolicyError, match=r"eq.yml: check 33191: rule .*compare operator '='"):
        load_policy(path)


def test_malformed_structure(tmp_path):
    path = tmp_path / "bad.yml"
    path.write_text(textwrap.dedent("""\
        policy: {id: p, name: n}
        checks:
          - {id: x, title: t, condition: all, rules: ['f:/a']}
        """))
    with pytest.raises(PolicyError, match=r"checks\[0\]: check id 'x' must be an integer"):
        load_policy(path)
    path.write_text("policy: {id: p, name: n}\nchecks:\n  - {id: 1, title: t, condition: all, rules: []}\n")
    with pytest.raises(PolicyError, match="'rules' must be a non-empty list"):
        load_policy(path)
    path.write_text("policy: {id: p, name: n}\nchecks: [\n")
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(path)


def test_load_policies_refuses_duplicates_across_files(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write(tmp_path / "a", "one.yml")
    second = tmp_path / "b" / "two.yaml"
    second.write_text(POLICY.replace("lab_linux", "other").replace("{first_id}", "10").replace("{condition}", "all"))
    with pytest.raises(PolicyError, match=r"two.yaml: check 2: id already used by .*one.yml"):
        load_policies([tmp_path / "a", tmp_path / "b"])
    second.write_text(POLICY.replace("{first_id}", "10").replace("{condition}", "all").replace("id: 2", "id: 3"))
    with pytest.raises(PolicyError, match=r"policy id 'lab_linux' already used"):
        load_policies([tmp_path / "a", tmp_path / "b"])
    other = POLICY.replace("lab_linux", "other").replace("{first_id}", "10").replace("{condition}", "all")
    second.write_text(other.replace("id: 2", "id: 3"))
    assert [p.info.id for p in load_policies([tmp_path / "a", tmp_path / "b"])] == ["lab_linux", "other"]

"""Policy loading: the 4.x layout, did-you-mean errors, duplicate ids, compliance helper."""

import textwrap

import pytest

from tasks.compliance.evaluate import Status, evaluate_policy
from tasks.compliance.policy import load_policies, load_policy
from tasks.compliance.rules import PolicyError, RuleType
from tasks.compliance.target import LocalTarget

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


def test_compare_forms_in_wazuhs_own_files_load_as_wm_sca_reads_them(tmp_path):
    # cis_ubuntu22-04.yml 28723 has "compare = 0", cis_debian12.yml 33181 "compare <=15": wm_sca.c reads a leading
    # '=' as '==' and needs no space before the number
    path = tmp_path / "eq.yml"
    path.write_text(
        POLICY.replace("{first_id}", "33191").replace("{condition}", "all").replace(
            r"'f:$sshd_file -> r:^PermitRootLogin\s+no'",
            "'f:/etc/login.defs -> n:^UMASK\\s+(\\d+) compare = 0'\n"
            "      - 'f:/etc/sudoers -> n:timeout=(\\d+) compare <=15'"
        )
    )
    rules = load_policy(path).checks[0].rules
    assert [(op.compare_op, op.compare_value) for r in rules for op in r.content.operators] == [("==", 0), ("<=", 15)]


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


def test_a_rule_that_cannot_be_parsed_makes_its_check_not_applicable_not_the_file_refused(tmp_path):
    # cis_debian12.yml 33192 (v4.14.7) has "n:root_unlock_time >= 60", with no 'compare': wm_sca.c finds that at
    # scan time and reports the rule invalid; the other checks of the file run
    path = tmp_path / "lab.yml"
    path.write_text(POLICY.replace("{first_id}", "33192").replace("{condition}", "all").replace(
        r"'f:$sshd_file -> r:^PermitRootLogin\s+no'", "'f:/etc/security/faillock.conf -> n:root_unlock_time >= 60'"))
    policy = load_policy(path)
    assert policy.problems == [f"{path}: check 33192: rule 'f:/etc/security/faillock.conf -> n:root_unlock_time >= "
                               "60': n: operator 'n:root_unlock_time >= 60' needs 'REGEX compare OP INTEGER'"]
    root = tmp_path / "root"
    (root / "etc/cron.d").mkdir(parents=True)
    (root / "proc/sys/kernel").mkdir(parents=True)
    (root / "proc/sys/kernel/ostype").write_text("Linux\n")
    result = evaluate_policy(policy, LocalTarget(root))
    first, second = result.checks
    assert first.status is Status.NOT_APPLICABLE and first.reason.startswith("malformed rule: ")
    assert second.status is Status.FAILED  # condition none over an existing directory: the rest still runs

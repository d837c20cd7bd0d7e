"""astrolab's own Wazuh SCA policies (infra/policies/*.yml): they load, map to real CIS Controls v8 safeguards, use
every rule form, run on this machine, and decide right on fixture root filesystems built from the policies' facts."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from astrolab.settings import REPO_ROOT
from tasks.compliance.evaluate import CheckResult, Status, evaluate_check, evaluate_policy
from tasks.compliance.policy import Check, Policy, load_policies
from tasks.compliance.rules import COMPARE_OPS, Operator, Rule, RuleType
from tasks.compliance.scan import CachedTarget, scan_target
from tasks.compliance.target import LocalTarget

POLICY_DIR = REPO_ROOT / "infra" / "policies"
BASELINE, RKE2, PROXMOX = "astrolab_linux_baseline", "astrolab_rke2_node", "astrolab_proxmox_host"
ID_RANGES = {BASELINE: range(100000, 110000), RKE2: range(110000, 120000), PROXMOX: range(120000, 130000)}
MIN_CHECKS = {BASELINE: 40, RKE2: 15, PROXMOX: 10}

# CIS Controls v8: safeguards per control (CIS Controls v8, May 2021; 153 safeguards in all), e.g. 4.1-4.12
CIS_V8_SAFEGUARD_COUNT = {1: 5, 2: 7, 3: 14, 4: 12, 5: 6, 6: 8, 7: 7, 8: 12, 9: 7, 10: 7, 11: 5, 12: 8, 13: 11,
                          14: 9, 15: 7, 16: 14, 17: 9, 18: 5}
CIS_V8_SAFEGUARDS = frozenset(f"{c}.{n}" for c, count in CIS_V8_SAFEGUARD_COUNT.items() for n in range(1, count + 1))


@pytest.fixture(scope="module")
def policies() -> dict[str, Policy]:
    return {p.info.id: p for p in load_policies([POLICY_DIR])}


# ---------------------------------------------------------------------------------------------------------------
# 1. Loading, counts, ids, CIS v8 mapping
# ---------------------------------------------------------------------------------------------------------------


def test_safeguard_table_is_cis_v8():
    assert len(CIS_V8_SAFEGUARDS) == 153
    assert {"4.1", "4.12", "8.12", "16.14", "18.5"} <= CIS_V8_SAFEGUARDS
    assert not {"4.13", "11.6", "19.1", "0.1", "3.15"} & CIS_V8_SAFEGUARDS


def test_three_policies_load_with_enough_checks(policies):
    assert set(policies) == {BASELINE, RKE2, PROXMOX}
    counts = {pid: len(p.checks) for pid, p in policies.items()}
    for pid, minimum in MIN_CHECKS.items():
        assert counts[pid] >= minimum, counts
    for pid, policy in policies.items():
        assert Path(policy.source).name == policy.info.file == f"{pid}.yml"
        assert policy.requirements is not None and policy.requirements.rules


def test_check_ids_unique_and_in_the_readme_ranges(policies):
    ids = [c.id for p in policies.values() for c in p.checks]
    assert len(ids) == len(set(ids))
    for pid, policy in policies.items():
        outside = [c.id for c in policy.checks if c.id not in ID_RANGES[pid]]
        assert not outside, f"{pid}: ids outside {ID_RANGES[pid]}: {outside}"


def test_every_check_maps_to_real_cis_v8_safeguards(policies):
    problems = []
    for policy in policies.values():
        for check in policy.checks:
            safeguards = check.compliance_ids("cis_csc_v8")
            if not safeguards:
                problems.append(f"{check.id}: no cis_csc_v8 mapping")
            bad = [s for s in safeguards if s not in CIS_V8_SAFEGUARDS]
            if bad:
                problems.append(f"{check.id}: not CIS v8 safeguards: {bad}")
            if len(set(safeguards)) != len(safeguards):
                problems.append(f"{check.id}: duplicate safeguards {safeguards}")
    assert not problems, problems


def test_every_check_has_the_texts_the_readme_requires(policies):
    missing = [(c.id, field) for p in policies.values() for c in p.checks
               for field in ("title", "description", "rationale", "remediation") if not getattr(c, field).strip()]
    assert not missing


# ---------------------------------------------------------------------------------------------------------------
# 2. Every rule form and condition is used somewhere
# ---------------------------------------------------------------------------------------------------------------


def _rules(policies: dict[str, Policy]) -> Iterator[Rule]:
    for policy in policies.values():
        for check in policy.checks:
            yield from check.rules


def _operators(policies: dict[str, Policy]) -> Iterator[tuple[Rule, Operator]]:
    for rule in _rules(policies):
        if rule.type is not RuleType.PROCESS and rule.content is not None:
            for operator in rule.content.operators:
                yield rule, operator


def _uses_variable(rule: Rule) -> bool:
    location = rule.text.split(" -> ")[0]
    return "$" in location and not any("$" in target for target in rule.targets)


def _uses_compare(op: str) -> Callable[[dict[str, Policy]], bool]:
    return lambda ps: any(o.compare_op == op for _, o in _operators(ps))


RULE_FORMS: dict[str, Callable[[dict[str, Policy]], bool]] = {
    "f: file": lambda ps: any(r.type is RuleType.FILE for r in _rules(ps)),
    "d: directory": lambda ps: any(r.type is RuleType.DIRECTORY for r in _rules(ps)),
    "p: process": lambda ps: any(r.type is RuleType.PROCESS for r in _rules(ps)),
    "c: command": lambda ps: any(r.type is RuleType.COMMAND for r in _rules(ps)),
    "not (negated rule)": lambda ps: any(r.negated for r in _rules(ps)),
    "not f:": lambda ps: any(r.negated and r.type is RuleType.FILE for r in _rules(ps)),
    "not d:": lambda ps: any(r.negated and r.type is RuleType.DIRECTORY for r in _rules(ps)),
    "not p:": lambda ps: any(r.negated and r.type is RuleType.PROCESS for r in _rules(ps)),
    "not c:": lambda ps: any(r.negated and r.type is RuleType.COMMAND for r in _rules(ps)),
    "existence only": lambda ps: any(r.content is None and r.name_filter is None for r in _rules(ps)),
    "literal content": lambda ps: any(o.regex is None for _, o in _operators(ps)),
    "r:": lambda ps: any(o.regex and o.compare_op is None and not o.negated for _, o in _operators(ps)),
    "!r:": lambda ps: any(o.regex and o.compare_op is None and o.negated for _, o in _operators(ps)),
    "&&": lambda ps: any(r.content is not None and len(r.content.operators) > 1 for r in _rules(ps)
                         if r.type is not RuleType.PROCESS),
    "d: directory chain": lambda ps: any(r.type is RuleType.DIRECTORY and r.name_filter is not None
                                         and r.content is not None for r in _rules(ps)),
    "variable on the left": lambda ps: any(_uses_variable(r) for r in _rules(ps)),
    **{f"n: compare {op}": _uses_compare(op) for op in COMPARE_OPS},
}


def test_six_compare_operators():
    assert set(COMPARE_OPS) == {"<", "<=", "==", "!=", ">=", ">"}


@pytest.mark.parametrize("form", list(RULE_FORMS))
def test_rule_form_is_used(policies, form):
    assert RULE_FORMS[form](policies), f"no rule across the three policies uses {form}"


def test_every_condition_is_used(policies):
    conditions = {c.condition for p in policies.values() for c in p.checks}
    assert conditions == {"all", "any", "none"}


def test_variables_are_declared_and_used(policies):
    for policy in policies.values():
        texts = [r.text for c in policy.checks for r in c.rules]
        for name, value in policy.variables:
            assert value.startswith("/"), (policy.info.id, name, value)
            assert any(name in t for t in texts), f"{policy.info.id}: variable {name} unused"


# ---------------------------------------------------------------------------------------------------------------
# 3. This machine (a plain Debian 12 host: no RKE2, no Proxmox)
# ---------------------------------------------------------------------------------------------------------------


def _plain_debian12() -> bool:
    version = Path("/etc/debian_version")
    return (version.is_file() and version.read_text().startswith("12")
            and not Path("/etc/rancher/rke2").exists() and not Path("/etc/pve").exists())


@pytest.fixture(scope="module")
def here(policies):
    start = time.perf_counter()
    scan = scan_target(LocalTarget(), list(policies.values()), with_packages=False)
    seconds = time.perf_counter() - start
    return {r.policy_id: r for r in scan.policies}, seconds


@pytest.mark.skipif(not _plain_debian12(), reason="needs a plain Debian 12 host (no RKE2, no Proxmox VE)")
def test_baseline_on_this_machine(policies, here):
    results, seconds = here
    baseline = results[BASELINE]
    assert baseline.applicable, baseline.reason
    assert baseline.requirements is not None and baseline.requirements.status is Status.PASSED
    assert len(baseline.checks) == len(policies[BASELINE].checks)
    assert baseline.passed > 0 and baseline.failed > 0 and baseline.not_applicable > 0
    assert baseline.passed + baseline.failed + baseline.not_applicable == len(baseline.checks)
    assert 0 < baseline.score < 100
    for check in baseline.checks:
        if check.status is Status.NOT_APPLICABLE:
            assert check.reason and check.reason != "Unknown reason", check
    assert seconds < 5, f"the three policies took {seconds:.1f}s on this machine"


@pytest.mark.skipif(not _plain_debian12(), reason="needs a plain Debian 12 host (no RKE2, no Proxmox VE)")
@pytest.mark.parametrize("policy_id", [RKE2, PROXMOX])
def test_rke2_and_proxmox_not_applicable_here(policies, here, policy_id):
    result = here[0][policy_id]
    requirements = policies[policy_id].requirements
    assert requirements is not None
    assert not result.applicable
    assert result.reason.startswith(f"requirements not met ({requirements.title})"), result.reason
    assert result.requirements is not None and result.requirements.status is Status.FAILED
    assert result.checks == () and (result.passed, result.failed, result.not_applicable) == (0, 0, 0)


# ---------------------------------------------------------------------------------------------------------------
# 4. Fixture root filesystems: compliant and non-compliant hosts of each kind, scanned as mounted roots
# ---------------------------------------------------------------------------------------------------------------

DIR = None  # a value in a fixture tree: create the directory only
Tree = dict[str, str | None]

OS_FILES = {
    "/proc/sys/kernel/ostype": "Linux\n",
    "/etc/debian_version": "12.11\n",
    "/etc/os-release": 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\n'
                       'VERSION_CODENAME=bookworm\nID=debian\n',
    "/proc/1/comm": "systemd\n",
    "/proc/1/cmdline": "/sbin/init\0",
}
SUDOERS_HEAD = ("#\n# This file MUST be edited with the 'visudo' command as root.\n#\n"
                "Defaults\tenv_reset\nDefaults\tmail_badpass\n"
                'Defaults\tsecure_path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"\n')
SUDOERS_TAIL = "\nroot\tALL=(ALL:ALL) ALL\n%sudo\tALL=(ALL:ALL) ALL\n\n@includedir /etc/sudoers.d\n"
SUDOERS_README = ("#\n# The default /etc/sudoers file created on installation of the package now includes the\n"
                  "# directive:\n#\n# \t@includedir /etc/sudoers.d\n#\n# Note that there must be at least one "
                  "file in the sudoers.d directory.\n")
COMMON_AUTH_STOCK = ("auth\t[success=1 default=ignore]\tpam_unix.so nullok\nauth\trequisite\t\t\tpam_deny.so\n"
                     "auth\trequired\t\t\tpam_permit.so\n")
COMMON_ACCOUNT_STOCK = ("account\t[success=1 new_authtok_reqd=done default=ignore]\tpam_unix.so\n"
                        "account\trequisite\t\t\tpam_deny.so\naccount\trequired\t\t\tpam_permit.so\n")
LOGIN_DEFS_COMMENTS = ("#\n# Password aging controls:\n#\n#\tPASS_MAX_DAYS\tMaximum number of days a password may "
                       "be used.\n#\tPASS_MIN_DAYS\tMinimum number of days allowed between password changes.\n")
SHADOW = "root:$y$j9T$Fq1Rz$Qm0lH3sSg6E:19700:1:365:7:::\ndaemon:*:19700:0:99999:7:::\n"

BASELINE_GOOD = {
    **OS_FILES,
    "/etc/login.defs": LOGIN_DEFS_COMMENTS + "PASS_MAX_DAYS\t365\nPASS_MIN_DAYS\t1\nPASS_WARN_AGE\t7\n"
                                             "ENCRYPT_METHOD YESCRYPT\n",
    "/etc/shadow": SHADOW,
    "/etc/security/pwquality.conf": "# minlen = 8\nminlen = 14\n",
    "/etc/security/pwquality.conf.d/50-astrolab.conf": "minlen = 14\n",
    "/etc/pam.d/common-auth": "auth\trequisite\t\t\tpam_faillock.so preauth\n" + COMMON_AUTH_STOCK.replace(
        "pam_deny.so\n", "pam_deny.so\nauth\t[default=die]\t\t\tpam_faillock.so authfail\n"),
    "/etc/pam.d/common-account": COMMON_ACCOUNT_STOCK + "account\trequired\t\t\tpam_faillock.so\n",
    "/etc/security/faillock.conf": "# deny = 3\ndeny = 5\n# unlock_time = 600\nunlock_time = 900\n",
    # Debian 12's stock /etc/sudoers separates Defaults from its value with a tab
    "/etc/sudoers": SUDOERS_HEAD + "\n# This fixes CVE-2005-4890\nDefaults\tuse_pty\n" + SUDOERS_TAIL,
    "/etc/sudoers.d/README": SUDOERS_README,
    "/etc/audit/rules.d/50-identity.rules": "-w /etc/passwd -p wa -k identity\n-w /etc/shadow -p wa -k identity\n"
                                            "-w /etc/group -p wa -k identity\n-w /etc/gshadow -p wa -k identity\n",
    "/etc/audit/rules.d/50-scope.rules": "-w /etc/sudoers -p wa -k scope\n-w /etc/sudoers.d -p wa -k scope\n",
    "/etc/audit/rules.d/50-time-change.rules": "-a always,exit -F arch=b64 -S adjtimex,settimeofday,clock_settime "
                                               "-k time-change\n",
    "/etc/audit/rules.d/99-finalize.rules": "-e 2\n",
    "/etc/audit/auditd.conf": "log_file = /var/log/audit/audit.log\nmax_log_file = 8\nnum_logs = 5\n"
                              "max_log_file_action = ROTATE\n",
    "/etc/apt/apt.conf.d/20auto-upgrades": 'APT::Periodic::Update-Package-Lists "1";\n'
                                           'APT::Periodic::Unattended-Upgrade "1";\n',
    "/proc/sys/net/ipv4/ip_forward": "0\n",
    "/proc/sys/net/ipv4/conf/all/rp_filter": "1\n",
    "/proc/sys/net/ipv4/conf/default/rp_filter": "2\n",
    "/proc/sys/net/ipv4/conf/all/accept_redirects": "0\n",
    "/proc/sys/net/ipv4/conf/default/accept_redirects": "0\n",
    "/proc/sys/net/ipv6/conf/all/accept_redirects": "0\n",
    "/proc/sys/net/ipv4/conf/all/accept_source_route": "0\n",
    "/proc/sys/net/ipv4/conf/default/accept_source_route": "0\n",
    "/proc/sys/net/ipv4/tcp_syncookies": "1\n",
    "/proc/sys/kernel/randomize_va_space": "2\n",
    "/proc/sys/kernel/yama/ptrace_scope": "1\n",
    "/proc/sys/fs/suid_dumpable": "0\n",
    "/sys/module/apparmor/parameters/enabled": "Y\n",
    "/etc/issue.net": "Authorised astrolab staff only. Activity is logged.\n",
}
BASELINE_BAD: Tree = {
    **OS_FILES,
    "/proc/215/comm": "xinetd\n",
    "/proc/215/cmdline": "/usr/sbin/xinetd\0-stayalive\0",
    "/etc/xinetd.d/": DIR,
    "/etc/login.defs": LOGIN_DEFS_COMMENTS + "PASS_MAX_DAYS\t99999\nPASS_MIN_DAYS\t0\nPASS_WARN_AGE\t3\n"
                                             "ENCRYPT_METHOD MD5\n",
    "/etc/shadow": SHADOW + "guest::19700:0:99999:7:::\n",
    "/etc/security/pwquality.conf": "# minlen = 8\nminlen = 8\n",
    "/etc/security/pwquality.conf.d/50-local.conf": "minlen = 10\n",
    "/etc/pam.d/common-auth": COMMON_AUTH_STOCK,
    "/etc/pam.d/common-account": COMMON_ACCOUNT_STOCK,
    "/etc/security/faillock.conf": "# deny = 3\ndeny = 10\nunlock_time = 60\n",
    "/etc/sudoers": SUDOERS_HEAD + SUDOERS_TAIL,  # Debian 11: no use_pty
    "/etc/sudoers.d/README": SUDOERS_README,
    "/etc/sudoers.d/90-cloud-init-users": "# Created by cloud-init\nansible ALL=(ALL) NOPASSWD:ALL\n",
    "/etc/hosts.equiv": "+\n",
    "/root/.rhosts": "legacy-host root\n",
    "/etc/audit/rules.d/audit.rules": "## First rule - delete all\n-D\n\n## Increase the buffers\n-b 8192\n"
                                      "--backlog_wait_time 60000\n-f 1\n",
    "/etc/audit/auditd.conf": "max_log_file = 8\nnum_logs = 2\nmax_log_file_action = IGNORE\n",
    "/etc/apt/apt.conf.d/20auto-upgrades": 'APT::Periodic::Update-Package-Lists "1";\n'
                                           'APT::Periodic::Unattended-Upgrade "0";\n',
    "/proc/sys/net/ipv4/ip_forward": "1\n",
    "/proc/sys/net/ipv4/conf/all/rp_filter": "0\n",
    "/proc/sys/net/ipv4/conf/default/rp_filter": "0\n",
    "/proc/sys/net/ipv4/conf/all/accept_redirects": "1\n",
    "/proc/sys/net/ipv4/conf/default/accept_redirects": "1\n",
    "/proc/sys/net/ipv6/conf/all/accept_redirects": "1\n",
    "/proc/sys/net/ipv4/conf/all/accept_source_route": "1\n",
    "/proc/sys/net/ipv4/conf/default/accept_source_route": "0\n",
    "/proc/sys/net/ipv4/tcp_syncookies": "0\n",
    "/proc/sys/kernel/randomize_va_space": "0\n",
    "/proc/sys/kernel/yama/ptrace_scope": "0\n",
    "/proc/sys/fs/suid_dumpable": "2\n",
    "/sys/module/apparmor/parameters/enabled": "N\n",
    "/etc/issue.net": "Debian GNU/Linux 12\n",
}

RKE2_CONFIG_GOOD = """token: K10f00d::server:0123456789abcdef
profile: cis
secrets-encryption: true
write-kubeconfig-mode: "0600"
etcd-snapshot-schedule-cron: "0 */3 * * *"
etcd-snapshot-retention: 16
"""
RKE2_CONFIG_BAD = """token: K10f00d::server:0123456789abcdef
write-kubeconfig-mode: "0644"
etcd-snapshot-retention: 2
etcd-disable-snapshots: true
"""


def _static_pod(name: str, args: list[str]) -> str:
    lines = [f"    - {arg}" for arg in args]
    return (f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: kube-system\nspec:\n"
            f"  hostNetwork: true\n  containers:\n  - name: {name}\n    command:\n    - {name}\n    args:\n"
            + "\n".join(lines) + "\n")


APISERVER_GOOD = _static_pod("kube-apiserver", [
    "--admission-control-config-file=/etc/rancher/rke2/rke2-pss.yaml", "--allow-privileged=true",
    "--anonymous-auth=false", "--audit-log-maxage=30", "--audit-log-maxbackup=10",
    "--audit-log-path=/var/lib/rancher/rke2/server/logs/audit.log",
    "--audit-policy-file=/etc/rancher/rke2/audit-policy.yaml", "--authorization-mode=Node,RBAC",
    "--enable-admission-plugins=NodeRestriction",
    "--encryption-provider-config=/var/lib/rancher/rke2/server/cred/encryption-config.json",
    "--profiling=false", "--secure-port=6443",
])
APISERVER_BAD = _static_pod("kube-apiserver", [
    "--allow-privileged=true", "--anonymous-auth=true", "--audit-log-maxage=7", "--authorization-mode=AlwaysAllow",
    "--enable-admission-plugins=PodSecurity", "--profiling=true", "--secure-port=6443",
])
ETCD_CONFIG = """advertise-client-urls: https://10.0.0.11:2379
client-transport-security:
  cert-file: /var/lib/rancher/rke2/server/tls/etcd/server-client.crt
  client-cert-auth: {value}
  key-file: /var/lib/rancher/rke2/server/tls/etcd/server-client.key
  trusted-ca-file: /var/lib/rancher/rke2/server/tls/etcd/server-ca.crt
data-dir: /var/lib/rancher/rke2/server/db/etcd
"""
PASSWD = "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
MANIFESTS = "/var/lib/rancher/rke2/agent/pod-manifests"
KUBELET_DROPIN = "/var/lib/rancher/rke2/agent/etc/kubelet.conf.d/00-rke2-defaults.conf"

RKE2_GOOD = {
    **OS_FILES,
    "/etc/rancher/rke2/config.yaml": RKE2_CONFIG_GOOD,
    "/etc/passwd": PASSWD + "etcd:x:999:999:etcd user:/var/lib/etcd:/sbin/nologin\n",
    "/proc/sys/vm/overcommit_memory": "1\n",
    "/proc/sys/vm/panic_on_oom": "0\n",
    "/proc/sys/kernel/panic": "10\n",
    "/proc/sys/kernel/panic_on_oops": "1\n",
    KUBELET_DROPIN: "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
                    "authentication:\n  anonymous:\n    enabled: false\nprotectKernelDefaults: true\n",
    f"{MANIFESTS}/kube-apiserver.yaml": APISERVER_GOOD,
    f"{MANIFESTS}/kube-scheduler.yaml": _static_pod("kube-scheduler", ["--bind-address=127.0.0.1"]),
    f"{MANIFESTS}/kube-controller-manager.yaml": _static_pod("kube-controller-manager",
                                                             ["--bind-address=127.0.0.1", "--profiling=false"]),
    "/var/lib/rancher/rke2/server/cred/encryption-config.json": '{"kind":"EncryptionConfiguration",'
                                                                '"apiVersion":"apiserver.config.k8s.io/v1"}\n',
    "/var/lib/rancher/rke2/server/db/etcd/config": ETCD_CONFIG.format(value="true"),
}
RKE2_BAD: Tree = {
    **OS_FILES,
    "/etc/rancher/rke2/config.yaml": RKE2_CONFIG_BAD,
    "/etc/passwd": PASSWD,
    "/proc/sys/vm/overcommit_memory": "0\n",
    "/proc/sys/vm/panic_on_oom": "0\n",
    "/proc/sys/kernel/panic": "0\n",
    "/proc/sys/kernel/panic_on_oops": "0\n",
    KUBELET_DROPIN: "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
                    "protectKernelDefaults: false\n",
    f"{MANIFESTS}/kube-apiserver.yaml": APISERVER_BAD,
    f"{MANIFESTS}/kube-scheduler.yaml": _static_pod("kube-scheduler", ["--bind-address=0.0.0.0"]),
    f"{MANIFESTS}/kube-controller-manager.yaml": _static_pod("kube-controller-manager", ["--bind-address=0.0.0.0"]),
    "/var/lib/rancher/rke2/server/cred/": DIR,
    "/var/lib/rancher/rke2/server/db/etcd/config": ETCD_CONFIG.format(value="false"),
}

# pve-cluster writes this header into /etc/pve/vzdump.cron on every node (PVE::Cluster gen_pve_vzdump_files)
VZDUMP_CRON_DUMMY = ('# cluster wide vzdump cron schedule\n# Automatically generated file - do not edit\n\n'
                     'PATH="/usr/sbin:/usr/bin:/sbin:/bin"\n\n')
DOMAINS_STOCK = ("pam: pam\n\tcomment Linux PAM standard authentication\n\n"
                 "pve: pve\n\tcomment Proxmox VE authentication server\n")
# "Keep all backups" (keep-all=1), as in the storage.cfg examples of the PVE docs: no retention at all
STORAGE_KEEP_ALL = ("dir: local\n\tpath /var/lib/vz\n\tcontent iso,vztmpl,backup\n\tprune-backups keep-all=1\n\n"
                    "lvmthin: local-lvm\n\tthinpool data\n\tvgname pve\n\tcontent rootdir,images\n")
VZDUMP_CONF_STOCK = "# vzdump default settings\n\n#tmpdir: DIR\n#dumpdir: DIR\n#prune-backups: keep-INTERVAL=N[,...]\n"

PROXMOX_GOOD = {
    **OS_FILES,
    "/etc/pve/local/pve-ssl.pem": "-----BEGIN CERTIFICATE-----\n",
    "/etc/pve/local/pveproxy-ssl.pem": "-----BEGIN CERTIFICATE-----\n",
    "/etc/pve/local/pveproxy-ssl.key": "-----BEGIN PRIVATE KEY-----\n",
    "/etc/default/pveproxy": 'CIPHERS="ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:'
                             'ECDHE-ECDSA-CHACHA20-POLY1305"\nALLOW_FROM="10.0.0.0/24,127.0.0.1"\nDENY_FROM="all"\n'
                             'POLICY="allow"\n',
    "/etc/pve/priv/tfa.cfg": '{"users":{"root@pam":{"totp":[{"description":"phone","created":1700000000,'
                             '"enable":true,"entry":"otpauth://totp/root?secret=ABC"}]}}}\n',
    "/etc/pve/domains.cfg": DOMAINS_STOCK.replace("authentication\n\n", "authentication\n\ttfa type=oath\n\n", 1),
    "/etc/pve/firewall/cluster.fw": "[OPTIONS]\n\nenable: 1\npolicy_in: DROP\n\n[RULES]\n\n"
                                    "IN ACCEPT -source 10.0.0.0/24 -p tcp -dport 8006 -log nolog\n",
    "/etc/pve/local/host.fw": "[OPTIONS]\n\nenable: 1\n",
    "/etc/pve/jobs.cfg": "vzdump: backup-3f2a1b9c-d1e2\n\tschedule 21:00\n\tall 1\n\tenabled 1\n\tmode snapshot\n"
                         "\tprune-backups keep-daily=7,keep-weekly=4,keep-monthly=3\n\tstorage pbs\n",
    "/etc/pve/vzdump.cron": VZDUMP_CRON_DUMMY,
    "/etc/pve/storage.cfg": STORAGE_KEEP_ALL,
    "/etc/vzdump.conf": VZDUMP_CONF_STOCK,
}
PROXMOX_BAD = {
    **OS_FILES,
    "/etc/pve/local/pve-ssl.pem": "-----BEGIN CERTIFICATE-----\n",
    "/etc/pve/local/pve-ssl.key": "-----BEGIN PRIVATE KEY-----\n",
    "/etc/default/pveproxy": 'CIPHERS="AES256-SHA:ECDHE-RSA-AES256-GCM-SHA384"\nHONOR_CIPHER_ORDER=0\n'
                             'DISABLE_TLS_1_3=1\n',
    "/etc/pve/priv/tfa.cfg": '{"users":{}}\n',
    "/etc/pve/domains.cfg": DOMAINS_STOCK,
    "/etc/pve/firewall/cluster.fw": "[OPTIONS]\n\nenable: 0\npolicy_in: ACCEPT\n",
    "/etc/pve/local/host.fw": "[OPTIONS]\n\nenable: 0\n",
    "/etc/pve/jobs.cfg": "realm-sync: sync-ldap\n\trealm ldap\n\tschedule daily\n\tenabled 1\n",
    "/etc/pve/vzdump.cron": VZDUMP_CRON_DUMMY + "#0 3 * * * root vzdump 100 --mode snapshot --storage local\n",
    "/etc/pve/storage.cfg": STORAGE_KEEP_ALL,
    "/etc/vzdump.conf": VZDUMP_CONF_STOCK,
}

FIXTURES: dict[tuple[str, str], Mapping[str, str | None]] = {
    (BASELINE, "compliant"): BASELINE_GOOD, (BASELINE, "non-compliant"): BASELINE_BAD,
    (RKE2, "compliant"): RKE2_GOOD, (RKE2, "non-compliant"): RKE2_BAD,
    (PROXMOX, "compliant"): PROXMOX_GOOD, (PROXMOX, "non-compliant"): PROXMOX_BAD,
}

# checks whose rules are all f:/d:/p: (no c:), so a mounted root decides them
FILE_ONLY_CHECKS = {
    BASELINE: (100020, 100021, 100022, 100023, 100024, 100027, 100028, 100029, 100030, 100031, 100032, 100033,
               100052, 100053, 100054, 100055, 100056, 100091, 100100, 100101, 100102, 100103, 100104, 100105,
               100106, 100107, 100108, 100111, 100115),
    RKE2: (110010, 110011, 110012, 110013, 110020, 110021, 110022, 110023, 110024, 110025, 110026, 110030, 110031,
           110032),
    PROXMOX: (120001, 120002, 120003, 120004, 120011, 120020, 120022, 120030, 120031),
}


def _file_only(check: Check) -> bool:
    return all(rule.type in (RuleType.FILE, RuleType.DIRECTORY, RuleType.PROCESS) for rule in check.rules)


def _build(root: Path, tree: Mapping[str, str | None]) -> Path:
    for path, content in tree.items():
        target = root / path.lstrip("/")
        if content is DIR:
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    return root


@pytest.fixture(scope="module")
def fixture_scans(tmp_path_factory, policies) -> dict[tuple[str, str], dict[int, CheckResult]]:
    """Every check of the fixture's policy, evaluated on each fixture root (mounted, so no commands)."""
    scans: dict[tuple[str, str], dict[int, CheckResult]] = {}
    for (policy_id, variant), tree in FIXTURES.items():
        root = _build(tmp_path_factory.mktemp(f"{policy_id}-{variant}"), tree)
        target = CachedTarget(LocalTarget(root))
        scans[policy_id, variant] = {c.id: evaluate_check(c, target) for c in policies[policy_id].checks}
    return scans


@pytest.mark.parametrize("policy_id", list(FILE_ONLY_CHECKS))
def test_file_only_check_list_is_current(policies, policy_id):
    assert tuple(c.id for c in policies[policy_id].checks if _file_only(c)) == FILE_ONLY_CHECKS[policy_id]


@pytest.mark.parametrize(("policy_id", "variant"), list(FIXTURES))
def test_fixture_meets_requirements_as_a_mounted_root(policies, tmp_path, policy_id, variant):
    """Baseline and RKE2 requirements are file rules; Proxmox's need `pveversion`, not runnable on a mounted root."""
    result = evaluate_policy(policies[policy_id], LocalTarget(_build(tmp_path, FIXTURES[policy_id, variant])))
    if policy_id == PROXMOX:
        assert not result.applicable
        assert result.requirements is not None and result.requirements.status is Status.NOT_APPLICABLE
        assert "commands cannot run on mounted root" in result.reason
    else:
        assert result.applicable, result.reason
        assert len(result.checks) == len(policies[policy_id].checks)


@pytest.mark.parametrize(("policy_id", "variant", "check_id", "expected"), [
    (policy_id, variant, check_id, Status.PASSED if variant == "compliant" else Status.FAILED)
    for policy_id, ids in FILE_ONLY_CHECKS.items() for variant in ("compliant", "non-compliant") for check_id in ids
])
def test_file_only_check_on_fixture(fixture_scans, policy_id, variant, check_id, expected):
    result = fixture_scans[policy_id, variant][check_id]
    detail = [(r.rule, r.status.value, r.reason or r.evidence) for r in result.rules]
    assert result.status is expected, f"{check_id} on the {variant} {policy_id} fixture: {result.status}: {detail}"


@pytest.mark.parametrize(("policy_id", "variant"), list(FIXTURES))
def test_command_only_checks_are_not_applicable_on_mounted_roots(policies, fixture_scans, policy_id, variant):
    command_only = [c.id for c in policies[policy_id].checks if all(r.type is RuleType.COMMAND for r in c.rules)]
    assert command_only
    for check_id in command_only:
        result = fixture_scans[policy_id, variant][check_id]
        assert result.status is Status.NOT_APPLICABLE, (check_id, result.status)
        assert result.reason.startswith("command rules are not applicable"), (check_id, result.reason)


def test_server_only_rke2_checks_escape_on_an_agent(policies, tmp_path):
    """An agent has no server/ tree: 110013 passes through 'not d:', 110023/110026 are not applicable."""
    agent: Tree = {k: v for k, v in RKE2_GOOD.items() if not k.startswith("/var/lib/rancher/rke2/server/")
             and not k.startswith(MANIFESTS) and k != "/etc/passwd"}
    agent["/etc/passwd"] = PASSWD
    target = LocalTarget(_build(tmp_path, agent))
    checks = {c.id: c for c in policies[RKE2].checks}
    statuses = {i: evaluate_check(checks[i], target).status for i in (110013, 110020, 110023, 110026, 110010)}
    assert statuses == {110013: Status.PASSED, 110020: Status.NOT_APPLICABLE, 110023: Status.NOT_APPLICABLE,
                        110026: Status.NOT_APPLICABLE, 110010: Status.PASSED}

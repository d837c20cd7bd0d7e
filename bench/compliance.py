"""Compliance scan benchmark: a 200-check policy on one host and on 7 SSH hosts in parallel, side by side in one run.

    set -a; . /tmp/astrolab-services/env; set +a      # ASTROLAB_TEST_SSH_PORT, _KEY, _KNOWN_HOSTS
    python bench/compliance.py [--repeats 5] [--hosts 7]

The policy is generated in memory from infra/policies/astrolab_linux_baseline.yml: its checks are cycled through,
each copy with a new id and a title suffix, until 200 checks, so the rule forms and their mix (f:, d: chains, p:,
c: commands, n: compares, &&, not) are the baseline's own; requirements and variables are the baseline's.

Measured (median of --repeats after one warm-up call, wall time):
- local:          one host, scan_target(LocalTarget(), [policy]) (per-scan cache, packages collected);
- local_nocache:  the baseline for the cache: evaluate_policy on a bare LocalTarget plus installed_packages, i.e. the
                  same work as `local` without the per-scan cache;
- ssh:            one host over SSH to the loopback sshd, connect included (scan_host, as the flow does);
- ssh_parallel:   7 hosts (host1..host7, 7 separate connections to the same loopback sshd) by a ThreadPoolExecutor
                  of 7 running scan_host, wall time of the whole batch;
- ssh_sequential: the same 7 one after the other, the baseline for the parallel speed-up.
Also printed: how many commands and SFTP requests one SSH scan sends, and what one `true` command costs on the
sshd. Commands go through one remote shell per connection (started once, so the login shell's start-up, e.g. a
heavy ~/.bashrc, is paid once per host, not per command).
Every run's status per check id is compared with the first local run; mismatches are printed. Targets from the issue:
one host under 3 s, 7 hosts under 10 s; each is printed MET or MISSED (the exit status stays 0). Writes
bench/out/compliance.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from tasks.compliance.evaluate import PolicyResult, Status, evaluate_policy  # noqa: E402
from tasks.compliance.policy import Policy, parse_policy  # noqa: E402
from tasks.compliance.scan import HostScan, installed_packages, scan_host, scan_target  # noqa: E402
from tasks.compliance.ssh_target import SshTarget  # noqa: E402
from tasks.compliance.target import LocalTarget  # noqa: E402
from tasks.inventory.model import Host, Ssh  # noqa: E402

OUT = ROOT / "bench" / "out"
BASELINE = ROOT / "infra" / "policies" / "astrolab_linux_baseline.yml"
N_CHECKS = 200
FIRST_ID = 900001  # outside the lab baselines' id ranges
TARGETS_S = {"one_host": 3.0, "seven_hosts": 10.0}


def median_time(func: Callable[[], object], repeats: int) -> tuple[float, list[float]]:
    """Median wall time of `func` over `repeats` calls after one warm-up call, and every timed call's seconds."""
    func()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        func()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def generated_policy(n_checks: int = N_CHECKS) -> Policy:
    """The lab baseline's checks cycled to `n_checks`, each copy with a new unique id and title suffix."""
    document = yaml.safe_load(BASELINE.read_text(encoding="utf-8"))
    base = document["checks"]
    checks = []
    for i in range(n_checks):
        check = copy.deepcopy(base[i % len(base)])
        check["title"] = f"{check['title']} [bench copy {i // len(base) + 1} of {check['id']}]"
        check["id"] = FIRST_ID + i
        checks.append(check)
    document["policy"] = {**document["policy"], "id": f"bench_{n_checks}_checks",
                          "file": "", "name": f"{n_checks} checks cycled from {document['policy']['id']}"}
    document["checks"] = checks
    return parse_policy(document, source=f"<bench: {n_checks} checks from {BASELINE.name}>")


def rule_mix(policy: Policy) -> dict[str, int]:
    """How many rules of each form the policy holds (rule type with `not`, content compares and && chains)."""
    mix: Counter[str] = Counter()
    for check in policy.checks:
        for rule in check.rules:
            mix[("not " if rule.negated else "") + rule.type.value + ":"] += 1
            if rule.name_filter is not None:
                mix["d: name chains"] += 1
            if rule.content is not None:
                mix["n: compares"] += sum(op.compare_op is not None for op in rule.content.operators)
                mix["&& chains"] += len(rule.content.operators) > 1
    return dict(sorted(mix.items()))


class _Counting:
    """A target that counts the operations the scan sends to the wrapped one (commands and process listings are each
    one SSH channel, i.e. one run of the remote user's shell)."""

    def __init__(self, target: SshTarget) -> None:
        self.target, self.name, self.calls = target, target.name, Counter[str]()

    def __getattr__(self, op: str) -> Callable[..., object]:
        method = getattr(self.target, op)

        def counted(*args: object) -> object:
            self.calls[op] += 1
            return method(*args)

        return counted


def remote_overhead(policy: Policy, ssh: Ssh, probes: int = 10) -> dict[str, float | int]:
    """Remote operations of one SSH scan, and the median cost of one command channel (`true`) and one SFTP stat:
    a command's cost is mostly the remote user's shell starting up, a property of the host, not of the scanner."""
    with SshTarget("127.0.0.1", port=ssh.port, key=ssh.key, known_hosts=ssh.known_hosts) as target:
        counting = _Counting(target)
        scan_target(counting, [policy])  # type: ignore[arg-type]
        command_s, _ = median_time(lambda: target.run("true", 30), probes)
        stat_s, _ = median_time(lambda: target.is_file("/etc/passwd"), probes)
    channels = counting.calls["run"] + counting.calls["processes"]
    return {"channels_per_scan": channels, "sftp_ops_per_scan": sum(counting.calls.values()) - channels,
            "command_channel_s": command_s, "sftp_stat_s": stat_s, "channels_s_per_scan": channels * command_s}


class Recorder:
    """Status per check id of every run, compared against the first (reference) run."""

    def __init__(self) -> None:
        self.reference: dict[int, Status] | None = None
        self.mismatches: list[str] = []
        self.runs = 0

    def add(self, label: str, host: str, result: PolicyResult) -> None:
        statuses = {c.id: c.status for c in result.checks}
        self.runs += 1
        if not result.applicable:
            self.mismatches.append(f"{label} {host}: policy not applicable: {result.reason}")
            return
        if self.reference is None:
            self.reference = statuses
            return
        for check_id in sorted(self.reference.keys() | statuses.keys()):
            ref, got = self.reference.get(check_id), statuses.get(check_id)
            if ref != got:
                reason = next((c.reason for c in result.checks if c.id == check_id), "")
                self.mismatches.append(f"{label} {host}: check {check_id}: {got} (reference {ref}) {reason}")

    def add_scan(self, label: str, scan: HostScan) -> None:
        if scan.status != "scanned":
            self.mismatches.append(f"{label} {scan.host}: {scan.status}: {scan.reason}")
            return
        for result in scan.policies:
            self.add(label, scan.host, result)


def counts(results: list[PolicyResult]) -> dict[str, int]:
    return {"checks": sum(len(r.checks) for r in results), "passed": sum(r.passed for r in results),
            "failed": sum(r.failed for r in results), "not_applicable": sum(r.not_applicable for r in results)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--hosts", type=int, default=7, help="SSH targets in the parallel batch")
    args = parser.parse_args()
    missing = [v for v in ("ASTROLAB_TEST_SSH_PORT", "ASTROLAB_TEST_SSH_KEY", "ASTROLAB_TEST_SSH_KNOWN_HOSTS")
               if not os.environ.get(v)]
    if missing:
        sys.exit(f"{', '.join(missing)} not set: source the test services' env file (see the docstring)")
    env = os.environ
    ssh = Ssh(user="root", port=int(env["ASTROLAB_TEST_SSH_PORT"]), key=Path(env["ASTROLAB_TEST_SSH_KEY"]),
              known_hosts=Path(env["ASTROLAB_TEST_SSH_KNOWN_HOSTS"]))
    hosts = [Host(name=f"host{i}", address="127.0.0.1", ssh=ssh) for i in range(1, args.hosts + 1)]
    policy = generated_policy()
    recorder = Recorder()
    last: dict[str, list[PolicyResult]] = {}

    def local() -> None:
        scan = scan_target(LocalTarget(), [policy])
        recorder.add_scan("local", scan)
        last["local"] = scan.policies

    def local_nocache() -> None:
        target = LocalTarget()
        result = evaluate_policy(policy, target)
        installed_packages(target)
        recorder.add("local_nocache", target.name, result)
        last["local_nocache"] = [result]

    def one_ssh() -> None:
        scan = scan_host(hosts[0], ssh, [policy])
        recorder.add_scan("ssh", scan)
        last["ssh"] = scan.policies

    def batch(label: str, workers: int) -> None:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scan") as pool:
            scans = list(pool.map(lambda h: scan_host(h, ssh, [policy]), hosts))
        for scan in scans:
            recorder.add_scan(label, scan)
        last[label] = [r for s in scans for r in s.policies]

    overhead = remote_overhead(policy, ssh)  # also fails early, with the connection's own message, without the sshd

    load_before = os.getloadavg()
    runs: dict[str, tuple[float, list[float]]] = {}
    runs["local"] = median_time(local, args.repeats)
    runs["local_nocache"] = median_time(local_nocache, args.repeats)
    runs["ssh"] = median_time(one_ssh, args.repeats)
    runs["ssh_parallel"] = median_time(lambda: batch("ssh_parallel", len(hosts)), args.repeats)
    runs["ssh_sequential"] = median_time(lambda: batch("ssh_sequential", 1), args.repeats)
    load_after = os.getloadavg()

    target_of = {"local": "one_host", "ssh": "one_host", "ssh_parallel": "seven_hosts"}
    results: dict[str, dict] = {}
    print(f"policy: {len(policy.checks)} checks cycled from {BASELINE.name}; rule forms {rule_mix(policy)}")
    print(f"{'run':15s} {'median s':>9s} {'target s':>9s} {'of target':>9s} {'checks':>7s} {'passed':>7s} "
          f"{'failed':>7s} {'N/A':>5s}  verdict")
    for name, (median, times) in runs.items():
        c = counts(last[name])
        entry: dict = {"median_s": median, "times_s": times, **c}
        verdict = ""
        if name in target_of:
            target = TARGETS_S[target_of[name]]
            entry.update(target_s=target, fraction_of_target=median / target, met=median < target)
            verdict = "MET" if median < target else "MISSED"
        results[name] = entry
        target_text = f"{entry['target_s']:9.1f} {entry['fraction_of_target']:9.2f}" if verdict else f"{'':9s} {'':9s}"
        print(f"{name:15s} {median:9.3f} {target_text} {c['checks']:7d} {c['passed']:7d} {c['failed']:7d} "
              f"{c['not_applicable']:5d}  {verdict}")
    speedup = runs["ssh_sequential"][0] / runs["ssh_parallel"][0]
    cache = runs["local_nocache"][0] / runs["local"][0]
    print(f"parallel speed-up ({len(hosts)} hosts): {speedup:.2f}x; per-scan cache saves "
          f"{runs['local_nocache'][0] - runs['local'][0]:.3f} s locally ({cache:.2f}x)")
    print(f"one SSH scan sends {overhead['channels_per_scan']} commands (through one remote shell, "
          f"{overhead['command_channel_s'] * 1000:.0f} ms apiece for `true` on this sshd: "
          f"{overhead['channels_s_per_scan']:.2f} s) and {overhead['sftp_ops_per_scan']} SFTP requests "
          f"({overhead['sftp_stat_s'] * 1000:.1f} ms per stat)")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} on {os.cpu_count()} CPUs")
    if recorder.mismatches:
        print(f"{len(recorder.mismatches)} MISMATCHES against the first local run:")
        for line in recorder.mismatches[:50]:
            print("  " + line)
    else:
        print(f"results identical: status per check id the same in all {recorder.runs} policy runs")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "compliance.json").write_text(json.dumps({
        "policy_checks": len(policy.checks), "rule_mix": rule_mix(policy), "hosts": len(hosts),
        "repeats": args.repeats, "runs": results, "parallel_speedup": speedup, "cache_speedup": cache,
        "ssh_overhead": overhead,
        "identical": not recorder.mismatches, "mismatches": recorder.mismatches, "policy_runs": recorder.runs,
        "load_before": load_before, "load_after": load_after, "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }, indent=2))


if __name__ == "__main__":
    main()

"""tasks.cluster.runner with real Ansible over real SSH on the test fleet, through small generated roles: check mode
plans (diffs) and changes nothing (looked at from outside over SSH), apply changes, a second apply reports every
task ok; a failing task and an unreachable host are one-line errors naming the host; secrets stay out of results
and of the disk; a missing role is named with a hint."""

import subprocess
import sys
from pathlib import Path

import pytest

from tasks.cluster.inventory import write_ansible_inventory
from tasks.cluster.runner import RoleError, pattern_hosts, run_role, task_result
from tasks.inventory.model import Host, Inventory
from tests.tasks.cluster.fleet_roles import SECRET_VARIABLE, clean, files_on, fresh_base, ssh, write_roles

SECRET = "s3cr3t-Runner-7f1c"


@pytest.fixture
def setup(fleet, tmp_path):
    base = fresh_base()
    write_roles(tmp_path / "roles", base)
    yield fleet, tmp_path / "roles", base
    clean(fleet, base)


def _text(result) -> str:
    return repr(result)


def test_plan_changes_nothing_apply_changes_second_apply_is_all_ok(setup, tmp_path):
    fleet, roles, base = setup
    work = tmp_path / "work"
    work.mkdir()
    env = {SECRET_VARIABLE: SECRET}
    plan = run_role("marker", "all", fleet, roles, check=True, limit=["fleet1", "fleet2"], env=env, work_root=work)
    assert plan.ok and plan.check and plan.hosts == ("fleet1", "fleet2")
    assert {h: t["changed"] for h, t in plan.totals.items()} == {"fleet1": 3, "fleet2": 3}  # dir, file, digest
    marker = [t for t in plan.tasks if t.task == "Marker file" and t.host == "fleet2"][0]
    assert marker.status == "changed" and "+fleet2 marked" in marker.diff
    assert files_on(fleet, "fleet1", base) == [] and files_on(fleet, "fleet2", base) == []  # nothing changed

    first = run_role("marker", "all", fleet, roles, limit=["fleet1", "fleet2"], env=env, work_root=work)
    assert first.ok and first.changed == 6 and not first.check
    assert files_on(fleet, "fleet1", base) == ["digest", "marker"] and files_on(fleet, "fleet3", base) == []
    assert ssh(fleet, "fleet2", f"cat {base}/digest").stdout == f"{SECRET}-digest\n"  # the role got the secret

    second = run_role("marker", "all", fleet, roles, limit=["fleet1", "fleet2"], env=env, work_root=work)
    assert second.ok and second.changed == 0
    assert sorted(second.totals) == ["fleet1", "fleet2"]  # both hosts ran: the totals below are not vacuous
    assert all(t["ok"] == 5 and t["failed"] == t["unreachable"] == 0 for t in second.totals.values())
    assert len(second.tasks) == 10 and all(t.status == "ok" for t in second.tasks)  # 5 ok per host

    secret_tasks = [t for r in (plan, first, second) for t in r.tasks if t.task.startswith("Secret")]
    assert len(secret_tasks) == 12 and all(t.censored and not t.diff for t in secret_tasks)
    for result in (plan, first, second):
        assert SECRET not in _text(result)
    assert list(work.iterdir()) == []  # ansible-runner's private data dir (its `command` file holds the env) is gone


def test_a_failing_task_and_an_unreachable_host_are_named(setup, tmp_path):
    fleet, roles, base = setup
    ssh(fleet, "fleet2", f"mkdir -p {base} && touch {base}/fail")
    gone = fleet.nodes[2].model_copy(update={"ssh": fleet.ssh_for(fleet.nodes[2]).model_copy(update={"port": 9})})
    inventory = fleet.model_copy(update={"nodes": (*fleet.nodes[:2], gone)})
    result = run_role("failing", "all", inventory, roles, env={SECRET_VARIABLE: SECRET})
    assert not result.ok and result.failed_hosts == ["fleet2", "fleet3"]
    assert result.totals["fleet1"]["failed"] == 0 and result.totals["fleet1"]["changed"] == 2
    assert result.totals["fleet2"]["failed"] == 1 and result.totals["fleet3"]["unreachable"] == 1
    assert result.error.startswith("fleet3 unreachable: ")
    assert "fleet2: task 'Fail where injected' failed: injected fault" in result.error and "\n" not in result.error
    assert files_on(fleet, "fleet1", base) == ["failing"] and files_on(fleet, "fleet2", base) == ["fail"]


def test_a_missing_role_is_named_with_a_hint(setup):
    fleet, roles, _ = setup
    with pytest.raises(RoleError, match=r"role 'markre' is not in .*roles \(did you mean 'marker'\?\)"):
        run_role("markre", "all", fleet, roles)


@pytest.mark.parametrize(("pattern", "expected"), [
    ("db", ["fleet1", "fleet2"]), ("all:!db", ["fleet3"]), ("db:&rke2_server", ["fleet2"]),
    ("rke2_server:fleet3", ["fleet2", "fleet3"]), ("fleet*:!fleet2", ["fleet1", "fleet3"]), ("nfs", []),
    ("all:!wazuh", ["fleet1", "fleet2", "fleet3"]), ("localhost", ["localhost"]),
    ("db,!fleet1", ["fleet2"]), ("db,rke2_server:!fleet1", ["fleet1", "fleet2"]),  # with ',' a ':' separates nothing
])
def test_patterns_resolve_as_ansible_does(pattern, expected, tmp_path):
    inventory = Inventory(nodes=(Host(name="fleet1", address="127.0.0.1", roles=("db",)),
                                 Host(name="fleet2", address="127.0.0.1", roles=("rke2-server", "db")),
                                 Host(name="fleet3", address="127.0.0.1")))
    assert pattern_hosts(inventory, pattern) == expected
    path = write_ansible_inventory(inventory, tmp_path / "hosts.yml")
    listed = subprocess.run([str(Path(sys.executable).parent / "ansible"), pattern, "-i", str(path), "--list-hosts"],
                            capture_output=True, text=True, check=True).stdout
    assert sorted(line.strip() for line in listed.splitlines()[1:]) == expected  # what Ansible itself selects
    assert pattern_hosts(inventory, "all", ["fleet3", "fleet1"]) == ["fleet1", "fleet3"]


def test_events_parse_with_no_log_censored_and_secrets_masked():
    failed = task_result({"event": "runner_on_failed", "event_data": {
        "host": "db1", "task": "Start", "task_action": "service",
        "res": {"msg": f"cannot start:\n password {SECRET} refused", "changed": False}}}, [SECRET])
    assert failed is not None and failed.status == "failed" and failed.message == "cannot start: password *** refused"
    hidden = task_result({"event": "runner_on_failed", "event_data": {
        "host": "db1", "task": "Token", "res": {"censored": "hidden", "_ansible_no_log": True}}})
    assert hidden is not None and hidden.censored and hidden.message == "(output hidden: no_log)"
    changed = task_result({"event": "runner_on_ok", "event_data": {"host": "h", "task": "t", "res": {
        "changed": True, "diff": [{"before": "a\n", "after": "b\n", "before_header": "/etc/x",
                                   "after_header": "/etc/x"}, {"prepared": "+ line"}]}}})
    assert changed is not None and changed.status == "changed"
    assert changed.diff == "--- /etc/x\n+++ /etc/x\n-a\n+b\n\n+ line"
    ignored = task_result({"event": "runner_on_failed", "event_data": {"host": "h", "task": "t",
                                                                      "ignore_errors": True, "res": {}}})
    assert ignored is not None and ignored.status == "ok"
    assert task_result({"event": "playbook_on_start", "event_data": {}}) is None

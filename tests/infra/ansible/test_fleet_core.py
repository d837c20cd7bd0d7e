"""The core and security roles on the test fleet over real SSH: a plan on pristine hosts changes nothing, an apply
converges base, NFS server and client, PostgreSQL with q3c and the hardening, and a second apply changes nothing.
The hosts get their pristine root filesystems back after the module (fresh_fleet)."""

import secrets
import subprocess
import time

import pytest
import yaml

from tests.infra.ansible.playbooks import ANSIBLE_DIR, fleet_cluster, run_roles, snapshot, ssh

HOSTS = "fleet1,fleet3"  # fleet1: db, nfs (server); fleet3: an RKE2 agent and Dask worker (NFS client)
ROLES = ("base", "nfs_server", "nfs_client", "postgresql", "hardening")


def pattern(role: str) -> str:
    """The host pattern phases.yaml gives the role."""
    phases = yaml.safe_load((ANSIBLE_DIR / "phases.yaml").read_text())["phases"]
    return next(r["hosts"] for phase in phases for r in phase["roles"] if r["role"] == role)


@pytest.fixture(scope="module")
def applied(fresh_fleet, tmp_path_factory):
    """Plan, apply and apply again the core roles (a play each, in phase order) on fleet1 and fleet3; the runs by
    pass."""
    cluster = fleet_cluster(fresh_fleet)
    work = tmp_path_factory.mktemp("core")
    password = secrets.token_urlsafe(18)
    env = {"ASTROLAB_DB_PASSWORD": password}
    before = {h: snapshot(fresh_fleet, h) for h in ("fleet1", "fleet3")}
    plays = [(role, pattern(role)) for role in ROLES]
    runs = {"plan": run_roles(work / "plan", cluster, plays, check=True, env=env, limit=HOSTS)}
    after_plan = {h: snapshot(fresh_fleet, h) for h in ("fleet1", "fleet3")}
    for passname in ("apply", "again"):
        start = time.monotonic()
        runs[passname] = run_roles(work / passname, cluster, plays, env=env, limit=HOSTS)
        print(f"{passname}: {time.monotonic() - start:.0f} s")
    return {"runs": runs, "before": before, "after_plan": after_plan, "password": password, "fleet": fresh_fleet}


def test_the_plan_succeeds_and_changes_nothing_on_the_hosts(applied):
    plan = applied["runs"]["plan"]
    assert plan.rc == 0, plan.output[-6000:]
    assert plan.changed("fleet1") > 0 and plan.changed("fleet3") > 0  # it saw what to install
    for host in ("fleet1", "fleet3"):
        assert applied["after_plan"][host] == applied["before"][host]


def test_the_apply_converges_and_a_second_apply_changes_nothing(applied):
    apply, again = applied["runs"]["apply"], applied["runs"]["again"]
    assert apply.rc == 0, apply.output[-6000:]
    assert apply.changed("fleet1") > 0 and apply.changed("fleet3") > 0
    assert again.rc == 0, again.output[-6000:]
    assert {host: (counts["changed"], counts["failed"]) for host, counts in again.recap.items()} == \
        {"fleet1": (0, 0), "fleet3": (0, 0)}, again.output[-6000:]
    for role in ROLES:  # every role ran in the second apply
        assert f"TASK [{role} : " in again.output


def test_no_secret_reaches_the_output(applied):
    for run in applied["runs"].values():
        assert applied["password"] not in run.output


def test_postgresql_answers_with_q3c_and_the_owner_logs_in_with_its_password(applied):
    fleet = applied["fleet"]
    ipix = ssh(fleet, "fleet1", "runuser -u postgres -- psql -p 56432 -d astrolab -Atc "
               "\"select extname from pg_extension where extname = 'q3c'; select q3c_ang2ipix(10.0, 20.0)\"")
    name, value = ipix.split()
    assert name == "q3c" and int(value) > 0
    owner = ssh(fleet, "fleet1", "PGPASSWORD=\"$(cat)\" psql -h 127.0.0.1 -p 56432 -U astrolab -d astrolab -Atc "
                "'select current_user, pg_catalog.pg_get_userbyid(datdba) from pg_database where datname = "
                "current_database()'", stdin=applied["password"])
    assert owner.strip() == "astrolab|astrolab"


def test_nfs_exports_and_client_mounts_are_in_place(applied):
    fleet = applied["fleet"]
    exports = [line for line in ssh(fleet, "fleet1", "cat /etc/exports").splitlines() if not line.startswith("#")]
    assert exports == ["/srv/nfs/data 10.20.0.0/24(rw,sync,no_subtree_check,root_squash)"]
    assert ssh(fleet, "fleet1", "dpkg-query -W -f '${Status}' nfs-kernel-server") == "install ok installed"
    fstab = ssh(fleet, "fleet3", "grep ' /mnt/data ' /etc/fstab").split()
    assert fstab[:3] == ["127.0.0.1:/srv/nfs/data", "/mnt/data", "nfs4"]
    assert "nfsvers=4.2" in fstab[3]


def test_the_hardening_holds_from_outside(applied):
    fleet = applied["fleet"]
    for host in ("fleet1", "fleet3"):
        sshd = dict(line.split(" ", 1) for line in ssh(fleet, host, "/usr/sbin/sshd -T").splitlines() if " " in line)
        assert (sshd["permitrootlogin"], sshd["passwordauthentication"], sshd["maxauthtries"]) == ("no", "no", "4")
        assert (sshd["x11forwarding"], sshd["banner"], sshd["loglevel"]) == ("no", "/etc/issue.net", "VERBOSE")
        assert "cbc" not in sshd["ciphers"] and "sha1" not in sshd["macs"]
        assert "pam_faillock.so" in ssh(fleet, host, "cat /etc/pam.d/common-auth")
        assert "minlen = 14" in ssh(fleet, host, "cat /etc/security/pwquality.conf.d/50-astrolab.conf")
        assert ssh(fleet, host, "stat -c %a:%U:%G /etc/ssh/sshd_config /etc/shadow").split() == \
            ["600:root:root", "640:root:shadow"]
        assert "nosuid,nodev" in ssh(fleet, host, "findmnt -rn -o OPTIONS /tmp")
        assert "policy drop" in ssh(fleet, host, "cat /etc/nftables.conf")
        assert ssh(fleet, host, "pgrep -x chronyd") != ""
    # The running sshd was reloaded: root, which the fleet lets in with its key before the hardening, is refused.
    host = next(h for h in fleet.hosts if h.name == "fleet1")
    conn = fleet.ssh_for(host)
    refused = subprocess.run(["ssh", "-q", "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={conn.known_hosts}",
                              "-o", "StrictHostKeyChecking=yes", "-i", str(conn.key), "-p", str(conn.port),
                              f"root@{host.address}", "true"], capture_output=True, timeout=60)
    assert refused.returncode == 255


def _scanned_with_become(fleet, tmp_path):
    """The fleet cluster's inventory (the sudo admin, root being refused after the hardening) with ssh.become, so
    that the compliance scan reads and runs as root; written where the flow reads it."""
    cluster = fleet_cluster(fleet)
    nodes = tuple(h.model_copy(update={"ssh": h.ssh.model_copy(update={"become": True})}) for h in cluster.nodes)
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(cluster.model_copy(update={"nodes": nodes}).model_dump(mode="json")))
    return path


def test_the_security_gate_holds_on_the_hardened_hosts_and_not_on_a_pristine_one(applied, prefect_server, tmp_path,
                                                                                   monkeypatch):
    """The compliance gate end to end: the cluster-build flow applies the security phase's hardening, then scans the
    hosts over SSH as the sudo admin with become (root logins are refused now) and checks the lab's threshold
    (phases.yaml: astrolab_linux_baseline >= 80%). The same gate on the pristine fleet2 does not hold."""
    from astrolab.resources import build_catalog
    from astrolab.settings import load_settings
    from infra_flows.cluster_build import check_gate, cluster_build
    from tasks.cluster.phases import load_phases
    from tasks.compliance.store import latest_scans
    from tasks.inventory.load import load_inventory
    from tests.infra.ansible.playbooks import FLEET_VARS

    monkeypatch.setenv("ASTROLAB_HOME", str(tmp_path / "home"))
    inventory = _scanned_with_become(applied["fleet"], tmp_path)
    state = cluster_build(mode="apply", phases=["security"], roles=["hardening"], hosts=["fleet1", "fleet3"],
                          inventory=str(inventory), variables=FLEET_VARS, return_state=True)
    assert state.is_completed(), state.message
    gate = next(s for s in state.result()["summary"] if s["phase"] == "security gate")
    assert gate == {"phase": "security gate", "result": "ok",
                    "detail": "compliance astrolab_linux_baseline >= 80% on 2 host(s)"}
    settings = load_settings()
    with build_catalog(settings, read_only=True) as store:
        scores = {s["host"]: s["score"] for s in latest_scans(store) if s["policy_id"] == "astrolab_linux_baseline"}
    assert set(scores) == {"fleet1", "fleet3"} and min(scores.values()) >= 80, scores
    print(f"astrolab_linux_baseline after the hardening: {scores}")

    security = load_phases(ANSIBLE_DIR / "phases.yaml", ANSIBLE_DIR / "roles").phase("security")
    (verdict,) = check_gate(security, load_inventory(str(inventory)), ["fleet2"], settings, str(inventory))
    assert not verdict.ok and "below 80% on 1 of 1" in verdict.message and "fleet2" in verdict.message, verdict
    print(verdict.message)

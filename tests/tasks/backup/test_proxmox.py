"""tasks.backup.proxmox through proxmoxer against a small local PVE API (HTTPS, API token): archives listed, the
freshness of proxmox-vm assets for the RPO check, and failures that are "unknown", never ok or never; vzdump backups
through their task (recorded in the catalog; a failed, hung or unauthorised task a clear error), restore drills into a
scratch vmid that is destroyed afterwards, and retention applied to a VM's archives."""

import shutil
import socket
import time
from datetime import UTC, datetime, timedelta

import pytest

from astrolab.resources import open_catalog
from astrolab.settings import REPO_ROOT
from tasks.backup.drivers import backup_asset
from tasks.backup.proxmox import (
    ProxmoxApi,
    ProxmoxError,
    backup_archives,
    config_disks,
    connect,
    drill_vm,
    inventory_vm,
    proxmox_reader,
    prune_vm,
)
from tasks.backup.records import latest_backups, record_backup
from tasks.backup.registry import Retention, parse_assets
from tasks.backup.rpo import check_rpo
from tasks.inventory.load import load_inventory
from tests.tasks.backup.proxmox_fake import TOKEN_ID, TOKEN_SECRET, FakeProxmox, archive, self_signed

# wazuh1 is vm 141 on pve3, prefect1 vm 131 on pve2
INVENTORY = load_inventory(REPO_ROOT / "infra" / "inventory" / "lab.example.yaml")
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.fail("the openssl command is needed to make the fake Proxmox API's certificate")
    return self_signed(tmp_path_factory.mktemp("pve-tls"))


@pytest.fixture
def pve(tls):
    server = FakeProxmox({
        ("pve3", "pbs-lab"): [archive("pbs-lab", 141, _epoch(NOW - 30 * H), "ok"),
                              archive("pbs-lab", 141, _epoch(NOW - 7 * H), "ok"),
                              archive("pbs-lab", 141, _epoch(NOW - H), "failed"),  # not a good backup
                              archive("pbs-lab", 999, _epoch(NOW))],  # another VM
        ("pve2", "local-backup"): [archive("local-backup", 131, _epoch(NOW - 20 * H))],
        ("pve5", "local-backup"): [],
    }, tls)
    yield server
    server.close()


def _client(server, tls, secret=TOKEN_SECRET):
    return connect(server.url, TOKEN_ID, secret, verify=tls[0], timeout=10)


def _registry(*vms):
    return parse_assets({
        "repositories": [{"name": "nfs", "url": "/srv/restic"}],
        "assets": [{"name": name, "class": cls, "kind": "proxmox-vm", "vm": vm, "storage": storage}
                   for name, cls, vm, storage in vms]}, "assets.yaml", INVENTORY)


def test_archives_are_listed_through_the_api(pve, tls):
    archives = backup_archives(_client(pve, tls), "pve3", "pbs-lab", vmid=141)
    assert [a.created for a in archives] == [NOW - 30 * H, NOW - 7 * H, NOW - H]
    assert [a.verification for a in archives] == ["ok", "ok", "failed"]
    assert archives[0].volid.startswith("pbs-lab:backup/vzdump-qemu-141-") and archives[0].size == 1 << 30
    assert archives[0].format == "vma.zst"
    assert pve.requests == ["/api2/json/nodes/pve3/storage/pbs-lab/content"]


def test_vm_freshness_for_the_rpo_check(pve, tls):
    reg = _registry(("wazuh-vm", "security", "wazuh1", "pbs-lab"),
                    ("dev-vm-prefect", "development", "prefect1", "local-backup"),
                    ("db-vm", "research-data", "db1", "local-backup"))
    statuses = {s.asset: s for s in check_rpo(reg, NOW, readers={"proxmox-vm": proxmox_reader(_client(pve, tls),
                                                                                             INVENTORY)})}
    assert statuses["wazuh-vm"].last_backup == NOW - 7 * H  # the failed verification an hour ago does not count
    assert statuses["wazuh-vm"].state == "warning"  # 7h of 8h
    assert statuses["dev-vm-prefect"].last_backup == NOW - 20 * H and statuses["dev-vm-prefect"].state == "warning"
    assert statuses["db-vm"].state == "never"
    assert sorted(pve.requests) == ["/api2/json/nodes/pve2/storage/local-backup/content",  # one per node and storage
                                    "/api2/json/nodes/pve3/storage/pbs-lab/content",
                                    "/api2/json/nodes/pve5/storage/local-backup/content"]


def test_api_failures_are_unknown_with_the_reason(pve, tls):
    reg = _registry(("wazuh-vm", "security", "wazuh1", "pbs-lab"), ("gone", "development", "rke2-a3", "nowhere"))
    wrong = {s.asset: s for s in check_rpo(reg, NOW, readers={"proxmox-vm": proxmox_reader(
        _client(pve, tls, secret="not-the-secret-123"), INVENTORY)})}
    assert wrong["wazuh-vm"].state == "unknown"
    assert wrong["wazuh-vm"].reason == ("proxmox nodes/pve3/storage/pbs-lab/content: HTTP 401 Unauthorized "
                                        "(authentication failure)")
    assert "not-the-secret-123" not in wrong["wazuh-vm"].reason

    right = {s.asset: s for s in check_rpo(reg, NOW, readers={"proxmox-vm": proxmox_reader(_client(pve, tls),
                                                                                           INVENTORY)})}
    assert right["wazuh-vm"].state == "warning"
    assert right["gone"].state == "unknown"
    assert right["gone"].reason.startswith("proxmox nodes/pve6/storage/nowhere/content: HTTP 500 ")
    assert "storage 'nowhere' does not exist on node 'pve6'" in right["gone"].reason

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    down = connect(f"https://127.0.0.1:{closed}", TOKEN_ID, TOKEN_SECRET, verify=tls[0], timeout=5)
    [status] = check_rpo(_registry(("wazuh-vm", "security", "wazuh1", "pbs-lab")), NOW,
                         readers={"proxmox-vm": proxmox_reader(down, INVENTORY)})
    assert status.state == "unknown" and "the Proxmox API cannot be reached" in status.reason
    assert TOKEN_SECRET not in status.reason

    untrusted = connect(pve.url, TOKEN_ID, TOKEN_SECRET, verify=True, timeout=5)  # the fake's CA is not trusted
    with pytest.raises(ProxmoxError, match="TLS verification of the Proxmox API failed"):
        backup_archives(untrusted, "pve3", "pbs-lab")


def test_connect_checks_its_arguments():
    with pytest.raises(ProxmoxError, match="must be https://host"):
        connect("http://pve1:8006", TOKEN_ID, TOKEN_SECRET)
    with pytest.raises(ProxmoxError, match=r"user@realm!tokenname"):
        connect("https://pve1:8006", "astrolab@pve", TOKEN_SECRET)


WAZUH = {"name": "wazuh1", "node": "pve3", "template": 0, "cores": 2, "memory": 8192,
         "scsi0": "local-lvm:vm-141-disk-0,iothread=1,size=32G", "scsi1": "local-lvm:vm-141-disk-1,size=8G",
         "efidisk0": "local-lvm:vm-141-disk-2,efitype=4m,size=4M", "ide2": "none,media=cdrom",
         "net0": "virtio=BC:24:11:00:01:41,bridge=vmbr0"}


@pytest.fixture
def lab_pve(tls):
    """The lab's wazuh1 (vm 141 on pve3, three disks and an empty CD-ROM) and its backup storage, no archive yet."""
    server = FakeProxmox({("pve3", "pbs-lab"): []}, tls, vms={141: dict(WAZUH)}, nodes=("pve3",))
    server.running_polls = 2
    yield server
    server.close()


def _api(server, tls, secret=TOKEN_SECRET, **kwargs):
    return ProxmoxApi(_client(server, tls, secret), **{"task_timeout": 10, "poll_interval": 0.01, **kwargs})


def _wazuh(**extra):
    return _registry(("wazuh-vm", "security", "wazuh1", "pbs-lab")).asset("wazuh-vm").model_copy(update=extra)


def _status_polls(server, task_type):
    return [r for r in server.requests if r.startswith("/api2/json/nodes/pve3/tasks/") and f":{task_type}:" in r]


def test_a_vzdump_backup_makes_an_archive_and_a_record(lab_pve, tls, tmp_path):
    result = backup_asset(_wazuh(), None, inventory=INVENTORY, proxmox=_api(lab_pve, tls))
    [item] = lab_pve.storages[("pve3", "pbs-lab")]
    assert result.summary.snapshot_id == item["volid"] and item["volid"].startswith("pbs-lab:backup/vzdump-qemu-141-")
    assert result.summary.bytes_added == result.summary.total_bytes_processed == item["size"] == 2 << 20
    assert result.sha256 is None and result.short_id == item["volid"]
    [(method, path, form)] = lab_pve.changes
    assert (method, path) == ("POST", "/api2/json/nodes/pve3/vzdump")
    assert form == {"vmid": "141", "storage": "pbs-lab", "mode": "snapshot", "compress": "zstd"}
    polls = _status_polls(lab_pve, "vzdump")
    assert len(polls) == 3  # running, running, stopped
    upid = polls[0].split("/")[-2]
    assert upid.startswith("UPID:pve3:") and upid.endswith(f":vzdump:141:{TOKEN_ID}:")
    with open_catalog(f"duckdb:///{tmp_path / 'catalog.duckdb'}") as store:
        record_backup(store, result.record("run-1"))
        row = latest_backups(store)["wazuh-vm"]
    assert (row["status"], row["kind"], row["snapshot_id"]) == ("ok", "proxmox-vm", item["volid"])
    assert (row["bytes_added"], row["total_bytes"], row["total_files"]) == (2 << 20, 2 << 20, 1)

    again = backup_asset(_wazuh(mode="stop"), None, inventory=INVENTORY, proxmox=_api(lab_pve, tls))
    assert again.summary.snapshot_id != result.summary.snapshot_id  # the archive that was not there before
    assert lab_pve.changes[-1][2]["mode"] == "stop" and len(lab_pve.storages[("pve3", "pbs-lab")]) == 2


def test_a_failed_hung_or_unauthorised_vzdump_is_a_clear_error(lab_pve, tls):
    lab_pve.task_errors["vzdump"] = "job errors"
    with pytest.raises(ProxmoxError) as err:
        backup_asset(_wazuh(), None, inventory=INVENTORY, proxmox=_api(lab_pve, tls))
    assert str(err.value) == "proxmox vzdump of vm wazuh1 (141) on node pve3 onto pbs-lab: task failed: job errors"
    assert lab_pve.storages[("pve3", "pbs-lab")] == []

    lab_pve.task_errors.clear()
    lab_pve.hang.add("vzdump")
    clock = time.monotonic()
    with pytest.raises(ProxmoxError, match=r"^proxmox vzdump of vm wazuh1 \(141\) on node pve3 onto pbs-lab: task "
                                           r"still running after 0.3 s, gave up waiting \(UPID:pve3:"):
        backup_asset(_wazuh(), None, inventory=INVENTORY, proxmox=_api(lab_pve, tls, task_timeout=0.3))
    assert 0.3 <= time.monotonic() - clock < 3

    lab_pve.hang.clear()
    wrong = "a-wrong-token-secret-0000"
    seen = len(lab_pve.requests)  # every request, refused ones too (changes records only authorised ones)
    with pytest.raises(ProxmoxError) as err:
        backup_asset(_wazuh(), None, inventory=INVENTORY, proxmox=_api(lab_pve, tls, secret=wrong))
    assert str(err.value) == ("proxmox nodes/pve3/storage/pbs-lab/content: HTTP 401 Unauthorized "
                              "(authentication failure)")
    assert wrong not in str(err.value) and TOKEN_SECRET not in str(err.value)
    assert lab_pve.requests[seen:] == ["/api2/json/nodes/pve3/storage/pbs-lab/content"]  # no vzdump POST tried

    with pytest.raises(ValueError, match="^asset wazuh-vm: a proxmox-vm asset needs the Proxmox API"):
        backup_asset(_wazuh(), None, inventory=INVENTORY)
    with pytest.raises(ProxmoxError, match="^asset wazuh-vm: vm 'nope' is not in the inventory$"):
        inventory_vm(INVENTORY, _wazuh(vm="nope"))


def test_a_drill_restores_into_a_scratch_vmid_and_destroys_it(lab_pve, tls):
    api = _api(lab_pve, tls)
    backup_asset(_wazuh(), None, inventory=INVENTORY, proxmox=api)
    [archive] = backup_archives(api.client, "pve3", "pbs-lab", 141)
    lab_pve.changes.clear()
    vm = inventory_vm(INVENTORY, _wazuh())

    drill = drill_vm(api, _wazuh(), vm)
    assert drill.passed and drill.snapshot_id == archive.volid and drill.kind == "proxmox-vm"
    assert drill.rto == timedelta(hours=4) and 0 < drill.restore_s < 10
    restore, destroy = [c for c in lab_pve.changes if c[0] in ("POST", "DELETE")]
    assert restore[:2] == ("POST", "/api2/json/nodes/pve3/qemu")
    assert restore[2] == {"vmid": "142", "archive": archive.volid, "unique": "1"}  # the cluster's nextid, not 141
    assert destroy == ("DELETE", "/api2/json/nodes/pve3/qemu/142", {"purge": "1", "destroy-unreferenced-disks": "1"})
    assert sorted(lab_pve.vms) == [141] and lab_pve.vms[141] == WAZUH  # the live VM untouched, the scratch one gone
    assert drill.detail.startswith(f"archive {archive.volid} restored into scratch vm 142 on node pve3; 3 disk(s) "
                                   "compared with the archive's config; scratch vm 142 destroyed; restore ")

    # a scratch range: its first free vmid; the restored disks go to the scratch storage
    lab_pve.vms[9900] = {"name": "busy", "node": "pve3", "template": 0}
    lab_pve.changes.clear()
    ranged = drill_vm(_api(lab_pve, tls, scratch_vmids=(9900, 9902), scratch_storage="scratch-lvm"), _wazuh(), vm)
    assert ranged.passed and lab_pve.changes[0][2]["vmid"] == "9901"
    assert lab_pve.changes[0][2]["storage"] == "scratch-lvm" and sorted(lab_pve.vms) == [141, 9900]
    del lab_pve.vms[9900]

    # a restore that loses a disk fails the drill, and the scratch VM is still destroyed
    lab_pve.restore_drops = {"scsi1"}
    lost = drill_vm(api, _wazuh(), vm)
    assert lost.result == "failed"
    assert lost.mismatches == ("disk scsi1: missing in scratch vm 142, 8G in the archive",)
    assert sorted(lab_pve.vms) == [141]

    lab_pve.restore_drops = set()
    lab_pve.task_errors["qmrestore"] = "command 'zstd -q -d -c ...' failed: exit code 1"
    broken = drill_vm(api, _wazuh(), vm)
    assert broken.result == "failed" and broken.detail.startswith(
        "1 mismatch(es), first: proxmox restore drill of vm wazuh1 (141) on node pve3: restore into vm 142: task "
        "failed: command 'zstd -q -d -c ...' failed: exit code 1; restore failed: ")
    assert sorted(lab_pve.vms) == [141]

    # a vmid taken between nextid and the restore: PVE refuses it, and that VM is not destroyed
    lab_pve.task_errors.clear()
    lab_pve.vms[142] = {"name": "someone-elses", "node": "pve3", "template": 0}
    lab_pve.next_vmid = 142
    lab_pve.changes.clear()
    raced = drill_vm(api, _wazuh(), vm)
    assert raced.result == "failed" and "unable to create VM 142 - VM 142 already exists" in raced.detail
    assert sorted(lab_pve.vms) == [141, 142] and [c[0] for c in lab_pve.changes] == ["POST"]

    lab_pve.storages[("pve3", "pbs-lab")].clear()
    with pytest.raises(ProxmoxError, match="^asset wazuh-vm: no good archive of vm 141 on pve3/pbs-lab to drill$"):
        drill_vm(api, _wazuh(), vm)


def test_a_restore_whose_answer_is_lost_reports_the_scratch_vm_it_may_leave(lab_pve, tls):
    api = _api(lab_pve, tls)
    backup_asset(_wazuh(), None, inventory=INVENTORY, proxmox=api)
    vm = inventory_vm(INVENTORY, _wazuh())
    lab_pve.drop_answers = {"qmrestore"}  # PVE starts the restore, then the connection drops before the answer
    lab_pve.changes.clear()
    clock = time.monotonic()
    drill = drill_vm(api, _wazuh(), vm)
    assert time.monotonic() - clock < 8  # the dropped answer is noticed at once, not after the 10 s read timeout
    left = ("scratch vm 142 may be left on node pve3 (the restore's answer was lost and vm 142 exists now; not "
            "destroyed: check that it is the drill's restore and destroy it)")
    assert drill.result == "failed" and drill.mismatches == (
        "proxmox restore drill of vm wazuh1 (141) on node pve3: restore into vm 142: the Proxmox API cannot be "
        "reached (ConnectionError)", left)
    assert f"; {left}; restore " in drill.detail
    assert lab_pve.vms[142]["lock"] == "create" and sorted(lab_pve.vms) == [141, 142]  # left, reported, not destroyed
    assert [c[:2] for c in lab_pve.changes] == [("POST", "/api2/json/nodes/pve3/qemu")]

    # the vmid is checked on the node: a restore that never started leaves nothing to report
    del lab_pve.vms[142]
    lab_pve.tasks.clear()
    lab_pve.drop_answers = {"qmrestore"}
    lab_pve.restore = lambda node, form: (200, lab_pve._task(node, "qmrestore", form["vmid"], None), None)
    quiet = drill_vm(api, _wazuh(), vm)
    assert quiet.result == "failed" and len(quiet.mismatches) == 1 and "may be left" not in quiet.detail
    assert sorted(lab_pve.vms) == [141]


def test_config_disks_leave_out_cdroms_and_snapshots():
    text = ("boot: order=scsi0\nscsi0: local-lvm:vm-141-disk-0,size=32G\nide2: local:iso/d.iso,media=cdrom\n"
            "#qmdump#map:scsi0:drive-scsi0:local-lvm:raw:\nvirtio1: none\n\n[before-upgrade]\nscsi1: x:y,size=9G\n")
    assert config_disks(text) == {"scsi0": "32G"}
    assert config_disks({"sata0": "x:vm-1-disk-0,size=1T", "unused0": "x:vm-1-disk-9", "net0": "virtio"}) == \
        {"sata0": "1T"}


def test_prune_keeps_exactly_the_retention_and_always_the_newest(lab_pve, tls):
    days = [datetime(2026, 3, d, h, tzinfo=UTC) for d, h in ((1, 10), (1, 22), (2, 10), (3, 9), (3, 11), (9, 1))]
    items = [archive("pbs-lab", 141, _epoch(t), "ok") for t in days]
    items.append(archive("pbs-lab", 999, _epoch(days[0])))  # another VM's: never touched
    items[0]["protected"] = 1
    lab_pve.storages[("pve3", "pbs-lab")] = list(items)
    api, vm = _api(lab_pve, tls), inventory_vm(INVENTORY, _wazuh())
    vols = [i["volid"] for i in items]

    preview = prune_vm(api, vm, "pbs-lab", Retention(keep_daily=2, keep_weekly=1), dry_run=True)
    # daily: 9th, 3rd 11:00; weekly (ISO weeks): 9th; protected: 1st 10:00
    assert preview.keep == (vols[0], vols[4], vols[5]) and preview.remove == (vols[1], vols[2], vols[3])
    assert not preview.pruned and lab_pve.storages[("pve3", "pbs-lab")] == items

    done = prune_vm(api, vm, "pbs-lab", Retention(keep_daily=2, keep_weekly=1))
    assert done.pruned and done.remove == preview.remove
    assert [i["volid"] for i in lab_pve.storages[("pve3", "pbs-lab")]] == [vols[0], vols[4], vols[5], vols[6]]
    deletes = [path for method, path, _ in lab_pve.changes if method == "DELETE"]
    assert deletes == [f"/api2/json/nodes/pve3/storage/pbs-lab/content/{v.replace(':', '%3A').replace('/', '%2F')}"
                       for v in preview.remove]
    assert prune_vm(api, vm, "pbs-lab", Retention(keep_hourly=1)).keep == (vols[0], vols[5])  # newest, protected


def test_prune_counts_good_archives_only(lab_pve, tls):
    days = [datetime(2026, 3, d, 10, tzinfo=UTC) for d in (1, 2, 3, 4, 5)]
    states = ["ok", "ok", "failed", "failed", "failed"]  # the three newest failed their verification
    items = [archive("pbs-lab", 141, _epoch(t), state) for t, state in zip(days, states, strict=True)]
    lab_pve.storages[("pve3", "pbs-lab")] = list(items)
    api, vm = _api(lab_pve, tls), inventory_vm(INVENTORY, _wazuh())
    vols = [i["volid"] for i in items]
    done = prune_vm(api, vm, "pbs-lab", Retention(keep_last=2))
    # both good archives are kept (the failed ones do not count); the failed ones newer than them are left
    assert done.keep == tuple(vols) and done.remove == ()
    items.insert(3, archive("pbs-lab", 141, _epoch(datetime(2026, 3, 3, 12, tzinfo=UTC)), "ok"))
    lab_pve.storages[("pve3", "pbs-lab")] = list(items)
    vols = [i["volid"] for i in items]
    done = prune_vm(api, vm, "pbs-lab", Retention(keep_last=2))
    # good: 1st, 2nd, 3rd 12:00 -> the last two kept; the failed 3rd 10:00 is older than the newest good: removed
    assert done.keep == (vols[1], vols[3], vols[4], vols[5]) and done.remove == (vols[0], vols[2])

"""tasks.backup.proxmox through proxmoxer against a small local PVE API (HTTPS, API token): archives listed, the
freshness of proxmox-vm assets for the RPO check, and failures that are "unknown", never ok or never."""

import shutil
import socket
from datetime import UTC, datetime, timedelta

import pytest

from astrolab.settings import REPO_ROOT
from tasks.backup.proxmox import ProxmoxError, backup_archives, connect, proxmox_reader
from tasks.backup.registry import parse_assets
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
        "assets": [{"name": name, "class": cls, "kind": "proxmox-vm", "vm": vm, "storage": storage,
                    "repository": "nfs"} for name, cls, vm, storage in vms]}, "assets.yaml", INVENTORY)


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

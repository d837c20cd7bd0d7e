"""tasks.backup.registry: the example covers every class and kind; defaults come from the class; schedules follow
the RPO; every mistake is one line naming the file, the place and the value, with a did-you-mean hint."""

from datetime import timedelta

import pytest
import yaml

from astrolab.settings import REPO_ROOT
from tasks.backup.registry import (
    CLASSES,
    KINDS,
    RegistryError,
    Retention,
    derived_schedule,
    load_assets,
    parse_assets,
    schedule_gap,
)
from tasks.inventory.load import load_inventory

EXAMPLE = REPO_ROOT / "infra" / "backup" / "assets.example.yaml"
INVENTORY = REPO_ROOT / "infra" / "inventory" / "lab.example.yaml"
H = timedelta(hours=1)


def _example() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


def test_the_example_covers_every_class_and_kind():
    reg = load_assets(EXAMPLE, INVENTORY)
    assert {a.asset_class for a in reg.assets} == set(CLASSES)
    assert {a.kind for a in reg.assets} == set(KINDS)
    db = reg.asset("catalog-db")
    assert db.kind == "postgres" and db.rpo == 6 * H and db.rto == 2 * H and db.tables
    assert reg.repository(db.repository).is_s3 and not reg.repository("nfs").is_s3
    assert reg.asset("rke2-etcd").schedule == "15 */2 * * *"
    assert [a.name for a in reg.select(kinds=["proxmox-vm"])] == ["wazuh-vm", "dev-vm-prefect"]
    vm = reg.asset("wazuh-vm")
    assert vm.repository is None and reg.repository_of(vm) is None and vm.destination == "proxmox:pbs-lab"
    assert reg.repository_of(db) == reg.repository(db.repository) and db.destination == db.repository
    assert reg.asset("lab-docs").tag == "asset=lab-docs"


@pytest.mark.parametrize("cls, rpo, rto", [("documentation", 1, 1), ("infrastructure", 4, 2), ("security", 8, 4),
                                           ("research-data", 12, 2), ("development", 24, 6)])
def test_class_defaults_and_derived_schedules(cls, rpo, rto):
    data = {"repositories": [{"name": "r", "url": "/srv/restic"}],
            "assets": [{"name": "a", "class": cls, "kind": "path", "paths": ["/srv/a"], "repository": "r"}]}
    [asset] = parse_assets(data, "assets.yaml").assets
    assert (asset.rpo, asset.rto) == (rpo * H, rto * H)
    assert schedule_gap(asset.schedule) <= rpo * H / 2
    assert asset.retention.restic_args()


def test_derived_schedules():
    assert schedule_gap(derived_schedule(1 * H, "x")) == timedelta(minutes=30)
    assert schedule_gap(derived_schedule(4 * H, "x")) == 2 * H
    assert schedule_gap(derived_schedule(5 * H, "x")) == 2 * H  # 2.5h rounds down to a cron step
    assert schedule_gap(derived_schedule(72 * H, "x")) == 24 * H
    assert derived_schedule(4 * H, "a") != derived_schedule(4 * H, "b")  # spread over the hour
    assert schedule_gap("0 9-17 * * 1-5") is None  # not checked: weekdays only


def test_retention_args_and_a_policy_that_keeps_nothing():
    assert Retention(keep_hourly=24, keep_daily=7).restic_args() == ["--keep-hourly", "24", "--keep-daily", "7"]
    with pytest.raises(ValueError, match="must keep something"):
        Retention()


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["assets"][0].update(pathz=["/x"]),
     r"unknown key assets\.0\.pathz \(asset lab-docs\) \(did you mean 'paths'\?\)"),
    (lambda d: d["assets"][0]["retention"].update(keep_daly=3),
     r"unknown key assets\.0\.retention\.keep_daly \(asset lab-docs\) \(did you mean 'keep_daily'\?\)"),
    (lambda d: d["repositories"][0].update(pasword_secret="x"),
     r"unknown key repositories\.0\.pasword_secret \(repository minio\) \(did you mean 'password_secret'\?\)"),
    (lambda d: d.update(asset=[]), r"unknown key asset \(did you mean 'assets'\?\)"),
    (lambda d: d["assets"][0].update(kind="paths"), r"assets\.0\.kind \(asset lab-docs\): unknown kind 'paths' "
                                                    r"\(did you mean 'path'\?\)"),
    (lambda d: d["assets"][0].update({"class": "documentaton"}),
     r"assets\.0\.class \(asset lab-docs\): unknown class 'documentaton' \(did you mean 'documentation'\?\)"),
    (lambda d: d["assets"][0].update(repository="mino"),
     r"asset lab-docs: repository 'mino' is not in repositories \(did you mean 'minio'\?\)"),
    (lambda d: d["assets"][0].update(rpo="2h"), r"asset lab-docs: rpo 2h is looser than the class documentation's 1h"),
    (lambda d: d["assets"][0].update(rpo="1 hour"), r"assets\.0\.rpo \(asset lab-docs\): .*not a duration"),
    (lambda d: d["assets"][1].update(schedule="0 */6 * * *"),
     r"asset ansible-config: schedule '0 \*/6 \* \* \*' leaves 6h between runs, more than the rpo 4h"),
    (lambda d: d["assets"][1].update(schedule="hourly"), r"schedule 'hourly' is not a 5-field cron expression"),
    (lambda d: d["assets"][0].update(host="nfs2"), r"host 'nfs2' is not in the inventory \(did you mean 'nfs1'\?\)"),
    (lambda d: d["assets"][2].update(host="rke2-a1"), r"host 'rke2-a1' does not have the role rke2-server"),
    (lambda d: d["assets"][4].update(vm="wazuh2"), r"vm 'wazuh2' is not a vm in the inventory"),
    (lambda d: d["assets"][0].update(paths=["srv/docs"]), r"asset lab-docs: path 'srv/docs' must be absolute"),
    (lambda d: d["assets"][5].update(database_url="postgresql://u:pw@db1/astrolab"),
     r"asset catalog-db: database_url must not carry a password"),
    (lambda d: d["repositories"][0].update(url="s3://minio/restic"),
     r"repository minio: restic writes S3 urls as s3:http\(s\)://host:port/bucket/prefix, not 's3://minio/restic'"),
    (lambda d: d["repositories"][1].update(url="backups/restic"),
     r"repository nfs: a local repository path must be absolute"),
    (lambda d: d["repositories"][0].update(url="s3:http://key:secret@minio:9000/restic"),
     r"repository minio: the url must not carry credentials"),
    (lambda d: d["assets"].append(dict(d["assets"][0])), r"asset names must be unique: lab-docs"),
    (lambda d: d["assets"][0].pop("kind"), r"assets\.0 \(asset lab-docs\): missing kind"),
    (lambda d: d["assets"][0].pop("repository"),
     r"asset lab-docs: repository is required \(a path asset is backed up into a restic repository: one of "),
    (lambda d: next(a for a in d["assets"] if a["kind"] == "proxmox-vm").update(repository="nfs"),
     r"asset wazuh-vm: a proxmox-vm asset's archives go to its Proxmox storage \(pbs-lab\), not to a restic "
     r"repository: remove repository"),
])
def test_mistakes_are_one_line_naming_the_file_and_the_place(mutate, message):
    data = _example()
    mutate(data)
    with pytest.raises(RegistryError, match=message) as err:
        parse_assets(data, "assets.yaml", load_inventory(INVENTORY))
    assert str(err.value).startswith("assets.yaml: ") and "\n" not in str(err.value)


def test_without_an_inventory_hosts_are_not_checked():
    data = _example()
    data["assets"][0]["host"] = "nfs2"
    assert parse_assets(data, "assets.yaml").asset("lab-docs").host == "nfs2"


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(RegistryError, match=r"missing\.yaml: cannot read the asset registry \(No such file"):
        load_assets(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("repositories: [\n")
    with pytest.raises(RegistryError, match=r"bad\.yaml: not valid YAML"):
        load_assets(bad)
    bad.write_text("- a list\n")
    with pytest.raises(RegistryError, match=r"must be a mapping at the top level"):
        load_assets(bad)

"""tasks.inventory: the example inventory loads; every kind of mistake is one line naming file, place and value."""


import pytest
import yaml

from astrolab.settings import REPO_ROOT
from tasks.inventory.load import InventoryError, load_inventory, parse_inventory

EXAMPLE = REPO_ROOT / "infra" / "inventory" / "lab.example.yaml"


def test_the_example_is_the_labs_seven_node_target():
    inv = load_inventory(EXAMPLE)
    assert [n.name for n in inv.nodes] == [f"pve{i}" for i in range(1, 8)]
    assert len(inv.hosts) == 7 + 11
    assert [h.name for h in inv.select(roles=["rke2-server"])] == ["rke2-s1", "rke2-s2", "rke2-s3"]
    assert [h.name for h in inv.select(names=["db1", "pve4"])] == ["pve4", "db1"]
    assert inv.ssh_for(inv.host("db1")).user == "astrolab"
    assert inv.services["postgresql"] == ("db1",)


def _example() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["nodes"][0].update(adress="10.0.0.1"), r"unknown key nodes\.0\.adress \(did you mean 'address'\?\)"),
    (lambda d: d.update(vm_template=[]), r"unknown key vm_template \(did you mean 'vm_templates'\?\)"),
    (lambda d: d["nodes"][1].update(roles=["proxmx"]),
     r"nodes\.1\.roles \(host pve2\): .*'proxmx' \(did you mean 'proxmox'\?\)"),
    (lambda d: d["vms"][0].update(node="pve9"), r"vm rke2-s1: node 'pve9' is not in nodes"),
    (lambda d: d["vms"][0].update(template="deb12"), r"vm rke2-s1: template 'deb12' is not in vm_templates"),
    (lambda d: d["nodes"].append(dict(d["nodes"][0])), r"host names must be unique: pve1"),
    (lambda d: d["nodes"][0].pop("address"), r"host pve1: connection ssh needs an address"),
    (lambda d: d["services"].update(minio=["minio2"]), r"services\.minio: host 'minio2' is not in the inventory"),
    (lambda d: d["defaults"]["ssh"].update(port=70000),
     r"defaults\.ssh\.port: .*less than or equal to 65535, got 70000"),
    (lambda d: d["networks"][0].update(cidr="10.10.0.1/24"), r"networks\.0\.cidr: .*host bits set"),
])
def test_mistakes_are_one_line_naming_the_file_and_the_place(mutate, message):
    data = _example()
    mutate(data)
    with pytest.raises(InventoryError, match=message) as err:
        parse_inventory(data, "lab.yaml")
    assert str(err.value).startswith("lab.yaml: ") and "\n" not in str(err.value)


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(InventoryError, match=r"missing\.yaml: cannot read the inventory \(No such file"):
        load_inventory(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("nodes: [\n")
    with pytest.raises(InventoryError, match=r"bad\.yaml: not valid YAML"):
        load_inventory(bad)
    bad.write_text("- just a list\n")
    with pytest.raises(InventoryError, match=r"bad\.yaml: the inventory must be a mapping"):
        load_inventory(bad)


def test_unknown_host_or_role_in_a_selection():
    inv = load_inventory(EXAMPLE)
    with pytest.raises(KeyError, match="no host 'db2'.*did you mean 'db1'"):
        inv.select(names=["db2"])
    with pytest.raises(KeyError, match="unknown role 'rke-agent'.*did you mean 'rke2-agent'"):
        inv.select(roles=["rke-agent"])

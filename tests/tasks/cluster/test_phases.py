"""tasks.cluster.phases: the repository's phases.yaml read into its DAGs; misspelt keys, unknown `after` roles,
cycles and missing roles as one-line errors with hints; selection by phase and role; the mermaid rendering."""

import copy

import pytest
import yaml

from astrolab.settings import REPO_ROOT
from tasks.cluster.phases import PhasesError, load_phases, mermaid, parse_phases, select, topological_order

PHASES = REPO_ROOT / "infra" / "ansible" / "phases.yaml"
RAW = yaml.safe_load(PHASES.read_text())


def edited(edit) -> dict:
    data = copy.deepcopy(RAW)
    edit(data)
    return data


def test_the_repository_phases_and_their_order():
    spec = load_phases(PHASES)
    assert [p.name for p in spec.phases] == ["core", "security", "platform", "operations"]
    core = [r.role for r in topological_order(spec.phase("core"))]
    assert core == ["proxmox_vms", "base", "nfs_server", "postgresql", "minio", "nfs_client"]
    assert [r.role for r in topological_order(spec.phase("platform"))] == ["rke2_server", "prefect", "rke2_agent",
                                                                         "dask"]
    security = spec.phase("security")
    assert security.gate is not None and security.gate.compliance is not None
    assert (security.gate.compliance.policy, security.gate.compliance.min_score) == ("astrolab_linux_baseline", 80)
    platform_gate = spec.phase("platform").gate
    assert platform_gate is not None and platform_gate.nodes_ready and platform_gate.workers_registered
    assert spec.secrets["ASTROLAB_RKE2_TOKEN"] == "rke2-token" and len(spec.secrets) == 8


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d["phases"][0]["roles"][2].update(after=["bsae"]),
     "phases.0: phase core: role nfs_server runs after 'bsae', which is not a role of this phase "
     "(did you mean 'base'?)"),
    (lambda d: d["phases"][0]["roles"][2].update(aftr=["base"]),
     "unknown key phases.0.roles.2.aftr (did you mean 'after'?)"),
    (lambda d: d["phases"][1].update(gaet=d["phases"][1].pop("gate")),
     "unknown key phases.1.gaet (did you mean 'gate'?)"),
    (lambda d: d["phases"][1]["gate"]["compliance"].update(min_scor=1),
     "unknown key phases.1.gate.compliance.min_scor (did you mean 'min_score'?)"),
    (lambda d: d["phases"][2]["gate"].update(nodes_redy=True),
     "unknown key phases.2.gate.nodes_redy (did you mean 'nodes_ready'?)"),
    (lambda d: d.update(secrtes=d.pop("secrets")), "unknown key secrtes (did you mean 'secrets'?)"),
    (lambda d: d["phases"][0]["roles"][1].update(after=["nfs_server"]),
     "phase core: the roles base, minio, nfs_client, nfs_server, postgresql wait for each other (a cycle in after)"),
    (lambda d: d["phases"][1].update(name="core"), "phase 'core' appears more than once"),
    (lambda d: d["phases"][1]["gate"]["compliance"].update(min_score=120), "phases.1.gate.compliance.min_score"),
])
def test_errors_are_one_line_naming_the_file_and_value(edit, message):
    with pytest.raises(PhasesError) as caught:
        parse_phases(edited(edit), "phases.yaml")
    text = str(caught.value)
    assert text.startswith("phases.yaml: ") and message in text and "\n" not in text


def test_a_role_missing_from_the_roles_directory(tmp_path):
    for role in ("base", "hardening"):
        (tmp_path / role).mkdir()
    data = {"phases": [{"name": "core", "roles": [{"role": "base", "hosts": "all"},
                                                  {"role": "hardenning", "hosts": "all", "after": ["base"]}]}]}
    with pytest.raises(PhasesError, match=r"^p.yaml: phase core: role 'hardenning' is not in .* \(did you mean "
                                          r"'hardening'\?\)$"):
        parse_phases(data, "p.yaml", tmp_path)
    assert parse_phases({"phases": [{"name": "core", "roles": [{"role": "base", "hosts": "all"}]}]}, "p.yaml",
                        tmp_path).phases[0].roles[0].role == "base"


def test_selection_by_phase_and_role():
    spec = load_phases(PHASES)
    assert [p.name for p in select(spec, ["platform", "core"])] == ["core", "platform"]
    chosen = select(spec, None, ["nfs_client", "base", "rke2_agent"])
    assert [(p.name, [(r.role, r.after) for r in p.roles]) for p in chosen] == [
        ("core", [("base", ()), ("nfs_client", ())]), ("platform", [("rke2_agent", ())])]
    with pytest.raises(PhasesError, match=r"no phase 'securty' \(did you mean 'security'\?\)"):
        select(spec, ["securty"])
    with pytest.raises(PhasesError, match=r"no role 'minoi' in any phase \(did you mean 'minio'\?\)"):
        select(spec, None, ["minoi"])


def test_mermaid_has_every_role_edge_and_gate():
    text = mermaid(select(load_phases(PHASES), ["core", "security", "platform"]))
    assert text.startswith("flowchart TD\n")
    assert '    core__base --> core__nfs_server' in text and "    platform__prefect --> platform__dask" in text
    assert "  core --> security" in text and "  security --> security__gate" in text
    assert "  security__gate --> platform" in text
    assert 'gate: astrolab_linux_baseline >= 80%' in text and "gate: RKE2 nodes Ready, workers registered" in text
    assert text.count("-->") == 5 + 1 + 2 + 4  # core edges, security edge, platform edges, phase/gate links

"""prefect.yaml, checked offline: prefect deploy silently drops misspelt keys, so we do not rely on it."""

import json
import re
from pathlib import Path

import pytest
import yaml
from prefect.cli.deploy._models import DeploymentConfig, PrefectYamlModel
from prefect.flows import load_flow_from_entrypoint
from prefect.utilities.callables import parameter_schema

ROOT = Path(__file__).resolve().parent.parent
RAW = yaml.safe_load((ROOT / "prefect.yaml").read_text())
DEPLOYMENTS = RAW["deployments"]
FLOW_FILES = sorted(p for d in ("flows", "infra_flows") for p in (ROOT / d).glob("*.py") if p.name != "__init__.py")


def test_schema_is_valid_and_names_unique():
    model = PrefectYamlModel.model_validate(RAW)
    names = [(d.entrypoint, d.name) for d in model.deployments]
    assert len(names) == len(set(names)) == len(DEPLOYMENTS)
    assert not set(RAW) - set(PrefectYamlModel.model_fields) - {"prefect-version", "definitions"}


POOL_KEYS = {"name", "work_queue_name", "job_variables"}
SCHEDULE_KEYS = {"cron", "interval", "rrule", "timezone", "active", "parameters", "slug"}


def unknown_keys(dep: dict) -> set[str]:
    """Keys of a deployment, its work pool and its schedules that `prefect deploy` would silently drop."""
    unknown = set(dep) - set(DeploymentConfig.model_fields)
    unknown |= {f"work_pool.{k}" for k in set(dep.get("work_pool", {})) - POOL_KEYS}
    for schedule in dep.get("schedules", []):
        unknown |= {f"schedules.{k}" for k in set(schedule) - SCHEDULE_KEYS}
    return unknown


@pytest.mark.parametrize("dep", DEPLOYMENTS, ids=lambda d: d["name"])
def test_no_unknown_keys(dep):
    assert unknown_keys(dep) == set()


@pytest.mark.parametrize("dep", DEPLOYMENTS, ids=lambda d: d["name"])
def test_entrypoint_loads_and_parameters_exist(dep):
    flow = load_flow_from_entrypoint(str(ROOT / dep["entrypoint"]))
    properties = parameter_schema(flow).properties
    from_triggers = {name for trigger in dep.get("triggers", []) for name in trigger.get("parameters", {})}
    assert set(dep.get("parameters", {})) | from_triggers <= set(properties)
    required = {name for name, p in properties.items() if "default" not in p}
    assert required <= set(dep.get("parameters", {})) | from_triggers, \
        f"{dep['name']}: required parameters without a value"


def test_every_flow_has_a_deployment():
    deployed = {d["entrypoint"].split(":")[0] for d in DEPLOYMENTS}
    for path in FLOW_FILES:
        if "@flow" in path.read_text():
            assert str(path.relative_to(ROOT)) in deployed, f"{path.name} has a flow but no deployment"


def test_misspelt_keys_are_caught_at_every_level():
    bad = json.loads(json.dumps(next(d for d in DEPLOYMENTS if d.get("schedules"))))
    bad["paramaters"] = bad.pop("parameters", {})
    bad["work_pool"]["job_variable"] = bad["work_pool"].pop("job_variables", {})
    bad["schedules"][0]["timezon"] = bad["schedules"][0].pop("timezone", "UTC")
    assert unknown_keys(bad) == {"paramaters", "work_pool.job_variable", "schedules.timezon"}


def test_kubernetes_job_variables_exist_in_the_pool_template():
    template = json.loads((ROOT / "infra" / "k8s-job-template.json").read_text())
    variables = set(template["variables"]["properties"])
    container = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "{{ gpu_count }}"
    k8s = [d for d in DEPLOYMENTS if d["work_pool"]["name"] == "astrolab-rke2"]
    assert k8s
    for dep in k8s:
        assert set(dep["work_pool"]["job_variables"]) <= variables


def test_the_synthetic_deployments_chain_on_their_defaults():
    """desi-sample/synthetic writes <home>/desi-sample and emits the event that starts desi-ingest/synthetic on it;
    desi-voids/synthetic reads the planted voids from there (relative paths are below the settings' home)."""
    from flows.sample import SAMPLE_DIR, WRITTEN_EVENT

    by_name = {(d["entrypoint"].split(":")[1], d["name"]): d for d in DEPLOYMENTS}
    assert by_name[("desi_sample", "synthetic")]["parameters"]["out_dir"] is None
    truth = by_name[("desi_voids", "synthetic")]["parameters"]["truth_path"]
    assert truth == f"{SAMPLE_DIR}/truth/planted_voids.fits"
    (trigger,) = by_name[("desi_ingest", "synthetic")]["triggers"]
    assert trigger["expect"] == [WRITTEN_EVENT] and trigger["match"] == {"prefect.resource.id": "astrolab.sample.*"}
    assert trigger["parameters"]["source"] == "{{ event.payload.root }}"


def test_no_schedule_ships_active():
    """A deploy --all on a fresh server starts nothing by clock until an admin has configured a source."""
    scheduled = [(d["name"], s) for d in DEPLOYMENTS for s in d.get("schedules", [])]
    assert len(scheduled) >= 7 and [name for name, s in scheduled if s["active"]] == []


def test_the_rke2_image_holds_every_package_where_the_pull_step_looks():
    import re
    import tomllib

    dockerfile = (ROOT / "Dockerfile").read_text()
    workdir = re.search(r"^WORKDIR (\S+)$", dockerfile, re.M).group(1)
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    for package in (p.rstrip("*") for p in packages):
        assert f"COPY {package} ./{package}" in dockerfile, f"the image lacks {package}/"
    for needed in ("expectations", "infra", "prefect.yaml"):
        assert f"COPY {needed} ./" in dockerfile
    k8s = [d for d in DEPLOYMENTS if d["work_pool"]["name"] == "astrolab-rke2"]
    for dep in k8s:
        (step,) = dep["pull"]
        assert step["prefect.deployments.steps.set_working_directory"]["directory"] == workdir


@pytest.mark.parametrize("dep", [d for d in DEPLOYMENTS if d.get("triggers")], ids=lambda d: d["name"])
def test_triggers_parse(dep):
    from prefect.events import DeploymentTriggerTypes
    from pydantic import TypeAdapter

    TypeAdapter(list[DeploymentTriggerTypes]).validate_python(dep["triggers"])


def test_a_proactive_backup_trigger_per_class_with_its_rpo():
    from tasks.backup.registry import CLASSES

    (missing,) = [d for d in DEPLOYMENTS if d["name"] == "backup-missing"]
    by_class = {t["match"]["astrolab.backup.class"]: t for t in missing["triggers"]}
    assert set(by_class) == set(CLASSES)
    for asset_class, trigger in by_class.items():
        assert trigger["posture"] == "Proactive" and trigger["within"] == CLASSES[asset_class].rpo.total_seconds()
        assert trigger["after"] == trigger["expect"] == ["astrolab.backup.completed"]  # re-arms after each backup
        assert trigger["for_each"] == ["prefect.resource.id"]


def test_backup_schedules_ship_inactive():
    backup = [d for d in DEPLOYMENTS if d["entrypoint"].startswith("infra_flows/backup.py:")]
    assert {d["entrypoint"].split(":")[1] for d in backup} == {"backup", "rpo_check", "backup_verify",
                                                               "restore_drill", "prune"}
    scheduled = [s for d in backup for s in d.get("schedules", [])]
    assert len(scheduled) == 5 and not any(s["active"] for s in scheduled)


def test_cluster_build_plan_apply_verify_and_the_drift_alert():
    from infra_flows.cluster_build import DRIFT_EVENT

    build = {d["name"]: d for d in DEPLOYMENTS if d["entrypoint"] == "infra_flows/cluster_build.py:cluster_build"}
    assert {name: d["parameters"]["mode"] for name, d in build.items()} == {"plan": "plan", "apply": "apply",
                                                                           "verify": "verify"}
    assert {"phases", "hosts", "roles", "force"} <= set(build["apply"]["parameters"])
    assert [s["active"] for s in build["verify"]["schedules"]] == [False] and "cron" in build["verify"]["schedules"][0]
    alert = next(d for d in DEPLOYMENTS if d["name"] == "cluster-drift")
    assert alert["entrypoint"] == "infra_flows/notify.py:notify"
    trigger = alert["triggers"][0]
    assert trigger["expect"] == [DRIFT_EVENT] and trigger["match"] == {"prefect.resource.id": "astrolab.host.*"}
    used = set(re.findall(r"event\.payload\.(\w+)", json.dumps(trigger["parameters"])))
    assert used == {"host", "role", "phase", "changed", "tasks"}  # what apply_role puts in the drift event

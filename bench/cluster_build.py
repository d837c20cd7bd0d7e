"""Cluster-build benchmark: plan and apply of one phase through the cluster-build flow against plain
``ansible-playbook`` of the same roles on the same hosts of the test fleet, in the same run.

    python bench/cluster_build.py [--repeats 2] [--hosts fleet1,fleet2,fleet3]

Set-up (not timed): the small roles of the cluster tests (tests/tasks/cluster/fleet_roles.py: `marker`, then
`second` after it) under a temporary roles directory, one phase of those two roles on all selected hosts, the
fleet inventory ($ASTROLAB_TEST_FLEET) rendered for Ansible, a temporary Prefect server (prefect_test_harness) and
a DuckDB catalog. Timed, ``--repeats`` times, alternating which goes first, each from clean hosts (the test
directory removed over SSH):

- plan: plain ``ansible-playbook --check --diff`` once per role (the flow also runs one playbook per role), against
  ``cluster_build(mode="plan")``;
- apply: plain ``ansible-playbook`` once per role, against ``cluster_build(mode="apply", force=True)``.

Printed: the medians, and the flow's overhead per role run ((flow - plain) / roles). The flow's extra work per
role: a Prefect task run, ansible-runner's event stream parsed, in apply the input hash and the catalog records and
events. Writes bench/out/cluster_build.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Literal

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tasks.cluster.inventory import write_ansible_inventory  # noqa: E402
from tasks.inventory.load import load_inventory  # noqa: E402
from tests.tasks.cluster.fleet_roles import SECRET_VARIABLE, clean, fresh_base, write_roles  # noqa: E402

ROLES = ("marker", "second")
MODES: tuple[Literal["plan", "apply"], ...] = ("plan", "apply")


def plain(inventory_file: Path, roles: Path, work: Path, hosts: list[str], check: bool) -> float:
    """Wall time of one plain ansible-playbook per role, in DAG order."""
    env = {**os.environ, "ANSIBLE_ROLES_PATH": str(roles), SECRET_VARIABLE: "bench-secret"}
    started = time.perf_counter()
    for role in ROLES:
        play = work / f"{role}.yml"
        play.write_text(yaml.safe_dump([{"hosts": "all", "roles": [role]}]))
        args = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory_file), str(play),
                "--limit", ",".join(hosts), "--diff", *(["--check"] if check else [])]
        subprocess.run(args, check=True, capture_output=True, env=env)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--hosts", default="fleet1,fleet2,fleet3")
    args = parser.parse_args()
    hosts = args.hosts.split(",")
    fleet = load_inventory(os.environ["ASTROLAB_TEST_FLEET"])
    work = Path(tempfile.mkdtemp(prefix="astrolab-bench-cluster-"))
    base = fresh_base()
    write_roles(work / "roles", base)
    (work / "phases.yaml").write_text(yaml.safe_dump({"phases": [{"name": "bench", "roles": [
        {"role": "marker", "hosts": "all"}, {"role": "second", "hosts": "all", "after": ["marker"]}]}],
        "secrets": {SECRET_VARIABLE: "bench-secret-block"}}))
    inventory_file = write_ansible_inventory(fleet, work / "hosts.yml")
    os.environ.update({"ASTROLAB_HOME": str(work / "home"), SECRET_VARIABLE: "bench-secret",
                       "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
    from prefect.testing.utilities import prefect_test_harness

    from infra_flows.cluster_build import cluster_build

    def flow(mode: Literal["plan", "apply"]) -> float:
        started = time.perf_counter()
        cluster_build(mode=mode, hosts=hosts, inventory=os.environ["ASTROLAB_TEST_FLEET"],
                      phases_file=str(work / "phases.yaml"), roles_path=str(work / "roles"), force=True)
        return time.perf_counter() - started

    times: dict[str, list[float]] = {k: [] for k in ("plain plan", "flow plan", "plain apply", "flow apply")}
    try:
        with prefect_test_harness(server_startup_timeout=60):
            flow("plan")  # warm-up: imports, first flow run
            for i in range(args.repeats):
                for what in (("plain", "flow") if i % 2 == 0 else ("flow", "plain")):
                    for mode in MODES:
                        clean(fleet, base)
                        seconds = (plain(inventory_file, work / "roles", work, hosts, mode == "plan")
                                   if what == "plain" else flow(mode))
                        times[f"{what} {mode}"].append(seconds)
                        print(f"{what} {mode}: {seconds:.2f} s", flush=True)
    finally:
        clean(fleet, base)
        shutil.rmtree(work, ignore_errors=True)
    medians = {k: statistics.median(v) for k, v in times.items()}
    runs = len(ROLES)
    result = {"hosts": hosts, "roles": list(ROLES), "repeats": args.repeats, "times_s": times,
              "median_s": medians,
              "overhead_per_role_run_s": {mode: (medians[f"flow {mode}"] - medians[f"plain {mode}"]) / runs
                                          for mode in ("plan", "apply")}}
    for mode in ("plan", "apply"):
        print(f"{mode}: plain {medians[f'plain {mode}']:.2f} s, flow {medians[f'flow {mode}']:.2f} s, overhead "
              f"{result['overhead_per_role_run_s'][mode]:.2f} s per role run")
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "cluster_build.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

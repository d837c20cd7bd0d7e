"""Cluster-build benchmark: plan and apply of one phase through the cluster-build flow against plain
``ansible-playbook`` of the same roles on the same hosts of the test fleet, in the same run.

    python bench/cluster_build.py [--repeats 2] [--hosts fleet1,fleet2,fleet3] [--small]

The phase is the lab's `base` role (infra/ansible/roles) on the fleet as a small cluster (the sudo user, the fleet's
role variables of tests/infra/ansible/playbooks.py), each timed run from pristine hosts (`scripts/fleet.sh reset`,
root only, not timed). With ``--small``: the two tiny roles of the cluster tests (tests/tasks/cluster/fleet_roles.py:
`marker`, then `second` after it), where the fixed cost per role run is most of the time, from hosts cleaned over
SSH. Also set up, not timed: the inventory rendered for Ansible, a temporary Prefect server (prefect_test_harness)
and a DuckDB catalog. Timed, ``--repeats`` times, alternating which goes first:

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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tasks.cluster.inventory import write_ansible_inventory  # noqa: E402
from tasks.inventory.load import load_inventory  # noqa: E402
from tests.tasks.cluster.fleet_roles import SECRET_VARIABLE, clean, fresh_base, write_roles  # noqa: E402

MODES: tuple[Literal["plan", "apply"], ...] = ("plan", "apply")
FLEET_SH = ROOT / "scripts" / "fleet.sh"


@dataclass
class Setup:
    """What one benchmark compares: roles (DAG order), their directory, the inventory, extra variables, and how a
    timed run gets clean hosts."""

    roles: tuple[str, ...]
    roles_dir: Path
    inventory: Path
    variables: dict[str, Any]
    clean: Callable[[], None]


def plain(setup: Setup, work: Path, hosts: list[str], check: bool) -> float:
    """Wall time of one plain ansible-playbook per role, in DAG order."""
    env = {**os.environ, "ANSIBLE_ROLES_PATH": str(setup.roles_dir)}
    (work / "vars.yaml").write_text(yaml.safe_dump(setup.variables))
    started = time.perf_counter()
    for role in setup.roles:
        play = work / f"{role}.yml"
        play.write_text(yaml.safe_dump([{"hosts": "all", "become": True, "roles": [role]}]))
        args = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(setup.inventory), str(play),
                "-e", f"@{work / 'vars.yaml'}", "--limit", ",".join(hosts), "--diff", *(["--check"] if check else [])]
        subprocess.run(args, check=True, capture_output=True, env=env)
    return time.perf_counter() - started


def small_setup(work: Path) -> Setup:
    """The cluster tests' two tiny roles on the fleet as it is, cleaned over SSH."""
    fleet = load_inventory(os.environ["ASTROLAB_TEST_FLEET"])
    base = fresh_base()
    write_roles(work / "roles", base)
    os.environ[SECRET_VARIABLE] = "bench-secret"
    inventory = write_ansible_inventory(fleet, work / "inventory.yaml")
    (work / "inventory-astrolab.yaml").write_text(yaml.safe_dump(fleet.model_dump(mode="json")))
    return Setup(("marker", "second"), work / "roles", inventory, {}, lambda: clean(fleet, base))


def lab_setup(work: Path) -> Setup:
    """The lab's base role on the fleet as a small cluster, every run from pristine hosts."""
    from tests.infra.ansible.playbooks import ANSIBLE_DIR, FLEET_VARS, fleet_cluster

    fleet = load_inventory(os.environ["ASTROLAB_TEST_FLEET"])
    cluster = fleet_cluster(fleet)
    inventory = write_ansible_inventory(cluster, work / "inventory.yaml")
    (work / "inventory-astrolab.yaml").write_text(yaml.safe_dump(cluster.model_dump(mode="json")))
    env = {**os.environ, "ASTROLAB_TEST_FLEET_DIR": os.environ.get(
        "ASTROLAB_TEST_FLEET_DIR", str(Path(os.environ["ASTROLAB_TEST_FLEET"]).parent))}

    def reset() -> None:
        subprocess.run([str(FLEET_SH), "reset", *(h.name for h in fleet.hosts)], env=env, check=True,
                       capture_output=True, timeout=300)

    return Setup(("base",), ANSIBLE_DIR / "roles", inventory, dict(FLEET_VARS), reset)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--hosts", default="fleet1,fleet2,fleet3")
    parser.add_argument("--small", action="store_true", help="the tests' two tiny roles instead of the lab's base")
    args = parser.parse_args()
    hosts = args.hosts.split(",")
    work = Path(tempfile.mkdtemp(prefix="astrolab-bench-cluster-"))
    setup = small_setup(work) if args.small else lab_setup(work)
    roles = [{"role": setup.roles[0], "hosts": "all"}] + [
        {"role": r, "hosts": "all", "after": [setup.roles[i]]} for i, r in enumerate(setup.roles[1:])]
    secrets = {SECRET_VARIABLE: "bench-secret-block"} if args.small else {}  # the small roles read one
    (work / "phases.yaml").write_text(yaml.safe_dump({"phases": [{"name": "bench", "roles": roles}],
                                                      "secrets": secrets}))
    os.environ.update({"ASTROLAB_HOME": str(work / "home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
    from prefect.testing.utilities import prefect_test_harness

    from infra_flows.cluster_build import cluster_build

    def flow(mode: Literal["plan", "apply"]) -> float:
        started = time.perf_counter()
        cluster_build(mode=mode, hosts=hosts, inventory=str(work / "inventory-astrolab.yaml"),
                      phases_file=str(work / "phases.yaml"), roles_path=str(setup.roles_dir), force=True,
                      variables=setup.variables)
        return time.perf_counter() - started

    times: dict[str, list[float]] = {k: [] for k in ("plain plan", "flow plan", "plain apply", "flow apply")}
    try:
        with prefect_test_harness(server_startup_timeout=60):
            flow("plan")  # warm-up: imports, first flow run
            for i in range(args.repeats):
                for what in (("plain", "flow") if i % 2 == 0 else ("flow", "plain")):
                    for mode in MODES:
                        setup.clean()
                        seconds = (plain(setup, work, hosts, mode == "plan") if what == "plain" else flow(mode))
                        times[f"{what} {mode}"].append(seconds)
                        print(f"{what} {mode}: {seconds:.2f} s", flush=True)
    finally:
        setup.clean()
        shutil.rmtree(work, ignore_errors=True)
    medians = {k: statistics.median(v) for k, v in times.items()}
    runs = len(setup.roles)
    result = {"hosts": hosts, "roles": list(setup.roles), "repeats": args.repeats, "times_s": times,
              "median_s": medians,
              "ratio": {mode: medians[f"flow {mode}"] / medians[f"plain {mode}"] for mode in MODES},
              "overhead_per_role_run_s": {mode: (medians[f"flow {mode}"] - medians[f"plain {mode}"]) / runs
                                          for mode in MODES}}
    for mode in MODES:
        print(f"{mode}: plain {medians[f'plain {mode}']:.2f} s, flow {medians[f'flow {mode}']:.2f} s "
              f"({result['ratio'][mode]:.2f}x), overhead {result['overhead_per_role_run_s'][mode]:.2f} s per role run")
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / f"cluster_build{'_small' if args.small else ''}.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

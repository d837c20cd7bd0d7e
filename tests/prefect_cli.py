"""Prefect as an admin drives it: a real `prefect server start`, `prefect deploy --all` from prefect.yaml, process
workers and `prefect deployment run`, all through the CLI (the `prefect_env` fixture in tests/conftest.py)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PREFECT = str(Path(sys.executable).parent / "prefect")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"prefect server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"prefect server at {url} not healthy after {timeout} s")


@contextmanager
def started_server(tmp_path: Path, ui: bool = False) -> Iterator[dict[str, str]]:
    """A real `prefect server start` on SQLite in tmp_path, serving the web UI at the API's origin when ``ui``;
    yields the environment that points at it."""
    port = free_port()
    env = dict(os.environ, PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_UI_ENABLED=str(ui).lower(), PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
               PREFECT_SERVER_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{tmp_path / 'prefect.db'}",
               PREFECT_LOGGING_LEVEL="WARNING")
    server = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(env["PREFECT_API_URL"], server)
        yield env
    finally:
        server.terminate()
        server.wait(timeout=30)


def prefect(env: dict[str, str], *args: str, timeout: float = 300) -> str:
    """Run the prefect CLI; asserts it succeeded and returns its stdout."""
    done = subprocess.run([PREFECT, "--no-prompt", *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"prefect {' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def deploy_all(env: dict[str, str]) -> str:
    """The work pools prefect.yaml names, then `prefect deploy --all`, as the README says; returns deploy's output."""
    prefect(env, "work-pool", "create", "astrolab-process", "--type", "process")
    prefect(env, "work-pool", "create", "astrolab-gpu", "--type", "process")
    prefect(env, "work-pool", "create", "astrolab-rke2", "--type", "kubernetes",
            "--base-job-template", str(ROOT / "infra" / "k8s-job-template.json"))
    return prefect(env, "deploy", "--all")


@contextmanager
def process_worker(env: dict[str, str]) -> Iterator[subprocess.Popen]:
    """A process worker of the astrolab-process pool, with ``env``, for the duration of the block."""
    worker = subprocess.Popen([PREFECT, "worker", "start", "--pool", "astrolab-process"], env=env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield worker
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def flow_run_id(out: str) -> str:
    """The flow run id `prefect deployment run` prints (└── UUID: ...)."""
    found = re.search(r"UUID: ([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})", out)
    assert found, f"no flow run id in:\n{out[-2000:]}"
    return found[1]


def wait_for_run(env: dict[str, str], flow_name: str, timeout: float = 240) -> None:
    """Wait until a run of ``flow_name`` has completed (one a trigger started: nobody ran it by hand)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = prefect(dict(env, COLUMNS="300"), "flow-run", "ls", "--flow-name", flow_name, "--state", "COMPLETED")
        if "COMPLETED" in runs:
            return
        time.sleep(2)
    raise AssertionError(f"no completed {flow_name} run within {timeout} s: its trigger did not fire")


def latest_artifact(env: dict[str, str], key: str) -> dict[str, Any]:
    """The newest artifact with ``key`` on the server ``env`` points at, read from its REST API."""
    request = urllib.request.Request(f"{env['PREFECT_API_URL']}/artifacts/latest/filter", method="POST",
                                     data=json.dumps({"artifacts": {"key": {"any_": [key]}}}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        found = json.load(response)
    assert found, f"no artifact {key!r} on the server"
    return found[0]

"""A real headless Chromium (Debian's `chromium` + `chromium-driver`, driven by selenium) for the tests that check
what a user sees in a browser: the Prefect UI's artifacts and the Data Docs pages. `scripts/services.sh start`
installs the browser; without it these tests fail under CI=true and skip elsewhere, like the other services.

The browser resolves no host name but localhost: a page that reaches for the internet gets a failed load (a console
error the tests see) instead of quietly working online."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import in_ci
from tests.prefect_cli import ROOT, free_port, started_server

ASTROLAB = str(Path(sys.executable).parent / "astrolab")
CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
# one name per line would be "localhost 127.0.0.1"; everything else resolves to nothing
OFFLINE = "MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1"


def _browser_problem() -> tuple[str | None, str | None, str | None]:
    """(chromium, chromedriver, problem): the executables, or what is missing."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return None, None, "selenium is not installed (pip install -e '.[test]')"
    chromium = next((p for p in map(shutil.which, CHROMIUM) if p), None)
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        return chromium, driver, "chromium or chromedriver not on PATH (apt-get install chromium chromium-driver)"
    return chromium, driver, None


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """A headless Chromium (selenium WebDriver) that logs its console and resolves only localhost; fails under
    CI=true when it is missing, skips elsewhere."""
    chromium, driver, problem = _browser_problem()
    if problem:
        message = f"a headless Chromium is required: {problem}; scripts/services.sh start installs it"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--window-size=1400,1000", f"--host-resolver-rules={OFFLINE}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    chrome = webdriver.Chrome(service=Service(str(driver)), options=options)
    chrome.set_page_load_timeout(60)
    try:
        yield chrome
    finally:
        chrome.quit()


def console_errors(chrome: Any, ignore: tuple[str, ...] = ()) -> list[str]:
    """The browser console's errors since the last call (failed loads, script errors), less those naming any of
    ``ignore``."""
    return [e["message"] for e in chrome.get_log("browser")
            if e["level"] == "SEVERE" and not any(text in e["message"] for text in ignore)]


def status_of(chrome: Any, url: str) -> int:
    """Open ``url`` in the browser; the HTTP status of the page it got."""
    chrome.get(url)
    return int(chrome.execute_script("return performance.getEntriesByType('navigation')[0].responseStatus"))


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Wait until something accepts connections on 127.0.0.1:``port``; fails if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"exited with {proc.returncode}: {proc.stdout.read() if proc.stdout else ''}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@pytest.fixture(scope="package")
def ingested(tmp_path_factory, browser) -> Iterator[dict[str, str]]:
    """A tiny zpix-only sample ingested with `astrolab ingest` against a real Prefect server with its UI, and the
    lake's reports served by `astrolab docs` where the run's links point; yields the environment (PREFECT_API_URL,
    ASTROLAB_HOME, ASTROLAB_REPORTS_PORT)."""
    from tasks.synthetic import SampleConfig, generate_sample

    tmp = tmp_path_factory.mktemp("browser")
    generate_sample(tmp / "desi", SampleConfig(n_rows=300, seed=7, n_voids=3, write_zall=False,
                                               write_fastspec=False, write_spectra=False))
    with started_server(tmp, ui=True) as server_env:
        env = {**server_env, "ASTROLAB_HOME": str(tmp / "home"), "ASTROLAB_REPORTS_PORT": str(free_port()),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        done = subprocess.run([ASTROLAB, "ingest", str(tmp / "desi")], env=env, cwd=ROOT, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, f"astrolab ingest:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        docs = subprocess.Popen([ASTROLAB, "docs"], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        try:
            wait_listening(int(env["ASTROLAB_REPORTS_PORT"]), docs)
            yield env
        finally:
            docs.terminate()
            docs.wait(timeout=30)

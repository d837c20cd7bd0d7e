"""The desi-ingest run's artifacts as a user sees them in the Prefect UI: every plot shows, every link opens."""

from __future__ import annotations

import json
import struct
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import console_errors, status_of

pytestmark = pytest.mark.slow  # a Prefect server with its UI, an ingest and `astrolab docs`, once for tests/browser

# the Prefect UI's two web apps: where each is served, and the element it renders an artifact's markdown in
APPS = {"v1": ("", ".markdown-renderer"), "v2": ("/v2", ".prose")}
# the server's missing favicon.ico, and the V2 app's telemetry (amplitude.com, unreachable here): none an artifact's
PREFECT_OWN = ("/favicon.ico", "amplitude.com/")


def api(env: dict[str, str], path: str, body: dict[str, Any]) -> Any:
    """POST ``body`` to the Prefect API; its JSON answer."""
    request = urllib.request.Request(f"{env['PREFECT_API_URL']}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def png_width(data: bytes) -> int:
    """A PNG's width in pixels, from its IHDR chunk."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">I", data[16:20])[0]


def rendered_artifact(chrome: Any, page: str, markdown: str) -> tuple[list[dict], list[str]]:
    """Open an artifact's page; (images, link targets) inside the ``markdown`` element once it rendered and its
    images are done loading (or failing)."""
    from selenium.webdriver.support.ui import WebDriverWait

    chrome.get(page)
    WebDriverWait(chrome, 30).until(lambda c: c.execute_script(
        "const shown = Array.from(document.querySelectorAll(arguments[0]));"
        "return shown.some(m => m.textContent.trim()) && shown.every(m => Array.from(m.querySelectorAll('img'))"
        ".every(i => i.complete))", markdown), f"{page}: no {markdown} with content")
    images = chrome.execute_script("return Array.from(document.querySelectorAll(arguments[0]))"
                                   ".map(i => ({width: i.naturalWidth, src: i.src.slice(0, 22)}))", f"{markdown} img")
    links = chrome.execute_script("return Array.from(document.querySelectorAll(arguments[0])).map(a => a.href)",
                                  f"{markdown} a")
    return images, links


@pytest.mark.parametrize("app", APPS)
def test_every_plot_shows_and_every_link_opens_from_the_prefect_ui(browser, ingested, app):
    prefix, markdown_element = APPS[app]
    ui = ingested["PREFECT_API_URL"].removesuffix("/api") + prefix
    [run] = api(ingested, "/flow_runs/filter", {"flows": {"name": {"any_": ["desi-ingest"]}}})
    artifacts = {a["key"]: a for a in api(ingested, "/artifacts/filter",
                                          {"artifacts": {"flow_run_id": {"any_": [run["id"]]}}})}
    markdown = sorted(k for k, a in artifacts.items() if a["type"] == "markdown")
    assert markdown == ["desi-data-docs", "desi-ingest-summary", "desi-nz", "desi-sky-density"]
    console_errors(browser)  # forget what came before

    plots = Path(ingested["ASTROLAB_HOME"]) / "lake" / "reports" / "runs" / run["id"]
    reports = f"http://localhost:{ingested['ASTROLAB_REPORTS_PORT']}"
    followed: dict[str, int] = {}
    for key in markdown:
        images, links = rendered_artifact(browser, f"{ui}/artifacts/artifact/{artifacts[key]['id']}", markdown_element)
        assert console_errors(browser, PREFECT_OWN) == [], key
        if key in ("desi-nz", "desi-sky-density"):
            png = (plots / f"{key.removeprefix('desi-').replace('-', '_')}.png").read_bytes()
            # the embedded PNG decoded in the browser, at the plot file's own size
            assert [(i["src"], i["width"]) for i in images] == [("data:image/png;base64,", png_width(png))], key
        else:
            assert images == [], key
        assert links and all(link.startswith(f"{reports}/") for link in links), (key, links)  # no file://, no s3://
        for link in links:
            followed[link] = status_of(browser, link)
            if link.endswith(".png"):  # the browser shows the file itself
                assert browser.execute_script("return document.images[0].naturalWidth") > 0, link
    assert set(followed.values()) == {200}, followed
    assert f"{reports}/data_docs/index.html" in followed
    assert {f"{reports}/runs/{run['id']}/{name}" for name in ("nz.png", "sky_density.png")} <= followed.keys()
    browser.get(f"{reports}/data_docs/index.html")
    assert "Great Expectations" in browser.title

"""The ingest's Data Docs as a user opens them: served by `astrolab docs`, joined from Dask workers' sites, and from
the S3 lake over HTTP; every stylesheet, script, font and image comes from the site itself, and the pages are
styled."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from astrolab.cli import serve_reports
from astrolab.resources import build_lake
from astrolab.settings import load_settings
from tasks.ingest.report import join_data_docs
from tasks.storage.s3 import split_url
from tests.browser.conftest import console_errors, status_of
from tests.conftest import allow_anonymous_reads

pytestmark = pytest.mark.slow  # a Prefect server with its UI, an ingest and `astrolab docs`, once for tests/browser

# what a page loaded, and what its stylesheets and scripts did with it
PAGE_STATE = """
const sheets = Array.from(document.styleSheets).map(s => {
  try { return {href: s.href, rules: s.cssRules.length}; } catch (e) { return {href: s.href, rules: -1}; }
});
return {
  resources: performance.getEntriesByType('resource').map(e => ({url: e.name, status: e.responseStatus})),
  sheets: sheets,
  navbar: getComputedStyle(document.querySelector('.navbar')).display,
  font: getComputedStyle(document.body).fontFamily,
  plugins: typeof jQuery === 'function' && typeof jQuery.fn.bootstrapTable === 'function'
           && typeof jQuery.fn.tooltip === 'function' && typeof vegaEmbed === 'function',
  icons: Array.from(document.fonts).filter(f => f.family.includes('Font Awesome') && f.status === 'loaded').length,
  images: Array.from(document.images).map(i => ({src: i.src, width: i.naturalWidth})),
};
"""


def site_pages(site: Path) -> list[str]:
    """The pages a user opens first, relative to the site: index, one validation result, one expectation suite."""
    validation = min(site.glob("validations/**/*.html"))
    suite = min(site.glob("expectations/*.html"))
    return ["index.html", validation.relative_to(site).as_posix(), suite.relative_to(site).as_posix()]


def assert_self_contained_and_styled(chrome: Any, url: str) -> None:
    """Open ``url``: it answers 200, loads everything from its own origin with no failed load, and bootstrap,
    its plugins, vega and font-awesome took effect."""
    console_errors(chrome)
    assert status_of(chrome, url) == 200, url
    state = chrome.execute_script(PAGE_STATE)
    origin = "{0.scheme}://{0.netloc}/".format(urlsplit(url))
    assert state["resources"], url
    assert [r for r in state["resources"] if not r["url"].startswith(origin) or r["status"] != 200] == [], url
    linked = [s for s in state["sheets"] if s["href"]]
    assert len(linked) >= 6 and all(s["href"].startswith(origin) and s["rules"] > 0 for s in linked), linked
    assert state["navbar"] == "flex", url  # bootstrap's .navbar; a browser's own <nav> is a block
    assert state["font"].startswith("-apple-system"), url  # bootstrap's reboot font stack
    assert state["plugins"] and state["icons"] > 0, url
    assert state["images"] and all(i["src"].startswith(origin) and i["width"] > 0 for i in state["images"]), url
    assert console_errors(chrome) == [], url


def test_data_docs_served_by_astrolab_docs_are_offline_and_styled(browser, ingested):
    site = Path(ingested["ASTROLAB_HOME"]) / "lake" / "reports" / "data_docs"
    for page in site_pages(site):
        assert_self_contained_and_styled(browser, f"http://127.0.0.1:{ingested['ASTROLAB_REPORTS_PORT']}"
                                                  f"/data_docs/{page}")


def test_data_docs_joined_from_dask_workers_open_from_their_index(browser, ingested, tmp_path):
    """With the ingest on a Dask cluster (a PostgreSQL catalog) each worker builds a site below data_docs/workers/
    and the index links them: the index opens, and each link leads to a working site."""
    built = Path(ingested["ASTROLAB_HOME"]) / "lake" / "reports" / "data_docs"
    docs = tmp_path / "reports" / "data_docs"
    workers = ["workers/host-a-1-0/index.html", "workers/host-b-2-1/index.html"]
    for rel in workers:
        shutil.copytree(built, (docs / rel).parent)
    join_data_docs(docs, workers)
    server = serve_reports(docs.parent, 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        index = f"http://127.0.0.1:{server.server_address[1]}/data_docs/index.html"
        console_errors(browser)
        assert status_of(browser, index) == 200
        links = browser.execute_script("return Array.from(document.links).map(a => a.href)")
        assert links == [index.replace("index.html", rel) for rel in workers]
        assert console_errors(browser) == [], index
        for link in links:
            assert_self_contained_and_styled(browser, link)
    finally:
        server.shutdown()
        server.server_close()


def test_data_docs_in_the_s3_lake_open_over_http(browser, ingested, s3_lake_env, tmp_path, monkeypatch):
    for name, value in {**s3_lake_env, "ASTROLAB_HOME": str(tmp_path)}.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    lake = build_lake(settings)
    built = Path(ingested["ASTROLAB_HOME"]) / "lake" / "reports" / "data_docs"
    shutil.copytree(built, lake.data_docs_dir())
    lake.save_dir(lake.data_docs_dir())  # what the ingest does on an S3 lake: upload, content types by file name
    if urlsplit(settings.reports_url).hostname not in ("127.0.0.1", "localhost"):
        pytest.fail(f"the test S3 server must be on loopback for the browser: {settings.reports_url}")
    index = f"{settings.reports_url}/data_docs/index.html"
    assert status_of(browser, index) == 403  # a private bucket: the Prefect UI's links need the admin's policy
    bucket, prefix = split_url(settings.lake_url)
    allow_anonymous_reads(lake.store.client, bucket, f"{prefix}/reports")
    for page in site_pages(built):
        assert_self_contained_and_styled(browser, f"{settings.reports_url}/data_docs/{page}")

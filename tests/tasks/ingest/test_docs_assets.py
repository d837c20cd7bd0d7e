"""Data Docs work offline: real GX sites have no CDN stylesheet or script left, and every local link resolves."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
from pathlib import Path

import pytest

from tasks.ingest.docs_assets import CDN_FILES, VENDOR_DIR, assets_dir, make_self_contained
from tasks.ingest.report import join_data_docs
from tasks.ingest.validate import BatchValidator
from tests.tasks.ingest.test_validate import EXPECTATIONS, zcatalog_chunk

_TAGS = re.compile(r"<(?:link|script|img)\b[^>]*>", re.I)  # what loads a file: stylesheets, scripts, images
_ASSET_TAGS = re.compile(r"<(?:link|script)\b[^>]*>", re.I)
_REF = re.compile(r'\b(?:href|src)="([^"]+)"', re.I)


def _gx_templates() -> Path:
    import great_expectations

    return Path(great_expectations.__file__).parent / "render" / "view" / "templates"


@pytest.fixture(scope="module")
def assets() -> Path:
    """The installed CDN files; missing: fail under CI=true, skip elsewhere, saying how to install them."""
    path = assets_dir()
    missing = sorted(f"{d}/{p}" for d, p in CDN_FILES.values() if not (path / d / p).is_file())
    if missing:
        message = (f"Data Docs assets missing in {path} ({len(missing)} files, e.g. {missing[0]}): "
                   "run scripts/data_docs_assets.py (make venv does)")
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def docs(assets: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A worker's real Data Docs site built twice (a second kept result in between), joined under one index."""
    root = tmp_path_factory.mktemp("lake") / "reports" / "data_docs"
    site = root / "workers" / "host-1-0"
    validator = BatchValidator(EXPECTATIONS, docs_dir=site)
    bad = zcatalog_chunk()
    bad.loc[4, "TARGET_RA"] = 400.0
    validator.validate("zcatalog", bad, "zpix-main-dark.fits[0:20]", keep_for_docs=True)
    validator.build_data_docs()
    jquery = site / VENDOR_DIR / "jquery-3.7.1" / "dist" / "jquery.min.js"
    first_copy = jquery.stat().st_mtime_ns
    validator.validate("zcatalog", zcatalog_chunk(), "zpix-main-dark.fits[20:40]", keep_for_docs=True)
    validator.build_data_docs()
    join_data_docs(root, ["workers/host-1-0/index.html"])
    return {"root": root, "site": site, "first_copy": first_copy, "jquery": jquery}


def _pages(root: Path) -> list[Path]:
    return sorted(root.rglob("*.html"))


def test_every_gx_cdn_stylesheet_and_script_has_a_local_copy() -> None:
    used = set()
    for template in _gx_templates().rglob("*.j2"):
        for tag in _ASSET_TAGS.findall(template.read_text()):
            used.update(u for u in _REF.findall(tag) if u.startswith("http"))
    assert used and used <= set(CDN_FILES), sorted(used - set(CDN_FILES))


def test_no_cdn_stylesheet_or_script_is_left(docs: dict) -> None:
    pages = _pages(docs["root"])
    validation_pages = [p for p in pages if "validations" in p.parts]
    assert len(validation_pages) == 2 and len(pages) >= 7  # joined index, site index, 3 suites, 2 validations
    for page in pages:
        for tag in _ASSET_TAGS.findall(page.read_text()):
            assert not re.search(r'(href|src)="(https?:)?//', tag), f"{page}: {tag}"
            assert "crossorigin" not in tag and "integrity" not in tag  # they stop browsers loading file:// copies
    for page in [*validation_pages, docs["site"] / "index.html", docs["site"] / "expectations" / "zcatalog.html"]:
        text = page.read_text()
        assert text.count(f'{VENDOR_DIR}/') >= 15, page  # bootstrap, jQuery, font-awesome, ... all linked locally
        assert "great-expectations-web-assets" not in re.sub(r"<style>.*?</style>", "", text, flags=re.S)


def test_every_local_reference_resolves_inside_the_site(docs: dict) -> None:
    root: Path = docs["root"].resolve()
    checked = 0
    for page in _pages(root):
        for tag in _TAGS.findall(page.read_text()):
            for ref in _REF.findall(tag):
                if ref.startswith(("http:", "https:", "#", "data:")):
                    continue
                target = (page.parent / ref.split("?", 1)[0]).resolve()
                assert target.is_file() and target.is_relative_to(docs["site"].resolve()), f"{page}: {ref}"
                checked += 1
    assert checked > 100


def test_font_awesome_webfonts_are_in_the_site(docs: dict) -> None:
    css = docs["site"] / VENDOR_DIR / "fontawesome-free-6.6.0" / "css" / "all.min.css"
    fonts = sorted(set(re.findall(r"url\(([^)]+)\)", css.read_text())))
    assert any(f.endswith("fa-solid-900.woff2") for f in fonts)
    for font in fonts:
        assert (css.parent / font).resolve().is_file(), font


def test_copies_are_the_files_gx_pins_and_are_copied_once(docs: dict) -> None:
    """GX pins popper and bootstrap's JS with SRI hashes: the site's copies (from npm) are those exact bytes."""
    template = (_gx_templates() / "js_script_imports.j2").read_text()
    pinned = re.findall(r'src="(https://[^"]+)" integrity="sha384-([^"]+)"', template)
    assert len(pinned) == 2
    for url, sha384 in pinned:
        package, path = CDN_FILES[url]
        data = (docs["site"] / VENDOR_DIR / package / path).read_bytes()
        assert base64.b64encode(hashlib.sha384(data).digest()).decode() == sha384, url
    assert docs["jquery"].stat().st_mtime_ns == docs["first_copy"]  # the second build did not copy again


def _page(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<html><head>{body}</head><body></body></html>")
    return path


def test_join_gives_a_site_built_without_assets_the_local_copies(assets: Path, tmp_path: Path) -> None:
    cdn = '<script src="https://code.jquery.com/jquery-3.7.1.min.js"></script>'
    root = tmp_path / "data_docs"
    index = _page(root / "workers" / "w2" / "index.html", cdn)
    page = _page(root / "workers" / "w2" / "validations" / "s" / "r" / "t" / "p.html", cdn)

    join_data_docs(root, ["workers/w2/index.html"])

    assert '<script src="static/vendor/jquery-3.7.1/dist/jquery.min.js">' in index.read_text()
    assert '<script src="../../../../static/vendor/jquery-3.7.1/dist/jquery.min.js">' in page.read_text()
    copy = root / "workers" / "w2" / VENDOR_DIR / "jquery-3.7.1" / "dist" / "jquery.min.js"
    assert copy.read_bytes() == (assets / "jquery-3.7.1" / "dist" / "jquery.min.js").read_bytes()


def test_an_unknown_cdn_url_is_left_and_named_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assets = tmp_path / "assets"
    (assets / "jquery-3.7.1" / "dist").mkdir(parents=True)
    (assets / "jquery-3.7.1" / "dist" / "jquery.min.js").write_text("/* jquery */")
    unknown = "https://cdn.example.org/lib-9.js"
    tags = f'<script src="https://code.jquery.com/jquery-3.7.1.min.js"></script><script src="{unknown}"></script>'
    site = tmp_path / "site"
    pages = [_page(site / "index.html", tags), _page(site / "a" / "b" / "page.html", tags)]

    with caplog.at_level(logging.WARNING, logger="tasks.ingest.docs_assets"):
        left = make_self_contained(site, assets=assets)

    assert left == [unknown]
    assert [r.getMessage() for r in caplog.records if unknown in r.getMessage()] == [
        f"Data Docs in {site}: no local copy of {unknown}; pages keep this CDN link"]
    assert f'src="{unknown}"' in pages[1].read_text()
    assert '<script src="../../static/vendor/jquery-3.7.1/dist/jquery.min.js">' in pages[1].read_text()
    assert (site / VENDOR_DIR / "jquery-3.7.1" / "dist" / "jquery.min.js").read_text() == "/* jquery */"


def test_without_installed_assets_pages_keep_their_cdn_links(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    css = "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css"
    page = _page(tmp_path / "site" / "index.html", f'<link rel="stylesheet" href="{css}"/>')
    before = page.read_text()

    with caplog.at_level(logging.WARNING, logger="tasks.ingest.docs_assets"):
        left = make_self_contained(tmp_path / "site", assets=tmp_path / "not-installed")

    assert left == [css] and page.read_text() == before and not (tmp_path / "site" / "static").exists()
    assert len(caplog.records) == 1 and "run scripts/data_docs_assets.py" in caplog.records[0].getMessage()

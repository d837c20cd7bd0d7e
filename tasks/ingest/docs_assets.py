"""Data Docs that work offline: GX's CDN links rewritten to copies of the same files inside the site.

Great Expectations' page templates link bootstrap, jQuery, font-awesome and friends on public CDNs. The same
files, at the same versions, are fetched from the npm registry at install (``scripts/data_docs_assets.py``, run
by ``make venv``) into :func:`assets_dir`; :func:`make_self_contained` copies the ones a site uses into its
``static/vendor/`` folder and points every page at them with relative paths, so the site reads the same from a
local directory, from ``astrolab docs`` and from the S3 lake over HTTP.
"""

from __future__ import annotations

import html
import logging
import os
import re
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path

__all__ = ["CDN_FILES", "VENDOR_DIR", "assets_dir", "links_cdn", "make_self_contained"]

log = logging.getLogger(__name__)

#: Where a site's copies go, relative to the site's root.
VENDOR_DIR = "static/vendor"
#: Written next to each installed package's files: the npm ``dist.integrity`` they were verified against.
INTEGRITY_FILE = ".integrity"

_BT = "https://unpkg.com/bootstrap-table"
_FILTER = "dist/extensions/filter-control/bootstrap-table-filter-control"
#: Every CDN URL the GX 1.x templates use -> (package directory under the assets, file inside the npm package).
#: The package directories are ``<npm name without scope>-<version>``; the jsDelivr ``@5``/``@6`` ranges of vega
#: are pinned to the newest release of that major version (what jsDelivr serves).
CDN_FILES: dict[str, tuple[str, str]] = {
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": (
        "bootstrap-4.3.1", "dist/css/bootstrap.min.css"),
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": (
        "bootstrap-4.3.1", "dist/js/bootstrap.min.js"),
    "https://code.jquery.com/jquery-3.7.1.min.js": ("jquery-3.7.1", "dist/jquery.min.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": (
        "popper.js-1.12.9", "dist/umd/popper.min.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": (
        "fontawesome-free-6.6.0", "css/all.min.css"),
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css": (
        "bootstrap-datepicker-1.9.0", "dist/css/bootstrap-datepicker.min.css"),
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js": (
        "bootstrap-datepicker-1.9.0", "dist/js/bootstrap-datepicker.min.js"),
    f"{_BT}@1.19.1/dist/bootstrap-table.min.css": ("bootstrap-table-1.19.1", "dist/bootstrap-table.min.css"),
    f"{_BT}@1.19.1/dist/bootstrap-table.min.js": ("bootstrap-table-1.19.1", "dist/bootstrap-table.min.js"),
    f"{_BT}@1.19.1/{_FILTER}.min.js": ("bootstrap-table-1.19.1", f"{_FILTER}.min.js"),
    f"{_BT}@1.19.0/{_FILTER}.css": ("bootstrap-table-1.19.0", f"{_FILTER}.css"),
    f"{_BT}@1.19.0/{_FILTER}.min.css": ("bootstrap-table-1.19.0", f"{_FILTER}.min.css"),
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css": (
        "bootstrap-dark-1.1.0", "dist/css/bootstrap-prefers-dark.css"),
    "https://cdn.jsdelivr.net/npm/vega@5": ("vega-5.33.1", "build/vega.min.js"),
    "https://cdn.jsdelivr.net/npm/vega-lite@5": ("vega-lite-5.23.0", "build/vega-lite.min.js"),
    "https://cdn.jsdelivr.net/npm/vega-embed@6": ("vega-embed-6.29.0", "build/vega-embed.min.js"),
}
#: GX's navbar logo is fetched from its web-assets bucket (with a per-build query string); the site has a copy.
_GX_IMAGES = "https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/"

_TAG = re.compile(r"<(link|script|img)\b[^>]*>", re.I)
_URL_ATTR = re.compile(r'\b(href|src)="([^"]+)"', re.I)
# SRI with crossorigin makes browsers refuse file:// copies; the copies were checked at install (npm integrity)
_SRI_ATTRS = re.compile(r'\s+(integrity|crossorigin)="[^"]*"', re.I)


def assets_dir() -> Path:
    """Where the install put the verified CDN files: ``$ASTROLAB_DATA_DOCS_ASSETS`` or the venv's
    ``share/astrolab/data-docs-assets``."""
    override = os.environ.get("ASTROLAB_DATA_DOCS_ASSETS")
    return Path(override) if override else Path(sys.prefix) / "share" / "astrolab" / "data-docs-assets"


def make_self_contained(site: Path, pages: Iterable[Path] | None = None, assets: Path | None = None) -> list[str]:
    """Point the CDN links of ``pages`` (default: every HTML file of ``site``) at copies in the site's
    ``static/vendor/``, copied there once per site; return the CDN URLs left as they were (no local copy).

    Each URL left is logged as one warning; with no assets installed at all, one warning says how to fetch them.
    """
    site = Path(site)
    assets = assets if assets is not None else assets_dir()
    installed = assets.is_dir()
    if not installed:
        log.warning("Data Docs in %s keep their CDN links (they need the internet): no assets in %s; "
                    "run scripts/data_docs_assets.py (make venv does)", site, assets)
    used: set[str] = set()
    left: dict[str, None] = {}
    for page in sorted(site.rglob("*.html")) if pages is None else pages:
        _rewrite_page(page, site, assets, used, left)
    for package in sorted(used):
        _copy_package(assets / package, site / VENDOR_DIR / package)
    if installed:
        for url in left:
            log.warning("Data Docs in %s: no local copy of %s; pages keep this CDN link", site, url)
    return list(left)


def links_cdn(page: Path) -> bool:
    """Whether a page still links one of the CDN files (its site was built where the assets were missing)."""
    text = page.read_text(encoding="utf-8")
    return any(url in text for url in CDN_FILES)


def _rewrite_page(page: Path, site: Path, assets: Path, used: set[str], left: dict[str, None]) -> None:
    text = page.read_text(encoding="utf-8")
    new = _TAG.sub(lambda m: _rewrite_tag(m.group(0), site, page, assets, used, left), text)
    if new != text:
        page.write_text(new, encoding="utf-8")


def _rewrite_tag(tag: str, site: Path, page: Path, assets: Path, used: set[str], left: dict[str, None]) -> str:
    match = _URL_ATTR.search(tag)
    if match is None:
        return tag
    url = html.unescape(match.group(2))
    local: tuple[Path, str | None] | None
    if not url.startswith(("http://", "https://")):
        local = _site_static(url, site, page)
    else:
        local = _local_copy(url, site, assets)
        if local is None and (tag[1:].lower().startswith("script") or "stylesheet" in tag.lower()):
            left[url] = None
    if local is None:
        return tag
    target, package = local
    if package:
        used.add(package)
    rel = os.path.relpath(target, page.parent).replace(os.sep, "/")
    tag = tag[: match.start(2)] + html.escape(rel) + tag[match.end(2):]
    return _SRI_ATTRS.sub("", tag)


def _local_copy(url: str, site: Path, assets: Path) -> tuple[Path, str | None] | None:
    """The file in the site a CDN URL stands for, and the asset package to copy there (None: already there)."""
    if url in CDN_FILES:
        package, path = CDN_FILES[url]
        if not (assets / package / path).is_file():
            return None
        return site / VENDOR_DIR / package / path, package
    if url.startswith(_GX_IMAGES):
        image = site / "static" / "images" / url[len(_GX_IMAGES):].split("?", 1)[0]
        return (image, None) if image.is_file() else None
    return None


def _site_static(ref: str, site: Path, page: Path) -> tuple[Path, None] | None:
    """A link into the site's ``static/`` that misses it (GX's favicon link on validation pages is one ``../``
    short): the file it means, when that exists; None for links that resolve or point elsewhere."""
    head, sep, rest = ref.partition("static/")
    if not sep or head.strip("./") or (page.parent / ref).exists():
        return None
    target = site / "static" / rest
    return (target, None) if target.is_file() else None


def _copy_package(source: Path, target: Path) -> None:
    """Copy one installed package's files into a site, unless the same verified version is already there."""
    mark_from, mark_to = source / INTEGRITY_FILE, target / INTEGRITY_FILE
    if mark_to.is_file() and mark_from.is_file() and mark_to.read_bytes() == mark_from.read_bytes():
        return
    shutil.copytree(source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns(INTEGRITY_FILE))
    if mark_from.is_file():  # last: a copy cut short is redone next time
        shutil.copyfile(mark_from, mark_to)

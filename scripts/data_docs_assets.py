"""Fetch the stylesheets, scripts and fonts that Great Expectations Data Docs link on CDNs, for offline Data Docs.

    python scripts/data_docs_assets.py [--dest DIR]     (run by `make venv` after pip install)

Each package comes from the npm registry as its release tarball, at the exact version GX's templates name, and is
checked against the npm ``dist.integrity`` (sha512) pinned below before anything is extracted. Only the files the
pages link (tasks/ingest/docs_assets.py ``CDN_FILES``) and what their stylesheets load (font-awesome's webfonts)
are extracted, into the venv (default: ``<venv>/share/astrolab/data-docs-assets``), never into the repository.
Cached: a package already extracted with the same integrity is not fetched again. A package that cannot be fetched
or fails its check is one line on stderr and exit status 1; Data Docs then keep that package's CDN links.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import posixpath
import re
import shutil
import sys
import tarfile
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

REGISTRY = "https://registry.npmjs.org"
#: package directory -> (npm name, version, npm dist.integrity), looked up in the registry's metadata.
PACKAGES: dict[str, tuple[str, str, str]] = {
    "bootstrap-4.3.1": ("bootstrap", "4.3.1",
        "sha512-rXqOmH1VilAt2DyPzluTi2blhk17bO7ef+zLLPlWvG494pDxcM234pJ8wTc/6R40UWizAIIMgxjvxZg5kmsbag=="),
    "jquery-3.7.1": ("jquery", "3.7.1",
        "sha512-m4avr8yL8kmFN8psrbFFFmB/If14iN5o9nw/NgnnM+kybDJpRsAynV2BsfpTYrTRysYUdADVD7CkUUizgkpLfg=="),
    "popper.js-1.12.9": ("popper.js", "1.12.9",
        "sha512-s0EEi9xiSCdqz9lV4IiVH5yIZnDX/U1t0tCjB+0jXx9jW8lrR7kOpVupiUg175ogqVoudpDXHF1p6dKATCHMeg=="),
    "fontawesome-free-6.6.0": ("@fortawesome/fontawesome-free", "6.6.0",
        "sha512-60G28ke/sXdtS9KZCpZSHHkCbdsOGEhIUGlwq6yhY74UpTiToIh8np7A8yphhM4BWsvNFtIvLpi4co+h9Mr9Ow=="),
    "bootstrap-datepicker-1.9.0": ("bootstrap-datepicker", "1.9.0",
        "sha512-9rYYbaVOheGYxjOr/+bJCmRPihfy+LkLSg4fIFMT9Od8WwWB/MB50w0JO1eBgKUMbb7PFHQD5uAfI3ArAxZRXA=="),
    "bootstrap-table-1.19.1": ("bootstrap-table", "1.19.1",
        "sha512-WvV+l1AI/C+zThaKmfHmi/IuayVNB0qdFyEhFx1jyZhO0oLtNJNANkCR3rvJf6Dkh72dsLElxpE/bzK9seEQLA=="),
    "bootstrap-table-1.19.0": ("bootstrap-table", "1.19.0",
        "sha512-L+USHm3X9FKocx/6yngGu12yF6r6s1Ntuc+hoIK2a2QQJjHw5kcySLiE2HY/9sEaSGAOfPbfQOtBH3uKkcpqEA=="),
    "bootstrap-dark-1.1.0": ("@forevolve/bootstrap-dark", "1.1.0",
        "sha512-A3ucpEpxPoTVO490lZZCfjPXxv832l7mm1IxX3bXyxvgwnPGXDLyh7dWrphXKO8YBAu3EswbBEu3VSW8NRMW3A=="),
    "vega-5.33.1": ("vega", "5.33.1",
        "sha512-1fArfVDUqVbb5z8n+/nVQb+VNBzx8svY6CrsyTK4Ujm4yrd9I1auoKxBAPXLCavY1LcrbHUskQbGUP8gXOzyQw=="),
    "vega-lite-5.23.0": ("vega-lite", "5.23.0",
        "sha512-l4J6+AWE3DIjvovEoHl2LdtCUkfm4zs8Xxx7INwZEAv+XVb6kR6vIN1gt3t2gN2gs/y4DYTs/RPoTeYAuEg6mA=="),
    "vega-embed-6.29.0": ("vega-embed", "6.29.0",
        "sha512-PmlshTLtLFLgWtF/b23T1OwX53AugJ9RZ3qPE2c01VFAbgt3/GSNI/etzA/GzdrkceXFma+FDHNXUppKuM0U6Q=="),
}
INTEGRITY_FILE = ".integrity"  # same name as tasks.ingest.docs_assets.INTEGRITY_FILE
_CSS_URL = re.compile(r"""url\(\s*['"]?([^'")]+)['"]?\s*\)""")


class AssetError(Exception):
    """A package failed its integrity check or lacks a file the pages need."""


class FetchError(AssetError):
    """A tarball could not be downloaded (offline, registry unreachable)."""


def tarball_url(name: str, version: str) -> str:
    """The registry address of a package's release tarball (scoped names drop the scope in the file name)."""
    return f"{REGISTRY}/{name}/-/{name.rsplit('/', 1)[-1]}-{version}.tgz"


def check_integrity(data: bytes, integrity: str, what: str) -> None:
    """Raise AssetError unless ``data`` has the npm ``sha512-<base64>`` integrity."""
    algorithm, _, expected = integrity.partition("-")
    if algorithm != "sha512":
        raise AssetError(f"{what}: unsupported integrity {integrity!r} (expected sha512-...)")
    actual = base64.b64encode(hashlib.sha512(data).digest()).decode()
    if actual != expected:
        raise AssetError(f"{what}: integrity mismatch (got sha512-{actual}, pinned {integrity}); not installed")


def extract(data: bytes, files: set[str], target: Path, what: str) -> list[str]:
    """Extract ``files`` (paths inside the package) and the relative url(...) files their stylesheets load."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        members = {m.name.split("/", 1)[1]: m for m in tar.getmembers() if m.isfile() and "/" in m.name}
        wanted, done = sorted(files), []
        while wanted:
            path = wanted.pop()
            if path in done:
                continue
            if path.startswith("../") or posixpath.isabs(path):
                raise AssetError(f"{what}: {path} points outside the package")
            if path not in members:
                raise AssetError(f"{what}: no {path} in the package")
            source = tar.extractfile(members[path])
            assert source is not None  # a regular file
            content = source.read()
            out = target / path
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(content)
            done.append(path)
            if path.endswith(".css"):
                wanted += _css_references(path, content.decode("utf-8", "replace"))
    return sorted(done)


def _css_references(css_path: str, text: str) -> list[str]:
    refs = []
    for ref in _CSS_URL.findall(text):
        ref = ref.split("?", 1)[0].split("#", 1)[0]
        if ref and not ref.startswith(("data:", "http:", "https:", "//", "/")):
            refs.append(posixpath.normpath(posixpath.join(posixpath.dirname(css_path), ref)))
    return refs


def install_package(dest: Path, directory: str, files: set[str], fetch: Callable[[str], bytes]) -> bool:
    """Fetch, verify and extract one package into ``dest/directory``; False when it was already there."""
    name, version, integrity = PACKAGES[directory]
    target = dest / directory
    marker = target / INTEGRITY_FILE
    if marker.is_file() and marker.read_text() == integrity and all((target / f).is_file() for f in files):
        return False
    what = f"{name} {version}"
    url = tarball_url(name, version)
    try:
        data = fetch(url)
    except OSError as exc:
        raise FetchError(f"{what}: cannot fetch {url}: {exc}") from None
    check_integrity(data, integrity, what)
    staging = dest / f".{directory}.part"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        extract(data, files, staging, what)
        (staging / INTEGRITY_FILE).write_text(integrity)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return True


def _download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.read()


def _project() -> Any:
    """tasks.ingest.docs_assets of this checkout: the URLs the pages use and where the files go."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import tasks.ingest.docs_assets as docs_assets

    return docs_assets


def needed_files(cdn_files: dict[str, tuple[str, str]]) -> dict[str, set[str]]:
    """Package directory -> files the Data Docs pages link."""
    files: dict[str, set[str]] = {}
    for directory, path in cdn_files.values():
        files.setdefault(directory, set()).add(path)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", type=Path, default=None,
                        help="where to put the files (default: $ASTROLAB_DATA_DOCS_ASSETS or "
                             "<venv>/share/astrolab/data-docs-assets)")
    args = parser.parse_args(argv)
    project = _project()
    files = needed_files(project.CDN_FILES)
    dest = args.dest or project.assets_dir()
    dest.mkdir(parents=True, exist_ok=True)
    failed = fetched = 0
    for directory in sorted(files):
        try:
            fetched += install_package(dest, directory, files[directory], _download)
        except FetchError as exc:  # offline: one line, not one timeout per package
            print(f"data-docs assets: {exc}; Data Docs will link the CDNs (rerun this script when online)",
                  file=sys.stderr)
            return 1
        except AssetError as exc:
            failed += 1
            print(f"data-docs assets: {exc}; Data Docs keep its CDN links", file=sys.stderr)
    print(f"data-docs assets: {len(files) - failed} of {len(files)} packages in {dest} ({fetched} fetched now)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

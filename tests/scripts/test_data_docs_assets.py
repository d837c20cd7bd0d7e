"""scripts/data_docs_assets.py: npm tarballs are checked against their pinned integrity before anything is extracted,
only what the pages need is extracted, and an installed package is not fetched again."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import io
import tarfile
from pathlib import Path
from types import ModuleType

import pytest

from tasks.ingest.docs_assets import CDN_FILES

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "data_docs_assets.py"
CSS = ("body{font-family:x}@font-face{src:url(../webfonts/fa-solid-900.woff2) format('woff2'),"
       "url('../webfonts/fa-solid-900.ttf?v=1')}")


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("data_docs_assets", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tarball(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


@pytest.fixture
def fake(script: ModuleType, monkeypatch: pytest.MonkeyPatch) -> bytes:
    """A small font-awesome-like package pinned under the directory 'fake-1.0.0'."""
    data = _tarball({"css/all.min.css": CSS.encode(), "webfonts/fa-solid-900.woff2": b"woff2",
                     "webfonts/fa-solid-900.ttf": b"ttf", "webfonts/unused.ttf": b"unused", "README.md": b"hi"})
    monkeypatch.setitem(script.PACKAGES, "fake-1.0.0", ("@scope/fake", "1.0.0", _integrity(data)))
    return data


def test_verified_package_is_extracted_with_what_its_css_loads_and_cached(script, fake, tmp_path: Path) -> None:
    urls: list[str] = []

    def fetch(url: str) -> bytes:
        urls.append(url)
        return fake

    assert script.install_package(tmp_path, "fake-1.0.0", {"css/all.min.css"}, fetch) is True
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert files == ["fake-1.0.0/.integrity", "fake-1.0.0/css/all.min.css", "fake-1.0.0/webfonts/fa-solid-900.ttf",
                     "fake-1.0.0/webfonts/fa-solid-900.woff2"]
    assert urls == ["https://registry.npmjs.org/@scope/fake/-/fake-1.0.0.tgz"]
    assert script.install_package(tmp_path, "fake-1.0.0", {"css/all.min.css"}, fetch) is False
    assert len(urls) == 1  # cached


def test_tampered_tarball_is_rejected_and_nothing_is_installed(script, fake, tmp_path: Path) -> None:
    tampered = bytearray(fake)
    tampered[len(tampered) // 2] ^= 0x01
    with pytest.raises(script.AssetError, match=r"@scope/fake 1\.0\.0: integrity mismatch"):
        script.install_package(tmp_path, "fake-1.0.0", {"css/all.min.css"}, lambda url: bytes(tampered))
    assert list(tmp_path.iterdir()) == []


def test_a_file_the_pages_need_must_be_in_the_package(script, fake, tmp_path: Path) -> None:
    with pytest.raises(script.AssetError, match="no dist/missing.js in the package"):
        script.install_package(tmp_path, "fake-1.0.0", {"dist/missing.js"}, lambda url: fake)
    assert list(tmp_path.iterdir()) == []


def test_offline_fetch_is_one_line_and_exit_status_1(script, monkeypatch, tmp_path: Path, capsys) -> None:
    def offline(url: str) -> bytes:
        raise OSError("Network is unreachable")

    monkeypatch.setattr(script, "_download", offline)
    assert script.main(["--dest", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot fetch https://registry.npmjs.org/" in err[0] and "Network is unreachable" in err[0]


def test_every_package_the_pages_use_is_pinned(script) -> None:
    assert set(script.needed_files(CDN_FILES)) == set(script.PACKAGES)
    for directory, (name, version, integrity) in script.PACKAGES.items():
        assert directory == f"{name.rsplit('/', 1)[-1]}-{version}" and integrity.startswith("sha512-")

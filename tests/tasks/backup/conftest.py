"""Fixtures for the backup tests: real restic (fails under CI=true when missing, skips elsewhere), fresh repositories
on a local path and on the test S3 server, and generated source trees."""

import hashlib
import os
import secrets
import shutil
import uuid
from pathlib import Path

import pytest

from tasks.backup.restic import Repository, restic_version


@pytest.fixture(scope="session")
def restic_bin():
    """restic on PATH (scripts/services.sh start installs it)."""
    if not shutil.which("restic"):
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("restic is required under CI=true: run scripts/services.sh start (apt-get install restic)")
        pytest.skip("restic not installed; run scripts/services.sh start (apt-get install restic)")
    return restic_version()


@pytest.fixture
def make_repo(restic_bin, tmp_path):
    """A factory of Repository objects with a fresh password and a private cache."""
    def make(url=None, password=None, **kwargs):
        url = url or str(tmp_path / f"repo-{uuid.uuid4().hex[:6]}")
        return Repository(url, password or secrets.token_urlsafe(16), cache_dir=tmp_path / "cache", **kwargs)
    return make


@pytest.fixture
def repo(make_repo):
    """An initialised repository on a local path."""
    r = make_repo()
    r.init()
    return r


@pytest.fixture
def s3_env():
    """What restic's s3 backend needs from the caller (moto takes any key)."""
    return {"AWS_ACCESS_KEY_ID": "astrolab-test", "AWS_SECRET_ACCESS_KEY": "astrolab-test-secret"}


@pytest.fixture
def s3_repo_url(s3_endpoint):
    """A repository URL in a fresh bucket of the test S3 server (restic creates the bucket on init)."""
    return f"s3:{s3_endpoint}/restic-{uuid.uuid4().hex[:12]}/lab"


def damage_largest_pack(repo_dir: str | Path) -> Path:
    """Flip 8 bytes in the middle of the repository's largest pack file (restic keeps packs read-only); returns it."""
    pack = max((p for p in Path(repo_dir, "data").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    pack.chmod(0o600)
    data = bytearray(pack.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 8):
        data[i] ^= 0xFF
    pack.write_bytes(bytes(data))
    return pack


def make_tree(root: Path, files: int = 12, seed: int = 1) -> Path:
    """A small source tree: nested directories, an empty file, binary and text files, a symlink."""
    rng = __import__("random").Random(seed)
    (root / "sub" / "deeper").mkdir(parents=True, exist_ok=True)
    (root / "empty").write_bytes(b"")
    for i in range(files):
        where = [root, root / "sub", root / "sub" / "deeper"][i % 3]
        (where / f"f{i}.bin").write_bytes(rng.randbytes(rng.randint(1, 200_000)))
    (root / "notes.txt").write_text("backups are only as good as the last restore\n")
    (root / "link").symlink_to("notes.txt")
    return root


def tree_digest(root: Path) -> dict[str, str]:
    """relative path -> sha256 of the content (or the symlink target), for every file and link under root."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = "link:" + os.readlink(path)
        elif path.is_file():
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            out[rel] = "dir"
    return out


@pytest.fixture
def source(tmp_path):
    """A generated source tree (the live data a backup reads)."""
    return make_tree(tmp_path / "live" / "docs")


@pytest.fixture
def digest():
    """tree_digest, for comparing a source and its restore."""
    return tree_digest

"""The lake in an S3 / MinIO bucket, under ``s3://bucket/prefix``; same layout as the local lake.

Work happens in a local work directory (a ``LocalLake``): staged parts are written there and uploaded before the
catalog commit, HATS versions are built there and uploaded before the catalog records them, reports are rendered
there and uploaded. Versions read back (the previous version of a rebuild, or for users) are downloaded into it
once; they never change, so the copy stays good.

Publishing is one PUT of a small pointer object, ``hats/<product>/_published.json``, naming the version; a single
PUT is atomic in S3 and MinIO, and a version's objects are all uploaded (``hats.properties`` last) before any
pointer names it, so a reader that resolves the pointer never sees half a partition set.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path

from tasks.storage.lake import DEFAULT_RETENTION, LocalLake, VersionRetention, require_complete
from tasks.storage.s3 import ObjectStore, join, split_url

POINTER = "_published.json"
COMPLETE_MARKER = "hats.properties"  # written last by the HATS build and uploaded last


class S3Lake:
    """A lake in an S3 bucket (created when missing), with a local work directory."""

    def __init__(self, url: str, store: ObjectStore, work_dir: str | Path,
                 retention: VersionRetention = DEFAULT_RETENTION):
        self.bucket, self.prefix = split_url(url)
        self.url = f"s3://{join(self.bucket, self.prefix)}"
        self.store = store
        self.work = LocalLake(work_dir)
        self.retention = retention
        store.ensure_bucket(self.bucket)

    def __repr__(self) -> str:
        return f"S3Lake({self.url!r}, endpoint={self.store.endpoint!r})"

    def _key(self, *parts: str) -> str:
        return join(self.prefix, *parts)

    def _url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def _fetch_dir(self, key: str, local: Path) -> None:
        """Download a prefix into ``local`` through a temporary directory, so ``local`` is complete or absent."""
        tmp = local.with_name(f".{local.name}.{uuid.uuid4().hex[:8]}.download")
        try:
            if not self.store.download_dir(self.bucket, key, tmp):
                raise FileNotFoundError(f"{self._url(key)}: nothing there")
            try:
                os.rename(tmp, local)
            except OSError:  # another process fetched it meanwhile; both copies are the same
                if not local.exists():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    # --- staging -------------------------------------------------------------------------------------------
    def fresh_staging_dir(self, product: str, key: str) -> Path:
        """An empty local directory for one source file's staged parts (uploaded by ``save_staging``)."""
        return self.work.fresh_staging_dir(product, key)

    def save_staging(self, product: str, key: str) -> None:
        """Upload the staged parts; the local copy is kept for this machine's publish."""
        self.store.upload_dir(self.work.staging_dir(product, key), self.bucket, self._key("staging", product, key))

    def staged_parts(self, product: str, key: str) -> list[Path]:
        """Local paths of the staged parts under ``key`` (downloaded if this machine does not have them)."""
        local = self.work.staging_dir(product, key)
        if not local.exists():
            local.parent.mkdir(parents=True, exist_ok=True)
            self._fetch_dir(self._key("staging", product, key), local)
        return self.work.staged_parts(product, key)

    def staged_files(self, product: str) -> list[str]:
        """Keys of the staging directories, in the bucket and in the work directory."""
        remote = self.store.list_dirs(self.bucket, self._key("staging", product))
        return sorted(set(remote) | set(self.work.staged_files(product)))

    def staging_age(self, product: str, key: str) -> float:
        """Seconds since anything under a staging key last changed, here or in the bucket."""
        ages = []
        if self.work.staging_dir(product, key).exists():
            ages.append(self.work.staging_age(product, key))
        mtimes = [o.mtime for o in self.store.list(self.bucket, self._key("staging", product, key) + "/")]
        if mtimes:
            ages.append(time.time() - max(mtimes))
        return min(ages, default=float("inf"))

    def drop_staging(self, product: str, key: str) -> None:
        """Remove one staging key, in the bucket and in the work directory."""
        self.work.drop_staging(product, key)
        self.store.delete_prefix(self.bucket, self._key("staging", product, key) + "/")

    # --- published HATS catalogs ----------------------------------------------------------------------------
    def _version_key(self, product: str, version: str) -> str:
        return self._key("hats", ".versions", product, version)

    def new_version(self, product: str) -> tuple[str, Path]:
        """A new, unique version name and its local build directory."""
        return self.work.new_version(product)

    def version_dir(self, product: str, version: str) -> Path:
        """A local copy of a saved version (downloaded once)."""
        local = self.work.version_dir(product, version)
        if not (local / COMPLETE_MARKER).exists():
            shutil.rmtree(local, ignore_errors=True)  # an unsaved build of a killed run
            local.parent.mkdir(parents=True, exist_ok=True)
            self._fetch_dir(self._version_key(product, version), local)
        return local

    def is_complete(self, product: str, version: str) -> bool:
        """Whether the version's upload finished (its hats.properties, uploaded last, is in the bucket)."""
        return self.store.exists(self.bucket, join(self._version_key(product, version), COMPLETE_MARKER))

    def save_version(self, product: str, version: str) -> None:
        """Upload a built version, ``hats.properties`` last; partitions linked from a cached version are copied
        server-side instead of uploaded."""
        local = self.work.version_dir(product, version)
        require_complete(local)
        cached: dict[tuple[int, int], str] = {}
        for other in self.work.versions_dir(product).iterdir():
            if other.name != version and (other / COMPLETE_MARKER).exists():
                for path in other.rglob("*.parquet"):
                    stat = path.stat()
                    cached[(stat.st_dev, stat.st_ino)] = join(self._version_key(product, other.name),
                                                              path.relative_to(other).as_posix())
        self.store.upload_dir(local, self.bucket, self._version_key(product, version), last=COMPLETE_MARKER,
                              copy_from=cached)

    def publish(self, product: str, version: str) -> str:
        """Point readers at ``version`` with one PUT of the pointer object; return the version's URL."""
        key = self._version_key(product, version)
        if not self.store.exists(self.bucket, join(key, COMPLETE_MARKER)):
            raise FileNotFoundError(f"{self._url(key)}: not a complete HATS catalog (no {COMPLETE_MARKER})")
        pointer = {"product": product, "version": version, "catalog": self._url(key),
                   "published_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        self.store.put_bytes(self.bucket, self._key("hats", product, POINTER), json.dumps(pointer).encode(),
                             content_type="application/json")
        return self._url(key)

    def published_version(self, product: str) -> str | None:
        """The version the pointer names, or None before the first publish."""
        data = self.store.get_bytes(self.bucket, self._key("hats", product, POINTER))
        return json.loads(data)["version"] if data else None

    def catalog_path(self, product: str) -> str:
        """The s3:// URL of the published version (of the pointer's place before the first publish)."""
        version = self.published_version(product)
        return self._url(self._version_key(product, version) if version else self._key("hats", product))

    def local_catalog(self, product: str) -> Path:
        """A local copy of the published version (for readers that cannot open s3:// URLs)."""
        version = self.published_version(product)
        if version is None:
            raise FileNotFoundError(f"{self.url}: nothing published for {product} yet")
        return self.version_dir(product, version)

    def versions(self, product: str) -> list[str]:
        """Names of the versions in the bucket."""
        return sorted(self.store.list_dirs(self.bucket, self._key("hats", ".versions", product)))

    def remove_versions(self, product: str, keep: set[str]) -> list[str]:
        """Delete versions not in ``keep``, in the bucket and in the work directory."""
        removed = [v for v in self.versions(product) if v not in keep]
        for version in removed:
            self.store.delete_prefix(self.bucket, self._version_key(product, version) + "/")
        self.work.remove_versions(product, keep)
        return removed

    # --- reports --------------------------------------------------------------------------------------------
    def data_docs_dir(self) -> Path:
        """Local directory the Data Docs are rendered in (uploaded by ``save_dir``)."""
        return self.work.data_docs_dir()

    def run_report_dir(self, run_id: str) -> Path:
        """Local directory (created) for one run's plots (uploaded by ``save_dir``)."""
        return self.work.run_report_dir(run_id)

    def save_dir(self, path: Path) -> None:
        """Upload a local report directory to the same place under the lake prefix."""
        rel = Path(path).resolve().relative_to(self.work.root).as_posix()
        self.store.upload_dir(Path(path), self.bucket, self._key(rel))

    def url_of(self, path: Path) -> str:
        """The s3:// URL a local report file is uploaded to."""
        return self._url(self._key(Path(path).resolve().relative_to(self.work.root).as_posix()))

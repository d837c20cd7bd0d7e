"""The lake: where staged batches, published HATS catalogs and reports live.

``Lake`` is the interface the ingest uses; ``LocalLake`` (here) keeps it in a directory, ``S3Lake``
(``tasks/storage/lake_s3.py``) in an S3/MinIO bucket. Either way the work itself (writing staged parts, building a
HATS version, rendering reports) happens in local directories the lake hands out, and ``save_*`` makes it durable
in the lake.

Layout under the lake root::

    hats/<product>                      -> symlink to the published version (what users and lsdb open)
    hats/.versions/<product>/<version>/ HATS catalogs, one directory per publish; never modified once written
    staging/<product>/<run-key>/        parquet parts of files loaded in the catalog but not yet published
    reports/data_docs/                  Great Expectations Data Docs
    reports/runs/<run-id>/              per-run plots

Publishing swaps the symlink with one ``rename``, which POSIX makes atomic: a reader sees the old catalog or the
new one, never a mix.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol


def require_complete(path: Path, url: str | None = None) -> None:
    """Raise FileNotFoundError unless ``path`` holds a finished HATS build (hats.properties is written last)."""
    if not (path / "hats.properties").exists():
        raise FileNotFoundError(f"{url or path}: not a complete HATS catalog (no hats.properties)")


@dataclass(frozen=True)
class VersionRetention:
    """How long superseded HATS versions stay readable after a publish: the ``keep_last`` newest of a product and
    every version younger than ``keep_hours`` (a notebook or a science flow that resolved one keeps reading it)."""

    keep_last: int = 3
    keep_hours: float = 24.0


DEFAULT_RETENTION = VersionRetention()
# Versions are named <UTC time to the microsecond>-<random>, so that two publishes within one second still sort
# by age; names from before microseconds (<UTC time to the second>-<random>) are still read.
VERSION_TIMES = ("%Y%m%dT%H%M%S.%fZ", "%Y%m%dT%H%M%SZ")


def version_name(now: datetime | None = None) -> str:
    """A new version name for ``now`` (UTC, default the present)."""
    now = now or datetime.now(UTC)
    return now.strftime(VERSION_TIMES[0]) + "-" + uuid.uuid4().hex[:8]


def version_time(version: str) -> float | None:
    """When a version was made (Unix seconds) from its name, or None for a name that carries no time."""
    stamp = version.split("-", 1)[0]
    for fmt in VERSION_TIMES:
        try:
            return datetime.strptime(stamp, fmt).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
    return None


def retained_versions(versions: list[str], current: str | None, retention: VersionRetention,
                      now: float | None = None) -> set[str]:
    """The versions a prune keeps: the current one, the newest ``keep_last``, those younger than ``keep_hours``,
    and any whose name carries no time (nothing is deleted that is not understood)."""
    now = time.time() if now is None else now
    keep = {current} if current else set()
    made: dict[str, float] = {}
    for version in versions:
        when = version_time(version)
        if when is None:
            keep.add(version)
        else:
            made[version] = when
    if retention.keep_last > 0:
        keep.update(sorted(made, key=lambda v: (made[v], v))[-retention.keep_last:])
    keep.update(v for v, t in made.items() if now - t < retention.keep_hours * 3600)
    return keep


def prune_versions(lake: Lake, product: str, current: str | None, now: float | None = None) -> list[str]:
    """Delete the product's versions its lake's retention no longer keeps, and builds a killed run left incomplete
    (no reader can open those, whatever their names); returns those deleted. Called under the product's publish
    lock, so no build is in progress."""
    complete = [v for v in lake.versions(product) if lake.is_complete(product, v)]
    keep = retained_versions(complete, current, lake.retention, now)
    return lake.remove_versions(product, keep)


class Lake(Protocol):
    """What the ingest needs of a lake, whatever holds it."""

    url: str
    retention: VersionRetention

    def fresh_staging_dir(self, product: str, key: str) -> Path:
        """An empty local directory to write one source file's staged parts into."""

    def save_staging(self, product: str, key: str) -> None:
        """Make the staged parts durable in the lake (before the catalog commit names ``key``)."""

    def staged_parts(self, product: str, key: str) -> list[Path]:
        """Local paths of the staged parts under ``key``."""

    def staged_files(self, product: str) -> list[str]:
        """Keys of the staging directories."""

    def staging_age(self, product: str, key: str) -> float:
        """Seconds since anything under a staging key last changed."""

    def drop_staging(self, product: str, key: str) -> None:
        """Remove one staging key."""

    def new_version(self, product: str) -> tuple[str, Path]:
        """A new, unique version name and the (created) local directory to build it in."""

    def version_dir(self, product: str, version: str) -> Path:
        """A local, readable directory of a saved version."""

    def is_complete(self, product: str, version: str) -> bool:
        """Whether a saved version is a finished build (its hats.properties, written last, is there)."""

    def save_version(self, product: str, version: str) -> None:
        """Make a built version durable in the lake (before the catalog records it as published)."""

    def publish(self, product: str, version: str) -> str | Path:
        """Make ``version`` the one readers see, atomically; return where it is."""

    def published_version(self, product: str) -> str | None:
        """The version readers see, or None before the first publish."""

    def catalog_path(self, product: str) -> str | Path:
        """What users open (a path, or an s3:// URL) for the published version."""

    def local_catalog(self, product: str) -> Path:
        """The published version as a local directory (downloaded once from S3), for file-system readers."""

    def versions(self, product: str) -> list[str]:
        """Names of the product's saved versions (published, superseded or left over)."""

    def remove_versions(self, product: str, keep: set[str]) -> list[str]:
        """Delete versions not in ``keep``."""

    def data_docs_dir(self) -> Path:
        """Local directory Great Expectations Data Docs are written to."""

    def run_report_dir(self, run_id: str) -> Path:
        """Local directory (created) for one run's plots."""

    def save_dir(self, path: Path) -> None:
        """Make a local report directory durable in the lake."""

    def url_of(self, path: Path) -> str:
        """Where a local report file lives in the lake, as a URL."""


class LocalLake:
    """A lake in a local (or NFS-mounted) directory."""

    def __init__(self, root: str | Path, retention: VersionRetention = DEFAULT_RETENTION):
        root = str(root)
        self.root = Path(root[len("file://"):] if root.startswith("file://") else root).resolve()
        self.url = str(self.root)
        self.retention = retention

    def __repr__(self) -> str:
        return f"LocalLake({str(self.root)!r})"

    # --- staging -------------------------------------------------------------------------------------------
    def staging_dir(self, product: str, key: str) -> Path:
        """Directory for the staged parts of one source file in one run (not created)."""
        return self.root / "staging" / product / key

    def fresh_staging_dir(self, product: str, key: str) -> Path:
        """An empty staging directory under a key unique to this run's file."""
        path = self.staging_dir(product, key)
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def save_staging(self, product: str, key: str) -> None:
        """Nothing to do: the staging directory is in the lake already."""

    def staged_parts(self, product: str, key: str) -> list[Path]:
        """The staged parquet parts under ``key``."""
        return sorted(self.staging_dir(product, key).glob("part-*.parquet"))

    def staged_files(self, product: str) -> list[str]:
        """Keys of the staging directories."""
        base = self.root / "staging" / product
        return sorted(p.name for p in base.iterdir()) if base.exists() else []

    def staging_age(self, product: str, key: str) -> float:
        """Seconds since anything in a staging directory last changed."""
        path = self.staging_dir(product, key)
        newest = max((p.stat().st_mtime for p in [path, *path.iterdir()]), default=0.0)
        return time.time() - newest

    def drop_staging(self, product: str, key: str) -> None:
        """Remove one staging directory."""
        shutil.rmtree(self.staging_dir(product, key), ignore_errors=True)

    # --- published HATS catalogs ----------------------------------------------------------------------------
    def catalog_path(self, product: str) -> Path:
        """The stable path users open (a symlink to the published version)."""
        return self.root / "hats" / product

    def local_catalog(self, product: str) -> Path:
        """The published version's directory."""
        version = self.published_version(product)
        if version is None:
            raise FileNotFoundError(f"{self.root}: nothing published for {product} yet")
        return self.version_dir(product, version)

    def versions_dir(self, product: str) -> Path:
        """Directory holding a product's versions."""
        return self.root / "hats" / ".versions" / product

    def version_dir(self, product: str, version: str) -> Path:
        """Directory of one published (or being built) version."""
        return self.versions_dir(product) / version

    def new_version(self, product: str) -> tuple[str, Path]:
        """A new, unique version name and its (created) directory."""
        version = version_name()
        path = self.version_dir(product, version)
        path.mkdir(parents=True)
        return version, path

    def is_complete(self, product: str, version: str) -> bool:
        """Whether the version's directory holds a finished build."""
        return (self.version_dir(product, version) / "hats.properties").exists()

    def save_version(self, product: str, version: str) -> None:
        """Check the build is complete; it is in the lake already."""
        require_complete(self.version_dir(product, version))

    def published_version(self, product: str) -> str | None:
        """Name of the version the symlink points at, or None before the first publish."""
        link = self.catalog_path(product)
        return Path(os.readlink(link)).name if link.is_symlink() else None

    def publish(self, product: str, version: str) -> Path:
        """Point the product's catalog path at ``version`` atomically."""
        target = self.version_dir(product, version)
        require_complete(target)
        link = self.catalog_path(product)
        tmp = link.with_name(f".{product}.{uuid.uuid4().hex}.tmp")
        os.symlink(os.path.relpath(target, link.parent), tmp)
        os.replace(tmp, link)
        return link

    def versions(self, product: str) -> list[str]:
        """Names of the version directories."""
        base = self.versions_dir(product)
        return sorted(p.name for p in base.iterdir()) if base.exists() else []

    def remove_versions(self, product: str, keep: set[str]) -> list[str]:
        """Delete version directories not in ``keep`` (unpublished leftovers and superseded versions)."""
        base = self.versions_dir(product)
        removed = []
        for path in sorted(base.glob("*")) if base.exists() else []:
            if path.name not in keep:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path.name)
        return removed

    # --- reports --------------------------------------------------------------------------------------------
    def data_docs_dir(self) -> Path:
        """Where Great Expectations Data Docs are written."""
        return self.root / "reports" / "data_docs"

    def run_report_dir(self, run_id: str) -> Path:
        """Directory for one run's plots (created)."""
        path = self.root / "reports" / "runs" / run_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def save_dir(self, path: Path) -> None:
        """Nothing to do: reports are written in the lake."""

    def url_of(self, path: Path) -> str:
        """The file:// URL of a report file."""
        return Path(path).resolve().as_uri()


def save_product(lake: Lake, run_id: str, name: str, write: Callable[[Path], object]) -> str:
    """Write one product file with `write(path)` where the lake keeps this run's outputs, make it durable there,
    and return its URL (the one place that knows where products go)."""
    path = lake.run_report_dir(run_id) / name
    write(path)
    lake.save_dir(path.parent)
    return lake.url_of(path)

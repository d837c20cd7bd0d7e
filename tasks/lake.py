"""The lake: where staged batches, published HATS catalogs and reports live.

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
from pathlib import Path


class LocalLake:
    """A lake in a local (or NFS-mounted) directory."""

    def __init__(self, root: str | Path):
        root = str(root)
        self.root = Path(root[len("file://"):] if root.startswith("file://") else root).resolve()

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

    def version_dir(self, product: str, version: str) -> Path:
        """Directory of one published (or being built) version."""
        return self.root / "hats" / ".versions" / product / version

    def new_version(self, product: str) -> tuple[str, Path]:
        """A new, unique version name and its (created) directory."""
        version = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:8]
        path = self.version_dir(product, version)
        path.mkdir(parents=True)
        return version, path

    def published_version(self, product: str) -> str | None:
        """Name of the version the symlink points at, or None before the first publish."""
        link = self.catalog_path(product)
        return Path(os.readlink(link)).name if link.is_symlink() else None

    def publish(self, product: str, version: str) -> Path:
        """Point the product's catalog path at ``version`` atomically."""
        target = self.version_dir(product, version)
        if not (target / "hats.properties").exists():
            raise FileNotFoundError(f"{target}: not a complete HATS catalog (no hats.properties)")
        link = self.catalog_path(product)
        tmp = link.with_name(f".{product}.{uuid.uuid4().hex}.tmp")
        os.symlink(os.path.relpath(target, link.parent), tmp)
        os.replace(tmp, link)
        return link

    def remove_versions(self, product: str, keep: set[str]) -> list[str]:
        """Delete version directories not in ``keep`` (unpublished leftovers and superseded versions)."""
        base = self.root / "hats" / ".versions" / product
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

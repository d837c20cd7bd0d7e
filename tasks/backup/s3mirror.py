"""An S3 prefix mirrored into a local directory, so that restic backs up objects as files (its deduplication and
per-file restores then work for buckets too). Only objects whose size or modification time differ from the mirror's
copy are downloaded; files whose object is gone are removed. Downloads are atomic: a file is complete or absent."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tasks.storage.s3 import ObjectStore


class UnsafeKey(ValueError):
    """An object key that cannot be a path under the mirror (with '..', '.' or empty parts: two keys would meet in
    one file, or one would land outside)."""


@dataclass(frozen=True)
class MirrorSummary:
    """What one mirror pass found and did."""

    objects: int
    bytes: int
    downloaded: int
    removed: int


def relative_path(key: str, prefix: str, where: str) -> PurePosixPath | None:
    """The mirror path of an object key below ``prefix``; None for a directory marker; UnsafeKey for a key that
    would leave the mirror."""
    rest = key[len(prefix):].lstrip("/") if prefix else key
    if not rest or rest.endswith("/"):
        return None
    path = PurePosixPath(rest)
    if ".." in path.parts or str(path) != rest:
        raise UnsafeKey(f"{where}: object key {key!r} cannot be mirrored as a file (it has '..', '.' or empty parts)")
    return path


def mirror_prefix(store: ObjectStore, bucket: str, prefix: str, dest: Path) -> MirrorSummary:
    """Make ``dest`` hold exactly the objects under ``s3://bucket/prefix``, each file with its object's mtime."""
    where = f"s3://{bucket}/{prefix}"
    dest.mkdir(parents=True, exist_ok=True)
    wanted: set[Path] = set()
    objects = size = downloaded = 0
    for obj in store.list(bucket, prefix):
        rel = relative_path(obj.key, prefix, where)
        if rel is None:
            continue
        local = dest / rel
        wanted.add(local)
        objects += 1
        size += obj.size
        try:
            st = local.stat()
            current = (st.st_size, int(st.st_mtime)) == (obj.size, int(obj.mtime))
        except FileNotFoundError:
            current = False
        if not current:
            store.download(bucket, obj.key, local)
            os.utime(local, (obj.mtime, obj.mtime))
            downloaded += 1
    removed = 0
    for dirpath, dirnames, names in os.walk(dest, topdown=False):
        for name in names:
            path = Path(dirpath) / name
            if path not in wanted:
                path.unlink()
                removed += 1
        for name in dirnames:
            with contextlib.suppress(OSError):
                (Path(dirpath) / name).rmdir()  # only when empty
    return MirrorSummary(objects, size, downloaded, removed)

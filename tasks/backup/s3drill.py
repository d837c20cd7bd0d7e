"""Restore drills of ``s3`` assets: the snapshot of the asset's mirror directory is restored into a scratch directory,
then uploaded into a scratch bucket on the asset's own S3 endpoint under a fresh prefix; a bucket is restored when
its objects are back in a bucket, so the time against the RTO covers the restore and the upload.

The drill compares: the objects in the scratch bucket with the restored files (every key there, same size, same
sha256); their number and bytes with the backup's record (or restic's snapshot summary); and, object by object, the
sha256 of the scratch copy with the live object where that is unchanged since the backup (same size and last-modified
second as the mirror's file; the rule of path drills; a changed object is counted, not compared). The scratch
directory and prefix are removed afterwards unless ``keep``. The scratch bucket is never the asset's live bucket.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from tasks.backup.drill import DrillResult, count_mismatches, drill_detail, sha256_of
from tasks.backup.registry import S3Asset
from tasks.backup.restic import Repository, ResticError, Snapshot
from tasks.backup.s3mirror import UnsafeKey, relative_path
from tasks.redact import one_line
from tasks.storage.s3 import ObjectInfo, ObjectStore, ObjectStoreError, join


class UnsafeScratch(ValueError):
    """A drill's scratch bucket that is the asset's live bucket: a drill never writes where the live data is."""


@dataclass(frozen=True)
class _Restored:
    """One restored file: its scratch key, size, mirror mtime (the object's last-modified) and sha256."""

    key: str
    size: int
    mtime: float
    sha256: str


def check_scratch_bucket(asset: S3Asset, scratch_bucket: str) -> None:
    """Refuse a scratch bucket that is the asset's live bucket, naming both."""
    if scratch_bucket == asset.bucket:
        raise UnsafeScratch(f"asset {asset.name}: the drill's scratch bucket {scratch_bucket!r} is the asset's live "
                            f"bucket s3://{asset.bucket}/{asset.prefix}: refusing to restore into it (set "
                            "backup.scratch_bucket to another bucket)")


def _restored_files(root: Path, scratch_prefix: str) -> dict[PurePosixPath, _Restored]:
    files = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        rel = PurePosixPath(path.relative_to(root).as_posix())
        st = path.stat()
        files[rel] = _Restored(join(scratch_prefix, str(rel)), st.st_size, st.st_mtime, sha256_of(path))
    return files


def _live_objects(store: ObjectStore, asset: S3Asset) -> dict[PurePosixPath, ObjectInfo]:
    """The live objects by their mirror path (the mapping s3mirror backs them up under)."""
    where = f"s3://{asset.bucket}/{asset.prefix}"
    live = {}
    for obj in store.list(asset.bucket, asset.prefix):
        try:
            rel = relative_path(obj.key, asset.prefix, where)
        except UnsafeKey:
            continue  # never mirrored, so never restored
        if rel is not None:
            live[rel] = obj
    return live


def _compare(store: ObjectStore, asset: S3Asset, scratch_bucket: str, scratch_prefix: str,
             restored: dict[PurePosixPath, _Restored]) -> tuple[list[str], int, int]:
    """Mismatches of the scratch bucket against the restored files and the live bucket; objects compared with the
    live bucket; objects changed there since the backup."""
    mismatches: list[str] = []
    in_scratch = {o.key: o for o in store.list(scratch_bucket, scratch_prefix + "/")}
    for key in sorted(set(in_scratch) - {r.key for r in restored.values()}):
        mismatches.append(f"s3://{scratch_bucket}/{key}: in the scratch bucket but not restored")
    live = _live_objects(store, asset)
    compared = changed = 0
    for rel, r in restored.items():
        copy = in_scratch.get(r.key)
        where = f"s3://{scratch_bucket}/{r.key}"
        if copy is None:
            mismatches.append(f"{where}: restored but not in the scratch bucket")
            continue
        scratch_sha = store.sha256(scratch_bucket, r.key)
        if copy.size != r.size or scratch_sha != r.sha256:
            mismatches.append(f"{where}: the scratch object ({copy.size} bytes) differs from the restored file "
                              f"({r.size} bytes)")
            continue
        obj = live.get(rel)
        if obj is None:
            continue  # removed from the live bucket since: nothing to compare with
        # the mirror gave each file its object's last-modified; S3 keeps it to the second
        if (obj.size, int(obj.mtime)) != (r.size, int(r.mtime)):
            changed += 1
            continue
        compared += 1
        if store.sha256(asset.bucket, obj.key) != scratch_sha:
            mismatches.append(f"s3://{asset.bucket}/{obj.key}: the scratch copy's bytes differ from the live object "
                              "(unchanged since the backup)")
    return mismatches, compared, changed


def drill_s3(repo: Repository, asset: S3Asset, snapshot: str | Snapshot, store: ObjectStore, scratch_bucket: str,
             scratch_dir: str | Path, expected_files: int | None = None, expected_bytes: int | None = None,
             now: datetime | None = None, keep: bool = False) -> DrillResult:
    """Restore an s3 asset's snapshot into ``scratch_bucket`` (on ``store``, the asset's endpoint; created when
    missing) under a fresh prefix, via a directory under ``scratch_dir``, and compare it with the backup's record and
    the live bucket; both scratch copies are removed afterwards unless ``keep``. UnsafeScratch when the scratch
    bucket is the live one."""
    check_scratch_bucket(asset, scratch_bucket)
    started = now or datetime.now(UTC)
    clock = time.monotonic()
    snap_id = snapshot.id if isinstance(snapshot, Snapshot) else snapshot
    name = f"drill-{asset.name}-{snap_id[:8]}-{started:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    Path(scratch_dir).mkdir(parents=True, exist_ok=True)
    target = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=scratch_dir))
    restored: dict[PurePosixPath, _Restored] = {}
    failure = cleanup = None
    try:
        snap = snapshot if isinstance(snapshot, Snapshot) else repo.snapshot(snapshot)
        if len(snap.paths) != 1:
            raise ResticError("failed", f"snapshot {snap.short_id} is not one mirror directory "
                                        f"({len(snap.paths)} paths)")
        repo.restore(snap, target)
        root = target / snap.paths[0].lstrip("/")
        store.ensure_bucket(scratch_bucket)
        store.upload_dir(root, scratch_bucket, join(name, asset.prefix))
        restore_s = time.monotonic() - clock
        restored = _restored_files(root, join(name, asset.prefix))
        mismatches, compared, changed = _compare(store, asset, scratch_bucket, name, restored)
    except (ResticError, ObjectStoreError) as exc:
        failure = one_line(str(exc))
    finally:
        if not keep:
            shutil.rmtree(target, ignore_errors=True)
            cleanup = _remove_prefix(store, scratch_bucket, name)
    if failure is not None:
        return DrillResult(asset.name, asset.kind, snap_id, started, time.monotonic() - clock, asset.rto,
                           (failure, *([cleanup] if cleanup else [])), f"restore failed: {failure}")
    if cleanup:
        mismatches.append(cleanup)
    if asset.tag not in snap.tags:
        mismatches.insert(0, f"snapshot {snap.short_id} is not tagged {asset.tag}")
    files, size = len(restored), sum(r.size for r in restored.values())
    counted, recorded = count_mismatches(snap, files, size, expected_files, expected_bytes, "objects")
    mismatches[:0] = counted
    body = (f"{files} objects, {size} bytes restored into s3://{scratch_bucket}/{name}/ {recorded}; {compared} "
            f"compared with the live bucket by sha256, {changed} changed since the backup; scratch "
            f"{'kept' if keep else 'removed'}; timed: restic restore and upload")
    return DrillResult(asset.name, asset.kind, snap.id, started, restore_s, asset.rto, tuple(mismatches),
                       drill_detail(mismatches, restore_s, asset.rto, body))


def _remove_prefix(store: ObjectStore, bucket: str, prefix: str) -> str | None:
    """Delete a drill's scratch prefix; the one-line reason when that failed (the drill then fails with it)."""
    try:
        store.delete_prefix(bucket, prefix + "/")
    except ObjectStoreError as exc:
        return f"scratch prefix s3://{bucket}/{prefix}/ not removed: {one_line(str(exc))}"
    return None

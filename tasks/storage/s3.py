"""S3 / MinIO object storage through the minio SDK: the few plain operations the lake and discovery need.

Only what MinIO supports is used: buckets, PUT/GET/HEAD/DELETE of objects (multipart for big files), listing,
server-side copy. Network failures are retried a bounded number of times (urllib3 ``Retry``), then raised as
``ObjectStoreError`` naming the endpoint; credentials never appear in messages.
"""

from __future__ import annotations

import builtins
import datetime as dt
import hashlib
import io
import mimetypes
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow.fs as pafs
import urllib3
from fsspec.implementations.arrow import ArrowFSWrapper
from minio import Minio
from minio.commonconfig import CopySource
from minio.deleteobjects import DeleteObject
from minio.error import S3Error
from urllib3.util import Retry

from tasks.errors import TransientError

AWS_ENDPOINT = "https://s3.amazonaws.com"


class ObjectStoreError(RuntimeError):
    """The object store cannot be reached, or refused a request; the message names the endpoint and object."""


class ObjectStoreUnreachable(ObjectStoreError, TransientError):
    """The object store did not answer (after the client's own retries)."""


@dataclass(frozen=True)
class S3Config:
    """Where and how to reach an S3-compatible store (MinIO, AWS, ...)."""

    endpoint: str = AWS_ENDPOINT
    region: str = "us-east-1"
    path_style: bool = True
    access_key: str | None = None
    secret_key: str | None = field(default=None, repr=False)
    retries: int = 3
    connect_timeout_s: float = 5.0


@dataclass(frozen=True)
class ObjectInfo:
    """One object of a listing."""

    key: str
    size: int
    mtime: float


def split_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> (bucket, "some/prefix") without leading or trailing slashes."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"{url!r}: not an s3://bucket/prefix URL")
    return parts.netloc, parts.path.strip("/")


def join(*parts: str) -> str:
    """Join key parts with single slashes."""
    return "/".join(p.strip("/") for p in parts if p.strip("/"))


def _credentials(config: S3Config) -> tuple[str | None, str | None]:
    return (config.access_key or os.environ.get("AWS_ACCESS_KEY_ID"),
            config.secret_key or os.environ.get("AWS_SECRET_ACCESS_KEY"))


class _S3Wrapper(ArrowFSWrapper):
    protocol = "s3"  # DuckDB routes s3:// paths to a registered filesystem by this name


def fsspec_filesystem(config: S3Config) -> ArrowFSWrapper:
    """An fsspec filesystem for s3:// URLs over pyarrow's S3 client (for DuckDB's ``register_filesystem``)."""
    url = urlsplit(config.endpoint if "://" in config.endpoint else f"https://{config.endpoint}")
    access, secret = _credentials(config)
    return _S3Wrapper(pafs.S3FileSystem(
        access_key=access, secret_key=secret, region=config.region, endpoint_override=url.netloc,
        scheme=url.scheme, force_virtual_addressing=not config.path_style, connect_timeout=config.connect_timeout_s,
        retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=config.retries + 1),
    ))


class ObjectStore:
    """An S3 endpoint: buckets and objects, each call retried on network errors then failing clearly."""

    def __init__(self, config: S3Config):
        self.config = config
        url = urlsplit(config.endpoint if "://" in config.endpoint else f"https://{config.endpoint}")
        self.endpoint = f"{url.scheme}://{url.netloc}"
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=config.connect_timeout_s, read=120),
            retries=Retry(total=config.retries, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
        )
        access, secret = _credentials(config)
        self.client = Minio(url.netloc, access_key=access, secret_key=secret, secure=url.scheme == "https",
                            region=config.region, http_client=http)
        if config.path_style:
            self.client.disable_virtual_style_endpoint()
        else:
            self.client.enable_virtual_style_endpoint()

    def __repr__(self) -> str:
        return f"ObjectStore({self.endpoint!r})"

    def _fail(self, what: str, exc: Exception) -> ObjectStoreError:
        if isinstance(exc, S3Error):
            return ObjectStoreError(f"S3 {self.endpoint}: {what}: {exc.code} ({exc.message})")
        reason = getattr(exc, "reason", None) or exc
        return ObjectStoreUnreachable(f"S3 {self.endpoint} unreachable after {self.config.retries} retries: {what}: "
                                f"{type(reason).__name__}: {str(reason).split(': ', 1)[-1]}")

    def _call(self, what: str, func, *args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (S3Error, urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._fail(what, exc) from None

    # --- buckets and objects -----------------------------------------------------------------------------------
    def ensure_bucket(self, bucket: str) -> None:
        """Create the bucket if it does not exist."""
        if not self._call(f"check bucket {bucket}", self.client.bucket_exists, bucket):
            try:
                self.client.make_bucket(bucket)
            except S3Error as exc:
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):  # another run made it
                    raise self._fail(f"create bucket {bucket}", exc) from None
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise self._fail(f"create bucket {bucket}", exc) from None

    def list(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (recursive)."""
        try:
            for obj in self.client.list_objects(bucket, prefix=prefix, recursive=True):
                yield ObjectInfo(obj.object_name, obj.size or 0, _timestamp(obj.last_modified))
        except (S3Error, urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._fail(f"list s3://{bucket}/{prefix}", exc) from None

    def list_dirs(self, bucket: str, prefix: str) -> builtins.list[str]:  # ``list`` here is the method above
        """Names of the "directories" right under ``prefix`` (common prefixes)."""
        base = prefix.rstrip("/") + "/"
        try:
            return sorted(o.object_name[len(base):].rstrip("/")
                          for o in self.client.list_objects(bucket, prefix=base) if o.is_dir)
        except (S3Error, urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._fail(f"list s3://{bucket}/{base}", exc) from None

    def get_bytes(self, bucket: str, key: str) -> bytes | None:
        """A small object's bytes, or None if it does not exist."""
        try:
            response = self.client.get_object(bucket, key)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchBucket"):
                return None
            raise self._fail(f"get s3://{bucket}/{key}", exc) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._fail(f"get s3://{bucket}/{key}", exc) from None
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def sha256(self, bucket: str, key: str) -> str:
        """The sha256 of an object's bytes, streamed (bounded memory)."""
        digest = hashlib.sha256()
        try:
            response = self.client.get_object(bucket, key)
            try:
                for chunk in response.stream(1 << 20):
                    digest.update(chunk)
            finally:
                response.close()
                response.release_conn()
        except (S3Error, urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._fail(f"read s3://{bucket}/{key}", exc) from None
        return digest.hexdigest()

    def put_bytes(self, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        """Write a small object in one PUT (atomic: readers see the old object or the new one)."""
        self._call(f"put s3://{bucket}/{key}", self.client.put_object, bucket, key, io.BytesIO(data), len(data),
                   content_type=content_type)

    def exists(self, bucket: str, key: str) -> bool:
        """Whether an object exists."""
        try:
            self.client.stat_object(bucket, key)
            return True
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchBucket", "NoSuchObject"):
                return False
            raise self._fail(f"stat s3://{bucket}/{key}", exc) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._fail(f"stat s3://{bucket}/{key}", exc) from None

    def upload(self, bucket: str, key: str, path: Path) -> None:
        """Upload a local file (multipart when big; bounded memory) with the content type its name says, so that
        reports served from the bucket open in a browser (HTML shown, not downloaded; stylesheets applied)."""
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        self._call(f"upload {path} to s3://{bucket}/{key}", self.client.fput_object, bucket, key, str(path),
                   content_type=content_type)

    def download(self, bucket: str, key: str, path: Path) -> None:
        """Download an object to a local file, streamed; the file appears complete or not at all."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            self._call(f"download s3://{bucket}/{key}", self.client.fget_object, bucket, key, str(tmp))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def copy(self, bucket: str, source_key: str, key: str) -> None:
        """Server-side copy of an object within the bucket."""
        self._call(f"copy s3://{bucket}/{source_key} to {key}", self.client.copy_object, bucket, key,
                   CopySource(bucket, source_key))

    def delete_prefix(self, bucket: str, prefix: str) -> None:
        """Delete every object under ``prefix`` (a directory: give it with its trailing slash)."""
        doomed = [DeleteObject(o.key) for o in self.list(bucket, prefix)]
        if not doomed:
            return
        try:
            errors = list(self.client.remove_objects(bucket, doomed))
        except (S3Error, urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._fail(f"delete s3://{bucket}/{prefix}", exc) from None
        if errors:
            raise ObjectStoreError(f"S3 {self.endpoint}: delete s3://{bucket}/{prefix}: {errors[0]}")

    # --- directories -------------------------------------------------------------------------------------------
    def upload_dir(self, local: Path, bucket: str, prefix: str, last: str | None = None,
                   copy_from: dict[tuple[int, int], str] | None = None) -> None:
        """Upload every file under ``local`` to ``prefix``; ``last`` (a relative path) goes after all others.

        A file whose (device, inode) is in ``copy_from`` is copied server-side from that key instead of uploaded.
        """
        files = sorted(p for p in local.rglob("*") if p.is_file())
        files.sort(key=lambda p: p.relative_to(local).as_posix() == last)
        for path in files:
            key = join(prefix, path.relative_to(local).as_posix())
            stat = path.stat()
            source = (copy_from or {}).get((stat.st_dev, stat.st_ino))
            if source is not None:
                self.copy(bucket, source, key)
            else:
                self.upload(bucket, key, path)

    def download_dir(self, bucket: str, prefix: str, local: Path) -> int:
        """Download every object under ``prefix`` into ``local``; return how many."""
        base = prefix.rstrip("/") + "/"
        n = 0
        for obj in self.list(bucket, base):
            self.download(bucket, obj.key, local / obj.key[len(base):])
            n += 1
        return n


def _timestamp(when: dt.datetime | None) -> float:
    return when.timestamp() if when else 0.0

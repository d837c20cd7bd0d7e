"""Cache keys for Prefect tasks whose inputs are arrays: by content, never by pickled bytes.

Prefect's INPUTS policy hashes the pickled parameters, and a pickle depends on which arrays the parameters share
(pickle writes a shared object once): the same values read back from a cache pickle differently and miss it.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable
from typing import Any, TypeVar

import numpy as np
from prefect.cache_policies import TASK_SOURCE, CacheKeyFnPolicy, CachePolicy
from prefect.filesystems import WritableFileSystem

T = TypeVar("T")


def _feed(digest: Any, value: Any) -> None:
    if isinstance(value, np.ndarray):
        digest.update(f"array:{value.dtype.str}:{value.shape}:".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        digest.update(f"{type(value).__qualname__}(".encode())
        for f in dataclasses.fields(value):
            digest.update(f"{f.name}=".encode())
            _feed(digest, getattr(value, f.name))
        digest.update(b")")
    elif isinstance(value, dict):
        digest.update(b"{")
        for key in sorted(value, key=str):
            digest.update(f"{key!r}:".encode())
            _feed(digest, value[key])
        digest.update(b"}")
    elif isinstance(value, list | tuple):
        digest.update(b"[")
        for item in value:
            _feed(digest, item)
            digest.update(b",")
        digest.update(b"]")
    else:
        digest.update(f"{type(value).__qualname__}:{value!r};".encode())


def content_digest(value: Any) -> str:
    """sha256 of a value's content: arrays by dtype, shape and bytes; dataclasses, dicts and sequences by their
    parts; anything else by its repr."""
    digest = hashlib.sha256()
    _feed(digest, value)
    return digest.hexdigest()


def persisted(task: T, storage: WritableFileSystem) -> T:
    """The task with its results persisted in ``storage`` (see astrolab.resources.build_result_storage), so that a
    later flow run with the same inputs reads them instead of computing again."""
    return task.with_options(persist_result=True, result_storage=storage)  # type: ignore[attr-defined]


def by_content(exclude: Iterable[str] = ("settings",)) -> CachePolicy:
    """Cache a pure task on the content of its parameters (less those excluded) and on its own source code."""
    skip = set(exclude)

    def key(context: Any, parameters: dict[str, Any]) -> str:
        return content_digest({k: v for k, v in parameters.items() if k not in skip})

    return CacheKeyFnPolicy(cache_key_fn=key) + TASK_SOURCE

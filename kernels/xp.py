"""Array-namespace helpers: pick numpy or cupy from the arrays themselves."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np


def _is_cupy(a: Any) -> bool:
    # Checking the type's module avoids importing cupy (which fails without CUDA) for host arrays.
    return type(a).__module__.startswith("cupy")


def namespace(*arrays: Any) -> ModuleType:
    """Return cupy if any argument is a cupy array, else numpy."""
    if any(_is_cupy(a) for a in arrays):
        import cupy

        return cupy
    return np


def to_device(a: Any, gpu: bool) -> Any:
    """Return `a` on the GPU (a cupy array; cupy is imported only then) when `gpu`, else unchanged."""
    if not gpu:
        return a
    import cupy

    return cupy.asarray(a)


def to_host(a: Any) -> np.ndarray:
    """Return `a` as a numpy array, copying from the device when it is a cupy array."""
    if _is_cupy(a):
        return a.get()
    return np.asarray(a)

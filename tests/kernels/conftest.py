"""Shared fixtures for kernel tests."""

from __future__ import annotations

from types import ModuleType

import pytest


@pytest.fixture(scope="session")
def cupy() -> ModuleType:
    """cupy with a usable CUDA device, or skip."""
    cp = pytest.importorskip("cupy")
    try:
        if cp.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("cupy is installed but no CUDA device is visible")
    except Exception as exc:  # CUDARuntimeError without a driver
        pytest.skip(f"cupy is installed but CUDA is unusable: {exc}")
    return cp

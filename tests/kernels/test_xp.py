import sys

import numpy as np
import pytest

from kernels.xp import namespace, to_device, to_host


def test_numpy_inputs_give_numpy_without_importing_cupy():
    had_cupy = "cupy" in sys.modules
    assert namespace(np.zeros(3), [1.0, 2.0], 3.0) is np
    assert namespace() is np
    assert ("cupy" in sys.modules) == had_cupy


def test_to_host_returns_numpy():
    out = to_host([1, 2, 3])
    assert isinstance(out, np.ndarray)
    a = np.arange(4.0)
    assert to_host(a) is a


def test_to_device_leaves_host_arrays_alone_without_importing_cupy():
    had_cupy = "cupy" in sys.modules
    a = np.arange(4.0)
    assert to_device(a, gpu=False) is a
    assert ("cupy" in sys.modules) == had_cupy


@pytest.mark.gpu
def test_to_device_and_back(cupy):
    a = np.arange(4.0)
    on_gpu = to_device(a, gpu=True)
    assert namespace(on_gpu) is cupy
    np.testing.assert_array_equal(to_host(on_gpu), a)

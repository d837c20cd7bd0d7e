import sys

import numpy as np

from kernels.xp import namespace, to_host


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

"""astrolab.caching: cache keys by content, the same whether arrays are shared, copied or read back."""

import pickle
from dataclasses import dataclass

import numpy as np

from astrolab.caching import content_digest


@dataclass(frozen=True)
class Pair:
    a: np.ndarray
    b: np.ndarray


def test_shared_and_copied_arrays_give_one_key():
    x = np.arange(10.0)
    shared = {"first": Pair(x, x), "second": Pair(x, x[::-1])}
    round_trip = pickle.loads(pickle.dumps({"first": Pair(x.copy(), x.copy()), "second": Pair(x.copy(), x[::-1])}))
    assert content_digest(shared) == content_digest(round_trip)


def test_any_change_of_value_type_or_shape_changes_the_key():
    x = np.arange(6.0)
    base = content_digest({"p": Pair(x, x), "n": 3})
    assert base != content_digest({"p": Pair(x, x + 1e-12), "n": 3})
    assert base != content_digest({"p": Pair(x.astype(np.float32), x), "n": 3})
    assert base != content_digest({"p": Pair(x.reshape(2, 3), x), "n": 3})
    assert base != content_digest({"p": Pair(x, x), "n": 4})
    assert base == content_digest({"n": 3, "p": Pair(x.copy(), x)})  # key order does not matter

"""keras.ops switch, map, vectorized_map, while_loop and associative_scan, eagerly and traced
(reference interpreter and compiled), against Python loops written here."""
from __future__ import annotations

import numpy as np
import pytest

from nncompile.ir import Builder, f32, i32
from nncompile.keras import ops
from tests.keras.ops_harness import all_ways

RNG = np.random.default_rng(0)
X = RNG.standard_normal((5, 3)).astype(np.float32)



BRANCHES = [lambda x: ops.add(x, 1.0), lambda x: ops.multiply(x, 10.0), lambda x: ops.negative(x)]


@pytest.mark.parametrize("index", [-3, 0, 1, 2, 7])
def test_switch_picks_the_clamped_branch(index):
    want = [X + 1, X * 10, -X][min(max(index, 0), 2)]
    for got in all_ways(lambda i, x: ops.switch(i, BRANCHES, x), np.int32(index), X):
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_map_and_vectorized_map_apply_to_each_slice():
    def per_row(row):
        return ops.stack([ops.sum(row), ops.max(row)])
    want = np.stack([[row.sum(), row.max()] for row in X])
    for fn in (ops.map, ops.vectorized_map):
        for got in all_ways(lambda x: fn(per_row, x), X):
            np.testing.assert_allclose(got, want, rtol=1e-6)


def test_while_loop_stops_where_the_condition_fails():
    def python(limit):
        i, total = 0, 0.0
        while total < limit:
            i, total = i + 1, total + i * 0.5
        return i, total
    for limit in (0.0, 2.0, 7.5):
        want = python(limit)
        loop = (lambda lim: ops.while_loop(lambda i, t: ops.less(t, lim),
                                           lambda i, t: (ops.add(i, 1), ops.add(t, ops.multiply(ops.cast(i, "float32"), 0.5))),
                                           (np.int32(0), np.float32(0.0)), maximum_iterations=20))
        for got in all_ways(loop, np.float32(limit)):
            assert (int(got[0]), float(got[1])) == want


def test_a_traced_while_loop_without_a_bound_is_refused():
    b = Builder()
    x = b.input("x", f32[3])
    with ops.tracing(b):
        with pytest.raises(NotImplementedError, match=r"ops\.while_loop: a traced loop needs `maximum_iterations`"):
            ops.while_loop(lambda v: ops.all(ops.less(v, 5.0)), lambda v: ops.add(v, 1.0), x)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("axis", [0, 1])
def test_associative_scan_is_the_running_combination(reverse, axis):
    want = (np.flip(np.maximum.accumulate(np.flip(X, axis), axis), axis) if reverse
            else np.maximum.accumulate(X, axis))
    for got in all_ways(lambda x: ops.associative_scan(ops.maximum, x, reverse=reverse, axis=axis), X):
        np.testing.assert_array_equal(got, want)
    pairs = ops.associative_scan(lambda a, c: (ops.add(a[0], c[0]), ops.multiply(a[1], c[1])), (X, X + 2))
    np.testing.assert_allclose(pairs[0], np.cumsum(X, 0), rtol=1e-6)
    np.testing.assert_allclose(pairs[1], np.cumprod(X + 2, 0), rtol=1e-5)


def test_switch_index_of_ints_only():
    b = Builder()
    i = b.input("i", i32[()])
    with ops.tracing(b):
        assert ops.switch(i, BRANCHES, np.ones(2, np.float32)).type.shape == (2,)


def test_short_axes_and_bad_indices():
    assert ops.map(lambda x: ops.multiply(x, 2), np.zeros((0, 3), np.float32)).shape == (0, 3)
    np.testing.assert_array_equal(ops.associative_scan(ops.add, np.ones(1, np.float32)), [1.0])
    assert ops.associative_scan(ops.add, np.ones(0, np.float32)).shape == (0,)
    with pytest.raises(TypeError, match=r"ops\.switch: the index must be an integer"):
        ops.switch(1.7, BRANCHES, X)

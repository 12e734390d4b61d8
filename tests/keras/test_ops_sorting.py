"""keras.ops sorting (ops/sorting.py) against numpy: sort and argsort (stable, NaN last, -0.0
kept), top_k (largest first, ties by index, as Keras on JAX), in_top_k, and the order statistics
with each of numpy's methods; eagerly, traced and compiled; gradients by finite differences."""
from __future__ import annotations

import numpy as np
import pytest

from nncompile.ir import f32
from nncompile.keras import ops
from tests.keras.ops_harness import all_ways, both
from tests.passes.test_autodiff import check_gradients

RNG = np.random.default_rng(0)
# ties, NaN, infinities and both zeros in every row
SPECIAL = np.array([[3.0, np.nan, 1.0, -0.0, 0.0, 1.0, -np.inf, 2.0],
                    [2.0, 2.0, 1.0, np.inf, -1.0, np.nan, np.nan, 0.0]], np.float32)
CUBE = RNG.integers(-3, 4, (3, 5, 4)).astype(np.float32)
INTS = RNG.integers(-3, 4, (4, 6)).astype(np.int32)



def _same(got, want):
    got, want = np.asarray(got), np.asarray(want)
    assert (got.dtype, got.shape) == (want.dtype, want.shape), (got.dtype, want.dtype, got.shape, want.shape)
    np.testing.assert_array_equal(got, want)
    if got.dtype.kind == "f":
        np.testing.assert_array_equal(np.signbit(got), np.signbit(want))


@pytest.mark.parametrize("x, axis", [(SPECIAL, -1), (SPECIAL, 0), (CUBE, 1), (INTS, 0), (INTS > 0, -1)],
                         ids=["special", "special_axis0", "cube_axis1", "ints", "bools"])
def test_sort_and_argsort_match_numpy(x, axis):
    for got in all_ways(lambda v: ops.sort(v, axis), x):
        _same(got, np.sort(x, axis))
    for got in all_ways(lambda v: ops.argsort(v, axis), x):
        _same(got, np.argsort(x, axis, kind="stable").astype(np.int32))


@pytest.mark.parametrize("k", [1, 3, 8])
def test_top_k_is_largest_first_ties_by_index(k):
    x = SPECIAL
    order = np.argsort(-np.nan_to_num(x, nan=np.inf), axis=-1, kind="stable")[:, :k]   # NaN largest
    for values, indices in all_ways(lambda v: ops.top_k(v, k), x):
        _same(indices, order.astype(np.int32))
        _same(values, np.take_along_axis(x, order, -1))
    ints = INTS
    for values, indices in all_ways(lambda v: ops.top_k(v, 2), ints):
        order = np.argsort(-ints, axis=-1, kind="stable")[:, :2]
        _same(indices, order.astype(np.int32))
        _same(values, np.take_along_axis(ints, order, -1))


def test_top_k_refuses_k_out_of_range():
    with pytest.raises(ValueError, match=r"ops\.top_k: k must be in \[1, 8\]"):
        ops.top_k(SPECIAL, 9)


def test_in_top_k_counts_ties_in():
    predictions = np.array([[0.1, 0.5, 0.5, 0.2], [0.3, 0.3, 0.3, 0.3], [0.9, np.nan, 0.1, 0.2]], np.float32)
    targets = np.array([2, 3, 1])
    for got in all_ways(lambda t, p: ops.in_top_k(t, p, 1), targets, predictions):
        _same(got, np.array([True, True, False]))
    for got in both(lambda t, p: ops.in_top_k(t, p, 2), np.array([3, 0, 3]), predictions):
        _same(got, np.array([False, True, True]))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("method", ["linear", "lower", "higher", "midpoint", "nearest"])
@pytest.mark.parametrize("axis, keepdims", [(None, False), (1, False), ((0, 2), True)])
def test_quantiles_match_numpy(method, axis, keepdims):
    x = RNG.standard_normal((3, 5, 4)).astype(np.float32)
    q = [0.0, 0.1, 0.5, 0.75, 1.0]
    want = np.quantile(x, q, axis=axis, method=method, keepdims=keepdims)
    for got in both(lambda v: ops.quantile(v, q, axis, method, keepdims), x):
        np.testing.assert_allclose(got, want.astype(np.float32), rtol=1e-6, atol=1e-6)
    for got in both(lambda v: ops.percentile(v, 30, axis, method), x):
        np.testing.assert_allclose(got, np.percentile(x, 30, axis=axis, method=method).astype(np.float32),
                                   rtol=1e-6, atol=1e-6)


def test_median_of_ints_and_nan_rows():
    for got in all_ways(lambda v: ops.median(v, 1), INTS):
        _same(got, np.median(INTS, 1).astype(np.float32))
    with np.errstate(invalid="ignore"):
        want = np.median(SPECIAL, 1).astype(np.float32)
    for got in both(lambda v: ops.median(v, 1), SPECIAL):
        _same(got, want)


def test_gradients_of_sorted_values_go_to_their_elements():
    def build(b, values):
        with ops.tracing(b):
            top, indices = ops.top_k(values["x"], 3)
            kept = ops.multiply(ops.sum(ops.cast(indices, "float64")), 0.0)    # no gradient; keeps them used
            return ops.add(ops.sum(ops.multiply(ops.sort(values["x"], 0), values["x"])),
                           ops.add(ops.sum(ops.median(top, 1)), kept))
    check_gradients(build, {"x": RNG.standard_normal((4, 5))}, samples=8)


def test_a_symbolic_sorted_axis_is_refused_by_name():
    from nncompile.ir import Builder
    b = Builder()
    x = b.input("x", f32["?", 4])
    with ops.tracing(b):
        assert ops.sort(x).type.shape == ("?", 4)
        with pytest.raises(NotImplementedError, match=r"ops\.sort: the sorted axis has symbolic length"):
            ops.sort(x, 0)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("method", ["linear", "lower", "higher", "midpoint", "nearest"])
def test_nan_quantiles_leave_nan_out(method):
    x = np.array([[1.0, np.nan, 3.0, 4.0, -2.0], [np.nan] * 5, [5, 4, 3, 2, 1], [7, np.nan, np.nan, 1, 1]], np.float32)
    q = [0.0, 0.2, 0.5, 0.9, 1.0]
    for got in all_ways(lambda v: ops.nanquantile(v, q, 1, method), x):
        np.testing.assert_allclose(got, np.nanquantile(x, q, axis=1, method=method).astype(np.float32), rtol=1e-6,
                                   atol=1e-6)
    for got in both(lambda v: ops.nanpercentile(v, 40, 1, method, keepdims=True), x):
        np.testing.assert_allclose(got, np.nanpercentile(x, 40, axis=1, method=method, keepdims=True), rtol=1e-6,
                                   atol=1e-6)
    for got in both(lambda v: ops.nanmedian(v, 1), x):
        np.testing.assert_allclose(got, np.nanmedian(x, 1), rtol=1e-6)


def test_nanargmax_and_nanargmin_give_minus_one_for_only_nan():
    x = np.array([[1.0, np.nan, 3.0, -np.inf], [np.nan] * 4, [2.0, 2.0, 1.0, 1.0]], np.float32)
    for got in all_ways(lambda v: ops.nanargmax(v, 1), x):
        _same(got, np.array([2, -1, 0], np.int32))
    for got in all_ways(lambda v: ops.nanargmin(v, 1, keepdims=True), x):
        _same(got, np.array([[3], [-1], [2]], np.int32))
    _same(ops.nanargmax(x), np.int32(2))
    _same(ops.nanargmin(INTS, 0), np.argmin(INTS, 0).astype(np.int32))


def test_order_statistics_keep_infinities_and_negative_zero():
    """A value read at one place is that element: inf - inf would make NaN of it."""
    infinite = np.array([1.0, np.inf, np.inf], np.float32)
    for got in all_ways(ops.median, infinite):
        _same(got, np.float32(np.inf))
    for got in both(ops.median, np.array([-np.inf, -np.inf, 0.0], np.float32)):
        _same(got, np.float32(-np.inf))
    both_ends = np.array([1.0, 2.0, np.inf, -np.inf], np.float32)
    _same(ops.quantile(both_ends, 0.0, method="lower"), np.float32(-np.inf))
    _same(ops.quantile(both_ends, 1.0, method="higher"), np.float32(np.inf))
    _same(ops.quantile(np.array([0.0, -0.0, 0.0, 5.0], np.float32), 0.5, method="lower"), np.float32(-0.0))


def test_sort_without_an_axis_sorts_the_flattened_tensor():
    for got in all_ways(lambda v: ops.sort(v, axis=None), INTS):
        _same(got, np.sort(INTS, axis=None))
    _same(ops.argsort(INTS, axis=None), np.argsort(INTS, axis=None, kind="stable").astype(np.int32))


def test_axes_too_long_to_sort_and_bad_quantiles_are_refused_by_name():
    with pytest.raises(NotImplementedError, match=r"ops\.median: the sorted axis has 5000 elements"):
        ops.median(np.zeros(5000, np.float32))
    with pytest.raises(ValueError, match=r"ops\.percentile: percentiles must be in \[0, 100\]"):
        ops.percentile(np.ones(3, np.float32), 150)


def test_quantiles_of_ties_share_the_gradient():
    """The median of [1, 2, 2, 3] interpolates between the two 2s: half the gradient each."""
    from nncompile.ir import Builder, f64
    from nncompile.passes.autodiff import gradients
    from nncompile.runtime.reference import run
    b = Builder()
    x = b.input("x", f64[4])
    with ops.tracing(b):
        y = ops.median(x)
    graph = b.finish(gradients(b.graph, y, [x]))
    np.testing.assert_allclose(run(graph, [np.array([1.0, 2.0, 2.0, 3.0])])[0], [0, 0.5, 0.5, 0])


def test_nanargmax_without_an_axis_keeps_every_axis():
    assert ops.nanargmax(np.ones((2, 3), np.float32), keepdims=True).shape == (1, 1)


def test_a_traced_q_is_refused_by_name():
    from nncompile.ir import Builder
    b = Builder()
    x, q = b.input("x", f32[5]), b.input("q", f32[()])
    with ops.tracing(b):
        for op in ("quantile", "percentile", "nanquantile", "nanpercentile"):
            with pytest.raises(NotImplementedError, match=rf"ops\.{op}: q must be numbers, not a traced tensor"):
                getattr(ops, op)(x, q)

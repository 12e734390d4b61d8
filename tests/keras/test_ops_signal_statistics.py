"""keras.ops windows, frames and cross-correlation (ops/signal.py), correlation coefficients and
histograms (ops/statistics.py), fmax / fmin, diagflat and the segment minima and products
against numpy written here, eagerly, traced and compiled; gradients by finite differences."""
from __future__ import annotations

import numpy as np
import pytest

import nncompile
from nncompile.keras import ops
from tests.keras.ops_harness import all_ways, both, trace_graph
from tests.keras.test_ops_scatter_norms import segments_reference
from tests.passes.test_autodiff import check_gradients

RNG = np.random.default_rng(0)
X = RNG.standard_normal(9).astype(np.float32)
M = RNG.standard_normal((3, 6)).astype(np.float32)
IDS = np.array([0, 0, 2, 1, 5, 2, -1])
DATA = RNG.standard_normal((7, 2)).astype(np.float32)
WITH_NAN = np.array([1.0, np.nan, -2.0, np.nan, 0.0], np.float32)
OTHER_NAN = np.array([np.nan, np.nan, 3.0, -1.0, -0.5], np.float32)


def _histogram(x, bins, span=None):
    counts, edges = np.histogram(x, bins, span)
    return [counts.astype(np.float32), edges.astype(np.float32)]


CASES = {
    "extract_sequences": (lambda x: ops.extract_sequences(x, 4, 3),
                          lambda x: np.stack([x[i:i + 4] for i in range(0, 6, 3)]), [X]),
    "extract_sequences_batched": (lambda x: ops.extract_sequences(x, 2, 2),
                                  lambda x: np.stack([x[:, i:i + 2] for i in range(0, 5, 2)], axis=1), [M]),
    "correlate_valid": (ops.correlate, np.correlate, [X, X[:3]]),
    "correlate_same": (lambda a, v: ops.correlate(a, v, "same"), lambda a, v: np.correlate(a, v, "same"),
                       [X, X[:4]]),
    "correlate_full_swapped": (lambda a, v: ops.correlate(a, v, "full"), lambda a, v: np.correlate(a, v, "full"),
                               [X[:3], X]),
    "corrcoef": (ops.corrcoef, np.corrcoef, [M]),
    "histogram": (lambda x: ops.histogram(x, 4), lambda x: _histogram(x, 4), [M]),
    "histogram_range": (lambda x: ops.histogram(x, 3, (-1.0, 1.0)), lambda x: _histogram(x, 3, (-1.0, 1.0)), [X]),
    "fmax": (ops.fmax, np.fmax, [WITH_NAN, OTHER_NAN]),
    "fmin": (ops.fmin, np.fmin, [WITH_NAN, OTHER_NAN]),
    "diagflat": (lambda x: ops.diagflat(x, -1), lambda x: np.diagflat(x, -1), [M[:2, :2]]),
    "segment_min": (lambda d: ops.segment_min(d, IDS, 4), lambda d: segments_reference(d, IDS, 4, np.min, np.inf), [DATA]),
    "segment_prod": (lambda d: ops.segment_prod(d, IDS, 4), lambda d: segments_reference(d, IDS, 4, np.prod, 1), [DATA]),
}


def _matches(got, want, what):
    if isinstance(want, (list, tuple)):
        for g, w in zip(got, want):
            _matches(g, w, what)
        return
    want = np.asarray(want, np.float32)
    assert np.asarray(got).shape == want.shape, what
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-6, err_msg=what)


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_numpy_eager_traced_and_compiled(name):
    fn, numpy_fn, arrays = CASES[name]
    want = numpy_fn(*arrays)
    graph, _ = trace_graph(fn, arrays)
    for kind, got in zip(("eager", "traced", "compiled"), [*both(fn, *arrays), nncompile.compile(graph)(*arrays)]):
        _matches(got, want, f"{name} {kind}")


@pytest.mark.parametrize("window, numpy_window", [(ops.bartlett, np.bartlett), (ops.blackman, np.blackman),
                                                  (ops.hamming, np.hamming), (ops.hanning, np.hanning),
                                                  (lambda n: ops.kaiser(n, 3.5), lambda n: np.kaiser(n, 3.5))])
def test_windows_are_numpys_in_floatx(window, numpy_window):
    for n in (1, 2, 7):
        got = window(n)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, numpy_window(n), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", ["correlate_same", "corrcoef", "segment_prod", "fmax"])
def test_gradients_match_finite_differences(name):
    fn, _, arrays = CASES[name]
    if name == "fmax":     # away from NaN, which has no gradient
        arrays = [X[:5], X[4:]]
    named = {f"x{i}": np.asarray(a, np.float64) for i, a in enumerate(arrays)}

    def build(b, values):
        with ops.tracing(b):
            return fn(*values.values())
    check_gradients(build, named, samples=8)



def test_bincount_counts_and_weighs_values():
    """Eagerly max(x) + 1 bins (at least minlength); traced, minlength bins, values past them
    and negative ones dropped."""
    x = np.array([1, 3, 1, 0, 7, -1], np.int32)
    kept = (x >= 0) & (x < 6)
    weights = RNG.standard_normal(6).astype(np.float32)
    np.testing.assert_array_equal(ops.bincount(x[x >= 0], minlength=6), np.bincount(x[x >= 0], minlength=6))
    for got in all_ways(lambda v: ops.bincount(v, minlength=6), x)[1:]:
        np.testing.assert_array_equal(got, np.bincount(x[kept], minlength=6))
    for got in all_ways(lambda v, w: ops.bincount(v, w, minlength=6), x, weights)[1:]:
        np.testing.assert_allclose(got, np.bincount(x[kept], weights[kept], minlength=6), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(ops.bincount(np.array([1, 3, 1, 0])), np.bincount([1, 3, 1, 0]))
    np.testing.assert_array_equal(ops.bincount(np.array([[1, 2], [0, 0]]), minlength=3), [[0, 1, 1], [2, 0, 0]])


def test_gcd_and_lcm_as_numpy():
    a = RNG.integers(-10**6, 10**6, 200).astype(np.int32)
    c = RNG.integers(-10**6, 10**6, 200).astype(np.int32)
    a[:3], c[:3] = [0, 7, 0], [5, 0, 0]
    for got in all_ways(ops.gcd, a, c):
        np.testing.assert_array_equal(got, np.gcd(a, c))
    small_a, small_c = a % 1000, c % 1000
    for got in both(ops.lcm, small_a, small_c):
        np.testing.assert_array_equal(got, np.lcm(small_a, small_c))
    fibonacci = np.array([1836311903], np.int32), np.array([1134903170], np.int32)   # Euclid's worst case
    np.testing.assert_array_equal(ops.gcd(*fibonacci), [1])
    with pytest.raises(ValueError, match=r"ops\.gcd: the inputs must be integers"):
        ops.gcd(np.ones(2), np.ones(2))


def test_argpartition_puts_the_kth_in_place():
    x = RNG.standard_normal((3, 7)).astype(np.float32)
    for kth in (0, 3, 6):
        for got in all_ways(lambda v: ops.argpartition(v, kth), x):
            picked = np.take_along_axis(x, got, -1)
            kth_value = np.sort(x, -1)[:, kth:kth + 1]
            assert (picked[:, kth:kth + 1] == kth_value).all()
            assert (picked[:, :kth] <= kth_value).all() and (picked[:, kth + 1:] >= kth_value).all()


def test_histogram_counts_every_element():
    """The last edge is the largest element itself: low + 1 * (high - low) can round below it."""
    x = (np.random.default_rng(1).standard_normal(50) * 3).astype(np.float32)
    for got in all_ways(lambda v: ops.histogram(v, 10), x):
        np.testing.assert_array_equal(got[0], np.histogram(x, 10)[0])
    edge = np.array([-0.8180118257618295, 0.0, 0.13436456015139314])
    np.testing.assert_array_equal(ops.histogram(edge, 4)[0], [1, 0, 0, 2])


def test_bools_in_fmax_fmin_and_searchsorted_as_keras():
    a, c = np.array([True, False, False]), np.array([False, False, True])
    np.testing.assert_array_equal(ops.fmax(a, c), [True, False, True])
    np.testing.assert_array_equal(ops.fmin(a, c), [False, False, False])
    np.testing.assert_array_equal(ops.searchsorted(np.array([False, True]), a), [1, 0, 0])


def test_frames_and_adaptive_pools_of_a_symbolic_axis_are_refused_by_name():
    from nncompile.ir import Builder, f32
    b = Builder()
    x = b.input("x", f32[2, "?"])
    images = b.input("images", f32[1, "?", 4, 2])
    with ops.tracing(b):
        with pytest.raises(NotImplementedError, match=r"ops\.extract_sequences: the last axis has symbolic length"):
            ops.extract_sequences(x, 2, 1)
        with pytest.raises(NotImplementedError, match=r"ops\.adaptive_average_pool: spatial axis 1 has symbolic"):
            ops.adaptive_average_pool(images, 2)

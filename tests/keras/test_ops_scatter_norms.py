"""keras.ops writes at indices (ops/scatter.py: scatter, scatter_update, slice_update, segment_sum,
segment_max) and norms, cross products and distances (ops/linalg.py) against numpy written here,
eagerly, traced and compiled; gradients by finite differences (scatter_add's VJP among them)."""
from __future__ import annotations

import numpy as np
import pytest

import nncompile
from nncompile.keras import ops
from tests.keras.ops_harness import both, trace_graph
from tests.passes.test_autodiff import check_gradients

RNG = np.random.default_rng(0)
M = RNG.standard_normal((3, 4)).astype(np.float32)
CUBE = RNG.standard_normal((2, 3, 4)).astype(np.float32)
ROWS = np.array([[0, 1], [2, 3], [0, 1], [1, 0]])     # a repeated index
IDS = np.array([0, 0, 2, 1, 5, 2, -1])                 # 5 and -1 out of range for 3 or 4 segments
DATA = RNG.standard_normal((7, 2)).astype(np.float32)
SQUARE = RNG.standard_normal((4, 4)).astype(np.float32)


def _scatter(indices, values, shape):
    out = np.zeros(shape, values.dtype)
    np.add.at(out, tuple(indices.reshape(-1, indices.shape[-1]).T), values.reshape(-1, *shape[indices.shape[-1]:]))
    return out


def _scatter_update(x, indices, updates):
    out = x.copy()
    for row, value in zip(indices, updates):     # in order: the last write stays
        out[tuple(row)] = value
    return out


def _slice_update(x, starts, updates):
    out = x.copy()
    starts = [min(max(s, 0), d - e) for s, d, e in zip(starts, x.shape, updates.shape)]
    out[tuple(slice(s, s + e) for s, e in zip(starts, updates.shape))] = updates
    return out


def segments_reference(data, ids, count, reduce, empty):
    """numpy's reduction of the rows of `data` with each id; `empty` for a segment with none."""
    out = np.full((count, *data.shape[1:]), empty, data.dtype)
    for s in range(count):
        if (ids == s).any():
            out[s] = reduce(data[ids == s], axis=0)
    return out


def _cdist(x, y):
    return np.sqrt(((x[..., :, None, :] - y[..., None, :, :]) ** 2).sum(-1))


CASES = {
    "scatter": (lambda v: ops.scatter(ROWS, v, (3, 4)), lambda v: _scatter(ROWS, v, (3, 4)), [M[0]]),
    "scatter_rows": (lambda v: ops.scatter(ROWS[:, :1], v, (3, 4)), lambda v: _scatter(ROWS[:, :1], v, (3, 4)), [SQUARE]),
    "scatter_update": (lambda x, u: ops.scatter_update(x, ROWS, u), lambda x, u: _scatter_update(x, ROWS, u), [M, M[1]]),
    "scatter_update_add": (lambda x, u: ops.scatter_update(x, ROWS, u, reduction="add"),
                           lambda x, u: x + _scatter(ROWS, u, x.shape), [M, M[1]]),
    "scatter_update_rows": (lambda x, u: ops.scatter_update(x, ROWS[:, :1], u),
                            lambda x, u: _scatter_update(x, ROWS[:, :1], u), [M, SQUARE]),
    "slice_update": (lambda x, u: ops.slice_update(x, (1, 2), u), lambda x, u: _slice_update(x, (1, 2), u),
                     [M, M[:2, :2]]),
    "slice_update_clamped": (lambda x, u: ops.slice_update(x, (1, 5, 3), u),
                             lambda x, u: _slice_update(x, (1, 5, 3), u), [CUBE, CUBE[:1, :2, :3]]),
    "segment_sum": (lambda d: ops.segment_sum(d, IDS, 3), lambda d: segments_reference(d, IDS, 3, np.sum, 0), [DATA]),
    "segment_max": (lambda d: ops.segment_max(d, IDS, 4), lambda d: segments_reference(d, IDS, 4, np.max, -np.inf), [DATA]),
    "norm": (ops.norm, np.linalg.norm, [CUBE]),
    "norm_matrix_orders": (lambda x: ops.stack([ops.norm(x, o) for o in (None, "fro", 1, -1, np.inf, -np.inf)]),
                           lambda x: np.stack([np.linalg.norm(x, o) for o in (None, "fro", 1, -1, np.inf, -np.inf)]),
                           [M]),
    "norm_vector_orders": (lambda x: ops.stack([ops.norm(x, o, axis=1) for o in (None, 1, 2, 0, np.inf, -np.inf, 3)]),
                           lambda x: np.stack([np.linalg.norm(x, o, axis=1) for o in (None, 1, 2, 0, np.inf, -np.inf, 3)]),
                           [M]),
    "norm_axes_keepdims": (lambda x: ops.norm(x, 1, axis=(2, 0), keepdims=True),
                           lambda x: np.linalg.norm(x, 1, axis=(2, 0), keepdims=True), [CUBE]),
    "cross": (ops.cross, np.cross, [M[:, :3], CUBE[0, :, 1:]]),
    "cross_axes": (lambda x, y: ops.cross(x, y, axisa=0, axisc=0), lambda x, y: np.cross(x, y, axisa=0, axisc=0),
                   [M[:, :3].T, M[0, :3]]),
    "cdist": (ops.cdist, _cdist, [CUBE, CUBE[:, :2]]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_numpy_eager_traced_and_compiled(name):
    fn, numpy_fn, arrays = CASES[name]
    want = np.asarray(numpy_fn(*arrays), np.float32)
    graph, _ = trace_graph(fn, arrays)
    for got in [*both(fn, *arrays), nncompile.compile(graph)(*arrays)]:
        assert np.asarray(got).dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-6)


def test_integer_data_and_two_vector_cross():
    ints = np.arange(12, dtype=np.int32).reshape(3, 4)
    np.testing.assert_array_equal(ops.segment_sum(ints, np.array([1, 0, 1]), 2), [[4, 5, 6, 7], [8, 10, 12, 14]])
    np.testing.assert_array_equal(ops.segment_max(ints, np.array([1, 0, 1]), 3)[2], [np.iinfo(np.int32).min] * 4)
    np.testing.assert_array_equal(ops.cross(np.array([1, 2]), np.array([3, 5])), -1)
    assert ops.norm(ints).dtype == np.float32


# where the values' cases meet a kink: no empty segment (-inf), no zero distance (sqrt at 0)
GRADIENT_CASES = {"segment_max": (lambda d: ops.segment_max(d, IDS, 3), None, [DATA]),
                  "cdist": (ops.cdist, None, [CUBE, CUBE[:, :2] + 0.5])}


@pytest.mark.parametrize("name", ["scatter", "scatter_update", "scatter_update_add", "slice_update", "segment_sum",
                                  "segment_max", "norm_matrix_orders", "norm_vector_orders", "cross", "cdist"])
def test_gradients_match_finite_differences(name):
    fn, _, arrays = GRADIENT_CASES.get(name) or CASES[name]
    named = {f"x{i}": np.asarray(a, np.float64) for i, a in enumerate(arrays)}

    def build(b, values):
        with ops.tracing(b):
            return fn(*values.values())
    check_gradients(build, named, samples=8)


def test_refusals_name_the_op():
    with pytest.raises(NotImplementedError, match=r"ops\.scatter_update: reduction='max'"):
        ops.scatter_update(M, ROWS, M[1], reduction="max")
    with pytest.raises(NotImplementedError, match=r"ops\.norm: ord='nuc' of a matrix"):
        ops.norm(M, "nuc")
    with pytest.raises(ValueError, match=r"ops\.cross: the vectors must have 2 or 3 components"):
        ops.cross(M, M)


def test_updates_take_the_inputs_dtype_and_negative_starts_count_from_the_end():
    np.testing.assert_array_equal(ops.scatter_update(np.zeros(3, np.int32), [[1]], np.array([5.7], np.float32)),
                                  np.array([0, 5, 0], np.int32))
    assert ops.scatter_update(np.zeros(3, np.int32), [[1]], np.array([5.7], np.float32)).dtype == np.int32
    np.testing.assert_array_equal(ops.scatter_update(np.zeros(3, bool), [[1]], np.array([True])), [False, True, False])
    for got in both(lambda x, u: ops.slice_update(x, (-1,), u), np.zeros(4, np.float32), np.ones(1, np.float32)):
        np.testing.assert_array_equal(got, [0, 0, 0, 1])
    np.testing.assert_array_equal(ops.cross(np.array([1, 2, 3], np.uint8), np.array([7, 8, 9], np.uint8)),
                                  np.array([250, 12, 250], np.uint8))

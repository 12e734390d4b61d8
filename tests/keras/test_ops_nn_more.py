"""keras.ops nn functions that share their definition with keras.activations (the shrinks,
squareplus, the sparse ones, threshold, sparsemax) and psnr, against numpy written here,
eagerly, traced and compiled; sparsemax's gradient by finite differences."""
from __future__ import annotations

import numpy as np
import pytest

import nncompile
from nncompile.keras import activations, ops
from tests.keras.ops_harness import both, trace_graph
from tests.passes.test_autodiff import check_gradients

RNG = np.random.default_rng(0)
X = np.concatenate([RNG.standard_normal((3, 6)) * 2, [[-1.0, 1.0, 0.5, -0.5, 0.0, 3.0]]]).astype(np.float32)


def sparsemax_reference(z, axis=-1):
    """Martins and Astudillo's algorithm 1, row by row."""
    z = np.moveaxis(np.asarray(z, np.float64), axis, -1)
    out = np.empty_like(z)
    for index in np.ndindex(z.shape[:-1]):
        row = z[index]
        ordered = np.sort(row)[::-1]
        k = np.arange(1, row.size + 1)
        support = 1 + k * ordered > np.cumsum(ordered)
        kz = k[support].max()
        tau = (ordered[:kz].sum() - 1) / kz
        out[index] = np.maximum(row - tau, 0)
    return np.moveaxis(out, -1, axis)


CASES = {
    "hard_shrink": (lambda x: ops.hard_shrink(x, 0.7), lambda x: np.where(np.abs(x) > 0.7, x, 0)),
    "soft_shrink": (ops.soft_shrink, lambda x: np.where(x > 0.5, x - 0.5, np.where(x < -0.5, x + 0.5, 0))),
    "tanh_shrink": (ops.tanh_shrink, lambda x: x - np.tanh(x)),
    "squareplus": (lambda x: ops.squareplus(x, b=2), lambda x: (x + np.sqrt(x * x + 2)) / 2),
    "sparse_plus": (ops.sparse_plus, lambda x: np.where(x <= -1, 0, np.where(x >= 1, x, (x + 1) ** 2 / 4))),
    "sparse_sigmoid": (ops.sparse_sigmoid, lambda x: np.clip((x + 1) / 2, 0, 1)),
    "threshold": (lambda x: ops.threshold(x, 0.3, -2.0), lambda x: np.where(x > 0.3, x, -2.0)),
    "sparsemax": (ops.sparsemax, sparsemax_reference),
    "sparsemax_axis0": (lambda x: ops.sparsemax(x, axis=0), lambda x: sparsemax_reference(x, 0)),
    "psnr": (lambda x: ops.psnr(x, ops.multiply(x, 0.9), 3.0),
             lambda x: 20 * np.log10(3.0) - 10 * np.log10(np.mean((x - 0.9 * x) ** 2))),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_numpy_eager_traced_and_compiled(name):
    fn, numpy_fn = CASES[name]
    want = np.asarray(numpy_fn(X.astype(np.float64)), np.float32)
    graph, _ = trace_graph(fn, [X])
    for got in [*both(fn, X), nncompile.compile(graph)(X)]:
        assert np.asarray(got).dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-6)


def test_sparsemax_sums_to_one_is_sparse_and_trains():
    out = ops.sparsemax(X)
    np.testing.assert_allclose(out.sum(-1), 1, rtol=1e-6)
    assert (out == 0).any() and (out >= 0).all()
    assert activations.get("sparsemax") is activations.sparsemax

    def build(b, values):
        with ops.tracing(b):
            return ops.sparsemax(values["x"])
    # away from the kinks: an element leaving or joining the support
    check_gradients(build, {"x": np.array([[1.2, 2.0, 0.1, -1.0], [0.3, 0.5, 0.45, 0.6]])}, samples=8)


def test_integers_compute_in_floatx():
    assert ops.hard_shrink(np.array([1, 0], np.int32)).dtype == np.float32
    assert ops.threshold(np.array([1, 0], np.int32), 0, 5).tolist() == [1.0, 5.0]


def test_sparsemax_of_masked_and_huge_logits():
    """-inf logits (a mask) get 0; a logit far above the others gets everything."""
    masked = np.array([[-np.inf, 1.0, 0.5], [3e7, 0.0, -1.0]], np.float32)
    graph, _ = trace_graph(ops.sparsemax, [masked])
    for got in [*both(ops.sparsemax, masked), nncompile.compile(graph)(masked)]:
        np.testing.assert_allclose(got, [[0.0, 0.75, 0.25], [1.0, 0.0, 0.0]], atol=1e-6)
    with pytest.raises(ValueError, match="sparsemax: axis 2 is out of bounds"):
        ops.sparsemax(masked, axis=2)

"""keras.ops' linear algebra (cholesky, cholesky_inverse, solve_triangular, solve, inv, det,
slogdet, logdet, lu_factor): eager, traced and compiled against numpy.linalg and identities,
batched and not, float32 and float64, sizes 1 to 17; gradients against finite differences;
dtypes, errors and failures as Keras 3.15 on JAX gives them; det's ONNX form."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

import nncompile
from nncompile.ir import Builder, f32, f64
from nncompile.keras import ops
from nncompile.onnx import UnsupportedError
from nncompile.passes.autodiff import gradients
from nncompile.runtime.reference import run
from ops_harness import all_ways, assert_matches, traced
from tests.keras.finite_differences import gradients as numeric_gradients

SIZES = [1, 2, 5, 17]
SHAPES = [(n,) for n in SIZES] + [(3, n) for n in SIZES]      # (batch..., n): unbatched and batched
TOL = {"float32": 2e-4, "float64": 1e-9}


def _dominant(rng, shape, dtype):
    n = shape[-1]
    return (rng.standard_normal((*shape[:-1], n, n)) + 2 * n ** 0.5 * np.eye(n)).astype(dtype)


def _general(rng, shape, dtype):
    """Well-conditioned matrices with their rows shuffled and some negated: partial pivoting
    swaps them back, by the pivots' magnitudes."""
    signs = rng.choice([-1, 1], (shape[-1], 1)).astype(dtype)
    return signs * _dominant(rng, shape, dtype)[..., rng.permutation(shape[-1]), :]


def _spd(rng, shape, dtype):
    n = shape[-1]
    a = rng.standard_normal((*shape[:-1], n, n))
    return (a @ np.swapaxes(a, -1, -2) + n * np.eye(n)).astype(dtype)


def _each_way(fn, *arrays, dtype, tol=None):
    """fn eager, traced and compiled, each checked to be alike; the eager result."""
    tol = tol or TOL[dtype]
    results = all_ways(fn, *arrays)
    for got in results[1:]:
        for g, w in zip(*(r if isinstance(r, (list, tuple)) else [r] for r in (got, results[0]))):
            assert_matches(g, w, rtol=tol, atol=tol)
    return results[0]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_factorizations_match_numpy_linalg(shape, dtype):
    rng = np.random.default_rng(shape[-1])
    spd, tol = _spd(rng, shape, dtype), TOL[dtype]
    lower = _each_way(ops.cholesky, spd, dtype=dtype)
    assert_matches(lower, np.linalg.cholesky(spd), rtol=tol, atol=tol)
    upper = _each_way(lambda x: ops.cholesky(x, upper=True), spd, dtype=dtype)
    assert_matches(upper, np.swapaxes(lower, -1, -2), rtol=tol, atol=tol)
    inverse = np.linalg.inv(spd.astype(np.float64)).astype(dtype)
    assert_matches(_each_way(ops.cholesky_inverse, lower, dtype=dtype), inverse, rtol=tol, atol=tol)
    assert_matches(_each_way(lambda x: ops.cholesky_inverse(x, upper=True), upper, dtype=dtype),
                   inverse, rtol=tol, atol=tol)
    a = _general(rng, shape, dtype)
    lu, pivots = _each_way(ops.lu_factor, a, dtype=dtype)
    assert pivots.dtype == np.int32 and pivots.shape == a.shape[:-1]
    rows = np.broadcast_to(np.arange(shape[-1]), pivots.shape).copy()
    for k in range(shape[-1]):      # the swaps, in order, give the rows' permutation
        at_k = np.take_along_axis(rows, pivots[..., k:k + 1], -1)
        np.put_along_axis(rows, pivots[..., k:k + 1], rows[..., k:k + 1], -1)
        rows[..., k:k + 1] = at_k
    product = (np.tril(lu, -1) + np.eye(shape[-1], dtype=dtype)) @ np.triu(lu)
    assert_matches(product, np.take_along_axis(a, rows[..., None], -2), rtol=tol, atol=tol * shape[-1])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_inverses_determinants_and_solves_match_numpy_linalg(shape, dtype):
    rng = np.random.default_rng(10 + shape[-1])
    a, tol, n = _general(rng, shape, dtype), TOL[dtype], shape[-1]
    inverse = _each_way(ops.inv, a, dtype=dtype)
    assert_matches(inverse, np.linalg.inv(a), rtol=tol, atol=tol)
    assert_matches(a @ inverse, np.broadcast_to(np.eye(n, dtype=dtype), a.shape), rtol=tol, atol=tol)
    det = _each_way(ops.det, a, dtype=dtype)
    assert_matches(det, np.linalg.det(a), rtol=tol * n, atol=0)
    sign, logabsdet = _each_way(ops.slogdet, a, dtype=dtype)
    want_sign, want_log = np.linalg.slogdet(a)
    assert_matches(sign, want_sign.astype(dtype))
    assert_matches(logabsdet, want_log.astype(dtype), rtol=tol, atol=tol)
    assert_matches(sign * np.exp(logabsdet), det, rtol=tol * n, atol=0)
    spd = _spd(rng, shape, dtype)
    assert_matches(_each_way(ops.logdet, spd, dtype=dtype), np.linalg.slogdet(spd)[1].astype(dtype),
                   rtol=tol, atol=tol)
    vector, matrices = (rng.standard_normal(s).astype(dtype) for s in ((n,), (*shape, 2)))
    for rhs in (vector, matrices):
        column = rhs[:, None] if rhs is vector else rhs     # a vector is solved as one column
        x = _each_way(ops.solve, a, rhs, dtype=dtype)
        want = np.linalg.solve(a, column)
        assert_matches(x, want[..., 0] if rhs is vector else want, rtol=tol * 10, atol=tol * 10)
        product = a @ (x[..., None] if rhs is vector else x)
        assert_matches(product, np.broadcast_to(column, product.shape), rtol=tol * 10, atol=tol * 10)
        dominant = _dominant(rng, shape, dtype)
        for lower, triangle in ((False, np.triu(dominant)), (True, np.tril(dominant))):
            x = _each_way(lambda m, r: ops.solve_triangular(m, r, lower=lower), dominant, rhs, dtype=dtype)
            want = np.linalg.solve(triangle, column)
            assert_matches(x, want[..., 0] if rhs is vector else want, rtol=tol * 10, atol=tol * 10)


def test_batch_axes_broadcast_between_a_and_b_and_vectors_are_jax_s():
    """b is a vector if 1-D; solve_triangular also takes vectors one axis short of a, as
    jax.scipy does (solve then refuses them, as JAX)."""
    rng = np.random.default_rng(1)
    a = _general(rng, (2, 3), "float32")
    for rhs, shape in (((3,), (2, 3)), ((3, 1), (2, 3, 1)), ((1, 3, 2), (2, 3, 2)), ((4, 2, 3, 2), (4, 2, 3, 2))):
        b = rng.standard_normal(rhs).astype("float32")
        for op in (ops.solve, ops.solve_triangular):
            assert _each_way(op, a, b, dtype="float32").shape == shape
    vectors = rng.standard_normal((2, 3)).astype("float32")
    x = _each_way(lambda m, r: ops.solve_triangular(m, r, lower=True), a, vectors, dtype="float32")
    np.testing.assert_allclose(np.einsum("bij,bj->bi", np.tril(a), x), vectors, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match=r"Expected `a.shape\[-2\] == b.shape\[-2\]`"):
        ops.solve(a, vectors)


@pytest.mark.parametrize("op", [ops.cholesky, ops.cholesky_inverse, ops.inv, ops.det, ops.logdet,
                                lambda x: ops.slogdet(x)[0], lambda x: ops.lu_factor(x)[0]])
def test_dtypes_as_keras_ints_in_floatx_float64_kept_float16_back(op):
    spd = np.array([[4, 2], [2, 3]])
    assert op(spd.astype("int32")).dtype == np.float32
    assert op(spd.astype("float64")).dtype == np.float64
    assert op(spd.astype("float16")).dtype == np.float16
    assert ops.lu_factor(spd.astype("int32"))[1].dtype == np.int32
    assert ops.solve(spd.astype("int32"), np.array([1, 2])).dtype == np.float32
    assert ops.solve_triangular(spd.astype("float64"), np.array([1.0, 2.0], "float32")).dtype == np.float64


def test_values_keras_on_jax_gives():
    """Outputs of Keras 3.15 on JAX, taken from it: the symmetric part's Cholesky factor, the
    factor-based cholesky_inverse, LAPACK's pivots, and a slogdet."""
    a = np.array([[4.0, 2.0], [2.0, 3.0]], "float32")
    np.testing.assert_allclose(ops.cholesky(np.array([[4.0, 1.0], [3.0, 3.0]], "float32")),
                               [[2.0, 0.0], [1.0, 1.4142135]], rtol=1e-6)
    np.testing.assert_allclose(ops.cholesky_inverse(a), [[0.09027778, -0.05555556], [-0.05555556, 0.11111112]],
                               rtol=1e-6)
    np.testing.assert_allclose(ops.solve_triangular(a.astype("int32"), np.array([1, 2], "int32")),
                               [-0.08333334, 0.6666667], rtol=1e-6)
    lu, pivots = ops.lu_factor(a)
    np.testing.assert_allclose(lu, [[4.0, 2.0], [0.5, 2.0]])
    assert pivots.tolist() == [0, 1]
    assert [float(v) for v in ops.slogdet(a)] == [1.0, pytest.approx(2.0794415)]


def test_singular_and_indefinite_matrices_as_keras_on_jax():
    """inf or NaN, det 0 and slogdet (0, -inf), no error; cholesky raises eagerly (as Keras's
    eager check on JAX) and is NaN traced and compiled (as under jax.jit)."""
    singular, indefinite = (np.array(m, "float32") for m in ([[1.0, 2.0], [2.0, 4.0]], [[1.0, 2.0], [2.0, 1.0]]))
    for inverse in all_ways(ops.inv, singular):
        np.testing.assert_array_equal(inverse, [[-np.inf, np.inf], [np.inf, -np.inf]])
    for solution in all_ways(ops.solve, singular, np.array([1.0, 2.0], "float32")):
        assert np.isnan(solution).all()
    for det in all_ways(ops.det, singular):
        assert det == 0
    for sign, logabsdet in all_ways(ops.slogdet, singular):
        assert sign == 0 and logabsdet == -np.inf
    assert float(ops.logdet(indefinite)) == pytest.approx(np.log(3.0))
    lu, pivots = ops.lu_factor(singular)
    np.testing.assert_array_equal(lu, [[2.0, 4.0], [0.5, 0.0]])
    assert pivots.tolist() == [1, 1]
    with pytest.raises(ValueError, match="Cholesky decomposition failed"):
        ops.cholesky(indefinite)
    np.testing.assert_array_equal(traced(ops.cholesky, indefinite), [[np.nan, 0.0], [np.nan, np.nan]])
    np.testing.assert_allclose(ops.cholesky_inverse(singular), [[1.25, -0.125], [-0.125, 0.0625]])


@pytest.mark.parametrize("call, message", [
    (lambda: ops.cholesky(np.ones((2, 3))), r"Expected a square matrix. Received non-square input with shape \(2, 3\)"),
    (lambda: ops.inv(np.ones(3)), r"Expected input to have rank >= 2. Received input with shape \(3,\)."),
    (lambda: ops.det(np.ones((4, 2, 3))), "Expected a square matrix"),
    (lambda: ops.cholesky_inverse(np.ones(3)), "Expected input to have rank >= 2"),
    (lambda: ops.slogdet(np.ones((2, 3))), r"Argument to slogdet\(\) must have shape \[..., n, n\], got \(2, 3\)"),
    (lambda: ops.logdet(np.ones(3)), r"Argument to slogdet\(\) must have shape"),
    (lambda: ops.solve(np.ones((3, 4)), np.ones(3)), "Expected a square matrix"),
    (lambda: ops.solve(np.eye(3), np.float32(1)), "Expected input to have rank >= 1. Received scalar input"),
    (lambda: ops.solve(np.eye(3), np.ones((4, 2))), r"Expected `a.shape\[-2\] == b.shape\[-2\]`"),
    (lambda: ops.solve_triangular(np.ones((2, 3, 3)), np.ones(4)), r"Expected `a.shape\[-1\] == b.shape\[-1\]`"),
    (lambda: ops.lu_factor(np.ones(3)), "Expected input to have rank >= 2"),
])
def test_errors_are_keras_s(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_what_is_not_supported_is_refused_by_name():
    with pytest.raises(NotImplementedError, match=r"ops\.lu_factor: the LU factors of non-square matrices"):
        ops.lu_factor(np.ones((2, 3)))
    b = Builder()
    x = b.input("x", f64["?", "?"])
    with ops.tracing(b), pytest.raises(NotImplementedError, match=r"ops\.inv: axis 0 has symbolic length"):
        ops.inv(x)


# --- gradients against finite differences ---------------------------------------------------

def _symmetric_spd(rng, n):
    return _spd(rng, (2, n), "float64")


CASES = {
    "cholesky": (lambda x: ops.cholesky(x), lambda r: [_symmetric_spd(r, 4)]),
    "cholesky_upper": (lambda x: ops.cholesky(x, upper=True), lambda r: [_symmetric_spd(r, 3)]),
    "cholesky_inverse": (ops.cholesky_inverse, lambda r: [_general(r, (2, 4), "float64")]),
    "solve_triangular": (lambda a, b: ops.solve_triangular(a, b, lower=True),
                         lambda r: [_general(r, (2, 4), "float64"), r.standard_normal((2, 4, 3))]),
    "solve": (ops.solve, lambda r: [_general(r, (2, 4), "float64"), r.standard_normal(4)]),
    "solve_broadcast": (ops.solve, lambda r: [_general(r, (4,), "float64"), r.standard_normal((3, 4, 2))]),
    "inv": (ops.inv, lambda r: [r.standard_normal((2, 4, 4))]),
    "det": (ops.det, lambda r: [r.standard_normal((3, 4, 4))]),
    "slogdet": (lambda x: ops.slogdet(x)[1], lambda r: [r.standard_normal((3, 4, 4))]),
    "logdet": (ops.logdet, lambda r: [_symmetric_spd(r, 5)]),
    "lu_factor": (lambda x: ops.lu_factor(x)[0], lambda r: [r.standard_normal((2, 5, 5))]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradients_match_finite_differences(name):
    fn, make = CASES[name]
    rng = np.random.default_rng(len(name))
    arrays = make(rng)
    weights = rng.standard_normal(np.shape(fn(*arrays)))
    b = Builder()
    inputs = [b.input(f"x{i}", f64[a.shape]) for i, a in enumerate(arrays)]
    with ops.tracing(b):
        loss = ops.sum(ops.multiply(fn(*inputs), weights))
    graph = b.finish([loss, *gradients(b.graph, loss, inputs)])
    analytic = run(graph, arrays)[1:]
    numeric = numeric_gradients(lambda: float(np.sum(fn(*arrays) * weights)), arrays, 1e-6)
    for got, want in zip(analytic, numeric):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    compiled = nncompile.compile(graph)(*arrays)[1:]
    for got, want in zip(compiled, analytic):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


# --- ONNX -----------------------------------------------------------------------------------

def test_det_exports_as_onnx_det_and_the_rest_is_refused_by_name(tmp_path):
    rng = np.random.default_rng(2)
    b = Builder()
    x = b.input("x", f32["?", 4, 4])
    with ops.tracing(b):
        graph = b.finish([ops.det(x)], ["det"])
    proto = nncompile.onnx.save(graph, str(tmp_path / "det.onnx"))
    assert [n.op_type for n in proto.graph.node] == ["Det", "Identity"]
    a = rng.standard_normal((3, 4, 4)).astype("float32")
    session = ort.InferenceSession(str(tmp_path / "det.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"x": a})[0], np.linalg.det(a), rtol=1e-4)
    back = nncompile.onnx.load(str(tmp_path / "det.onnx"))
    np.testing.assert_allclose(nncompile.compile(back)(a), np.linalg.det(a), rtol=1e-4)
    b = Builder()
    x = b.input("x", f32["?", 4, 4])
    with ops.tracing(b):
        graph = b.finish([ops.inv(x)], ["inv"])
    with pytest.raises(UnsupportedError, match="op 'lu' has no ONNX form"):
        nncompile.onnx.save(graph, str(tmp_path / "inv.onnx"))


@pytest.mark.parametrize("op", ["det", "inv", "cholesky", "slogdet"])
def test_empty_matrices_are_refused_by_name(op):
    from nncompile.ir import ShapeError
    with pytest.raises(ShapeError, match="holds 0x0 matrices; expected at least 1x1"):
        getattr(ops, op)(np.zeros((2, 0, 0), np.float32))

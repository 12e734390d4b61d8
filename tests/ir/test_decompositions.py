"""The matrix decompositions (cholesky, triangular_solve, lu, det): references against numpy.linalg
and identities, compiled kernels against the reference (sizes 1 to 17, f32 and f64, batches on
one thread and split between threads), failures as values, VJPs against finite differences,
shape rules and costs."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import nncompile
from nncompile.ir import BATCH, Builder, ShapeError, f16, f32, f64, i32
from nncompile.ir.cost import node_flops
from nncompile.passes.autodiff import gradients
from nncompile.runtime.reference import run
from op_examples import lu_loops
from tests.passes.test_autodiff import check_gradients

SIZES = [1, 2, 5, 17]
TOLERANCE = {np.float32: 2e-4, np.float64: 1e-10}
SOLVES = [dict(zip(("lower", "transpose_a", "unit_diagonal", "left_side"), flags))
          for flags in itertools.product([False, True], repeat=4)]


def _well_conditioned(rng, *shape, dtype=np.float64):
    """Random matrices with a dominant diagonal (so no solve below loses precision)."""
    n = shape[-1]
    return (rng.standard_normal(shape) + 2 * n ** 0.5 * np.eye(n)).astype(dtype)


def _pivoting(rng, *shape, dtype=np.float64):
    """Well-conditioned matrices with their rows shuffled and some negated: partial pivoting
    swaps them back, by the pivots' magnitudes."""
    signs = rng.choice([-1, 1], (shape[-1], 1)).astype(dtype)
    return signs * _well_conditioned(rng, *shape, dtype=dtype)[..., rng.permutation(shape[-1]), :]


def _spd(rng, *shape, dtype=np.float64):
    a = rng.standard_normal(shape)
    return (a @ np.swapaxes(a, -1, -2) + shape[-1] * np.eye(shape[-1])).astype(dtype)


def _graph(dtype, n, sides=3, batch=(BATCH,)):
    """Every op on x (batch, n, n), with b (batch, n, sides) and rows (batch, sides, n)."""
    b = Builder()
    x = b.input("x", dtype[(*batch, n, n)])
    rhs = b.input("rhs", dtype[(*batch, n, sides)])
    rows = b.input("rows", dtype[(*batch, sides, n)])
    outs = [*b.lu(x), b.cholesky(x), b.det(x)]
    outs += [b.triangular_solve(x, rows if not flags["left_side"] else rhs, **flags) for flags in SOLVES]
    return b.finish(outs)


def _solve_numpy(a, rhs, lower, transpose_a, unit_diagonal, left_side):
    """np.linalg.solve on the triangle the op reads."""
    n = a.shape[-1]
    t = np.tril(a, -unit_diagonal) if lower else np.triu(a, unit_diagonal)
    t = t + unit_diagonal * np.eye(n)
    if transpose_a:
        t = np.swapaxes(t, -1, -2)
    if left_side:
        return np.linalg.solve(t, rhs)
    return np.swapaxes(np.linalg.solve(np.swapaxes(t, -1, -2), np.swapaxes(rhs, -1, -2)), -1, -2)


def _inputs(rng, dtype, n, batch, sides=3):
    return [_spd(rng, *batch, n, n, dtype=dtype), rng.standard_normal((*batch, n, sides)).astype(dtype),
            rng.standard_normal((*batch, sides, n)).astype(dtype)]


@pytest.mark.parametrize("n", SIZES)
def test_references_match_numpy_linalg_and_identities(n):
    rng = np.random.default_rng(n)
    inputs = _inputs(rng, np.float64, n, (3,))
    x = inputs[0]
    lu, pivots, perm, factor, det, *solves = run(_graph(f64, n), inputs)
    lower, upper = np.tril(lu, -1) + np.eye(n), np.triu(lu)
    np.testing.assert_allclose(lower @ upper, np.take_along_axis(x, perm[..., None], axis=1), atol=1e-9)
    assert np.all(np.abs(np.tril(lu, -1)) <= 1)     # partial pivoting: multipliers at most 1
    for i in range(3):
        want_lu, want_pivots, want_perm = lu_loops(x[i])
        np.testing.assert_allclose(lu[i], want_lu, atol=1e-10)
        assert pivots[i].tolist() == want_pivots.tolist() and perm[i].tolist() == want_perm.tolist()
    np.testing.assert_allclose(factor, np.linalg.cholesky(x), rtol=1e-10)
    np.testing.assert_allclose(det, np.linalg.det(x), rtol=1e-9)
    for flags, got in zip(SOLVES, solves):
        operand = inputs[1] if flags["left_side"] else inputs[2]
        np.testing.assert_allclose(got, _solve_numpy(x, operand, **flags), rtol=1e-8, atol=1e-8,
                                   err_msg=str(flags))
    shuffled = _pivoting(rng, 3, n, n)
    lu, pivots, perm, _, det, *_ = run(_graph(f64, n), [shuffled, *inputs[1:]])
    for i in range(3):
        want_lu, want_pivots, want_perm = lu_loops(shuffled[i])
        np.testing.assert_allclose(lu[i], want_lu, atol=1e-10)
        assert pivots[i].tolist() == want_pivots.tolist() and perm[i].tolist() == want_perm.tolist()
    np.testing.assert_allclose(det, np.linalg.det(shuffled), rtol=1e-9)


def test_cholesky_reads_the_symmetric_part_and_triangular_solve_one_triangle():
    rng = np.random.default_rng(1)
    spd = _spd(rng, 4, 4)
    skew = rng.standard_normal((4, 4))
    b = Builder()
    x = b.input("x", f64[4, 4])
    g = b.finish([b.cholesky(x), b.triangular_solve(x, b.input("r", f64[4, 1]), lower=True)])
    got = run(g, [spd + skew - skew.T, np.ones((4, 1))])
    np.testing.assert_allclose(got[0], np.linalg.cholesky(spd), rtol=1e-12)
    upper_noise = spd + np.triu(rng.standard_normal((4, 4)), 1)
    np.testing.assert_allclose(run(g, [upper_noise, np.ones((4, 1))])[1],
                               np.linalg.solve(np.tril(spd), np.ones((4, 1))), rtol=1e-12)


@pytest.mark.parametrize("dtype", [f32, f64])
@pytest.mark.parametrize("n", SIZES)
def test_compiled_kernels_match_the_reference(dtype, n):
    rng = np.random.default_rng(n)
    graph = _graph(dtype, n)
    exe = nncompile.compile(graph)
    tol = TOLERANCE[dtype.numpy.type]
    for batch in (1, 4):
        general = _inputs(rng, dtype.numpy, n, (batch,))
        general[0] = _well_conditioned(rng, batch, n, n, dtype=dtype.numpy)
        for inputs in (_inputs(rng, dtype.numpy, n, (batch,)), general):
            for got, want in zip(exe(*inputs), run(graph, inputs)):
                assert got.dtype == want.dtype and got.shape == want.shape
                np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
        # LU and det of shuffled rows (the triangular solves of those are ill-conditioned)
        shuffled = [_pivoting(rng, batch, n, n, dtype=dtype.numpy), *general[1:]]
        for i, (got, want) in enumerate(zip(exe(*shuffled)[:5], run(graph, shuffled)[:5])):
            if i != 3:
                np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("batch", [(), (2, 3)])
def test_unbatched_and_two_batch_axes_compile(batch):
    rng = np.random.default_rng(3)
    graph = _graph(f64, 5, sides=2, batch=batch)
    inputs = _inputs(rng, np.float64, 5, batch, sides=2)
    for got, want in zip(nncompile.compile(graph)(*inputs), run(graph, inputs)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_a_large_batch_is_split_between_threads_with_the_same_results():
    """600 matrices of 17 x 17: enough work for the kernels to split the batch."""
    rng = np.random.default_rng(4)
    graph = _graph(f64, 17, sides=2)
    inputs = _inputs(rng, np.float64, 17, (600,), sides=2)
    inputs[0][::2] = _well_conditioned(rng, 300, 17, 17)
    for got, want in zip(nncompile.compile(graph)(*inputs), run(graph, inputs)):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


# --- failures are values ---------------------------------------------------------------------

def test_singular_and_indefinite_matrices_give_jax_s_values_compiled_and_referenced():
    """Values Keras on JAX (jit) gives: LAPACK's LU of a singular matrix, det 0, division by a
    zero pivot, and a Cholesky factor of NaNs (upper triangle 0) for an indefinite matrix."""
    b = Builder()
    x = b.input("x", f32[BATCH, 2, 2])
    lu, pivots, _ = b.lu(x)
    graph = b.finish([lu, pivots, b.det(x), b.cholesky(x),
                      b.triangular_solve(x, b.input("r", f32[BATCH, 2, 1]), lower=True)])
    singular, indefinite = [[1.0, 2.0], [2.0, 4.0]], [[1.0, 2.0], [2.0, 1.0]]
    zero_pivot = [[0.0, 0.0], [1.0, 1.0]]
    inputs = [np.array([singular, indefinite, zero_pivot], np.float32),
              np.array([[[1.0], [2.0]]] * 3, np.float32)]
    for got in (run(graph, inputs), nncompile.compile(graph)(*inputs)):
        np.testing.assert_array_equal(got[0][0], [[2.0, 4.0], [0.5, 0.0]])
        assert got[1][0].tolist() == [1, 1]
        np.testing.assert_allclose(got[2], [0.0, -3.0, 0.0])
        nan = np.nan
        np.testing.assert_array_equal(got[3][:2], [[[nan, 0.0], [nan, nan]]] * 2)
        np.testing.assert_array_equal(got[4][2], [[np.inf], [-np.inf]])


# --- VJPs against finite differences ----------------------------------------------------------

def test_cholesky_vjp():
    rng = np.random.default_rng(5)
    check_gradients(lambda b, v: b.cholesky(v["x"]), {"x": _spd(rng, 3, 4, 4)}, {"x"}, samples=48)


@pytest.mark.parametrize("flags", SOLVES, ids=lambda f: "-".join(k for k, v in f.items() if v) or "plain")
def test_triangular_solve_vjp(flags):
    rng = np.random.default_rng(6)
    rhs = rng.standard_normal((2, 4, 3) if flags["left_side"] else (2, 3, 4))
    check_gradients(lambda b, v: b.triangular_solve(v["a"], v["b"], **flags),
                    {"a": _well_conditioned(rng, 2, 4, 4), "b": rhs}, {"a", "b"}, samples=32)


def test_lu_vjp():
    """Away from ties between pivot candidates, LU is smooth and its pivots fixed."""
    rng = np.random.default_rng(7)
    check_gradients(lambda b, v: b.lu(v["x"])[0], {"x": rng.standard_normal((2, 5, 5))}, {"x"}, samples=50)


def test_det_vjp():
    rng = np.random.default_rng(8)
    check_gradients(lambda b, v: b.det(v["x"]), {"x": rng.standard_normal((3, 4, 4))}, {"x"}, samples=48)


# --- shape rules and costs ------------------------------------------------------------------

@pytest.mark.parametrize("build, message", [
    (lambda b: b.cholesky(b.input("x", f32[3, 4])), "holds 3x4 matrices; expected square ones"),
    (lambda b: b.lu(b.input("x", f32[3])), "has rank 1; expected matrices"),
    (lambda b: b.det(b.input("x", i32[2, 2])), "has dtype i32; expected f32 or f64"),
    (lambda b: b.det(b.input("x", f16[2, 2])), "has dtype f16; expected f32 or f64"),
    (lambda b: b.cholesky(b.input("x", f32[BATCH, BATCH])), "the matrices' sizes must be static"),
    (lambda b: b.triangular_solve(b.input("a", f32[3, 3]), b.input("r", f32[4, 1])),
     r"has 4 rows; a f32\[3,3\] needs 3"),
    (lambda b: b.triangular_solve(b.input("a", f32[3, 3]), b.input("r", f32[1, 4]), left_side=False),
     "has 4 columns"),
    (lambda b: b.triangular_solve(b.input("a", f32[2, 3, 3]), b.input("r", f32[3, 3, 1])),
     "must have a .*'s dtype and batch axes"),
    (lambda b: b.triangular_solve(b.input("a", f32[3, 3]), b.input("r", f64[3, 1])),
     "must have a .*'s dtype and batch axes"),
])
def test_shape_rules_reject_bad_inputs(build, message):
    with pytest.raises(ShapeError, match=message):
        build(Builder())


def test_costs_are_lapack_s_counts():
    b = Builder()
    x = b.input("x", f32[BATCH, 6, 6])
    nodes = [b.cholesky(x).producer, b.det(x).producer, b.lu(x)[0].producer,
             b.triangular_solve(x, b.input("r", f32[BATCH, 6, 5])).producer]
    assert [node_flops(node, {BATCH: 2}) for node in nodes] == [2 * 72, 2 * 144, 2 * 144, 2 * 36 * 5]


def _cofactors(a: np.ndarray) -> np.ndarray:
    """C[i, j] = (-1)^(i+j) det(a without row i and column j), from numpy's determinants of minors."""
    n = len(a)
    if n == 1:
        return np.ones((1, 1))
    return np.array([[(-1) ** (i + j) * np.linalg.det(np.delete(np.delete(a, i, 0), j, 1)) for j in range(n)]
                     for i in range(n)])


@pytest.mark.parametrize("a", [
    [[1.0, 2.0], [2.0, 4.0]],                                   # rank 1 of 2
    [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]],        # rank 2 of 3
    [[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]],        # rank 2, pivoting rows
    np.zeros((3, 3)).tolist(),                                  # rank 0: no cofactor is non-zero
    [[3.0]],
    [[2.0, 1.0, 0.5], [1.0, 3.0, 0.0], [0.0, 1.0, 4.0]],        # invertible
])
def test_det_gradient_is_the_cofactor_matrix_even_where_singular(a):
    """As JAX's: the gradient of det is its cofactor matrix, finite at singular matrices (where
    det(A) A^-T would be NaN), reference and compiled."""
    a = np.array(a)
    b = Builder()
    g = b.finish([b.det(b.input("x", f64[a.shape]))], ["det"])
    (grad,) = gradients(g, g.outputs[0], [g.inputs[0]])
    g.outputs, g.output_names = [grad], ["grad"]
    want = _cofactors(a)
    np.testing.assert_allclose(run(g, [a])[0], want, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(nncompile.compile(g)(a), want, rtol=1e-9, atol=1e-9)

"""Matrix decompositions over the last two axes (any batch axes before): cholesky,
triangular_solve, lu (partial pivoting) and det, the primitives `keras.ops`' linear algebra
(solve, inv, slogdet, cholesky_inverse, ...) is composed of, as JAX's `lax.linalg`.

Each op works on every matrix of the batch by itself; the matrices' sizes are static, the batch
axes may be symbolic. A failure is a value, not an error, as LAPACK's under `jax.jit`: a matrix
that is not positive definite has a Cholesky factor of NaNs; a zero pivot leaves its column
unscaled, so solving with it divides by zero (inf or NaN) and the determinant is 0.

    >>> from nncompile.ir import BATCH, Builder, f32
    >>> b = Builder()
    >>> lu, pivots, permutation = b.lu(b.input("a", f32[BATCH, 3, 3]))
    >>> pivots.type
    i32[?,3]

The VJPs are JAX's: cholesky's and triangular_solve's standard adjoints, lu's the transpose of
its JVP (so solve, inv and slogdet differentiate through their compositions), det's
det(A) * A^-T.
"""
from __future__ import annotations

import numpy as np

from nncompile.ir.dtypes import DType
from nncompile.ir.errors import ShapeError
from nncompile.ir.optable import OPS, Attr, AttrKind, Fusion, defop
from nncompile.ir.types import TensorType, is_symbol


def _square(t: TensorType, name: str) -> int:
    """The size n of the n x n float matrices in `t`'s last two axes."""
    if t.dtype not in (DType.f32, DType.f64):
        raise ShapeError(f"{name} has dtype {t.dtype}; expected f32 or f64")
    if t.rank < 2:
        raise ShapeError(f"{name} {t} has rank {t.rank}; expected matrices in its last two axes "
                         f"(rank >= 2)")
    rows, cols = t.shape[-2:]
    if is_symbol(rows) or is_symbol(cols):
        raise ShapeError(f"{name} {t}: the matrices' sizes must be static")
    if rows != cols:
        raise ShapeError(f"{name} {t} holds {rows}x{cols} matrices; expected square ones")
    if rows == 0:
        raise ShapeError(f"{name} {t} holds 0x0 matrices; expected at least 1x1 (nncompile does not "
                         f"compute the empty factorizations)")
    return rows


def _same_rule(ts: list[TensorType], attrs: dict) -> TensorType:
    _square(ts[0], "x")
    return ts[0]


def _lu_rule(ts: list[TensorType], attrs: dict) -> list[TensorType]:
    _square(ts[0], "x")
    rows = TensorType(DType.i32, ts[0].shape[:-1])
    return [ts[0], rows, rows]


def _det_rule(ts: list[TensorType], attrs: dict) -> TensorType:
    _square(ts[0], "x")
    return ts[0].with_shape(ts[0].shape[:-2])


def _triangular_solve_rule(ts: list[TensorType], attrs: dict) -> TensorType:
    a, rhs = ts
    n = _square(a, "a")
    if rhs.dtype != a.dtype or rhs.rank != a.rank or rhs.shape[:-2] != a.shape[:-2]:
        raise ShapeError(f"b {rhs} must have a {a}'s dtype and batch axes")
    if any(is_symbol(d) for d in rhs.shape[-2:]):
        raise ShapeError(f"b {rhs}: the matrices' sizes must be static")
    axis = -2 if attrs["left_side"] else -1
    if rhs.shape[axis] != n:
        side = "rows" if attrs["left_side"] else "columns"
        raise ShapeError(f"b {rhs} has {rhs.shape[axis]!r} {side}; a {a} needs {n} "
                         f"(left_side={attrs['left_side']})")
    return rhs


# --- references: loops over the matrix, vectorized over the batch --------------------------------

def _cholesky(xs: list[np.ndarray], attrs: dict) -> np.ndarray:
    """L (lower) with L @ L^T = (x + x^T) / 2, column by column; NaN (lower triangle) for a
    matrix whose pivots are not all > 0, as jax.jit gives."""
    x = xs[0]
    a = (x + np.swapaxes(x, -1, -2)) / 2
    n = a.shape[-1]
    out = np.zeros_like(a)
    failed = np.zeros(a.shape[:-2], bool)
    with np.errstate(invalid="ignore", divide="ignore"):
        for j in range(n):
            row = out[..., j, :j]
            d = a[..., j, j] - np.sum(row * row, axis=-1)
            failed |= ~(d > 0)
            out[..., j, j] = np.sqrt(d)
            below = a[..., j + 1:, j] - np.einsum("...ik,...k->...i", out[..., j + 1:, :j], row)
            out[..., j + 1:, j] = below / out[..., j, j, None]
    out[failed] = np.where(np.tri(n, dtype=bool), np.nan, 0)
    return out


def _triangular_solve(xs: list[np.ndarray], attrs: dict) -> np.ndarray:
    """X with op(A) X = B (left_side) or X op(A) = B, by substitution; only A's triangle is read."""
    a, rhs = xs
    n = a.shape[-1]
    t = np.tril(a) if attrs["lower"] else np.triu(a)
    if attrs["unit_diagonal"]:
        t[..., np.arange(n), np.arange(n)] = 1
    lower = attrs["lower"] != attrs["transpose_a"]
    if attrs["transpose_a"]:
        t = np.swapaxes(t, -1, -2)
    if not attrs["left_side"]:      # X op(A) = B is op(A)^T X^T = B^T
        t, rhs, lower = np.swapaxes(t, -1, -2), np.swapaxes(rhs, -1, -2), not lower
    out = np.zeros_like(rhs)
    with np.errstate(invalid="ignore", divide="ignore"):
        for i in range(n) if lower else reversed(range(n)):
            done = slice(0, i) if lower else slice(i + 1, n)
            known = np.einsum("...j,...jk->...k", t[..., i, done], out[..., done, :])
            out[..., i, :] = (rhs[..., i, :] - known) / t[..., i, i, None]
    return out if attrs["left_side"] else np.swapaxes(out, -1, -2)


def _pivot_rows(column: np.ndarray, k: int) -> np.ndarray:
    """The first row >= k of the largest |column| (a NaN never wins), as BLAS's idamax."""
    best = np.full(column.shape[0], k)
    top = np.abs(column[:, k])
    for i in range(k + 1, column.shape[1]):
        better = np.abs(column[:, i]) > top
        best, top = np.where(better, i, best), np.where(better, np.abs(column[:, i]), top)
    return best


def _lu(xs: list[np.ndarray], attrs: dict) -> list[np.ndarray]:
    """P^T A = L U with L unit lower and U upper packed in one matrix, the row swaps (pivots:
    row k was swapped with pivots[k], LAPACK's ipiv from 0) and the permutation (A[perm] = LU)."""
    x = xs[0]
    batch, n = x.shape[:-2], x.shape[-1]
    lu = np.array(x, copy=True).reshape(-1, n, n)
    pivots = np.zeros((lu.shape[0], n), np.int32)
    perm = np.tile(np.arange(n, dtype=np.int32), (lu.shape[0], 1))
    every = np.arange(lu.shape[0])
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        for k in range(n):
            p = _pivot_rows(lu[:, :, k], k)
            pivots[:, k] = p
            for m in (lu, perm):
                m[every, k], m[every, p] = m[every, p].copy(), m[every, k].copy()
            pivot = lu[:, k, k]
            lu[:, k + 1:, k] /= np.where(pivot != 0, pivot, 1)[:, None]
            lu[:, k + 1:, k + 1:] -= lu[:, k + 1:, k, None] * lu[:, k, None, k + 1:]
    return [lu.reshape(x.shape), pivots.reshape(*batch, n), perm.reshape(*batch, n)]


def _det(xs: list[np.ndarray], attrs: dict) -> np.ndarray:
    """The product of U's diagonal, negated for an odd number of row swaps."""
    lu, pivots, _ = _lu(xs, attrs)
    swaps = np.sum(pivots != np.arange(pivots.shape[-1]), axis=-1)
    diagonal = np.diagonal(lu, axis1=-2, axis2=-1)
    return np.where(swaps % 2 == 1, -1, 1).astype(lu.dtype) * np.prod(diagonal, axis=-1)


_SOLVE_ATTRS = {"lower": Attr(AttrKind.BOOL, False), "transpose_a": Attr(AttrKind.BOOL, False),
                "unit_diagonal": Attr(AttrKind.BOOL, False), "left_side": Attr(AttrKind.BOOL, True)}

defop("cholesky", inputs=("x",), fusion=Fusion.OPAQUE, infer=_same_rule, reference=_cholesky,
      doc="the lower Cholesky factor of (x + x^T) / 2; NaNs where that is not positive definite")
defop("triangular_solve", inputs=("a", "b"), fusion=Fusion.OPAQUE, infer=_triangular_solve_rule,
      reference=_triangular_solve, attrs=_SOLVE_ATTRS,
      doc="X with op(a) X = b (left_side) or X op(a) = b, op(a) = a or a^T; reads a's lower or "
          "upper triangle only, its diagonal as ones if unit_diagonal")
defop("lu", inputs=("x",), fusion=Fusion.OPAQUE, infer=_lu_rule, reference=_lu, num_outputs=3,
      doc="LU with partial pivoting: (L and U packed, i32 pivots, i32 permutation), x[perm] = L U")
defop("det", inputs=("x",), fusion=Fusion.OPAQUE, infer=_det_rule, reference=_det,
      doc="the determinant of each matrix, from its LU factors")


# --- builder helpers shared by the VJPs and keras.ops ------------------------------------------

def swap_last(v) -> list[int]:
    """The permutation swapping a value's last two axes."""
    rank = v.type.rank
    return [*range(rank - 2), rank - 1, rank - 2]


def batch_identity(b, like):
    """The identity matrices of `like`'s shape and dtype."""
    n = like.type.shape[-1]
    eye = b.constant(np.eye(n, dtype=like.type.dtype.numpy))
    return b.broadcast(eye, shape=list(like.type.shape))


def _mask(b, like, values: np.ndarray):
    return b.constant(values.astype(like.type.dtype.numpy))


def permutation_rows(b, permutation, dtype):
    """The matrices P^T with (P^T A)[i] = A[perm[i]], one-hot rows: a matmul applies them."""
    n = permutation.type.shape[-1]
    column = b.reshape(permutation, shape=[*permutation.type.shape, 1])
    return b.cast(b.equal(column, b.constant(np.arange(n, dtype=np.int32))), dtype=dtype)


def lu_solve(b, lu, permutation, rhs, transpose: bool = False):
    """X with A X = B (A^T X = B if `transpose`), from A's `lu` outputs: P^T A = L U gives
    X = U^-1 L^-1 P^T B, and A^T X = B gives X = P L^-T U^-T B."""
    rows = permutation_rows(b, permutation, lu.type.dtype)
    if transpose:
        y = b.triangular_solve(lu, rhs, lower=False, transpose_a=True)
        y = b.triangular_solve(lu, y, lower=True, transpose_a=True, unit_diagonal=True)
        return b.matmul(rows, y, transpose_a=True)
    y = b.triangular_solve(lu, b.matmul(rows, rhs), lower=True, unit_diagonal=True)
    return b.triangular_solve(lu, y, lower=False)


# --- VJPs (autodiff) ---------------------------------------------------------------------------

def _cholesky_vjp(b, node, cts):
    """x̄ = sym(L^-T phi(L^T L̄) L^-1), phi: the lower triangle with its diagonal halved (the
    transpose of JAX's JVP dL = L phi(L^-1 dΣ L^-T)); sym because the op reads (x + x^T) / 2."""
    factor, ct = node.outputs[0], cts[0]
    n = factor.type.shape[-1]
    phi = b.mul(b.matmul(factor, ct, transpose_a=True), _mask(b, factor, np.tri(n) - np.eye(n) / 2))
    inner = b.triangular_solve(factor, phi, lower=True, transpose_a=True)
    sigma = b.triangular_solve(factor, inner, lower=True, left_side=False)
    return [b.mul(b.add(sigma, b.transpose(sigma, perm=swap_last(sigma))), b.scalar(0.5, sigma))]


def _triangle(n: int, lower: bool, strict: bool) -> np.ndarray:
    return np.tril(np.ones((n, n)), -strict) if lower else np.triu(np.ones((n, n)), strict)


def _triangular_solve_vjp(b, node, cts):
    """B̄ solves the transposed system; Ā = -B̄ X^T (op(A) X = B) or -X^T B̄ (X op(A) = B), for
    op(A) (transposed back if transpose_a), on the triangle the op reads."""
    a = node.inputs[0]
    x, ct = node.outputs[0], cts[0]
    attrs = dict(node.attrs)
    left, flipped = attrs["left_side"], attrs["transpose_a"]
    db = b.triangular_solve(a, ct, **{**attrs, "transpose_a": not flipped})
    # -db x^T, -x db^T, -x^T db, -db^T x: the four sides and transposes as matmul flags
    first, second = (db, x) if left != flipped else (x, db)
    product = (b.matmul(first, second, transpose_b=True) if left
               else b.matmul(first, second, transpose_a=True))
    n = a.type.shape[-1]
    mask = -_triangle(n, attrs["lower"], attrs["unit_diagonal"])
    return [b.mul(product, _mask(b, a, mask)), db]


def _lu_vjp(b, node, cts):
    """The transpose of JAX's LU JVP: with F = L^-1 P^T dA U^-1, dL = L tril(F, -1) and
    dU = triu(F) U, so F̄ = tril(L^T Ḡ, -1) + triu(Ḡ U^T) and Ā = P L^-T F̄ U^-T."""
    lu, _, permutation = node.outputs
    ct = cts[0]
    n = lu.type.shape[-1]
    strict_lower, upper = _mask(b, lu, np.tri(n, k=-1)), _mask(b, lu, np.triu(np.ones((n, n))))
    lower = b.add(b.mul(lu, strict_lower), b.constant(np.eye(n, dtype=lu.type.dtype.numpy)))
    f = b.add(b.mul(b.matmul(lower, ct, transpose_a=True), strict_lower),
              b.mul(b.matmul(ct, b.mul(lu, upper), transpose_b=True), upper))
    y = b.triangular_solve(lu, f, lower=True, transpose_a=True, unit_diagonal=True)
    m = b.triangular_solve(lu, y, lower=False, transpose_a=True, left_side=False)
    return [b.matmul(permutation_rows(b, permutation, lu.type.dtype), m, transpose_a=True)]


def _det_vjp(b, node, cts):
    """Ā = ḡ adj(A)^T, the cofactors, which det(A) A^-T is for an invertible A; finite where A
    has rank n - 1 too (a rank-one matrix; zeros below that), as JAX's cofactor solve makes it."""
    x, det = node.inputs[0], node.outputs[0]
    matrix = [*det.type.shape, 1, 1]
    if x.type.shape[-1] == 1:
        return [b.broadcast(b.reshape(cts[0], shape=matrix), shape=list(x.type.shape))]
    return [b.mul(b.reshape(cts[0], shape=matrix), b.transpose(adjugate(b, x, det), perm=swap_last(x)))]


def adjugate(b, x, det):
    """adj(A) = det(A) A^-1 by A's LU factors P^T A = L U, without dividing by U's last pivot
    (JAX's `_cofactor_solve`): with that pivot replaced by 1 / (the product of the others, signed),
    det(A) A^-1 = U'^-1 D L^-1 P^T, D scaling every row but the last by det(A); for rank n - 1
    that is the rank-one adjugate (det(A) = 0), and a matrix of lower rank, whose solve then
    overflows, has a zero adjugate."""
    n, dtype = x.type.shape[-1], x.type.dtype
    lu, pivots, permutation = b.lu(x)
    eye = _mask(b, x, np.eye(n))
    diagonal = b.reduce_sum(b.mul(lu, eye), axes=[x.type.rank - 1])
    leading = b.reduce_prod(b.slice(diagonal, starts=[0], ends=[n - 1], axes=[x.type.rank - 2], steps=[1]),
                            axes=[x.type.rank - 2])
    swaps = b.reduce_sum(b.cast(b.not_equal(pivots, b.constant(np.arange(n, dtype=np.int32))), dtype=dtype),
                         axes=[x.type.rank - 2])
    odd = b.fmod(swaps, b.scalar(2.0, swaps))
    partial = b.mul(leading, b.sub(b.scalar(1.0, odd), b.mul(odd, b.scalar(2.0, odd))))
    corner = _mask(b, x, np.eye(n) * (np.arange(n) == n - 1))
    as_matrix = [*det.type.shape, 1, 1]
    lu = b.add(b.mul(lu, b.sub(b.scalar(1.0, corner), corner)),
               b.mul(corner, b.reshape(b.reciprocal(partial), shape=as_matrix)))
    y = b.triangular_solve(lu, permutation_rows(b, permutation, dtype), lower=True, unit_diagonal=True)
    last_row = _mask(b, x, np.outer(np.arange(n) == n - 1, np.ones(n)))
    rows = b.add(last_row, b.mul(b.reshape(det, shape=as_matrix), b.sub(b.scalar(1.0, last_row), last_row)))
    adj = b.triangular_solve(lu, b.mul(y, rows), lower=False)
    finite = b.less(b.abs(adj), b.scalar(np.inf, adj))
    whole = b.reduce_min(b.cast(finite, dtype=dtype), axes=[x.type.rank - 2, x.type.rank - 1], keepdims=True)
    zeros = b.broadcast(b.scalar(0.0, adj), shape=list(adj.type.shape))
    return b.select(b.greater(b.broadcast(whole, shape=list(adj.type.shape)), b.scalar(0.5, adj)), adj, zeros)


OPS["cholesky"].vjp = _cholesky_vjp
OPS["triangular_solve"].vjp = _triangular_solve_vjp
OPS["lu"].vjp = _lu_vjp
OPS["det"].vjp = _det_vjp

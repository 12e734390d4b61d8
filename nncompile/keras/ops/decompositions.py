"""Linear algebra of `keras.ops` on the IR's matrix decompositions (cholesky, triangular_solve,
lu, det; nncompile/ir/ops/decompositions.py): cholesky, cholesky_inverse, solve_triangular,
solve, inv, det, slogdet, logdet and lu_factor, as Keras 3 on JAX computes them, and
differentiable through the primitives' VJPs.

Matrices are the last two axes, any batch axes before (broadcast between a and b); ints and
bools compute in floatx, float16 in float32 (LAPACK has no half precision) and comes back as
float16. A singular matrix gives inf or NaN and a determinant of 0, not an error; cholesky of a
matrix that is not positive definite raises eagerly and is NaN when traced, as on JAX.

    >>> from nncompile.keras import ops
    >>> a = np.array([[4.0, 2.0], [2.0, 3.0]], "float32")
    >>> ops.cholesky(a)
    array([[2.       , 0.       ],
           [1.       , 1.4142135]], dtype=float32)
    >>> ops.solve(a, np.array([1.0, 2.0], "float32"))
    array([-0.125,  0.75 ], dtype=float32)
    >>> float(ops.det(a))
    8.0
"""
from __future__ import annotations

import numpy as np

from nncompile.ir.ops.decompositions import batch_identity, lu_solve, swap_last
from nncompile.ir.types import broadcast_shapes
from nncompile.keras.ops.core import (EagerValue, float_dtype, keras_op, result_type, shape_of,
                                      static_length, tensor, unsupported)


def _working(dtype: str) -> str:
    return "float32" if dtype == "float16" else dtype


def _matrices(b, x, op: str, dtype: str | None = None, square: str | None = None):
    """x as float matrices in the dtype the primitives compute in, with Keras's errors for a
    rank below 2 or non-square matrices (`square`: the message's format, if not Keras's)."""
    v = tensor(b, x, _working(dtype or float_dtype(x)))
    if v.type.rank < 2:
        raise ValueError((square or "Expected input to have rank >= 2. Received input with "
                                    "shape {}.").format(shape_of(v)))
    rows, cols = (static_length(v, v.type.rank - i, op) for i in (2, 1))
    if rows != cols:
        raise ValueError((square or "Expected a square matrix. Received non-square input with "
                                    "shape {}").format(shape_of(v)))
    return v


def _broadcast(b, v, batch: tuple):
    shape = (*batch, *v.type.shape[-2:])
    return v if tuple(v.type.shape) == shape else b.broadcast(v, shape=list(shape))


def _system(b, a, rhs, op: str, solve, batched_vectors: bool = False):
    """`solve(a, b)` on a's matrices and b's, batch axes broadcast; b is a vector if 1-D (or, if
    `batched_vectors`, one axis short of a and as long as its rows, as jax.scipy's
    solve_triangular). The result has b's shape and both operands' float dtype."""
    dtype = float_dtype(result_type(a, rhs))
    m = _matrices(b, a, op, dtype)
    v = tensor(b, rhs, _working(dtype))
    if v.type.rank < 1:
        raise ValueError(f"Expected input to have rank >= 1. Received scalar input {rhs}.")
    n = m.type.shape[-1]
    vector = v.type.rank == 1 or (batched_vectors and v.type.rank == m.type.rank - 1
                                   and v.type.shape[-1] == n)
    if vector:
        v = b.reshape(v, shape=[*v.type.shape, 1])
    if v.type.rank < 2 or v.type.shape[-2] != n:
        axis = -1 if vector else -2
        raise ValueError(f"Incompatible shapes between `a` and `b`. Expected `a.shape[{axis}] == "
                         f"b.shape[{axis}]`. Received: a.shape={shape_of(m)}, b.shape={shape_of(rhs)}")
    static_length(v, v.type.rank - 1, op, "b's last axis")
    batch = broadcast_shapes(m.type.shape[:-2], v.type.shape[:-2])
    out = solve(_broadcast(b, m, batch), _broadcast(b, v, batch))
    if vector:
        out = b.reshape(out, shape=list(out.type.shape[:-1]))
    return tensor(b, out, dtype)


@keras_op
def cholesky(b, x, upper=False):
    """The Cholesky factor of the symmetric positive-definite matrices x (their symmetric part,
    as JAX): lower L with L @ L^T = x, or upper U = L^T with U^T @ U = x if `upper`."""
    dtype = float_dtype(x)
    factor = b.cholesky(_matrices(b, x, "cholesky", dtype))
    if isinstance(factor, EagerValue) and np.isnan(factor.array).any():
        raise ValueError("Cholesky decomposition failed. The input might not be a valid positive "
                         "definite matrix.")
    if upper:
        factor = b.transpose(factor, perm=swap_last(factor))
    return tensor(b, factor, dtype)


@keras_op
def cholesky_inverse(b, x, upper=False):
    """The inverse of L @ L^T given its Cholesky factor x = L (lower triangle read), or of
    U^T @ U given x = U if `upper` (torch's and Keras's cholesky_inverse).

    >>> cholesky_inverse(np.array([[2.0, 0.0], [1.0, 1.0]], "float32"))
    array([[ 0.5, -0.5],
           [-0.5,  1. ]], dtype=float32)
    """
    dtype = float_dtype(x)
    factor = _matrices(b, x, "cholesky_inverse", dtype)
    inverse = b.triangular_solve(factor, batch_identity(b, factor), lower=not upper)
    out = b.matmul(inverse, inverse, transpose_b=upper, transpose_a=not upper)
    return tensor(b, out, dtype)


@keras_op
def solve_triangular(builder, a, b, lower=False):
    """x with a @ x = b for triangular a: its upper triangle (or lower, if `lower`) is read;
    b is a vector (M,), vectors (..., M) or matrices (..., M, N).

    >>> solve_triangular(np.array([[2.0, 0.0], [1.0, 1.0]], "float32"), np.array([2.0, 3.0], "float32"), lower=True)
    array([1., 2.], dtype=float32)
    """
    return _system(builder, a, b, "solve_triangular",
                   lambda m, v: builder.triangular_solve(m, v, lower=bool(lower)), batched_vectors=True)


def _lu_solve(b, m, v):
    lu, _, permutation = b.lu(m)
    return lu_solve(b, lu, permutation, v)


@keras_op
def solve(builder, a, b):
    """x with a @ x = b, by LU with partial pivoting; b is a vector (M,) or matrices
    (..., M, N) (numpy 2's and JAX's rule)."""
    return _system(builder, a, b, "solve", lambda m, v: _lu_solve(builder, m, v))


@keras_op
def inv(b, x):
    """The inverse of each matrix (LU with partial pivoting; inf or NaN where one is singular).

    >>> inv(np.array([[2.0, 0.0], [0.0, 4.0]], "float32"))
    array([[0.5 , 0.  ],
           [0.  , 0.25]], dtype=float32)
    """
    dtype = float_dtype(x)
    m = _matrices(b, x, "inv", dtype)
    return tensor(b, _lu_solve(b, m, batch_identity(b, m)), dtype)


@keras_op
def det(b, x):
    """The determinant of each matrix, shape (...)."""
    dtype = float_dtype(x)
    return tensor(b, b.det(_matrices(b, x, "det", dtype)), dtype)


_SLOGDET_SHAPE = "Argument to slogdet() must have shape [..., n, n], got {}"


@keras_op
def slogdet(b, x):
    """(sign, log|det|) of each matrix, both of shape (...): sign is 1, -1 or 0 (log|det| then
    -inf), from the LU factors' diagonal and the parity of the row swaps.

    >>> [float(v) for v in slogdet(np.array([[0.0, 2.0], [3.0, 0.0]], "float32"))]
    [-1.0, 1.7917594909667969]
    """
    dtype = float_dtype(x)
    m = _matrices(b, x, "slogdet", dtype, square=_SLOGDET_SHAPE)
    lu, pivots, _ = b.lu(m)
    n, rank = lu.type.shape[-1], lu.type.rank
    flat = b.reshape(lu, shape=[*lu.type.shape[:-2], n * n])
    diagonal = b.gather(flat, b.constant(np.arange(n, dtype=np.int32) * (n + 1)), axis=rank - 2)
    swapped = b.not_equal(pivots, b.constant(np.arange(n, dtype=np.int32)))
    swaps = b.reduce_sum(b.cast(swapped, dtype=lu.type.dtype), axes=[rank - 2])
    parity = b.sub(b.scalar(1.0, swaps), b.mul(b.scalar(2.0, swaps), b.fmod(swaps, b.scalar(2.0, swaps))))
    sign = b.mul(parity, b.reduce_prod(b.sign(diagonal), axes=[rank - 2]))
    logabsdet = b.reduce_sum(b.log(b.abs(diagonal)), axes=[rank - 2])
    return tensor(b, sign, dtype), tensor(b, logabsdet, dtype)


@keras_op
def logdet(b, x):
    """log|det| of each matrix (slogdet's second part, as Keras on JAX: the log of the
    determinant for the positive-definite matrices it is meant for)."""
    return slogdet.__wrapped__(b, x)[1]


@keras_op
def lu_factor(b, x):
    """(lu, pivots): L (unit lower, its ones not stored) and U packed in one matrix with
    P^T @ x = L @ U, and the int32 row swaps (row i swapped with pivots[i]), LAPACK's getrf.

    >>> lu, pivots = lu_factor(np.array([[1.0, 2.0], [3.0, 4.0]], "float32"))
    >>> lu.tolist(), pivots.tolist()
    ([[3.0, 4.0], [0.3333333432674408, 0.6666666269302368]], [1, 1])
    """
    dtype = float_dtype(x)
    v = tensor(b, x, _working(dtype))
    if v.type.rank >= 2 and v.type.shape[-2] != v.type.shape[-1]:
        raise unsupported("lu_factor", f"the LU factors of non-square matrices ({shape_of(v)})")
    lu, pivots, _ = b.lu(_matrices(b, v, "lu_factor"))
    return tensor(b, lu, dtype), pivots

"""Products of `keras.ops`: matmul, dot, tensordot and einsum, all on the IR's batched matmul; and
norms, cross products and distances. As `keras.ops.linalg`, it also offers the decompositions
and solves of decompositions.py.

    >>> from nncompile.keras import ops
    >>> ops.einsum("ij,jk->ik", np.ones((2, 3)), np.ones((3, 4))).shape
    (2, 4)
"""
from __future__ import annotations

import math
import string

import numpy as np

from nncompile.ir.types import is_symbol
from nncompile.keras.ops.core import canonical_axis, float_dtype, keras_op, result_type, tensor, unsupported
from nncompile.keras.ops.decompositions import (cholesky, cholesky_inverse, det, inv, lu_factor,  # noqa: F401
                                                solve, solve_triangular)  # (keras.ops.linalg's names)


def _product_dtype(*xs) -> str:
    """Keras's dtype of a product: bools and 8-bit integers accumulate in int32."""
    dtype = result_type(*xs)
    return "int32" if dtype in ("bool", "int8", "uint8") else dtype


@keras_op
def matmul(b, x1, x2):
    """numpy's matmul: the product of the last two axes, batch axes broadcast; a 1-D operand is
    a vector.

    >>> matmul(np.ones((2, 3)), np.ones(3))
    array([3., 3.])
    """
    dtype = _product_dtype(x1, x2)
    a, c = tensor(b, x1, dtype), tensor(b, x2, dtype)
    if a.type.rank == 0 or c.type.rank == 0:
        raise ValueError("ops.matmul: operands must not be scalars; use ops.multiply")
    a_vec, c_vec = a.type.rank == 1, c.type.rank == 1
    if a_vec:
        a = b.reshape(a, shape=[1, a.type.shape[0]])
    if c_vec:
        c = b.reshape(c, shape=[c.type.shape[0], 1])
    out = b.matmul(a, c)
    dims = list(out.type.shape)
    drop = ([len(dims) - 2] if a_vec else []) + ([len(dims) - 1] if c_vec else [])
    if drop:
        out = b.reshape(out, shape=[d for i, d in enumerate(dims) if i not in drop])
    return out


@keras_op
def tensordot(b, x1, x2, axes=2):
    """Sum of products over `axes`: an int N (the last N of x1 with the first N of x2) or a pair
    of axis lists.

    >>> tensordot(np.ones((2, 3)), np.ones((3, 4)), axes=1).shape
    (2, 4)
    """
    a, c = tensor(b, x1), tensor(b, x2)
    ra, rc = a.type.rank, c.type.rank
    if isinstance(axes, (int, np.integer)):
        axes_a, axes_c = list(range(ra - axes, ra)), list(range(axes))
    else:
        axes_a, axes_c = ([axes[0]] if isinstance(axes[0], (int, np.integer)) else axes[0],
                          [axes[1]] if isinstance(axes[1], (int, np.integer)) else axes[1])
    axes_a = [canonical_axis(i, ra, "tensordot") for i in axes_a]
    axes_c = [canonical_axis(i, rc, "tensordot") for i in axes_c]
    letters = iter(string.ascii_letters)
    sa = [next(letters) for _ in range(ra)]
    sc = [next(letters) for _ in range(rc)]
    for i, j in zip(axes_a, axes_c):
        sc[j] = sa[i]
    out = [s for i, s in enumerate(sa) if i not in axes_a] + [s for j, s in enumerate(sc)
                                                              if j not in axes_c]
    return _einsum(b, f"{''.join(sa)},{''.join(sc)}->{''.join(out)}", [a, c])


@keras_op
def dot(b, x1, x2):
    """numpy's dot: scalars multiply; otherwise the last axis of x1 against the second-to-last
    of x2 (its only one if 1-D)."""
    a, c = tensor(b, x1), tensor(b, x2)
    if a.type.rank == 0 or c.type.rank == 0:
        dtype = result_type(x1, x2)
        return b.mul(tensor(b, a, dtype), tensor(b, c, dtype))
    return tensordot.__wrapped__(b, a, c, axes=([-1], [max(c.type.rank - 2, 0)]))


@keras_op
def outer(b, x1, x2):
    """Every element of x1 (flattened) times every element of x2 (flattened)."""
    dtype = result_type(x1, x2)
    a, c = (b.reshape(tensor(b, x, dtype), shape=shape) for x, shape in ((x1, [-1, 1]),
                                                                        (x2, [1, -1])))
    return b.mul(a, c)


@keras_op
def vdot(b, x1, x2):
    """The sum of the products of x1's and x2's elements (both flattened)."""
    a, c = (b.reshape(v, shape=[-1]) for v in (tensor(b, x1), tensor(b, x2)))
    return _einsum(b, "i,i->", [a, c])


@keras_op
def einsum(b, subscripts, *operands):
    """Einstein summation over the operands' labelled axes, e.g. "bij,bjk->bik".

    Contractions become one batched matmul per pair of operands (left to right); a label
    repeated within one operand (a diagonal) is not expressible.

    >>> einsum("i,i->", np.arange(3.0), np.arange(3.0))
    array(5.)
    """
    return _einsum(b, subscripts, list(operands))


def _einsum(b, subscripts: str, operands: list):
    dtype = _product_dtype(*operands)
    values = [tensor(b, x, dtype) for x in operands]
    inputs, output = _parse(subscripts.replace(" ", ""), [v.type.rank for v in values])
    for labels in inputs:
        if len(set(labels)) != len(labels):
            raise unsupported("einsum", f"a label repeated within one operand ({labels!r}: "
                                        f"a diagonal)")
    current, labels = values[0], inputs[0]
    for k in range(1, len(values)):
        later = set(output).union(*inputs[k + 1:])
        current, labels = _pair(b, current, labels, values[k], inputs[k], later)
    current, labels = _sum_out(b, current, labels, set(output))
    return _permute(b, current, labels, output)


def _parse(subscripts: str, ranks: list[int]) -> tuple[list[str], str]:
    """Operand labels and output labels, with "..." spelled out as capital letters."""
    lhs, arrow, rhs = subscripts.partition("->")
    inputs = lhs.split(",")
    if len(inputs) != len(ranks):
        raise ValueError(f"ops.einsum: {subscripts!r} names {len(inputs)} operands; "
                         f"{len(ranks)} given")
    # numpy aligns "..." from the right: an operand with fewer such axes takes the last ones.
    extras = [rank - (len(labels) - 3) if "..." in labels else 0
              for labels, rank in zip(inputs, ranks)]
    spare = [c for c in string.ascii_uppercase if c not in subscripts]
    ellipsis = "".join(spare[:max(extras, default=0)])
    for i, (labels, rank, extra) in enumerate(zip(list(inputs), ranks, extras)):
        inputs[i] = labels.replace("...", ellipsis[len(ellipsis) - extra:])
        if len(inputs[i]) != rank:
            raise ValueError(f"ops.einsum: operand {i} has rank {rank} but {labels!r} names "
                             f"{len(inputs[i])} axes")
    if not arrow:
        counts = {c: lhs.count(c) for c in lhs if c.isalpha()}
        rhs = ellipsis + "".join(sorted(c for c, n in counts.items() if n == 1))
    return inputs, rhs.replace("...", ellipsis)


def _sum_out(b, v, labels: str, keep: set):
    """Sum away the labels of `v` that nothing later needs."""
    axes = [i for i, c in enumerate(labels) if c not in keep]
    if not axes:
        return v, labels
    return (b.reduce_sum(v, axes=axes, keepdims=False),
            "".join(c for c in labels if c in keep))


def _permute(b, v, labels: str, order: str):
    if labels == order:
        return v
    return b.transpose(v, perm=[labels.index(c) for c in order])


def _merged(dims: list, what: str):
    """The size of several axes made one; a symbolic axis can only stand alone."""
    if len(dims) == 1:
        return dims[0]
    if any(is_symbol(d) for d in dims):
        raise unsupported("einsum", f"merging {what} axes {dims} that include a symbolic one")
    return math.prod(dims)


def _pair(b, x, xl: str, y, yl: str, later: set):
    """x and y contracted over their shared labels that nothing later needs, as one matmul of
    (batch, free_x, shared) by (batch, shared, free_y).

    x's free axes stay axes of their own (all but the last as batch axes the matmul broadcasts
    y over), so a symbolic one (the batch) needs no merging; y's free axes and the shared ones
    become one axis each.
    """
    x, xl = _sum_out(b, x, xl, later | set(yl))
    y, yl = _sum_out(b, y, yl, later | set(xl))
    batch = [c for c in xl if c in yl and c in later]
    shared = [c for c in xl if c in yl and c not in later]
    free_x = [c for c in xl if c not in yl]
    free_y = [c for c in yl if c not in xl]
    size = {**dict(zip(yl, y.type.shape)), **dict(zip(xl, x.type.shape))}
    for c in shared:
        dx, dy = x.type.shape[xl.index(c)], y.type.shape[yl.index(c)]
        if dx != dy:
            raise ValueError(f"ops.einsum: label {c!r} has size {dx!r} in one operand and "
                             f"{dy!r} in another")
    x = _permute(b, x, xl, "".join(batch + free_x + shared))
    y = _permute(b, y, yl, "".join(batch + shared + free_y))
    rows = [size[c] for c in free_x] or [1]
    k = _merged([size[c] for c in shared] or [1], "contracted")
    n = _merged([size[c] for c in free_y] or [1], "free")
    x = b.reshape(x, shape=[*x.type.shape[:len(batch)], *rows, k])
    y = b.reshape(y, shape=[*y.type.shape[:len(batch)], *[1] * (len(rows) - 1), k, n])
    out = b.matmul(x, y)
    return (b.reshape(out, shape=[*out.type.shape[:-1 - len(rows)], *[size[c] for c in free_x],
                                  *[size[c] for c in free_y]]),
            "".join(batch + free_x + free_y))


# --- norms and distances -------------------------------------------------------------------------

def _vector_norm(b, v, order, axes: list[int], keepdims: bool):
    if order is None or order == 2:
        return b.sqrt(b.reduce_sum(b.square(v), axes=axes, keepdims=keepdims))
    if order == np.inf:
        return b.reduce_max(b.abs(v), axes=axes, keepdims=keepdims)
    if order == -np.inf:
        return b.reduce_min(b.abs(v), axes=axes, keepdims=keepdims)
    if order == 0:
        return b.reduce_sum(b.cast(b.not_equal(v, b.scalar(0.0, v)), dtype=v.type.dtype), axes=axes,
                            keepdims=keepdims)
    if order == 1:
        return b.reduce_sum(b.abs(v), axes=axes, keepdims=keepdims)
    p = b.scalar(float(order), v)
    return b.pow(b.reduce_sum(b.pow(b.abs(v), p), axes=axes, keepdims=keepdims), b.reciprocal(p))


def _matrix_norm(b, v, order, axes: list[int], keepdims: bool):
    if order in (None, "fro"):
        return b.sqrt(b.reduce_sum(b.square(v), axes=axes, keepdims=keepdims))
    if order not in (1, -1, np.inf, -np.inf):
        raise unsupported("norm", f"ord={order!r} of a matrix (its singular values)")
    rows, cols = axes
    # ord 1: the largest column sum of |x| (sum over rows); inf: the largest row sum
    summed, across = (rows, cols) if order in (1, -1) else (cols, rows)
    sums = b.reduce_sum(b.abs(v), axes=[summed], keepdims=True)
    pick = b.reduce_max if order in (1, np.inf) else b.reduce_min
    out = pick(sums, axes=[across], keepdims=True)
    return out if keepdims else b.reshape(out, shape=[d for a, d in enumerate(v.type.shape) if a not in axes])


@keras_op
def norm(b, x, ord=None, axis=None, keepdims=False):  # noqa: A002  (Keras's name)
    """numpy's norm: of vectors along one axis (ord None or 2, 1, inf, -inf, 0 or any p), of
    matrices along two (None or "fro", 1, -1, inf, -inf); with no axis, of x as a vector (ord
    None) or as its vector or matrix (1-D or 2-D x).

    >>> float(norm(np.array([3.0, 4.0], "float32")))
    5.0
    """
    v = tensor(b, x, float_dtype(x))
    rank = v.type.rank
    if axis is None:
        if ord is None:
            return _vector_norm(b, v, None, list(range(rank)), keepdims)
        if rank not in (1, 2):
            raise ValueError(f"ops.norm: with ord={ord!r} and no axis, x must be 1-D or 2-D; received rank {rank}")
        axis = tuple(range(rank))
    axes = [canonical_axis(a, rank, "norm") for a in np.atleast_1d(axis).tolist()]
    if len(axes) == 1:
        if isinstance(ord, str):
            raise ValueError(f"ops.norm: ord={ord!r} is for matrices; a vector norm takes a number")
        return _vector_norm(b, v, ord, axes, keepdims)
    if len(axes) != 2 or axes[0] == axes[1]:
        raise ValueError(f"ops.norm: axis must be one axis or two different ones; received {axis!r}")
    return _matrix_norm(b, v, ord, axes, keepdims)


@keras_op
def cross(b, x1, x2, axisa=-1, axisb=-1, axisc=-1, axis=None):
    """The cross product of 3-vectors (or of 2-vectors: its z component) along the given axes,
    as numpy's cross."""
    if axis is not None:
        axisa = axisb = axisc = axis
    dtype = result_type(x1, x2)     # int8 and uint8 stay so (and wrap), as numpy's
    u, v = tensor(b, x1, dtype), tensor(b, x2, dtype)
    u = b.transpose(u, perm=_last(u.type.rank, canonical_axis(axisa, u.type.rank, "cross")))
    v = b.transpose(v, perm=_last(v.type.rank, canonical_axis(axisb, v.type.rank, "cross")))
    nu, nv = u.type.shape[-1], v.type.shape[-1]
    if nu not in (2, 3) or nv not in (2, 3):
        raise ValueError(f"ops.cross: the vectors must have 2 or 3 components; received {nu} and {nv}")

    def part(w, i):
        if i >= w.type.shape[-1]:
            return b.broadcast(b.scalar(0, w), shape=list(w.type.shape[:-1]))
        return b.reshape(b.slice(w, starts=[i], ends=[i + 1], axes=[w.type.rank - 1], steps=[1]),
                         shape=list(w.type.shape[:-1]))
    (a0, a1, a2), (c0, c1, c2) = ([part(w, i) for i in range(3)] for w in (u, v))
    z = b.sub(b.mul(a0, c1), b.mul(a1, c0))
    if nu == 2 and nv == 2:
        return z
    # the three components, each of the operands' leading shapes broadcast together
    xyz = [b.sub(b.mul(a1, c2), b.mul(a2, c1)), b.sub(b.mul(a2, c0), b.mul(a0, c2)), z]
    rank = z.type.rank
    stacked = b.concat(*[b.reshape(w, shape=[*w.type.shape, 1]) for w in xyz], axis=rank)
    return b.transpose(stacked, perm=_from_last(rank + 1, canonical_axis(axisc, rank + 1, "cross")))


def _last(rank: int, axis: int) -> list[int]:
    return [a for a in range(rank) if a != axis] + [axis]


def _from_last(rank: int, axis: int) -> list[int]:
    perm = list(range(rank - 1))
    perm.insert(axis, rank - 1)
    return perm


@keras_op
def cdist(b, x, y):
    """The Euclidean distances between the rows of x (..., m, d) and of y (..., n, d), (..., m, n)."""
    dtype = float_dtype(result_type(x, y, float))
    u, v = tensor(b, x, dtype), tensor(b, y, dtype)
    rows = b.reshape(u, shape=[*u.type.shape[:-1], 1, u.type.shape[-1]])
    others = b.reshape(v, shape=[*v.type.shape[:-2], 1, *v.type.shape[-2:]])
    return b.sqrt(b.reduce_sum(b.square(b.sub(rows, others)), axes=[max(u.type.rank, v.type.rank)]))

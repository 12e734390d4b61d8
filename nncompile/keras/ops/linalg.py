"""Products of `keras.ops`: matmul, dot, tensordot and einsum, all on the IR's batched matmul.

    >>> from nncompile.keras import ops
    >>> ops.einsum("ij,jk->ik", np.ones((2, 3)), np.ones((3, 4))).shape
    (2, 4)
"""
from __future__ import annotations

import math
import string

import numpy as np

from nncompile.ir.types import is_symbol
from nncompile.keras.ops.core import canonical_axis, keras_op, result_type, tensor, unsupported


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

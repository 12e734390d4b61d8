"""More of `keras.ops`' numpy-like array functions, each composed from the op table: diagonals
and traces, rolls and rotations, ranges and grids, products of arrays, differences, bins and
membership, weighted averages and the NaN-ignoring reductions.

    >>> from nncompile.keras import ops
    >>> ops.trace(np.arange(9, dtype="int32").reshape(3, 3))
    array(12, dtype=int32)
"""
from __future__ import annotations

import numpy as np

from nncompile.ir import Value
from nncompile.keras.ops.arrays import flip, moveaxis
from nncompile.keras.ops.core import (canonical_axis, float_dtype, ir_dtype, keras_op, result_type,
                                      standardize_dtype, static_length, tensor, tensors)
from nncompile.keras.ops.linalg import tensordot
from nncompile.keras.ops.numpy import _accumulating_dtype, running
from nncompile.keras.ops.numpy_math import _atan2


# --- diagonals ---------------------------------------------------------------------------------

@keras_op
def diagonal(b, x, offset=0, axis1=0, axis2=1):
    """The `offset`-th diagonal of the matrices in axes `axis1`, `axis2`, as the last axis (numpy's
    diagonal): a gather from the two axes flattened into one."""
    v = tensor(b, x)
    rank = v.type.rank
    a1, a2 = canonical_axis(axis1, rank, "diagonal"), canonical_axis(axis2, rank, "diagonal")
    if a1 == a2:
        raise ValueError("ops.diagonal: axis1 and axis2 cannot be the same")
    n1, n2 = static_length(v, a1, "diagonal"), static_length(v, a2, "diagonal")
    rest = [a for a in range(rank) if a not in (a1, a2)]
    moved = b.transpose(v, perm=[*rest, a1, a2])
    flat = b.reshape(moved, shape=[*moved.type.shape[:-2], n1 * n2])
    first_row, first_col = max(0, -offset), max(0, offset)
    length = max(0, min(n1 - first_row, n2 - first_col))
    at = (np.arange(length) + first_row) * n2 + np.arange(length) + first_col
    return b.gather(flat, b.constant(at.astype(np.int32)), axis=rank - 2)


@keras_op
def diag(b, x, k=0):
    """A vector's matrix with it on the k-th diagonal, or a matrix's k-th diagonal (numpy's diag)."""
    v = tensor(b, x)
    if v.type.rank == 2:
        return diagonal.__wrapped__(b, v, k)
    if v.type.rank != 1:
        raise ValueError(f"ops.diag: input must be 1-D or 2-D; received shape {v.type.shape}")
    n = static_length(v, 0, "diag")
    size = n + abs(k)
    # v padded to the matrix's size and laid along its rows (k >= 0) or columns (k < 0)
    padded = b.pad(v, pads=[0, abs(k)], value=0.0)
    along = b.reshape(padded, shape=[size, 1] if k >= 0 else [1, size])
    full = b.broadcast(along, shape=[size, size])
    return b.select(b.constant(np.eye(size, k=k, dtype=bool)), full, b.scalar(0, v))


@keras_op
def diagflat(b, x, k=0):
    """The matrix with the flattened `x` on its k-th diagonal."""
    return diag.__wrapped__(b, b.reshape(tensor(b, x), shape=[-1]), k)


@keras_op
def trace(b, x, offset=0, axis1=0, axis2=1):
    """The sum of the `offset`-th diagonal (bools and narrow integers summed in int32)."""
    v = tensor(b, x)
    d = diagonal.__wrapped__(b, tensor(b, v, _accumulating_dtype(v)), offset, axis1, axis2)
    return b.reduce_sum(d, axes=[d.type.rank - 1])


def tri(N, M=None, k=0, dtype=None) -> np.ndarray:
    """Ones at and below the k-th diagonal of an N x M matrix (M defaults to N): a constant."""
    return np.tri(N, M, k, dtype=ir_dtype(standardize_dtype(dtype)).numpy)


# --- rolls, flips and rotations --------------------------------------------------------------

@keras_op
def roll(b, x, shift, axis=None):
    """`x` with its elements shifted by `shift` along `axis` (None: of the flattened `x`, reshaped
    back), those past the end coming round to the start."""
    v = tensor(b, x)
    if axis is None:
        flat = b.reshape(v, shape=[-1])
        return b.reshape(roll.__wrapped__(b, flat, shift, 0), shape=list(v.type.shape))
    shifts, axes = np.broadcast_arrays(np.atleast_1d(shift), np.atleast_1d(axis))
    for s, a in zip(shifts.tolist(), axes.tolist()):
        a = canonical_axis(a, v.type.rank, "roll")
        n = static_length(v, a, "roll")
        cut = n - s % n
        if cut % n:
            v = b.concat(b.slice(v, starts=[cut], ends=[n], axes=[a], steps=[1]),
                         b.slice(v, starts=[0], ends=[cut], axes=[a], steps=[1]), axis=a)
    return v


@keras_op
def fliplr(b, x):
    """`x` with the order along axis 1 reversed."""
    return flip.__wrapped__(b, x, 1)


@keras_op
def flipud(b, x):
    """`x` with the order along axis 0 reversed."""
    return flip.__wrapped__(b, x, 0)


@keras_op
def rot90(b, array, k=1, axes=(0, 1)):
    """`array` turned by 90 degrees `k` times, from the first of `axes` towards the second."""
    v = tensor(b, array)
    a0, a1 = (canonical_axis(a, v.type.rank, "rot90") for a in axes)
    if a0 == a1:
        raise ValueError("ops.rot90: the axes must be different")
    k %= 4
    swap = list(range(v.type.rank))
    swap[a0], swap[a1] = a1, a0
    if k == 1:
        return b.transpose(flip.__wrapped__(b, v, a1), perm=swap)
    if k == 2:
        return flip.__wrapped__(b, v, [a0, a1])
    if k == 3:
        return flip.__wrapped__(b, b.transpose(v, perm=swap), a1)
    return v


# --- ranges and grids ------------------------------------------------------------------------

def _spaced(b, start, stop, num: int, endpoint: bool, dtype, axis: int, op: str):
    """`num` points from `start` to `stop` along a new `axis`, and the step: start + i * step,
    the last point `stop` itself when `endpoint` (as numpy's linspace)."""
    if num < 0:
        raise ValueError(f"ops.{op}: num must be non-negative; received {num}")
    first, last = tensors(b, start, stop, dtype=float_dtype(result_type(start, stop, float)))
    div = (num - 1) if endpoint else num
    step = b.div(b.sub(last, first), b.scalar(max(div, 1), first))
    rank = len(np.broadcast_shapes(first.type.shape, last.type.shape))
    steps = b.constant(np.arange(num, dtype=first.type.dtype.numpy).reshape([num] + [1] * rank))
    points = b.add(first, b.mul(steps, step))
    if endpoint and num > 1:
        points = b.concat(b.slice(points, starts=[0], ends=[num - 1], axes=[0], steps=[1]),
                          b.reshape(b.broadcast(last, shape=list(points.type.shape[1:])),
                                    shape=[1, *points.type.shape[1:]]), axis=0)
    points = moveaxis.__wrapped__(b, points, 0, axis)
    if div <= 0:     # no step between fewer than two points: NaN, as numpy's
        step = b.mul(step, b.scalar(np.nan, step))
    if dtype is None:
        return points, step
    name = standardize_dtype(dtype)
    whole = name != "bool" and not ir_dtype(name).is_float
    return tensor(b, b.floor(points) if whole else points, name), step     # integers rounded down, as numpy's


@keras_op
def linspace(b, start, stop, num=50, endpoint=True, retstep=False, dtype=None, axis=0):
    """`num` evenly spaced points from `start` to `stop` (numpy's linspace); start and stop may
    be tensors, the points then along a new `axis`.

    >>> linspace(0.0, 1.0, 5)
    array([0.  , 0.25, 0.5 , 0.75, 1.  ], dtype=float32)
    """
    points, step = _spaced(b, start, stop, num, endpoint, dtype, axis, "linspace")
    return (points, step) if retstep else points


@keras_op
def logspace(b, start, stop, num=50, endpoint=True, base=10, dtype=None, axis=0):
    """`base ** linspace(start, stop, ...)`."""
    exponents, _ = _spaced(b, start, stop, num, endpoint, None, axis, "logspace")
    points = b.pow(b.scalar(base, exponents), exponents)
    return points if dtype is None else tensor(b, points, standardize_dtype(dtype))


@keras_op
def geomspace(b, start, stop, num=50, endpoint=True, dtype=None, axis=0):
    """`num` points from `start` to `stop` spaced evenly on a log scale (both of one sign), the
    ends exactly `start` and `stop` (numpy's geomspace)."""
    if any(not isinstance(end, Value) and np.any(np.asarray(end) == 0) for end in (start, stop)):
        raise ValueError("ops.geomspace: a geometric sequence cannot include zero")
    first, last = tensors(b, start, stop, dtype=float_dtype(result_type(start, stop, float)))
    sign = b.sign(first)
    logs, _ = _spaced(b, b.log(b.abs(first)), b.log(b.abs(last)), num, endpoint, None, 0, "geomspace")
    points = b.mul(sign, b.exp(logs))
    if num > 0:     # the ends exact, as numpy's
        shape = [1, *points.type.shape[1:]]
        start_point, end_point = (b.broadcast(b.reshape(v, shape=[1, *v.type.shape]), shape=shape)
                                  for v in (first, last))
        middle = b.slice(points, starts=[1], ends=[num - 1 if endpoint else num], axes=[0], steps=[1])
        parts = [start_point, middle] + ([end_point] if endpoint and num > 1 else [])
        points = b.concat(*parts, axis=0) if num > 1 else start_point
    points = moveaxis.__wrapped__(b, points, 0, axis)
    return points if dtype is None else tensor(b, points, standardize_dtype(dtype))


@keras_op
def meshgrid(b, *x, indexing="xy"):
    """Coordinate grids of the vectors `x`: each broadcast along the others' axes ("xy": the
    first two axes swapped, as numpy's default)."""
    if indexing not in ("xy", "ij"):
        raise ValueError(f"ops.meshgrid: indexing must be 'xy' or 'ij'; received {indexing!r}")
    vs = [b.reshape(tensor(b, v), shape=[-1]) for v in x]
    sizes = [static_length(v, 0, "meshgrid") for v in vs]
    order = list(range(len(vs)))
    if indexing == "xy" and len(vs) > 1:
        order[0], order[1] = 1, 0
    shape = [sizes[i] for i in order]
    grids = []
    for i, v in enumerate(vs):
        at = order.index(i)
        grids.append(b.broadcast(b.reshape(v, shape=[sizes[i] if a == at else 1 for a in range(len(vs))]),
                                 shape=shape))
    return grids


# --- products of arrays ------------------------------------------------------------------------

@keras_op
def inner(b, x1, x2):
    """The sum of products over the last axes of `x1` and `x2` (a product with a scalar for 0-D)."""
    u, v = tensors(b, x1, x2)
    if u.type.rank == 0 or v.type.rank == 0:
        return tensor(b, b.mul(*tensors(b, u, v, dtype="int32")), "bool") if u.type.dtype.name == "bool" else \
            b.mul(u, v)
    summed = tensordot.__wrapped__(b, u, v, axes=([u.type.rank - 1], [v.type.rank - 1]))
    return tensor(b, summed, "bool") if u.type.dtype.name == "bool" else summed     # any pair both true


@keras_op
def kron(b, x1, x2):
    """The Kronecker product: blocks of `x2` scaled by each element of `x1`."""
    u, v = tensors(b, x1, x2)
    rank = max(u.type.rank, v.type.rank)
    su = [1] * (rank - u.type.rank) + list(u.type.shape)
    sv = [1] * (rank - v.type.rank) + list(v.type.shape)
    spread_u = b.reshape(u, shape=[d for s in su for d in (s, 1)])
    spread_v = b.reshape(v, shape=[d for s in sv for d in (1, s)])
    return b.reshape(b.mul(spread_u, spread_v), shape=[p * q for p, q in zip(su, sv)])


@keras_op
def vander(b, x, N=None, increasing=False):
    """The Vandermonde matrix of the vector `x`: its powers 0 .. N-1 as columns, highest first
    unless `increasing` (running products, so integers stay exact)."""
    v = tensor(b, x)
    if v.type.rank != 1:
        raise ValueError(f"ops.vander: x must be 1-D; received shape {v.type.shape}")
    n = static_length(v, 0, "vander")
    columns = n if N is None else int(N)
    column = b.reshape(v, shape=[n, 1])
    factors = b.concat(b.broadcast(b.scalar(1, v), shape=[n, 1]),
                       b.broadcast(column, shape=[n, columns - 1]), axis=1) if columns > 1 else \
        b.broadcast(b.scalar(1, v), shape=[n, columns])
    powers = running(b, factors, 1, "vander", product=True)
    return powers if increasing else flip.__wrapped__(b, powers, 1)


# --- differences, bins, membership, choices ------------------------------------------------------

@keras_op
def diff(b, a, n=1, axis=-1):
    """The `n`-th difference along `axis` (for bools, whether neighbours differ)."""
    v = tensor(b, a)
    axis = canonical_axis(axis, v.type.rank, "diff")
    for _ in range(n):
        length = static_length(v, axis, "diff")
        later = b.slice(v, starts=[1], ends=[length], axes=[axis], steps=[1])
        earlier = b.slice(v, starts=[0], ends=[max(length - 1, 0)], axes=[axis], steps=[1])
        if v.type.dtype.name == "bool":     # whether neighbours differ
            v = b.not_equal(tensor(b, later, "int32"), tensor(b, earlier, "int32"))
        else:
            v = b.sub(later, earlier)
    return v


@keras_op
def digitize(b, x, bins):
    """The index of the bin each element of `x` falls in (numpy's digitize, right=False): how
    many of the increasing `bins` are <= it (of decreasing ones, how many are > it: the
    direction read from the first and last bins); NaN after the last. int32."""
    v, edges = tensors(b, x, bins)
    if edges.type.rank != 1:
        raise ValueError(f"ops.digitize: bins must be 1-D; received shape {edges.type.shape}")
    n = static_length(edges, 0, "digitize")
    column = b.reshape(v, shape=[*v.type.shape, 1])
    rising = b.reduce_sum(tensor(b, b.less_equal(edges, column), "int32"), axes=[v.type.rank])
    if v.type.dtype.is_float:     # NaN after the last bin
        rising = b.select(b.not_equal(v, v), b.scalar(n, rising), rising)
    falling = b.reduce_sum(tensor(b, b.greater(edges, column), "int32"), axes=[v.type.rank])
    if not isinstance(bins, Value):     # the direction known now
        constant = np.asarray(bins)
        return falling if constant.size > 1 and constant[0] > constant[-1] else rising
    first = b.slice(edges, starts=[0], ends=[1], axes=[0], steps=[1])
    last = b.slice(edges, starts=[n - 1], ends=[n], axes=[0], steps=[1])
    return b.select(b.reshape(b.greater(first, last), shape=[]), falling, rising)


@keras_op
def isin(b, x1, x2, assume_unique=False, invert=False):
    """Whether each element of `x1` is among those of `x2`, as bools."""
    dtype = result_type(x1, x2)
    u, v = tensors(b, x1, x2, dtype="int32" if dtype == "bool" else dtype)
    if 0 in v.type.shape:     # nothing to be among
        found = b.broadcast(b.constant(np.array(False)), shape=list(u.type.shape))
        return b.logical_not(found) if invert else found
    column = b.reshape(u, shape=[*u.type.shape, 1])
    hits = b.reduce_max(tensor(b, b.equal(column, b.reshape(v, shape=[-1])), "int32"), axes=[u.type.rank])
    found = tensor(b, hits, "bool")
    return b.logical_not(found) if invert else found


@keras_op
def select(b, condlist, choicelist, default=0):
    """The choice of the first condition that holds, element by element, else `default`."""
    if len(condlist) != len(choicelist):
        raise ValueError("ops.select: condlist and choicelist must have the same length")
    dtype = result_type(*choicelist, default)
    out = tensor(b, default, dtype)
    for cond, choice in reversed(list(zip(condlist, choicelist))):
        out = b.select(tensor(b, cond, "bool"), tensor(b, choice, dtype), out)
    return out


# --- complex parts of real tensors and small utilities ---------------------------------------------

@keras_op
def real(b, x):
    """The real part: `x` itself (nncompile's tensors are real)."""
    return tensor(b, x)


@keras_op
def imag(b, x):
    """The imaginary part: zeros of x's shape and dtype (nncompile's tensors are real)."""
    v = tensor(b, x)
    return b.broadcast(b.scalar(0, v), shape=list(v.type.shape))


conj = conjugate = real


@keras_op
def angle(b, x):
    """The complex angle of real numbers: 0 for positive ones and +0, pi for negative ones and -0."""
    v = tensor(b, x, float_dtype(x))
    return _atan2(b, b.broadcast(b.scalar(0.0, v), shape=list(v.type.shape)), v)


@keras_op
def isreal(b, x):
    """Trues of x's shape (nncompile's tensors are real)."""
    v = tensor(b, x)
    return b.broadcast(b.constant(np.array(True)), shape=list(v.type.shape))


def empty(shape, dtype=None) -> np.ndarray:
    """A tensor of `shape` in `dtype` (default floatx): zeros here."""
    return np.zeros(shape, ir_dtype(standardize_dtype(dtype)).numpy)


@keras_op
def empty_like(b, x, dtype=None):
    """A tensor of x's shape in `dtype` or x's: zeros here."""
    v = tensor(b, x)
    out = tensor(b, 0, standardize_dtype(dtype) if dtype is not None else result_type(v))
    return b.broadcast(out, shape=list(v.type.shape))


@keras_op
def array(b, x, dtype=None):
    """`x` as a tensor, in `dtype` if given."""
    return tensor(b, x, None if dtype is None else standardize_dtype(dtype))


def dtype(x) -> str:
    """The Keras name of x's dtype ("float32"; Python numbers as Keras types them)."""
    return result_type(x)


def is_tensor(x) -> bool:
    """Whether `x` is a tensor: an array, or a value of the graph being traced."""
    return isinstance(x, (Value, np.ndarray))



# --- splits, stacks and searches -----------------------------------------------------------------

@keras_op
def array_split(b, x, indices_or_sections, axis=0):
    """`x` cut along `axis` into `indices_or_sections` parts (the first ones one longer where the
    length does not divide), or at the given indices, as numpy's array_split."""
    v = tensor(b, x)
    axis = canonical_axis(axis, v.type.rank, "array_split")
    n = static_length(v, axis, "array_split")
    if isinstance(indices_or_sections, (int, np.integer)):
        sections = int(indices_or_sections)
        if sections <= 0:
            raise ValueError(f"ops.array_split: the number of sections must be positive; received {sections}")
        size, extra = divmod(n, sections)
        cuts = np.cumsum([size + 1] * extra + [size] * (sections - extra))[:-1].tolist()
    else:
        cuts = [int(i) for i in indices_or_sections]
    bounds = [0, *cuts, n]
    return [b.slice(v, starts=[min(lo, n)], ends=[min(max(lo, hi), n)], axes=[axis], steps=[1])
            for lo, hi in zip(bounds, bounds[1:])]


def _split_along(axis_of_rank, name: str, doc: str):
    from nncompile.keras.ops.arrays import split

    def fn(b, x, indices_or_sections):
        v = tensor(b, x)
        return split.__wrapped__(b, v, indices_or_sections, axis_of_rank(v.type.rank, name))
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc
    return keras_op(fn)


def _axis_at_least(axis: int):
    def pick(rank: int, name: str) -> int:
        if rank <= axis and not (name == "hsplit" and rank == 1):
            raise ValueError(f"ops.{name}: the input needs at least {axis + 1} axes; received rank {rank}")
        return 0 if rank == 1 and name == "hsplit" else axis
    return pick


hsplit = _split_along(_axis_at_least(1), "hsplit", "`split` along axis 1 (axis 0 of a vector).")
vsplit = _split_along(_axis_at_least(0), "vsplit", "`split` along axis 0, of at least 2-D `x`.")
dsplit = _split_along(_axis_at_least(2), "dsplit", "`split` along axis 2, of at least 3-D `x`.")


@keras_op
def dstack(b, xs):
    """The tensors joined along axis 2, vectors as (1, n, 1) and matrices as (m, n, 1)."""
    vs = tensors(b, *xs)
    deep = [b.reshape(v, shape={0: [1, 1, 1], 1: [1, v.type.shape[0], 1],
                                2: [*v.type.shape, 1]}.get(v.type.rank, list(v.type.shape))) for v in vs]
    return b.concat(*deep, axis=2)


@keras_op
def append(b, x1, x2, axis=None):
    """`x2` joined after `x1` along `axis` (None: both flattened)."""
    u, v = tensors(b, x1, x2)
    if axis is None:
        return b.concat(b.reshape(u, shape=[-1]), b.reshape(v, shape=[-1]), axis=0)
    return b.concat(u, v, axis=canonical_axis(axis, u.type.rank, "append"))


@keras_op
def searchsorted(b, sorted_sequence, values, side="left"):
    """Where each of `values` would go in the increasing vector `sorted_sequence` to keep it
    sorted: before equal elements ("left") or after them ("right"); NaN after every number. int32."""
    if side not in ("left", "right"):
        raise ValueError(f"ops.searchsorted: side must be 'left' or 'right'; received {side!r}")
    dtype = result_type(sorted_sequence, values)
    seq, v = tensors(b, sorted_sequence, values, dtype="int32" if dtype == "bool" else dtype)
    if seq.type.rank != 1:
        raise ValueError(f"ops.searchsorted: sorted_sequence must be 1-D; received shape {seq.type.shape}")
    column = b.reshape(v, shape=[*v.type.shape, 1])
    before = b.less(seq, column) if side == "left" else b.less_equal(seq, column)
    if v.type.dtype.is_float:     # NaN sorts after every number: a NaN value goes after them all
        nan_value = b.not_equal(column, column)
        passed = b.equal(seq, seq) if side == "left" else b.scalar(True, before)
        before = b.logical_or(before, b.logical_and(nan_value, passed))
    return b.reduce_sum(tensor(b, before, "int32"), axes=[v.type.rank])


@keras_op
def unravel_index(b, indices, shape):
    """The coordinates in an array of `shape` of flat `indices`, one tensor per axis (int32)."""
    dims = [int(d) for d in shape]
    # indices past the array are clipped to it, as JAX's (numpy raises)
    idx = tensor(b, indices, "int32")
    idx = b.minimum(b.maximum(idx, b.scalar(0, idx)), b.scalar(int(np.prod(dims)) - 1, idx))
    strides = np.cumprod([1, *dims[::-1]])[:-1][::-1]
    return tuple(_coordinate(b, idx, int(s), d) for s, d in zip(strides, dims))


def _coordinate(b, idx, stride: int, size: int):
    """(idx // stride) % size for non-negative ints, with the IR's arithmetic."""
    from nncompile.keras.ops.numpy import floor_divide, mod

    return mod.__wrapped__(b, floor_divide.__wrapped__(b, idx, stride), size)

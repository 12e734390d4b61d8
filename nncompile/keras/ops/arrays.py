"""Array manipulation ops of `keras.ops`: shapes, joins and splits, indexing, casts, fills.

    >>> from nncompile.keras import ops
    >>> ops.expand_dims(np.zeros((2, 3)), 0).shape
    (1, 2, 3)
"""
from __future__ import annotations

import builtins
import math

import numpy as np

from nncompile.ir import Value
from nncompile.ir.ops.shape import SLICE_END
from nncompile.ir.types import BATCH, is_symbol
from nncompile.keras.ops.core import (EagerValue, active_builder, canonical_axes, canonical_axis,
                                      ir_dtype, keras_op, result_type, shape_of,
                                      standardize_dtype, tensor, tensors, unsupported)


@keras_op
def cast(b, x, dtype):
    """`x` converted to `dtype`.

    >>> cast(np.array([1.7, -1.7]), "int32")
    array([ 1, -1], dtype=int32)
    """
    return tensor(b, x, standardize_dtype(dtype))


@keras_op
def saturate_cast(b, x, dtype):
    """`x` converted to `dtype`, values past the narrower of the two dtypes' ranges clipped to its
    bounds first (instead of wrapping or undefined), as Keras's; NaN to 0 for integers, and to
    bools by way of [0, 1].

    >>> saturate_cast(np.array([300.0, -5.0, 3.7]), "uint8").tolist()
    [255, 0, 3]
    """
    name = standardize_dtype(dtype)
    target = ir_dtype(name).numpy
    v = tensor(b, x)
    source = v.type.dtype.numpy
    if v.type.dtype.name == "bool":
        return tensor(b, v, name)
    if target != np.bool_ and not np.issubdtype(target, np.floating) and v.type.dtype.is_float:
        v = b.select(b.not_equal(v, v), b.scalar(0, v), v)
    low, high = (0, 1) if target == np.bool_ else _range(target)
    source_low, source_high = _range(source)
    low, high = max(low, source_low), min(high, source_high)     # the narrower range
    if not v.type.dtype.is_float or target == np.bool_:
        return tensor(b, b.minimum(b.maximum(v, b.scalar(low, v)), b.scalar(high, v)), name)
    # the bounds as the source's floats inside the range; past them, the bounds themselves
    inner_low, inner_high = float(_inside(low, source, np.inf)), float(_inside(high, source, -np.inf))
    out = tensor(b, b.minimum(b.maximum(v, b.scalar(inner_low, v)), b.scalar(inner_high, v)), name)
    out = b.select(b.greater(v, b.scalar(inner_high, v)), b.scalar(high, out), out)
    return b.select(b.less(v, b.scalar(inner_low, v)), b.scalar(low, out), out)


def _range(dtype) -> tuple:
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else np.finfo(dtype)
    return (int(info.min), int(info.max)) if np.issubdtype(dtype, np.integer) else (float(info.min),
                                                                                     float(info.max))


def _inside(bound, dtype, towards: float):
    """`bound` as the nearest `dtype` value, stepped towards `towards` if rounding overshot it."""
    value = np.asarray(bound, dtype)
    exact = int(value) if isinstance(bound, int) else float(value)     # compared exactly, not in dtype
    overshot = exact < bound if towards == np.inf else exact > bound
    return np.nextafter(value, np.asarray(towards, dtype)) if overshot else value


@keras_op
def convert_to_tensor(b, x, dtype=None, sparse=None, ragged=None):
    """`x` as a tensor (an array eagerly, a Value while tracing)."""
    return tensor(b, x, None if dtype is None else standardize_dtype(dtype))


def convert_to_numpy(x) -> np.ndarray:
    """`x` as a numpy array; a traced tensor has no value yet and is refused."""
    if isinstance(x, Value):
        raise ValueError("ops.convert_to_numpy: a traced tensor (an IR Value) has no value "
                         "until the compiled model runs")
    return np.asarray(x)


def shape(x) -> tuple:
    """The shape of `x`, None for dimensions known only when the model runs (the batch)."""
    return shape_of(x)


def _target_shape(v, newshape) -> list:
    """Keras's reshape target as the IR's. The input's one symbolic dimension (the batch), if
    it has exactly one, stands for a None (`ops.shape(x)[0]`), and for a -1 whose other sizes
    account for all the input's static ones."""
    newshape = [newshape] if isinstance(newshape, (int, np.integer)) else list(newshape)
    symbols = [d for d in v.type.shape if is_symbol(d)]
    symbol = symbols[0] if len(symbols) == 1 else None
    target = [(symbol or -1) if d is None else int(d) for d in newshape]
    if -1 in target and symbol is not None and symbol not in target:
        static_in = math.prod(d for d in v.type.shape if not is_symbol(d))
        if static_in == -math.prod(target):
            target[target.index(-1)] = symbol
    return target


@keras_op
def reshape(b, x, newshape):
    """`x` with the same elements in `newshape` (one dimension may be -1).

    >>> reshape(np.arange(6), (2, -1)).shape
    (2, 3)
    """
    v = tensor(b, x)
    return b.reshape(v, shape=_target_shape(v, newshape))


@keras_op
def transpose(b, x, axes=None):
    """`x` with its axes permuted (default: reversed)."""
    v = tensor(b, x)
    rank = v.type.rank
    perm = list(range(rank))[::-1] if axes is None else [canonical_axis(a, rank, "transpose")
                                                         for a in axes]
    return b.transpose(v, perm=perm)


@keras_op
def moveaxis(b, x, source, destination):
    """`x` with axes `source` moved to positions `destination`."""
    v = tensor(b, x)
    rank = v.type.rank
    src = [canonical_axis(a, rank, "moveaxis") for a in np.atleast_1d(source)]
    dst = [canonical_axis(a, rank, "moveaxis") for a in np.atleast_1d(destination)]
    rest = iter(a for a in range(rank) if a not in src)
    placed = dict(zip(dst, src))
    return b.transpose(v, perm=[placed[i] if i in placed else next(rest) for i in range(rank)])


def _reshaped(b, v, dims):
    return v if tuple(dims) == tuple(v.type.shape) else b.reshape(v, shape=list(dims))


@keras_op
def expand_dims(b, x, axis):
    """`x` with new axes of size 1 at `axis` (an int or a tuple)."""
    v = tensor(b, x)
    rank = v.type.rank + (1 if isinstance(axis, (int, np.integer)) else len(axis))
    new = canonical_axes(axis, rank, "expand_dims")
    dims = iter(v.type.shape)
    return b.reshape(v, shape=[1 if a in new else next(dims) for a in range(rank)])


@keras_op
def squeeze(b, x, axis=None):
    """`x` without the axes of size 1 named by `axis` (None: all of them)."""
    v = tensor(b, x)
    dims = v.type.shape
    if axis is None:
        drop = [a for a, d in enumerate(dims) if d == 1]
    else:
        drop = canonical_axes(axis, v.type.rank, "squeeze")
        for a in drop:
            if dims[a] != 1:
                raise ValueError(f"Cannot squeeze axis {a}, because the dimension is not 1.")
    return _reshaped(b, v, [d for a, d in enumerate(dims) if a not in drop])


@keras_op
def concatenate(b, xs, axis=0):
    """The tensors `xs` joined along `axis`."""
    vs = tensors(b, *xs)
    return b.concat(*vs, axis=canonical_axis(axis, vs[0].type.rank, "concatenate"))


@keras_op
def stack(b, x, axis=0):
    """The tensors `x`, all of one shape, stacked along a new `axis`."""
    vs = tensors(b, *x)
    rank = vs[0].type.rank + 1
    axis = canonical_axis(axis, rank, "stack")
    dims = list(vs[0].type.shape)
    expanded = [b.reshape(v, shape=dims[:axis] + [1] + dims[axis:]) for v in vs]
    return expanded[0] if len(vs) == 1 else b.concat(*expanded, axis=axis)


@keras_op
def swapaxes(b, x, axis1, axis2):
    """`x` with axes axis1 and axis2 exchanged."""
    v = tensor(b, x)
    perm = list(range(v.type.rank))
    i, j = (canonical_axis(a, v.type.rank, "swapaxes") for a in (axis1, axis2))
    perm[i], perm[j] = j, i
    return b.transpose(v, perm=perm)


@keras_op
def ravel(b, x):
    """`x` flattened to one axis."""
    return b.reshape(tensor(b, x), shape=[-1])


def ndim(x) -> int:
    """The rank of `x`."""
    return len(shape_of(x))


@keras_op
def size(b, x):
    """How many elements `x` has: an int, or an int32 scalar tensor counting them when a
    dimension is known only when the model runs (the batch)."""
    v = tensor(b, x)
    dims = shape_of(v)
    if None not in dims:
        return math.prod(dims)
    return b.reduce_sum(_like(b, v, 1, "int32"), axes=list(range(v.type.rank)))


@keras_op
def tile(b, x, repeats):
    """`x` repeated `repeats[i]` times along axis i (numpy's tile).

    >>> tile(np.array([1, 2]), 2).tolist()
    [1, 2, 1, 2]
    """
    v = tensor(b, x)
    repeats = [int(r) for r in np.atleast_1d(repeats)]
    rank = max(v.type.rank, len(repeats))
    dims = [1] * (rank - v.type.rank) + list(v.type.shape)
    repeats = [1] * (rank - len(repeats)) + repeats
    # (1, d0, 1, d1, ...) broadcast to (r0, d0, r1, d1, ...), then each pair merged.
    paired = [d for dim in dims for d in (1, dim)]
    spread = b.broadcast(b.reshape(v, shape=paired),
                         shape=[d for r, dim in zip(repeats, dims) for d in (r, dim)])
    return b.reshape(spread, shape=[dim if r == 1 else r * dim for r, dim in zip(repeats, dims)])


@keras_op
def repeat(b, x, repeats, axis=None):
    """Each element of `x` repeated `repeats` times along `axis` (None: of the flattened x);
    `repeats` may be a list, one count per element.

    >>> repeat(np.array([1, 2]), 2).tolist()
    [1, 1, 2, 2]
    """
    v = tensor(b, x)
    if axis is None:
        v, axis = b.reshape(v, shape=[-1]), 0
    axis = canonical_axis(axis, v.type.rank, "repeat")
    dims = list(v.type.shape)
    if np.ndim(repeats) == 0:
        r = int(repeats)
        spread = b.broadcast(b.reshape(v, shape=dims[:axis + 1] + [1] + dims[axis + 1:]),
                             shape=dims[:axis + 1] + [r] + dims[axis + 1:])
        return b.reshape(spread, shape=dims[:axis] + [dims[axis] * r] + dims[axis + 1:])
    picks = np.repeat(np.arange(dims[axis]), np.asarray(repeats)).astype(np.int32)
    return b.gather(v, b.constant(picks), axis=axis)


@keras_op
def unstack(b, x, num=None, axis=0):
    """`x` cut into its slices along `axis`, that axis dropped; a list back."""
    v = tensor(b, x)
    axis = canonical_axis(axis, v.type.rank, "unstack")
    parts = split.__wrapped__(b, v, v.type.shape[axis], axis=axis)
    dims = [d for a, d in enumerate(v.type.shape) if a != axis]
    return [b.reshape(p, shape=dims) for p in parts]


def _triangle(b, x, k: int, lower: bool):
    v = tensor(b, x)
    rows, cols = v.type.shape[-2:]
    if is_symbol(rows) or is_symbol(cols):
        raise NotImplementedError(f"ops.{'tril' if lower else 'triu'}: the last two axes must "
                                  f"have static sizes in nncompile; got {rows!r}, {cols!r}")
    keep = np.tri(rows, cols, k, dtype=bool) if lower else ~np.tri(rows, cols, k - 1, dtype=bool)
    return b.select(b.constant(keep), v, b.scalar(0, v))


@keras_op
def tril(b, x, k=0):
    """`x` with the elements above the k-th diagonal of its last two axes zeroed."""
    return _triangle(b, x, k, lower=True)


@keras_op
def triu(b, x, k=0):
    """`x` with the elements below the k-th diagonal of its last two axes zeroed."""
    return _triangle(b, x, k, lower=False)


@keras_op
def hstack(b, xs):
    """The tensors joined along axis 1 (axis 0 for vectors), as numpy's hstack."""
    vs = tensors(b, *xs)
    return b.concat(*vs, axis=0 if vs[0].type.rank == 1 else 1)


@keras_op
def vstack(b, xs):
    """The tensors joined along axis 0, vectors taken as rows, as numpy's vstack."""
    vs = [v if v.type.rank > 1 else b.reshape(v, shape=[1, *v.type.shape])
          for v in tensors(b, *xs)]
    return b.concat(*vs, axis=0)


def _slice_axis(b, v, axis: int, start: int, stop: int, step: int = 1):
    return b.slice(v, starts=[start], ends=[stop], axes=[axis], steps=[step])


@keras_op
def split(b, x, indices_or_sections, axis=0):
    """`x` cut along `axis` into equal sections or at the given indices; a list back.

    >>> [p.tolist() for p in split(np.arange(4), [1])]
    [[0], [1, 2, 3]]
    """
    v = tensor(b, x)
    axis = canonical_axis(axis, v.type.rank, "split")
    n = v.type.shape[axis]
    if is_symbol(n):
        raise NotImplementedError(f"ops.split: axis {axis} has symbolic length {n!r}; "
                                  f"nncompile splits static axes only")
    if isinstance(indices_or_sections, (int, np.integer)):
        if n % indices_or_sections:
            raise ValueError("array split does not result in an equal division")
        cuts = list(range(0, n, n // indices_or_sections))[1:]
    else:
        cuts = [int(i) for i in indices_or_sections]
    bounds = [0, *cuts, n]
    return [_slice_axis(b, v, axis, lo, max(lo, hi)) for lo, hi in zip(bounds, bounds[1:])]


def _flat(b, v):
    return b.reshape(v, shape=[-1])


def _indices(b, indices):
    idx = tensor(b, indices)
    if not idx.type.dtype.is_int:
        idx = tensor(b, idx, "int32")
    return idx


@keras_op
def where(b, condition, x1=None, x2=None):
    """`x1` where `condition` holds, else `x2` (both required: nncompile has no `nonzero`).

    >>> where(np.array([True, False]), 1.0, np.array([5, 6]))
    array([1., 6.], dtype=float32)
    """
    if x1 is None or x2 is None:
        raise NotImplementedError("ops.where with one argument (the indices of nonzero "
                                  "elements) has a data-dependent shape, which nncompile's "
                                  "IR cannot express; pass x1 and x2")
    return b.select(tensor(b, condition, "bool"), *tensors(b, x1, x2))


@keras_op
def take(b, x, indices, axis=None):
    """Elements of `x` at `indices` along `axis` (None: of the flattened `x`); negative
    indices count from the end.

    >>> take(np.array([[1, 2], [3, 4]]), np.array([1, -1]), axis=1).tolist()
    [[2, 2], [4, 4]]
    """
    v = tensor(b, x)
    if axis is None:
        v, axis = _flat(b, v), 0
    return b.gather(v, _indices(b, indices), axis=canonical_axis(axis, v.type.rank, "take"))


@keras_op
def take_along_axis(b, x, indices, axis=None):
    """`x[..., indices[..., j], ...]` along `axis`, the other axes broadcast (numpy's).

    Each pick is a compare-and-select over the axis, so it broadcasts over a symbolic batch.
    """
    v, idx = tensor(b, x), _indices(b, indices)
    if axis is None:
        v, idx, axis = _flat(b, v), _flat(b, idx), 0
    rank = v.type.rank
    if idx.type.rank != rank:
        raise ValueError(f"ops.take_along_axis: `indices` must have the rank of `x` ({rank}); "
                         f"got {idx.type.rank}")
    axis = canonical_axis(axis, rank, "take_along_axis")
    n = v.type.shape[axis]
    # Move `axis` last: x (..., 1, n) against indices (..., m, 1) and the positions 0..n-1.
    to_end = [a for a in range(rank) if a != axis] + [axis]
    xm, im = b.transpose(v, perm=to_end), b.transpose(idx, perm=to_end)
    xm = b.reshape(xm, shape=[*xm.type.shape[:-1], 1, n])
    im = b.reshape(im, shape=[*im.type.shape, 1])
    wrapped = b.select(b.less(im, b.scalar(0, im)), b.add(im, b.scalar(n, im)), im)
    hit = b.equal(wrapped, b.constant(np.arange(n).astype(im.type.dtype.numpy)))
    picked = b.reduce_sum(b.select(hit, xm, b.scalar(0, xm)), axes=[rank], keepdims=False)
    return b.transpose(picked, perm=list(np.argsort(to_end)))


@keras_op
def slice(b, inputs, start_indices, shape):  # noqa: A001  (Keras's name)
    """The block of `inputs` starting at `start_indices` with size `shape` (static starts)."""
    v = tensor(b, inputs)
    starts = [int(s) for s in np.asarray(start_indices)]
    return b.slice(v, starts=starts, ends=[s + int(n) for s, n in zip(starts, shape)],
                   axes=list(range(len(starts))), steps=[1] * len(starts))


@keras_op
def get_item(b, x, key):
    """`x[key]` with ints, slices, None, Ellipsis, or one index tensor (a gather along axis 0):
    what a traced tensor's `__getitem__` calls.

    >>> get_item(np.arange(6).reshape(2, 3), np.s_[:, -1]).tolist()
    [2, 5]
    """
    v = tensor(b, x)
    key = key if isinstance(key, tuple) else (key,)
    if any(isinstance(k, (Value, EagerValue, np.ndarray, list)) for k in key):
        if len(key) != 1:
            raise NotImplementedError("ops.get_item: an index tensor is supported alone "
                                      "(x[indices]), not mixed with other indices")
        return b.gather(v, _indices(b, key[0]), axis=0)
    explicit = sum(1 for k in key if k is not None and k is not Ellipsis)
    if explicit > v.type.rank:
        raise IndexError(f"too many indices for a tensor of rank {v.type.rank}")
    at = key.index(Ellipsis) if Ellipsis in key else len(key)
    whole = (_ALL,) * (v.type.rank - explicit)
    return _index(b, v, [*key[:at], *whole, *key[at + 1:]])


_ALL = builtins.slice(None)


def _index(b, x, key: list):
    """One slice op for the int and slice entries, then one reshape that drops the int-indexed
    axes and adds the None ones."""
    cuts = {"starts": [], "ends": [], "axes": [], "steps": []}
    kept = []      # per output axis: the input axis it comes from, or None for a new axis

    def cut(axis, start, end, step):
        for name, value in zip(cuts, (start, end, axis, step)):
            cuts[name].append(value)

    axis = 0
    for k in key:
        if k is None:
            kept.append(None)
            continue
        n = x.type.shape[axis]
        if isinstance(k, (int, np.integer)):
            if not is_symbol(n) and not -n <= k < n:
                raise IndexError(f"index {k} is out of bounds for axis {axis} with size {n}")
            start = int(k) if is_symbol(n) else int(k) % n
            cut(axis, start, start + 1, 1)
        else:
            if k != _ALL:
                cut(axis, *_bounds(k, n))
            kept.append(axis)
        axis += 1
    if cuts["axes"]:
        x = b.slice(x, **cuts)
    return _reshaped(b, x, [1 if a is None else x.type.shape[a] for a in kept])


def _bounds(k, n) -> tuple[int, int, int]:
    """A Python slice as the IR slice's start, end and step on an axis of size n."""
    if is_symbol(n):
        # Only whole axes are expressible there: forwards, or (start -1, end -SLICE_END)
        # backwards; other bounds pass through for the IR's rule to refuse by name.
        if k.start is None and k.stop is None and (k.step or 1) == -1:
            return -1, -SLICE_END, -1
        return k.start or 0, SLICE_END if k.stop is None else k.stop, k.step or 1
    start, stop, step = k.indices(n)
    # Stepping down to "before index 0" is stop -1 to Python but "the last" to the IR.
    return start, (-n - 1 if stop < 0 else stop), step


@keras_op
def flip(b, x, axis=None):
    """`x` with the order of elements along `axis` (None: all axes) reversed."""
    v = tensor(b, x)
    axes = canonical_axes(axis, v.type.rank, "flip")
    n = len(axes)
    return b.slice(v, starts=[-1] * n, ends=[-SLICE_END] * n, axes=axes, steps=[-1] * n)


@keras_op
def broadcast_to(b, x, shape):
    """`x` broadcast to `shape` (numpy's rules)."""
    return b.broadcast(tensor(b, x), shape=[int(d) for d in shape])


@keras_op
def pad(b, x, pad_width, mode="constant", constant_values=None):
    """`x` padded with `constant_values` (default 0); pad_width as numpy's ((before, after), ...)."""
    if mode != "constant":
        raise unsupported("pad", f"mode={mode!r} (only 'constant')")
    v = tensor(b, x)
    widths = np.broadcast_to(np.asarray(pad_width, dtype=np.int64), (v.type.rank, 2))
    return b.pad(v, pads=widths.reshape(-1).tolist(), value=float(constant_values or 0))


def _like(b, x, value, dtype):
    """`value` in x's shape (symbolic dimensions included), in `dtype` or x's."""
    v = tensor(b, x)
    dtype = standardize_dtype(dtype) if dtype is not None else result_type(v)
    return b.broadcast(tensor(b, np.asarray(value), dtype), shape=list(v.type.shape))


@keras_op
def zeros_like(b, x, dtype=None):
    """Zeros of x's shape, in `dtype` or x's."""
    return _like(b, x, 0, dtype)


@keras_op
def ones_like(b, x, dtype=None):
    """Ones of x's shape, in `dtype` or x's."""
    return _like(b, x, 1, dtype)


@keras_op
def full_like(b, x, fill_value, dtype=None):
    """`fill_value` in x's shape, in `dtype` or x's."""
    return _like(b, x, fill_value, dtype)


def _filled(shape, value, dtype: str):
    """`value` in `shape`: a constant, or, where the shape has None (the batch) while a graph is
    traced, the constant broadcast to the batch symbol."""
    array = np.asarray(value, ir_dtype(dtype).numpy)
    dims = [shape] if isinstance(shape, (int, np.integer)) else list(shape)
    if None not in dims:
        return np.full(dims, array)
    b = active_builder()
    if b is None:
        raise ValueError(f"a shape with None ({tuple(dims)}) is known only in a traced model; "
                         f"ops were called eagerly")
    return b.broadcast(b.constant(array), shape=[BATCH if d is None else int(d) for d in dims])


def zeros(shape, dtype=None):
    """Zeros of `shape` in `dtype` (default floatx): a constant."""
    return _filled(shape, 0, standardize_dtype(dtype))


def ones(shape, dtype=None):
    """Ones of `shape` in `dtype` (default floatx): a constant."""
    return _filled(shape, 1, standardize_dtype(dtype))


def full(shape, fill_value, dtype=None):
    """`fill_value` in `shape`, in `dtype` (default: Keras's dtype of the value): a constant."""
    return _filled(shape, fill_value, dtype if dtype is not None else result_type(fill_value))


def arange(start, stop=None, step=None, dtype=None) -> np.ndarray:
    """`start, start + step, ...` below `stop`: a constant (Keras's dtype of the bounds)."""
    if stop is None:
        start, stop = 0, start
    step = 1 if step is None else step
    dtype = dtype if dtype is not None else result_type(start, stop, step)
    return np.arange(start, stop, step).astype(ir_dtype(dtype).numpy)


def eye(N, M=None, k=0, dtype=None) -> np.ndarray:
    """Ones on the k-th diagonal of an N x M matrix (M defaults to N): a constant."""
    return np.eye(N, M, k, dtype=ir_dtype(dtype).numpy)


def identity(n, dtype=None) -> np.ndarray:
    """The n x n identity matrix: a constant."""
    return eye(n, dtype=dtype)

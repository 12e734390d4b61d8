"""Writes at indices of `keras.ops`: scatter, scatter_update, slice_update and the segment
reductions, on the IR's scatter_add (gather's adjoint).

    >>> from nncompile.keras import ops
    >>> ops.scatter(np.array([[0], [2], [0]]), np.array([1.0, 2.0, 3.0], "float32"), (4,))
    array([4., 0., 2., 0.], dtype=float32)
"""
from __future__ import annotations

import numpy as np

from nncompile.ir import Value
from nncompile.ir.types import is_symbol
from nncompile.keras.ops.core import EagerValue, highest, keras_op, lowest, shape_of, tensor, unsupported


def _flat_indices(b, indices, shape: list[int], op: str):
    """Index rows (..., k) into the first k axes of `shape` as one index into their product,
    with the rows' leading axes flattened: (the indices (N,), k)."""
    idx = tensor(b, indices)
    if not idx.type.dtype.is_int:
        idx = tensor(b, idx, "int32")
    k = idx.type.shape[-1]
    if is_symbol(k) or not 1 <= k <= len(shape):
        raise ValueError(f"ops.{op}: indices must end in an axis of 1 to {len(shape)} coordinates; received "
                         f"shape {shape_of(idx)}")
    strides = np.cumprod([1, *shape[:k][::-1]])[:-1][::-1].astype(idx.type.dtype.numpy)
    flat = b.reduce_sum(b.mul(idx, b.constant(strides)), axes=[idx.type.rank - 1])
    return b.reshape(flat, shape=[-1]), k


def _scattered(b, flat, values, shape: list[int], k: int):
    """zeros of `shape` plus `values` (N, *shape[k:]) added at the flat indices of its first k axes."""
    rows = int(np.prod(shape[:k]))
    updates = b.reshape(values, shape=[flat.type.shape[0], *shape[k:]])
    out = b.scatter_add(flat, updates, shape=[rows, *shape[k:]], axis=0)
    return b.reshape(out, shape=list(shape))


@keras_op
def scatter(b, indices, values, shape):
    """Zeros of `shape` with `values` added at `indices` (rows of coordinates into its first axes;
    repeated indices add up)."""
    shape = [int(d) for d in shape]
    v = tensor(b, values)
    flat, k = _flat_indices(b, indices, shape, "scatter")
    return _scattered(b, flat, v, shape, k)


@keras_op
def scatter_update(b, inputs, indices, updates, reduction=None):
    """`inputs` with `updates` written at `indices` (rows of coordinates into its first axes): of
    repeated indices the last update is written, as numpy's assignment; with reduction="add" they
    are added to `inputs` instead."""
    x = tensor(b, inputs)
    if x.type.dtype.name == "bool":     # as integers (scatter_add adds numbers), then bools again
        return tensor(b, scatter_update.__wrapped__(b, tensor(b, x, "int32"), indices, tensor(b, updates, "int32"),
                                                    reduction), "bool")
    u = tensor(b, updates, x.type.dtype)     # the input's dtype, as Keras's
    shape = list(x.type.shape)
    if any(is_symbol(d) for d in shape):
        raise NotImplementedError(f"ops.scatter_update: the input's shape {shape_of(x)} must be static")
    flat, k = _flat_indices(b, indices, shape, "scatter_update")
    if reduction == "add":
        return b.add(x, _scattered(b, flat, u, shape, k))
    if reduction is not None:
        raise unsupported("scatter_update", f"reduction={reduction!r} (None or 'add')")
    n = flat.type.shape[0]
    # an update is written unless a later one goes to the same place
    later = b.constant(np.arange(n)[None, :] > np.arange(n)[:, None])
    same = b.equal(b.reshape(flat, shape=[n, 1]), b.reshape(flat, shape=[1, n]))
    overwritten = b.reduce_max(tensor(b, b.logical_and(same, later), "int32"), axes=[1])
    written = b.equal(overwritten, b.scalar(0, overwritten))
    rows = b.reshape(u, shape=[n, *shape[k:]])
    kept = b.reshape(written, shape=[n] + [1] * (len(shape) - k))
    zero = b.scalar(0, rows)
    placed = _scattered(b, flat, b.select(kept, rows, zero), shape, k)
    hit = _scattered(b, flat, b.broadcast(tensor(b, kept, "int32"), shape=list(rows.type.shape)), shape, k)
    return b.select(b.greater(hit, b.scalar(0, hit)), placed, x)


@keras_op
def slice_update(b, inputs, start_indices, updates):
    """`inputs` with the block `updates` written from `start_indices` on (static starts; negative
    ones from the end; clamped so that the block fits, as Keras's)."""
    if any(isinstance(s, (Value, EagerValue)) for s in np.atleast_1d(start_indices).tolist()) or \
            isinstance(start_indices, (Value, EagerValue)):
        raise unsupported("slice_update", "start indices that are tensors (give Python ints)")
    x = tensor(b, inputs)
    u = tensor(b, updates, x.type.dtype)
    shape, block = list(x.type.shape), list(u.type.shape)
    starts = [int(s) for s in np.atleast_1d(start_indices)]
    if len(starts) != len(shape) or len(block) != len(shape):
        raise ValueError(f"ops.slice_update: start_indices and updates need the input's rank {len(shape)}")
    if any(is_symbol(d) for d in shape + block):
        raise NotImplementedError("ops.slice_update: the input and the updates must have static shapes")
    # a negative start counts from the end, then the block is clamped inside, as Keras's
    starts = [min(max(s + d if s < 0 else s, 0), d - e) for s, d, e in zip(starts, shape, block)]
    pads = [p for s, d, e in zip(starts, shape, block) for p in (s, d - s - e)]
    placed = b.pad(u, pads=pads, value=0.0)
    inside = b.constant(np.pad(np.ones(block, bool), list(zip(pads[::2], pads[1::2]))))
    return b.select(inside, placed, x)


def _segments(b, data, segment_ids, num_segments, op: str):
    """(data, ids, count): ids outside [0, num_segments) are dropped, as JAX's segment ops."""
    v, ids = tensor(b, data), tensor(b, segment_ids)
    if num_segments is None:
        if isinstance(ids, Value):
            raise ValueError(f"ops.{op}: num_segments must be given for traced segment ids")
        num_segments = int(ids.array.max()) + 1 if ids.array.size else 0
    if not ids.type.dtype.is_int:
        ids = tensor(b, ids, "int32")
    count = int(num_segments)
    inside = b.logical_and(b.greater_equal(ids, b.scalar(0, ids)), b.less(ids, b.scalar(count, ids)))
    return v, ids, inside, count


@keras_op
def segment_sum(b, data, segment_ids, num_segments=None, sorted=False):  # noqa: A002  (Keras's name)
    """The sums of the rows of `data` with each segment id (ids out of range dropped)."""
    v, ids, inside, count = _segments(b, data, segment_ids, num_segments, "segment_sum")
    rows = b.select(b.reshape(inside, shape=[*ids.type.shape] + [1] * (v.type.rank - ids.type.rank)),
                    v, b.scalar(0, v))
    safe = b.select(inside, ids, b.scalar(0, ids))
    return b.scatter_add(safe, rows, shape=[count, *v.type.shape[ids.type.rank:]], axis=0)


def _segment_reduce(b, data, segment_ids, num_segments, op: str, reduce: str, empty):
    """`reduce` of the rows of `data` with each segment id, by a mask of (row, segment) pairs;
    `empty(dtype)` is both the masked rows' value and an empty segment's."""
    v, ids, inside, count = _segments(b, data, segment_ids, num_segments, op)
    extra = v.type.rank - ids.type.rank
    member = b.logical_and(b.equal(b.reshape(ids, shape=[*ids.type.shape, 1]),
                                   b.constant(np.arange(count, dtype=ids.type.dtype.numpy))),
                           b.reshape(inside, shape=[*ids.type.shape, 1]))      # (ids..., segments)
    rows = b.reshape(v, shape=[*v.type.shape[:ids.type.rank], 1, *v.type.shape[ids.type.rank:]])
    mask = b.reshape(member, shape=[*member.type.shape] + [1] * extra)
    picked = b.select(mask, rows, b.scalar(empty(v.type.dtype.numpy), v))
    return b.op(reduce, picked, axes=list(range(ids.type.rank)))


@keras_op
def segment_max(b, data, segment_ids, num_segments=None, sorted=False):  # noqa: A002  (Keras's name)
    """The maxima of the rows of `data` with each segment id (ids out of range dropped; an empty
    segment is the dtype's lowest value, -inf for floats)."""
    return _segment_reduce(b, data, segment_ids, num_segments, "segment_max", "reduce_max", lowest)


@keras_op
def segment_min(b, data, segment_ids, num_segments=None, sorted=False):  # noqa: A002  (Keras's name)
    """The minima of the rows of `data` with each segment id (an empty segment is the dtype's
    highest value, inf for floats)."""
    return _segment_reduce(b, data, segment_ids, num_segments, "segment_min", "reduce_min", highest)


@keras_op
def segment_prod(b, data, segment_ids, num_segments=None, sorted=False):  # noqa: A002  (Keras's name)
    """The products of the rows of `data` with each segment id (an empty segment is 1)."""
    return _segment_reduce(b, data, segment_ids, num_segments, "segment_prod", "reduce_prod", lambda dtype: 1)



@keras_op
def bincount(b, x, weights=None, minlength=0, sparse=False):
    """How often each value 0, 1, ... occurs in the non-negative integers `x` (per row of a 2-D x),
    or the sum of their `weights`: max(x) + 1 bins, at least `minlength`. Traced, the length must
    be known before the values: `minlength` bins, values past them dropped."""
    if sparse:
        raise unsupported("bincount", "sparse=True")
    v = tensor(b, x)
    if not v.type.dtype.is_int:
        raise ValueError(f"ops.bincount: x must hold integers; received dtype {v.type.dtype}")
    if v.type.rank not in (1, 2):
        raise ValueError(f"ops.bincount: x must be 1-D or 2-D; received rank {v.type.rank}")
    if isinstance(v, Value):
        if int(minlength) <= 0:
            raise NotImplementedError("ops.bincount: a traced x needs minlength (the number of bins) "
                                      "known before its values")
        length = int(minlength)
    else:
        length = max(int(v.array.max()) + 1 if v.array.size else 0, int(minlength))
    counted = tensor(b, weights) if weights is not None else b.broadcast(b.scalar(1, v), shape=list(v.type.shape))
    if weights is not None and not counted.type.dtype.is_float and not counted.type.dtype.is_int:
        counted = tensor(b, counted, "int32")
    inside = b.logical_and(b.greater_equal(v, b.scalar(0, v)), b.less(v, b.scalar(length, v)))
    bins = b.constant(np.arange(length, dtype=v.type.dtype.numpy))
    hit = b.logical_and(b.equal(b.reshape(v, shape=[*v.type.shape, 1]), bins),
                        b.reshape(inside, shape=[*v.type.shape, 1]))
    values = b.reshape(counted, shape=[*counted.type.shape, 1])
    return b.reduce_sum(b.select(hit, values, b.scalar(0, values)), axes=[v.type.rank - 1])

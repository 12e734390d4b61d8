"""Sorting ops of `keras.ops` (sort, argsort, top_k, in_top_k) and the order statistics built on
them (median, quantile, percentile), composed from the op table.

The IR has no sort. Along an axis of static length n, each element's place in the sorted order is
counted instead: how many elements come before it (smaller, or equal and earlier, so the order
is stable; NaN after every number, as numpy's). The sorted values are then the elements picked
by place, a select per (element, place) pair summed over the elements, which is exact and
differentiable (a value's gradient goes back to the element it came from). This costs n x n
comparisons per row: meant for the axes layers sort (classes, a sequence, a window), not for
millions of elements.

    >>> from nncompile.keras import ops
    >>> values, indices = ops.top_k(np.array([3.0, 1.0, 4.0, 1.0], "float32"), 2)
    >>> values.tolist(), indices.tolist()
    ([4.0, 3.0], [2, 0])
"""
from __future__ import annotations

import numpy as np

from nncompile.ir import Value
from nncompile.keras.ops.core import (canonical_axis, float_dtype, keras_op, lowest, result_type, static_length,
                                      tensor)


# Sorting compares every pair of a row's elements: an axis of n elements takes n * n memory.
MAX_SORTED = 4096


def _last_axis_length(v, op: str) -> int:
    n = static_length(v, -1, op, "the sorted axis")
    if n > MAX_SORTED:
        raise NotImplementedError(f"ops.{op}: the sorted axis has {n} elements; nncompile sorts by "
                                  f"comparing every pair, up to {MAX_SORTED} elements an axis")
    return n


def _places(b, v, descending: bool):
    """Each element's place in the stable order of v's last axis (int32), NaN last ascending
    and first descending (as numpy's sort and lax.top_k)."""
    n = v.type.shape[-1]
    mine = b.reshape(v, shape=[*v.type.shape, 1])          # element i along axis -2
    other = b.reshape(v, shape=[*v.type.shape[:-1], 1, n])  # element j along axis -1
    first, second = (mine, other) if descending else (other, mine)
    before = b.less(first, second)      # j before i: other < mine (ascending)
    equal = b.equal(first, second)
    if v.type.dtype.is_float:
        nan_first, nan_second = b.not_equal(first, first), b.not_equal(second, second)
        before = b.logical_or(before, b.logical_and(nan_second, b.logical_not(nan_first)))
        equal = b.logical_or(equal, b.logical_and(nan_first, nan_second))
    index = np.arange(n)
    earlier = b.constant(index[None, :] < index[:, None])   # [i, j]: j < i
    comes_before = b.logical_or(before, b.logical_and(equal, earlier))
    return b.reduce_sum(tensor(b, comes_before, "int32"), axes=[v.type.rank])


def _by_place(b, v, places, count: int, with_indices: bool):
    """The elements at places 0 .. count-1 and their indices along v's last axis: for each place,
    the one element whose place it is (the maximum of a select over the elements, the others
    the dtype's lowest value: exact, -0.0 and NaN included)."""
    n = v.type.shape[-1]
    picked = b.equal(b.reshape(places, shape=[*places.type.shape, 1]), b.constant(np.arange(count, dtype=np.int32)))
    rank = v.type.rank
    fill = b.scalar(lowest(v.type.dtype.numpy), v)
    values = b.reduce_max(b.select(picked, b.reshape(v, shape=[*v.type.shape, 1]), fill), axes=[rank - 1])
    if not with_indices:
        return values, None
    index = b.constant(np.arange(n, dtype=np.int32).reshape(n, 1))
    return values, b.reduce_sum(b.select(picked, index, b.scalar(0, index)), axes=[rank - 1])


def _sorted(b, x, axis, op: str, descending: bool = False, count: int | None = None, with_indices: bool = True):
    """(values, indices) of x sorted along `axis`, the first `count` of them (default all); the
    indices None unless asked for."""
    v = tensor(b, x)
    if v.type.dtype.name == "bool":
        v = tensor(b, v, "int32")
    if axis is None:     # the flattened tensor, as Keras's
        v, axis = b.reshape(v, shape=[-1]), 0
    rank = v.type.rank
    if rank == 0:
        raise ValueError(f"ops.{op}: the input must have at least one axis")
    axis = canonical_axis(axis, rank, op)
    perm = [a for a in range(rank) if a != axis] + [axis]
    moved = b.transpose(v, perm=perm)
    n = _last_axis_length(moved, op)
    values, indices = _by_place(b, moved, _places(b, moved, descending), n if count is None else count,
                                with_indices)
    back = list(np.argsort(perm))
    return b.transpose(values, perm=back), indices if indices is None else b.transpose(indices, perm=back)


def sort_values(b, v, axis: int, op: str, descending: bool = False):
    """`v` sorted along `axis` (ascending unless `descending`), for ops and activations that sort."""
    return _sorted(b, v, axis, op, descending, with_indices=False)[0]


@keras_op
def sort(b, x, axis=-1):
    """`x` sorted along `axis`, ascending (NaN last).

    >>> sort(np.array([[3, 1, 2]], "int32")).tolist()
    [[1, 2, 3]]
    """
    return tensor(b, sort_values(b, x, axis, "sort"), result_type(x))


@keras_op
def argsort(b, x, axis=-1):
    """The indices that sort `x` along `axis` (stable, NaN last), as int32."""
    return _sorted(b, x, axis, "argsort")[1]


@keras_op
def top_k(b, x, k, sorted=True):  # noqa: A002  (Keras's name)
    """The `k` largest values along the last axis and their indices (int32), largest first, of
    equal values the earlier first.

    >>> top_k(np.array([1, 5, 5, 2], "int32"), 2)[1].tolist()
    [1, 2]
    """
    v = tensor(b, x)
    n = _last_axis_length(v, "top_k")
    if not 0 < k <= n:
        raise ValueError(f"ops.top_k: k must be in [1, {n}] for an axis of length {n}; received {k}")
    values, indices = _sorted(b, v, -1, "top_k", descending=True, count=int(k))
    return tensor(b, values, result_type(x)), indices


def beaten_by_fewer_than(b, chosen_mask, predictions, k: int):
    """Whether fewer than `k` scores of each row beat the score `chosen_mask` picks out (ties count
    in, as TF's in_top_k; a NaN chosen score counts out): in_top_k and the top-k accuracies."""
    chosen = b.reduce_sum(b.select(chosen_mask, predictions, b.scalar(0.0, predictions)), axes=[-1],
                          keepdims=True)
    chosen = b.select(b.not_equal(chosen, chosen), b.scalar(-np.inf, chosen), chosen)
    beaten_by = b.reduce_sum(tensor(b, b.greater(predictions, chosen), "int32"), axes=[-1])
    return b.less(beaten_by, b.scalar(int(k), beaten_by))


@keras_op
def in_top_k(b, targets, predictions, k):
    """Whether each row's target class is among its `k` highest predictions (ties count in), as
    bools.

    >>> in_top_k(np.array([2, 0]), np.array([[0.1, 0.2, 0.7], [0.3, 0.5, 0.2]], "float32"), 1).tolist()
    [True, False]
    """
    p = tensor(b, predictions, float_dtype(predictions))
    classes = _last_axis_length(p, "in_top_k")
    labels = tensor(b, targets, "int32")
    mask = b.equal(b.reshape(labels, shape=[*labels.type.shape, 1]), b.constant(np.arange(classes, dtype=np.int32)))
    return beaten_by_fewer_than(b, mask, p, k)


# --- order statistics -------------------------------------------------------------------------

_METHODS = ("linear", "lower", "higher", "midpoint", "nearest")


def _quantiles(b, x, q, axis, method: str, keepdims: bool, op: str, skip_nan: bool = False,
               scale: float = 1.0):
    """numpy's quantile with `method` (or nanquantile, `skip_nan`): sorted along the (flattened)
    axes, NaN last, then read at q * (n - 1), n the row's length (or its count of numbers),
    between neighbours as the method says. NaN in a row gives NaN (all NaN, with `skip_nan`).
    `scale`: what q is given in (100 for percentiles)."""
    if method not in _METHODS:
        raise ValueError(f"ops.{op}: method must be one of {_METHODS}; received {method!r}")
    if isinstance(q, Value):
        raise NotImplementedError(f"ops.{op}: q must be numbers, not a traced tensor")
    qs = np.asarray(q, np.float64) / scale
    if np.any((qs < 0) | (qs > 1)):
        bounds = "percentiles must be in [0, 100]" if "percentile" in op else "quantiles must be in [0, 1]"
        raise ValueError(f"ops.{op}: {bounds}")
    v = tensor(b, x, float_dtype(result_type(x, float)))
    rank = v.type.rank
    axes = list(range(rank)) if axis is None else sorted(canonical_axis(a, rank, op) for a in np.atleast_1d(axis))
    kept = [a for a in range(rank) if a not in axes]
    moved = b.transpose(v, perm=kept + axes)
    length = int(np.prod([v.type.shape[a] for a in axes]))
    rows = b.reshape(moved, shape=[*moved.type.shape[:len(kept)], length])
    ordered = sort_values(b, rows, -1, op)
    numbers = b.reduce_sum(tensor(b, b.equal(rows, rows), v.type.dtype), axes=[len(kept)], keepdims=True)
    count = numbers if skip_nan else b.scalar(float(length), rows)
    position = b.mul(b.constant(qs.reshape(-1).astype(v.type.dtype.numpy)), b.sub(count, b.scalar(1.0, rows)))
    below, above = b.floor(position), b.ceil(position)
    if method == "linear":
        fraction = b.sub(position, below)
    elif method == "lower":
        above, fraction = below, b.scalar(0.0, position)
    elif method == "higher":
        below, fraction = above, b.scalar(0.0, position)
    elif method == "midpoint":
        fraction = b.select(b.greater(above, below), b.scalar(0.5, position), b.scalar(0.0, position))
    else:     # nearest: half to even, as numpy's
        below = above = b.round(position)
        fraction = b.scalar(0.0, position)
    low, high = _at(b, ordered, below), _at(b, ordered, above)
    between = b.add(low, b.mul(b.sub(high, low), fraction))
    # a value read at one place is that element (an infinity or -0.0 too: inf - inf is NaN); two
    # equal places interpolate, so that each gets its share of the gradient, unless infinite
    same_infinity = b.logical_and(b.equal(low, high), b.equal(b.abs(low), b.scalar(np.inf, low)))
    out = b.select(b.logical_or(b.equal(fraction, b.scalar(0.0, fraction)), same_infinity), low, between)
    missing = b.equal(numbers, b.scalar(0.0, numbers)) if skip_nan else b.less(numbers, b.scalar(float(length), rows))
    out = b.select(missing, b.scalar(np.nan, out), out)
    out = b.transpose(out, perm=[len(kept), *range(len(kept))])     # the quantiles first, as numpy's
    if keepdims:
        out = b.reshape(out, shape=[out.type.shape[0], *[1 if a in axes else v.type.shape[a] for a in range(rank)]])
    return out if qs.ndim else b.reshape(out, shape=list(out.type.shape[1:]))


def _at(b, ordered, places):
    """The elements of each row of `ordered` (..., n) at the whole-number `places` (..., m): the
    maximum of a select against the row's positions (exact, differentiable)."""
    n = ordered.type.shape[-1]
    positions = b.constant(np.arange(n, dtype=ordered.type.dtype.numpy).reshape(n, 1))
    hit = b.equal(b.reshape(places, shape=[*places.type.shape[:-1], 1, places.type.shape[-1]]), positions)
    values = b.reshape(ordered, shape=[*ordered.type.shape, 1])
    return b.reduce_max(b.select(hit, values, b.scalar(-np.inf, values)), axes=[ordered.type.rank - 1])


@keras_op
def quantile(b, x, q, axis=None, method="linear", keepdims=False):
    """The `q`-th quantiles (0 <= q <= 1) along `axis` (None: all), numpy's methods."""
    return _quantiles(b, x, q, axis, method, keepdims, "quantile")


@keras_op
def percentile(b, x, q, axis=None, method="linear", keepdims=False):
    """The `q`-th percentiles (0 <= q <= 100) along `axis` (None: all), numpy's methods."""
    return _quantiles(b, x, q, axis, method, keepdims, "percentile", scale=100)


@keras_op
def median(b, x, axis=None, keepdims=False):
    """The median along `axis` (None: all): the middle value, or the mean of the two middle ones."""
    return _quantiles(b, x, 0.5, axis, "linear", keepdims, "median")


@keras_op
def nanquantile(b, x, q, axis=None, method="linear", keepdims=False):
    """`quantile` of the numbers along `axis`, NaN left out (NaN where there are none)."""
    return _quantiles(b, x, q, axis, method, keepdims, "nanquantile", skip_nan=True)


@keras_op
def nanpercentile(b, x, q, axis=None, method="linear", keepdims=False):
    """`percentile` of the numbers along `axis`, NaN left out (NaN where there are none)."""
    return _quantiles(b, x, q, axis, method, keepdims, "nanpercentile", skip_nan=True, scale=100)


@keras_op
def nanmedian(b, x, axis=None, keepdims=False):
    """`median` of the numbers along `axis`, NaN left out (NaN where there are none)."""
    return _quantiles(b, x, 0.5, axis, "linear", keepdims, "nanmedian", skip_nan=True)


def _nan_arg(b, x, axis, keepdims, largest: bool, op: str):
    v = tensor(b, x)
    if v.type.rank == 0:
        raise ValueError(f"ops.{op}: the input must have at least one axis")
    if axis is None:
        rank = v.type.rank
        flat = _nan_arg(b, b.reshape(v, shape=[-1]), 0, False, largest, op)
        return b.reshape(flat, shape=[1] * rank) if keepdims else flat
    axis = canonical_axis(axis, v.type.rank, op)
    if not v.type.dtype.is_float:
        index = b.op("argmax" if largest else "argmin", v, axis=axis, keepdims=keepdims)
        return tensor(b, index, "int32")
    nan = b.not_equal(v, v)
    filled = b.select(nan, b.scalar(-np.inf if largest else np.inf, v), v)
    index = tensor(b, b.op("argmax" if largest else "argmin", filled, axis=axis, keepdims=keepdims), "int32")
    all_nan = b.reduce_min(tensor(b, nan, "int32"), axes=[axis], keepdims=keepdims)
    return b.select(b.equal(all_nan, b.scalar(1, all_nan)), b.scalar(-1, index), index)


@keras_op
def nanargmax(b, x, axis=None, keepdims=False):
    """The index of the largest number along `axis` (None: of the flattened x), NaN left out;
    -1 where there are only NaN (as Keras on JAX). int32."""
    return _nan_arg(b, x, axis, keepdims, True, "nanargmax")


@keras_op
def nanargmin(b, x, axis=None, keepdims=False):
    """The index of the smallest number along `axis` (None: of the flattened x), NaN left out;
    -1 where there are only NaN (as Keras on JAX). int32."""
    return _nan_arg(b, x, axis, keepdims, False, "nanargmin")


@keras_op
def argpartition(b, x, kth, axis=-1):
    """Indices that put the `kth` element of `x` along `axis` where sorting would, the smaller
    ones before it and the larger after (numpy's contract; here the whole stable sort, which
    keeps it), as int32."""
    v = tensor(b, x)
    n = v.type.shape[canonical_axis(axis, v.type.rank, "argpartition")]
    if isinstance(n, int) and not -n <= int(kth) < n:
        raise ValueError(f"ops.argpartition: kth {kth} is out of bounds for an axis of length {n}")
    return _sorted(b, v, axis, "argpartition")[1]

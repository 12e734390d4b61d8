"""Statistics of `keras.ops`, composed from the op table: weighted averages, the NaN-ignoring
reductions and running totals, the trapezoidal rule, correlation coefficients and histograms.

    >>> from nncompile.keras import ops
    >>> float(ops.nanmean(np.array([1.0, np.nan, 3.0], "float32")))
    2.0
"""
from __future__ import annotations

import numpy as np

from nncompile.keras.ops.core import (canonical_axes, canonical_axis, float_dtype, keras_op, result_type,
                                      static_length, tensor, tensors)
from nncompile.keras.ops.numpy import _mean_parts, max as max_, min as min_, prod, running, sum as sum_
from nncompile.keras.ops.numpy_arrays import diff


# --- averages and NaN-ignoring reductions ----------------------------------------------------------

@keras_op
def average(b, x, axis=None, weights=None):
    """The mean along `axis`, weighted by `weights` (of x's shape, or 1-D along `axis`)."""
    if weights is None:
        return tensor(b, _mean_parts(b, x, axis, False)[0], float_dtype(result_type(x, float)))
    v, w = tensors(b, x, weights, dtype=float_dtype(result_type(x, weights, float)))
    if w.type.rank == 1 and v.type.rank > 1:
        if axis is None:
            raise ValueError("ops.average: 1-D weights need an axis")
        at = canonical_axis(axis, v.type.rank, "average")
        w = b.reshape(w, shape=[w.type.shape[0] if a == at else 1 for a in range(v.type.rank)])
    axes = canonical_axes(axis, v.type.rank, "average")
    total = b.reduce_sum(b.broadcast(w, shape=list(v.type.shape)), axes=axes)
    return b.div(b.reduce_sum(b.mul(v, w), axes=axes), total)


def _without_nan(b, x, fill):
    """`x` with NaN replaced by `fill` (floats; other dtypes have none)."""
    v = tensor(b, x)
    if not v.type.dtype.is_float:
        return v
    return b.select(b.not_equal(v, v), b.scalar(fill, v), v)


@keras_op
def nansum(b, x, axis=None, keepdims=False):
    """The sum along `axis`, NaN counted as 0."""
    return sum_.__wrapped__(b, _without_nan(b, x, 0.0), axis, keepdims)


@keras_op
def nanprod(b, x, axis=None, keepdims=False):
    """The product along `axis`, NaN counted as 1."""
    return prod.__wrapped__(b, _without_nan(b, x, 1.0), axis, keepdims)


def _count_numbers(b, v, axis, keepdims):
    numbers = b.logical_not(b.not_equal(v, v)) if v.type.dtype.is_float else b.equal(v, v)
    return b.reduce_sum(tensor(b, numbers, v.type.dtype if v.type.dtype.is_float else "float32"),
                        axes=canonical_axes(axis, v.type.rank, "nanmean"), keepdims=keepdims)


@keras_op
def nanmean(b, x, axis=None, keepdims=False):
    """The mean of the numbers along `axis`, NaN left out (NaN where there are none)."""
    v = tensor(b, x, float_dtype(result_type(x, float)))
    summed = b.reduce_sum(_without_nan(b, v, 0.0), axes=canonical_axes(axis, v.type.rank, "nanmean"),
                          keepdims=keepdims)
    return b.div(summed, _count_numbers(b, v, axis, keepdims))


def _nan_extremum(b, x, axis, keepdims, largest: bool):
    v = tensor(b, x)
    if not v.type.dtype.is_float:
        return (max_ if largest else min_).__wrapped__(b, v, axis, keepdims)
    fill = -np.inf if largest else np.inf
    out = (max_ if largest else min_).__wrapped__(b, _without_nan(b, v, fill), axis, keepdims)
    none = b.equal(_count_numbers(b, v, axis, keepdims), b.scalar(0.0, v))
    return b.select(none, b.scalar(np.nan, v), out)


@keras_op
def nanmax(b, x, axis=None, keepdims=False):
    """The maximum along `axis`, NaN left out (NaN where there are only NaN)."""
    return _nan_extremum(b, x, axis, keepdims, largest=True)


@keras_op
def nanmin(b, x, axis=None, keepdims=False):
    """The minimum along `axis`, NaN left out (NaN where there are only NaN)."""
    return _nan_extremum(b, x, axis, keepdims, largest=False)


@keras_op
def nanvar(b, x, axis=None, keepdims=False):
    """The variance of the numbers along `axis`, NaN left out."""
    v = tensor(b, x, float_dtype(result_type(x, float)))
    mean = nanmean.__wrapped__(b, v, axis, True)
    squares = b.square(b.sub(_without_nan(b, v, 0.0), mean))
    squares = b.select(b.not_equal(v, v), b.scalar(0.0, v), squares)
    summed = b.reduce_sum(squares, axes=canonical_axes(axis, v.type.rank, "nanvar"), keepdims=keepdims)
    return b.div(summed, _count_numbers(b, v, axis, keepdims))


@keras_op
def nanstd(b, x, axis=None, keepdims=False):
    """The standard deviation of the numbers along `axis`, NaN left out."""
    return b.sqrt(nanvar.__wrapped__(b, x, axis, keepdims))


@keras_op
def nancumsum(b, x, axis=None, dtype=None):
    """The running sum along `axis` (None: of the flattened `x`), NaN counted as 0."""
    v = _without_nan(b, x, 0.0)
    return running(b, tensor(b, v, dtype or _running_dtype(v)), axis, "nancumsum")


@keras_op
def nancumprod(b, x, axis=None, dtype=None):
    """The running product along `axis` (None: of the flattened `x`), NaN counted as 1."""
    v = _without_nan(b, x, 1.0)
    return running(b, tensor(b, v, dtype or _running_dtype(v)), axis, "nancumprod", product=True)


def _running_dtype(v) -> str:
    """The dtype Keras gives a running total of `v`: its own, bools as int32."""
    return "int32" if v.type.dtype.name == "bool" else result_type(v)


@keras_op
def trapezoid(b, y, x=None, dx=1.0, axis=-1):
    """The integral of `y` along `axis` by the trapezoidal rule, at points `x` or `dx` apart."""
    v = tensor(b, y, float_dtype(result_type(y, float)))
    axis = canonical_axis(axis, v.type.rank, "trapezoid")
    n = static_length(v, axis, "trapezoid")
    later = b.slice(v, starts=[1], ends=[n], axes=[axis], steps=[1])
    earlier = b.slice(v, starts=[0], ends=[max(n - 1, 0)], axes=[axis], steps=[1])
    if x is None:
        widths = b.scalar(dx, v)
    else:
        points = tensor(b, x, v.type.dtype)
        widths = diff.__wrapped__(b, points, 1, -1 if points.type.rank == 1 else axis)
        if widths.type.rank == 1 and v.type.rank > 1:
            widths = b.reshape(widths, shape=[n - 1 if a == axis else 1 for a in range(v.type.rank)])
    area = b.mul(b.add(later, earlier), b.mul(widths, b.scalar(0.5, v)))
    return b.reduce_sum(area, axes=[axis])


@keras_op
def corrcoef(b, x):
    """The Pearson correlation coefficients of the rows of `x` (variables in rows, observations in
    columns), as numpy's corrcoef."""
    v = tensor(b, x, float_dtype(result_type(x, float)))
    vector = v.type.rank == 1
    if vector:
        v = b.reshape(v, shape=[1, -1])
    if v.type.rank != 2:
        raise ValueError(f"ops.corrcoef: x must be 1-D or 2-D; received rank {v.type.rank}")
    centered = b.sub(v, b.reduce_mean(v, axes=[1], keepdims=True))
    covariance = b.matmul(centered, centered, transpose_b=True)
    spread = b.sqrt(b.reduce_sum(b.square(centered), axes=[1], keepdims=True))
    out = b.div(b.div(covariance, spread), b.transpose(spread, perm=[1, 0]))
    # rounding can carry a coefficient just past 1, which numpy clips
    out = b.minimum(b.maximum(out, b.scalar(-1.0, out)), b.scalar(1.0, out))
    return b.reshape(out, shape=[]) if vector else out     # one variable: its 1, as numpy's


@keras_op
def histogram(b, x, bins=10, range=None):  # noqa: A002  (Keras's name)
    """The counts of `x`'s elements in `bins` equal bins over `range` (default: x's smallest to its
    largest), the last bin closed, and the bins' edges; float counts, as Keras's."""
    v = tensor(b, x, float_dtype(result_type(x, float)))
    flat = b.reshape(v, shape=[-1])
    bins = int(bins)
    if bins <= 0:
        raise ValueError(f"ops.histogram: bins must be positive; received {bins}")
    if range is None:
        low, high = b.reduce_min(flat, axes=[0]), b.reduce_max(flat, axes=[0])
    else:
        low, high = b.scalar(float(range[0]), flat), b.scalar(float(range[1]), flat)
    # an empty span (all equal) is widened by 0.5 each way, as numpy's
    same = b.equal(low, high)
    low = b.select(same, b.sub(low, b.scalar(0.5, low)), low)
    high = b.select(same, b.add(high, b.scalar(0.5, high)), high)
    steps = b.constant(np.arange(bins, dtype=flat.type.dtype.numpy) / bins)
    # the last edge is `high` itself (low + 1 * (high - low) can round below it, as numpy avoids)
    edges = b.concat(b.add(low, b.mul(steps, b.sub(high, low))), b.reshape(high, shape=[1]), axis=0)
    inside = b.logical_and(b.greater_equal(flat, low), b.less_equal(flat, high))
    column = b.reshape(flat, shape=[-1, 1])
    lower = b.slice(edges, starts=[0], ends=[bins], axes=[0], steps=[1])
    upper = b.slice(edges, starts=[1], ends=[bins + 1], axes=[0], steps=[1])
    last = b.constant(np.arange(bins) == bins - 1)
    hit = b.logical_and(b.greater_equal(column, lower),
                        b.logical_or(b.less(column, upper), b.logical_and(last, b.less_equal(column, upper))))
    hit = b.logical_and(hit, b.reshape(inside, shape=[-1, 1]))
    counts = b.reduce_sum(tensor(b, hit, flat.type.dtype), axes=[0])
    return counts, edges

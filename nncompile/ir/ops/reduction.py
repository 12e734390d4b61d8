"""Reductions over axes (sum, mean, max, min, prod) and arg-reductions (argmax, argmin).

The output keeps the input dtype (argmax/argmin give i64). Reducing a symbolic dimension is fine:
the output drops it (or keeps it as 1 with `keepdims`).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from nncompile.ir.dtypes import DType
from nncompile.ir.errors import ShapeError
from nncompile.ir.optable import OPS, Attr, AttrKind, Fusion, defop
from nncompile.ir.types import Shape, TensorType, is_symbol, normalize_axis

_REDUCE_ATTRS = {"axes": Attr(AttrKind.INTS), "keepdims": Attr(AttrKind.BOOL, False)}
_ARG_ATTRS = {"axis": Attr(AttrKind.INT), "keepdims": Attr(AttrKind.BOOL, False)}


def normalize_axes(axes: Sequence[int], rank: int) -> tuple[int, ...]:
    """`axes` made non-negative; ShapeError for an axis out of range or given twice."""
    for a in axes:
        if not -rank <= a < rank:
            raise ShapeError(f"axis {a} is out of range for rank {rank}")
    out = tuple(a % rank for a in axes)
    if len(set(out)) != len(out):
        raise ShapeError(f"axes {tuple(axes)} name an axis twice (rank {rank})")
    return out


def reduced_shape(shape: Shape, axes: Sequence[int], keepdims: bool) -> Shape:
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def _check_number(t: TensorType, float_only: bool) -> None:
    ok = t.dtype.is_float or (t.dtype.is_int and not float_only)
    if not ok:
        raise ShapeError(f"input has dtype {t.dtype}; expected a {'float' if float_only else 'number'} dtype")


def _check_not_empty(shape: Sequence, axes: Sequence[int], prefix: str = "") -> None:
    """max/min/argmax/argmin have no identity, so an axis of size 0 cannot be reduced."""
    for a in axes:
        if shape[a] == 0:
            raise ShapeError(f"{prefix}axis {a} has size 0; this reduction has no identity value")


def _reduce_rule(float_only: bool, needs_elements: bool):
    def infer(ts: list[TensorType], attrs: dict) -> TensorType:
        x = ts[0]
        _check_number(x, float_only)
        axes = normalize_axes(attrs["axes"], x.rank)
        if needs_elements:
            _check_not_empty(x.shape, axes)
        return x.with_shape(reduced_shape(x.shape, axes, attrs["keepdims"]))
    return infer


def _reduce_reference(name: str, fn: Callable, needs_elements: bool):
    def reference(xs: list[np.ndarray], attrs: dict) -> np.ndarray:
        x = xs[0]
        axes = normalize_axes(attrs["axes"], x.ndim)
        if needs_elements:
            _check_not_empty(x.shape, axes, f"op '{name}': ")
        return fn(x, axis=axes, keepdims=attrs["keepdims"])
    return reference


def _sum(x, axis, keepdims):
    return np.sum(x, axis=axis, keepdims=keepdims, dtype=x.dtype)


def _mean(x, axis, keepdims):
    # sum / count rather than np.mean, which warns on an empty axis; f16 accumulates in f32 as
    # np.mean does.
    accumulate = np.float32 if x.dtype == np.float16 else x.dtype
    return np.sum(x, axis=axis, keepdims=keepdims, dtype=accumulate) / math.prod(x.shape[a] for a in axis)


def _prod(x, axis, keepdims):
    return np.prod(x, axis=axis, keepdims=keepdims, dtype=x.dtype)


# name -> (numpy reduction, float dtypes only, needs at least one element, doc)
_REDUCTIONS = {
    "reduce_sum": (_sum, False, False, "sum over `axes`"),
    "reduce_mean": (_mean, True, False, "arithmetic mean over `axes`"),
    "reduce_max": (np.max, False, True, "maximum over `axes`"),
    "reduce_min": (np.min, False, True, "minimum over `axes`"),
    "reduce_prod": (_prod, False, False, "product over `axes`"),
}

for _name, (_fn, _float_only, _needs, _doc) in _REDUCTIONS.items():
    defop(_name, inputs=("x",), attrs=_REDUCE_ATTRS, fusion=Fusion.REDUCTION,
          infer=_reduce_rule(_float_only, _needs), reference=_reduce_reference(_name, _fn, _needs), doc=_doc)


def _arg_rule(ts: list[TensorType], attrs: dict) -> TensorType:
    x = ts[0]
    _check_number(x, float_only=False)
    if x.rank == 0:
        raise ShapeError("input is a scalar; expected rank >= 1")
    axis = normalize_axis(attrs["axis"], x.rank)
    _check_not_empty(x.shape, (axis,))
    return TensorType(DType.i64, reduced_shape(x.shape, (axis,), attrs["keepdims"]))


def _arg_reference(name: str, fn: Callable):
    def reference(xs: list[np.ndarray], attrs: dict) -> np.ndarray:
        x = xs[0]
        axis = normalize_axis(attrs["axis"], x.ndim)
        _check_not_empty(x.shape, (axis,), f"op '{name}': ")
        return fn(x, axis=axis, keepdims=attrs["keepdims"])
    return reference


defop("argmax", inputs=("x",), attrs=_ARG_ATTRS, fusion=Fusion.REDUCTION, infer=_arg_rule,
      reference=_arg_reference("argmax", np.argmax), doc="index (i64) of the first maximum along `axis`")
defop("argmin", inputs=("x",), attrs=_ARG_ATTRS, fusion=Fusion.REDUCTION, infer=_arg_rule,
      reference=_arg_reference("argmin", np.argmin), doc="index (i64) of the first minimum along `axis`")


# --- VJPs (autodiff) ------------------------------------------------------------------------
# The cotangent of a reduction is spread back over the reduced axes. max/min share it equally
# among the elements that tie for the extreme (as TensorFlow and JAX do); prod uses the product
# of the other elements, so that zeros in the input are exact.

def _kept(b, g, x, axes: tuple[int, ...], keepdims: bool):
    """The output cotangent `g` reshaped to the reduced shape with size-1 axes kept."""
    return g if keepdims else b.reshape(g, shape=reduced_shape(x.type.shape, axes, True))


def _count(b, x, axes: tuple[int, ...]):
    """The number of reduced elements as a scalar of x's dtype; counted at run time when a
    reduced axis is symbolic (the batch: a mean over it divides by the batch size)."""
    dims = [x.type.shape[a] for a in axes]
    if not any(is_symbol(d) for d in dims):
        return b.scalar(float(math.prod(dims)), x)
    ones = b.broadcast(b.scalar(1.0, x), shape=dims)
    return b.reduce_sum(ones, axes=list(range(len(dims))))


def _reduce_vjp(kind: str):
    def vjp(b, node, cts):
        x, y = node.inputs[0], node.outputs[0]
        axes = normalize_axes(node.attrs["axes"], x.type.rank)
        g = _kept(b, cts[0], x, axes, node.attrs["keepdims"])
        if kind == "sum":
            return [b.broadcast(g, shape=x.type.shape)]
        if kind == "mean":
            return [b.broadcast(b.div(g, _count(b, x, axes)), shape=x.type.shape)]
        if kind == "prod":
            return [b.mul(g, _product_of_others(b, x, axes))]
        hits = b.cast(b.equal(x, _kept(b, y, x, axes, node.attrs["keepdims"])), dtype=x.type.dtype)
        ties = b.reduce_sum(hits, axes=list(axes), keepdims=True)
        return [b.mul(hits, b.div(g, ties))]
    return vjp


def _product_of_others(b, x, axes: tuple[int, ...]):
    """d prod(x) / d x_i = the product of the other elements: prod / x_i without zeros, the
    product of the non-zeros at the only zero, and 0 everywhere else."""
    zero, one = b.scalar(0.0, x), b.scalar(1.0, x)
    is_zero = b.equal(x, zero)
    nonzero_product = b.reduce_prod(b.select(is_zero, one, x), axes=list(axes), keepdims=True)
    zeros = b.reduce_sum(b.cast(is_zero, dtype=x.type.dtype), axes=list(axes), keepdims=True)
    at_zero = b.select(b.equal(zeros, one), nonzero_product, zero)
    elsewhere = b.select(b.equal(zeros, zero), b.div(nonzero_product, x), zero)
    return b.select(is_zero, at_zero, elsewhere)


for _name, _kind in (("reduce_sum", "sum"), ("reduce_mean", "mean"), ("reduce_max", "extreme"),
                     ("reduce_min", "extreme"), ("reduce_prod", "prod")):
    OPS[_name].vjp = _reduce_vjp(_kind)

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
from nncompile.ir.optable import Attr, AttrKind, Fusion, defop
from nncompile.ir.types import Shape, TensorType, normalize_axis

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

"""Neural-network ops: softmax and log_softmax along one axis.

Fusion kind OPAQUE: each is a reduction (max, then sum of exponentials) followed by an
elementwise pass over the same axis, so it neither reduces its shape like REDUCTION ops nor maps
elements independently; code generation emits it as one kernel of its own.
"""
from __future__ import annotations

import numpy as np

from nncompile.ir.errors import ShapeError
from nncompile.ir.optable import OPS, Attr, AttrKind, Fusion, defop
from nncompile.ir.types import TensorType, normalize_axis


def _softmax_rule(ts: list[TensorType], attrs: dict) -> TensorType:
    x = ts[0]
    if not x.dtype.is_float:
        raise ShapeError(f"input has dtype {x.dtype}; expected a float dtype")
    if x.rank == 0:
        raise ShapeError("input is a scalar; expected rank >= 1")
    normalize_axis(attrs["axis"], x.rank)
    return x


def _shifted(x: np.ndarray, axis: int) -> np.ndarray:
    """x minus its maximum along `axis`, so exp never overflows (an empty axis stays empty)."""
    return x - np.max(x, axis=axis, keepdims=True, initial=-np.inf)


def _softmax(xs: list[np.ndarray], attrs: dict) -> np.ndarray:
    e = np.exp(_shifted(xs[0], attrs["axis"]))
    return e / np.sum(e, axis=attrs["axis"], keepdims=True)


def _log_softmax(xs: list[np.ndarray], attrs: dict) -> np.ndarray:
    z = _shifted(xs[0], attrs["axis"])
    return z - np.log(np.sum(np.exp(z), axis=attrs["axis"], keepdims=True))


_ATTRS = {"axis": Attr(AttrKind.INT, -1)}

defop("softmax", inputs=("x",), attrs=_ATTRS, fusion=Fusion.OPAQUE, infer=_softmax_rule,
      reference=_softmax, doc="exp(x) / sum(exp(x)) along `axis`")
defop("log_softmax", inputs=("x",), attrs=_ATTRS, fusion=Fusion.OPAQUE, infer=_softmax_rule,
      reference=_log_softmax, doc="x - log(sum(exp(x))) along `axis`")


# --- VJPs (autodiff) ------------------------------------------------------------------------

def _softmax_vjp(b, node, cts):
    """dx = y * (g - sum(g * y)) along the axis."""
    y, g, axis = node.outputs[0], cts[0], node.attrs["axis"]
    return [b.mul(y, b.sub(g, b.reduce_sum(b.mul(g, y), axes=[axis], keepdims=True)))]


def _log_softmax_vjp(b, node, cts):
    """dx = g - softmax(x) * sum(g) along the axis, with softmax(x) = exp(y)."""
    y, g, axis = node.outputs[0], cts[0], node.attrs["axis"]
    return [b.sub(g, b.mul(b.exp(y), b.reduce_sum(g, axes=[axis], keepdims=True)))]


OPS["softmax"].vjp = _softmax_vjp
OPS["log_softmax"].vjp = _log_softmax_vjp

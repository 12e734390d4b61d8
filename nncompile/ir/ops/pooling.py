"""2-D pooling over NHWC inputs: max_pool2d and avg_pool2d.

Fusion kind EPILOGUE: like conv2d, a pooling op is a loop nest over output windows whose result
can absorb an elementwise epilogue, but it cannot be inlined into a consumer's loop without
recomputing overlapping windows (TVM classifies pooling the same way, OUT_ELEMWISE_FUSABLE).
Padding never contributes: max ignores it, avg divides by the count of real elements in each
window (Keras 'same' semantics).
"""
from __future__ import annotations

import numpy as np

from nncompile.ir.errors import ShapeError
from nncompile.ir.ops.linalg import check_window_attrs, pad_spatial, pads_within, window_output_size, windows
from nncompile.ir.optable import OPS, Attr, AttrKind, Fusion, defop
from nncompile.ir.types import TensorType

_ATTRS = {"window": Attr(AttrKind.INTS), "strides": Attr(AttrKind.INTS),
          "pads": Attr(AttrKind.SHAPE, (0, 0, 0, 0))}


def _pool_rule(float_only: bool):
    def infer(ts: list[TensorType], attrs: dict) -> TensorType:
        x = ts[0]
        check_window_attrs(attrs, ("window", "strides", "pads"))
        if x.rank != 4:
            raise ShapeError(f"input {x} has rank {x.rank}; expected rank 4 (N,H,W,C)")
        if not (x.dtype.is_float or (x.dtype.is_int and not float_only)):
            raise ShapeError(f"input has dtype {x.dtype}; expected a "
                             f"{'float' if float_only else 'number'} dtype")
        (kh, kw), (sh, sw), (top, bottom, left, right) = attrs["window"], attrs["strides"], attrs["pads"]
        # A pad as wide as the window would make a window of padding only, which has no value.
        if not pads_within(attrs["pads"], attrs["window"]):
            raise ShapeError(f"pads {attrs['pads']} must be smaller than the window {attrs['window']}")
        for axis, size in (("height", x.shape[1]), ("width", x.shape[2])):
            if size == 0:
                raise ShapeError(f"input {x} has {axis} 0; pooling needs at least one element")
        oh = window_output_size(x.shape[1], kh, sh, 1, top, bottom, "height")
        ow = window_output_size(x.shape[2], kw, sw, 1, left, right, "width")
        return x.with_shape((x.shape[0], oh, ow, x.shape[3]))
    return infer


def _lowest(dtype: np.dtype):
    return -np.inf if dtype.kind == "f" else np.iinfo(dtype).min


def _max_pool_reference(xs: list[np.ndarray], attrs: dict) -> np.ndarray:
    x = xs[0]
    padded = pad_spatial(x, attrs["pads"], _lowest(x.dtype))
    return windows(padded, attrs["window"], attrs["strides"], (1, 1)).max(axis=(4, 5))


def _avg_pool_reference(xs: list[np.ndarray], attrs: dict) -> np.ndarray:
    x = xs[0]
    window, strides, pads = attrs["window"], attrs["strides"], attrs["pads"]
    sums = windows(pad_spatial(x, pads, 0), window, strides, (1, 1)).sum(axis=(4, 5))
    ones = np.ones((1,) + x.shape[1:3] + (1,), x.dtype)
    counts = windows(pad_spatial(ones, pads, 0), window, strides, (1, 1)).sum(axis=(4, 5))
    return sums / counts


defop("max_pool2d", inputs=("x",), attrs=_ATTRS, fusion=Fusion.EPILOGUE, infer=_pool_rule(False),
      reference=_max_pool_reference, doc="maximum over each window of an NHWC input; padding ignored")
defop("avg_pool2d", inputs=("x",), attrs=_ATTRS, fusion=Fusion.EPILOGUE, infer=_pool_rule(True),
      reference=_avg_pool_reference,
      doc="mean over the real (non-padding) elements of each window of an NHWC input")


# --- VJPs (autodiff) ------------------------------------------------------------------------

def _max_pool2d_vjp(b, node, cts):
    attrs = {k: node.attrs[k] for k in ("window", "strides", "pads")}
    return [b.op("max_pool2d_grad", node.inputs[0], cts[0], **attrs)]


def _avg_pool2d_vjp(b, node, cts):
    attrs = {k: node.attrs[k] for k in ("window", "strides", "pads")}
    return [b.op("avg_pool2d_grad", cts[0], input_hw=node.inputs[0].type.shape[1:3], **attrs)]


OPS["max_pool2d"].vjp = _max_pool2d_vjp
OPS["avg_pool2d"].vjp = _avg_pool2d_vjp

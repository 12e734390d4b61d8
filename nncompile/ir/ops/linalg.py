"""Contractions: matmul (numpy semantics, batch broadcasting) and NHWC conv2d.

Both take an elementwise epilogue (bias, activation, residual add) when fused. This module also
holds the window arithmetic that conv2d and pooling share, and `same_pads` for the front ends.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from nncompile.ir.dims import canonical, window_positions
from nncompile.ir.errors import ShapeError
from nncompile.ir.optable import OPS, Attr, AttrKind, Fusion, defop
from nncompile.ir.types import Dim, TensorType, broadcast_shapes, is_symbol


def _swap_last(shape: tuple, transpose: bool) -> tuple:
    return shape[:-2] + (shape[-1], shape[-2]) if transpose else shape


def _matmul_rule(ts: list[TensorType], attrs: dict) -> TensorType:
    a, b = ts
    for name, t in (("a", a), ("b", b)):
        if t.rank < 2:
            raise ShapeError(f"input {name} has rank {t.rank} ({t}); expected rank >= 2 "
                             f"(reshape a vector to a matrix first)")
    if a.dtype != b.dtype:
        raise ShapeError(f"input dtypes {a.dtype} and {b.dtype} differ; cast one first")
    if not (a.dtype.is_float or a.dtype.is_int):
        raise ShapeError(f"inputs have dtype {a.dtype}; expected a number dtype")
    sa = _swap_last(a.shape, attrs["transpose_a"])
    sb = _swap_last(b.shape, attrs["transpose_b"])
    if sa[-1] != sb[-2]:
        raise ShapeError(f"contraction dimensions differ: a {a} gives {sa[-1]!r}, b {b} gives "
                         f"{sb[-2]!r} (transpose_a={attrs['transpose_a']}, "
                         f"transpose_b={attrs['transpose_b']})")
    try:
        batch = broadcast_shapes(sa[:-2], sb[:-2])
    except ShapeError as e:
        raise ShapeError(f"batch dimensions of a {a} and b {b} do not broadcast: {e}") from None
    return TensorType(a.dtype, batch + (sa[-2], sb[-1]))


def _matmul_reference(xs: list[np.ndarray], attrs: dict) -> np.ndarray:
    a, b = xs
    if attrs["transpose_a"]:
        a = np.swapaxes(a, -1, -2)
    if attrs["transpose_b"]:
        b = np.swapaxes(b, -1, -2)
    return np.matmul(a, b)


defop("matmul", inputs=("a", "b"), fusion=Fusion.EPILOGUE, infer=_matmul_rule,
      reference=_matmul_reference,
      attrs={"transpose_a": Attr(AttrKind.BOOL, False), "transpose_b": Attr(AttrKind.BOOL, False)},
      doc="matrix product over the last two axes, batch axes broadcast (numpy matmul)")


# --- windows: shared by conv2d and pooling ------------------------------------------------------

def same_pads(in_size: Dim, kernel: int, stride: int, dilation: int) -> tuple[Dim, Dim]:
    """(before, after) padding of Keras/TensorFlow 'same': the output has ceil(in/stride) positions.
    Over a symbolic size they are expressions when the stride is above 1 (they change with the
    size modulo the stride)."""
    for name, value, low in (("kernel", kernel, 1), ("stride", stride, 1), ("dilation", dilation, 1),
                             ("in_size", in_size, 0)):
        if is_symbol(value) and name == "in_size":
            return _symbolic_same_pads(value, (kernel - 1) * dilation + 1, stride)
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
            raise ShapeError(f"same_pads: {name} is {value!r}; expected an int >= {low}")
    out = -(-in_size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - in_size, 0)
    return total // 2, total - total // 2


def _symbolic_same_pads(size: str, extent: int, stride: int) -> tuple[Dim, Dim]:
    """'same' over a symbolic size: (ceil(size/stride) - 1) * stride + extent - size in all, which
    never falls below 0 when the window is at least as wide as the stride. A narrower one would
    need TensorFlow's max(0, ...): expressible as a sum of divisions, but then its positions
    would not read as ceil(size/stride), and a residual branch's sizes would not compare equal."""
    if extent < stride:
        raise ShapeError(f"padding='same' with a window of {extent} narrower than its stride {stride} "
                         f"over a size known only when run ({size!r}) is not supported (TensorFlow "
                         f"pads it by max(0, ...), which depends on the size); use padding='valid'")
    total = canonical(f"(({size})+{stride - 1})//{stride}*{stride}-{stride}+{extent}-({size})")
    before = canonical(f"({total})//2")
    return before, canonical(f"({total})-({before})")


def check_window_attrs(attrs: dict, names: Sequence[str]) -> None:
    """Length and sign checks of the 2-D window attributes in `names` (strides, pads, ...)."""
    rules = {"window": (2, 1), "strides": (2, 1), "dilations": (2, 1), "pads": (4, 0)}
    for name in names:
        length, low = rules[name]
        value = attrs[name]
        if len(value) != length or any(not is_symbol(v) and v < low for v in value):
            raise ShapeError(f"attribute {name!r} is {value}; expected {length} ints >= {low}")


def pads_within(pads: Sequence[Dim], window: Sequence[int]) -> bool:
    """Whether every static pad is narrower than the window; a symbolic one ('same' over a size
    known only when run) is at most extent - 1 by construction."""
    return all(is_symbol(p) or p < k for p, k in zip(pads, (window[0], window[0], window[1], window[1])))


def window_output_size(size: Dim, kernel: int, stride: int, dilation: int, before: int, after: int,
                       axis: str) -> Dim:
    """Positions of a (dilated) window sliding over `size` padded by `before`/`after`; over a
    symbolic size, the expression of them (checked when sizes are bound: `ir/sizes.py`)."""
    extent = (kernel - 1) * dilation + 1
    if any(is_symbol(d) for d in (size, before, after)):
        return window_positions(size, extent, stride, canonical(f"{before}+{after}"))
    padded = size + before + after
    if extent > padded:
        raise ShapeError(f"window of {axis} spans {extent} (kernel {kernel}, dilation {dilation}) "
                         f"but the padded input is {padded} ({size} + pads {before}, {after})")
    return (padded - extent) // stride + 1


def windows(x: np.ndarray, kernel: Sequence[int], strides: Sequence[int],
            dilations: Sequence[int]) -> np.ndarray:
    """All windows of an (already padded) NHWC array, as a view of shape (N, OH, OW, C, KH, KW)."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, strides, dilations
    view = sliding_window_view(x, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(1, 2))
    return view[:, ::sh, ::sw, :, ::dh, ::dw]


def pad_spatial(x: np.ndarray, pads: Sequence[int], value) -> np.ndarray:
    """`x` (NHWC) with `value` added around H and W as pads (top, bottom, left, right) say."""
    top, bottom, left, right = pads
    if not any(pads):
        return x
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=value)


# --- conv2d -----------------------------------------------------------------------------------

def _conv2d_rule(ts: list[TensorType], attrs: dict) -> TensorType:
    x, w = ts
    check_window_attrs(attrs, ("strides", "pads", "dilations"))
    groups = attrs["groups"]
    if x.rank != 4 or w.rank != 4:
        raise ShapeError(f"expected x (N,H,W,Cin) and w (KH,KW,Cin/groups,Cout) of rank 4, got x {x} "
                         f"and w {w}")
    if x.dtype != w.dtype or not x.dtype.is_float:
        raise ShapeError(f"x {x} and w {w} must share one float dtype")
    if groups < 1:
        raise ShapeError(f"groups is {groups}; expected an int >= 1")
    kh, kw, w_cin, cout = w.shape
    if any(is_symbol(d) for d in w.shape):
        raise ShapeError(f"w {w} must have a static shape")
    if x.shape[3] != w_cin * groups:
        raise ShapeError(f"x has {x.shape[3]!r} input channels but w {w} with groups={groups} "
                         f"expects {w_cin * groups}")
    if cout % groups:
        raise ShapeError(f"w has {cout} output channels, not a multiple of groups={groups}")
    (sh, sw), (dh, dw), (top, bottom, left, right) = attrs["strides"], attrs["dilations"], attrs["pads"]
    oh = window_output_size(x.shape[1], kh, sh, dh, top, bottom, "height")
    ow = window_output_size(x.shape[2], kw, sw, dw, left, right, "width")
    return TensorType(x.dtype, (x.shape[0], oh, ow, cout))


def _conv2d_reference(xs: list[np.ndarray], attrs: dict) -> np.ndarray:
    x, w = xs
    kh, kw, cg, cout = w.shape
    groups = attrs["groups"]
    og = cout // groups
    patches = windows(pad_spatial(x, attrs["pads"], 0), (kh, kw), attrs["strides"], attrs["dilations"])
    outs = [np.tensordot(patches[:, :, :, g * cg:(g + 1) * cg], w[:, :, :, g * og:(g + 1) * og],
                         axes=([3, 4, 5], [2, 0, 1]))
            for g in range(groups)]
    return outs[0] if groups == 1 else np.concatenate(outs, axis=3)


defop("conv2d", inputs=("x", "w"), fusion=Fusion.EPILOGUE, infer=_conv2d_rule,
      reference=_conv2d_reference,
      attrs={"strides": Attr(AttrKind.INTS, (1, 1)), "pads": Attr(AttrKind.SHAPE, (0, 0, 0, 0)),
             "dilations": Attr(AttrKind.INTS, (1, 1)), "groups": Attr(AttrKind.INT, 1)},
      doc="2-D convolution, x NHWC, w (KH,KW,Cin/groups,Cout), pads (top,bottom,left,right)")


# --- VJPs (autodiff) ------------------------------------------------------------------------
# matmul: with op(A) = A or A^T as transpose_a says (B alike), C = op(A) @ op(B) gives
# d op(A) = G @ op(B)^T and d op(B) = op(A)^T @ G; the transposes are the GEMM's flags, never
# transpose ops. Broadcast batch axes come back summed by autodiff. conv2d has its own ops.

def _matmul_vjp(b, node, cts):
    a, w = node.inputs
    g = cts[0]
    ta, tb = node.attrs["transpose_a"], node.attrs["transpose_b"]
    da = (b.matmul(w, g, transpose_a=tb, transpose_b=True) if ta
          else b.matmul(g, w, transpose_b=not tb))
    dw = (b.matmul(g, a, transpose_a=True, transpose_b=ta) if tb
          else b.matmul(a, g, transpose_a=not ta))
    return [da, dw]


def _conv2d_vjp(b, node, cts):
    x, w = node.inputs
    g = cts[0]
    window = {k: node.attrs[k] for k in ("strides", "pads", "dilations", "groups")}
    dx = b.op("conv2d_grad_input", g, w, input_hw=x.type.shape[1:3], **window)
    dw = b.op("conv2d_grad_filter", x, g, kernel_hw=w.type.shape[:2], **window)
    return [dx, dw]


OPS["matmul"].vjp = _matmul_vjp
OPS["conv2d"].vjp = _conv2d_vjp

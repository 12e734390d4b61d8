"""3-D convolution, transposed convolution and pooling over (N, D, H, W, C) built from the IR's
2-D ops, by folding depth into channels.

The batch axis is symbolic, so (N, D) cannot merge into one batch of images. Depth goes into the
channels instead: (N, H, W, D * C), and a grouped conv2d with one group per depth position runs
every depth slice's 2-D convolution in one kernel, with the depth taps gathered next to each
other (a depth-wise im2col) and the kernel repeated once per group. Pooling is separable: a
window over depth, then one over height and width (average pooling divides by the real elements
of each axis, whose product is the 3-D window's count).
"""
from __future__ import annotations

from typing import Sequence

from nncompile.ir import Builder, ShapeError, Value
from nncompile.ir.types import is_symbol

_TO_CHANNELS = (0, 2, 3, 1, 4)      # (N, D, H, W, C) -> (N, H, W, D, C)
_FROM_CHANNELS = (0, 3, 1, 2, 4)    # (N, H, W, D, C) -> (N, D, H, W, C)


def _static_depth(x: Value) -> Value:
    """`x`, whose depth (axis 1) must be known: the depth slices become separate channels."""
    if is_symbol(x.type.shape[1]):
        raise ShapeError(f"depth is unknown ({x.type}); 3-D convolution and pooling need a known "
                         f"depth (height and width likewise unless the window keeps them)")
    return x


def _depth_span(size: int, kernel: int, stride: int, dilation: int) -> int:
    """Output positions along depth, with the message conv2d gives for height and width."""
    extent = (kernel - 1) * dilation + 1
    if extent > size:
        raise ShapeError(f"window of depth spans {extent} (kernel {kernel}, dilation {dilation}) "
                         f"but the padded input is {size}")
    return (size - extent) // stride + 1


def _kernel_per_depth(b: Builder, kernel: Value, depth: int) -> Value:
    """(kd, kh, kw, a, c) as (kh, kw, kd * a, depth * c): the kernel once per depth group."""
    kd, kh, kw, a, c = kernel.type.shape
    k = b.reshape(b.transpose(kernel, perm=(1, 2, 0, 3, 4)), shape=(kh, kw, kd * a, 1, c))
    k = b.broadcast(k, shape=(kh, kw, kd * a, depth, c))
    return b.reshape(k, shape=(kh, kw, kd * a, depth * c))


def _unfold(b: Builder, y: Value, depth: int) -> Value:
    """(N, H, W, depth * C) back to (N, depth, H, W, C)."""
    n, h, w, dc = y.type.shape
    return b.transpose(b.reshape(y, shape=(n, h, w, depth, dc // depth)), perm=_FROM_CHANNELS)


def conv3d(b: Builder, x: Value, kernel: Value, pads: Sequence[int], strides: Sequence[int],
           dilations: Sequence[int], groups: int) -> Value:
    """Convolution of x (N, D, H, W, C) by kernel (kd, kh, kw, C / groups, F); pads are (before,
    after) per spatial axis."""
    x = b.pad(_static_depth(x), pads=(0, 0, *pads[:2], 0, 0, 0, 0, 0, 0))
    n, depth, h, w, c = x.type.shape
    kd, cg = kernel.type.shape[0], kernel.type.shape[3]
    od = _depth_span(depth, kd, strides[0], dilations[0])
    taps = [b.reshape(b.slice(x, starts=[k * dilations[0]],
                              ends=[k * dilations[0] + (od - 1) * strides[0] + 1],
                              axes=[1], steps=[strides[0]]), shape=(n, od, 1, h, w, c))
            for k in range(kd)]
    stacked = taps[0] if kd == 1 else b.concat(*taps, axis=2)
    # Channels ordered (depth, group, tap, channel of the group): conv2d's group od * groups + j.
    stacked = b.reshape(stacked, shape=(n, od, kd, h, w, groups, cg))
    stacked = b.reshape(b.transpose(stacked, perm=(0, 3, 4, 1, 5, 2, 6)),
                        shape=(n, h, w, od * groups * kd * cg))
    y = b.conv2d(stacked, _kernel_per_depth(b, kernel, od), strides=strides[1:], pads=pads[2:],
                 dilations=dilations[1:], groups=od * groups)
    return _unfold(b, y, od)


def _place(b: Builder, v: Value, offset: int, length: int) -> Value | None:
    """`v` moved along axis 3 to start at `offset` in `length` zeros (None if nothing lands)."""
    size = v.type.shape[3]
    start, end = max(-offset, 0), min(size, length - offset)
    if end <= start:
        return None
    if (start, end) != (0, size):
        v = b.slice(v, starts=[start], ends=[end], axes=[3], steps=[1])
    before = max(offset, 0)
    return b.pad(v, pads=(0, 0, 0, 0, 0, 0, before, length - before - (end - start), 0, 0))


def conv3d_transpose(b: Builder, x: Value, kernel: Value, sizes: Sequence[int],
                     pads: Sequence[int], strides: Sequence[int],
                     dilations: Sequence[int]) -> Value:
    """Transposed convolution of x (N, D, H, W, C) by kernel (kd, kh, kw, F, C) to `sizes`,
    the output starting at pads[0] of the full result in depth (conv2d_grad_input's pads in
    height and width). Each depth slice gets its 2-D transposed convolution for all depth taps
    at once; tap k of input slice i lands at depth i * stride + k * dilation."""
    n, depth, h, w, c = x.type.shape
    kd, f = kernel.type.shape[0], kernel.type.shape[3]
    folded = b.reshape(b.transpose(x, perm=_TO_CHANNELS), shape=(n, h, w, depth * c))
    y = b.op("conv2d_grad_input", folded, _kernel_per_depth(b, kernel, depth),
             input_hw=sizes[1:], pads=pads[2:], strides=strides[1:], dilations=dilations[1:],
             groups=depth)
    oh, ow, stride = sizes[1], sizes[2], strides[0]
    # Depth dilated by the stride: slice i at i * stride, zeros between.
    y = b.pad(b.reshape(y, shape=(n, oh, ow, depth, 1, kd * f)),
              pads=(0, 0, 0, 0, 0, 0, 0, 0, 0, stride - 1, 0, 0))
    y = b.reshape(y, shape=(n, oh, ow, depth * stride, kd, f))
    total = None
    for k in range(kd):
        tap = b.reshape(b.slice(y, starts=[k], ends=[k + 1], axes=[4], steps=[1]),
                        shape=(n, oh, ow, depth * stride, f))
        placed = _place(b, tap, k * dilations[0] - pads[0], sizes[0])
        if placed is not None:
            total = placed if total is None else b.add(total, placed)
    return b.transpose(total, perm=_FROM_CHANNELS)


def pool3d(b: Builder, op: str, x: Value, window: Sequence[int], strides: Sequence[int],
           pads: Sequence[int]) -> Value:
    """max_pool2d or avg_pool2d (`op`) over 3-D windows of x (N, D, H, W, C): over depth, then
    over height and width."""
    n, depth, h, w, c = _static_depth(x).type.shape
    y = b.op(op, b.reshape(x, shape=(n, depth, h * w, c)), window=(window[0], 1),
             strides=(strides[0], 1), pads=(*pads[:2], 0, 0))
    od = y.type.shape[1]
    y = b.transpose(b.reshape(y, shape=(n, od, h, w, c)), perm=_TO_CHANNELS)
    y = b.op(op, b.reshape(y, shape=(n, h, w, od * c)), window=window[1:], strides=strides[1:],
             pads=pads[2:])
    return _unfold(b, y, od)

"""Convolution and pooling ops of `keras.ops`: conv, depthwise_conv, separable_conv,
conv_transpose, max_pool, average_pool, and depth_to_space / space_to_depth, on 1-D and 2-D inputs
in either data format (the IR's conv2d, conv2d_grad_input and poolings are 2-D channels-last).

    >>> from nncompile.keras import ops
    >>> ops.depthwise_conv(np.ones((1, 4, 4, 2)), np.ones((3, 3, 2, 3))).shape
    (1, 2, 2, 6)
"""
from __future__ import annotations

import numpy as np

from nncompile.ir.ops.linalg import same_pads
from nncompile.keras import backend
from nncompile.keras.ops.core import (float_dtype, keras_op, lowest, result_type, shape_of, static_length, tensor,
                                      tensors, unsupported)


def _floats(b, x):
    """`x` as a float value (integers and bools in floatx)."""
    return tensor(b, x, float_dtype(x))


def _tuple(value, n: int, name: str, op: str) -> tuple[int, ...]:
    values = (value,) * n if isinstance(value, (int, np.integer)) else tuple(value)
    if len(values) != n:
        raise ValueError(f"ops.{op}: `{name}` must be an int or {n} ints; received {value!r}")
    return tuple(int(v) for v in values)


class _Spatial:
    """Inputs of rank 3 or 4 in either data format as NHWC, and back: a 1-D input is 2-D with
    height 1; channels_first is transposed around the op."""

    def __init__(self, b, v, data_format, op: str):
        fmt = data_format or backend.image_data_format()
        if fmt not in ("channels_last", "channels_first"):
            raise ValueError(f"ops.{op}: data_format must be 'channels_last' or "
                             f"'channels_first'; received {fmt!r}")
        if v.type.rank not in (3, 4):
            raise unsupported(op, f"an input of rank {v.type.rank} (only 1-D and 2-D "
                                  f"spatial inputs, rank 3 or 4)")
        self.b, self.first, self.one_d = b, fmt == "channels_first", v.type.rank == 3
        if self.first:
            v = b.transpose(v, perm=[0, *range(2, v.type.rank), 1])
        if self.one_d:
            n, w, c = v.type.shape
            v = b.reshape(v, shape=[n, 1, w, c])
        self.nhwc = v
        self.dims = 1 if self.one_d else 2

    def window(self, value, name: str, op: str) -> tuple[int, int]:
        """A 1-D or 2-D window argument as (height, width)."""
        values = _tuple(value, self.dims, name, op)
        return (1, *values) if self.one_d else values

    def pads(self, padding: str, kernel, strides, dilations, op: str) -> tuple[int, ...]:
        padding = padding.lower()
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding != "same":
            raise ValueError(f"ops.{op}: padding must be 'valid' or 'same'; received {padding!r}")
        _, h, w, _ = self.nhwc.type.shape
        return (*same_pads(h, kernel[0], strides[0], dilations[0]),
                *same_pads(w, kernel[1], strides[1], dilations[1]))

    def back(self, out):
        b = self.b
        if self.one_d:
            n, _, w, c = out.type.shape
            out = b.reshape(out, shape=[n, w, c])
        if self.first:
            out = b.transpose(out, perm=[0, out.type.rank - 1, *range(1, out.type.rank - 1)])
        return out


@keras_op
def conv(b, inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
    """Convolution of 1-D or 2-D inputs (N, W, C) / (N, H, W, C) with a kernel (W, Cin, Cout) /
    (H, W, Cin, Cout); a kernel with fewer input channels than the input convolves in groups.

    >>> conv(np.ones((1, 4, 4, 2)), np.ones((3, 3, 2, 5)), padding="same").shape
    (1, 4, 4, 5)
    """
    x, w = tensors(b, inputs, kernel, dtype=result_type(inputs, kernel, float))
    s = _Spatial(b, x, data_format, "conv")
    w = _kernel_2d(b, s, x, w, "conv")
    return s.back(_conv2d(b, s, s.nhwc, w, strides, padding, dilation_rate, "conv"))


def _pool(b, op: str, name: str, inputs, pool_size, strides, padding, data_format):
    s = _Spatial(b, _floats(b, inputs) if op == "avg_pool2d" else tensor(b, inputs),
                 data_format, name)
    window = s.window(pool_size, "pool_size", name)
    steps = window if strides is None else s.window(strides, "strides", name)
    pads = s.pads(padding, window, steps, (1, 1), name)
    return s.back(b.op(op, s.nhwc, window=window, strides=steps, pads=pads))


@keras_op
def max_pool(b, inputs, pool_size, strides=None, padding="valid", data_format=None):
    """Maximum over windows of a 1-D or 2-D input; strides default to the pool size."""
    return _pool(b, "max_pool2d", "max_pool", inputs, pool_size, strides, padding, data_format)


@keras_op
def average_pool(b, inputs, pool_size, strides=None, padding="valid", data_format=None):
    """Mean over windows of a 1-D or 2-D input; with 'same' padding the windows at the border
    average their real elements only (as Keras's)."""
    return _pool(b, "avg_pool2d", "average_pool", inputs, pool_size, strides, padding,
                 data_format)


def _conv2d(b, s, x, w, strides, padding, dilation_rate, op: str):
    """The convolution of NHWC `x` by the 2-D kernel `w` (kh, kw, Cin / groups, Cout)."""
    strides = s.window(strides, "strides", op)
    dilations = s.window(dilation_rate, "dilation_rate", op)
    channels, per_group = x.type.shape[3], w.type.shape[2]
    if channels % per_group:
        raise ValueError(f"ops.{op}: the input's {channels} channels are not a multiple of the "
                         f"kernel's {per_group} input channels")
    pads = s.pads(padding, w.type.shape[:2], strides, dilations, op)
    return b.conv2d(x, w, strides=strides, pads=pads, dilations=dilations, groups=channels // per_group)


def _kernel_2d(b, s, x, w, op: str):
    """A kernel of the input's rank as a 2-D one (a 1-D kernel has height 1)."""
    if w.type.rank != x.type.rank:
        raise ValueError(f"ops.{op}: the kernel must have the rank of the inputs ({x.type.rank}); "
                         f"received kernel shape {shape_of(w)}")
    return b.reshape(w, shape=[1, *w.type.shape]) if s.one_d else w


@keras_op
def depthwise_conv(b, inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
    """Each input channel convolved with its own `multiplier` filters: kernel (W, Cin, multiplier)
    / (H, W, Cin, multiplier), output channel c * multiplier + m (a convolution in Cin groups)."""
    x, w = tensors(b, inputs, kernel, dtype=result_type(inputs, kernel, float))
    s = _Spatial(b, x, data_format, "depthwise_conv")
    w = _kernel_2d(b, s, x, w, "depthwise_conv")
    kh, kw, cin, multiplier = w.type.shape
    if cin != s.nhwc.type.shape[3]:
        raise ValueError(f"ops.depthwise_conv: the kernel has {cin} input channels; the input "
                         f"{s.nhwc.type.shape[3]}")
    grouped = b.reshape(w, shape=[kh, kw, 1, cin * multiplier])
    return s.back(_conv2d(b, s, s.nhwc, grouped, strides, padding, dilation_rate, "depthwise_conv"))


@keras_op
def separable_conv(b, inputs, depthwise_kernel, pointwise_kernel, strides=1, padding="valid",
                   data_format=None, dilation_rate=1):
    """A depthwise convolution, then a pointwise one (kernel (1, Cin * multiplier, Cout) /
    (1, 1, Cin * multiplier, Cout)) mixing its channels."""
    x, dw, pw = tensors(b, inputs, depthwise_kernel, pointwise_kernel,
                        dtype=result_type(inputs, depthwise_kernel, pointwise_kernel, float))
    fmt = data_format or backend.image_data_format()
    deep = depthwise_conv.__wrapped__(b, x, dw, strides, padding, fmt, dilation_rate)
    return conv.__wrapped__(b, deep, pw, 1, "valid", fmt, 1)


@keras_op
def conv_transpose(b, inputs, kernel, strides=1, padding="valid", output_padding=None, data_format=None,
                   dilation_rate=1):
    """The transposed convolution (the gradient of a convolution with respect to its input) of
    1-D or 2-D inputs by a kernel (W, Cout, Cin) / (H, W, Cout, Cin), with Keras's output sizes
    (as the Conv2DTranspose layer, `layers/conv_transpose.py`)."""
    from nncompile.keras.layers.conv_transpose import transpose_geometry   # the layers import the ops

    x, w = tensors(b, inputs, kernel, dtype=result_type(inputs, kernel, float))
    s = _Spatial(b, x, data_format, "conv_transpose")
    w = _kernel_2d(b, s, x, w, "conv_transpose")
    if w.type.shape[3] != s.nhwc.type.shape[3]:
        raise ValueError(f"ops.conv_transpose: the kernel's last axis ({w.type.shape[3]}) must be the "
                         f"input's channels ({s.nhwc.type.shape[3]})")
    strides = s.window(strides, "strides", "conv_transpose")
    dilations = s.window(dilation_rate, "dilation_rate", "conv_transpose")
    extra = (None, None) if output_padding is None else s.window(output_padding, "output_padding",
                                                                  "conv_transpose")
    if s.one_d and output_padding is not None:
        extra = (0, extra[1])
    padding = padding.lower()
    if padding not in ("valid", "same"):
        raise ValueError(f"ops.conv_transpose: padding must be 'valid' or 'same'; received {padding!r}")
    plans = [transpose_geometry(size, k, stride, dilation, padding, more) for size, k, stride, dilation, more in
             zip(s.nhwc.type.shape[1:3], w.type.shape[:2], strides, dilations, extra)]
    if s.one_d:     # the height of 1 stays 1
        plans[0] = (1, 0, 0)
    out = b.op("conv2d_grad_input", s.nhwc, w, input_hw=tuple(p[0] for p in plans),
               pads=tuple(v for p in plans for v in p[1:]), strides=strides, dilations=dilations)
    return s.back(out)


def _checked(b, x, data_format: str, op: str):
    v = tensor(b, x)
    if v.type.rank != 4:
        raise ValueError(f"ops.{op}: the input must be 4-D; received shape {shape_of(v)}")
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(f"ops.{op}: data_format must be 'channels_last' or 'channels_first'; "
                         f"received {data_format!r}")
    return v


@keras_op
def depth_to_space(b, x, block_size, data_format="channels_last"):
    """Channels moved into blocks of block_size x block_size pixels, as Keras's: channels last,
    the pixel (i, j) of a block takes the channels (i * block_size + j) * C' ...; channels
    first, channel c of it comes from c * block_size**2 + i * block_size + j (pixel shuffle)."""
    v = _checked(b, x, data_format, "depth_to_space")
    first = data_format == "channels_first"
    n, h, w, c = (v.type.shape[i] for i in ((0, 2, 3, 1) if first else (0, 1, 2, 3)))
    if c % (block_size * block_size):
        raise ValueError(f"ops.depth_to_space: the {c} channels are not a multiple of block_size**2 "
                         f"= {block_size * block_size}")
    depth = c // (block_size * block_size)
    if first:
        blocks = b.reshape(v, shape=[n, depth, block_size, block_size, h, w])
        moved = b.transpose(blocks, perm=[0, 1, 4, 2, 5, 3])
        return b.reshape(moved, shape=[n, depth, h * block_size, w * block_size])
    blocks = b.reshape(v, shape=[n, h, w, block_size, block_size, depth])
    moved = b.transpose(blocks, perm=[0, 1, 3, 2, 4, 5])
    return b.reshape(moved, shape=[n, h * block_size, w * block_size, depth])


@keras_op
def space_to_depth(b, x, block_size, data_format="channels_last"):
    """Blocks of block_size x block_size pixels moved into channels (depth_to_space's inverse)."""
    v = _checked(b, x, data_format, "space_to_depth")
    first = data_format == "channels_first"
    n, h, w, c = (v.type.shape[i] for i in ((0, 2, 3, 1) if first else (0, 1, 2, 3)))
    if any(not isinstance(d, int) or d % block_size for d in (h, w)):
        raise ValueError(f"ops.space_to_depth: height and width ({h}, {w}) must be multiples of "
                         f"block_size {block_size}")
    rows, cols = h // block_size, w // block_size
    if first:
        blocks = b.reshape(v, shape=[n, c, rows, block_size, cols, block_size])
        moved = b.transpose(blocks, perm=[0, 1, 3, 5, 2, 4])
        return b.reshape(moved, shape=[n, c * block_size * block_size, rows, cols])
    blocks = b.reshape(v, shape=[n, rows, block_size, cols, block_size, c])
    moved = b.transpose(blocks, perm=[0, 1, 3, 2, 4, 5])
    return b.reshape(moved, shape=[n, rows, cols, block_size * block_size * c])


def adaptive_pool(b, v, output_size, first: bool, largest: bool, op: str):
    """Adaptive pooling of `v` (N, *spatial, C), or (N, C, *spatial) when `first`: output cell i of
    a spatial axis of length L pools its window [floor(i L / O), ceil((i + 1) L / O)), as Keras's
    and PyTorch's. A window of a box is the product of its axes' windows, so the axes are pooled
    one at a time: a masked mean or maximum over each axis."""
    rank = v.type.rank
    spatial = list(range(2, rank)) if first else list(range(1, rank - 1))
    sizes = _tuple(output_size, len(spatial), "output_size", op)
    for axis, out in zip(spatial, sizes):
        length = static_length(v, axis, op, f"spatial axis {axis}")
        cells = np.arange(out)
        starts, ends = (cells * length) // out, -((-(cells + 1) * length) // out)
        inside = (np.arange(length)[:, None] >= starts) & (np.arange(length)[:, None] < ends)   # (L, O)
        moved = b.transpose(v, perm=[a for a in range(rank) if a != axis] + [axis])
        column = b.reshape(moved, shape=[*moved.type.shape, 1])
        mask = b.constant(inside)
        if largest:
            pooled = b.reduce_max(b.select(mask, column, b.scalar(lowest(v.type.dtype.numpy), v)), axes=[rank - 1])
        else:
            total = b.reduce_sum(b.select(mask, column, b.scalar(0.0, v)), axes=[rank - 1])
            pooled = b.div(total, b.constant((ends - starts).astype(v.type.dtype.numpy)))
        back = list(range(rank - 1))
        back.insert(axis, rank - 1)
        v = b.transpose(pooled, perm=back)
    return v


def _adaptive(b, inputs, output_size, data_format, largest: bool, op: str):
    v = tensor(b, inputs) if largest else _floats(b, inputs)
    if v.type.rank not in (3, 4, 5):
        raise ValueError(f"ops.{op}: the input must be 3-D, 4-D or 5-D (1 to 3 spatial axes); received "
                         f"shape {shape_of(v)}")
    fmt = data_format or backend.image_data_format()
    if fmt not in ("channels_last", "channels_first"):
        raise ValueError(f"ops.{op}: data_format must be 'channels_last' or 'channels_first'; received {fmt!r}")
    return adaptive_pool(b, v, output_size, fmt == "channels_first", largest, op)


@keras_op
def adaptive_average_pool(b, inputs, output_size, data_format=None):
    """The mean over windows that divide each spatial axis into `output_size` cells (overlapping
    by at most one element), of 1-D, 2-D or 3-D inputs."""
    return _adaptive(b, inputs, output_size, data_format, False, "adaptive_average_pool")


@keras_op
def adaptive_max_pool(b, inputs, output_size, data_format=None):
    """The maximum over windows that divide each spatial axis into `output_size` cells, of 1-D,
    2-D or 3-D inputs."""
    return _adaptive(b, inputs, output_size, data_format, True, "adaptive_max_pool")

"""Converters of convolutions, pooling, normalization, softmax and Resize.

Spatial ops run on NHWC values (the IR's conv2d and pooling layout): an NCHW input is moved
there once and the result stays NHWC (perm 0,2,3,1) for whatever follows. 1-D ops run as 2-D
ones of height 1.
"""
from __future__ import annotations

import math

import numpy as np

from nncompile.ir.ops.linalg import same_pads
from nncompile.ir.types import is_symbol
from nncompile.onnx.context import Context, Entry
from nncompile.onnx.importer import converter
from nncompile.onnx.layout import ir_axes, normalize

NHWC = (0, 2, 3, 1)


def _spatial_in(ctx: Context, i: int):
    """The input as an NHWC value, and whether it was 1-D (N, C, L) made (N, 1, L, C)."""
    rank = ctx.rank(i)
    if rank == 4:
        return ctx.in_layout(i, NHWC), False
    if rank == 3:
        v = ctx.in_layout(i, (0, 2, 1))
        n, length, c = v.type.shape
        return ctx.b.reshape(v, shape=[n, 1, length, c]), True
    raise ctx.fail(f"only 1-D and 2-D {ctx.node.op_type} is supported; input has rank {rank}")


def _spatial_out(ctx: Context, y, squeezed: bool) -> Entry:
    if squeezed:
        n, _, length, c = y.type.shape
        return Entry(ctx.b.reshape(y, shape=[n, length, c]), (0, 2, 1))
    return Entry(y, NHWC)


def _pair(values, squeezed: bool, fill: int) -> list[int]:
    values = list(values)
    return [fill] + values if squeezed else values


def _window(ctx: Context, kernel: list[int], squeezed: bool, in_hw, dilations=(1, 1)):
    """strides and (top, bottom, left, right) pads from the ONNX attributes and auto_pad."""
    dims = len(kernel) - (1 if squeezed else 0)
    strides = _pair(ctx.attr("strides", [1] * dims), squeezed, 1)
    pads = list(ctx.attr("pads", [0] * 2 * dims))
    pads = [0, 0] + pads[:1] + pads[1:] if squeezed else pads[:2] + pads[2:]
    begin, end = pads[:2], pads[2:]
    auto = ctx.attr("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        for k in range(2):
            small, large = same_pads(in_hw[k], kernel[k], strides[k], dilations[k])
            begin[k], end[k] = (small, large) if auto == "SAME_UPPER" else (large, small)
    elif auto == "VALID":
        begin, end = [0, 0], [0, 0]
    return strides, [begin[0], end[0], begin[1], end[1]]


# --- convolution -------------------------------------------------------------------------------

def _hwio(ctx: Context, i: int, squeezed: bool, transposed_groups: int = 0):
    """The filter as (KH, KW, Cin/groups, Cout); ConvTranspose's is also flipped and regrouped."""
    w = ctx.maybe_const(i)
    if w is None:
        return _hwio_value(ctx, i, squeezed, transposed_groups)
    if squeezed:
        w = w[:, :, None, :]
    if transposed_groups:   # (Cin, Cout/g, KH, KW) -> groups of (Cin/g, Cout/g), flipped
        g = transposed_groups
        cin, cog, kh, kw = w.shape
        w = w.reshape(g, cin // g, cog, kh, kw).transpose(3, 4, 1, 0, 2).reshape(kh, kw, cin // g, g * cog)
        w = w[::-1, ::-1]
    else:
        w = w.transpose(2, 3, 1, 0)
    return ctx.array_value(np.ascontiguousarray(w), ctx.node.input[i])


def _hwio_value(ctx: Context, i: int, squeezed: bool, groups: int):
    """_hwio of a filter computed at run time, as IR ops."""
    b = ctx.b
    w = ctx.plain(i)
    if squeezed:
        co, ci, k = w.type.shape
        w = b.reshape(w, shape=[co, ci, 1, k])
    if not groups:
        return b.transpose(w, perm=[2, 3, 1, 0])
    cin, cog, kh, kw = w.type.shape
    w = b.reshape(w, shape=[groups, cin // groups, cog, kh, kw])
    w = b.reshape(b.transpose(w, perm=[3, 4, 1, 0, 2]), shape=[kh, kw, cin // groups, groups * cog])
    return b.slice(w, starts=[-1, -1], ends=[-(2**63), -(2**63)], axes=[0, 1], steps=[-1, -1])


def _bias(ctx: Context, y, i: int):
    return ctx.b.add(y, ctx.plain(i)) if ctx.has(i) else y


@converter("Conv")
def _conv(ctx: Context) -> list:
    x, squeezed = _spatial_in(ctx, 0)
    w = _hwio(ctx, 1, squeezed)
    kernel = list(w.type.shape[:2])
    dil = _pair(ctx.attr("dilations", [1] * (2 - squeezed)), squeezed, 1)
    strides, pads = _window(ctx, kernel, squeezed, x.type.shape[1:3], dil)
    y = ctx.b.conv2d(x, w, strides=strides, pads=pads, dilations=dil, groups=ctx.attr("group", 1))
    return [_spatial_out(ctx, _bias(ctx, y, 2), squeezed)]


@converter("ConvTranspose")
def _conv_transpose(ctx: Context) -> list:
    """A convolution of the input spread out by the strides (zeros between its elements), with
    the filter flipped and padded by (kernel extent - 1 - pad) on each side."""
    b = ctx.b
    x, squeezed = _spatial_in(ctx, 0)
    groups = ctx.attr("group", 1)
    w = _hwio(ctx, 1, squeezed, transposed_groups=groups)
    kernel = list(w.type.shape[:2])
    dil = _pair(ctx.attr("dilations", [1] * (2 - squeezed)), squeezed, 1)
    strides = _pair(ctx.attr("strides", [1] * (2 - squeezed)), squeezed, 1)
    extra = _pair(ctx.attr("output_padding", [0] * (2 - squeezed)), squeezed, 0)
    n, h, wd, c = x.type.shape
    if any(is_symbol(d) for d in (h, wd)):
        raise ctx.fail("ConvTranspose needs static spatial dimensions")
    pads = _transpose_pads(ctx, [h, wd], kernel, strides, dil, extra, squeezed)
    if strides != [1, 1]:
        sh, sw = strides
        spread = b.reshape(x, shape=[n, h, 1, wd, 1, c])
        spread = b.pad(spread, pads=[0, 0, 0, 0, 0, sh - 1, 0, 0, 0, sw - 1, 0, 0])
        spread = b.reshape(spread, shape=[n, h * sh, wd * sw, c])
        x = b.slice(spread, starts=[0, 0], ends=[(h - 1) * sh + 1, (wd - 1) * sw + 1], axes=[1, 2],
                    steps=[1, 1])
    full = [(k - 1) * d for k, d in zip(kernel, dil)]
    edges = [full[0] - pads[0], full[0] - pads[2] + extra[0], full[1] - pads[1], full[1] - pads[3] + extra[1]]
    crop = [max(-e, 0) for e in edges]
    if any(crop):
        size = x.type.shape
        x = b.slice(x, starts=[crop[0], crop[2]], ends=[size[1] - crop[1], size[2] - crop[3]],
                    axes=[1, 2], steps=[1, 1])
    y = b.conv2d(x, w, pads=[max(e, 0) for e in edges], dilations=dil, groups=groups)
    return [_spatial_out(ctx, _bias(ctx, y, 2), squeezed)]


def _transpose_pads(ctx, in_hw, kernel, strides, dil, extra, squeezed) -> list[int]:
    """(begin_h, begin_w, end_h, end_w) as ONNX orders them, from pads, output_shape or auto_pad."""
    shape = ctx.attr("output_shape")
    auto = ctx.attr("auto_pad", "NOTSET")
    if shape is None and auto not in ("SAME_UPPER", "SAME_LOWER"):
        pads = list(ctx.attr("pads", [0] * 2 * (2 - squeezed)))
        return [0, pads[0], 0, pads[1]] if squeezed else pads
    out = _pair(shape[-(2 - squeezed):], squeezed, 1) if shape is not None else [
        i * s for i, s in zip(in_hw, strides)]
    total = [s * (i - 1) + e + (k - 1) * d + 1 - o
             for i, s, e, k, d, o in zip(in_hw, strides, extra, kernel, dil, out)]
    if auto == "SAME_UPPER":
        begin, end = [t // 2 for t in total], [t - t // 2 for t in total]
    else:
        begin, end = [t - t // 2 for t in total], [t // 2 for t in total]
    return begin + end


# --- pooling -------------------------------------------------------------------------------------

@converter("MaxPool", "AveragePool")
def _pool(ctx: Context) -> list:
    b = ctx.b
    if len(ctx.node.output) > 1 and ctx.node.output[1]:
        raise ctx.fail("the Indices output is not supported")
    if any(d != 1 for d in ctx.attr("dilations", [])):
        raise ctx.fail(f"dilations {ctx.attr('dilations')} are not supported (only 1)")
    x, squeezed = _spatial_in(ctx, 0)
    window = _pair(ctx.attr("kernel_shape"), squeezed, 1)
    strides, pads = _window(ctx, window, squeezed, x.type.shape[1:3])
    if ctx.attr("ceil_mode", 0):
        for k, axis in ((0, 1), (1, 2)):
            size = x.type.shape[axis] + pads[2 * k] + pads[2 * k + 1]
            out = -(-(size - window[k]) // strides[k]) + 1
            if (out - 1) * strides[k] >= x.type.shape[axis] + pads[2 * k]:
                out -= 1   # a last window that would start in the end padding is dropped
            pads[2 * k + 1] += max((out - 1) * strides[k] + window[k] - size, 0)
    if ctx.node.op_type == "MaxPool":
        y = b.max_pool2d(x, window=window, strides=strides, pads=pads)
    else:
        if ctx.attr("count_include_pad", 0) and any(pads):
            x = b.pad(x, pads=[0, 0, pads[0], pads[1], pads[2], pads[3], 0, 0])
            pads = [0, 0, 0, 0]
        y = b.avg_pool2d(x, window=window, strides=strides, pads=pads)
    return [_spatial_out(ctx, y, squeezed)]


@converter("GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool")
def _global_pool(ctx: Context) -> list:
    x, perm = ctx.held(0)
    axes = ir_axes(perm, range(2, len(perm)))
    if ctx.node.op_type == "GlobalLpPool":
        raise ctx.fail("GlobalLpPool is not supported")
    op = "reduce_mean" if ctx.node.op_type == "GlobalAveragePool" else "reduce_max"
    return [Entry(ctx.b.op(op, x, axes=axes, keepdims=True), perm)]


# --- normalization -----------------------------------------------------------------------------

@converter("BatchNormalization")
def _batch_norm(ctx: Context) -> list:
    """y = x * a + c with a = scale / sqrt(var + eps), c = bias - mean * a (inference)."""
    if ctx.attr("training_mode", 0) or any(ctx.node.output[1:]):
        raise ctx.fail("training mode (batch statistics, running-mean outputs) is not supported")
    b = ctx.b
    x, perm = ctx.held(0)
    eps = ctx.attr("epsilon", 1e-5)
    consts = [ctx.maybe_const(i) for i in range(1, 5)]
    if all(c is not None for c in consts):
        scale, bias, mean, var = (c.astype(np.float64) for c in consts)
        a = scale / np.sqrt(var + eps)
        dtype = x.type.dtype.numpy
        a_v = ctx.array_value(a.astype(dtype), ctx.node.input[1])
        c_v = ctx.array_value((bias - mean * a).astype(dtype), ctx.node.input[2])
    else:
        scale, bias, mean, var = (ctx.plain(i) for i in range(1, 5))
        a_v = b.mul(scale, b.rsqrt(b.add(var, b.scalar(eps, var))))
        c_v = b.sub(bias, b.mul(mean, a_v))
    if len(perm) > 1:
        axis, rank = perm.index(1), len(perm)
        a_v, c_v = ctx.vector_along(a_v, axis, rank), ctx.vector_along(c_v, axis, rank)
    return [Entry(b.add(b.mul(x, a_v), c_v), perm)]


@converter("LayerNormalization")
def _layer_norm(ctx: Context) -> list:
    b = ctx.b
    x = ctx.plain(0)
    rank = x.type.rank
    axis = normalize(ctx.attr("axis", -1), rank, ctx)
    axes = list(range(axis, rank))
    mean = b.reduce_mean(x, axes=axes, keepdims=True)
    centered = b.sub(x, mean)
    var = b.reduce_mean(b.mul(centered, centered), axes=axes, keepdims=True)
    inv = b.rsqrt(b.add(var, b.scalar(ctx.attr("epsilon", 1e-5), var)))
    y = b.mul(b.mul(centered, inv), ctx.plain(1))
    if ctx.has(2):
        y = b.add(y, ctx.plain(2))
    return [y, mean, inv]


@converter("InstanceNormalization")
def _instance_norm(ctx: Context) -> list:
    b = ctx.b
    x = ctx.plain(0)
    rank = x.type.rank
    axes = list(range(2, rank))
    mean = b.reduce_mean(x, axes=axes, keepdims=True)
    centered = b.sub(x, mean)
    var = b.reduce_mean(b.mul(centered, centered), axes=axes, keepdims=True)
    y = b.mul(centered, b.rsqrt(b.add(var, b.scalar(ctx.attr("epsilon", 1e-5), var))))
    scale, bias = (ctx.vector_along(ctx.plain(i), 1, rank) for i in (1, 2))
    return [b.add(b.mul(y, scale), bias)]


@converter("Softmax", "LogSoftmax")
def _softmax(ctx: Context) -> list:
    op = "softmax" if ctx.node.op_type == "Softmax" else "log_softmax"
    rank = ctx.rank(0)
    if ctx.opset >= 13:
        x, perm = ctx.held(0)
        axis = normalize(ctx.attr("axis", -1), rank, ctx)
        return [Entry(ctx.b.op(op, x, axis=perm.index(axis)), perm)]
    # Before opset 13 the input is seen as a matrix (dims before axis) x (dims from axis).
    x = ctx.plain(0)
    axis = normalize(ctx.attr("axis", 1), rank, ctx)
    shape = x.type.shape
    if any(is_symbol(d) for d in shape[axis:]):
        raise ctx.fail(f"softmax over the symbolic dimensions of {shape} is not supported")
    rows = ctx.b.reshape(x, shape=list(shape[:axis]) + [math.prod(shape[axis:])])
    return [ctx.b.reshape(ctx.b.op(op, rows, axis=-1), shape=shape)]


# --- Resize: separable, one gather (nearest) or two gathers and a blend (linear) per axis ------

def _source_coords(mode: str, out: int, size: int, scale: float) -> np.ndarray:
    """The input coordinate each output position samples (ONNX's coordinate transformations;
    align_corners uses the unrounded output length size * scale, as ONNX does)."""
    x = np.arange(out, dtype=np.float64)
    if mode == "half_pixel_symmetric":
        adjustment = out / (size * scale)
        return size / 2 * (1 - adjustment) + (x + 0.5) / scale - 0.5
    if mode == "half_pixel":
        return (x + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (x + 0.5) / scale - 0.5 if out > 1 else np.zeros(out)
    if mode == "asymmetric":
        return x / scale
    if mode == "align_corners":
        length = size * scale
        return x * (size - 1) / (length - 1) if length != 1 else np.zeros(out)
    if mode == "tf_half_pixel_for_nn":
        return (x + 0.5) / scale
    raise ValueError(mode)


_ROUND = {"round_prefer_floor": lambda c: np.ceil(c - 0.5), "round_prefer_ceil": lambda c: np.floor(c + 0.5),
          "floor": np.floor, "ceil": np.ceil}


@converter("Resize", "Upsample")
def _resize(ctx: Context) -> list:
    b = ctx.b
    x, perm = ctx.held(0)
    shape, rank = ctx.shape(0), ctx.rank(0)
    mode = ctx.attr("mode", "nearest")
    coord = ctx.attr("coordinate_transformation_mode", "half_pixel" if ctx.opset >= 11 else "asymmetric")
    # Before opset 11 (Upsample, Resize-10) nearest meant the floor of the asymmetric coordinate.
    nearest = ctx.attr("nearest_mode", "round_prefer_floor" if ctx.opset >= 11 else "floor")
    if mode not in ("nearest", "linear") or coord not in ("half_pixel", "pytorch_half_pixel", "asymmetric",
                                                          "align_corners", "tf_half_pixel_for_nn",
                                                          "half_pixel_symmetric"):
        raise ctx.fail(f"mode {mode!r} with coordinate_transformation_mode {coord!r} is not supported")
    if ctx.attr("antialias", 0):
        raise ctx.fail("antialias is not supported")
    axes = [normalize(a, rank, ctx) for a in ctx.attr("axes", range(rank))]
    scales, sizes = _resize_targets(ctx)
    policy = ctx.attr("keep_aspect_ratio_policy", "stretch")
    if sizes is not None and policy != "stretch":
        pick = min if policy == "not_larger" else max
        common = pick(s / shape[a] for s, a in zip(sizes, axes))
        scales = [common] * len(axes)
        sizes = [int(math.floor(shape[a] * common + 0.5)) for a in axes]
    for k, axis in enumerate(axes):
        size = shape[axis]
        out = sizes[k] if sizes is not None else int(math.floor(size * scales[k]))
        scale = scales[k] if scales is not None else out / size
        if out == size and scale == 1:
            continue
        if is_symbol(size):
            raise ctx.fail(f"resizing the symbolic axis {axis} ({size!r}) is not supported")
        coords = _source_coords(coord, out, size, scale)
        ir_axis = perm.index(axis)
        if mode == "nearest":
            index = np.clip(_ROUND[nearest](coords), 0, size - 1).astype(np.int64)
            x = b.gather(x, b.constant(index), axis=ir_axis)
            continue
        coords = np.clip(coords, 0, size - 1)
        low = np.floor(coords).astype(np.int64)
        high = np.minimum(low + 1, size - 1)
        w_shape = [1] * rank
        w_shape[ir_axis] = out
        weight = b.constant((coords - low).reshape(w_shape).astype(x.type.dtype.numpy))
        lo, hi = b.gather(x, b.constant(low), axis=ir_axis), b.gather(x, b.constant(high), axis=ir_axis)
        x = b.add(lo, b.mul(b.sub(hi, lo), weight))
    return [Entry(x, perm)]


def _resize_targets(ctx: Context):
    if ctx.opset < 11 or ctx.node.op_type == "Upsample":
        scales = ctx.attr("scales") if ctx.opset < 9 else ctx.const(1, "scales")
        return [float(s) for s in np.asarray(scales).reshape(-1)], None
    if ctx.has(3):
        return None, ctx.ints(3, "sizes")
    scales = ctx.const(2, "scales")
    if scales.size == 0:
        raise ctx.fail("neither scales nor sizes is given")
    return [float(s) for s in scales.reshape(-1)], None


@converter("LpNormalization", "MeanVarianceNormalization")
def _normalize(ctx: Context) -> list:
    b = ctx.b
    x = ctx.plain(0)
    rank = x.type.rank
    if ctx.node.op_type == "LpNormalization":
        axis = normalize(ctx.attr("axis", -1), rank, ctx)
        p = ctx.attr("p", 2)
        if p not in (1, 2):
            raise ctx.fail(f"p = {p}; ONNX defines 1 and 2")
        norm = b.reduce_sum(b.abs(x) if p == 1 else b.mul(x, x), axes=[axis], keepdims=True)
        norm = norm if p == 1 else b.sqrt(norm)
        zero = b.scalar(0, norm)   # a zero vector stays zero, as ONNX's reference has it
        return [b.div(x, b.select(b.equal(norm, zero), b.scalar(1, norm), norm))]
    # MeanVarianceNormalization's function body: (x - E[x]) / (sqrt(E[x^2] - E[x]^2) + 1e-9)
    axes = [normalize(a, rank, ctx) for a in ctx.attr("axes", [0, 2, 3])]
    mean = b.reduce_mean(x, axes=axes, keepdims=True)
    variance = b.sub(b.reduce_mean(b.mul(x, x), axes=axes, keepdims=True), b.mul(mean, mean))
    return [b.div(b.sub(x, mean), b.add(b.sqrt(variance), b.scalar(1e-9, x)))]


@converter("RMSNormalization")
def _rms_norm(ctx: Context) -> list:
    b = ctx.b
    x = ctx.plain(0)
    axis = normalize(ctx.attr("axis", -1), x.type.rank, ctx)
    mean_square = b.reduce_mean(b.mul(x, x), axes=list(range(axis, x.type.rank)), keepdims=True)
    inv = b.rsqrt(b.add(mean_square, b.scalar(ctx.attr("epsilon", 1e-5), x)))
    return [b.mul(b.mul(x, inv), ctx.plain(1))]

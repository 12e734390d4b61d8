"""Converters of ops whose result is an index pattern of their input: Trilu, Hardmax, OneHot,
EyeLike, DepthToSpace, SpaceToDepth; each a constant mask or a reshape-transpose-reshape."""
from __future__ import annotations

import numpy as np

from nncompile.ir import DType
from nncompile.ir.types import is_symbol
from nncompile.onnx.context import Context
from nncompile.onnx.dtypes import ir_dtype
from nncompile.onnx.importer import converter
from nncompile.onnx.layout import normalize


def _static(ctx: Context, dims, what: str) -> list[int]:
    if any(is_symbol(d) for d in dims):
        raise ctx.fail(f"{what} must be static, got {list(dims)}")
    return list(dims)


@converter("Trilu")
def _trilu(ctx: Context) -> list:
    b = ctx.b
    x = ctx.plain(0)
    rows, cols = _static(ctx, x.type.shape[-2:], "the last two dimensions")
    k = int(ctx.ints(1, "k")[0]) if ctx.has(1) else 0
    i, j = np.indices((rows, cols))
    keep = j - i >= k if ctx.attr("upper", 1) else j - i <= k
    return [b.select(b.constant(keep), x, b.constant(np.zeros((), x.type.dtype.numpy)))]


@converter("Hardmax")
def _hardmax(ctx: Context) -> list:
    """1 at the first maximum along the axis (before opset 13: of the input seen as a matrix)."""
    b = ctx.b
    x, rank = ctx.plain(0), ctx.rank(0)
    if ctx.opset < 13:
        raise ctx.fail("Hardmax before opset 13 (the input seen as a matrix) is not supported")
    axis = normalize(ctx.attr("axis", -1), rank, ctx)
    n = _static(ctx, [x.type.shape[axis]], "the axis")[0]
    shape = [1] * rank
    shape[axis] = n
    iota = b.constant(np.arange(n, dtype=np.int64).reshape(shape))
    first = b.equal(iota, b.argmax(x, axis=axis, keepdims=True))
    return [b.cast(first, dtype=x.type.dtype)]


@converter("OneHot")
def _one_hot(ctx: Context) -> list:
    b = ctx.b
    depth = int(np.asarray(ctx.const(1, "depth")).reshape(()))
    indices = ctx.plain(0)
    if indices.type.dtype != DType.i64:
        indices = b.cast(indices, dtype=DType.i64)
    rank = indices.type.rank + 1
    axis = normalize(ctx.attr("axis", -1), rank, ctx)
    count = b.constant(np.asarray(depth, np.int64))
    indices = b.select(b.less(indices, b.constant(np.asarray(0, np.int64))), b.add(indices, count), indices)
    shape = list(indices.type.shape)
    shape.insert(axis, 1)
    iota_shape = [1] * rank
    iota_shape[axis] = depth
    hot = b.equal(b.reshape(indices, shape=shape), b.constant(np.arange(depth, dtype=np.int64).reshape(iota_shape)))
    values = ctx.plain(2)
    off = b.reshape(b.slice(values, starts=[0], ends=[1], axes=[0], steps=[1]), shape=[])
    on = b.reshape(b.slice(values, starts=[1], ends=[2], axes=[0], steps=[1]), shape=[])
    return [b.select(hot, on, off)]


@converter("EyeLike")
def _eye_like(ctx: Context) -> list:
    """Depends only on the input's shape: a constant."""
    rows, cols = _static(ctx, ctx.shape(0), "the input's shape")
    dtype = ir_dtype(ctx.attr("dtype"), ctx.where()).numpy if ctx.attr("dtype") is not None else None
    eye = np.eye(rows, cols, k=ctx.attr("k", 0))
    return [eye.astype(dtype or ctx.dtype(0).numpy)]


@converter("DepthToSpace", "SpaceToDepth")
def _depth_space(ctx: Context) -> list:
    b = ctx.b
    x = ctx.plain(0)
    n, c, h, w = x.type.shape
    s = ctx.attr("blocksize")
    _static(ctx, [c, h, w], "channels and spatial dimensions")
    dcr = ctx.attr("mode", "DCR") == "DCR"
    if ctx.node.op_type == "SpaceToDepth":
        split, out = [n, c, h // s, s, w // s, s], [n, c * s * s, h // s, w // s]
        perm = [0, 3, 5, 1, 2, 4] if dcr else [0, 1, 3, 5, 2, 4]
    elif dcr:
        split, perm, out = [n, s, s, c // (s * s), h, w], [0, 3, 4, 1, 5, 2], [n, c // (s * s), h * s, w * s]
    else:
        split, perm, out = [n, c // (s * s), s, s, h, w], [0, 1, 4, 2, 5, 3], [n, c // (s * s), h * s, w * s]
    return [b.reshape(b.transpose(b.reshape(x, shape=split), perm=perm), shape=out)]

"""Converters of data movement and shape ops, and their folding on symbolic shape values."""
from __future__ import annotations

import math

import numpy as np
from onnx import numpy_helper

from nncompile.ir import DType
from nncompile.ir.types import broadcast_shapes, is_symbol
from nncompile.onnx.context import Context, Entry, static_size
from nncompile.onnx.importer import converter
from nncompile.onnx.layout import aligned, drop_axes, ir_axes, normalize

INT64_MAX = 2**63 - 1


def _axes_arg(ctx: Context, index: int, since: int) -> list[int] | None:
    """Axes given as an input (from opset `since`) or as the attribute `axes` (before)."""
    if ctx.opset >= since:
        return ctx.ints(index, "axes") if ctx.has(index) else None
    axes = ctx.attr("axes")
    return list(axes) if axes is not None else None


# --- constants and shapes -----------------------------------------------------------------------

@converter("Constant")
def _constant(ctx: Context) -> list:
    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        value = ctx.attr(key)
        if value is not None:
            if key == "value":
                return [numpy_helper.to_array(value)]
            return [np.asarray(value, np.float32 if "float" in key else np.int64)]
    raise ctx.fail("only tensor, float(s) and int(s) values are supported (not sparse or strings)")


@converter("ConstantOfShape")
def _constant_of_shape(ctx: Context) -> list:
    dims = ctx.ints(0, "shape")
    fill = ctx.attr("value")
    scalar = numpy_helper.to_array(fill).reshape(()) if fill is not None else np.float32(0)
    if not any(is_symbol(d) for d in dims):
        return [np.full(dims, scalar, scalar.dtype)]
    return [ctx.b.broadcast(ctx.b.constant(scalar), shape=dims)]


def _shape_value(dims) -> np.ndarray:
    if any(is_symbol(d) for d in dims):
        return np.array(list(dims), dtype=object)
    return np.asarray(dims, np.int64).reshape(-1)


@converter("Shape")
def _shape(ctx: Context) -> list:
    dims = list(ctx.shape(0))
    start, end = ctx.attr("start", 0), ctx.attr("end", len(dims))
    return [_shape_value(dims[start:end])]


@converter("Size")
def _size(ctx: Context) -> list:
    size = static_size(ctx.shape(0))
    if size is None:
        raise ctx.fail(f"the size of a tensor of symbolic shape {ctx.shape(0)} is not expressible")
    return [np.asarray(size, np.int64)]


@converter("Identity")
def _identity(ctx: Context) -> list:
    return [ctx.entry(0)]


@converter("Dropout")
def _dropout(ctx: Context) -> list:
    """The identity at inference; the mask, if asked for, keeps everything."""
    if ctx.opset >= 12 and ctx.has(2) and (ctx.maybe_const(2) is None or bool(ctx.maybe_const(2))):
        raise ctx.fail("training_mode must be a constant false: nncompile imports for inference")
    e = ctx.entry(0)
    if len(ctx.node.output) > 1 and ctx.node.output[1]:
        if static_size(e.shape) is None:
            raise ctx.fail(f"the mask output of a tensor of symbolic shape {e.shape} is not supported")
        return [e, np.ones(e.shape, bool)]
    return [e]


# --- reshaping ---------------------------------------------------------------------------------

def _merge(dims) -> object:
    """One dimension standing for the product of `dims`: an int, or a symbol alone."""
    static = [d for d in dims if not is_symbol(d)]
    symbols = [d for d in dims if is_symbol(d)]
    if not symbols:
        return math.prod(static)
    if len(symbols) == 1 and math.prod(static) == 1:
        return symbols[0]
    return None


def _infer_hole(shape, target: list) -> list:
    """Reshape's -1 resolved: a number, or the one symbol of the input the target lacks when the
    static dimensions match (x.view(x.size(0), -1) exported with the batch folded away)."""
    in_static = math.prod(d for d in shape if not is_symbol(d))
    out_static = math.prod(d for d in target if d != -1 and not is_symbol(d))
    missing = [d for d in shape if is_symbol(d) and d not in target]
    if not missing and out_static and in_static % out_static == 0:
        hole = in_static // out_static
    elif len(missing) == 1 and in_static == out_static:
        hole = missing[0]
    else:
        return target   # the IR's rule says what does not fit
    return [hole if d == -1 else d for d in target]


@converter("Reshape")
def _reshape(ctx: Context) -> list:
    x, shape = ctx.plain(0), ctx.shape(0)
    target = ctx.ints(1, "shape")
    if not ctx.attr("allowzero", 0):
        target = [shape[i] if d == 0 else d for i, d in enumerate(target)]
    if -1 in target:
        target = _infer_hole(shape, target)
    return [ctx.b.reshape(x, shape=target)]


@converter("Flatten")
def _flatten(ctx: Context) -> list:
    shape = ctx.shape(0)
    axis = ctx.attr("axis", 1)
    axis = axis + len(shape) if axis < 0 else axis   # axis may be rank itself: (N, 1)
    left, right = _merge(shape[:axis]), _merge(shape[axis:])
    if left is None or right is None:
        raise ctx.fail(f"flattening {shape} at axis {axis} multiplies a symbolic dimension, which "
                       f"is not expressible")
    return [ctx.b.reshape(ctx.plain(0), shape=[left, right])]


@converter("Transpose")
def _transpose(ctx: Context) -> list:
    """No data moves here: the result is the same IR value seen in another layout."""
    x, held = ctx.held(0)
    rank = len(held)
    perm = list(ctx.attr("perm", list(range(rank))[::-1]))
    if sorted(perm) != list(range(rank)):
        raise ctx.fail(f"perm {perm} is not a permutation of {rank} axes")
    return [Entry(x, tuple(perm.index(p) for p in held))]


@converter("Squeeze")
def _squeeze(ctx: Context) -> list:
    x, perm = ctx.held(0)
    shape = ctx.shape(0)
    axes = _axes_arg(ctx, 1, 13)
    axes = [i for i, d in enumerate(shape) if d == 1] if axes is None else [
        normalize(a, len(shape), ctx) for a in axes]
    for a in axes:
        if shape[a] != 1:
            raise ctx.fail(f"axis {a} has size {shape[a]!r}, not 1")
    kept = [d for i, d in zip(perm, x.type.shape) if i not in axes]
    return [Entry(ctx.b.reshape(x, shape=kept), drop_axes(perm, axes))]


@converter("Unsqueeze")
def _unsqueeze(ctx: Context) -> list:
    """New axes of size 1 go last in the IR value, so a permuted layout costs no transpose."""
    x, perm = ctx.held(0)
    axes = _axes_arg(ctx, 1, 13) or []
    rank = len(perm) + len(axes)
    axes = sorted(normalize(a, rank, ctx) for a in axes)
    old = [a for a in range(rank) if a not in axes]
    value = ctx.b.reshape(x, shape=list(x.type.shape) + [1] * len(axes))
    return [Entry(value, tuple([old[p] for p in perm] + axes))]


@converter("Expand")
def _expand(ctx: Context) -> list:
    x = ctx.plain(0)
    shape = broadcast_shapes(x.type.shape, ctx.ints(1, "shape"))
    return [ctx.b.broadcast(x, shape=shape)]


@converter("Tile")
def _tile(ctx: Context) -> list:
    """reshape to (1, d0, 1, d1, ...), broadcast to (r0, d0, r1, d1, ...), merge the pairs."""
    x = ctx.plain(0)
    repeats, shape = ctx.ints(1, "repeats"), x.type.shape
    pairs = [(r, d) for r, d in zip(repeats, shape)]
    out = []
    for r, d in pairs:
        merged = _merge([r, d])
        if merged is None:
            raise ctx.fail(f"tiling the symbolic dimension {d!r} {r} times is not expressible")
        out.append(merged)
    b = ctx.b
    spread = b.reshape(x, shape=[v for _, d in pairs for v in (1, d)])
    tiled = b.broadcast(spread, shape=[v for pair in pairs for v in pair])
    return [b.reshape(tiled, shape=out)]


# --- joining and splitting ---------------------------------------------------------------------

@converter("Concat")
def _concat(ctx: Context) -> list:
    axis = normalize(ctx.attr("axis"), ctx.rank(0), ctx)
    # Inputs empty along the axis add nothing (exporters write them for empty caches).
    present = [i for i in range(ctx.count) if ctx.has(i) and ctx.shape(i)[axis] != 0]
    values, perm = aligned(ctx, present or [0])
    return [Entry(ctx.b.concat(*values, axis=perm.index(axis)), perm)]


@converter("Split")
def _split(ctx: Context) -> list:
    x, perm = ctx.held(0)
    axis = normalize(ctx.attr("axis", 0), len(perm), ctx)
    n = ctx.shape(0)[axis]
    if ctx.opset >= 13:
        sizes = ctx.ints(1, "split") if ctx.has(1) else None
    else:
        sizes = ctx.attr("split")
    if sizes is None:
        parts = ctx.attr("num_outputs") or len(ctx.node.output)
        each = -(-n // parts)
        sizes = [min(each, n - k * each) for k in range(parts)]
    start, outs = 0, []
    for size in sizes:
        outs.append(Entry(ctx.b.slice(x, starts=[start], ends=[start + size], axes=[perm.index(axis)],
                                      steps=[1]), perm))
        start += size
    return outs


def _slice_args(ctx: Context) -> tuple[list, list, list, list]:
    """starts, ends, axes, steps: inputs from opset 10, attributes before."""
    if ctx.opset >= 10:
        starts, ends = ctx.ints(1, "starts"), ctx.ints(2, "ends")
        axes = ctx.ints(3, "axes") if ctx.has(3) else list(range(len(starts)))
        steps = ctx.ints(4, "steps") if ctx.has(4) else [1] * len(starts)
        return starts, ends, axes, steps
    starts, ends = list(ctx.attr("starts")), list(ctx.attr("ends"))
    return starts, ends, list(ctx.attr("axes", range(len(starts)))), [1] * len(starts)


@converter("Slice")
def _slice(ctx: Context) -> list:
    x, perm = ctx.held(0)
    rank = len(perm)
    starts, ends, axes, steps = _slice_args(ctx)
    axes = ir_axes(perm, [normalize(a, rank, ctx) for a in axes])
    ends = [min(e, INT64_MAX) for e in ends]
    return [Entry(ctx.b.slice(x, starts=starts, ends=ends, axes=axes, steps=steps), perm)]


# --- gathering ---------------------------------------------------------------------------------

@converter("Gather")
def _gather(ctx: Context) -> list:
    axis = normalize(ctx.attr("axis", 0), ctx.rank(0), ctx)
    if ctx.rank(1) == 0:
        # A scalar index drops the axis: taken where the data lies, in its layout, with no
        # transpose first (attention's q, k, v split off a transposed projection so).
        x, perm = ctx.held(0)
        return [Entry(ctx.b.gather(x, ctx.plain(1), axis=perm.index(axis)), drop_axes(perm, [axis]))]
    return [ctx.b.gather(ctx.plain(0), ctx.plain(1), axis=axis)]


@converter("GatherElements")
def _gather_elements(ctx: Context) -> list:
    """sum over n of data[.., n] where n == index: a one-hot selection along the last axis."""
    b = ctx.b
    data, idx, rank = ctx.plain(0), ctx.plain(1), ctx.rank(0)
    axis = normalize(ctx.attr("axis", 0), rank, ctx)
    n = data.type.shape[axis]
    if is_symbol(n) or data.type.dtype == DType.bool:
        raise ctx.fail(f"gathering along a symbolic axis ({n!r}) or from bools is not supported")
    last = list(range(rank))
    last.append(last.pop(axis))
    data_t = ctx.transpose(data, last)
    idx_t = ctx.transpose(idx, last)
    ends = [INT64_MAX if a == axis else idx.type.shape[a] for a in range(rank)]
    data_t = b.slice(data_t, starts=[0] * rank, ends=[ends[a] for a in last], axes=list(range(rank)),
                     steps=[1] * rank) if data_t.type.shape[:-1] != idx_t.type.shape[:-1] else data_t
    n_value = b.constant(np.asarray(n, idx.type.dtype.numpy))
    idx_t = b.select(b.less(idx_t, b.constant(np.asarray(0, idx.type.dtype.numpy))), b.add(idx_t, n_value), idx_t)
    iota = b.constant(np.arange(n, dtype=idx.type.dtype.numpy))
    hot = b.equal(b.reshape(idx_t, shape=list(idx_t.type.shape) + [1]), iota)
    rows = b.reshape(data_t, shape=list(data_t.type.shape[:-1]) + [1, n])
    zero = b.constant(np.zeros((), data.type.dtype.numpy))
    picked = b.reduce_sum(b.select(hot, rows, zero), axes=[rank], keepdims=False)
    return [ctx.transpose(picked, [last.index(k) for k in range(rank)])]


# --- padding ---------------------------------------------------------------------------------

@converter("Pad")
def _pad(ctx: Context) -> list:
    x, perm = ctx.held(0)
    rank = len(perm)
    if ctx.opset >= 11:
        pads = ctx.ints(1, "pads")
        value = ctx.const(2, "constant_value").item() if ctx.has(2) else 0
        axes = ctx.ints(3, "axes") if ctx.has(3) else list(range(rank))
    else:
        pads, value, axes = list(ctx.attr("pads")), ctx.attr("value", 0.0), list(range(rank))
    axes = [normalize(a, rank, ctx) for a in axes]
    per_axis = {a: (pads[k], pads[k + len(axes)]) for k, a in enumerate(axes)}
    mode = ctx.attr("mode", "constant")
    for ir_axis, axis in enumerate(perm):
        before, after = per_axis.get(axis, (0, 0))
        x = _pad_axis(ctx, x, ir_axis, before, after, mode, value)
    return [Entry(x, perm)]


def _pad_axis(ctx: Context, x, axis: int, before: int, after: int, mode: str, value):
    b = ctx.b
    n = x.type.shape[axis]
    if before < 0 or after < 0:
        x = b.slice(x, starts=[max(-before, 0)], ends=[n - max(-after, 0)], axes=[axis], steps=[1])
        before, after = max(before, 0), max(after, 0)
    if not before and not after:
        return x
    if mode == "constant":
        pads = [0] * (2 * x.type.rank)
        pads[2 * axis], pads[2 * axis + 1] = before, after
        return b.pad(x, pads=pads, value=float(value))
    n = x.type.shape[axis]

    def take(start, end, step=1):
        return b.slice(x, starts=[start], ends=[end], axes=[axis], steps=[step])

    if mode == "edge":
        shape = list(x.type.shape)
        parts = []
        for count, edge in ((before, take(0, 1)), (after, take(n - 1, n))):
            shape[axis] = count
            parts.append(b.broadcast(edge, shape=list(shape)) if count else None)
        pieces = [parts[0], x, parts[1]]
    elif mode == "reflect":
        pieces = [take(before, 0, -1) if before else None, x, take(n - 2, n - 2 - after, -1) if after else None]
    elif mode == "wrap":
        pieces = [take(n - before, n) if before else None, x, take(0, after) if after else None]
    else:
        raise ctx.fail(f"mode {mode!r} is not supported")
    return b.concat(*[p for p in pieces if p is not None], axis=axis)


# --- folding of symbolic shape values (object arrays holding dimension names) -----------------

@converter("Gather", symbolic=True)
def _gather_fold(ctx: Context) -> list:
    taken = np.take(ctx.const(0, "data"), ctx.const(1, "indices").astype(np.int64), axis=ctx.attr("axis", 0))
    return [np.asarray(taken, dtype=object)]   # a scalar index gives a bare symbol, not an array


@converter("Concat", symbolic=True)
def _concat_fold(ctx: Context) -> list:
    arrays = [ctx.const(i, "input").astype(object) for i in range(ctx.count) if ctx.has(i)]
    return [np.concatenate(arrays, axis=ctx.attr("axis"))]


@converter("Unsqueeze", "Squeeze", "Reshape", "Identity", "Cast", "Slice", symbolic=True)
def _reshape_fold(ctx: Context) -> list:
    x = ctx.const(0, "data")
    op = ctx.node.op_type
    if op == "Slice":
        return [x[tuple(_fold_slices(ctx, x.ndim))]]
    if op == "Cast" and ctx.attr("to") not in (6, 7):   # INT32, INT64
        raise ctx.fail("a symbolic shape can only be cast to an integer type")
    if op in ("Unsqueeze", "Squeeze"):
        axes = _axes_arg(ctx, 1, 13)
        if op == "Unsqueeze":
            return [x.reshape([1] * len(axes) + list(x.shape)) if x.ndim == 0 else np.expand_dims(x, tuple(axes))]
        return [np.squeeze(x, tuple(axes) if axes is not None else None)]
    if op == "Reshape":
        return [x.reshape(ctx.ints(1, "shape"))]
    return [x]


def _fold_slices(ctx: Context, rank: int) -> list[slice]:
    starts, ends, axes, steps = _slice_args(ctx)
    out = [slice(None)] * rank
    for a, s, e, st in zip(axes, starts, ends, steps):
        out[a % rank] = slice(s, e, st)
    return out


@converter("Mul", "Add", "Sub", "Div", "Equal", "Where", "Max", "Min", symbolic=True)
def _arith_fold(ctx: Context) -> list:
    """Arithmetic on shape values where the result stays expressible (d * 1, d + 0, d == -1)."""
    args = [np.asarray(ctx.const(i, "operand"), dtype=object) for i in range(ctx.count)]
    op = ctx.node.op_type
    if op == "Where":
        return [np.where(args[0].astype(bool), args[1], args[2])]
    fn = {"Mul": _sym_mul, "Add": _sym_add, "Sub": _sym_sub, "Div": _sym_div, "Equal": _sym_equal,
          "Max": _sym_max, "Min": _sym_min}[op]
    try:
        return [np.frompyfunc(fn, 2, 1)(*np.broadcast_arrays(*args))]
    except ValueError as e:
        raise ctx.fail(f"shape arithmetic on symbolic dimensions: {e}") from None


def _static_or_fail(x, y, what):
    if is_symbol(x) or is_symbol(y):
        raise ValueError(f"{x!r} {what} {y!r} is not expressible")
    return x, y


def _sym_mul(x, y):
    if y == 1 or x == 1:
        return x if y == 1 else y
    x, y = _static_or_fail(x, y, "*")
    return x * y


def _sym_add(x, y):
    if y == 0 or x == 0:
        return x if y == 0 else y
    x, y = _static_or_fail(x, y, "+")
    return x + y


def _sym_sub(x, y):
    if y == 0 or x == y:
        return x if y == 0 else 0
    x, y = _static_or_fail(x, y, "-")
    return x - y


def _sym_div(x, y):
    if y == 1 or x == y:
        return x if y == 1 else 1
    x, y = _static_or_fail(x, y, "/")
    return x // y


def _sym_equal(x, y):
    if is_symbol(x) and is_symbol(y) and x == y:
        return True
    for s, v in ((x, y), (y, x)):
        if is_symbol(s) and not is_symbol(v) and v < 0:
            return False   # a size is never negative (the -1 of Reshape)
    x, y = _static_or_fail(x, y, "==")
    return x == y


def _sym_max(x, y):
    if x == y or y in (0, 1) or x in (0, 1):   # a dynamic size is taken to be at least 1
        return y if x in (0, 1) else x
    x, y = _static_or_fail(x, y, "max")
    return max(x, y)


def _sym_min(x, y):
    x, y = _static_or_fail(x, y, "min") if x != y else (x, y)
    return min(x, y) if not is_symbol(x) else x

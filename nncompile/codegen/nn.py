"""Kernels of the ops that are not elementwise: reductions standing alone, arg-reductions,
softmax, and data movement (reshape, transpose, slice,
concat, pad, gather). Each is registered in the op table's `lower` slot.

Loops keep the innermost axis contiguous wherever the op allows, so LLVM vectorizes them.
"""
from __future__ import annotations

import math
from typing import Sequence

from llvmlite import ir

from nncompile.codegen import elementwise, parallel, simd, split_loop, target
from nncompile.codegen.kernel import Dim, Kernel, load, mul, picked_index, product, scalar_type, store
from nncompile.codegen.loop import combine, emit_reduction
from nncompile.codegen.loops import as_i64, const, entry_alloca, for_nest, for_range, linear_index
from nncompile.ir.dtypes import DType
from nncompile.ir.graph import Node, Value
from nncompile.ir.ops.shape import slice_plan
from nncompile.ir.optable import OPS
from nncompile.ir.types import TensorType, normalize_axis

i32 = ir.IntType(32)


def rule(b: ir.IRBuilder, op: str, args: Sequence[ir.Value], dtype: DType) -> ir.Value:
    """Apply the element rule of elementwise `op` to values of `dtype` outside any graph."""
    t = TensorType(dtype, ())
    node = Node(op, [Value(t) for _ in args], {}, [t])
    return OPS[op].lower(b, list(args), node)


def _split(k: Kernel, x: Value, axis: int) -> tuple[Dim, Dim, Dim]:
    """(outer, axis, inner) sizes of `x` around `axis`."""
    dims = k.dims(x)
    return product(k.b, dims[:axis]), dims[axis], product(k.b, dims[axis + 1:])


def _at(b: ir.IRBuilder, ptr: ir.Value, outer: ir.Value, i: ir.Value, inner: ir.Value,
        n: Dim, m: Dim) -> ir.Value:
    """&ptr[outer, i, inner] in an (outer, n, m) array."""
    return b.gep(ptr, [linear_index(b, [outer, i, inner], [mul(b, n, m), m, 1])])


# --- reductions ---------------------------------------------------------------------------------

def _reduce(k: Kernel, node: Node) -> None:
    emit_reduction(k, node.inputs, node.outputs, [], node, [], node.outputs)


def _arg_reduce(k: Kernel, node: Node) -> None:
    """argmax/argmin: the first index of the extreme value (the first NaN, as numpy)."""
    b, x, out = k.b, node.inputs[0], node.outputs[0]
    axis = normalize_axis(node.attrs["axis"], x.type.rank)
    outer, n, inner = _split(k, x, axis)
    dtype = x.type.dtype
    pred = ">" if node.op == "argmax" else "<"
    with for_nest(b, [outer, inner]) as (o, j):
        best = load(b, _at(b, k.ptr(x), o, const(0), j, n, inner), dtype)
        slot_best = entry_alloca(b, best.type)
        slot_index = entry_alloca(b, ir.IntType(64))
        b.store(best, slot_best)
        b.store(const(0), slot_index)
        with for_range(b, n, start=1) as i:
            v = load(b, _at(b, k.ptr(x), o, i, j, n, inner), dtype)
            current = b.load(slot_best)
            if dtype.is_float:
                wins = b.or_(b.fcmp_ordered(pred, v, current),
                             b.and_(b.fcmp_unordered("uno", v, v), b.fcmp_ordered("ord", current, current)))
            else:
                wins = (b.icmp_unsigned if dtype is DType.u8 else b.icmp_signed)(pred, v, current)
            with b.if_then(wins):
                b.store(v, slot_best)
                b.store(i, slot_index)
        b.store(b.load(slot_index), b.gep(k.ptr(out), [linear_index(b, [o, j], [inner, 1])]))


# --- softmax ------------------------------------------------------------------------------------

def _softmax(k: Kernel, node: Node) -> None:
    """Per row along the axis: the maximum, the sum of exp(x - max), then the normalized values."""
    b, x, out = k.b, node.inputs[0], node.outputs[0]
    axis = normalize_axis(node.attrs["axis"], x.type.rank)
    outer, n, inner = _split(k, x, axis)
    dtype = x.type.dtype
    # rows of at least a vector: shorter ones (10 classes) take the scalar loop, which costs
    # less than masked vectors and the reductions across lanes (measured 6 vs 23 us, 256 x 10)
    if inner == 1 and dtype in (DType.f32, DType.f64) and \
            not (isinstance(n, int) and n < target.vector_lanes(dtype.itemsize)):
        _softmax_rows(k, node, outer, n)
        return
    fast = ("fast",)
    with for_nest(b, [outer, inner]) as (o, j):
        biggest = entry_alloca(b, scalar_type(dtype))
        b.store(elementwise.constant(dtype, float("-inf"), None), biggest)
        with for_range(b, n) as i:
            v = load(b, _at(b, k.ptr(x), o, i, j, n, inner), dtype)
            b.store(combine(b, "reduce_max", b.load(biggest), v, True), biggest)
        top = b.load(biggest)
        total = entry_alloca(b, scalar_type(dtype))
        b.store(elementwise.constant(dtype, 0.0, None), total)
        with for_range(b, n) as i:
            e = rule(b, "exp", [b.fsub(load(b, _at(b, k.ptr(x), o, i, j, n, inner), dtype), top)], dtype)
            if node.op == "softmax":
                store(b, e, _at(b, k.ptr(out), o, i, j, n, inner), dtype)
            b.store(b.fadd(b.load(total), e, flags=fast), total)
        s = b.load(total)
        if node.op == "softmax":
            scale = b.fdiv(elementwise.constant(dtype, 1.0, None), s)
            with for_range(b, n) as i:
                slot = _at(b, k.ptr(out), o, i, j, n, inner)
                store(b, b.fmul(load(b, slot, dtype), scale), slot, dtype)
        else:
            # (x - max) - log(sum), not x - (max + log(sum)): rounding max + log(sum) would cost
            # the precision of a result far smaller than max.
            log_total = rule(b, "log", [s], dtype)
            with for_range(b, n) as i:
                v = load(b, _at(b, k.ptr(x), o, i, j, n, inner), dtype)
                store(b, b.fsub(b.fsub(v, top), log_total), _at(b, k.ptr(out), o, i, j, n, inner), dtype)


def _softmax_rows(k: Kernel, node: Node, rows: Dim, n: Dim) -> None:
    """Softmax along a contiguous last axis, a vector of the row at a time: the maximum and the
    sum stay in vectors of lanes (reduced across lanes once per row), the tail lanes masked."""
    b, x, out = k.b, node.inputs[0], node.outputs[0]
    dtype = x.type.dtype
    lanes = target.vector_lanes(dtype.itemsize)
    vec = ir.VectorType(scalar_type(dtype), lanes)
    whole = isinstance(n, int) and n % lanes == 0
    lowest = simd.constant(vec, (float("-inf"),) * lanes)

    def step(row_ptr, i, fill=lowest):
        """The vector at i of the row (past its end: `fill`), its pointer and the lanes in the row."""
        ptr = b.gep(row_ptr, [i])
        mask = None if whole else simd.lane_mask(b, b.sub(as_i64(n), i), lanes)
        value = simd.load_vector(b, ptr, lanes) if whole else simd.masked_load(b, ptr, mask, fill)
        return value, ptr, mask

    def put(value, ptr, mask):
        simd.store_vector(b, value, ptr) if whole else simd.masked_store(b, value, ptr, mask)

    with for_range(b, rows, name="row") as row:
        start = mul(b, row, n)
        src, dst = b.gep(k.ptr(x), [as_i64(start)]), b.gep(k.ptr(out), [as_i64(start)])
        biggest = entry_alloca(b, vec)
        b.store(lowest, biggest)
        with for_range(b, n, step=lanes, name="m") as i:
            b.store(combine(b, "reduce_max", b.load(biggest), step(src, i)[0], True), biggest)
        top = _across_lanes(b, b.load(biggest), lambda acc, v: combine(b, "reduce_max", acc, v, True))
        tops = simd.splat(b, top, lanes)
        total = entry_alloca(b, vec)
        b.store(ir.Constant(vec, None), total)
        with for_range(b, n, step=lanes, name="e") as i:
            value, ptr, mask = step(src, i)
            e = rule(b, "exp", [b.fsub(value, tops)], dtype)      # exp(-inf) = 0 in the tail lanes
            if node.op == "softmax":
                put(e, b.gep(dst, [i]), mask)
            b.store(b.fadd(b.load(total), e), total)
        s = _across_lanes(b, b.load(total), b.fadd)
        if node.op == "softmax":
            scale = simd.splat(b, b.fdiv(elementwise.constant(dtype, 1.0, None), s), lanes)
            with for_range(b, n, step=lanes, name="s") as i:
                value, ptr, mask = step(dst, i)
                put(b.fmul(value, scale), ptr, mask)
        else:   # (x - max) - log(sum), as the scalar loop
            log_total = simd.splat(b, rule(b, "log", [s], dtype), lanes)
            with for_range(b, n, step=lanes, name="l") as i:
                value, _, mask = step(src, i)
                put(b.fsub(b.fsub(value, tops), log_total), b.gep(dst, [i]), mask)


def _across_lanes(b: ir.IRBuilder, vector: ir.Value, merge) -> ir.Value:
    """The lanes of `vector` merged by `merge` (commutative and associative, as max and + are
    here): a tree of log2(lanes) shuffles, each bringing the upper half of the live lanes down."""
    width = vector.type.count
    live = width
    while live > 1:
        live //= 2
        upper = ir.Constant(ir.VectorType(i32, width), [live + i if i < live else i for i in range(width)])
        vector = merge(vector, b.shuffle_vector(vector, vector, upper))
    return b.extract_element(vector, ir.Constant(i32, 0))


# --- data movement ------------------------------------------------------------------------------

def _copy(k: Kernel, src: Value, dst: Value) -> None:
    b = k.b
    if k.ptr(src) is k.ptr(dst):
        return   # a view: the memory plan gave both one buffer
    with for_range(b, k.size(dst)) as i:
        b.store(b.load(b.gep(k.ptr(src), [i])), b.gep(k.ptr(dst), [i]))


def _reshape(k: Kernel, node: Node) -> None:
    _copy(k, node.inputs[0], node.outputs[0])


def _transpose(k: Kernel, node: Node) -> None:
    b, x, out = k.b, node.inputs[0], node.outputs[0]
    perm = node.attrs["perm"]
    src = k.strides(x)
    with for_nest(b, k.dims(out)) as index:
        at = linear_index(b, index, [src[p] for p in perm])
        b.store(b.load(b.gep(k.ptr(x), [at])), b.gep(k.ptr(out), [linear_index(b, index, k.strides(out))]))


def _slice(k: Kernel, node: Node) -> None:
    b, x, out = k.b, node.inputs[0], node.outputs[0]
    plan = slice_plan(x.type.shape, node.attrs)
    src = k.strides(x)
    dims = k.dims(x)
    with for_nest(b, k.dims(out)) as index:
        at: ir.Value = const(0)
        for axis, (i, stride) in enumerate(zip(index, src)):
            part = plan.get(axis)
            first, step = (part.start or 0, part.step or 1) if part is not None else (0, 1)
            if step < 0 and part.start is None:     # a whole axis reversed: from its last index
                first = b.sub(as_i64(dims[axis]), const(1))
            pos = b.add(b.mul(i, const(step)), as_i64(first)) if (first, step) != (0, 1) else i
            at = b.add(at, b.mul(pos, as_i64(stride)))
        b.store(b.load(b.gep(k.ptr(x), [at])), b.gep(k.ptr(out), [linear_index(b, index, k.strides(out))]))


def _concat(k: Kernel, node: Node) -> None:
    b, out = k.b, node.outputs[0]
    axis = normalize_axis(node.attrs["axis"], out.type.rank)
    dst = k.strides(out)
    offset = 0
    for x in node.inputs:
        with for_nest(b, k.dims(x)) as index:
            moved = list(index)
            moved[axis] = b.add(index[axis], const(offset))
            b.store(b.load(b.gep(k.ptr(x), [linear_index(b, index, k.strides(x))])),
                    b.gep(k.ptr(out), [linear_index(b, moved, dst)]))
        offset += x.type.shape[axis]


def _pad(k: Kernel, node: Node) -> None:
    b, x, out = k.b, node.inputs[0], node.outputs[0]
    pads = node.attrs["pads"]
    dtype = out.type.dtype
    fill = elementwise.constant(dtype, node.attrs["value"], None)
    with for_range(b, k.size(out)) as i:
        store(b, fill, b.gep(k.ptr(out), [i]), dtype)
    with for_nest(b, k.dims(x)) as index:
        moved = [b.add(i, const(pads[2 * a])) if pads[2 * a] else i for a, i in enumerate(index)]
        b.store(b.load(b.gep(k.ptr(x), [linear_index(b, index, k.strides(x))])),
                b.gep(k.ptr(out), [linear_index(b, moved, k.strides(out))]))


def _gather(k: Kernel, node: Node) -> None:
    """Rows of `data` picked by `indices`: every index checked first (one out of range makes the
    kernel return 1 before anything is written), then the rows copied, split between the threads
    when there are enough (an embedding's rows for a batch of sequences)."""
    b = k.b
    data, indices = node.inputs
    out = node.outputs[0]
    axis = normalize_axis(node.attrs["axis"], data.type.rank)
    outer, size, inner = _split(k, data, axis)
    count = k.size(indices)

    def index_at(b: ir.IRBuilder, at: ir.Value, j: ir.Value, size: ir.Value) -> ir.Value:
        return picked_index(b, at, j, size, node.attrs["allow_negative"])

    with for_range(b, count, name="check") as j:
        index = index_at(b, k.ptr(indices), j, as_i64(size))
        with b.if_then(b.or_(b.icmp_signed("<", index, const(0)), b.icmp_signed(">=", index, as_i64(size))),
                       likely=False):
            b.ret(ir.Constant(i32, 1))

    # no axes before `axis` (an embedding's table): the threads split the rows picked instead
    lead = [] if isinstance(outer, int) and outer == 1 else [outer]

    def copy(b: ir.IRBuilder, at: list[ir.Value], pointers: list[ir.Value], words: dict) -> None:
        o, j, c = at if lead else [const(0), *at]
        rows, width, picked = (words.get(v, v) if isinstance(v, ir.Value) else v for v in (size, inner, count))
        index = index_at(b, pointers[1], j, as_i64(rows))
        src = linear_index(b, [o, index, c], [mul(b, rows, width), width, 1])
        dst = linear_index(b, [o, j, c], [mul(b, picked, width), width, 1])
        b.store(b.load(b.gep(pointers[0], [src])), b.gep(pointers[2], [dst]))

    dims, pointers = [*lead, count, inner], [k.ptr(data), k.ptr(indices), k.ptr(out)]
    # split whenever the copy may be large when run (split_nest then decides by its size):
    # the rows picked are as many as the indices, which a batch axis usually makes symbolic
    static = [d for d in dims if isinstance(d, int)]
    if parallel.num_threads() > 1 and (len(static) < len(dims) or
                                       math.prod(static) >= split_loop.PARALLEL_ELEMENTS):
        split_loop.split_nest(b, k.module, dims, pointers, copy,
                              [v for v in (size, inner, count) if isinstance(v, ir.Value)])
    else:
        with for_nest(b, dims, name="g") as at:
            copy(b, at, pointers, {})


LOWERINGS = {
    "reduce_sum": _reduce, "reduce_mean": _reduce, "reduce_max": _reduce, "reduce_min": _reduce,
    "reduce_prod": _reduce, "argmax": _arg_reduce, "argmin": _arg_reduce,
    "softmax": _softmax, "log_softmax": _softmax,
    "reshape": _reshape, "transpose": _transpose, "slice": _slice, "concat": _concat,
    "pad": _pad, "gather": _gather,
}

for _name, _fn in LOWERINGS.items():
    OPS[_name].lower = _fn

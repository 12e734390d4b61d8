"""Kernels of the matrix decompositions (`nncompile/ir/ops/decompositions.py`), registered in the
op table's `lower` slot: plain loops over each matrix, as the references compute them, the
matrices of a batch split between the threads when there is enough work.

Each kernel is a task over a range of the batch's matrices (`_over_batch`); the matrices are
small and static in size, so every index below is an i64 and every size a Python int.
"""
from __future__ import annotations

import math
from typing import Callable

from llvmlite import ir

from nncompile.codegen import gemm, parallel, split_loop
from nncompile.codegen.gemm import at, entry_alloca, smin
from nncompile.codegen.kernel import Kernel, product, scalar_type, storage_type
from nncompile.codegen.loops import as_i64, const, for_range
from nncompile.codegen.mathlib import intrinsic
from nncompile.ir.graph import Node, Value
from nncompile.ir.optable import OPS

i1 = ir.IntType(1)
i32 = ir.IntType(32)
i64 = ir.IntType(64)
# body(b, pointers of the matrix m's operands and results) emits the work on one matrix
Body = Callable[[ir.IRBuilder, list[ir.Value]], None]


def _over_batch(k: Kernel, node: Node, values: list[Value], body: Body, flops: int,
                scratch: int = 0) -> None:
    """Run `body` on every matrix of the batch (the leading axes of values[0], a matrix), each
    value's pointer advanced to its part for the matrix, then a buffer of `scratch` elements
    of the task's own if asked for; the matrices are split between the threads when `flops` per
    matrix add up to enough work."""
    b = k.b
    batch = values[0].type.rank - 2
    count = as_i64(product(b, k.dims(values[0])[:batch]))
    fn, tb, ctx, index, tasks = parallel.task_function(k.module, k.module.get_unique_name(node.op))
    types = [storage_type(v.type.dtype).as_pointer() for v in values]
    *pointers, total = gemm.unpack_fields(tb, ctx, types + [i64])
    share = gemm.ceil_div(tb, total, tasks)
    lo = tb.mul(index, share)
    dtype = values[0].type.dtype
    buffer = [gemm.alloc_aligned(tb, scalar_type(dtype).as_pointer(), const(scratch * dtype.itemsize))
              ] if scratch else []
    with for_range(tb, smin(tb, total, tb.add(lo, share)), start=lo, name="m") as m:
        body(tb, [at(tb, p, tb.mul(m, const(math.prod(v.type.shape[batch:]))))
                  for p, v in zip(pointers, values)] + buffer)
    for p in buffer:
        tb.call(gemm.libc(k.module)[1], [tb.bitcast(p, gemm.i8p)])
    tb.ret_void()
    threads = parallel.num_threads()
    big = b.and_(b.icmp_signed(">=", b.mul(count, const(flops)), const(split_loop.PARALLEL_ELEMENTS)),
                 b.icmp_signed(">=", count, const(2)))
    fields = gemm.pack_fields(b, [k.ptr(v) for v in values] + [count])
    b.call(parallel.emit_parallel_for(k.module), [fn, fields, b.select(big, const(threads), const(1))])


def _at(b: ir.IRBuilder, ptr: ir.Value, row: ir.Value | int, col: ir.Value | int, stride: int) -> ir.Value:
    """&ptr[row * stride + col]."""
    return at(b, ptr, b.add(b.mul(as_i64(row), const(stride)), as_i64(col)))


def _copy(b: ir.IRBuilder, src: ir.Value, dst: ir.Value, count: int) -> None:
    with for_range(b, count, name="cp") as i:
        b.store(b.load(at(b, src, i)), at(b, dst, i))


def _slot(b: ir.IRBuilder, value: ir.Value) -> ir.Value:
    """A stack slot holding `value` (a running sum, a flag), promoted to a register by LLVM."""
    slot = entry_alloca(b, value.type)
    b.store(value, slot)
    return slot


def _dot(b: ir.IRBuilder, x: ir.Value, y: ir.Value, count: ir.Value, x_stride: int, y_stride: int,
         zero: ir.Constant) -> ir.Value:
    """sum(x[j * x_stride] * y[j * y_stride] for j < count)."""
    acc = _slot(b, zero)
    with for_range(b, count, name="dot") as j:
        term = b.fmul(b.load(at(b, x, b.mul(j, const(x_stride)))), b.load(at(b, y, b.mul(j, const(y_stride)))))
        b.store(b.fadd(b.load(acc), term), acc)
    return b.load(acc)


# --- cholesky ----------------------------------------------------------------------------------

def _cholesky(k: Kernel, node: Node) -> None:
    """L of (x + x^T) / 2 column by column, in the output; a pivot not > 0 (or NaN) makes the
    matrix's whole lower triangle NaN, as the reference."""
    x, out = node.inputs[0], node.outputs[0]
    n = x.type.shape[-1]
    ty = scalar_type(x.type.dtype)
    zero, nan = ir.Constant(ty, 0.0), ir.Constant(ty, float("nan"))

    def body(b: ir.IRBuilder, pointers: list[ir.Value]) -> None:
        src, dst = pointers
        with for_range(b, n, name="r") as i, for_range(b, n, name="c") as j:
            mean = b.fmul(b.fadd(b.load(_at(b, src, i, j, n)), b.load(_at(b, src, j, i, n))), ir.Constant(ty, 0.5))
            b.store(b.select(b.icmp_signed("<=", j, i), mean, zero), _at(b, dst, i, j, n))
        failed = _slot(b, ir.Constant(i1, 0))
        with for_range(b, n, name="col") as j:
            row_j = _at(b, dst, j, 0, n)
            d = b.fsub(b.load(_at(b, dst, j, j, n)), _dot(b, row_j, row_j, j, 1, 1, zero))
            b.store(b.or_(b.load(failed), b.fcmp_unordered("<=", d, zero)), failed)
            pivot = intrinsic(b, "llvm.sqrt", [d])
            b.store(pivot, _at(b, dst, j, j, n))
            with for_range(b, n, start=b.add(j, const(1)), name="below") as i:
                s = b.fsub(b.load(_at(b, dst, i, j, n)), _dot(b, _at(b, dst, i, 0, n), row_j, j, 1, 1, zero))
                b.store(b.fdiv(s, pivot), _at(b, dst, i, j, n))
        with b.if_then(b.load(failed), likely=False):
            with for_range(b, n, name="nr") as i, for_range(b, b.add(i, const(1)), name="nc") as j:
                b.store(nan, _at(b, dst, i, j, n))

    _over_batch(k, node, [x, out], body, n ** 3)


# --- triangular_solve --------------------------------------------------------------------------

def _triangular_solve(k: Kernel, node: Node) -> None:
    """Substitution in the output (a copy of b), one system row at a time for every right-hand
    side. X op(A) = B is op(A)^T X^T = B^T: the right-hand sides are then B's rows."""
    a, rhs = node.inputs
    out = node.outputs[0]
    attrs = node.attrs
    n = a.type.shape[-1]
    left = attrs["left_side"]
    sides = rhs.type.shape[-1] if left else rhs.type.shape[-2]
    # element (e, v) of right-hand side v; T(i, j) the system's matrix as read from A
    e_stride, v_stride = (sides, 1) if left else (1, n)
    transposed = attrs["transpose_a"] != (not left)
    lower = attrs["lower"] != transposed
    ty = scalar_type(a.type.dtype)

    def body(b: ir.IRBuilder, pointers: list[ir.Value]) -> None:
        mat, src, dst = pointers
        _copy(b, src, dst, n * sides)
        with for_range(b, n, name="s") as s:
            i = s if lower else b.sub(const(n - 1), s)
            start, stop = (const(0), i) if lower else (b.add(i, const(1)), const(n))
            # T's row i from start: A's row (stride 1) or, transposed, A's column (stride n)
            t_row = _at(b, mat, start, i, n) if transposed else _at(b, mat, i, start, n)
            with for_range(b, sides, name="v") as v:
                solved = at(b, dst, b.add(b.mul(start, const(e_stride)), b.mul(v, const(v_stride))))
                known = _dot(b, t_row, solved, b.sub(stop, start), n if transposed else 1, e_stride,
                             ir.Constant(ty, 0.0))
                here = at(b, dst, b.add(b.mul(i, const(e_stride)), b.mul(v, const(v_stride))))
                value = b.fsub(b.load(here), known)
                if not attrs["unit_diagonal"]:
                    value = b.fdiv(value, b.load(_at(b, mat, i, i, n)))
                b.store(value, here)

    _over_batch(k, node, [a, rhs, out], body, n * n * sides)


# --- lu and det --------------------------------------------------------------------------------

def _factor(b: ir.IRBuilder, lu: ir.Value, n: int, ty: ir.Type, on_pivot: Callable) -> None:
    """LU with partial pivoting in place, as the reference: the first largest |pivot| (a NaN
    never wins), rows swapped whole, a zero pivot's column left unscaled; `on_pivot(b, k, p)`
    after each choice."""
    with for_range(b, n, name="k") as k:
        best, top = _slot(b, k), _slot(b, intrinsic(b, "llvm.fabs", [b.load(_at(b, lu, k, k, n))]))
        with for_range(b, n, start=b.add(k, const(1)), name="p") as i:
            size = intrinsic(b, "llvm.fabs", [b.load(_at(b, lu, i, k, n))])
            better = b.fcmp_ordered(">", size, b.load(top))
            b.store(b.select(better, i, b.load(best)), best)
            b.store(b.select(better, size, b.load(top)), top)
        p = b.load(best)
        on_pivot(b, k, p)
        with b.if_then(b.icmp_signed("!=", p, k)):
            _swap(b, _at(b, lu, k, 0, n), _at(b, lu, p, 0, n), n)
        pivot = b.load(_at(b, lu, k, k, n))
        scale = b.select(b.fcmp_unordered("!=", pivot, ir.Constant(ty, 0.0)), pivot, ir.Constant(ty, 1.0))
        with for_range(b, n, start=b.add(k, const(1)), name="sc") as i:
            b.store(b.fdiv(b.load(_at(b, lu, i, k, n)), scale), _at(b, lu, i, k, n))
        with for_range(b, n, start=b.add(k, const(1)), name="ur") as i:
            factor = b.load(_at(b, lu, i, k, n))
            with for_range(b, n, start=b.add(k, const(1)), name="uc") as j:
                target = _at(b, lu, i, j, n)
                b.store(b.fsub(b.load(target), b.fmul(factor, b.load(_at(b, lu, k, j, n)))), target)


def _swap(b: ir.IRBuilder, x: ir.Value, y: ir.Value, count: int) -> None:
    with for_range(b, count, name="sw") as j:
        first, second = at(b, x, j), at(b, y, j)
        value = b.load(first)
        b.store(b.load(second), first)
        b.store(value, second)


def _lu(k: Kernel, node: Node) -> None:
    x = node.inputs[0]
    n = x.type.shape[-1]
    ty = scalar_type(x.type.dtype)

    def body(b: ir.IRBuilder, pointers: list[ir.Value]) -> None:
        src, lu, pivots, perm = pointers
        _copy(b, src, lu, n * n)
        with for_range(b, n, name="id") as i:
            b.store(b.trunc(i, i32), at(b, perm, i))

        def record(b: ir.IRBuilder, k: ir.Value, p: ir.Value) -> None:
            b.store(b.trunc(p, i32), at(b, pivots, k))
            _swap(b, at(b, perm, k), at(b, perm, p), 1)

        _factor(b, lu, n, ty, record)

    _over_batch(k, node, [x, *node.outputs], body, n ** 3)


def _det(k: Kernel, node: Node) -> None:
    """The LU factors of each matrix in the task's buffer, then the product of the
    diagonal, negated once per row swap."""
    x, out = node.inputs[0], node.outputs[0]
    n = x.type.shape[-1]
    ty = scalar_type(x.type.dtype)

    def body(b: ir.IRBuilder, pointers: list[ir.Value]) -> None:
        src, det, scratch = pointers
        _copy(b, src, scratch, n * n)
        value = _slot(b, ir.Constant(ty, 1.0))

        def flip(b: ir.IRBuilder, k: ir.Value, p: ir.Value) -> None:
            with b.if_then(b.icmp_signed("!=", p, k)):
                b.store(b.fneg(b.load(value)), value)

        _factor(b, scratch, n, ty, flip)
        with for_range(b, n, name="d") as i:
            b.store(b.fmul(b.load(value), b.load(_at(b, scratch, i, i, n))), value)
        b.store(b.load(value), det)

    _over_batch(k, node, [x, out], body, n ** 3, scratch=n * n)


LOWERINGS = {"cholesky": _cholesky, "triangular_solve": _triangular_solve, "lu": _lu, "det": _det}

for _name, _fn in LOWERINGS.items():
    OPS[_name].lower = _fn

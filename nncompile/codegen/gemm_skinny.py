"""GEMM kernels for few columns (N <= SKINNY_N), where BLIS-style packing and MR x NR tiles waste
most of each register tile; `gemm.emit_gemm` picks them.

Row-major A (Dense layers with few units): vectorized over K instead, B read as N x K, lanes summed
at the end. A stored K x M (the weight gradient X^T dY of a Dense layer with few units):
vectorized over M, a row of A being contiguous in M, with B broadcast and the transposed tile
scattered into C; no packing.
"""
from __future__ import annotations

import contextlib

from llvmlite import ir

from nncompile.codegen import gemm, parallel, simd
from nncompile.codegen.loops import const, for_range

i8p = ir.IntType(8).as_pointer()
i64 = ir.IntType(64)
SKINNY_WIDTHS = (1, 2, 4, 6, 8)   # column widths of the skinny kernel's blocks, those up to the lanes used
SKINNY_T_WIDTHS = (4, 12)   # column widths of the transposed-A skinny kernel's blocks


def _skinny_rows(width: int) -> int:
    """Rows per block of the skinny kernel for `width` columns: <= 24 accumulators, and >= 8 so
    that the FMA chains are independent enough to hide their latency."""
    return max(1, min(8, 24 // width))


def _emit_skinny_block(module: ir.Module, name: str, ty: ir.Type, t: gemm.Tiling, width: int,
                       epilogue: gemm.Epilogue | None) -> ir.Function:
    """block(r0, r1, n, k, a, lda, bt, ldbt, c, ldc, e...): rows r0..r1 of C = A @ Bt^T, `width`
    columns at a time, vectorized over K: per row and column a vector of partial dot products,
    summed across lanes (`simd.sum_lanes`) into one row of C just before it is stored."""
    ptr = ty.as_pointer()
    n_epi = len(epilogue.operands) if epilogue else 0
    fn = gemm.new_function(module, f"{name}.skinny{width}", [i64, i64, i64, i64, ptr, i64, ptr, i64, ptr, i64]
                      + [ptr] * n_epi)
    r0, r1, n, k, a, lda, bt, ldbt, c, ldc, *eptrs = fn.args
    for p in (a, bt, c):
        p.add_attribute("noalias")
    lanes, rows_per = t.lanes, _skinny_rows(width)
    vec = ir.VectorType(ty, lanes)
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    slots = [[gemm.entry_alloca(b, vec) for _ in range(width)] for _ in range(rows_per)]
    k_full = b.mul(b.sdiv(k, const(lanes)), const(lanes))
    tail = simd.lane_mask(b, b.sub(k, k_full), lanes)
    with for_range(b, r1, r0, step=rows_per, name="sr") as row:
        rows = gemm.smin(b, const(rows_per), b.sub(r1, row))
        last_row = b.sub(b.add(row, rows), const(1))      # rows past the end re-read it; not stored
        a_rows = [gemm.at(b, a, b.mul(gemm.smin(b, b.add(row, const(r)), last_row), lda)) for r in range(rows_per)]
        with for_range(b, n, step=width, name="sc") as col:
            cols = gemm.smin(b, const(width), b.sub(n, col))
            last_col = b.sub(b.add(col, cols), const(1))
            b_rows = [gemm.at(b, bt, b.mul(gemm.smin(b, b.add(col, const(j)), last_col), ldbt)) for j in range(width)]
            for slot in (s for row_slots in slots for s in row_slots):
                b.store(gemm.zero(vec), slot)

            def step(kk: ir.Value, mask: ir.Value | None) -> None:
                def load(base: ir.Value) -> ir.Value:
                    p = gemm.at(b, base, kk)
                    return simd.load_vector(b, p, lanes) if mask is None else simd.masked_load(b, p, mask)
                a_vecs = [load(p) for p in a_rows]
                b_vecs = [load(p) for p in b_rows]
                for a_vec, row_slots in zip(a_vecs, slots):
                    for b_vec, slot in zip(b_vecs, row_slots):
                        b.store(simd.fma(b, a_vec, b_vec, b.load(slot)), slot)

            with for_range(b, k_full, step=lanes, name="sk") as kk:
                step(kk, None)
            with b.if_then(b.icmp_signed("<", k_full, k)):
                step(k_full, tail)
            accs = [[simd.sum_lanes(b, [b.load(s) for s in row_slots])] for row_slots in slots]
            gemm.store_tile(b, accs, gemm.at(b, c, b.add(b.mul(row, ldc), col)), ldc, rows, cols, True, True,
                       row, col, epilogue, eptrs)
    b.ret_void()
    return fn


def emit_skinny(module: ir.Module, name: str, ty: ir.Type, t: gemm.Tiling, transpose_b: bool,
                 epilogue: gemm.Epilogue | None) -> ir.Function:
    """skinny(m, n, k, a, lda, b, ldb, c, ldc, e...) for row-major A and N <= SKINNY_N columns.

    B is read as Bt (N x K): B itself when transposed, else a transposed copy (N*K elements, small
    because N is). Columns go `width` at a time: N split evenly into chunks of at most 8 (at most
    the lanes of a vector: a block's sums share one vector, 2 f64 on SSE2), rounded up to one of
    SKINNY_WIDTHS, each a statically unrolled block function (a few, for compile time); rows are
    split between threads when the work pays for it."""
    ptr = ty.as_pointer()
    n_epi = len(epilogue.operands) if epilogue else 0
    widths = tuple(w for w in SKINNY_WIDTHS if w <= t.lanes)
    blocks = {w: _emit_skinny_block(module, name, ty, t, w, epilogue) for w in widths}
    task, b, ctx, index, count = parallel.task_function(module, f"{name}.skinny")
    m, n, k, a, lda, bt, ldbt, c, ldc, *eptrs = gemm.unpack_fields(
        b, ctx, [i64, i64, i64, ptr, i64, ptr, i64, ptr, i64] + [ptr] * n_epi)
    needed = gemm.ceil_div(b, n, gemm.ceil_div(b, n, widths[-1]))
    width = const(widths[-1])
    for w in reversed(widths[:-1]):     # the narrowest block at least `needed` wide
        width = b.select(b.icmp_signed("<=", needed, const(w)), const(w), width)
    share = b.mul(gemm.ceil_div(b, gemm.ceil_div(b, m, 8), count), const(8))
    r0 = b.mul(index, share)
    r1 = gemm.smin(b, m, b.add(r0, share))
    for w, block in blocks.items():
        with b.if_then(b.icmp_signed("==", width, const(w))):
            b.call(block, [r0, r1, n, k, a, lda, bt, ldbt, c, ldc] + eptrs)
    b.ret_void()

    fn = gemm.new_function(module, f"{name}.skinny_entry", [i64, i64, i64, ptr, i64, ptr, i64, ptr, i64] + [ptr] * n_epi)
    m, n, k, a, lda, src_b, ldb, c, ldc, *eptrs = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    if transpose_b:
        bt, ldbt = src_b, ldb
    else:
        _, free = gemm.libc(module)
        bt, ldbt = gemm.alloc_aligned(b, ptr, b.mul(b.mul(n, k), const(t.itemsize))), k
        with for_range(b, k, name="tk") as kk, simd.copy_loop(b, n, name="tn") as col:
            b.store(b.load(gemm.at(b, src_b, b.add(b.mul(kk, ldb), col))), gemm.at(b, bt, b.add(b.mul(col, k), kk)))
    big = b.icmp_signed(">=", b.mul(b.mul(m, n), k), const(gemm.PARALLEL_WORK))
    tasks = b.select(big, gemm.smin(b, gemm.ceil_div(b, m, 8), const(parallel.num_threads())), const(1))
    fields = gemm.pack_fields(b, [m, n, k, a, lda, bt, ldbt, c, ldc] + eptrs)
    b.call(parallel.emit_parallel_for(module), [task, fields, tasks])
    if not transpose_b:
        b.call(free, [b.bitcast(bt, i8p)])
    b.ret_void()
    return fn


def _skinny_t_vectors(width: int) -> int:
    """Vectors of rows per block of the transposed skinny kernel: <= 24 accumulators, >= 8 when
    the width allows (independent FMA chains hide their latency)."""
    return max(2, min(4, 24 // width))


def _emit_skinny_t_block(module: ir.Module, name: str, ty: ir.Type, t: gemm.Tiling, width: int,
                         transpose_b: bool, epilogue: gemm.Epilogue | None) -> ir.Function:
    """block(r0, r1, n, k, a, lda, b, ldb, c, ldc, e...): rows r0..r1 of C = A^T @ B for A stored
    K x M, `width` columns at a time, vectorized over M: a row of A is contiguous in M, so each k
    costs a few vector loads of A and `width` broadcasts of B, with no packing. The tile ends up
    transposed in registers (a vector is a column piece of C) and is scattered into C."""
    ptr = ty.as_pointer()
    n_epi = len(epilogue.operands) if epilogue else 0
    fn = gemm.new_function(module, f"{name}.skinny_t{width}", [i64, i64, i64, i64, ptr, i64, ptr, i64, ptr, i64]
                      + [ptr] * n_epi)
    r0, r1, n, k, a, lda, src_b, ldb, c, ldc, *eptrs = fn.args
    for p in (a, src_b, c):
        p.add_attribute("noalias")
    lanes, vectors = t.lanes, _skinny_t_vectors(width)
    vec = ir.VectorType(ty, lanes)
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    slots = [[gemm.entry_alloca(b, vec) for _ in range(vectors)] for _ in range(width)]
    with for_range(b, r1, r0, step=lanes * vectors, name="tr") as row:
        rows = b.sub(r1, row)
        masks = [simd.lane_mask(b, rows, lanes, v * lanes) for v in range(vectors)]
        with for_range(b, n, step=width, name="tc") as col:
            cols = gemm.smin(b, const(width), b.sub(n, col))
            last_col = b.sub(b.add(col, cols), const(1))    # columns past the edge re-read it; not stored
            b_cols = [gemm.smin(b, b.add(col, const(j)), last_col) for j in range(width)]
            for slot in (s for col_slots in slots for s in col_slots):
                b.store(gemm.zero(vec), slot)
            with for_range(b, k, name="tk") as kk:
                a_row = gemm.at(b, a, b.add(b.mul(kk, lda), row))
                a_vecs = [simd.masked_load(b, gemm.at(b, a_row, v * lanes), mask) for v, mask in enumerate(masks)]
                for j, col_slots in zip(b_cols, slots):
                    b_at = b.add(b.mul(j, ldb), kk) if transpose_b else b.add(b.mul(kk, ldb), j)
                    b_vec = simd.splat(b, b.load(gemm.at(b, src_b, b_at)), lanes)
                    for a_vec, slot in zip(a_vecs, col_slots):
                        b.store(simd.fma(b, a_vec, b_vec, b.load(slot)), slot)
            for j, col_slots in enumerate(slots):
                present = b.icmp_signed("<", const(j), cols) if j else None
                with b.if_then(present) if present is not None else contextlib.nullcontext():
                    at_col = b.add(col, const(j))
                    for v, (slot, mask) in enumerate(zip(col_slots, masks)):
                        at_row = b.add(row, const(v * lanes))
                        acc = b.load(slot)
                        if epilogue is not None and epilogue.apply is not None:
                            valid = b.sub(rows, const(v * lanes))
                            acc = epilogue.apply(b, acc, [gemm.operand(b, p, s, at_row, at_col, lanes, valid,
                                                                       down=True, ldc=ldc)
                                                          for p, s in zip(eptrs, epilogue.operands)])
                        simd.masked_scatter(b, acc, gemm.at(b, c, b.add(b.mul(at_row, ldc), at_col)), ldc, mask)
            if epilogue is not None and epilogue.apply is None:
                gemm.call_tile(b, eptrs, gemm.at(b, c, b.add(b.mul(row, ldc), col)), ldc, row, col,
                               gemm.smin(b, rows, const(lanes * vectors)), cols)
    b.ret_void()
    return fn


def emit_skinny_t(module: ir.Module, name: str, ty: ir.Type, t: gemm.Tiling, transpose_b: bool,
                   epilogue: gemm.Epilogue | None) -> ir.Function:
    """skinny_t(m, n, k, a, lda, b, ldb, c, ldc, e...) for A stored K x M and N <= SKINNY_N (the
    weight gradient X^T dY of a Dense layer with few units). N is split evenly into chunks of at
    most the widest of SKINNY_T_WIDTHS, rounded up to one of them; rows are split between threads
    when the work pays for it."""
    ptr = ty.as_pointer()
    n_epi = len(epilogue.operands) if epilogue else 0
    widths = SKINNY_T_WIDTHS
    blocks = {w: _emit_skinny_t_block(module, name, ty, t, w, transpose_b, epilogue) for w in widths}
    task, b, ctx, index, count = parallel.task_function(module, f"{name}.skinny_t")
    m, n, k, a, lda, src_b, ldb, c, ldc, *eptrs = gemm.unpack_fields(
        b, ctx, [i64, i64, i64, ptr, i64, ptr, i64, ptr, i64] + [ptr] * n_epi)
    needed = gemm.ceil_div(b, n, gemm.ceil_div(b, n, widths[-1]))
    width = const(widths[-1])
    for w in reversed(widths[:-1]):     # the narrowest block at least `needed` wide
        width = b.select(b.icmp_signed("<=", needed, const(w)), const(w), width)
    share = b.mul(gemm.ceil_div(b, gemm.ceil_div(b, m, t.lanes), count), const(t.lanes))
    r0 = b.mul(index, share)
    r1 = gemm.smin(b, m, b.add(r0, share))
    for w, block in blocks.items():
        with b.if_then(b.icmp_signed("==", width, const(w))):
            b.call(block, [r0, r1, n, k, a, lda, src_b, ldb, c, ldc] + eptrs)
    b.ret_void()

    fn = gemm.new_function(module, f"{name}.skinny_t_entry", [i64, i64, i64, ptr, i64, ptr, i64, ptr, i64] + [ptr] * n_epi)
    m, n, k, *_ = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    big = b.icmp_signed(">=", b.mul(b.mul(m, n), k), const(gemm.PARALLEL_WORK))
    tasks = b.select(big, gemm.smin(b, gemm.ceil_div(b, m, t.lanes), const(parallel.num_threads())), const(1))
    b.call(parallel.emit_parallel_for(module), [task, gemm.pack_fields(b, list(fn.args)), tasks])
    b.ret_void()
    return fn

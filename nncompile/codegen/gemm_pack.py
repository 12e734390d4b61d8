"""Packing the GEMM's operands: B into NR-wide column panels (per call, a panel at a time:
`pack_b_panel`, or a block of panels reading each row of B once: `pack_b_columns`, in the task
that reads them; or once before a loop that multiplies by the same B at every step:
`emit_pack_b`), A into MR-row panels (`pack_matrix`).

Layouts are those `gemm.py`'s microkernel reads: B's block at depth pc starts at pc*Np (Np =
panels*NR), panel j of it at j*kc*NR, k-major; A's panels ap[p*MR*kc + k*MR + r].
"""
from __future__ import annotations

import dataclasses

from llvmlite import ir

from nncompile.codegen import gemm, parallel, simd
from nncompile.codegen.kernel import scalar_type
from nncompile.codegen.loops import const, for_range
from nncompile.ir.dtypes import DType

i64 = ir.IntType(64)


def pack_b_task(module: ir.Module, name: str, ty: ir.Type, t: gemm.Tiling,
                 transpose_b: bool) -> ir.Function:
    """Task: pack its share of B's NR-wide column panels, every KC block of each, into bp.

    Layout: block at depth pc starts at pc*Np (Np = panels*NR); panel j of it at j*kc*NR, k-major."""
    ptr = ty.as_pointer()
    fn, b, ctx, index, count = parallel.task_function(module, f"{name}.pack_b")
    src, ldb, n, k_total, bp = gemm.unpack_fields(b, ctx, [ptr, i64, i64, i64, ptr])
    panels = gemm.ceil_div(b, n, t.nr)
    share = gemm.ceil_div(b, panels, count)
    first_panel = b.mul(index, share)
    np_ = b.mul(panels, const(t.nr))
    depth = gemm.block_depth(b, t, k_total)
    with for_range(b, gemm.smin(b, panels, b.add(first_panel, share)), first_panel, name="j") as j:
        n0 = b.mul(j, const(t.nr))
        with for_range(b, gemm.ceil_div(b, k_total, depth), name="pc") as block:
            pc = b.mul(block, depth)
            kc = gemm.smin(b, depth, b.sub(k_total, pc))
            pack_b_panel(b, t, [src, ldb, n, n0, pc, kc], gemm.at(b, bp, b.add(b.mul(pc, np_), b.mul(n0, kc))),
                         transpose_b)
    b.ret_void()
    return fn


def pack_b_panel(b: ir.IRBuilder, t: gemm.Tiling, where: list[ir.Value], dst: ir.Value,
                 transpose_b: bool) -> None:
    """Pack one NR-wide panel of B to `dst`, k-major: where = (B, ldb, N, n0, pc, kc), columns
    n0..n0+NR (zeros past N) at depths pc..pc+kc."""
    src, ldb, n, n0, pc, kc = where
    valid = b.sub(n, n0)
    if transpose_b:      # B is N x K: a column of the panel is a row of B, read sequentially
        with for_range(b, t.nr, name="col") as col:
            src_row = b.add(n0, gemm.smin(b, col, b.sub(valid, const(1))))   # past the edge: 0s
            start = gemm.at(b, src, b.add(b.mul(src_row, ldb), pc))
            keep = b.icmp_signed("<", col, valid)
            with simd.copy_loop(b, kc, name="kk") as kk:
                value = b.load(gemm.at(b, start, kk))
                out = gemm.at(b, dst, b.add(b.mul(kk, const(t.nr)), col))
                b.store(b.select(keep, value, gemm.zero(value.type)), out)
        return
    pack_b_columns(b, t, [src, ldb, n, n0, b.add(n0, const(t.nr)), pc, kc], dst)


def pack_b_columns(b: ir.IRBuilder, t: gemm.Tiling, where: list[ir.Value], dst: ir.Value) -> None:
    """Pack the NR-wide panels of a row-major B's columns n0..n1 (zeros past N) at depths
    pc..pc+kc to `dst`, panel after panel as `pack_b_panel` lays one out: where = (B, ldb, N, n0,
    n1, pc, kc). Each row of B is read once, start to end."""
    src, ldb, n, n0, n1, pc, kc = where
    with for_range(b, kc, name="kk") as kk:
        row = gemm.at(b, src, b.mul(b.add(pc, kk), ldb))
        with for_range(b, n1, n0, step=t.nr, name="jj") as j:
            out = gemm.at(b, dst, b.add(b.mul(b.sub(j, n0), kc), b.mul(kk, const(t.nr))))
            for v in range(t.nr_vectors):
                mask = simd.lane_mask(b, b.sub(n, j), t.lanes, v * t.lanes)
                value = simd.masked_load(b, gemm.at(b, row, b.add(j, const(v * t.lanes))), mask)
                simd.store_vector(b, value, gemm.at(b, out, v * t.lanes), align=64)


def packed_bytes(b: ir.IRBuilder, t: gemm.Tiling, n: ir.Value, k: ir.Value) -> ir.Value:
    """Bytes of B packed into NR-wide panels (a multiple of 64)."""
    depth = b.select(b.icmp_signed(">", k, const(0)), k, const(1))
    bytes_ = b.mul(b.mul(depth, b.mul(gemm.ceil_div(b, n, t.nr), const(t.nr))), const(t.itemsize))
    return b.mul(gemm.ceil_div(b, bytes_, 64), const(64))


def run_pack_b(b: ir.IRBuilder, module: ir.Module, pack_b: ir.Function, t: gemm.Tiling, args: list[ir.Value],
                tasks: ir.Value) -> None:
    src_b, ldb, n, k, bp = args
    parallel_for = parallel.emit_parallel_for(module)
    b.call(parallel_for, [pack_b, gemm.pack_fields(b, [src_b, ldb, n, k, bp]), gemm.smin(b, gemm.ceil_div(b, n, t.nr), tasks)])


def emit_pack_b(module: ir.Module, dtype: DType, *, transpose_b: bool = False) -> ir.Function:
    """`T* gemm.pack_b.<dtype>(i64 N, i64 K, T* B, i64 ldb)`: B packed once, as the GEMM packs it,
    into a new buffer (freed with `free`), for a loop that multiplies by the same B at every step
    (`emit_gemm(prepacked=True)`)."""
    name = f"gemm.pack_b.{dtype}{'.t' if transpose_b else ''}"
    if name in module.globals:
        return module.globals[name]
    into = emit_pack_b_into(module, dtype, transpose_b=transpose_b)
    fn = gemm.new_function(module, name, [a.type for a in into.args[:4]], ret=into.args[4].type)
    n, k, src_b, ldb = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    bp = gemm.alloc_aligned(b, into.args[4].type, packed_bytes(b, gemm.tiling(dtype), n, k))
    b.call(into, [n, k, src_b, ldb, bp])
    b.ret(bp)
    return fn


def emit_pack_b_into(module: ir.Module, dtype: DType, *, transpose_b: bool = False,
                     conv_columns: int | None = None) -> ir.Function:
    """`void gemm.pack_b_into.<dtype>(i64 N, i64 K, T* B, i64 ldb, T* bp)`: B packed as the GEMM
    packs it into `bp`, which holds `packed_size` bytes, 64-byte aligned (weights packed once for
    many calls: `codegen.cpu`'s prepare function); `conv_columns`: as the convolution packs its
    weights of that many output channels per group, one K block (`conv_tiling`)."""
    ty = scalar_type(dtype)
    t = gemm.tiling(dtype) if conv_columns is None else conv_tiling(dtype, conv_columns)
    whole = "" if conv_columns is None else f".whole{t.nr}"
    name = f"gemm.pack_b_into.{dtype}{'.t' if transpose_b else ''}{whole}"
    existing = module.globals.get(name)
    if existing is not None:
        return existing
    ptr = ty.as_pointer()
    fn = gemm.new_function(module, name, [i64, i64, ptr, i64, ptr])
    n, k, src_b, ldb, bp = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    pack_b = pack_b_task(module, name, ty, t, transpose_b)
    run_pack_b(b, module, pack_b, t, [src_b, ldb, n, k, bp], const(parallel.num_threads() * gemm.CHUNKS_PER_THREAD))
    b.ret_void()
    return fn


WHOLE_K = 1 << 40     # a KC no depth reaches: B packed whole, one K block (a convolution's weights)


def conv_tiling(dtype: DType, columns: int) -> gemm.Tiling:
    """The convolution's blocking for `columns` output channels per group: B (its weights) packed
    in one K block, and the wide register tile (`gemm.register_tile`) when the host has one and
    the columns fill its panels. Each broadcast of an input element, read from one of the tile's
    pixels far apart in the image, then feeds twice the FMAs (measured on an AVX-512 Xeon, a
    ResNet's 64- and 128-channel layers: 266-305 GFLOP/s against 221-283 with the 12 x 32 tile;
    its 32-channel layers half as fast on the wide one, half its lanes padding)."""
    t = gemm.tiling(dtype)
    mr, nr_vectors = gemm.register_tile(wide=True)
    if nr_vectors == t.nr_vectors or columns % (nr_vectors * t.lanes):
        return dataclasses.replace(t, kc=WHOLE_K)
    return dataclasses.replace(t, kc=WHOLE_K, mr=mr, nr_vectors=nr_vectors, mc=max(t.mc // mr, 1) * mr)


def packed_size(dtype: DType, n: int, k: int, conv: bool = False) -> int:
    """Bytes of an N-column, K-deep B packed into NR-wide panels: `packed_bytes` for static sizes
    (`conv`: as the convolution packs its weights, `conv_tiling`)."""
    t = conv_tiling(dtype, n) if conv else gemm.tiling(dtype)
    bytes_ = max(k, 1) * -(-n // t.nr) * t.nr * t.itemsize
    return -(-bytes_ // 64) * 64


def pack_matrix(transpose_a: bool) -> gemm.PackA:
    """A packer for a row-major A (K x M when transposed); a_ctx holds (A, lda)."""

    def pack(b: ir.IRBuilder, t: gemm.Tiling, a_ctx: ir.Value, ap: ir.Value, m0: ir.Value, mc: ir.Value,
             k0: ir.Value, kc: ir.Value) -> None:
        src, lda = gemm.unpack_fields(b, a_ctx, [ap.type, i64])
        if transpose_a:
            _pack_rows_of_transposed(b, t, src, lda, ap, m0, mc, k0, kc)
            return
        with for_range(b, mc, step=t.mr, name="pa") as p:
            rows = b.sub(mc, p)
            panel = gemm.at(b, ap, b.mul(p, kc))
            with for_range(b, t.mr, name="pr") as r:   # a row at a time: one sequential read each
                row = b.add(b.add(m0, p), gemm.smin(b, r, b.sub(rows, const(1))))   # past the edge: 0s
                start = b.add(b.mul(k0, lda), row) if transpose_a else b.add(b.mul(row, lda), k0)
                keep = b.icmp_signed("<", r, rows)
                with simd.copy_loop(b, kc, name="pk") as kk:
                    value = b.load(gemm.at(b, src, b.add(start, b.mul(kk, lda) if transpose_a else kk)))
                    out = gemm.at(b, panel, b.add(b.mul(kk, const(t.mr)), r))
                    b.store(b.select(keep, value, gemm.zero(value.type)), out)
    return pack


def _pack_rows_of_transposed(b: ir.IRBuilder, t: gemm.Tiling, src: ir.Value, lda: ir.Value, ap: ir.Value,
                             m0: ir.Value, mc: ir.Value, k0: ir.Value, kc: ir.Value) -> None:
    """Pack from A stored K x M: a panel's MR values at depth k are MR consecutive elements of
    row k, so each depth is one short sequential read (a column at a time would touch a cache
    line per element: measured 5x slower on a weight gradient over 6400 rows), made as masked
    vector loads and stores of up to `lanes` values (an element at a time, the packing took a
    tenth of an LSTM's weight gradients: 128 x 6400 @ 6400 x 512)."""
    with for_range(b, mc, step=t.mr, name="pa") as p:
        rows = b.sub(mc, p)
        panel = gemm.at(b, ap, b.mul(p, kc))
        chunks = [(first, min(t.lanes, t.mr - first)) for first in range(0, t.mr, t.lanes)]
        loads = [simd.lane_mask(b, b.sub(rows, const(first)), t.lanes) for first, _ in chunks]
        with simd.copy_loop(b, kc, name="pk") as kk:
            start = b.add(b.mul(b.add(k0, kk), lda), b.add(m0, p))
            for (first, width), load in zip(chunks, loads):
                store = simd.lane_mask(b, width, t.lanes)
                value = simd.masked_load(b, gemm.at(b, src, b.add(start, const(first))), b.and_(load, store))
                simd.masked_store(b, value, gemm.at(b, panel, b.add(b.mul(kk, const(t.mr)), const(first))), store)

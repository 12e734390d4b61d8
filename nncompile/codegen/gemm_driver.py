"""The GEMM's driver and its tiles: how C is cut between the threads, where B is packed (once for
all, or a block of panels at a time in the task that reads it), and the task that packs A's blocks and runs
the microkernel (`gemm.emit_micro`) over its share of C's tiles. The convolution (`conv.py`) runs
its own tiles task under the same driver.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

from llvmlite import ir

from nncompile.codegen import gemm, gemm_pack, parallel, simd
from nncompile.codegen.kernel import scalar_type
from nncompile.codegen.loops import const, for_range
from nncompile.ir.dtypes import DType

i1 = ir.IntType(1)
i8p = ir.IntType(8).as_pointer()
i64 = ir.IntType(64)


# --- running the tiles, the driver -------------------------------------------------------------

TILE_FIELDS = "m, n, k, bp, c, ldc, col0, a_ctx, split_n, b, ldb, split_k, partials, e..."
"""The argument block of a tiles task (see `emit_driver`); bp is null when the task packs the
panels of B (b, ldb) it reads itself, which only a driver given `packs_a` asks of its tiles (the
convolution's tiles always read bp). With split_k > 1 the tasks share K: the first sums its part
into C, the others each into an M x N block of `partials`, which the driver then adds to C."""


def tiles_task(module: ir.Module, name: str, ty: ir.Type, t: gemm.Tiling,
               n_epi: int) -> tuple[ir.IRBuilder, dict]:
    """Start a tiles task: a TASK_TYPE function that unpacks TILE_FIELDS and works out its share.

    Returns the builder and the task's values by name: the fields, `eptrs`, its share of C,
    rows m0..m1 and columns n0..n1 (the index-th of split_m x split_n x split_k chunks, count =
    their product), in whole MR x NR tiles, its share of K, k0..k1, and where it writes, c and ldc
    (C itself, or its block of the partial sums)."""
    ptr = ty.as_pointer()
    fn, b, ctx, index, count = parallel.task_function(module, f"{name}.tiles")
    m, n, k, bp, c, ldc, col0, a_ctx, split_n, src_b, ldb, split_k, partials, *eptrs = gemm.unpack_fields(
        b, ctx, [i64, i64, i64, ptr, ptr, i64, i64, i8p, i64, ptr, i64, i64, ptr] + [ptr] * n_epi)
    part, index, count = b.srem(index, split_k), b.sdiv(index, split_k), b.sdiv(count, split_k)
    k_share = gemm.ceil_div(b, k, split_k)
    k0 = gemm.smin(b, k, b.mul(part, k_share))
    own = b.icmp_signed("==", part, const(0))
    c = b.select(own, c, gemm.at(b, partials, b.mul(b.sub(part, const(1)), b.mul(m, n))))
    ldc = b.select(own, ldc, n)
    split_m = b.sdiv(count, split_n)
    m_share = b.mul(gemm.ceil_div(b, gemm.ceil_div(b, m, t.mr), split_m), const(t.mr))
    m0 = b.mul(b.sdiv(index, split_n), m_share)
    n_share = b.mul(gemm.ceil_div(b, gemm.ceil_div(b, n, t.nr), split_n), const(t.nr))
    n0 = b.mul(b.srem(index, split_n), n_share)
    values = dict(m=m, n=n, k=k, bp=bp, c=c, ldc=ldc, col0=col0, a_ctx=a_ctx, eptrs=eptrs, src_b=src_b, ldb=ldb,
                  m0=m0, m1=gemm.smin(b, m, b.add(m0, m_share)), n0=n0, n1=gemm.smin(b, n, b.add(n0, n_share)),
                  k0=k0, k1=gemm.smin(b, k, b.add(k0, k_share)))
    return b, values


def _emit_tiles(module: ir.Module, name: str, ty: ir.Type, t: gemm.Tiling, pack_a: gemm.PackA,
                micro: ir.Function, n_epi: int, direct: tuple[list[tuple[ir.Function, int]], bool] | None = None,
                transpose_b: bool = False) -> ir.Function:
    """Task: pack this thread's A blocks and run the microkernel over its share of C's tiles.

    `direct` = (micros, transpose_a) when a_ctx is a plain matrix (A, lda), micros as `_call_micro`
    takes them: then an A of at most DIRECT_A_BYTES, or of at most KC columns, is not packed but
    read in place, MC rows at a time (they stay in cache while every chunk of B's columns passes),
    since packing (a scalar transpose) costs as much as the arithmetic when N or K is small.
    Measured on one core of an Emerald Rapids Xeon, both variants in one process, alternating
    (GFLOP/s, packed -> in place):
    6400x128 @ 128x512 127 -> 139, 4096x512 @ 512x512 144 -> 158, 256x784 @ 784x128, 1024^3 and
    2048^3 within 1%."""
    ptr = ty.as_pointer()
    b, v = tiles_task(module, name, ty, t, n_epi)
    m0, m1, n0, n1 = v["m0"], v["m1"], v["n0"], v["n1"]
    n, k0, k1, bp, c, ldc = v["n"], v["k0"], v["k1"], v["bp"], v["c"], v["ldc"]
    k_part = b.sub(k1, k0)
    np_ = b.mul(gemm.ceil_div(b, n, t.nr), const(t.nr))
    _, free = gemm.libc(module)
    # no bigger than this share needs: a small buffer comes from the heap, not a fresh mmap
    share_rows = b.sub(m1, m0)
    share_rows = b.select(b.icmp_signed(">", share_rows, const(0)), share_rows, const(0))
    block_rows = b.mul(gemm.ceil_div(b, gemm.smin(b, const(t.mc), share_rows), t.mr), const(t.mr))
    local = b.icmp_unsigned("==", bp, ir.Constant(ptr, None))
    depth = b.select(local, gemm.block_depth(b, t, k_part, t.kc_own), gemm.block_depth(b, t, k_part))
    ap_bytes = b.mul(b.mul(block_rows, depth), const(t.itemsize))
    blocks = gemm.ceil_div(b, b.select(b.icmp_signed(">", k_part, const(0)), k_part, const(1)), depth)
    own_width = const(t.nr if transpose_b else t.nc_own)

    def run_block(pc: ir.Value, kc: ir.Value, ic: ir.Value, mc: ir.Value, a_tile: Callable, call,
                  own_block: ir.Value | None = None) -> None:
        """The tiles of one block of A's rows, NC columns at a time: each MR-row panel of A, in L1,
        passes over the chunk's B panels, in L2, and writes C a row strip at a time (column panels
        outermost, 6400x128 @ 128x1024 and 2048^3 were 12-20% slower on 2 cores: every tile read
        A and a KC x NR panel of B from L2 and wrote C 12 rows apart).
        When bp is null (only where A is packed too: `_pack_b_unless_local`) the chunk's panels
        are packed here into `own_block` just before its tiles read them: NC_own columns of a row-
        major B at a time, each row of B read once from start to end (a panel at a time, each read
        took a cache line or two of every row of B, which the hardware prefetcher followed late:
        the LSTM's weight gradients, 128 x 6400 @ 6400 x 512, on an Emerald Rapids Xeon, 2 threads,
        282-288 -> 302-324 GFLOP/s); a transposed B's columns, sequential in memory, a panel at a
        time."""
        first = b.icmp_signed("==", pc, k0)
        last = b.icmp_signed(">=", b.add(pc, depth), k1)
        width = const(t.nc) if own_block is None else b.select(local, own_width, const(t.nc))
        with for_range(b, n1, n0, step=width, name="jc") as jc:
            chunk_end = gemm.smin(b, n1, b.add(jc, width))
            if own_block is not None:
                with b.if_then(local):
                    if transpose_b:
                        gemm_pack.pack_b_panel(b, t, [v["src_b"], v["ldb"], n, jc, pc, kc], own_block, transpose_b)
                    else:
                        gemm_pack.pack_b_columns(b, t, [v["src_b"], v["ldb"], n, jc, chunk_end, pc, kc], own_block)
            with for_range(b, mc, step=t.mr, name="ir") as ir_:
                rows = gemm.smin(b, const(t.mr), b.sub(mc, ir_))
                row = b.add(ic, ir_)
                a_panel = a_tile(ir_, row)
                with for_range(b, chunk_end, jc, step=t.nr, name="jr") as jr:
                    cols = gemm.smin(b, const(t.nr), b.sub(n, jr))
                    b_panel = gemm.at(b, bp, b.add(b.mul(pc, np_), b.mul(jr, kc)))
                    if own_block is not None:
                        b_panel = b.select(local, gemm.at(b, own_block, b.mul(b.sub(jr, jc), kc)), b_panel)
                    args = [kc, a_panel, b_panel, gemm.at(b, c, b.add(b.mul(row, ldc), jr)), ldc,
                            rows, cols, first, last, row, b.add(v["col0"], jr)] + v["eptrs"] + call[1]
                    _call_micro(b, call[0], rows, args)

    def packed() -> None:
        ap = gemm.alloc_aligned(b, ptr, ap_bytes)
        share_columns = b.mul(gemm.ceil_div(b, b.sub(n1, n0), t.nr), const(t.nr))   # no more than its share
        block_columns = gemm.smin(b, own_width, b.select(b.icmp_signed(">", share_columns, const(0)),
                                                         share_columns, const(t.nr)))
        panel_bytes = b.select(local, b.mul(b.mul(depth, block_columns), const(t.itemsize)), const(64))
        own_block = gemm.alloc_aligned(b, ptr, panel_bytes)
        with for_range(b, blocks, name="pc") as block:
            pc = b.add(k0, b.mul(block, depth))
            kc = gemm.smin(b, depth, b.sub(k1, pc))
            with for_range(b, m1, m0, step=t.mc, name="ic") as ic:
                mc = gemm.smin(b, const(t.mc), b.sub(m1, ic))
                pack_a(b, t, v["a_ctx"], ap, ic, mc, pc, kc)
                run_block(pc, kc, ic, mc, lambda ir_, row: gemm.at(b, ap, b.mul(ir_, kc)), ([(micro, t.mr)], []),
                          own_block)
        b.call(free, [b.bitcast(ap, i8p)])
        b.call(free, [b.bitcast(own_block, i8p)])

    if direct is None:
        packed()
    else:
        micros_direct, transpose_a = direct
        a, lda = gemm.unpack_fields(b, v["a_ctx"], [ptr, i64])
        rs, ks = (const(1), lda) if transpose_a else (lda, const(1))
        with b.if_else(_reads_a_in_place(b, t, v["m"], v["k"])) as (then, otherwise):
            with then:
                with for_range(b, blocks, name="dpc") as block:
                    pc = b.add(k0, b.mul(block, depth))
                    kc = gemm.smin(b, depth, b.sub(k1, pc))
                    a_at = lambda ir_, row: gemm.at(b, a, b.add(b.mul(row, rs), b.mul(pc, ks)))   # noqa: E731
                    with for_range(b, m1, m0, step=t.mc, name="dic") as ic:
                        mc = gemm.smin(b, const(t.mc), b.sub(m1, ic))
                        run_block(pc, kc, ic, mc, a_at, (micros_direct, [rs, ks]))
            with otherwise:
                packed()
    b.ret_void()
    return b.function


def _call_micro(b: ir.IRBuilder, micros: list[tuple[ir.Function, int]], rows: ir.Value,
                args: list[ir.Value]) -> None:
    """Call the microkernel for a tile of `rows` rows: micros are (function, its rows), the full
    one first; a second, for tiles of at most its fewer rows, spares the FMAs of the rows a last
    tile does not have (a recurrent step's block of 32 rows at batch 64 is 12 + 12 + 8 rows:
    the tutorial's Embedding -> LSTM(128) at batch 64, 5.72-5.92 -> 5.17-5.45 ms a call)."""
    (full, _), *shorter = micros
    if not shorter:
        b.call(full, args)
        return
    short, short_rows = shorter[0]
    with b.if_else(b.icmp_signed("<=", rows, const(short_rows))) as (then, otherwise):
        with then:
            b.call(short, args)
        with otherwise:
            b.call(full, args)


def emit_gemm_driver(module: ir.Module, name: str, dtype: DType, pack_a: gemm.PackA, *,
                     transpose_b: bool = False, epilogue: gemm.Epilogue | None = None,
                     transpose_a: bool | None = None, prepacked: bool = False) -> ir.Function:
    """The blocked float GEMM with a pluggable A packer (see `emit_driver` for its signature).

    `transpose_a` not None says a_ctx is a plain matrix (A, lda), so a small A may be read in place."""
    ty, t = scalar_type(dtype), gemm.tiling(dtype)
    n_epi = len(epilogue.operands) if epilogue else 0
    micro = gemm.emit_micro(module, name, ty, t, epilogue)
    short = dataclasses.replace(t, mr=t.mr * 2 // 3)
    direct = None if transpose_a is None else \
        ([(gemm.emit_micro(module, name, ty, t, epilogue, True, min_rows=short.mr + 1), t.mr),
          (gemm.emit_micro(module, name, ty, short, epilogue, True, suffix=str(short.mr)), short.mr)], transpose_a)
    tiles = _emit_tiles(module, name, ty, t, pack_a, micro, n_epi, direct, transpose_b)

    def packs_a(b: ir.IRBuilder, m: ir.Value, k: ir.Value) -> ir.Value:
        return ir.Constant(i1, 1) if direct is None else b.not_(_reads_a_in_place(b, t, m, k))
    return emit_driver(module, name, dtype, t, tiles, transpose_b=transpose_b, n_epi=n_epi, prepacked=prepacked,
                       packs_a=packs_a, splits_k=epilogue is None and not prepacked)


def _reads_a_in_place(b: ir.IRBuilder, t: gemm.Tiling, m: ir.Value, k: ir.Value) -> ir.Value:
    """Whether the tiles read a plain A in place: at most DIRECT_A_BYTES, or at most KC columns."""
    small = b.icmp_signed("<=", b.mul(b.mul(m, k), const(t.itemsize)), const(gemm.DIRECT_A_BYTES))
    return b.or_(small, b.icmp_signed("<=", k, const(t.kc)))


def emit_driver(module: ir.Module, name: str, dtype: DType, t: gemm.Tiling, tiles: ir.Function, *,
                transpose_b: bool = False, n_epi: int = 0, prepacked: bool = False,
                packs_a: Callable[[ir.IRBuilder, ir.Value, ir.Value], ir.Value] | None = None,
                splits_k: bool = False) -> ir.Function:
    """An internal function that cuts C between the threads and runs the `tiles` task over it:

    `void name.driver(i64 M, i64 N, i64 K, T* B, i64 ldb, T* C, i64 ldc, i64 col0, i8* a_ctx, T* e...)`
    col0 offsets the epilogue operands' columns (C's own pointer is already offset); a_ctx is
    passed on to the tiles task, whose argument block is TILE_FIELDS. `prepacked`: one more
    argument last, `T* bp`, B as `emit_pack_b` packed it, which is used instead of packing B.
    `packs_a(b, M, K)`: whether the tiles pack A (None: never). A task that takes a chunk of
    C's columns packs all of A's rows, so C's columns are then cut into one chunk per thread, not
    CHUNKS_PER_THREAD: a weight gradient (128 x 6400 @ 6400 x 512) packed A 8 times, which cost
    half as much as its arithmetic. B is packed here, or by the tiles a block of panels at a time
    (`_pack_b_unless_local`). `splits_k` (tiles with no epilogue): a deep product whose A is one
    block may give each thread a share of K instead (`_shares_k`)."""
    ty = scalar_type(dtype)
    ptr = ty.as_pointer()
    run = parallel.emit_parallel_for(module)
    _, free = gemm.libc(module)
    threads = parallel.num_threads()

    fn = gemm.new_function(module, f"{name}.driver", [i64, i64, i64, ptr, i64, ptr, i64, i64, i8p]
                           + [ptr] * n_epi + [ptr] * prepacked)
    m, n, k, src_b, ldb, c, ldc, col0, a_ctx, *eptrs = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    panels = gemm.ceil_div(b, n, t.nr)
    big = b.icmp_signed(">=", b.mul(b.mul(m, n), k), const(gemm.PARALLEL_WORK))
    chunks = const(threads * gemm.CHUNKS_PER_THREAD)
    row_tiles = gemm.ceil_div(b, m, t.mr)
    by_rows = b.icmp_signed(">=", row_tiles, gemm.smin(b, panels, chunks))
    # A few row tiles that the threads cannot share evenly (11 for 128 rows: 6 + 5) while the
    # column panels split exactly: split the columns (measured 68 -> 60 us at 128x784x128).
    uneven_rows = b.and_(b.icmp_signed("<", row_tiles, const(threads * (t.mc // t.mr))),
                         b.icmp_signed("!=", b.srem(row_tiles, const(threads)), const(0)))
    even_panels = b.and_(b.icmp_signed(">=", panels, const(threads)),
                         b.icmp_signed("==", b.srem(panels, const(threads)), const(0)))
    by_rows = b.and_(by_rows, b.not_(b.and_(uneven_rows, even_panels)))
    # row chunks of about MC rows, a multiple of the threads: each packed B panel then serves
    # ~MC/MR tiles per load (smaller chunks balance better but re-read B from L3 more often).
    # Below MID_WORK, one chunk per thread: the caller takes the first, the worker the second, so
    # each thread writes the same rows of C on every call and keeps them in its own L2
    whole_blocks = b.select(b.icmp_signed("<", b.mul(b.mul(m, n), k), const(gemm.MID_WORK)), const(threads),
                            b.mul(gemm.ceil_div(b, row_tiles, threads * (t.mc // t.mr)), const(threads)))
    tiles_pack_a = ir.Constant(i1, 0) if packs_a is None else packs_a(b, m, k)
    split_k = const(1)
    if splits_k and threads > 1:
        split_k = b.select(b.and_(big, _shares_k(b, t, threads, tiles_pack_a, (m, n, k))), const(threads), split_k)
    whole = b.icmp_signed("==", split_k, const(1))
    split_m = b.select(b.and_(b.and_(big, by_rows), whole), gemm.smin(b, row_tiles, whole_blocks), const(1))
    column_chunks = b.select(tiles_pack_a, const(threads), chunks)
    split_n = b.select(b.and_(b.and_(big, b.not_(by_rows)), whole), gemm.smin(b, panels, column_chunks), const(1))
    if prepacked:
        bp = eptrs.pop()
    else:
        in_place = ir.Constant(i1, 0) if transpose_b else _packed_already(b, t, n, src_b, ldb)
        local = b.and_(b.not_(in_place), b.and_(tiles_pack_a, b.and_(b.icmp_signed("==", split_m, const(1)),
                                                                     b.icmp_signed("<=", m, const(t.mc)))))
        bp = _pack_b_unless_local(b, module, name, ptr, t, (n, k, src_b, ldb), local, big, transpose_b, in_place)
    partials = _alloc_partials(b, ptr, t, (m, n), split_k)
    fields = gemm.pack_fields(b, [m, n, k, bp, c, ldc, col0, a_ctx, split_n, src_b, ldb, split_k, partials] + eptrs)
    b.call(run, [tiles, fields, b.mul(b.mul(split_m, split_n), split_k)])
    _add_partials(b, t, (m, n, c, ldc), partials, b.sub(split_k, const(1)))
    b.call(free, [b.bitcast(partials, i8p)])
    if not prepacked:
        with b.if_then(b.icmp_unsigned("!=", bp, src_b)):
            b.call(free, [b.bitcast(bp, i8p)])
    b.ret_void()
    return fn


def _packed_already(b: ir.IRBuilder, t: gemm.Tiling, n: ir.Value, src_b: ir.Value, ldb: ir.Value) -> ir.Value:
    """Whether a row-major B is its own packing: one whole panel (N = NR) of rows NR apart, on
    64 bytes as the microkernels' aligned loads need. A filter gradient over 32 output channels
    reads its chunk of dY so, and a Dense layer's of 32 units its dY."""
    aligned = b.icmp_unsigned("==", b.and_(b.ptrtoint(src_b, i64), const(63)), const(0))
    one_panel = b.and_(b.icmp_signed("==", n, const(t.nr)), b.icmp_signed("==", ldb, const(t.nr)))
    return b.and_(one_panel, aligned)


def _shares_k(b: ir.IRBuilder, t: gemm.Tiling, threads: int, tiles_pack_a: ir.Value, shape: tuple) -> ir.Value:
    """Whether the threads share K rather than C: when the tiles pack A, A is one block (M <= MC),
    C is no bigger than an A block and K gives each thread two KC blocks or more. Cut by columns,
    every thread would pack all of A; cut by K, each packs its part of A and of B once, and the
    driver adds the threads' partial C's (the LSTM's weight gradients 128 x 6400 @ 6400 x 512)."""
    m, n, k = shape
    deep = b.icmp_signed(">=", k, const(2 * threads * t.kc))
    small_c = b.icmp_signed("<=", b.mul(m, n), const(t.mc * t.kc))
    one_block = b.icmp_signed("<=", m, const(t.mc))
    return b.and_(tiles_pack_a, b.and_(deep, b.and_(small_c, one_block)))


def _alloc_partials(b: ir.IRBuilder, ptr: ir.Type, t: gemm.Tiling, shape: tuple, split_k: ir.Value) -> ir.Value:
    """split_k - 1 blocks of M x N for the partial sums of the threads that share K, or null."""
    m, n = shape
    slot = gemm.entry_alloca(b, ptr)
    b.store(ir.Constant(ptr, None), slot)
    with b.if_then(b.icmp_signed(">", split_k, const(1))):
        b.store(gemm.alloc_aligned(b, ptr, b.mul(b.mul(b.sub(split_k, const(1)), b.mul(m, n)), const(t.itemsize))),
                slot)
    return b.load(slot)


def _add_partials(b: ir.IRBuilder, t: gemm.Tiling, c_view: tuple, partials: ir.Value, count: ir.Value) -> None:
    """C (M x N, row stride ldc) += each of the `count` M x N blocks of `partials`."""
    m, n, c, ldc = c_view
    with for_range(b, count, name="part") as part, for_range(b, m, name="row") as row, \
            for_range(b, n, step=t.lanes, name="col") as col:
        block = gemm.at(b, partials, b.mul(part, b.mul(m, n)))
        mask = simd.lane_mask(b, b.sub(n, col), t.lanes)
        into = gemm.at(b, c, b.add(b.mul(row, ldc), col))
        add = simd.masked_load(b, gemm.at(b, block, b.add(b.mul(row, n), col)), mask)
        simd.masked_store(b, b.fadd(simd.masked_load(b, into, mask), add), into, mask)


def _pack_b_unless_local(b: ir.IRBuilder, module: ir.Module, name: str, ptr: ir.Type, t: gemm.Tiling,
                         operand: tuple, local: ir.Value, big: ir.Value, transpose_b: bool,
                         in_place: ir.Value) -> ir.Value:
    """B (operand = N, K, B, ldb) packed into a new buffer shared by the tiles tasks (by both
    threads when the product is `big`); B itself when `in_place` (`_packed_already`); or null when `local`, each task then packing the panels
    it reads itself, a block of them at a time, just before its microkernels read them. The driver says
    local when the tiles pack A, C's rows are not split and they are one A block: each panel is
    then read by one A block of one task, so a shared packing only adds a write and a read of
    all of B in memory (a weight gradient 128 x 6400 @ 6400 x 512, whose B is 13 MB: 5.5-5.8 ->
    4.0 ms on 2 cores).
    Tasks that pack locally get B itself (`TILE_FIELDS`' b and ldb)."""
    n, k, src_b, ldb = operand
    slot = gemm.entry_alloca(b, ptr)
    b.store(b.select(in_place, src_b, ir.Constant(ptr, None)), slot)
    with b.if_then(b.not_(b.or_(local, in_place))):
        bp = gemm.alloc_aligned(b, ptr, gemm_pack.packed_bytes(b, t, n, k))
        pack_b = gemm_pack.pack_b_task(module, name, bp.type.pointee, t, transpose_b)
        chunks = b.select(big, const(parallel.num_threads() * gemm.CHUNKS_PER_THREAD), const(1))
        gemm_pack.run_pack_b(b, module, pack_b, t, [src_b, ldb, n, k, bp], chunks)
        b.store(bp, slot)
    return b.load(slot)

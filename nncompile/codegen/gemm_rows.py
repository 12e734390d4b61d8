"""Products with a few rows of A (batch-1 inference, a recurrent layer's step): no packing.

B's rows are streamed once with all of A's rows in registers (up to SMALL_M rows, one
specialized loop each). A B packed once before a loop (`gemm_pack.emit_pack_b`: a recurrent
step's weights) is read in its panels instead: a few sequential streams, which the prefetchers
follow better than rows a whole row of B apart. One row of A times a B of at least ROW_SPLIT_BYTES is split by columns
between the threads: each streams its part of B from its own cache, where one thread would read
all of it from L2 at best, at every call. `gemm.emit_gemm` calls `emit_few_rows` first.
"""
from __future__ import annotations

from llvmlite import ir

from nncompile.codegen import gemm, parallel, simd
from nncompile.codegen.kernel import scalar_type
from nncompile.codegen.loops import const, for_range
from nncompile.ir.dtypes import DType

i64 = ir.IntType(64)
SMALL_M = 4                  # up to this many rows of A skip packing
ROW_SPLIT_BYTES = 1 << 18    # a B from this size is shared between the threads for one row of A


def static_rows(rows: int | None, transpose_b: bool) -> int | None:
    """M when it is static and this module's path for few rows takes it, else None."""
    return rows if rows is not None and rows <= SMALL_M and not transpose_b else None


def emit_few_rows(b: ir.IRBuilder, module: ir.Module, name: str, dtype: DType, args: list[ir.Value],
                  transpose_a: bool, epilogue: gemm.Epilogue | None, packed: ir.Value | None = None,
                  known_m: int | None = None) -> None:
    """Return early from the GEMM being emitted when A has at most SMALL_M rows. `packed`: B as
    `emit_pack_b` packed it, read instead of B. `known_m`: M, when static (only the path of
    that M is emitted)."""
    m = args[0]
    if known_m in (None, 1):
        _parallel_row(b, module, name, dtype, args, transpose_a, epilogue, packed)
    for rows in range(1, SMALL_M + 1) if known_m is None else [known_m]:
        with b.if_then(b.icmp_signed("==", m, const(rows))):
            emit_small_m(b, scalar_type(dtype), gemm.tiling(dtype), rows, args, transpose_a, epilogue,
                         packed=packed)
            b.ret_void()


def emit_small_m(b: ir.IRBuilder, ty: ir.Type, t: gemm.Tiling, rows: int, args: list[ir.Value],
                 transpose_a: bool, epilogue: gemm.Epilogue | None,
                 columns: tuple[ir.Value, ir.Value] | None = None, packed: ir.Value | None = None) -> None:
    """C = A @ B for exactly `rows` rows of A: each row of B is loaded once for all of them.
    `columns` (start, stop): only those columns of C (a thread's share), a multiple of the lanes
    apart. `packed`: B's packed panels, read instead of B. The columns go in chunks of the
    widest register block first, then of ever narrower ones (halving) for what is left, so that
    a narrow product (a recurrent step's block of units) does not compute masked lanes."""
    lanes = t.lanes
    widest = max(1, 8 // rows)          # accumulators: rows x vectors <= 8 keeps B loads the bottleneck
    plan = sorted({max(1, widest >> i) for i in range(widest.bit_length())}, reverse=True)
    start, stop = columns if columns is not None else (const(0), args[1])
    col = start
    for vectors in plan[:-1]:      # whole chunks only
        width = lanes * vectors
        chunks = b.sdiv(b.sub(stop, col), const(width))
        with for_range(b, chunks, name="sw") as j:
            _chunk(b, ty, t, rows, args, transpose_a, epilogue, packed, b.add(col, b.mul(j, const(width))),
                   vectors, const(width))
        col = b.add(col, b.mul(chunks, const(width)))
    width = lanes * plan[-1]
    with for_range(b, stop, col, step=width, name="sn") as n0:
        _chunk(b, ty, t, rows, args, transpose_a, epilogue, packed, n0, plan[-1], gemm.smin(b, const(width), b.sub(stop, n0)))


def _chunk(b: ir.IRBuilder, ty: ir.Type, t: gemm.Tiling, rows: int, args: list[ir.Value], transpose_a: bool,
           epilogue: gemm.Epilogue | None, packed: ir.Value | None, n0: ir.Value, vectors: int,
           cols: ir.Value) -> None:
    """Columns n0 .. n0 + cols (at most `vectors` vectors) of C for the `rows` rows."""
    m, n, k, a, lda, src_b, ldb, c, ldc, *eptrs = args
    lanes = t.lanes
    vec = ir.VectorType(ty, lanes)
    masks = [simd.lane_mask(b, cols, lanes, v * lanes) for v in range(vectors)]
    slots = [[gemm.entry_alloca(b, vec) for _ in range(vectors)] for _ in range(rows)]
    for slot in (s for row in slots for s in row):
        b.store(gemm.zero(vec), slot)

    def step(kk: ir.Value, b_at: list[ir.Value]) -> None:
        b_vecs = [simd.masked_load(b, at, mask) for at, mask in zip(b_at, masks)]
        for r in range(rows):
            index = b.add(b.mul(kk, lda), const(r)) if transpose_a else b.add(b.mul(const(r), lda), kk)
            a_vec = simd.splat(b, b.load(gemm.at(b, a, index)), lanes)
            for slot, bv in zip(slots[r], b_vecs):
                b.store(simd.fma(b, a_vec, bv, b.load(slot)), slot)

    if packed is None:
        with for_range(b, k, name="sk") as kk:
            b_row = gemm.at(b, src_b, b.add(b.mul(kk, ldb), n0))
            step(kk, [gemm.at(b, b_row, v * lanes) for v in range(vectors)])
    else:
        _packed_steps(b, t, packed, n, k, [b.add(n0, const(v * lanes)) for v in range(vectors)], step)
    accs = [[b.load(slot) for slot in row] for row in slots]
    gemm.store_tile(b, accs, gemm.at(b, c, n0), ldc, rows, cols, True, True, const(0), n0, epilogue, eptrs)


def _packed_steps(b: ir.IRBuilder, t: gemm.Tiling, packed: ir.Value, n: ir.Value, k: ir.Value,
                  columns: list[ir.Value], step) -> None:
    """Call step(kk, addresses of B[kk, col .. col + lanes) for each col of `columns`) for every
    depth kk, B in `emit_pack_b`'s layout: KC blocks, in each an NR-wide k-major panel per NR
    columns (see gemm_pack)."""
    depth = gemm.block_depth(b, t, k)
    padded = b.mul(gemm.ceil_div(b, n, t.nr), const(t.nr))
    with for_range(b, gemm.ceil_div(b, k, depth), name="sb") as block:
        pc = b.mul(block, depth)
        kc = gemm.smin(b, depth, b.sub(k, pc))
        block_at = gemm.at(b, packed, b.mul(pc, padded))
        starts = [gemm.at(b, block_at, b.add(b.mul(b.mul(b.sdiv(col, const(t.nr)), kc), const(t.nr)),
                                             b.srem(col, const(t.nr)))) for col in columns]
        with for_range(b, kc, name="sk") as kk:
            step(b.add(pc, kk), [gemm.at(b, at, b.mul(kk, const(t.nr))) for at in starts])


def _one_row_task(module: ir.Module, name: str, ty: ir.Type, t: gemm.Tiling, transpose_a: bool,
                  epilogue: gemm.Epilogue | None, packed: bool) -> ir.Function:
    """Task: one row of A times B over this thread's share of B's columns (whole vectors)."""
    ptr = ty.as_pointer()
    n_epi = len(epilogue.operands) if epilogue else 0
    fn, b, ctx, index, count = parallel.task_function(module, f"{name}.row")
    args = gemm.unpack_fields(b, ctx, [i64, i64, i64, ptr, i64, ptr, i64, ptr, i64] + [ptr] * (n_epi + packed))
    bp = args.pop() if packed else None
    n = args[1]
    share = b.mul(gemm.ceil_div(b, gemm.ceil_div(b, n, t.lanes), count), const(t.lanes))
    start = b.mul(index, share)
    emit_small_m(b, ty, t, 1, args, transpose_a, epilogue, (start, gemm.smin(b, n, b.add(start, share))), bp)
    b.ret_void()
    return fn


def _parallel_row(b: ir.IRBuilder, module: ir.Module, name: str, dtype: DType, args: list[ir.Value],
                  transpose_a: bool, epilogue: gemm.Epilogue | None, packed: ir.Value | None) -> None:
    """One row of A (batch-1 inference, a recurrent step) times a B of at least ROW_SPLIT_BYTES:
    the columns are split between the threads, each streaming its part of B from its own cache
    (one thread would read all of B, from L2 at best, at every call)."""
    m, n, k = args[:3]
    ty, t = scalar_type(dtype), gemm.tiling(dtype)
    big = b.icmp_signed(">=", b.mul(b.mul(n, k), const(t.itemsize)), const(ROW_SPLIT_BYTES))
    with b.if_then(b.and_(b.icmp_signed("==", m, const(1)), big)):
        task = _one_row_task(module, name, ty, t, transpose_a, epilogue, packed is not None)
        tasks = gemm.smin(b, gemm.ceil_div(b, n, t.lanes * 2), const(parallel.num_threads()))
        fields = gemm.pack_fields(b, args + ([packed] if packed is not None else []))
        b.call(parallel.emit_parallel_for(module), [task, fields, tasks])
        b.ret_void()

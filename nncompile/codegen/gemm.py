"""GEMM: C = epilogue(A @ B) as LLVM IR, with packing, cache blocking and a register-tiled microkernel.

The float path follows BLIS. B is packed once per call into column panels NR wide (zero-padded),
split into row blocks of KC (or kc_own x nc_own at a time by the thread that reads it, a panel at
a time when B is transposed, when only one block of A's rows reads each panel: `gemm_driver.py`); each thread then packs its rows of A, MC at
a time, into panels of MR rows stored k-major, and runs the microkernel over every (MR x NR) tile:
MR x NR/lanes vector accumulators live in registers for the whole KC loop, fed by one broadcast of
A and NR/lanes vector loads of B per k. The packed A block and the NC columns of B panels in use
stay in L2, the A panel of a row of tiles in L1 (`blocking.py`).
Ragged edges are computed as full tiles on the zero padding and stored with lane masks, so there
is no scalar edge code; an A read in place has a microkernel of 2/3 the rows for the last tile
of a few rows. The epilogue runs in registers on the last KC block just before C is stored.

Threads: packing B and the tiles are two `parallel_for` jobs (the join between them is the only
barrier; one job when the tiles pack B's panels themselves); the tiles split into chunks of about MC rows of C (a multiple of the thread count; below
MID_WORK one chunk per thread), or of column panels when C has few rows, or of K when C is small
and K deep (a weight gradient: each thread sums its part of K, the driver adds the parts). Below
PARALLEL_WORK everything runs on the calling thread.

K is split into equal blocks of at most KC. An A of at most DIRECT_A_BYTES or of at most KC columns
is not packed: a second microkernel reads it in place, MC rows at a time (packing is a scalar
transpose that cost as much as the arithmetic at model shapes such as 256x784 @ 784x128).

Small M (batch-1 inference, a recurrent step): no packing at all (`gemm_rows.py`). Small N (<= SKINNY_N): the kernels of `gemm_skinny.py`. Integer dtypes use a plain
loop nest.

The layers are reusable: `gemm_driver.emit_driver` packs B and runs any tiles task
(`gemm_driver.tiles_task` starts one), `store_tile` does masks, accumulation and the epilogue;
conv.py builds its convolution from them.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Sequence

from llvmlite import ir

from nncompile.codegen import blocking, gemm_driver, gemm_pack, gemm_rows, gemm_skinny, simd, target
from nncompile.codegen.kernel import scalar_type
from nncompile.codegen.loops import as_i64, const, for_range
from nncompile.ir.dtypes import DType
from nncompile.ir.errors import IRError

i1 = ir.IntType(1)
i8p = ir.IntType(8).as_pointer()
i64 = ir.IntType(64)
void = ir.VoidType()

CHUNKS_PER_THREAD = 4       # column chunks per thread: a core lost to another process costs a chunk
SKINNY_N = 16               # up to this many columns of B (and a row-major A): vectorize over K
DIRECT_A_BYTES = 1 << 20     # an A up to this size is read in place, not packed
PARALLEL_WORK = 1 << 17     # M*N*K from which both cores pay off (measured: 2 threads win from ~48^3)
MID_WORK = 1 << 25          # M*N*K below which C's rows are split into just one chunk per thread


@dataclass(frozen=True)
class Epilogue:
    """What GEMM applies to each result in registers before storing it.

    operands: per extra pointer argument e_i, its (row stride, col stride) in elements; a stride of
    0 broadcasts along that axis (bias: (0, 1); residual (M, N): (N, 1); per-row: (1, 0); scalar: (0, 0));
    a row stride of LDC is C's (a residual read by a library kernel, whose N is an argument).
    apply: (builder, acc, operand values) -> result; values are vectors of one tile row's lanes,
    or scalars on a scalar path, so element rules written for both work as they are.
    """
    operands: tuple[tuple[int, int], ...]
    apply: Callable[[ir.IRBuilder, ir.Value, list[ir.Value]], ir.Value] | None


LDC = -1
TILE_CALL = Epilogue(((0, 0), (0, 0)), None)
"""The epilogue of the host library's GEMMs (`codegen/library.py`): its two operands are a tile
function (`tile_type`) and that function's context, passed as T*s; each finished tile of C is
stored as it is and then handed to tile(ctx, &C[row, col], ldc, row, col, rows, cols)."""


def tile_type(ty: ir.Type) -> ir.FunctionType:
    """void tile(i8* ctx, T* c, i64 ldc, i64 row, i64 col, i64 rows, i64 cols)."""
    return ir.FunctionType(void, [i8p, ty.as_pointer(), i64, i64, i64, i64, i64])


def call_tile(b: ir.IRBuilder, eptrs: Sequence[ir.Value], c: ir.Value, ldc: ir.Value, row: ir.Value,
              col: ir.Value, rows: int | ir.Value, cols: ir.Value) -> None:
    """Call the tile function of a `TILE_CALL` epilogue on the stored tile at `c`."""
    fn = b.bitcast(eptrs[0], tile_type(c.type.pointee).as_pointer())
    b.call(fn, [b.bitcast(eptrs[1], i8p), c, ldc, row, col, as_i64(rows), cols])


@dataclass(frozen=True)
class Tiling:
    """Register and cache blocking for one dtype on the host."""
    itemsize: int     # bytes per element
    lanes: int        # elements per vector register
    mr: int           # rows of the register tile
    nr_vectors: int   # vectors across the register tile
    kc: int           # depth of a packed block
    mc: int           # rows of a packed A block
    nc: int           # columns of the B panels a row of tiles passes over (a multiple of NR)
    kc_own: int       # depth of a block of B the task packs itself
    nc_own: int       # columns of such a block

    @property
    def nr(self) -> int:
        return self.lanes * self.nr_vectors


def register_tile(wide: bool = False) -> tuple[int, int]:
    """(MR, vectors across NR) of the microkernel: its accumulators, the B vectors of a k step and
    a broadcast of A fit the vector registers: 12 x 2 (24 + 2 + 1 of 32 zmm) with AVX-512, 6 x 2
    (12 + 2 + 1 of 16) on AVX2 and SSE (BLIS's Haswell kernel is 6 x 16 f32). `wide`: the same
    accumulators as 6 x 4 with AVX-512, half the broadcasts per FMA (the convolution's, whose
    broadcasts are its costly loads: `gemm_pack.conv_tiling`)."""
    if target.vector_registers() >= 32:
        return (6, 4) if wide else (12, 2)
    return (6, 2)


def tiling(dtype: DType) -> Tiling:
    """The register tile for the host's vectors and KC, MC from its caches or its tuning
    (`blocking.choose`: on Zen 5 KC 768, MC 144 f32, as measured best there)."""
    lanes = target.vector_lanes(dtype.itemsize)
    mr, nr_vectors = register_tile()
    chosen = blocking.choose(dtype.itemsize, mr, lanes * nr_vectors)
    nr = lanes * nr_vectors
    kc_own = min(blocking.own_panel_depth(dtype.itemsize, nr), chosen.kc)
    return Tiling(itemsize=dtype.itemsize, lanes=lanes, mr=mr, nr_vectors=nr_vectors, kc=chosen.kc, mc=chosen.mc,
                  nc=blocking.columns(chosen.kc, dtype.itemsize, nr),
                  kc_own=kc_own, nc_own=blocking.columns(kc_own, dtype.itemsize, nr))


def tilings_key() -> str:
    """The blocking of every float dtype, for cache keys: tuned or derived from the host's caches,
    it is not in the package's source, yet the kernels' code and packed layouts depend on it."""
    return repr([tiling(dtype) for dtype in (DType.f32, DType.f64)])


PackA = Callable[[ir.IRBuilder, Tiling, ir.Value, ir.Value, ir.Value, ir.Value, ir.Value, ir.Value], None]
"""pack(b, tiling, a_ctx, ap, m0, mc, k0, kc): write rows m0..m0+mc, depths k0..k0+kc of A to `ap`
as panels of MR rows (the last zero-padded), each stored k-major: ap[p*MR*kc + k*MR + r].
`a_ctx` is the packer's own argument block (see `pack_fields`)."""


# --- small IR helpers ---------------------------------------------------------------------------

def smin(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    """The smaller of two i64s (ints become constants)."""
    x, y = as_i64(x), as_i64(y)
    return b.select(b.icmp_signed("<", x, y), x, y)


def ceil_div(b: ir.IRBuilder, x: ir.Value, y: int | ir.Value) -> ir.Value:
    """x / y rounded up, for x >= 0 and y > 0."""
    y = as_i64(y)
    return b.sdiv(b.add(x, b.sub(y, const(1))), y)


def block_depth(b: ir.IRBuilder, t: Tiling, k: ir.Value, kc: int | None = None) -> ir.Value:
    """The depth of B's packed K blocks: K split evenly into blocks of at most KC (or `kc`; K = 784
    is two blocks of 392, not 768 + 16: a thin block costs a full pass of packing and C updates)."""
    k = b.select(b.icmp_signed(">", k, const(0)), k, const(1))     # K = 0: one empty block
    return ceil_div(b, k, ceil_div(b, k, kc or t.kc))


def at(b: ir.IRBuilder, ptr: ir.Value, offset: ir.Value | int) -> ir.Value:
    """&ptr[offset]."""
    return b.gep(ptr, [as_i64(offset)], inbounds=True)


def entry_alloca(b: ir.IRBuilder, ty: ir.Type) -> ir.Value:
    """An alloca in the entry block, so that loops around the use do not grow the stack."""
    here = b.block
    b.position_at_start(b.function.entry_basic_block)
    slot = b.alloca(ty)
    b.position_at_end(here)
    return slot


def pack_fields(b: ir.IRBuilder, values: Sequence[ir.Value]) -> ir.Value:
    """An argument block for a task: the values (i64s and pointers) stored in a stack array."""
    block = entry_alloca(b, ir.ArrayType(i64, len(values)))
    for i, value in enumerate(values):
        word = b.ptrtoint(value, i64) if isinstance(value.type, ir.PointerType) else value
        b.store(word, b.gep(block, [const(0), const(i)]))
    return b.bitcast(block, i8p)


def unpack_fields(b: ir.IRBuilder, ctx: ir.Value, types: Sequence[ir.Type]) -> list[ir.Value]:
    """The values `pack_fields` stored, given their types in order."""
    words = b.bitcast(ctx, i64.as_pointer())
    out = []
    for i, ty in enumerate(types):
        word = b.load(at(b, words, i))
        out.append(b.inttoptr(word, ty) if isinstance(ty, ir.PointerType) else word)
    return out


def libc(module: ir.Module) -> tuple[ir.Function, ir.Function]:
    """(aligned_alloc, free), declared in `module` (`target.JitModule` links libc)."""
    alloc = simd.intrinsic(module, "aligned_alloc", i8p, [i64, i64])
    free = simd.intrinsic(module, "free", void, [i8p])
    return alloc, free


def alloc_aligned(b: ir.IRBuilder, ptr: ir.Type, nbytes: ir.Value) -> ir.Value:
    """A heap buffer of at least `nbytes`, 64-byte aligned (aligned_alloc wants a multiple of the
    alignment), as a `ptr`; the caller frees it (`libc`)."""
    alloc, _ = libc(b.module)
    return b.bitcast(b.call(alloc, [const(64), b.mul(ceil_div(b, nbytes, 64), const(64))]), ptr)


def new_function(module: ir.Module, name: str, args: Sequence[ir.Type],
                 internal: bool = True, ret: ir.Type = void) -> ir.Function:
    """A function (void unless `ret` says) tuned for the host; internal unless it is an entry point."""
    fn = target.tune(ir.Function(module, ir.FunctionType(ret, list(args)), name))
    if internal:
        fn.linkage = "internal"
    return fn


def zero(ty: ir.Type) -> ir.Constant:
    """0 of a scalar or vector type."""
    return ir.Constant(ty, 0) if isinstance(ty, ir.IntType) else ir.Constant(ty, 0.0)


def add(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    """x + y for integer or float scalars and vectors."""
    element = x.type.element if isinstance(x.type, ir.VectorType) else x.type
    return b.add(x, y) if isinstance(element, ir.IntType) else b.fadd(x, y)


# --- storing a tile: accumulate, epilogue, masks ------------------------------------------------

def operand(b: ir.IRBuilder, ptr: ir.Value, strides: tuple[int, int], row: ir.Value, col: ir.Value,
            lanes: int, valid: ir.Value | None, down: bool = False, ldc: ir.Value | None = None) -> ir.Value:
    """Epilogue operand at (row, col..col+lanes), or at (row..row+lanes, col) when `down`; lanes
    at or past `valid` are never read. `ldc`: C's row stride, for a row stride of LDC."""
    rs, cs = strides
    terms = [index if stride == 1 else b.mul(index, ldc if stride == LDC else const(stride))
             for index, stride in ((row, rs), (col, cs)) if stride]
    base = at(b, ptr, b.add(*terms) if len(terms) == 2 else terms[0] if terms else const(0))
    step = rs if down else cs
    step = ldc if step == LDC else step
    if lanes == 1 or (isinstance(step, int) and step == 0):
        value = b.load(base)
        return value if lanes == 1 else simd.splat(b, value, lanes)
    if isinstance(step, int) and step == 1:
        return simd.masked_load(b, base, simd.lane_mask(b, valid, lanes))
    return simd.masked_gather(b, base, step, simd.lane_mask(b, valid, lanes))


def store_tile(b: ir.IRBuilder, accs: list[list[ir.Value]], c: ir.Value, ldc: ir.Value,
               rows: int | ir.Value, cols: ir.Value, first: bool | ir.Value, last: bool | ir.Value,
               row: ir.Value, col: ir.Value, epilogue: Epilogue | None, eptrs: Sequence[ir.Value]) -> None:
    """Store accs[r][v] (vectors, or scalars when there is one lane) to C[r, v*lanes...].

    Rows at or past `rows` and columns at or past `cols` are skipped. Unless `first`, the tile is
    added to what C holds (vectors only); when `last`, the epilogue is applied at C's
    (row + r, col + ...). `rows`, `first` and `last` may be static or run-time values."""
    lanes = accs[0][0].type.count if isinstance(accs[0][0].type, ir.VectorType) else 1

    def store(acc: ir.Value, ptr: ir.Value, mask: ir.Value | None) -> None:
        if mask is None:
            b.store(acc, ptr)
        else:
            simd.masked_store(b, acc, ptr, mask)

    def emit(apply: bool) -> None:
        for r, row_accs in enumerate(accs):
            present = b.icmp_signed("<", const(r), rows) if isinstance(rows, ir.Value) and r else None
            with b.if_then(present) if present is not None else contextlib.nullcontext():
                c_row = at(b, c, b.mul(const(r), ldc))
                for v, acc in enumerate(row_accs):
                    ptr = at(b, c_row, v * lanes)
                    mask = simd.lane_mask(b, cols, lanes, v * lanes) if lanes > 1 else None
                    if first is not True:
                        partial = b.and_(mask, simd.splat(b, b.not_(first), lanes))
                        acc = add(b, acc, simd.masked_load(b, ptr, partial))
                    if apply:
                        at_row, at_col = b.add(row, const(r)), b.add(col, const(v * lanes))
                        valid = b.sub(cols, const(v * lanes))
                        operands = [operand(b, p, s, at_row, at_col, lanes, valid, ldc=ldc)
                                    for p, s in zip(eptrs, epilogue.operands)]
                        acc = epilogue.apply(b, acc, operands)
                    store(acc, ptr, mask)

    if epilogue is None or last is False:
        emit(False)
    elif epilogue.apply is None:
        emit(False)
        with b.if_then(last) if last is not True else contextlib.nullcontext():
            call_tile(b, eptrs, c, ldc, row, col, rows, cols)
    elif last is True:
        emit(True)
    else:
        with b.if_else(last) as (then, otherwise):
            with then:
                emit(True)
            with otherwise:
                emit(False)


def prefetch_tile(b: ir.IRBuilder, t: Tiling, c: ir.Value, ldc: ir.Value, row: ir.Value, col: ir.Value,
                  epilogue: Epilogue | None, eptrs: Sequence[ir.Value], last: bool | ir.Value = True) -> None:
    """Start fetching the tile's rows of C and, on the `last` K block (the one whose epilogue
    reads them), of every epilogue operand with a row per row of C (a residual): they are far
    apart and needed last, after the k loop. (A ResNet block's residual convolution, 32
    channels at batch 32: 9.38-9.63 -> 9.09-9.31 ms.)"""
    for r in range(t.mr):
        for v in range(t.nr_vectors):
            simd.prefetch(b, at(b, c, b.add(b.mul(const(r), ldc), const(v * t.lanes))), write=True)
    rowed = [(ptr, rs) for ptr, (rs, cs) in zip(eptrs, epilogue.operands if epilogue and epilogue.apply else ())
             if rs != 0 and cs == 1]
    if not rowed or last is False:
        return
    with b.if_then(last) if last is not True else contextlib.nullcontext():
        for ptr, rs in rowed:
            stride = ldc if rs == LDC else const(rs)
            for r in range(t.mr):
                start = at(b, ptr, b.add(b.mul(b.add(row, const(r)), stride), col))
                for v in range(t.nr_vectors):
                    simd.prefetch(b, at(b, start, v * t.lanes))


# --- the microkernel ----------------------------------------------------------------------------

PREFETCH_ROWS = 24
"""How far ahead of its k step the microkernel asks for B's packed panel, in rows: a tile passes
over a whole KC x NR panel (96 KB at KC 768, more than the L1d), and the hardware prefetcher alone
left the FMAs waiting for it. Measured on an Emerald Rapids Xeon, with and without, alternating
(GFLOP/s, median of runs): 2048^3 on one core 151-154 -> 165-172, 512^3 / 2048^3 on two cores
266-314 / 284-327 -> 312-345 / 303-340 (16 to 32 rows alike); the AVX2 path (NNCOMPILE_CPU=avx2),
whose panel row is one cache line, 177-180 -> 188-194 at 2048^3 on two cores."""


def _prefetch_panel(b: ir.IRBuilder, t: Tiling, b_row: ir.Value) -> None:
    """Hint B's panel PREFETCH_ROWS rows past `b_row` into L1, a cache line at a time (past the
    panel's end it is the next panel's start, which the tiles read next, or nothing: a prefetch
    never faults; the address is a plain getelementptr, not an inbounds one, as it may point past
    the buffer)."""
    for offset in range(0, t.nr * t.itemsize, 64):
        simd.prefetch(b, b.gep(b_row, [const(PREFETCH_ROWS * t.nr + offset // t.itemsize)]))


def emit_micro(module: ir.Module, name: str, ty: ir.Type, t: Tiling, epilogue: Epilogue | None,
               direct: bool = False, suffix: str = "", min_rows: int = 1) -> ir.Function:
    """micro(kc, ap, bp, c, ldc, rows, cols, first, last, row, col, e...): one MR x NR tile.

    `direct`: A is read where it lies, not from a packed panel: two more arguments (row stride,
    k stride) follow `e...`, and rows at or past `rows` re-read the last row (never stored). A
    caller that never passes fewer than `min_rows` rows says so: the rows before it are read
    without that clamp, at offsets the k loop need not keep in registers."""
    ptr = ty.as_pointer()
    n_epi = len(epilogue.operands) if epilogue else 0
    strides = [i64, i64] if direct else []
    fn = new_function(module, f"{name}.micro{'_direct' if direct else ''}{suffix}",
                      [i64, ptr, ptr, ptr, i64, i64, i64, i1, i1, i64, i64] + [ptr] * n_epi + strides)
    kc, ap, bp, c, ldc, rows, cols, first, last, row, col, *eptrs = fn.args
    if direct:
        *eptrs, a_rs, a_ks = eptrs
    for p in (ap, bp, c):
        p.add_attribute("noalias")
    vec = ir.VectorType(ty, t.lanes)
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    loop, done = fn.append_basic_block("k"), fn.append_basic_block("store")
    prefetch_tile(b, t, c, ldc, row, col, epilogue, eptrs, last)
    if direct:
        last_row = b.sub(rows, const(1))
        a_rows = [at(b, ap, b.mul(const(r) if r < min_rows else smin(b, const(r), last_row), a_rs))
                  for r in range(t.mr)]
        a_k_stride = a_ks
    else:
        a_rows, a_k_stride = [at(b, ap, r) for r in range(t.mr)], const(t.mr)
    entry = b.block
    b.cbranch(b.icmp_signed(">", kc, const(0)), loop, done)

    b.position_at_end(loop)
    k = b.phi(i64, "k")
    k.add_incoming(const(0), entry)
    phis = [[b.phi(vec) for _ in range(t.nr_vectors)] for _ in range(t.mr)]
    b_row = at(b, bp, b.mul(k, const(t.nr)))
    b_vecs = [simd.load_vector(b, at(b, b_row, v * t.lanes), t.lanes, align=64) for v in range(t.nr_vectors)]
    _prefetch_panel(b, t, b_row)
    nexts = []
    for r, a_row in enumerate(a_rows):
        a = simd.splat(b, b.load(at(b, a_row, b.mul(k, a_k_stride))), t.lanes)
        nexts.append([simd.fma(b, a, bv, phi) for bv, phi in zip(b_vecs, phis[r])])
    k_next = b.add(k, const(1))
    k.add_incoming(k_next, loop)
    for phi_row, next_row in zip(phis, nexts):
        for phi, value in zip(phi_row, next_row):
            phi.add_incoming(zero(vec), entry)
            phi.add_incoming(value, loop)
    b.cbranch(b.icmp_signed("<", k_next, kc), loop, done)

    b.position_at_end(done)
    accs = []
    for next_row in nexts:
        accs.append([])
        for value in next_row:
            acc = b.phi(vec)
            acc.add_incoming(zero(vec), entry)
            acc.add_incoming(value, loop)
            accs[-1].append(acc)
    store_tile(b, accs, c, ldc, rows, cols, first, last, row, col, epilogue, eptrs)
    b.ret_void()
    return fn


# --- GEMM proper: integers, the entry -------------------------------------------------------------

def _emit_loop_nest(b: ir.IRBuilder, dtype: DType, args: list[ir.Value], transpose_a: bool,
                    transpose_b: bool, epilogue: Epilogue | None, columns: int | None = None) -> None:
    """The plain loop nest, for integer dtypes (exact, wrapping like numpy) and products too small
    for packing to pay (see `emit_loop_gemm`): a vector of C's row at a time, `lanes` columns
    (fewer when `columns`, N, is known to be fewer; one is scalar code), summing A[m, k] * B[k, n]
    over k in order, as a scalar loop does, so rounding is the same. A scalar sum per element
    was a chain of dependent adds: 9.5% of a Pima training step for one 8 x 8 weight gradient."""
    m, n, k, a, lda, src_b, ldb, c, ldc, *eptrs = args
    ty = scalar_type(dtype)
    lanes = target.vector_lanes(dtype.itemsize)
    if columns is not None:
        lanes = min(lanes, 1 << (columns - 1).bit_length())
    acc_type = ir.VectorType(ty, lanes) if lanes > 1 else ty
    mul = b.fmul if isinstance(ty, (ir.FloatType, ir.DoubleType)) else b.mul
    slot = entry_alloca(b, acc_type)
    with for_range(b, m, name="m") as row, for_range(b, n, step=lanes, name="n") as col:
        valid = b.sub(n, col)
        mask = simd.lane_mask(b, valid, lanes) if lanes > 1 else None
        b.store(ir.Constant(acc_type, None), slot)
        with for_range(b, k, name="k") as kk:
            a_value = b.load(at(b, a, b.add(b.mul(kk, lda), row) if transpose_a else b.add(b.mul(row, lda), kk)))
            b_at = at(b, src_b, b.add(b.mul(col, ldb), kk) if transpose_b else b.add(b.mul(kk, ldb), col))
            if mask is None:
                product = mul(a_value, b.load(b_at))
            else:
                row_of_b = simd.masked_gather(b, b_at, ldb, mask) if transpose_b else simd.masked_load(b, b_at, mask)
                product = mul(simd.splat(b, a_value, lanes), row_of_b)
            b.store(add(b, b.load(slot), product), slot)
        # the columns of this vector (a tile function is given them, and must get no more)
        store_tile(b, [[b.load(slot)]], at(b, c, b.add(b.mul(row, ldc), col)), ldc, 1, smin(b, valid, lanes),
                   True, True, row, col, epilogue, eptrs)


def emit_gemm(module: ir.Module, name: str, dtype: DType, *, transpose_a: bool = False,
              transpose_b: bool = False, epilogue: Epilogue | None = None,
              prepacked: bool = False, rows: int | None = None) -> ir.Function:
    """Add `void name(i64 M, i64 N, i64 K, T* A, i64 lda, T* B, i64 ldb, T* C, i64 ldc, T* e0, ...)`.

    C[m, n] = epilogue(sum_k A[m, k] * B[k, n]) for row-major A (M x K, or K x M when transpose_a),
    B (K x N, or N x K when transpose_b) and C (M x N); lda/ldb/ldc are row strides in elements.
    K = 0 gives epilogue(0). C must not overlap A, B or an epilogue operand: when K > KC, partial
    sums are stored in C before the epilogue reads its operands. `prepacked`: one more argument
    last, `T* bp`, B packed by `emit_pack_b` (the paths that do not pack read B itself).
    `rows`: M, when the caller knows it: up to gemm_rows.SMALL_M rows (a batch-1 model, a
    recurrent step's block) only the few-rows path is emitted.
    """
    if not (dtype.is_float or dtype.is_int) or dtype is DType.f16:
        raise IRError(f"emit_gemm {name!r}: dtype {dtype} is not supported; "
                      f"expected f32, f64 or an int dtype")
    ty = scalar_type(dtype)
    ptr = ty.as_pointer()
    n_epi = len(epilogue.operands) if epilogue else 0
    fn = new_function(module, name, [i64, i64, i64, ptr, i64, ptr, i64, ptr, i64] + [ptr] * n_epi
                      + [ptr] * prepacked, internal=False)
    args = list(fn.args)
    packed = [args.pop()] if prepacked else []
    m, n, k, a, lda, src_b, ldb, c, ldc, *eptrs = args
    for p in (a, src_b, c):
        p.add_attribute("noalias")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    with b.if_then(b.or_(b.icmp_signed("<=", m, const(0)), b.icmp_signed("<=", n, const(0)))):
        b.ret_void()
    if dtype.is_int:
        _emit_loop_nest(b, dtype, args, transpose_a, transpose_b, epilogue)
        b.ret_void()
        return fn
    if not transpose_b:
        few = gemm_rows.static_rows(rows, transpose_b)
        gemm_rows.emit_few_rows(b, module, name, dtype, args, transpose_a, epilogue, (packed or [None])[0],
                                known_m=few)
        if few is not None:     # the only path a call can take has returned
            b.ret_void()
            return fn
    skinny = (gemm_skinny.emit_skinny_t if transpose_a else gemm_skinny.emit_skinny)(
        module, name, ty, tiling(dtype), transpose_b, epilogue)
    with b.if_then(b.icmp_signed("<=", n, const(SKINNY_N))):
        b.call(skinny, args)
        b.ret_void()
    driver = gemm_driver.emit_gemm_driver(module, name, dtype, gemm_pack.pack_matrix(transpose_a),
                                          transpose_b=transpose_b, epilogue=epilogue, transpose_a=transpose_a,
                                          prepacked=prepacked)
    b.call(driver, [m, n, k, src_b, ldb, c, ldc, const(0), pack_fields(b, [a, lda])] + eptrs + packed)
    b.ret_void()
    return fn


def emit_loop_gemm(module: ir.Module, name: str, dtype: DType, *, transpose_a: bool = False,
                   transpose_b: bool = False, epilogue: Epilogue | None = None,
                   columns: int | None = None) -> ir.Function:
    """`emit_gemm`'s function as a plain loop nest: for products of a few hundred multiply-adds
    per row or column (a Pima-sized Dense layer), where packing costs more than it saves and the
    full kernel's compile time dominates. `columns`: N, when it is static."""
    ty = scalar_type(dtype)
    ptr = ty.as_pointer()
    n_epi = len(epilogue.operands) if epilogue else 0
    fn = new_function(module, name, [i64, i64, i64, ptr, i64, ptr, i64, ptr, i64] + [ptr] * n_epi,
                      internal=False)
    for p in (fn.args[3], fn.args[5], fn.args[7]):
        p.add_attribute("noalias")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    _emit_loop_nest(b, dtype, list(fn.args), transpose_a, transpose_b, epilogue, columns)
    b.ret_void()
    return fn

"""Column reductions: a reduce_* over the leading axes of its input, keeping a static trailing block.

This is the bias gradient of every Dense and Conv2D layer (dy summed over batch, height and width
into one value per channel). The generic reduction loop (`loop.emit_reduction`) walks the input
in memory order and keeps its accumulator in memory, which LLVM does not turn into vector
registers when the kept block is short (32 channels: 0.6 GFLOP/s measured inside a training step).
Here the input is viewed as a (rows, cols) matrix, cols being the product of the kept axes: each
thread sums its share of the rows into accumulators held in vector registers, ROW_UNROLL rows at
a time (independent chains hide the add latency), and the caller combines the threads' partial
rows. The prologue runs on vectors of a row; its operands must be read as full (rows, cols)
matrices, as one row broadcast down, or as scalars.
"""
from __future__ import annotations

from typing import Sequence

from llvmlite import ir

from nncompile.codegen import elementwise, gemm, loop, parallel, simd, target
from nncompile.codegen.gemm import at, entry_alloca, smin
from nncompile.codegen.kernel import Dim, Kernel, product, scalar_type
from nncompile.codegen.loops import as_i64, const, for_range
from nncompile.ir.dtypes import DType
from nncompile.ir.graph import Node, Value
from nncompile.ir.ops.reduction import normalize_axes
from nncompile.ir.optable import get_op

i64 = ir.IntType(64)
MAX_COLS_VECTORS = 8        # vectors of a kept block summed in registers in one pass over the rows
PARTS_BYTES = 64 << 10      # the threads' partial sums (threads x kept elements) live on the stack
ACCUMULATORS = 16           # vector accumulators a thread keeps (rows unrolled to fill them)
PARALLEL_ELEMENTS = 1 << 15  # input elements from which the rows are split between the threads


def _operand_strides(v: Value, rows_rank: int, x: Value) -> tuple[int, int] | None:
    """(row stride, col stride) reading `v` broadcast against x viewed as (rows, cols): the full
    matrix (cols, 1), a row broadcast down (0, 1), a scalar (0, 0); None for anything else."""
    shape = (1,) * (x.type.rank - v.type.rank) + tuple(v.type.shape)
    lead, kept = shape[:rows_rank], shape[rows_rank:]
    kept_x = tuple(x.type.shape[rows_rank:])
    if all(d == 1 for d in shape):
        return 0, 0
    if kept != kept_x:
        return None
    if all(d == 1 for d in lead):
        return 0, 1
    if lead == tuple(x.type.shape[:rows_rank]):
        return _static_product(kept_x), 1
    return None


def _static_product(dims: Sequence[int]) -> int:
    """The product of static sizes."""
    total = 1
    for d in dims:
        total *= d
    return total


def column_plan(inputs: Sequence[Value], prologue: Sequence[Node], reduce: Node) -> tuple[int, int, list] | None:
    """(rows_rank, cols, strides of the prologue's operands) when `reduce` (fed by `prologue`)
    reduces exactly its input's leading axes, keeping static trailing axes of one vector or more
    (whose partial sums for every thread fit PARTS_BYTES), in a float dtype; None when the generic
    loop does it."""
    x = reduce.inputs[0]
    dtype = reduce.outputs[0].type.dtype
    if not dtype.is_float or dtype is DType.f16 or x.type.dtype != dtype:
        return None
    axes = sorted(normalize_axes(reduce.attrs["axes"], x.type.rank))
    rows_rank = len(axes)
    kept = x.type.shape[rows_rank:]
    if axes != list(range(rows_rank)) or not kept or not all(isinstance(d, int) for d in kept):
        return None
    cols = _static_product(kept)
    lanes = target.vector_lanes(dtype.itemsize)
    if cols < lanes:     # narrower: the generic loop is as quick
        return None
    if cols * dtype.itemsize * parallel.num_threads() > PARTS_BYTES:
        return None
    if any(n.op == "constant" and n.attrs["value"].size != 1 for n in prologue):
        return None
    if any(get_op(n.op).lower is None for n in prologue if n.op != "constant"):
        return None
    uses = {v for n in [*prologue, reduce] for v in n.inputs}
    operands = [v for v in inputs if v in uses]
    strides = [_operand_strides(v, rows_rank, x) for v in operands]
    if any(s is None for s in strides) or any(v.type.dtype != dtype for v in operands):
        return None
    return rows_rank, cols, strides


def emit_column_reduction(k: Kernel, inputs: Sequence[Value], prologue: Sequence[Node], reduce: Node,
                          acc_ptr: ir.Value, plan: tuple[int, int, list]) -> None:
    """Write reduce(prologue(inputs)) into `acc_ptr` (cols elements), before any epilogue."""
    b = k.b
    rows_rank, cols, strides = plan
    x = reduce.inputs[0]
    dtype = reduce.outputs[0].type.dtype
    uses = {v for n in [*prologue, reduce] for v in n.inputs}
    operands = [v for v in inputs if v in uses]
    rows: Dim = product(b, k.dims(x)[:rows_rank])
    task = _emit_task(k, operands, strides, prologue, reduce, cols, dtype)
    big = b.icmp_signed(">=", b.mul(as_i64(rows), const(cols)), const(PARALLEL_ELEMENTS))
    tasks = b.select(big, const(parallel.num_threads()), const(1))
    parts = entry_alloca(b, ir.ArrayType(scalar_type(dtype), parallel.num_threads() * cols))
    parts = b.bitcast(parts, scalar_type(dtype).as_pointer())
    fields = gemm.pack_fields(b, [as_i64(rows), parts, *(k.ptr(v) for v in operands)])
    b.call(parallel.emit_parallel_for(k.module), [task, fields, tasks])
    slot = entry_alloca(b, scalar_type(dtype))
    with for_range(b, cols, name="col") as c:
        b.store(b.load(at(b, parts, c)), slot)
        with for_range(b, tasks, start=1, name="part") as t:
            other = b.load(at(b, parts, b.add(b.mul(t, const(cols)), c)))
            b.store(loop.combine(b, reduce.op, b.load(slot), other, True), slot)
        b.store(b.load(slot), at(b, acc_ptr, c))


def _emit_task(k: Kernel, operands: list[Value], strides: list, prologue: Sequence[Node], reduce: Node,
               cols: int, dtype: DType) -> ir.Function:
    """task(ctx, index, count): rows index*share.. of the matrix into parts[index*cols...], a
    block of at most MAX_COLS_VECTORS vectors of columns at a time (a pass over the rows each)."""
    ty = scalar_type(dtype)
    ptr = ty.as_pointer()
    lanes = target.vector_lanes(dtype.itemsize)
    vectors = min(-(-cols // lanes), MAX_COLS_VECTORS)
    block = vectors * lanes
    unroll = max(1, ACCUMULATORS // vectors)
    vec = ir.VectorType(ty, lanes)
    task, b, ctx, index, count = parallel.task_function(k.module, k.module.get_unique_name("columns"))
    rows, parts, *pointers = gemm.unpack_fields(b, ctx, [i64, ptr] + [ptr] * len(operands))
    share = gemm.ceil_div(b, rows, count)
    r0 = b.mul(index, share)
    r1 = smin(b, rows, b.add(r0, share))
    start = elementwise.constant(dtype, loop.identity(reduce.op, dtype), vec)
    slots = [[entry_alloca(b, vec) for _ in range(vectors)] for _ in range(unroll)]
    with for_range(b, cols, step=block, name="block") as col0:
        for slot in (s for row in slots for s in row):
            b.store(start, slot)
        masks = [_block_mask(b, cols, block, col0, v * lanes, lanes) for v in range(vectors)]
        _sum_rows(b, (r0, r1, col0), (operands, pointers, strides), prologue, reduce, (slots, masks, start))
        mine = at(b, parts, b.add(b.mul(index, const(cols)), col0))
        for v, mask in enumerate(masks):
            total = b.load(slots[0][v])
            for row_slots in slots[1:]:
                total = loop.combine(b, reduce.op, total, b.load(row_slots[v]), True)
            if mask is None:
                simd.store_vector(b, total, at(b, mine, v * lanes))
            else:
                simd.masked_store(b, total, at(b, mine, v * lanes), mask)
    b.ret_void()
    return task


def _block_mask(b: ir.IRBuilder, cols: int, block: int, col0: ir.Value, first: int, lanes: int) -> ir.Value | None:
    """The lanes of the vector at col0 + first that lie within the cols (None: all of them)."""
    if cols <= block:     # one block: known when compiling
        return None if first + lanes <= cols else simd.lane_mask(b, cols, lanes, first)
    if cols % block == 0:
        return None
    return simd.lane_mask(b, b.sub(const(cols), col0), lanes, first)


def _sum_rows(b: ir.IRBuilder, span: tuple, reads: tuple, prologue: Sequence[Node], reduce: Node,
              accumulators: tuple) -> None:
    """Rows r0..r1 of the columns from col0 (span), prologue applied, summed into the slots:
    `unroll` rows at a time, each row into its own set of slots (independent add chains)."""
    r0, r1, col0 = span
    operands, pointers, strides = reads
    slots, masks, start = accumulators
    unroll, lanes = len(slots), start.type.count

    def accumulate(row: ir.Value, row_slots: list) -> None:
        for v, (slot, mask) in enumerate(zip(row_slots, masks)):
            env = {}
            for value, p, (rs, cs) in zip(operands, pointers, strides):
                column = b.mul(b.add(col0, const(v * lanes)), const(cs))
                base = at(b, p, b.add(b.mul(row, const(rs)), column))
                if cs == 0:
                    env[value] = simd.splat(b, b.load(base), lanes)
                elif mask is None:
                    env[value] = simd.load_vector(b, base, lanes)
                else:
                    env[value] = simd.masked_load(b, base, mask)
            loop.apply_nodes(Kernel(b, b.module, {}, {}), prologue, env, start)
            b.store(loop.combine(b, reduce.op, b.load(slot), env[reduce.inputs[0]], True), slot)

    whole = b.add(r0, b.mul(b.sdiv(b.sub(r1, r0), const(unroll)), const(unroll)))
    with for_range(b, whole, start=r0, step=unroll, name="rows") as row:
        for u, row_slots in enumerate(slots):
            accumulate(b.add(row, const(u)), row_slots)
    with for_range(b, r1, start=whole, name="tail") as row:
        accumulate(row, slots[0])

"""`scan` as one native loop in the entry function, its body's kernels called at every step.

    copy the initial carries into the carry results      (the body reads its carries there)
    for step in 0 .. T-1:                                 (t = T-1-step when reverse)
        copy slice t of each scanned operand into its step buffer   (along axis 0: none, the
        call the body's kernels, in schedule order                    body reads slice t and
        copy each per-step result into slice t of its stacked result  writes slice t in place)
        copy each new carry into its carry result      (unless it is written in place, below)

A new carry computed by the body into a buffer of its own is not copied: the step writes it where
the next step reads it (`_CarryHomes`): into the next slice of a result that saves the carry at
every step (the state a backward loop reads), else into the carry result and a spare buffer by
turns. The memory plan gives every body value a buffer that all steps reuse (passes/memory.py), and
weights that the body's products read as their B operand are packed once before the loop (as
oneDNN and PyTorch pack an RNN's weights), so a step neither allocates nor repacks; the code is
the same for any trip count. Copies are `llvm.memcpy`:
a carry or a slice row is contiguous, and a slice along `axis` is one row per index of the
axes before it.

When the rows of the carries never meet (`independent_rows`: a recurrent layer over a batch),
each thread runs the whole loop over its own block of rows, so the steps need no barrier between
the threads; the memory plan then gives each body value bytes of its own. With one row the loop
runs once, and its kernels share their work between the threads at each step. A recurrent cell
over one row or a few (at most `scan_team.TEAM_ROWS`) runs instead as a team of threads that split its units
(`scan_team.py`) when it can.
"""
from __future__ import annotations

import math

from llvmlite import ir

from nncompile.codegen import gemm, parallel, scan_team
from nncompile.codegen.cpu import Program, emit_kernels
from nncompile.codegen.gemm import libc
from nncompile.codegen.gemm_pack import emit_pack_b
from nncompile.codegen.kernel import mul, product, storage_type
from nncompile.codegen.linalg import weight_operands
from nncompile.codegen.loops import as_i64, for_range
from nncompile.codegen.scan_copy import at_step, memcpy, with_
from nncompile.codegen.scan_team import UnitSplit, unit_split
from nncompile.codegen.scan_team_emit import emit_team
from nncompile.ir.graph import Node, Value
from nncompile.ir.ops.scan import independent_rows, split_operands, step_views
from nncompile.ir.optable import OPS

i32 = ir.IntType(32)
i8p = ir.IntType(8).as_pointer()
i64 = ir.IntType(64)


def _copy(p: Program, dst: Value, src: Value) -> None:
    """The whole of `src` into `dst` (same type), unless they share a buffer."""
    if not p.same_buffer(dst, src):
        memcpy(p, p.ptr(dst), p.ptr(src), mul(p.b, product(p.b, p.dims(src)), src.type.dtype.itemsize))


def _copy_slices(p: Program, stacked: Value, step: Value, t: ir.Value, axis: int, into_step: bool) -> None:
    """Slice t along `axis` of `stacked` to the step buffer of `step` (or back, not `into_step`)."""
    b = p.b
    dims = p.dims(stacked)
    row = mul(b, product(b, dims[axis + 1:]), stacked.type.dtype.itemsize)
    stacked_ptr, step_ptr = p.ptr(stacked), p.ptr(step)
    with for_range(b, product(b, dims[:axis]), name="row") as o:
        at_stacked = b.gep(stacked_ptr, [b.mul(b.add(b.mul(o, as_i64(dims[axis])), t), as_i64(row))])
        at_step = b.gep(step_ptr, [b.mul(o, as_i64(row))])
        if into_step:
            memcpy(p, at_step, at_stacked, row)
        else:
            memcpy(p, at_stacked, at_step, row)


def _pack_weights(p: Program, node: Node) -> dict[Value, ir.Value]:
    """The body's invariant weights read as a product's B, packed once before the loop (or
    already packed for the whole call: `p.packed` of the scan's operand), by body input."""
    body = node.attrs["body"]
    invariants = split_operands(body.inputs, node.attrs)[2]
    outer = dict(zip(body.inputs, node.inputs))
    packed = {}
    for value, packing in weight_operands(body, invariants).items():
        if outer[value] in p.packed:
            packed[value] = p.packed[outer[value]]
            continue
        if packing.groups:
            continue     # a convolution packs its weights itself
        transposed = packing.transposed
        rows, cols = p.dims(value)
        n, k = (rows, cols) if transposed else (cols, rows)
        fn = emit_pack_b(p.module, value.type.dtype, transpose_b=transposed)
        source = p.b.bitcast(p.ptr(value), storage_type(value.type.dtype).as_pointer())
        packed[value] = p.b.call(fn, [as_i64(n), as_i64(k), source, as_i64(cols)])
    return packed


def emit_scan(p: Program, node: Node, number: int, prefix: str) -> None:
    n = node.attrs["num_carry"]
    for value, result in zip(node.inputs[:n], node.outputs[:n]):
        _copy(p, result, value)
    symbol = independent_rows(node)
    rowed = symbol is not None and _same_rows(p.layout, node, symbol)
    split = unit_split(node, symbol) if rowed and parallel.num_threads() > 1 else None
    if split is None or not _team_safe(p.layout, node, split):
        _emit_loops(p, node, number, prefix, symbol if rowed else None)
        return
    rows = dict(zip(p.layout.symbols, p.symbols))[symbol]
    few = p.b.and_(p.b.icmp_signed(">=", rows, as_i64(1)), p.b.icmp_signed("<=", rows, as_i64(scan_team.TEAM_ROWS)))
    with p.b.if_else(few) as (team, apart):
        with team:
            emit_team(p, node, split, symbol, number, prefix)
        with apart:
            _emit_loops(p, node, number, prefix, symbol)


def _emit_loops(p: Program, node: Node, number: int, prefix: str, symbol: str | None) -> None:
    """The loop on one thread, its kernels sharing their work at each step, or (rows kept apart,
    `symbol` their symbol) one loop per block of rows; the weights packed once before either."""
    packed = _pack_weights(p, node)
    buffers = tuple(p.b.bitcast(buffer, i8p) for buffer in dict.fromkeys(packed.values())
                    if buffer not in p.packed.values())
    inside = with_(p, packed=packed, owned=p.owned + buffers)
    if symbol is None:
        _emit_steps(inside, node, number, prefix)
    else:
        _emit_row_blocks(inside, node, number, prefix, symbol)
    _, free = libc(p.module)
    for buffer in buffers:
        p.b.call(free, [buffer])


def _team_safe(layout, node: Node, split: UnitSplit) -> bool:
    """Whether no value a member writes during a step shares a buffer with the carries, which
    every member reads whole (the memory plan may have placed a new carry in place of the old)."""
    body = node.attrs["body"]
    n = node.attrs["num_carry"]
    read = {layout.slots[v] for v in [*body.inputs[:n], *node.outputs[:n]]}
    return not any(layout.slots[v] in read for inner in body.nodes for v in inner.outputs)


def _emit_steps(p: Program, node: Node, number: int, prefix: str, full: Program | None = None,
                first_row: ir.Value | None = None) -> None:
    """The loop over the steps, the body's kernels called in it. In a block of rows, `p` sees
    the block (its rows as the row symbol, pointers at its first row) and `full` the whole."""
    attrs, body = node.attrs, node.attrs["body"]
    n, axis, full = attrs["num_carry"], attrs["axis"], full or p
    _, scanned, _ = split_operands(node.inputs, attrs)
    _, step_inputs, _ = split_operands(body.inputs, attrs)
    viewed, written = step_views(node)
    b = p.b
    length = as_i64(full.dims(scanned[0])[axis])
    moved = _moved_carries(p, node, written)
    homes = _CarryHomes(p, node, moved, length, first_row, full)
    with for_range(b, length, name=f"{prefix}step") as step:
        t = b.sub(b.sub(length, as_i64(1)), step) if attrs["reverse"] else step
        # Slices in place: the body reads and writes them where they lie in the stacked arrays.
        pointers = list(p.pointers)
        for stacked, value in zip(scanned, step_inputs):
            if value in viewed:
                pointers[p.layout.slots[value]] = at_step(full, stacked, t, first_row)
            else:
                _copy_slices(p, stacked, value, t, axis, into_step=True)
        for value, stacked in zip(body.outputs[n:], node.outputs[n:]):
            if value in written:
                pointers[p.layout.slots[value]] = at_step(full, stacked, t, first_row)
        homes.place(pointers, step, t)
        at = with_(p, pointers=pointers, owned=p.owned + tuple(homes.spares.values()))
        emit_kernels(at, body.nodes, number, prefix)
        for value, stacked in zip(body.outputs[n:], node.outputs[n:]):
            if value in written or homes.saved_in(value, stacked):
                continue
            if axis == 0:   # the step's value (a block's rows of it) into its rows of slice t
                nbytes = mul(b, product(b, p.dims(value)), value.type.dtype.itemsize)
                memcpy(p, at_step(full, stacked, t, first_row), at.ptr(value), nbytes)
            else:
                _copy_slices(at, stacked, value, t, axis, into_step=False)
        _update_carries(at, body.outputs[:n], node.outputs[:n], body.inputs[:n], skip=set(moved))
    homes.finish()


def _moved_carries(p: Program, node: Node, written: list[Value]) -> dict[int, Value | None]:
    """The carries whose new value a step can write where the next step reads it, instead of
    copying it into the carry's result: by carry index, the stacked result that saves the old
    carry at every step (the backward loop's saved state; the new value goes into the next
    slice) or None (the new value alternates between the result and a spare buffer). The new
    value must be computed by the body, for this carry alone, into a buffer of its own among
    the body's inputs and in-place results (all the values in its buffer move with it)."""
    attrs, body = node.attrs, node.attrs["body"]
    n = attrs["num_carry"]
    slots = p.layout.slots
    fixed = {slots[v] for v in [*body.inputs, *written]}
    new = body.outputs[:n]
    moved: dict[int, Value | None] = {}
    for i, (old, value) in enumerate(zip(body.inputs[:n], new)):
        if value.producer is None or new.count(value) != 1 or slots[value] in fixed:
            continue
        if any(slots[value] == slots[new[j]] for j in moved):
            continue
        saved = [stacked for r, stacked in zip(body.outputs[n:], node.outputs[n:]) if r is old]
        moved[i] = saved[0] if saved and attrs["axis"] == 0 else None
    return moved


class _CarryHomes:
    """Where the moved carries (`_moved_carries`) live at each step. A carry saved at every
    step reads slice t of that stacked result and writes its new value into the next step's
    slice (into the carry's result at the last step); the first slice gets the initial carry
    before the loop. Any other moved carry alternates: even steps read the result and write a
    spare buffer, odd steps the reverse, and after an odd number of steps the spare holds the
    final carry, copied into the result."""

    def __init__(self, p: Program, node: Node, moved: dict[int, Value | None], length: ir.Value,
                 first_row: ir.Value | None, full: Program):
        self.p, self.node, self.moved, self.length = p, node, moved, length
        self.first_row, self.full = first_row, full
        b = p.b
        self.results = {i: p.ptr(node.outputs[i]) for i in moved}
        self.sizes = {i: mul(b, product(b, p.dims(node.outputs[i])), node.outputs[i].type.dtype.itemsize)
                      for i in moved}
        self.spares = {i: gemm.alloc_aligned(b, i8p, as_i64(self.sizes[i]))
                       for i, saved in moved.items() if saved is None}
        first = b.sub(length, as_i64(1)) if node.attrs["reverse"] else as_i64(0)
        with b.if_then(b.icmp_signed(">", length, as_i64(0))):
            for i, saved in moved.items():
                if saved is not None:
                    memcpy(p, at_step(full, saved, first, first_row), self.results[i], self.sizes[i])

    def place(self, pointers: list[ir.Value], step: ir.Value, t: ir.Value) -> None:
        b, body, slots = self.p.b, self.node.attrs["body"], self.p.layout.slots
        last = b.icmp_signed("==", step, b.sub(self.length, as_i64(1)))
        odd = b.trunc(step, ir.IntType(1))
        following = b.sub(t, as_i64(1)) if self.node.attrs["reverse"] else b.add(t, as_i64(1))
        for i, saved in self.moved.items():
            result = self.results[i]
            if saved is None:
                old = b.select(odd, self.spares[i], result)
                new = b.select(odd, result, self.spares[i])
            else:
                old = at_step(self.full, saved, t, self.first_row)
                new = b.select(last, result, at_step(self.full, saved, following, self.first_row))
            pointers[slots[body.inputs[i]]] = old
            pointers[slots[body.outputs[i]]] = new

    def saved_in(self, value: Value, stacked: Value) -> bool:
        """Whether `value` (a per-step result) already lies in slice t of `stacked`."""
        body = self.node.attrs["body"]
        return any(value is body.inputs[i] and stacked is saved for i, saved in self.moved.items())

    def finish(self) -> None:
        b = self.p.b
        _, free = libc(self.p.module)
        odd_steps = b.trunc(self.length, ir.IntType(1))
        for i, spare in self.spares.items():
            with b.if_then(odd_steps):
                memcpy(self.p, self.results[i], spare, self.sizes[i])
            b.call(free, [spare])


def _emit_row_blocks(p: Program, node: Node, number: int, prefix: str, symbol: str) -> None:
    """Rows independent (`independent_rows`): with two rows or more, each thread runs the whole
    loop over a block of them, never waiting for another between steps (one GEMM per step per
    thread, on its rows, the recurrent weights in its own cache). One row runs as one loop, its
    kernels free to share their own work between the threads."""
    b = p.b
    rows = dict(zip(p.layout.symbols, p.symbols))[symbol]
    threads = gemm.smin(b, rows, as_i64(parallel.num_threads()))
    with b.if_else(b.icmp_signed(">", threads, as_i64(1))) as (split, whole):
        with split:
            status = gemm.entry_alloca(b, i32)
            b.store(ir.Constant(i32, 0), status)
            packed = list(p.packed.values())
            fields = gemm.pack_fields(b, [*p.pointers, *p.symbols, *packed, status])
            task = _row_task(p, node, number, prefix, symbol)
            b.call(parallel.emit_parallel_for(p.module), [task, fields, threads])
            failed = b.load(status)
            with b.if_then(b.icmp_signed("!=", failed, ir.Constant(i32, 0)), likely=False):
                p.fail(failed)
        with whole:
            _emit_steps(p, node, number, prefix)


def _row_task(p: Program, node: Node, number: int, prefix: str, symbol: str) -> ir.Function:
    """The task running the loop over block `index` of `count` blocks of rows."""
    fn, b, ctx, index, count = parallel.task_function(p.module, f"{prefix}rows")
    packed_types = [v.type for v in p.packed.values()]
    fields = gemm.unpack_fields(b, ctx, [i8p] * len(p.pointers) + [i64] * len(p.symbols)
                                + packed_types + [i32.as_pointer()])
    slots, symbols = len(p.pointers), len(p.symbols)
    full = Program(p.module, b, p.layout, fields[:slots], fields[slots:slots + symbols])
    at = p.layout.symbols.index(symbol)
    total = full.symbols[at]
    share = gemm.ceil_div(b, total, count)
    first = b.mul(index, share)
    rows = gemm.smin(b, share, b.sub(total, first))
    with b.if_then(b.icmp_signed("<=", rows, as_i64(0))):
        b.ret_void()
    block_symbols = list(full.symbols)
    block_symbols[at] = rows
    pointers = list(full.pointers)
    for slot, row_bytes in _row_slots(full, node, symbol).items():
        pointers[slot] = b.gep(pointers[slot], [b.mul(first, as_i64(row_bytes))])
    packed = dict(zip(p.packed, fields[slots + symbols:-1]))
    block = Program(p.module, b, p.layout, pointers, block_symbols, packed, status=fields[-1])
    _emit_steps(block, node, number, prefix, full, first)
    b.ret_void()
    return fn


def _rowed(node: Node, symbol: str) -> list[Value]:
    """The body's values with rows (the row symbol first)."""
    body = node.attrs["body"]
    values = [*body.inputs, *(v for inner in body.nodes for v in inner.outputs)]
    return [v for v in values if v.type.rank and v.type.shape[0] == symbol]


def _same_rows(layout, node: Node, symbol: str) -> bool:
    """Whether the values with rows that share a slot (views, in-place results) agree on the
    shape of a row, so one offset serves the slot."""
    rows: dict[int, tuple] = {}
    for v in _rowed(node, symbol):
        shape = v.type.shape[1:]
        row = (math.prod(shape),) if all(isinstance(d, int) for d in shape) else shape
        if rows.setdefault(layout.slots[v], row) != row:
            return False
    return True


def _row_slots(full: Program, node: Node, symbol: str) -> dict[int, ir.Value]:
    """The bytes of one row of each buffer slot of the body's values with rows: a block's
    pointer into the slot is its first row times that. (Slices of stacked operands and results
    are placed at every step instead.)"""
    return {full.layout.slots[v]: mul(full.b, product(full.b, full.dims(v)[1:]), v.type.dtype.itemsize)
            for v in _rowed(node, symbol)}


def _update_carries(p: Program, new: list[Value], results: list[Value], carries: list[Value],
                    skip: set[int] = frozenset()) -> None:
    """Each new carry into its carry result, but those at positions in `skip` (already where the
    next step reads them). A new carry that is another carry's old value (the body swaps or
    shifts carries) goes through a temporary, so no copy reads a result already written."""
    copied = [i for i in range(len(new)) if i not in skip]
    swapped = [i for i in copied if new[i] in carries and new[i] is not carries[i]]
    _, free = libc(p.module)
    temporaries = []
    for i in swapped:
        size = mul(p.b, product(p.b, p.dims(new[i])), new[i].type.dtype.itemsize)
        temporary = gemm.alloc_aligned(p.b, i8p, as_i64(size))
        memcpy(p, temporary, p.ptr(new[i]), size)
        temporaries.append((temporary, results[i], size))
    for i in copied:
        if i not in swapped:
            _copy(p, results[i], new[i])
    for temporary, result, size in temporaries:
        memcpy(p, p.ptr(result), temporary, size)
        p.b.call(free, [temporary])


OPS["scan"].lower = emit_scan

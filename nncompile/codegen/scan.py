"""`scan` as one native loop in the entry function, its body's kernels called at every step.

    copy the initial carries into the carry results      (the body reads its carries there)
    for step in 0 .. T-1:                                 (t = T-1-step when reverse)
        copy slice t of each scanned operand into its step buffer   (along axis 0: none, the
        call the body's kernels, in schedule order                    body reads slice t and
        copy each per-step result into slice t of its stacked result  writes slice t in place)
        copy each new carry into its carry result

The memory plan gives every body value a buffer that all steps reuse (passes/memory.py), and
weights that the body's products read as their B operand are packed once before the loop (as
oneDNN and PyTorch pack an RNN's weights), so a step neither allocates nor repacks; the code is
the same for any trip count. Copies are `llvm.memcpy`:
a carry or a slice row is contiguous, and a slice along `axis` is one row per index of the
axes before it.

When the rows of the carries never meet (`independent_rows`: a recurrent layer over a batch),
each thread runs the whole loop over its own block of rows, so the steps need no barrier between
the threads; the memory plan then gives each body value bytes of its own. With one row the loop
runs once, and its kernels share their work between the threads at each step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from llvmlite import ir

from nncompile.codegen import gemm, parallel
from nncompile.codegen.cpu import Layout, Program, _kernel_function, emit_kernels
from nncompile.codegen.gemm import libc
from nncompile.codegen.gemm_pack import emit_pack_b
from nncompile.codegen.kernel import mul, product, storage_type
from nncompile.codegen.loops import as_i64, for_range
from nncompile.codegen.scan_team import UNITS, WHOLE, UnitSplit, member_blocks, members, unit_split
from nncompile.codegen.simd import intrinsic
from nncompile.ir.graph import Graph, Node, Value
from nncompile.ir.ops.scan import independent_rows, split_operands, step_views
from nncompile.ir.optable import OPS

i1 = ir.IntType(1)
i32 = ir.IntType(32)
i8p = ir.IntType(8).as_pointer()
i64 = ir.IntType(64)


def _memcpy(p: Program, dst: ir.Value, src: ir.Value, nbytes) -> None:
    fn = intrinsic(p.module, "llvm.memcpy.p0.p0.i64", ir.VoidType(), [i8p, i8p, i64, i1])
    p.b.call(fn, [dst, src, as_i64(nbytes), ir.Constant(i1, 0)])


def _copy(p: Program, dst: Value, src: Value) -> None:
    """The whole of `src` into `dst` (same type), unless they share a buffer."""
    if not p.same_buffer(dst, src):
        _memcpy(p, p.ptr(dst), p.ptr(src), mul(p.b, product(p.b, p.dims(src)), src.type.dtype.itemsize))


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
            _memcpy(p, at_step, at_stacked, row)
        else:
            _memcpy(p, at_stacked, at_step, row)


def _at_step(full: Program, stacked: Value, t: ir.Value, first_row: ir.Value | None) -> ir.Value:
    """The address of slice t along axis 0 of `stacked` (of its row `first_row` on, when a block
    of rows runs); `full` gives the dimensions as the whole loop sees them."""
    b, dims, size = full.b, full.dims(stacked), stacked.type.dtype.itemsize
    offset = b.mul(t, as_i64(mul(b, product(b, dims[1:]), size)))
    if first_row is not None:
        offset = b.add(offset, b.mul(first_row, as_i64(mul(b, product(b, dims[2:]), size))))
    return b.gep(full.ptr(stacked), [offset])


def _weights(body: Graph, invariants: list[Value]) -> dict[Value, bool]:
    """The invariants that every product reading them takes as its 2-D B operand, each with
    whether that B is transposed: packed once before the loop instead of at every step."""
    uses: dict[Value, set] = {}
    for node in body.nodes:
        inner = node.attrs["body"] if node.op == "fused" and node.attrs["kind"] == "matmul" else None
        anchor = inner.nodes[0] if inner is not None else node
        for position, v in enumerate(node.inputs):
            if v not in invariants:
                continue
            operand = inner.inputs[position] if inner is not None else v
            as_b = (anchor.op == "matmul" and len(anchor.inputs) == 2 and anchor.inputs[1] is operand
                    and anchor.inputs[0] is not operand and anchor.outputs[0].type.rank == 2
                    and v.type.rank == 2 and v.type.dtype.is_float)
            uses.setdefault(v, set()).add(anchor.attrs["transpose_b"] if as_b else None)
    return {v: kinds.pop() for v, kinds in uses.items() if len(kinds) == 1 and None not in kinds}


def _pack_weights(p: Program, body: Graph, invariants: list[Value]) -> dict[Value, ir.Value]:
    packed = {}
    for value, transposed in _weights(body, invariants).items():
        rows, cols = p.dims(value)
        n, k = (rows, cols) if transposed else (cols, rows)
        fn = emit_pack_b(p.module, value.type.dtype, transpose_b=transposed)
        source = p.b.bitcast(p.ptr(value), storage_type(value.type.dtype).as_pointer())
        packed[value] = p.b.call(fn, [as_i64(n), as_i64(k), source, as_i64(cols)])
    return packed


def emit_scan(p: Program, node: Node, number: int, prefix: str) -> None:
    attrs, body = node.attrs, node.attrs["body"]
    n = attrs["num_carry"]
    for value, result in zip(node.inputs[:n], node.outputs[:n]):
        _copy(p, result, value)
    symbol = independent_rows(node)
    rowed = symbol is not None and _same_rows(p.layout, node, symbol)
    split = unit_split(node, symbol) if rowed and parallel.num_threads() > 1 else None
    if split is None or not _team_safe(p.layout, node, split):
        _emit_loops(p, node, number, prefix, symbol if rowed else None)
        return
    rows = dict(zip(p.layout.symbols, p.symbols))[symbol]
    with p.b.if_else(p.b.icmp_signed("==", rows, as_i64(1))) as (one, more):
        with one:
            _emit_team(p, node, split, symbol, prefix)
        with more:
            _emit_loops(p, node, number, prefix, symbol)


def _emit_loops(p: Program, node: Node, number: int, prefix: str, symbol: str | None) -> None:
    """The loop on one thread, its kernels sharing their work at each step, or (rows kept apart,
    `symbol` their symbol) one loop per block of rows; the weights packed once before either."""
    attrs, body = node.attrs, node.attrs["body"]
    packed = _pack_weights(p, body, split_operands(body.inputs, attrs)[2])
    if symbol is None:
        _emit_steps(_with(p, packed=packed), node, number, prefix)
    else:
        _emit_row_blocks(_with(p, packed=packed), node, number, prefix, symbol)
    _, free = libc(p.module)
    for buffer in packed.values():
        p.b.call(free, [p.b.bitcast(buffer, i8p)])


def _team_safe(layout, node: Node, split: UnitSplit) -> bool:
    """Whether no value a member writes during a step shares a buffer with the carries, which
    every member reads whole (the memory plan may have placed a new carry in place of the old)."""
    body = node.attrs["body"]
    n = node.attrs["num_carry"]
    read = {layout.slots[v] for v in [*body.inputs[:n], *node.outputs[:n]]}
    return not any(layout.slots[v] in read for inner in body.nodes for v in inner.outputs)


def _emit_team(p: Program, node: Node, split: UnitSplit, symbol: str, prefix: str) -> None:
    """The loop of one row run by a team of threads that splits the units (`scan_team`). Each
    carry gets a second buffer (the steps alternate).

    Shared between the members, a word per block of units (a cache line apart): the last step
    that claimed it, the last step that finished it, and its gates' packed weights."""
    b = p.b
    n = node.attrs["num_carry"]
    blocks, share = members(split, split.weight.type.dtype.itemsize)
    alloc, free = libc(p.module)
    row = -(-split.units * split.weight.type.dtype.itemsize // 64) * 64
    scratch = [b.call(alloc, [as_i64(64), as_i64(row)]) for _ in range(n)]
    words = gemm.entry_alloca(b, ir.ArrayType(i64, _TEAM_WORDS * (2 + split.gates) * blocks))
    words.align = 64
    state = b.bitcast(words, i64.as_pointer())
    for word in range(2 * blocks):
        b.store(as_i64(-1), b.gep(state, [as_i64(word * _TEAM_WORDS)]))
    for word in range(blocks * split.gates):   # no step at all packs nothing: free(NULL)
        b.store(as_i64(0), _packed_word(b, state, blocks, word))
    fields = gemm.pack_fields(b, [*p.pointers, *p.symbols, *scratch, state])
    task = _team_task(p, node, split, symbol, prefix, blocks, share)
    b.call(parallel.emit_parallel_for(p.module), [task, fields, as_i64(blocks)])
    for word in range(blocks * split.gates):
        b.call(free, [b.inttoptr(b.load(_packed_word(b, state, blocks, word)), i8p)])
    for buffer in scratch:
        b.call(free, [buffer])


_TEAM_WORDS = 8   # i64s between two shared words: one cache line each


def _claimed(b, state, block):
    return b.gep(state, [b.mul(as_i64(block), as_i64(_TEAM_WORDS))])


def _finished(b, state, blocks, block):
    return b.gep(state, [b.mul(b.add(as_i64(block), as_i64(blocks)), as_i64(_TEAM_WORDS))])


def _packed_word(b, state, blocks, word):
    return b.gep(state, [b.add(as_i64(2 * blocks * _TEAM_WORDS), as_i64(word))])


def _team_task(p: Program, node: Node, split: UnitSplit, symbol: str, prefix: str,
               blocks: int, share: int) -> ir.Function:
    """Task: member `index` walks the steps; at each it claims the blocks of units not yet
    claimed for the step, its own first (its weights are in its cache), runs them, and waits
    until every block has finished the step. A member that is late (a worker not yet woken, one
    the OS descheduled, an index run after another on the same thread) finds its blocks done by
    the others and catches up, so no step waits for a thread that is not running, as a barrier
    would."""
    fn, b, ctx, index, _ = parallel.task_function(p.module, f"{prefix}team")
    n = node.attrs["num_carry"]
    slots, symbols = len(p.pointers), len(p.symbols)
    fields = gemm.unpack_fields(b, ctx, [i8p] * slots + [i64] * symbols + [i8p] * n + [i64.as_pointer()])
    full = Program(p.module, b, p.layout, fields[:slots], fields[slots:slots + symbols])
    team = _Team(node, split, symbol, prefix, blocks, share, fields[slots + symbols:-1], fields[-1])
    length = as_i64(full.dims(split_operands(node.inputs, node.attrs)[1][0])[0])
    spins = gemm.entry_alloca(b, i64)
    b.store(as_i64(0), spins)
    with for_range(b, length, name=f"{prefix}step") as step:
        claim, wait, finished = (b.append_basic_block(name) for name in ("claim", "wait", "finished"))
        b.branch(claim)
        b.position_at_end(claim)
        for i in range(blocks):
            block = b.srem(b.add(index, as_i64(i)), as_i64(blocks))
            claimed, previous = _claimed(b, team.state, block), b.sub(step, as_i64(1))
            # a plain load first: a failing cmpxchg would still take the line from its owner
            with b.if_then(b.icmp_signed("==", b.load_atomic(claimed, "monotonic", 8), previous)):
                seen = b.cmpxchg(claimed, previous, step, "acq_rel", "monotonic")
                with b.if_then(b.extract_value(seen, 1)):
                    _run_block(full, team, block, step)
        b.cbranch(_all_finished(b, team, step), finished, wait)
        b.position_at_end(wait)
        parallel.emit_spin(b, spins)
        b.branch(claim)
        b.position_at_end(finished)
    with b.if_then(b.icmp_signed("==", index, as_i64(0))):
        _final_carries(full, team, length)
    b.ret_void()
    return fn


@dataclass
class _Team:
    node: Node
    split: UnitSplit
    symbol: str
    prefix: str
    blocks: int
    share: int
    scratch: list
    state: ir.Value

    def width(self, block: int) -> int:
        return min(self.share, self.split.units - block * self.share)


def _all_finished(b: ir.IRBuilder, team: _Team, step: ir.Value) -> ir.Value:
    """Whether every block has finished `step` (a member that fell behind finds later steps)."""
    done = ir.Constant(i1, 1)
    for block in range(team.blocks):
        finished = b.load_atomic(_finished(b, team.state, team.blocks, block), "acquire", 8)
        done = b.and_(done, b.icmp_signed(">=", finished, step))
    return done


def _run_block(full: Program, team: _Team, block: ir.Value, step: ir.Value) -> None:
    """Block `block`'s kernels at `step` (a kernel variant for the narrower last block)."""
    b = full.b
    widths = sorted({team.width(j) for j in range(team.blocks)}, reverse=True)
    if len(widths) == 1:
        _block_step(full, team, block, step, widths[0])
        return
    with b.if_else(b.icmp_signed("<", block, as_i64(team.blocks - 1))) as (whole, narrow):
        with whole:
            _block_step(full, team, block, step, widths[0])
        with narrow:
            _block_step(full, team, block, step, widths[1])


def _block_step(full: Program, team: _Team, block: ir.Value, step: ir.Value, width: int) -> None:
    """One step of one block of units: its gates' products and elementwise kernels, its part of
    the new carries (into the other buffer), then the step marked finished for it."""
    b, node, split = full.b, team.node, team.split
    attrs, body = node.attrs, node.attrs["body"]
    n, size = attrs["num_carry"], split.weight.type.dtype.itemsize
    first = b.mul(block, as_i64(team.share))
    _, scanned, _ = split_operands(node.inputs, attrs)
    _, step_inputs, _ = split_operands(body.inputs, attrs)
    length = as_i64(full.dims(scanned[0])[0])
    t = b.sub(b.sub(length, as_i64(1)), step) if attrs["reverse"] else step
    packed = _block_weights(full, team, block, step, first, width)
    odd = b.trunc(step, i1)
    results = [full.ptr(v) for v in node.outputs[:n]]
    pointers = list(full.pointers)
    for stacked, value in zip(scanned, step_inputs):
        pointers[full.layout.slots[value]] = _at_step(full, stacked, t, None)
    for value, stacked in zip(body.outputs[n:], node.outputs[n:]):
        pointers[full.layout.slots[value]] = _at_step(full, stacked, t, None)
    for carry, result, spare in zip(body.inputs[:n], results, team.scratch):
        pointers[full.layout.slots[carry]] = b.select(odd, spare, result)
    at = _with(full, pointers=pointers)
    for i, kernel in enumerate(member_blocks(split, body, team.symbol, width)):
        fn = _block_function(at, kernel, f"{team.prefix}team{width}.{i}")
        args = [_view(at, kernel, v, first, split.units) for v in _block_values(at, kernel)]
        b.call(fn, [b.bitcast(a, arg.type) for a, arg in zip(args, fn.args)] +
               [b.bitcast(packed[kernel.views[v][1]], fn.args[len(args) + i].type)
                for i, v in enumerate(kernel.packed)])
    offset = b.mul(first, as_i64(size))
    for new, result, spare in zip(body.outputs[:n], results, team.scratch):
        into = b.select(odd, result, spare)
        _memcpy(at, b.gep(into, [offset]), b.gep(at.ptr(new), [offset]), as_i64(width * size))
    b.store_atomic(step, _finished(b, team.state, team.blocks, block), "release", 8)


def _block_weights(p: Program, team: _Team, block: ir.Value, step: ir.Value, first: ir.Value,
                   width: int) -> list[ir.Value]:
    """The block's gates' columns [g * U + first, + width) of the weights, packed by whichever
    member runs the block's first step (usually its owner, so they sit in its cache) and read
    from the shared words after."""
    b, weight, gates = p.b, team.split.weight, team.split.gates
    units, columns = weight.type.shape
    words = [_packed_word(b, team.state, team.blocks, b.add(b.mul(block, as_i64(gates)), as_i64(g)))
             for g in range(gates)]
    with b.if_then(b.icmp_signed("==", step, as_i64(0))):
        fn = emit_pack_b(p.module, weight.type.dtype)
        source = b.bitcast(p.ptr(weight), storage_type(weight.type.dtype).as_pointer())
        for g, word in enumerate(words):
            panel = b.call(fn, [as_i64(width), as_i64(units), b.gep(source, [b.add(first, as_i64(g * units))]),
                                as_i64(columns)])
            b.store(b.ptrtoint(panel, i64), word)
    return [b.inttoptr(b.load(word), i8p) for word in words]


def _final_carries(full: Program, team: _Team, length: ir.Value) -> None:
    """An odd number of steps leaves the final carries in the spare buffers: copy them back."""
    b = full.b
    n = team.node.attrs["num_carry"]
    size = team.split.units * team.split.weight.type.dtype.itemsize
    with b.if_then(b.trunc(length, i1)):
        for result, spare in zip(team.node.outputs[:n], team.scratch):
            _memcpy(full, full.ptr(result), spare, as_i64(size))


def _block_values(p: Program, block) -> list[Value]:
    """A block kernel's operands and results, one per buffer slot it touches, as `_kernel_slots`
    orders them: two views of one buffer at one place (a result in place of an operand) share."""
    seen, values = set(), []
    for v in [*block.node.outputs, *block.node.inputs]:
        key = (p.layout.slots[block.views[v][0]], block.views[v][1])
        if key not in seen:
            seen.add(key)
            values.append(v)
    return values


def _block_function(p: Program, block, name: str) -> ir.Function:
    values = _block_values(p, block)
    slot = {v: i for i, v in enumerate(values)}
    for v in [*block.node.outputs, *block.node.inputs]:
        key = (p.layout.slots[block.views[v][0]], block.views[v][1])
        slot[v] = next(slot[u] for u in values
                       if (p.layout.slots[block.views[u][0]], block.views[u][1]) == key)
    return _kernel_function(p.module, block.node, name, Layout(slot, values), block.packed)


def _view(p: Program, block, v: Value, first: ir.Value, units: int) -> ir.Value:
    """The address of block value `v` in its body value's buffer, for units from `first`."""
    value, where = block.views[v]
    base = p.ptr(value)
    if where == WHOLE:
        return base
    elements = first if where == UNITS else p.b.add(first, as_i64(where * units))
    return p.b.gep(base, [p.b.mul(elements, as_i64(value.type.dtype.itemsize))])


def _with(p: Program, **changes) -> Program:
    return Program(**{**p.__dict__, **changes})


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
    with for_range(b, length, name=f"{prefix}step") as step:
        t = b.sub(b.sub(length, as_i64(1)), step) if attrs["reverse"] else step
        # Slices in place: the body reads and writes them where they lie in the stacked arrays.
        pointers = list(p.pointers)
        for stacked, value in zip(scanned, step_inputs):
            if value in viewed:
                pointers[p.layout.slots[value]] = _at_step(full, stacked, t, first_row)
            else:
                _copy_slices(p, stacked, value, t, axis, into_step=True)
        for value, stacked in zip(body.outputs[n:], node.outputs[n:]):
            if value in written:
                pointers[p.layout.slots[value]] = _at_step(full, stacked, t, first_row)
        emit_kernels(_with(p, pointers=pointers), body.nodes, number, prefix)
        for value, stacked in zip(body.outputs[n:], node.outputs[n:]):
            if value not in written:
                _copy_slices(p, stacked, value, t, axis, into_step=False)
        _update_carries(_with(p, pointers=pointers), body.outputs[:n], node.outputs[:n], body.inputs[:n])


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
                b.ret(failed)
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


def _update_carries(p: Program, new: list[Value], results: list[Value], carries: list[Value]) -> None:
    """Each new carry into its carry result. A new carry that is another carry's old value (the
    body swaps two carries) goes through a temporary, so no copy reads a result already written."""
    swapped = [(v, r) for i, (v, r) in enumerate(zip(new, results)) if v in carries and v is not carries[i]]
    alloc, free = libc(p.module)
    temporaries = []
    for value, result in swapped:
        size = mul(p.b, product(p.b, p.dims(value)), value.type.dtype.itemsize)
        temporary = p.b.call(alloc, [as_i64(64), p.b.mul(p.b.udiv(p.b.add(as_i64(size), as_i64(63)),
                                                                  as_i64(64)), as_i64(64))])
        _memcpy(p, temporary, p.ptr(value), size)
        temporaries.append((temporary, result, size))
    for value, result in zip(new, results):
        if all(value is not v for v, _ in swapped):
            _copy(p, result, value)
    for temporary, result, size in temporaries:
        _memcpy(p, p.ptr(result), temporary, size)
        p.b.call(free, [temporary])


OPS["scan"].lower = emit_scan

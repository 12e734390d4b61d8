"""The code of a recurrent loop run by a team of threads that splits the units (`scan_team.py`).

Shared between the members, a word per block of units (a cache line apart): the last step that
claimed it, the last step that finished it, and its packed weights. Each carry gets a second
buffer (the steps alternate), and each block a buffer of its own for its product's operands
gathered by gate (GATES views) and its result.
"""
from __future__ import annotations

from dataclasses import dataclass

from llvmlite import ir

from nncompile.codegen import gemm, parallel, scan_team
from nncompile.codegen.cpu import Layout, Program, _kernel_function
from nncompile.codegen.gemm import libc
from nncompile.codegen.gemm_pack import emit_pack_b
from nncompile.codegen.gemm_rows import SMALL_M
from nncompile.codegen.kernel import picked_index, product, storage_type
from nncompile.codegen.loops import as_i64, for_range
from nncompile.codegen.scan_copy import at_step, memcpy, with_
from nncompile.codegen.scan_team import GATES, UNITS, WHOLE, Block, UnitSplit, members, mixer_block, row_blocks
from nncompile.ir.graph import Node, Value
from nncompile.ir.ops.scan import split_operands

i1 = ir.IntType(1)
i8p = ir.IntType(8).as_pointer()
i64 = ir.IntType(64)

_TEAM_WORDS = 8   # i64s between two shared words: one cache line each


def emit_team(p: Program, node: Node, split: UnitSplit, symbol: str, number: int, prefix: str) -> None:
    """The loop run by a team of threads that splits the units, over the rows of `symbol`."""
    b = p.b
    _check_tokens(p, node, split, number)
    n = node.attrs["num_carry"]
    blocks, share = members(split, split.weight.type.dtype.itemsize)
    rows = dict(zip(p.layout.symbols, p.symbols))[symbol]
    alloc, free = libc(p.module)
    size = split.weight.type.dtype.itemsize
    scratch = [b.call(alloc, [as_i64(64), _lines(b, b.mul(rows, as_i64(split.units * size)))]) for _ in range(n)]
    region = _lines(b, b.mul(rows, as_i64((len(_gathered(split)) + 1) * split.gates * share * size)))
    private = b.call(alloc, [as_i64(64), b.mul(region, as_i64(blocks))])
    words = gemm.entry_alloca(b, ir.ArrayType(i64, _TEAM_WORDS * 3 * blocks))
    words.align = 64
    state = b.bitcast(words, i64.as_pointer())
    for word in range(2 * blocks):
        b.store(as_i64(-1), b.gep(state, [as_i64(word * _TEAM_WORDS)]))
    for block in range(blocks):   # no step at all packs nothing: free(NULL)
        b.store(as_i64(0), _packed_word(b, state, blocks, as_i64(block)))
    fields = gemm.pack_fields(b, [*p.pointers, *p.symbols, *scratch, private, region, state])
    task = _team_task(p, node, split, symbol, prefix, blocks, share)
    b.call(parallel.emit_parallel_for(p.module), [task, fields, as_i64(blocks)])
    for block in range(blocks):
        b.call(free, [b.inttoptr(b.load(_packed_word(b, state, blocks, as_i64(block))), i8p)])
    for buffer in [*scratch, private]:
        b.call(free, [buffer])


def _check_tokens(p: Program, node: Node, split: UnitSplit, number: int) -> None:
    """Every step's tokens of the gathers checked before the team starts (a member cannot stop
    the others midway): one out of the table's range fails the scan, node `number`."""
    b, body = p.b, node.attrs["body"]
    for gather in split.gathers.values():
        table, tokens = gather.inputs
        stacked = node.inputs[body.inputs.index(tokens)]
        rows = as_i64(p.dims(table)[0])
        with for_range(b, product(b, p.dims(stacked)), name="token") as j:
            index = _token(b, gather, p.ptr(stacked), j, rows)
            with b.if_then(b.or_(b.icmp_signed("<", index, as_i64(0)), b.icmp_signed(">=", index, rows)),
                           likely=False):
                p.fail(number)


def _token(b: ir.IRBuilder, gather: Node, tokens: ir.Value, j: ir.Value, rows: ir.Value) -> ir.Value:
    """Token `j` of the gather's tokens at `tokens`, as the i64 row it picks (a negative one from
    the end, where the gather allows)."""
    start = b.bitcast(tokens, storage_type(gather.inputs[1].type.dtype).as_pointer())
    return picked_index(b, start, j, rows, gather.attrs["allow_negative"])


def _lines(b: ir.IRBuilder, nbytes: ir.Value) -> ir.Value:
    """`nbytes` rounded up to whole cache lines (aligned_alloc takes multiples of the alignment)."""
    return b.mul(b.udiv(b.add(nbytes, as_i64(63)), as_i64(64)), as_i64(64))


def _gathered(split: UnitSplit) -> list[Value]:
    """The product's operands read through GATES views, each gathered into the block's buffer."""
    return [v for v in split.mixer.inputs if v is not split.state and v is not split.weight]


def _claimed(b, state, block):
    return b.gep(state, [b.mul(as_i64(block), as_i64(_TEAM_WORDS))])


def _finished(b, state, blocks, block):
    return b.gep(state, [b.mul(b.add(as_i64(block), as_i64(blocks)), as_i64(_TEAM_WORDS))])


def _packed_word(b, state, blocks, block):
    return b.gep(state, [b.mul(b.add(block, as_i64(2 * blocks)), as_i64(_TEAM_WORDS))])


@dataclass
class _Team:
    node: Node
    split: UnitSplit
    symbol: str
    prefix: str
    blocks: int
    share: int
    rows: ir.Value
    scratch: list
    private: ir.Value   # the blocks' own buffers, `region` bytes apart
    region: ir.Value
    state: ir.Value

    def width(self, block: int) -> int:
        return min(self.share, self.split.units - block * self.share)


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
    fields = gemm.unpack_fields(b, ctx, [i8p] * slots + [i64] * symbols + [i8p] * (n + 1) + [i64, i64.as_pointer()])
    full = Program(p.module, b, p.layout, fields[:slots], fields[slots:slots + symbols])
    rows = dict(zip(p.layout.symbols, full.symbols))[symbol]
    team = _Team(node, split, symbol, prefix, blocks, share, rows, fields[slots + symbols:-3], *fields[-3:])
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


@dataclass
class _Member:
    """Where one block's step finds things: the body values' pointers at the step (`at`), its
    first unit, its width, its own buffer."""
    at: Program
    team: _Team
    first: ir.Value
    width: int
    own: ir.Value

    def gathered(self, index: int) -> ir.Value:
        """The buffer of the product's gathered operand `index` (the result's: one past them)."""
        split, b = self.team.split, self.at.b
        slab = b.mul(self.team.rows, as_i64(split.gates * self.width * split.weight.type.dtype.itemsize))
        return b.gep(self.own, [b.mul(slab, as_i64(index))])

    def address(self, view: tuple[Value, int], row: ir.Value) -> ir.Value:
        """The address of a view of a body value in row `row` (any row: one without rows)."""
        value, where = view
        split, b = self.team.split, self.at.b
        size = value.type.dtype.itemsize
        if value is split.mixer.outputs[0]:   # the block's own product, its gates next to each other
            gate = max(where, 0)                # (of one gate, its UNITS)
            place = b.add(b.mul(row, as_i64(split.gates)), as_i64(gate))
            return b.gep(self.gathered(len(_gathered(split))), [b.mul(place, as_i64(self.width * size))])
        base = self.at.ptr(value)
        if where == GATES:   # B, which the product reads packed, or an operand it reads gathered
            gathered = _gathered(split)
            return self.gathered(gathered.index(value)) if value in gathered else base
        if where == WHOLE:
            return base
        column = self.first if where == UNITS else b.add(self.first, as_i64(where * split.units))
        if value in split.gathers:   # the table's row that the row's token picks (checked)
            base = self._table_row(split.gathers[value], row)
        elif value.type.rank == 2 and value.type.shape[0] == self.team.symbol:
            column = b.add(column, b.mul(row, as_i64(value.type.shape[1])))
        return b.gep(base, [b.mul(column, as_i64(size))])

    def _table_row(self, gather: Node, row: ir.Value) -> ir.Value:
        b = self.at.b
        table, tokens = gather.inputs
        rows, columns = self.at.dims(table)
        index = _token(b, gather, self.at.ptr(tokens), row, as_i64(rows))
        return b.gep(self.at.ptr(table), [b.mul(index, as_i64(columns * table.type.dtype.itemsize))])


def _block_step(full: Program, team: _Team, block: ir.Value, step: ir.Value, width: int) -> None:
    """One step of one block of units: its product, its elementwise kernels row by row, its part
    of the new carries (into the other buffer), then the step marked finished for it."""
    b, node, split = full.b, team.node, team.split
    attrs, body = node.attrs, node.attrs["body"]
    n = attrs["num_carry"]
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
        pointers[full.layout.slots[value]] = at_step(full, stacked, t, None)
    for value, stacked in zip(body.outputs[n:], node.outputs[n:]):
        pointers[full.layout.slots[value]] = at_step(full, stacked, t, None)
    for carry, result, spare in zip(body.inputs[:n], results, team.scratch):
        pointers[full.layout.slots[carry]] = b.select(odd, spare, result)
    own = b.gep(team.private, [b.mul(block, team.region)])
    member = _Member(with_(full, pointers=pointers), team, first, width, own)
    _product(member, packed)
    for i, kernel in enumerate(row_blocks(split, body, team.symbol, width)):
        fn = _block_function(member.at, kernel, f"{team.prefix}team{width}.{i}")
        with for_range(b, team.rows, name="row") as row:
            _call(b, fn, [member.address(kernel.views[v], row) for v in _block_values(member.at, kernel)])
    _scatter_results(member, odd, results)
    b.store_atomic(step, _finished(b, team.state, team.blocks, block), "release", 8)


def _call(b: ir.IRBuilder, fn: ir.Function, args: list[ir.Value]) -> None:
    b.call(fn, [b.bitcast(a, arg.type) if a.type != arg.type else a for a, arg in zip(args, fn.args)])


def _product(member: _Member, packed: ir.Value) -> None:
    """The block's product: its operands' gate columns gathered, then one GEMM over all rows."""
    at, team, split = member.at, member.team, member.team.split
    b, size = at.b, split.weight.type.dtype.itemsize
    for i, value in enumerate(_gathered(split)):
        rowed = value.type.rank == 2
        with for_range(b, team.rows if rowed else 1, name="gather") as row:
            into = b.gep(member.gathered(i), [b.mul(row, as_i64(split.gates * member.width * size))])
            for gate in range(split.gates):
                memcpy(at, b.gep(into, [as_i64(gate * member.width * size)]),
                       member.address((value, gate), row), member.width * size)
    _by_rows(b, team.rows, _row_variants(team), lambda rows: _mix(member, packed, rows))


def _row_variants(team: _Team) -> list[int | str]:
    """The row counts the product has a kernel of its own for, the few-rows GEMM's (small, static
    M: no packing, and little code to compile), then the symbol for any other count."""
    few = list(range(1, min(scan_team.TEAM_ROWS, SMALL_M) + 1))
    return few + [team.symbol] * (scan_team.TEAM_ROWS > SMALL_M)


def _by_rows(b: ir.IRBuilder, rows: ir.Value, variants: list[int | str], emit) -> None:
    """emit(variant) for the variant equal to `rows`; the last takes every other count."""
    if len(variants) == 1:
        emit(variants[0])
        return
    with b.if_else(b.icmp_signed("==", rows, as_i64(variants[0]))) as (this, other):
        with this:
            emit(variants[0])
        with other:
            _by_rows(b, rows, variants[1:], emit)


def _mix(member: _Member, packed: ir.Value, rows: int | str) -> None:
    at, team = member.at, member.team
    kernel = mixer_block(team.split, team.symbol, member.width, rows)
    symbols = [rows] if isinstance(rows, str) else []
    fn = _block_function(at, kernel, f"{team.prefix}team{member.width}.mix{'' if symbols else rows}", symbols)
    args = [member.address(kernel.views[v], as_i64(0)) for v in _block_values(at, kernel)]
    _call(at.b, fn, args + [team.rows] * len(symbols) + [packed])


def _scatter_results(member: _Member, odd: ir.Value, results: list[ir.Value]) -> None:
    """The block's units of each new carry into the carries' other buffer, and of each per-step
    result that is the product (the block's own buffer) into the stacked result."""
    at, team = member.at, member.team
    b, node, body = at.b, team.node, team.node.attrs["body"]
    n = node.attrs["num_carry"]
    nbytes = member.width * team.split.weight.type.dtype.itemsize
    row_bytes = as_i64(team.split.units * team.split.weight.type.dtype.itemsize)
    offset = b.mul(member.first, as_i64(team.split.weight.type.dtype.itemsize))
    with for_range(b, team.rows, name="scatter") as row:
        at_row = b.add(offset, b.mul(row, row_bytes))
        for new, result, spare in zip(body.outputs[:n], results, team.scratch):
            into = b.select(odd, result, spare)
            memcpy(at, b.gep(into, [at_row]), member.address((new, UNITS), row), nbytes)
        for value in body.outputs[n:]:
            if value is team.split.mixer.outputs[0]:
                memcpy(at, b.gep(at.ptr(value), [at_row]), member.address((value, UNITS), row), nbytes)


def _block_weights(p: Program, team: _Team, block: ir.Value, step: ir.Value, first: ir.Value,
                   width: int) -> ir.Value:
    """The block's columns [g * U + first, + width) of every gate of the weights, gathered next to
    each other and packed by whichever member runs the block's first step (usually its owner,
    so they sit in its cache), and read from the shared word after."""
    b, weight, gates = p.b, team.split.weight, team.split.gates
    units, columns = weight.type.shape
    size = weight.type.dtype.itemsize
    word = _packed_word(b, team.state, team.blocks, block)
    with b.if_then(b.icmp_signed("==", step, as_i64(0))):
        alloc, free = libc(p.module)
        gathered = b.call(alloc, [as_i64(64), as_i64(-(-units * gates * width * size // 64) * 64)])
        source = b.gep(p.ptr(weight), [b.mul(first, as_i64(size))])
        with for_range(b, units, name="k") as k:
            for gate in range(gates):
                memcpy(p, b.gep(gathered, [b.add(b.mul(k, as_i64(gates * width * size)), as_i64(gate * width * size))]),
                       b.gep(source, [b.add(b.mul(k, as_i64(columns * size)), as_i64(gate * units * size))]),
                       width * size)
        fn = emit_pack_b(p.module, weight.type.dtype)
        panel = b.call(fn, [as_i64(gates * width), as_i64(units),
                            b.bitcast(gathered, storage_type(weight.type.dtype).as_pointer()), as_i64(gates * width)])
        b.call(free, [gathered])
        b.store(b.ptrtoint(panel, i64), word)
    return b.inttoptr(b.load(word), i8p)


def _final_carries(full: Program, team: _Team, length: ir.Value) -> None:
    """An odd number of steps leaves the final carries in the spare buffers: copy them back."""
    b = full.b
    n = team.node.attrs["num_carry"]
    size = b.mul(team.rows, as_i64(team.split.units * team.split.weight.type.dtype.itemsize))
    with b.if_then(b.trunc(length, i1)):
        for result, spare in zip(team.node.outputs[:n], team.scratch):
            memcpy(full, full.ptr(result), spare, size)


def _key(p: Program, block: Block, v: Value) -> tuple:
    """Where a block value lies: its body value's buffer slot and place in it; a GATES view lies
    in the block's own buffer, one per body value."""
    value, where = block.views[v]
    return (value, where) if where == GATES else (p.layout.slots[value], where)


def _block_values(p: Program, block: Block) -> list[Value]:
    """A block kernel's operands and results, one per place it touches, as `_kernel_slots`
    orders them: two views of one place (a result in place of an operand) share."""
    seen, values = set(), []
    for v in [*block.node.outputs, *block.node.inputs]:
        key = _key(p, block, v)
        if key not in seen:
            seen.add(key)
            values.append(v)
    return values


def _block_function(p: Program, block: Block, name: str, symbols: list[str] = ()) -> ir.Function:
    values = _block_values(p, block)
    slot = {v: i for i, v in enumerate(values)}
    for v in [*block.node.outputs, *block.node.inputs]:
        slot[v] = next(slot[u] for u in values if _key(p, block, u) == _key(p, block, v))
    return _kernel_function(p.module, block.node, name, Layout(slot, values, list(symbols)), block.packed)

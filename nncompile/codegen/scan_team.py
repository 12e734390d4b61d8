"""A recurrent loop over a few rows, its units split between the threads for the whole loop.

A recurrent step is one product of the state (R x U, R rows) by the recurrent weights (U x G*U:
G gates of U units) and the gates' elementwise math on R x U values. With few rows (batch-1
inference, small batches) the threads that each run the loop over their own rows (`scan.py`'s
row blocks) would each stream all the weights at every step for a product of a row or two,
and forking and joining at every step for the product alone costs about what it saves. So the
threads run the whole loop as a team (one `parallel_for` around it, `scan_team_emit.py`): the
units are cut into a block per thread, and at every step each block's work is the product of
the whole state by its units' columns in every gate (those columns of the weights gathered and
packed once, by the thread that runs the block first, so they sit in its cache), the
elementwise math of its units in every row and its part of the new carries. A thread claims its
own block first and any block still unclaimed after it, then waits until all have finished the
step: about a barrier a step, but a thread that is late leaves its blocks to the others instead
of holding them up. The carries alternate between two buffers by step, so a block writing its
part of step t + 1's state never overwrites the state another still reads at step t. In effect
this is oneDNN's layout (gates grouped per block of units): the block's columns of each gate are
gathered next to each other, in its packed weights and in a buffer of its own for the
product's other operands and result.

The body must be one product kernel (`mixer`: a carry times an invariant, with an elementwise
epilogue) followed by elementwise loop kernels that read the product's gates through slices
[g*U, (g+1)*U) and otherwise keep units apart: the LSTM, GRU (reset after) and SimpleRNN cells
(whose whole step is the product and its epilogue). Gathers of table rows by the step's tokens
may come first, when only the product's epilogue reads them (`passes/gather_in_scan.py`): each
block then copies its columns from the tokens' rows of the table.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from nncompile.codegen import parallel
from nncompile.codegen.target import vector_lanes
from nncompile.ir.dtypes import DType
from nncompile.ir.graph import Graph, Node, Value
from nncompile.ir.ops.scan import split_operands, step_views
from nncompile.ir.optable import OPS, Fusion
from nncompile.ir.types import TensorType

# Recurrent weights from this size are worth a team: a step then streams at least this much from
# L2 on one thread (~1 us here), against the threads meeting once (~0.25 us, two cores, measured
# as a barrier).
TEAM_BYTES = 1 << 17

# Loops over at most this many rows run as a team that splits the units, more as blocks of rows
# (`scan.py`): from 3 rows of LSTM(128) on the two are even on two idle cores, and the team
# loses when another process takes a core (it waits for the member the OS descheduled).
TEAM_ROWS = 2


@dataclass
class UnitSplit:
    units: int          # U
    gates: int          # G: the product has G * U columns
    mixer: Node         # the product kernel
    state: Value        # its A operand: a carry (S, U)
    weight: Value       # its B operand: an invariant (U, G * U)
    gathers: dict[Value, Node]   # the epilogue's operands that are table rows picked by tokens


def unit_split(node: Node, symbol: str) -> UnitSplit | None:
    """The split of a scan whose rows are `symbol` (see the module's docstring), or None."""
    attrs, body = node.attrs, node.attrs["body"]
    carries, scanned, invariants = split_operands(body.inputs, attrs)
    viewed, written = step_views(node)
    if attrs["axis"] != 0 or set(scanned) - set(viewed) or len(written) != len(body.outputs) - len(carries):
        return None
    gathers = _token_rows(body, scanned, invariants, symbol)
    if len(body.nodes) <= len(gathers) or not _is_kind(body.nodes[len(gathers)], "matmul"):
        return None
    mixer = body.nodes[len(gathers)]
    if any(v not in mixer.inputs for v in gathers):
        return None
    inner = mixer.attrs["body"]
    product = inner.nodes[0]
    if product.attrs["transpose_a"] or product.attrs["transpose_b"] or \
            not all(v in inner.inputs for v in product.inputs):
        return None
    state, weight = (mixer.inputs[inner.inputs.index(v)] for v in product.inputs)
    if state not in carries or weight not in invariants or weight.type.rank != 2 or \
            not weight.type.dtype.is_float or weight.type.dtype is DType.f16:
        return None   # the block products read packed weights, which only float GEMMs have
    units, columns = weight.type.shape
    if not isinstance(units, int) or not isinstance(columns, int) or columns % units or \
            units * columns * weight.type.dtype.itemsize < TEAM_BYTES:
        return None
    split = UnitSplit(units, columns // units, mixer, state, weight, gathers)
    unit_type, gated_type = TensorType(weight.type.dtype, (symbol, units)), TensorType(weight.type.dtype, (symbol, columns))
    if any(v.type != unit_type for v in carries) or mixer.outputs[0].type != gated_type:
        return None
    others = [v for v in mixer.inputs if v is not state and v is not weight]
    if any(v.type.shape not in ((symbol, columns), (columns,)) for v in others) or \
            any(v not in [*scanned, *invariants, *gathers] for v in others) or mixer.inputs.count(state) != 1:
        return None
    cell = after_mixer(split, body)
    made = {v for n in [mixer] * (split.gates == 1) + cell for v in n.outputs}   # one gate: the product is per unit
    if not all(_unit_local(n, split, symbol) for n in cell) or not set(body.outputs) <= made:
        return None
    return split


def after_mixer(split: UnitSplit, body: Graph) -> list[Node]:
    """The body's elementwise kernels, after its gathers and its product."""
    return body.nodes[len(split.gathers) + 1:]


def _token_rows(body: Graph, scanned: list[Value], invariants: list[Value], symbol: str) -> dict[Value, Node]:
    """The leading gathers of rows of a 2-D static invariant table by a step's tokens (S,), each
    read by one node and not returned, by their result (`unit_split` requires that node to be
    the product)."""
    gathers: dict[Value, Node] = {}
    for node in body.nodes:
        if node.op != "gather":
            break
        table, tokens = node.inputs
        readers = [n for n in body.nodes if node.outputs[0] in n.inputs]
        if node.attrs["axis"] != 0 or table not in invariants or table.type.rank != 2 or \
                not all(isinstance(d, int) for d in table.type.shape) or \
                tokens not in scanned or tokens.type.shape != (symbol,) or \
                node.outputs[0] in body.outputs or len(readers) != 1:
            return {}
        gathers[node.outputs[0]] = node
    return gathers


def _is_kind(node: Node, kind: str) -> bool:
    return node.op == "fused" and node.attrs["kind"] == kind


def _gated(v: Value, split: UnitSplit, symbol: str) -> bool:
    return split.gates > 1 and v.type.shape == (symbol, split.units * split.gates)


def _unit_local(node: Node, split: UnitSplit, symbol: str) -> bool:
    """An elementwise loop kernel that keeps units apart, reading gated values by gate."""
    if not _is_kind(node, "loop"):
        return False
    inner, u = node.attrs["body"], split.units
    unit_shapes = {(symbol, u), (u,), ()}
    for outer, v in zip(node.inputs, inner.inputs):
        if _gated(outer, split, symbol):
            if any(_gate_of(n, v, u) is None for n in _users(inner, v)) or v in inner.outputs:
                return False
        elif outer.type.shape not in unit_shapes:
            return False
    for n in inner.nodes:
        if n.op == "slice" and any(_gate_of(n, v, u) is not None for v in n.inputs):
            continue
        if OPS[n.op].fusion is not Fusion.ELEMENTWISE or \
                any(v.type.shape not in unit_shapes for v in [*n.inputs, *n.outputs]) or \
                (n.op == "constant" and n.attrs["value"].size != 1):
            return False
    return all(v.type.shape == (symbol, u) for v in node.outputs)


def _users(graph: Graph, v: Value) -> list[Node]:
    return [n for n in graph.nodes if v in n.inputs]


def _gate_of(n: Node, v: Value, units: int) -> int | None:
    """g when `n` is slice [g*U, (g+1)*U) of `v` along its last axis, else None (bounds as the
    slice's shape rule reads them: negative from the end, an end past it clipped)."""
    a = n.attrs
    if n.op != "slice" or n.inputs[0] is not v or len(a["axes"]) != 1 or a["axes"][0] % v.type.rank != 1 \
            or tuple(a["steps"]) != (1,):
        return None
    start, stop, _ = slice(a["starts"][0], a["ends"][0]).indices(v.type.shape[-1])
    return start // units if start % units == 0 and stop - start == units else None


def members(split: UnitSplit, dtype_size: int) -> tuple[int, int]:
    """(blocks, units per block but the last): a block per thread, of whole vectors, each
    streaming at least half of TEAM_BYTES of weights a step (more threads would meet more often
    than they save)."""
    lanes = vector_lanes(dtype_size)
    vectors = math.ceil(split.units / lanes)
    weight_bytes = split.units * split.units * split.gates * dtype_size
    blocks = min(parallel.num_threads(), vectors, max(1, 2 * weight_bytes // TEAM_BYTES))
    share = math.ceil(vectors / blocks) * lanes
    return math.ceil(split.units / share), share


# --- one member's kernels ---------------------------------------------------------------------
WHOLE, UNITS, GATES = -3, -2, -1
"""Where a block kernel's operand lies in a body value: WHOLE (all of it), UNITS (the member's
units: from u0 in each row), gate g >= 0 (from g * U + u0 in each row), or GATES (the member's
columns of every gate, gathered gate after gate into a buffer of the member's own)."""


@dataclass
class Block:
    """A body kernel over one member's w units: its node (static types but the rows) and, for
    each of its operands and results, the body value it is a view of and where in it (WHOLE,
    UNITS, a gate or GATES). `packed`: its operands read as packed B (the weights' gate columns)."""
    node: Node
    views: dict[Value, tuple[Value, int]]
    packed: list[Value]


def mixer_block(split: UnitSplit, symbol: str, width: int, rows: int | str) -> Block:
    """The member's product over `rows` rows (1, or `symbol`: a kernel for each, the one-row
    GEMM being a path of its own): (rows, U) @ (U, G * w) (+ epilogue), all its gates' columns in
    one product. Its B is typed (U, G * w) but handed over only packed (`scan_team_emit`), its
    other operands and its result are GATES views."""
    mixer, u, gates = split.mixer, split.units, split.gates
    inner = mixer.attrs["body"]
    dtype = split.weight.type.dtype
    sizes = {symbol: rows, u * gates: gates * width}
    types, views = [], []
    for v in mixer.inputs:
        if v is split.state:
            types.append(TensorType(dtype, (rows, u)))
            views.append((v, WHOLE))
        elif v is split.weight:
            types.append(TensorType(dtype, (u, gates * width)))
            views.append((v, GATES))
        else:
            types.append(_sizes(v.type, sizes))
            views.append((v, GATES))
    body = _rebuild(inner, list(zip(inner.inputs, types)), sizes)
    outer = [Value(t) for t in types]
    return _block_node(mixer, body, outer, views, [(mixer.outputs[0], GATES)],
                       [TensorType(dtype, (rows, gates * width))], packed=[split.weight])


def row_blocks(split: UnitSplit, body: Graph, symbol: str, width: int) -> list[Block]:
    """The member's elementwise kernels after the product, each over one row of its units."""
    return [_loop_block(n, split, symbol, width) for n in after_mixer(split, body)]


def _sizes(t: TensorType, sizes: dict) -> TensorType:
    return TensorType(t.dtype, tuple(sizes.get(d, d) for d in t.shape))


def _rebuild(inner: Graph, inputs: list[tuple[Value | None, TensorType]], sizes: dict) -> Graph:
    """`inner` over new inputs, each the old value it stands for (an input, or a gate's slice,
    whose node goes) with its new type; the other nodes keep their ops, their dimensions renamed
    by `sizes`."""
    g = Graph(inner.name)
    remap: dict[Value, Value] = {}
    for i, (old, t) in enumerate(inputs):
        remap[old] = g.add_input(f"arg{i}", t)
    aliases = {old for old, _ in inputs} - set(inner.inputs)
    for n in inner.nodes:
        if n.outputs[0] in aliases:
            continue
        new = g.append(Node(n.op, [remap[v] for v in n.inputs], n.attrs,
                            [_sizes(v.type, sizes) for v in n.outputs], n.loc))
        remap.update(zip(n.outputs, new.outputs))
    g.set_outputs([remap[v] for v in inner.outputs])
    return g


def _block_node(node: Node, body: Graph, outer: list[Value], views: list[tuple[Value, int]],
                result_views: list[tuple[Value, int]], result_types: list[TensorType],
                packed: list[Value] = ()) -> Block:
    block = Node("fused", outer, {**node.attrs, "body": body}, result_types, node.loc)
    return Block(block, {**dict(zip(outer, views)), **dict(zip(block.outputs, result_views))},
                 [outer[i] for i, v in enumerate(views) if v[0] in packed])


def _loop_block(node: Node, split: UnitSplit, symbol: str, width: int) -> Block:
    """An elementwise kernel over one row of one member's units, each gate it slices an operand
    of its own (rows differ only by where they lie: one kernel, called for each row)."""
    inner, u = node.attrs["body"], split.units
    sizes = {symbol: 1, u: width}
    inputs, views = [], []
    for outer, v in zip(node.inputs, inner.inputs):
        if _gated(outer, split, symbol):
            for n in _users(inner, v):
                inputs.append((n.outputs[0], TensorType(v.type.dtype, (1, width))))
                views.append((outer, _gate_of(n, v, u)))
        else:
            inputs.append((v, _sizes(v.type, sizes)))
            views.append((outer, UNITS if v.type.rank else WHOLE))
    body = _rebuild(inner, inputs, sizes)
    outer = [Value(t) for _, t in inputs]
    return _block_node(node, body, outer, views, [(v, UNITS) for v in node.outputs],
                       [_sizes(v.type, sizes) for v in node.outputs])

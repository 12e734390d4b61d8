"""The `scan` op: a loop over one axis of its scanned operands, one step of it held as a region.

    %5:2 = scan(%h0, %xs, %u) {axis=1, num_carry=1, num_scanned=1} : (f32[?,8], f32[?,T,8]) {
    ^body(%h: f32[?,8], %x: f32[?,8], %u: f32[8,8]):
      %0 = matmul(%h, %u) : f32[?,8]
      %1 = add(%x, %0) : f32[?,8]
      %2 = tanh(%1) : f32[?,8]
      return %2, %2
    }

Operands, in order: `num_carry` carries (the initial state), `num_scanned` scanned arrays (one
slice along `axis` per step; all as long along it: that length is the trip count, a static size
or a symbol), then invariants (read whole by every step: weights). The body takes one input per
operand: a carry's type, a slice's type (the operand's without `axis`), an invariant's type. It
returns the new carries (their types unchanged), then any per-step outputs. The node's results
are the final carries, then each per-step output stacked along `axis`.

Step t reads slice t and writes slice t of the stacked outputs. Steps run t = 0, 1, ..., or
backwards from the last when `reverse` is set (as JAX's `lax.scan(reverse=True)`): reversing
changes the order of the carried computation, not where results land.

`cell` ("" unless set) names the recurrent cell the loop is, such as "lstm:sigmoid,tanh", when
a recurrent layer built it: its operands are then those `nncompile.ir.cells` describes (checked
here), so an exporter can write the loop as ONNX's LSTM, GRU or RNN operator.

The body is a program (Region.PROGRAM): passes simplify, fuse and schedule it as a graph of its
own, the memory plan gives its values buffers that every step reuses, and code generation emits
its kernels inside one native loop, so compile time does not depend on the trip count.

The VJP is a reverse scan (as JAX transposes scan): the forward scan gains per-step outputs, the
values the backward body reads (residuals), and a second scan runs the body's backward pass over
them from the last step to the first, carrying the cotangents of the carries and summing those
of the invariants.
"""
from __future__ import annotations

import numpy as np

from nncompile.ir.cells import check_cell_operands, parse_cell
from nncompile.ir.errors import IRError, ShapeError
from nncompile.ir.graph import Graph
from nncompile.ir.ops.fused import check_symbols_bound
from nncompile.ir.optable import OPS, Attr, AttrKind, Fusion, Region, RegionMemory, defop
from nncompile.ir.types import Dim, TensorType, bind_shape, resolve_shape


def slice_type(t: TensorType, axis: int) -> TensorType:
    """The type of one step's slice of a scanned operand of type `t`."""
    return TensorType(t.dtype, t.shape[:axis] + t.shape[axis + 1:])


def stacked_type(t: TensorType, axis: int, length: Dim) -> TensorType:
    """The type of a per-step output of type `t` stacked over `length` steps."""
    return TensorType(t.dtype, t.shape[:axis] + (length,) + t.shape[axis:])


def split_operands(items: list, attrs: dict) -> tuple[list, list, list]:
    """(carries, scanned, invariants) of a scan's operands (or of its body's inputs)."""
    n, m = attrs["num_carry"], attrs["num_scanned"]
    return items[:n], items[n:n + m], items[n + m:]


def _check_counts(count: int, body: Graph, attrs: dict) -> None:
    n, m = attrs["num_carry"], attrs["num_scanned"]
    if n < 0 or m < 1:
        raise ShapeError(f"num_carry is {n} and num_scanned {m}; expected num_carry >= 0 and "
                         f"num_scanned >= 1 (the scanned operands give the trip count)")
    if n + m > count:
        raise ShapeError(f"has {count} operands, fewer than num_carry + num_scanned = {n + m}")
    if count != len(body.inputs):
        raise ShapeError(f"takes {len(body.inputs)} operands, one per body input, got {count}")
    if len(body.outputs) < n:
        raise ShapeError(f"the body returns {len(body.outputs)} values; it must return the "
                         f"{n} new carries first")
    for v in body.inputs:
        if v.is_param:
            raise ShapeError(f"body input {v.name!r} is a parameter; body inputs are plain data inputs")


def _trip_count(scanned: list[TensorType], axis: int) -> Dim:
    for i, t in enumerate(scanned):
        if not 0 <= axis < t.rank:
            raise ShapeError(f"scanned operand {i} ({t}) has no axis {axis}")
    lengths = {t.shape[axis] for t in scanned}
    if len(lengths) != 1:
        raise ShapeError(f"the scanned operands differ in length along axis {axis}: "
                         f"{', '.join(str(t) for t in scanned)}")
    return lengths.pop()


def _scan_rule(ts: list[TensorType], attrs: dict) -> list[TensorType]:
    body, axis = attrs["body"], attrs["axis"]
    _check_counts(len(ts), body, attrs)
    carries, scanned, _ = split_operands(ts, attrs)
    length = _trip_count(scanned, axis)
    expected = [*carries, *(slice_type(t, axis) for t in scanned), *ts[len(carries) + len(scanned):]]
    for i, (want, v) in enumerate(zip(expected, body.inputs)):
        if v.type != want:
            raise ShapeError(f"operand {i} makes body input {v.name!r} {want}, but it is declared {v.type}")
    for i, (t, v) in enumerate(zip(carries, body.outputs)):
        if v.type != t:
            raise ShapeError(f"body result {i} (new carry {i}) is {v.type}; the carry is {t}")
    per_step = body.outputs[len(carries):]
    for i, v in enumerate(per_step):
        if axis > v.type.rank:
            raise ShapeError(f"per-step result {i} ({v.type}) cannot be stacked along axis {axis}")
    check_symbols_bound(body)
    if attrs["cell"]:
        check_cell_operands(parse_cell(attrs["cell"]), attrs, *split_operands(ts, attrs))
    return [*carries, *(stacked_type(v.type, axis, length) for v in per_step)]


def _scan_reference(xs: list[np.ndarray], attrs: dict) -> list[np.ndarray]:
    # Deferred import: the runtime imports the IR, so the IR reaches the runtime only when run.
    from nncompile.runtime.reference import run

    body, axis = attrs["body"], attrs["axis"]
    carries, scanned, invariants = split_operands(list(xs), attrs)
    length = scanned[0].shape[axis]
    per_step: list[list[np.ndarray]] = [[] for _ in body.outputs[len(carries):]]
    steps = range(length - 1, -1, -1) if attrs["reverse"] else range(length)
    for t in steps:
        outs = run(body, [*carries, *(np.take(x, t, axis=axis) for x in scanned), *invariants], params={})
        carries = outs[:len(carries)]
        for column, y in zip(per_step, outs[len(carries):]):
            column.append(y)
    if attrs["reverse"]:
        per_step = [column[::-1] for column in per_step]
    if length == 0:
        return [*carries, *_empty_outputs(body, list(xs), attrs)]
    return [*carries, *(np.stack(column, axis=axis) for column in per_step)]


def _empty_outputs(body: Graph, xs: list[np.ndarray], attrs: dict) -> list[np.ndarray]:
    """The stacked per-step outputs of a scan of no steps: empty along `axis`."""
    env: dict[str, int] = {}
    n, axis = attrs["num_carry"], attrs["axis"]
    for i, (v, x) in enumerate(zip(body.inputs, xs)):
        shape = x.shape if not n <= i < n + attrs["num_scanned"] else x.shape[:axis] + x.shape[axis + 1:]
        bind_shape(v.type.shape, shape, env, f"body input {v.name!r}")
    outs = []
    for v in body.outputs[n:]:
        shape = resolve_shape(v.type.shape, env)
        outs.append(np.zeros(shape[:axis] + (0,) + shape[axis:], v.type.dtype.numpy))
    return outs


def _scan_vjp(b, node, cts):
    # Deferred import: autodiff builds on the op table, so the op reaches it only when run.
    from nncompile.passes.scan_vjp import scan_vjp

    if any(n.op == "scan" for n in node.attrs["body"].nodes):
        raise IRError(f"gradients: {node.describe()} holds another scan in its body; "
                      "gradients of nested scans are not supported")
    return scan_vjp(b, node, cts)


def program_memory(node) -> list[RegionMemory]:
    """Where the body's values live while the loop runs: a carry in the node's result for it
    (which holds the final state when the loop ends), an invariant in its operand. Along axis 0
    a step's slice is contiguous, so a scanned input is slice t of its operand in place, and a
    per-step result is written straight into slice t of its stacked result; along other axes
    each step's slices are copied to and from buffers of their own. The loop runs in concurrent
    blocks of rows when `independent_rows` finds a row symbol."""
    memory = _step_memory(node)
    memory.concurrent = _row_symbol(node, memory) is not None
    return [memory]


def _step_memory(node) -> RegionMemory:
    body, attrs = node.attrs["body"], node.attrs
    n = attrs["num_carry"]
    carries, scanned, invariants = split_operands(body.inputs, attrs)
    outer_carries, outer_scanned, outer_invariants = split_operands(node.inputs, attrs)
    memory = RegionMemory(shares=[*zip(carries, node.outputs[:n]), *zip(invariants, outer_invariants)])
    in_place = attrs["axis"] == 0
    for inner, outer in zip(scanned, outer_scanned):
        if in_place and outer not in outer_invariants and outer not in outer_carries:
            memory.shares.append((inner, outer))
        else:
            memory.own.append(inner)
    roots = [_buffer_of(v) for v in body.outputs[n:]]
    for k, (v, root) in enumerate(zip(body.outputs[n:], roots)):
        if in_place and root.producer is not None and roots.count(root) == 1:
            memory.results_in.append((v, node.outputs[n + k]))
    return memory


def _buffer_of(v):
    """The value whose buffer `v` lies in: a reshape is a view of its operand. A per-step result
    is written into its slice in place only when a kernel of the body computes that buffer and
    no other per-step result lies in it (the same value twice, or reshaped: both would claim
    the one buffer); a reshaped body input (a carry a ConvLSTM's backward loop saves as rows)
    lies where that input lies, which the step must not move."""
    while v.producer is not None and v.producer.op == "reshape":
        v = v.producer.inputs[0]
    return v


def step_views(node) -> tuple[list, list]:
    """(scanned inputs, per-step results) that are slices of the node's operands and results
    in place, from `program_memory`."""
    memory = program_memory(node)[0]
    scanned = split_operands(node.attrs["body"].inputs, node.attrs)[1]
    return [inner for inner, _ in memory.shares if inner in scanned], [v for v, _ in memory.results_in]


def independent_rows(node) -> str | None:
    """The symbol S that every carry has as its first dimension when row r of each step's results
    depends on row r of its carries and slices alone (and on whole invariants): then the loop can
    run as independent loops over blocks of rows, one per thread, with no synchronisation between
    steps (a recurrent layer over a batch). None when the body mixes rows (a sum over them, a
    product that contracts them), S appears anywhere but first, or the loop runs along an axis
    other than 0 (its slices are copied to and from buffers of their own). Along axis 0 a per-step
    result that is not written in place (a carry saved for the backward loop, a value returned
    twice) is copied by each block into its rows of slice t."""
    return _row_symbol(node, _step_memory(node))


def _row_symbol(node, memory: RegionMemory) -> str | None:
    attrs, body = node.attrs, node.attrs["body"]
    n = attrs["num_carry"]
    if memory.own or attrs["axis"] != 0 and len(body.outputs) > n:
        return None
    carries, scanned, invariants = split_operands(body.inputs, attrs)
    first = {v.type.shape[0] if v.type.rank else None for v in carries}
    if len(first) != 1 or not isinstance(symbol := first.pop(), str):
        return None
    if _trip_count([v.type for v in split_operands(node.inputs, attrs)[1]], attrs["axis"]) == symbol:
        return None
    if any(symbol in v.type.shape for v in invariants):
        return None
    if not all(_leading(v.type, symbol) for v in [*scanned, *body.outputs]):
        return None
    return symbol if _rows_kept(body, symbol) else None


def _leading(t: TensorType, symbol: str) -> bool:
    """S is the first dimension of `t` and no other."""
    return t.rank > 0 and t.shape[0] == symbol and symbol not in t.shape[1:]


def _rows_kept(graph: Graph, symbol: str) -> bool:
    """Every node of `graph` (and of its fused bodies) maps row r of its operands with S to row r
    of its results; values without S are row-free (weights, constants)."""
    for node in graph.nodes:
        rowed_in = [v for v in node.inputs if symbol in v.type.shape]
        values = [*rowed_in, *(v for v in node.outputs if symbol in v.type.shape)]
        if not all(_leading(v.type, symbol) for v in values):
            return False
        if not rowed_in:
            continue
        if not all(_leading(v.type, symbol) for v in node.outputs):
            return False
        if not _row_rule(node, rowed_in, symbol):
            return False
    return True


def _row_rule(node, rowed_in: list, symbol: str) -> bool:
    """Whether `node`, whose operands `rowed_in` carry S first, keeps rows apart."""
    opdef, attrs = OPS[node.op], node.attrs
    rank = node.outputs[0].type.rank
    if opdef.fusion in (Fusion.ELEMENTWISE, Fusion.BROADCAST):
        return all(v.type.rank == rank for v in rowed_in)   # S aligned with S, never broadcast
    if node.op == "fused":
        return _rows_kept(attrs["body"], symbol)
    if node.op == "matmul":
        return rowed_in == [node.inputs[0]] and rank == 2 and not attrs["transpose_a"]
    if node.op == "gather":
        return rowed_in == [node.inputs[1]]
    if node.op in ("reshape", "cast"):
        return True
    if node.op == "transpose":
        return attrs["perm"][0] == 0
    if node.op == "slice":
        return 0 not in [a % node.inputs[0].type.rank for a in attrs["axes"]]
    if node.op in ("concat", "softmax", "log_softmax", "argmax", "argmin"):
        return attrs["axis"] % node.inputs[0].type.rank != 0
    if opdef.fusion is Fusion.REDUCTION:
        return 0 not in [a % node.inputs[0].type.rank for a in attrs["axes"]]
    return False


def add_invariant(node, value):
    """Pass `value` (of the graph holding `node`) to every step as a new last operand; returns
    the body input that receives it."""
    body = node.attrs["body"]
    taken = {v.name for v in body.inputs}
    name = next(f"inv{i}" for i in range(len(taken) + 1) if f"inv{i}" not in taken)
    node.inputs.append(value)
    node.attrs["cell"] = ""   # the operands are no longer the ones the cell names
    return body.add_input(name, value.type)


def prune_results(node, live: set) -> dict:
    """Drop the per-step results nothing reads, and keep one of several that stack the same body
    value; returns each merged result -> the result standing for it (DCE asks)."""
    n = node.attrs["num_carry"]
    body = node.attrs["body"]
    kept: dict = {}
    merged = {}
    for v, result in zip(body.outputs[n:], node.outputs[n:]):
        if result not in live:
            continue
        if v in kept:
            merged[result] = kept[v]
        else:
            kept[v] = result
    if len(kept) == len(node.outputs) - n:
        return merged
    body.set_outputs([*body.outputs[:n], *kept])
    node.outputs = [*node.outputs[:n], *kept.values()]
    for index, result in enumerate(node.outputs):
        result.index = index
    return merged


SCAN = defop("scan", inputs=("operands",), variadic=True, num_outputs=None, fusion=Fusion.OPAQUE,
             region=Region.PROGRAM, infer=_scan_rule, reference=_scan_reference,
             attrs={"body": Attr(AttrKind.GRAPH), "num_carry": Attr(AttrKind.INT),
                    "num_scanned": Attr(AttrKind.INT), "axis": Attr(AttrKind.INT, 0),
                    "reverse": Attr(AttrKind.BOOL, False), "cell": Attr(AttrKind.STR, "")},
             doc="a loop over `axis` of the scanned operands; `body` is one step (carries, slices, "
                 "invariants -> new carries, per-step outputs); `cell` names the recurrent cell it "
                 "is, if it is one (ir/cells.py)")
SCAN.vjp = _scan_vjp
SCAN.extra["program_memory"] = program_memory
SCAN.extra["add_invariant"] = add_invariant
SCAN.extra["prune_results"] = prune_results

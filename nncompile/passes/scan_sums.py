"""scan-sums: a sum over the steps of a loop's per-step result is carried by the loop.

    %s:2 = scan(%c0, ...) {num_carry=1}              %z = broadcast(%zero) {shape=[?,512]}
    ^step(%c, ...):                                  %s:3 = scan(%c0, %z, ...) {num_carry=2}
      ... return %c1, %y                      ->     ^step(%c, %acc, ...):
    %b = reduce_sum(%s#1) {axes=[0, 1]}                ... %acc1 = add(%acc, %y)
                                                       return %c1, %acc1, %y
                                                     %b = reduce_sum(%s#1) {axes=[0]}

when the sum runs over the loop's axis. A recurrent layer's bias gradient is this: the sum of
the gates' gradient (the backward loop's per-step result, 6,400 rows of 512 for the tutorial's
LSTM at batch 64, 13 MB) over steps and rows. Summed after the loop, those 13 MB are read back
from memory once more; added up at each step, the step's values are read while in cache, and
only one row per sequence is left to sum. The stacked result stays when anything else reads it
(the weight gradients do). Rounding differs from a sum after the loop, as any reordered sum (an
f16 sum loses as much precision either way).
"""
from __future__ import annotations

import itertools

from nncompile.ir.builder import Builder
from nncompile.ir.graph import Graph, Node, Value
from nncompile.ir.types import normalize_axis
from nncompile.passes.manager import register_pass
from nncompile.passes.rewrite import Rewriter, sweep


def _summed_result(node: Node, graph_symbols: set) -> tuple[Node, int] | None:
    """(scan, position of its per-step result) when `node` is a reduce_sum of a float per-step
    result over the loop's axis whose step type the graph can make zeros of; else None."""
    if node.op != "reduce_sum" or node.attrs["keepdims"]:
        return None
    stacked = node.inputs[0]
    scan = stacked.producer
    if scan is None or scan.op != "scan" or stacked.index < scan.attrs["num_carry"]:
        return None
    if not stacked.type.dtype.is_float:
        return None
    axes = {normalize_axis(a, stacked.type.rank) for a in node.attrs["axes"]}
    step = scan.attrs["body"].outputs[stacked.index]
    if scan.attrs["axis"] not in axes or not all(isinstance(d, int) or d in graph_symbols for d in step.type.shape):
        return None
    return scan, stacked.index


def _pieces(body: Graph, step: Value) -> tuple[list[Value], int | None]:
    """The values summed separately for `step`: the pieces it is the concat of (then also the
    concat's axis), or itself. Apart, each piece's sum is added where the piece is computed
    (the LSTM's four gates' gradients, one fused loop over a gate's width); the concat's width
    would make an add of its own a step."""
    node = step.producer
    if node is not None and node.op == "concat" and node in body.nodes:
        return list(node.inputs), node.attrs["axis"]
    return [step], None


def _carry_sum(rw: Rewriter, scan: Node, position: int) -> Value:
    """Give `scan` (already among the rewritten nodes) new carries that sum per-step result
    `position`, their zeros made just before it; the total after the loop."""
    body, n = scan.attrs["body"], scan.attrs["num_carry"]
    pieces, axis = _pieces(body, body.outputs[position])
    zeros = Builder(Graph("zeros"))
    with zeros.loc(scan.loc):
        starts = [zeros.broadcast(zeros.constant(0.0, v.type.dtype), shape=v.type.shape) for v in pieces]
    at = rw.nodes.index(scan)
    rw.nodes[at:at] = zeros.graph.nodes
    taken = {v.name for v in body.inputs}
    names = (f"sum{i}" for i in itertools.count() if f"sum{i}" not in taken)
    totals = [Value(v.type, name=name) for v, name in zip(pieces, names)]
    added = [Node("add", [total, v], {}, [v.type], scan.loc) for total, v in zip(totals, pieces)]
    body.nodes.extend(added)
    body.inputs[n:n] = totals
    body.set_outputs([*body.outputs[:n], *(a.outputs[0] for a in added), *body.outputs[n:]])
    scan.inputs[n:n] = starts
    scan.outputs[n:n] = [Value(v.type, producer=scan) for v in pieces]
    for index, result in enumerate(scan.outputs):
        result.index = index
    scan.attrs["num_carry"] = n + len(pieces)
    scan.attrs["cell"] = ""   # the operands are no longer the ones the cell names
    finals = scan.outputs[n:n + len(pieces)]
    return finals[0] if axis is None else rw.emit("concat", finals, scan.loc, axis=axis)


@register_pass("scan-sums", doc="A sum over a loop's steps of a per-step result is carried by the "
                                "loop (an RNN's bias gradient: no re-read of every step's gates).")
def scan_sums(graph: Graph) -> Graph:
    symbols = {d for v in graph.inputs for d in v.type.shape if not isinstance(d, int)}

    def carried(rw: Rewriter, node: Node) -> Value | None:
        found = _summed_result(node, symbols)
        if found is None:
            return None
        scan, position = found
        axis, rank = scan.attrs["axis"], node.inputs[0].type.rank
        total = _carry_sum(rw, scan, position)
        left = [a - (a > axis) for a in sorted({normalize_axis(a, rank) for a in node.attrs["axes"]}) if a != axis]
        return rw.emit("reduce_sum", [total], node.loc, axes=left) if left else total

    return sweep(graph, carried)

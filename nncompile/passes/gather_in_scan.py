"""gather-in-scan: a loop over rows gathered from a table gathers each step's rows itself.

    %g = gather(%table, %tokens) : f32[T,?,W]             %s = scan(..., %tokens, ..., %table) {
    %s = scan(..., %g, ...) {                               ^step(..., %tok: i32[?], ..., %tab: f32[V,W]):
    ^step(..., %x: f32[?,W], ...):                  ->        %x = gather(%tab, %tok) : f32[?,W]
      ... %x ...                                              ... %x ...

when the loop runs along an axis of the indices and nothing else reads the gathered array. The
tutorial's Embedding -> LSTM after gather-first is exactly this: the table's product with the
input weights, gathered by token. Gathered ahead of the loop, 64 sequences of 100 tokens make
an array of 6,400 rows of 512 (13 MB) that is written once and read back once a step later,
long after it left the cache; gathered in the loop, each step copies its 64 rows next to the
step's product, which reads them while they are in cache. The values are the same ones.
"""
from __future__ import annotations

from nncompile.ir.graph import Graph, Node, Value
from nncompile.ir.ops.scan import add_invariant, slice_type
from nncompile.passes.manager import register_pass
from nncompile.passes.rewrite import users


def _gathered_operand(node: Node, count: dict[Value, int]) -> int | None:
    """The position of a scanned operand that a gather along the table's first axis makes,
    read by nothing else, when the loop runs along an axis of its indices; else None."""
    attrs = node.attrs
    n, m = attrs["num_carry"], attrs["num_scanned"]
    for position in range(n, n + m):
        operand = node.inputs[position]
        gather = operand.producer
        if gather is None or gather.op != "gather" or gather.attrs["axis"] != 0 or count[operand] != 1:
            continue
        if attrs["axis"] < gather.inputs[1].type.rank:
            return position
    return None


def _sink(node: Node, position: int) -> None:
    """Make scanned operand `position` the gather's indices, and the gather a step of the body."""
    body = node.attrs["body"]
    gather = node.inputs[position].producer
    table, indices = gather.inputs
    old = body.inputs[position]
    tokens = Value(slice_type(indices.type, node.attrs["axis"]), name=old.name)
    body.inputs[position] = tokens
    node.inputs[position] = indices
    rows = Node("gather", [add_invariant(node, table), tokens], gather.attrs, [old.type], gather.loc)
    for inner in body.nodes:
        inner.inputs = [rows.outputs[0] if v is old else v for v in inner.inputs]
    body.outputs = [rows.outputs[0] if v is old else v for v in body.outputs]
    body.nodes.insert(0, rows)


@register_pass("gather-in-scan", doc="A loop over gathered rows gathers each step's rows itself "
                                     "(no array of every step's rows is made ahead of the loop).")
def gather_in_scan(graph: Graph) -> Graph:
    count = users(graph)
    for node in graph.nodes:
        if node.op != "scan":
            continue
        while (position := _gathered_operand(node, count)) is not None:
            _sink(node, position)
            count = users(graph)
    return graph

"""gather-first: rows gathered from a table and then multiplied by weights are the table's product
with the weights, gathered.

    matmul(gather(T, i), W)  ->  gather(matmul(T, W), i)
    add(gather(P, i), b)     ->  gather(add(P, b), i)      (P made from weights alone, b a row)

for a 2-D table T and weights W and b that are parameters or constants, in a graph that updates
no parameter (inference): an Embedding followed by a recurrent layer's input projection or by a
Dense layer. What the rewrite leaves ahead of the gather is made from weights alone, so the
runtime makes it once while the weights stay unchanged (`passes/prepare.py`) and each call only
gathers its rows: the tutorial's Embedding(10000, 128) -> LSTM(128) then gathers 6,400 rows of
512 at batch 64, where it multiplied 6400 x 128 by 128 x 512.

The table's product costs vocabulary x width of memory and one product per change of the
weights, so the rewrite is made only when that product is at most MAX_BYTES, and only when it
costs at least `prepare.PREPARED_FLOPS` (what is prepared once; a cheaper one would be made at
every call). A row's sums are the same products as before, but not promised to be summed in the
same order, so the pass is in the inference pipeline only.
"""
from __future__ import annotations

from nncompile.ir.graph import Graph, Node, Value
from nncompile.passes.manager import register_pass
from nncompile.passes.prepare import PREPARED_FLOPS, weight_nodes
from nncompile.passes.rewrite import Rewriter, sweep

MAX_BYTES = 64 << 20     # the largest table product kept (the tutorial's: 10000 x 512 f32, 20 MB)


def _gathered_rows(v: Value) -> Node | None:
    """The gather making `v` when it takes whole rows of a 2-D table (axis 0)."""
    node = v.producer
    if node is None or node.op != "gather" or node.attrs["axis"] != 0 or node.inputs[0].type.rank != 2:
        return None
    return node


def _product(rw: Rewriter, node: Node, weights: set[Value]) -> Value | None:
    a, w = node.inputs
    gather = _gathered_rows(a)
    if gather is None or node.attrs["transpose_a"] or w.type.rank != 2 or w not in weights:
        return None
    table, indices = gather.inputs
    if table not in weights or not a.type.dtype.is_float:
        return None
    (rows, depth), n = table.type.shape, w.type.shape[0] if node.attrs["transpose_b"] else w.type.shape[1]
    if not all(isinstance(d, int) for d in (rows, depth, n)) or rows * n * a.type.dtype.itemsize > MAX_BYTES \
            or 2 * rows * depth * n < PREPARED_FLOPS:
        return None
    product = rw.emit("matmul", [table, w], node.loc, transpose_b=node.attrs["transpose_b"])
    weights.add(product)
    return rw.emit("gather", [product, indices], gather.loc, **gather.attrs)


def _row_add(rw: Rewriter, node: Node, weights: set[Value]) -> Value | None:
    for position in (0, 1):
        gather, row = _gathered_rows(node.inputs[position]), node.inputs[1 - position]
        if gather is None:
            continue
        table = gather.inputs[0]
        # a bare parameter table stays as it is (nothing to save); b must be a row of the table
        if table.producer is None or table not in weights or row not in weights \
                or row.type.rank > 2 or row.type.shape[-1:] != table.type.shape[-1:] \
                or any(d != 1 for d in row.type.shape[:-1]) or row.type.dtype != table.type.dtype:
            continue
        added = rw.emit("add", [table, row] if position == 0 else [row, table], node.loc)
        weights.add(added)
        return rw.emit("gather", [added, gather.inputs[1]], gather.loc, **gather.attrs)
    return None


@register_pass("gather-first", doc="A gathered table times weights (and plus a bias) -> the table's "
                                   "product, gathered: made once while the weights are unchanged "
                                   "(inference only).")
def gather_first(graph: Graph) -> Graph:
    if graph.updates:
        return graph
    rules = {"matmul": _product, "add": _row_add}
    # what is made from parameters and constants alone (the products made here join it)
    weights = set(graph.param_inputs) | {v for n in weight_nodes(graph, hoistable=False) for v in n.outputs}

    def rule(rw: Rewriter, node: Node) -> Value | None:
        fn = rules.get(node.op)
        return fn(rw, node, weights) if fn is not None else None

    return sweep(graph, rule)

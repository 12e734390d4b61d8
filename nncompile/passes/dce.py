"""Dead code elimination: drop nodes whose results reach no graph output.

An op may also shed results of a live node (its `prune_results` rule): a scan drops the per-step
results nothing reads and merges those that stack the same body value, so its loop stores fewer
arrays."""
from __future__ import annotations

from nncompile.ir.graph import Graph, Value
from nncompile.ir.optable import get_op
from nncompile.passes.manager import register_pass


@register_pass("dce", doc="Remove nodes whose results reach no graph output.")
def dce(graph: Graph) -> Graph:
    """Keep the nodes some output depends on; the graph's inputs stay (they are its signature)."""
    live = set(graph.outputs)
    kept = []
    merged: dict[Value, Value] = {}
    # One backward sweep suffices: nodes are in topological order, so every user of a value
    # is visited before its producer.
    for node in reversed(graph.nodes):
        if any(v in live for v in node.outputs):
            prune = get_op(node.op).extra.get("prune_results")
            if prune is not None:
                merged.update(prune(node, live))
            kept.append(node)
            live.update(node.inputs)
    kept.reverse()
    graph.nodes = kept
    if merged:
        for node in kept:
            node.inputs = [merged.get(v, v) for v in node.inputs]
        graph.outputs = [merged.get(v, v) for v in graph.outputs]
    return graph

"""Dead code elimination: drop nodes whose results reach no graph output."""
from __future__ import annotations

from nncompile.ir.graph import Graph
from nncompile.passes.manager import register_pass


@register_pass("dce", doc="Remove nodes whose results reach no graph output.")
def dce(graph: Graph) -> Graph:
    """Keep the nodes some output depends on; the graph's inputs stay (they are its signature)."""
    live = set(graph.outputs)
    kept = []
    # One backward sweep suffices: nodes are in topological order, so every user of a value
    # is visited before its producer.
    for node in reversed(graph.nodes):
        if any(v in live for v in node.outputs):
            kept.append(node)
            live.update(node.inputs)
    kept.reverse()
    graph.nodes = kept
    return graph

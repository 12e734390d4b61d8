"""Common subexpression elimination: a node equal to an earlier one is replaced by it.

Two nodes are equal when they have the same op, the same (already deduplicated) inputs, the same
attributes and the same result types; constants are equal when their arrays are (dtype, shape
and bytes, so 0.0 and -0.0 stay apart). Operands of commutative ops are compared as a set.

Every op in the table is a pure function of its inputs and attributes, so this is exact. That
includes random_uniform: a draw is a hash of (seed, key, element index), so two draws with the
same seed, key and shape are the same tensor (ir/ops/grad.py). Nodes with regions (`fused`,
`scan`) are left alone.
"""
from __future__ import annotations

from nncompile.ir.graph import Graph, Node, Value
from nncompile.ir.optable import has_region
from nncompile.passes.manager import register_pass
from nncompile.passes.rewrite import Rewriter, sweep

# a + b == b + a bit for bit in IEEE arithmetic; maximum/minimum are left out because NaN and
# signed-zero handling may depend on the operand order in a backend.
COMMUTATIVE = frozenset({"add", "mul", "equal", "not_equal", "logical_and", "logical_or"})


def _attr_key(value) -> tuple:
    if hasattr(value, "dtype") and hasattr(value, "tobytes"):
        return ("array", value.dtype.str, value.shape, value.tobytes())
    return (type(value).__name__, repr(value))


def _node_key(node: Node) -> tuple:
    inputs = [id(v) for v in node.inputs]
    if node.op in COMMUTATIVE:
        inputs.sort()
    attrs = tuple(sorted((k, _attr_key(a)) for k, a in node.attrs.items()))
    return node.op, tuple(inputs), attrs, tuple(v.type for v in node.outputs)


@register_pass("cse", doc="Merge nodes that compute the same thing from the same inputs "
                          "(duplicate constants, reshapes, subexpressions of autodiff).")
def cse(graph: Graph) -> Graph:
    """Keep the first of each class of equal nodes, in one forward sweep."""
    seen: dict[tuple, Node] = {}

    def merge(rw: Rewriter, node: Node) -> list[Value] | None:
        if has_region(node):
            return None
        first = seen.setdefault(_node_key(node), node)
        return None if first is node else first.outputs

    return sweep(graph, merge)

"""What the simplifying passes share: a forward sweep that rewrites nodes, and value tests.

A sweep visits the nodes in order. Each node's inputs are first renamed through the replacements
made so far, so a rewrite sees the already-simplified producers of its operands and chains of
rewrites (neg(neg(neg(neg(x))))) resolve in one pass. A rule looks at one node and either keeps
it (returns None) or gives the values that replace its outputs, emitting new nodes through the
`Rewriter` if it needs them.

Graph outputs are renamed too, with one exception: an output is never made a graph input or
another output's value. Both would be correct, but the runtime copies such outputs after each
call and cannot run many steps in one native call with them, so the original node is kept for
that output instead.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from nncompile.ir.graph import Graph, Node, Value
from nncompile.ir.optable import get_op, infer_types, normalize_attrs

Rule = Callable[["Rewriter", Node], "Value | Sequence[Value] | None"]


class Rewriter:
    """The node list being rebuilt and the value renaming of one sweep."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.nodes: list[Node] = []
        self.alias: dict[Value, Value] = {}
        self._replaced: dict[Value, Node] = {}

    def value(self, v: Value) -> Value:
        """`v` after the replacements made so far."""
        return self.alias.get(v, v)

    def emit(self, op: str, inputs: Sequence[Value], loc: str = "", **attrs) -> Value:
        """Append a new single-result node (type-checked by the op's shape rule); its result."""
        opdef = get_op(op)
        where = f"op '{op}'" + (f" of {loc!r}" if loc else "")
        attrs = normalize_attrs(opdef, attrs, where)
        out_types = infer_types(opdef, [v.type for v in inputs], attrs, where)
        node = Node(op, inputs, attrs, out_types, loc)
        self.nodes.append(node)
        return node.outputs[0]

    def replace(self, node: Node, values: Sequence[Value]) -> None:
        """Drop `node`; its results are `values` from now on (types must match)."""
        for old, new in zip(node.outputs, values):
            if old.type != new.type:
                raise AssertionError(f"rewrite of {node.describe()} changes type {old.type} -> {new.type}")
            self.alias[old] = new
            self._replaced[old] = node

    def finish(self) -> Graph:
        """Install the rebuilt nodes and rename the outputs (see the module doc)."""
        graph = self.graph
        inputs, taken, outputs = set(graph.inputs), set(), []
        revived: list[Node] = []
        for v in graph.outputs:
            new = self.value(v)
            if new is not v and (new in inputs or new in taken):
                node = self._replaced[v]
                if node not in revived:
                    revived.append(node)
                new = v
            taken.add(new)
            outputs.append(new)
        # A revived node's inputs are already renamed and defined earlier, so it can go last.
        graph.nodes = self.nodes + revived
        graph.outputs = outputs
        return graph


def sweep(graph: Graph, rule: Rule) -> Graph:
    """Apply `rule` to every node in order (see the module doc); returns the rewritten graph."""
    rw = Rewriter(graph)
    for node in graph.nodes:
        node.inputs = [rw.value(v) for v in node.inputs]
        result = rule(rw, node)
        if result is None:
            rw.nodes.append(node)
        else:
            rw.replace(node, [result] if isinstance(result, Value) else list(result))
    return rw.finish()


def users(graph: Graph) -> dict[Value, int]:
    """How many times each value is read, by nodes or as a graph output."""
    count: dict[Value, int] = {}
    for node in graph.nodes:
        for v in node.inputs:
            count[v] = count.get(v, 0) + 1
    for v in graph.outputs:
        count[v] = count.get(v, 0) + 1
    return count


def constant_of(v: Value) -> np.ndarray | None:
    """The array of `v` when a `constant` node produces it, else None."""
    node = v.producer
    return node.attrs["value"] if node is not None and node.op == "constant" else None


def is_filled(v: Value, number: float) -> bool:
    """Whether `v` is a constant whose every element equals `number` (0 matches -0.0 too)."""
    array = constant_of(v)
    return array is not None and array.dtype != np.bool_ and bool(np.all(array == number))


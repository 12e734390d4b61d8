"""The SSA graph: values, nodes, and the graph that owns them.

A `Graph` has typed inputs (parameters among them, marked `is_param`), nodes in topological
order, and named outputs. `graph.params` binds parameter names to their numpy values; the values
are not part of the graph's structure (not printed, not compared). A node attribute may itself
be a Graph (a region, e.g. the body of `fused`); copying and comparing recurse into it.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from nncompile.ir.errors import IRError
from nncompile.ir.types import TensorType


class Value:
    """One SSA value: a graph input or the `index`-th output of `producer`."""

    __slots__ = ("type", "name", "producer", "index", "is_param")

    def __init__(self, type: TensorType, name: str | None = None, producer: "Node | None" = None,
                 index: int = 0, is_param: bool = False):
        self.type = type
        self.name = name
        self.producer = producer
        self.index = index
        self.is_param = is_param

    def __repr__(self) -> str:
        label = self.name or (f"{self.producer.op}#{self.index}" if self.producer else "?")
        return f"<Value {label}: {self.type}>"


class Node:
    """`outputs = op(inputs) {attrs}`; `loc` names where it came from (a layer, an ONNX node)."""

    __slots__ = ("op", "inputs", "attrs", "outputs", "loc")

    def __init__(self, op: str, inputs: Sequence[Value], attrs: Mapping, out_types: Sequence[TensorType],
                 loc: str = ""):
        self.op = op
        self.inputs = list(inputs)
        self.attrs = dict(attrs)
        self.outputs = [Value(t, producer=self, index=i) for i, t in enumerate(out_types)]
        self.loc = loc

    def describe(self) -> str:
        """A short name for messages: the op and where it came from."""
        return f"node '{self.op}'" + (f" of {self.loc!r}" if self.loc else "")

    def __repr__(self) -> str:
        return f"<Node {self.op} loc={self.loc!r}>"


class Graph:
    def __init__(self, name: str = "main"):
        self.name = name
        self.inputs: list[Value] = []
        self.nodes: list[Node] = []
        self.outputs: list[Value] = []
        self.output_names: list[str] = []
        # output name -> the parameter whose array receives that output after a run (optimizer
        # steps, moving averages): parameters are updated in place, not returned.
        self.updates: dict[str, str] = {}
        self.params: dict[str, np.ndarray] = {}

    # construction -------------------------------------------------------------------------
    def add_input(self, name: str, type: TensorType, param: bool = False) -> Value:
        if any(v.name == name for v in self.inputs):
            raise IRError(f"graph {self.name!r} already has an input named {name!r}")
        value = Value(type, name=name, is_param=param)
        self.inputs.append(value)
        return value

    def append(self, node: Node) -> Node:
        self.nodes.append(node)
        return node

    def set_outputs(self, values: Sequence[Value], names: Sequence[str] | None = None) -> None:
        names = list(names) if names is not None else [f"output_{i}" for i in range(len(values))]
        if len(names) != len(values) or len(set(names)) != len(names):
            raise IRError(f"graph {self.name!r}: output names {names} must be unique, one per output")
        self.outputs = list(values)
        self.output_names = names

    # queries ------------------------------------------------------------------------------
    @property
    def data_inputs(self) -> list[Value]:
        return [v for v in self.inputs if not v.is_param]

    @property
    def param_inputs(self) -> list[Value]:
        return [v for v in self.inputs if v.is_param]

    def input(self, name: str) -> Value:
        for v in self.inputs:
            if v.name == name:
                return v
        raise IRError(f"graph {self.name!r} has no input {name!r}; inputs: "
                      f"{', '.join(v.name for v in self.inputs)}")

    # text and comparison ------------------------------------------------------------------
    def __str__(self) -> str:
        from nncompile.ir.printer import print_graph

        return print_graph(self)

    def __repr__(self) -> str:
        return f"<Graph {self.name}: {len(self.inputs)} inputs, {len(self.nodes)} nodes>"

    def __eq__(self, other) -> bool:
        return isinstance(other, Graph) and structurally_equal(self, other)

    __hash__ = object.__hash__

    def copy(self) -> "Graph":
        """A structural copy (new Values and Nodes, regions copied too) sharing the parameter arrays."""
        g = Graph(self.name)
        remap: dict[Value, Value] = {}
        for v in self.inputs:
            remap[v] = g.add_input(v.name, v.type, param=v.is_param)
        for node in self.nodes:
            attrs = {k: a.copy() if isinstance(a, Graph) else a for k, a in node.attrs.items()}
            new = Node(node.op, [remap[v] for v in node.inputs], attrs, [v.type for v in node.outputs],
                       node.loc)
            for old_v, new_v in zip(node.outputs, new.outputs):
                remap[old_v] = new_v
            g.append(new)
        g.set_outputs([remap[v] for v in self.outputs], self.output_names)
        g.updates = dict(self.updates)
        g.params = dict(self.params)
        return g


def _is_nan(x) -> bool:
    return isinstance(x, float) and x != x


def _attrs_equal(a: Mapping, b: Mapping) -> bool:
    if a.keys() != b.keys():
        return False
    for key in a:
        x, y = a[key], b[key]
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            x, y = np.asarray(x), np.asarray(y)
            if x.dtype != y.dtype or x.shape != y.shape or not np.array_equal(x, y, equal_nan=True):
                return False
        elif type(x) is not type(y) or (x != y and not (_is_nan(x) and _is_nan(y))):
            return False
    return True


def structurally_equal(a: Graph, b: Graph) -> bool:
    """Same inputs (names, types, param marks), same nodes in order, same outputs."""
    if a.name != b.name or len(a.inputs) != len(b.inputs) or len(a.nodes) != len(b.nodes):
        return False
    mapping: dict[Value, Value] = {}
    for x, y in zip(a.inputs, b.inputs):
        if (x.name, x.type, x.is_param) != (y.name, y.type, y.is_param):
            return False
        mapping[x] = y
    for m, n in zip(a.nodes, b.nodes):
        if m.op != n.op or m.loc != n.loc or len(m.inputs) != len(n.inputs):
            return False
        if any(mapping.get(x) is not y for x, y in zip(m.inputs, n.inputs)):
            return False
        if not _attrs_equal(m.attrs, n.attrs) or [v.type for v in m.outputs] != [v.type for v in n.outputs]:
            return False
        mapping.update(zip(m.outputs, n.outputs))
    return (a.output_names == b.output_names and a.updates == b.updates and len(a.outputs) == len(b.outputs)
            and all(mapping.get(x) is y for x, y in zip(a.outputs, b.outputs)))

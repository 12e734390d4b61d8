"""Prepared values: what a graph that updates no parameter computes from its weights alone,
split off to be computed once while the weights stay unchanged instead of at every call.

    main, prepared = split_prepared(graph)

`prepared` (None when there is nothing worth it) takes the weights it reads as parameters and
returns the values `main` reads; `main` takes those as parameters named `prepared/<i>`, whose
arrays the runtime owns and refills from `prepared` whenever the weights' generation moved on
(`runtime/weights.py`, `Executable._prepare`). Both graphs arrive fused and scheduled, as the
pipeline left the whole. Only a split whose nodes cost at least PREPARED_FLOPS is made: a little
arithmetic on the weights (a batch normalization's scale) costs less at every call than a module
of its own costs to compile. `passes/gather_first.py` makes the largest of these values.
"""
from __future__ import annotations

import numpy as np

from nncompile.ir.cost import node_cost
from nncompile.ir.graph import Graph, Node, Value

PREPARED_FLOPS = 1 << 20
PREFIX = "prepared/"


def weight_nodes(graph: Graph, *, hoistable: bool = True) -> list[Node]:
    """The nodes of `graph` that make values from parameters and constants alone, none when the
    graph updates a parameter. `hoistable`: only those a prepared graph can take, with inputs and
    results of static shapes, made from such nodes alone (a weight broadcast to the batch depends
    on the call, and so does what is made from it)."""
    if graph.updates:
        return []
    made: set[Value] = set(graph.param_inputs)
    nodes = []
    for node in graph.nodes:
        taken = all(v in made for v in node.inputs)
        if hoistable:
            taken = taken and bool(node.inputs) and all(isinstance(d, int) for v in node.outputs
                                                        for d in v.type.shape)
        if taken:
            nodes.append(node)
            made.update(node.outputs)
    return nodes


def split_prepared(graph: Graph) -> tuple[Graph, Graph | None]:
    """(main, prepared) as the module says; `graph` itself and None when nothing is split off."""
    hoisted = weight_nodes(graph)
    inside = set(hoisted)
    rest = [n for n in graph.nodes if n not in inside]
    if not rest or sum(node_cost(n, {}).flops or 0 for n in hoisted) < PREPARED_FLOPS:
        return graph, None    # (no rest: the graph is all preparation, such as a prepared graph)
    made = {v for n in hoisted for v in n.outputs}
    needed = list(dict.fromkeys([*(v for n in rest for v in n.inputs if v in made),
                                 *(v for v in graph.outputs if v in made)]))
    read = list(dict.fromkeys(v for n in hoisted for v in n.inputs if v not in made))

    prepared = Graph(f"{graph.name}.prepared")
    prepared.inputs, prepared.nodes = read, hoisted
    prepared.set_outputs(needed, [f"{PREFIX}{i}" for i in range(len(needed))])
    prepared.params = {v.name: graph.params[v.name] for v in read}

    rename = {v: Value(v.type, name=f"{PREFIX}{i}", is_param=True) for i, v in enumerate(needed)}
    for node in rest:
        node.inputs = [rename.get(v, v) for v in node.inputs]
    graph.nodes = rest
    graph.outputs = [rename.get(v, v) for v in graph.outputs]
    graph.inputs = [*graph.inputs, *rename.values()]
    for v in rename.values():
        graph.params[v.name] = np.empty(v.type.shape, v.type.dtype.numpy)
    return graph, prepared.copy()

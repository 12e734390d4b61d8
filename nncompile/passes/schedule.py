"""Kernel schedule: reorder the nodes to lower the peak of live intermediate bytes.

A greedy list scheduler: among the nodes whose operands are ready, run the one that frees the
most bytes net of what it allocates, ties going to the earlier node of the original order (so
the result is deterministic and a graph already in a good order keeps it). It counts memory the
way the memory plan does: graph inputs, parameters and graph outputs are the caller's, and a
reshape is a view of its input's buffer. Symbolic dimensions are compared at a representative
size. The new order is kept only when the memory plan's lower bound says it is strictly better,
so the pass never makes the peak worse.

Parameter updates (`graph.updates`) add one kind of edge: the node that makes a parameter's new
value runs after every other reader of its old value, directly or through a reshape view (when
no reader depends on that node), so that the runtime can write the new value straight into the
parameter's array. An order that breaks such an edge is always replaced.
"""
from __future__ import annotations

import heapq

from nncompile.ir.graph import Graph, Node, Value
from nncompile.ir.sizes import fitting_env
from nncompile.passes.manager import register_pass
from nncompile.passes.memory import is_view, nbytes, peak_live_bytes

REPRESENTATIVE_SIZE = 32   # what every symbolic dimension (the batch) stands for when comparing


@register_pass("schedule", doc="Reorder the nodes (topologically) to lower the peak of live bytes.")
def schedule(graph: Graph) -> Graph:
    """Replace `graph.nodes` by a lower-peak topological order, when one is found."""
    env = representative_env(graph)
    order = greedy_order(graph, env)
    position = {id(node): i for i, node in enumerate(graph.nodes)}
    broken = any(position[id(graph.nodes[r])] > position[id(graph.nodes[w])] for r, w in update_edges(graph))
    if broken or peak_live_bytes(graph, env, order) < peak_live_bytes(graph, env):
        graph.nodes = order
    return graph


def update_edges(graph: Graph) -> list[tuple[int, int]]:
    """(reader, writer) node indices: the writer of a parameter's new value should follow every
    other reader of the old value. Readers that depend on the writer are left out (no cycle)."""
    producer = {v: i for i, node in enumerate(graph.nodes) for v in node.outputs}
    users: dict[int, set[int]] = {}
    for i, node in enumerate(graph.nodes):
        for v in node.inputs:
            if v in producer:
                users.setdefault(producer[v], set()).add(i)
    outputs = dict(zip(graph.output_names, graph.outputs))
    returned = set(graph.outputs)
    edges = []
    for name, param in graph.updates.items():
        writer = producer.get(outputs[name])
        if writer is None:
            continue
        after = _descendants(writer, users)
        # A reshape of the parameter is a view of its array, so the view's readers read the old
        # value too (a Conv1D's kernel seen as 2-D, read by the input gradient).
        old = {graph.input(param)}
        for i, node in enumerate(graph.nodes):
            if not old.intersection(node.inputs):
                continue
            if is_view(node, returned):
                old.update(node.outputs)
            if i != writer and i not in after:
                edges.append((i, writer))
    return edges


def _descendants(start: int, users: dict[int, set[int]]) -> set[int]:
    seen: set[int] = set()
    todo = [start]
    while todo:
        for u in users.get(todo.pop(), ()):
            if u not in seen:
                seen.add(u)
                todo.append(u)
    return seen


def representative_env(graph: Graph) -> dict[str, int]:
    """Every symbol of the graph's value types bound to REPRESENTATIVE_SIZE (or more, where a
    window over it needs more: `fitting_env`)."""
    return fitting_env(graph, REPRESENTATIVE_SIZE)


def greedy_order(graph: Graph, env: dict[str, int]) -> list[Node]:
    """The nodes of `graph` in the greedy order (see the module doc), sizes taken at `env`."""
    nodes = graph.nodes
    outputs = set(graph.outputs)
    root: dict[Value, Value] = {}        # a value -> the value whose buffer holds it
    size: dict[Value, int] = {}          # arena buffer roots -> bytes
    for node in nodes:
        if is_view(node, outputs):
            root[node.outputs[0]] = root.get(node.inputs[0], node.inputs[0])
            continue
        for v in node.outputs:
            if v not in outputs:
                size[v] = nbytes(v, env)

    def buffers_read(i: int) -> set[Value]:
        return {r for r in (root.get(v, v) for v in nodes[i].inputs) if r in size}

    readers: dict[Value, set[int]] = {r: set() for r in size}
    producer: dict[Value, int] = {}
    users: list[set[int]] = [set() for _ in nodes]
    deps: list[set[int]] = [set() for _ in nodes]
    for i, node in enumerate(nodes):
        for r in buffers_read(i):
            readers[r].add(i)
        deps[i] = {producer[v] for v in node.inputs if v in producer}
        producer.update((v, i) for v in node.outputs)
    for reader, writer in update_edges(graph):
        deps[writer].add(reader)
    for i, before in enumerate(deps):
        for d in before:
            users[d].add(i)
    pending = [len(before) for before in deps]

    def score(i: int) -> int:
        freed = sum(size[r] for r in buffers_read(i) if len(readers[r]) == 1)
        return freed - sum(size.get(v, 0) for v in nodes[i].outputs)

    scores: dict[int, int] = {}
    heap: list[tuple[int, int]] = []

    def push(i: int) -> None:
        scores[i] = score(i)
        heapq.heappush(heap, (-scores[i], i))

    for i, count in enumerate(pending):
        if count == 0:
            push(i)
    order: list[Node] = []
    while heap:
        negative, i = heapq.heappop(heap)
        if scores.get(i) != -negative:
            continue                      # a stale entry: the node was rescored or scheduled
        del scores[i]
        order.append(nodes[i])
        for r in buffers_read(i):
            readers[r].discard(i)
            if len(readers[r]) == 1:      # its last reader now frees it: rescore if ready
                (last,) = readers[r]
                if last in scores:
                    push(last)
        for u in users[i]:
            pending[u] -= 1
            if pending[u] == 0:
                push(u)
    return order

"""Reverse-mode automatic differentiation: `gradients` appends the backward pass to a graph.

    >>> grads = gradients(graph, loss, [w0, b0])     # one Value per wrt, in the same graph

The walk visits, in reverse graph order, the nodes on a path from a `wrt` value to the scalar
`loss`, and asks each op's `vjp` rule (the op table, beside the op's definition) for the
cotangents of its inputs:

    vjp(b: Builder, node: Node, cotangents: list[Value | None]) -> list[Value | None]

one per output in, one per input out (None: no gradient). A rule may give an input's cotangent at
the broadcast shape of the output; the walk sums the broadcast axes away (reduce_sum, then a
reshape restoring size-1 axes), and sums the contributions of a value read several times.
Only float values carry gradients: integer indices, bools and comparison results stop the walk.
A `wrt` that the loss does not depend on gets zeros. Rules build the cotangents of all their
inputs; the ones no gradient needs are removed before returning, so the graph gains no node
whose result is unused. Nodes of the backward pass carry the forward node's loc plus ".grad".
"""
from __future__ import annotations

from typing import Sequence

from nncompile.ir.builder import Builder
from nncompile.ir.errors import IRError
from nncompile.ir.graph import Graph, Node, Value
from nncompile.ir.optable import get_op
from nncompile.ir.types import TensorType, broadcast_shapes


def gradients(graph: Graph, loss: Value, wrt: Sequence[Value]) -> list[Value]:
    """Append to `graph` the gradient of the scalar `loss` w.r.t. each of `wrt`; return them
    (each of its wrt's type) in order. `graph`'s outputs are left alone."""
    wrt = list(wrt)
    _check(graph, loss, wrt)
    start = len(graph.nodes)
    active = _active(graph, wrt)
    b = Builder(graph)
    pending: dict[Value, list[Value]] = {loss: [b.scalar(1.0, loss)]} if loss in active else {}
    totals: dict[Value, Value] = {}
    for node in reversed(_on_path(graph, loss, active)):
        outs = []
        for v in node.outputs:
            total = _sum(b, pending.pop(v, []))
            if total is not None:
                totals[v] = total
            outs.append(total)
        if all(ct is None for ct in outs):
            continue
        rule = get_op(node.op).vjp
        if rule is None:
            raise IRError(f"gradients: {node.describe()} is on the path from a parameter to the loss "
                          f"but op {node.op!r} has no VJP")
        with b.loc(f"{node.loc}.grad" if node.loc else ""):
            ins = rule(b, node, outs)
            if len(ins) != len(node.inputs):
                raise IRError(f"gradients: the VJP of {node.describe()} gave {len(ins)} cotangents "
                              f"for {len(node.inputs)} inputs")
            for x, ct in zip(node.inputs, ins):
                if ct is not None and x in active:
                    pending.setdefault(x, []).append(_unbroadcast(b, ct, x.type, node))
    grads = []
    for w in wrt:
        if w not in totals:
            total = _sum(b, pending.pop(w, []))
            totals[w] = total if total is not None else b.broadcast(b.scalar(0.0, w), shape=w.type.shape)
        grads.append(totals[w])
    _prune(graph, start, grads)
    return grads


def _check(graph: Graph, loss: Value, wrt: list[Value]) -> None:
    values = set(graph.inputs) | {v for n in graph.nodes for v in n.outputs}
    if loss not in values:
        raise IRError(f"gradients: the loss {loss!r} is not a value of graph {graph.name!r}")
    if loss.type.shape != () or not loss.type.dtype.is_float:
        raise IRError(f"gradients: the loss must be a float scalar (shape ()), got {loss.type}; "
                      f"reduce it first (reduce_mean or reduce_sum)")
    for i, w in enumerate(wrt):
        if w not in values:
            raise IRError(f"gradients: wrt[{i}] {w!r} is not a value of graph {graph.name!r}")
        if not w.type.dtype.is_float:
            raise IRError(f"gradients: wrt[{i}] {w!r} has dtype {w.type.dtype}; only float values "
                          f"have gradients")


def _active(graph: Graph, wrt: list[Value]) -> set[Value]:
    """The float values that depend on some `wrt` through float values."""
    active = set(wrt)
    for node in graph.nodes:
        if any(v in active for v in node.inputs):
            active.update(v for v in node.outputs if v.type.dtype.is_float)
    return active


def _on_path(graph: Graph, loss: Value, active: set[Value]) -> list[Node]:
    """The nodes, in graph order, with an active input and an output the loss depends on."""
    reaching = {loss}
    path = []
    for node in reversed(graph.nodes):
        if any(v in reaching for v in node.outputs) and any(v in active for v in node.inputs):
            path.append(node)
            reaching.update(v for v in node.inputs if v in active)
    return path[::-1]


def _sum(b: Builder, parts: list[Value]) -> Value | None:
    total = parts[0] if parts else None
    for part in parts[1:]:
        total = b.add(total, part)
    return total


def _unbroadcast(b: Builder, ct: Value, want: TensorType, node: Node) -> Value:
    """`ct`, a cotangent at a shape `want` broadcasts to, summed back to `want`'s shape."""
    have = ct.type.shape
    try:
        fits = ct.type.dtype == want.dtype and broadcast_shapes(have, want.shape) == have
    except IRError:
        fits = False
    if not fits:
        raise IRError(f"gradients: the VJP of {node.describe()} gave a cotangent of type {ct.type} "
                      f"for an input of type {want}")
    if have == want.shape:
        return ct
    extra = len(have) - len(want.shape)
    axes = list(range(extra)) + [extra + i for i, d in enumerate(want.shape) if d == 1 and have[extra + i] != 1]
    summed = b.reduce_sum(ct, axes=axes)
    return summed if summed.type.shape == want.shape else b.reshape(summed, shape=want.shape)


def _prune(graph: Graph, start: int, keep: list[Value]) -> None:
    """Drop the nodes added since `start` that none of `keep` depends on."""
    live = set(keep)
    kept = []
    for node in reversed(graph.nodes[start:]):
        if any(v in live for v in node.outputs):
            kept.append(node)
            live.update(node.inputs)
    graph.nodes[start:] = kept[::-1]

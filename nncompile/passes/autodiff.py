"""Reverse-mode automatic differentiation: `gradients` appends the backward pass to a graph.

    >>> grads = gradients(graph, loss, [w0, b0])     # one Value per wrt, in the same graph
    >>> cts = vjp(body, [(y, ct_y)], [x])           # given a cotangent of y (a scan's step)

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
    b = Builder(graph)
    grads = _backprop(b, [(loss, b.scalar(1.0, loss))], wrt)
    _prune(graph, start, grads)
    return grads


def vjp(graph: Graph, seeds: Sequence[tuple[Value, Value]], wrt: Sequence[Value]) -> list[Value]:
    """Append to `graph` the cotangents of `wrt` given the cotangent of each seed value (pairs
    (value, its cotangent, a value of the same type)); a value seeded twice gets the sum."""
    start = len(graph.nodes)
    grads = _backprop(Builder(graph), list(seeds), list(wrt))
    _prune(graph, start, grads)
    return grads


def _backprop(b: Builder, seeds: list[tuple[Value, Value]], wrt: list[Value]) -> list[Value]:
    graph = b.graph
    active = _active(graph, wrt)
    pending: dict[Value, list[Value]] = {}
    for value, ct in seeds:
        if value in active:
            pending.setdefault(value, []).append(ct)
    totals: dict[Value, Value] = {}
    for node in reversed(_on_path(graph, [v for v, _ in seeds], active)):
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


def _on_path(graph: Graph, targets: Sequence[Value], active: set[Value]) -> list[Node]:
    """The nodes, in graph order, with an active input and an output a target depends on."""
    reaching = set(targets)
    path = []
    for node in reversed(graph.nodes):
        if any(v in reaching for v in node.outputs) and any(v in active for v in node.inputs):
            path.append(node)
            reaching.update(v for v in node.inputs if v in active)
    return path[::-1]


def _sum(b: Builder, parts: list[Value]) -> Value | None:
    parts = _join_pads(b, parts)
    total = parts[0] if parts else None
    for part in parts[1:]:
        total = b.add(total, part)
    return total


def _zero_padded(v: Value) -> Node | None:
    node = v.producer
    return node if node is not None and node.op == "pad" and node.attrs["value"] == 0.0 else None


def _adjacent(first: Node, second: Node) -> int | None:
    """The axis along which `second`'s window starts where `first`'s ends, all else equal."""
    p, q = first.attrs["pads"], second.attrs["pads"]
    size = first.outputs[0].type.shape
    differ = [a for a in range(len(size)) if (p[2 * a], p[2 * a + 1]) != (q[2 * a], q[2 * a + 1])]
    if len(differ) != 1 or first.outputs[0].type != second.outputs[0].type:
        return None
    axis = differ[0]
    return axis if size[axis] - p[2 * axis + 1] == q[2 * axis] else None


def _join_pads(b: Builder, parts: list[Value]) -> list[Value]:
    """Cotangents of slices of one value (a recurrent cell's gates) are zero-padded pieces of it:
    pieces with adjacent windows are joined by one concat, not summed as full-size arrays."""
    parts = list(parts)
    joined = True
    while joined:
        joined = False
        for x in parts:
            for y in parts:
                first, second = _zero_padded(x), _zero_padded(y)
                axis = _adjacent(first, second) if first and second and x is not y else None
                if axis is None:
                    continue
                pads = list(first.attrs["pads"])
                pads[2 * axis + 1] = second.attrs["pads"][2 * axis + 1]
                both = b.concat(first.inputs[0], second.inputs[0], axis=axis)
                parts = [p for p in parts if p is not x and p is not y]
                parts.append(b.pad(both, pads=pads) if any(pads) else both)
                joined = True
                break
            if joined:
                break
    return parts


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

"""Folding an inference BatchNormalization into the conv2d or matmul (Dense) before it.

At inference a BatchNormalization is traced as elementwise ops on the layer's result:

    y = conv2d(x, W) [+ b] - mean) * (rsqrt(var + eps) * gamma) [+ beta]

This pass takes any chain of add/sub/mul by per-output-channel values that depend on parameters
and constants only (no data input), following a conv2d or matmul whose result (and every link of
the chain) has no other reader, and rewrites it as

    y = conv2d(x, W * s) + t          s, t: the chain's product of scales and folded shift

with s and t computed in the graph from the parameters (O(weights) per call), so the
per-element work after the product is one add instead of up to four. Weights are never baked
in: they change in place during training. The chain must hold at least one mul (a chain of
adds only is already one fused epilogue). Results change by rounding only (reassociation).
Training graphs must not run this pass: there BatchNormalization uses batch statistics, which
depend on data, and the chain does not match anyway.
"""
from __future__ import annotations

from dataclasses import dataclass

from nncompile.ir.graph import Graph, Node, Value
from nncompile.passes.manager import register_pass
from nncompile.passes.rewrite import Rewriter

ANCHORS = frozenset({"conv2d", "matmul"})
AFFINE = frozenset({"add", "sub", "mul"})


@dataclass
class _Fold:
    anchor: Node
    links: list[tuple[str, Value]]      # (op, per-channel operand), in order
    last: Node                          # the chain's final node, where the rewrite is placed


def _parameter_only(graph: Graph) -> set[Value]:
    """Values computed from parameters and constants alone."""
    known = set(graph.param_inputs)
    for node in graph.nodes:
        if node.op != "random_uniform" and all(v in known for v in node.inputs):
            known.update(node.outputs)
    return known


def _readers(graph: Graph) -> dict[Value, list[Node]]:
    readers: dict[Value, list[Node]] = {}
    for node in graph.nodes:
        for v in node.inputs:
            readers.setdefault(v, []).append(node)
    return readers


def _per_channel(c: Value, result: Value) -> bool:
    """Whether `c` holds one value per output channel (the last axis), or one for all."""
    out = result.type
    if c.type.dtype != out.dtype or c.type.rank > out.rank or not c.type.is_static:
        return False
    *leading, last = c.type.shape or (1,)
    return all(d == 1 for d in leading) and last in (1, out.shape[-1])


def _weight_ok(anchor: Node, fixed: set[Value]) -> bool:
    w = anchor.inputs[1]
    return w in fixed and w.type.is_static


def _chain(anchor: Node, readers: dict[Value, list[Node]], outputs: set[Value],
           fixed: set[Value]) -> _Fold | None:
    result = anchor.outputs[0]
    if not _weight_ok(anchor, fixed):
        return None
    links, value, last = [], result, None
    while value not in outputs and len(readers.get(value, ())) == 1:
        user = readers[value][0]
        if user.op not in AFFINE or user.inputs.count(value) != 1:
            break
        position = user.inputs.index(value)
        c = user.inputs[1 - position]
        if ((user.op == "sub" and position != 0) or c not in fixed or not _per_channel(c, result)
                or user.outputs[0].type != result.type):
            break
        links.append((user.op, c))
        value, last = user.outputs[0], user
    if not any(op == "mul" for op, _ in links):
        return None
    # Links after the last mul fold into the shift as well; nothing is left behind.
    return _Fold(anchor, links, last)


def _vector(rw: Rewriter, c: Value, loc: str) -> Value:
    """`c` as a rank <= 1 value (its channels along the only axis)."""
    return c if c.type.rank <= 1 else rw.emit("reshape", [c], loc, shape=[c.type.shape[-1]])


def _emit(rw: Rewriter, fold: _Fold) -> Value:
    anchor, loc = fold.anchor, fold.last.loc
    scale = shift = None
    for op, c in fold.links:
        c = _vector(rw, rw.value(c), loc)
        if op == "mul":
            scale = c if scale is None else rw.emit("mul", [scale, c], loc)
            shift = None if shift is None else rw.emit("mul", [shift, c], loc)
        elif op == "add":
            shift = c if shift is None else rw.emit("add", [shift, c], loc)
        else:
            shift = rw.emit("neg", [c], loc) if shift is None else rw.emit("sub", [shift, c], loc)
    x, w = (rw.value(v) for v in anchor.inputs)
    if anchor.op == "matmul" and anchor.attrs["transpose_b"] and scale.type.rank == 1:
        scale = rw.emit("reshape", [scale], loc, shape=[scale.type.shape[0], 1])
    scaled = rw.emit("mul", [w, scale], anchor.loc)
    y = rw.emit(anchor.op, [x, scaled], anchor.loc, **anchor.attrs)
    return y if shift is None else rw.emit("add", [y, shift], loc)


@register_pass("fold-batchnorm", doc="Fold per-channel scale/shift chains (inference "
                                     "BatchNormalization) into the weights of the conv2d/matmul before.")
def fold_batchnorm(graph: Graph) -> Graph:
    """Rewrite every foldable chain at the position of its last node."""
    readers, outputs, fixed = _readers(graph), set(graph.outputs), _parameter_only(graph)
    folds = [f for f in (_chain(n, readers, outputs, fixed) for n in graph.nodes if n.op in ANCHORS) if f]
    dropped = {f.anchor for f in folds}
    for f in folds:
        link = f.anchor.outputs[0]
        while readers[link][0] is not f.last:
            dropped.add(readers[link][0])
            link = readers[link][0].outputs[0]
        dropped.add(f.last)
    at_last = {f.last: f for f in folds}
    rw = Rewriter(graph)
    for node in graph.nodes:
        node.inputs = [rw.value(v) for v in node.inputs]
        if node in at_last:
            rw.replace(node, [_emit(rw, at_last[node])])
        elif node not in dropped:
            rw.nodes.append(node)
    return rw.finish()

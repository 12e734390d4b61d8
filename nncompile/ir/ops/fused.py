"""The `fused` op: a group of ops run as one kernel, its body held as a nested Graph (a region).

    %3 = fused(%x, %dense/kernel, %dense/bias) {kind="matmul"} : f32[?,128] loc("dense") {
    ^body(%arg0: f32[?,784], %arg1: f32[784,128], %arg2: f32[128]):
      %0 = matmul(%arg0, %arg1) : f32[?,128] loc("dense")
      %1 = add(%0, %arg2) : f32[?,128] loc("dense")
      return %1
    }

Operands bind to the body's inputs one to one (same types; body inputs are plain data inputs,
never parameters); the results are the body's outputs. Every symbolic dimension in the body must
appear in an input's type, so that running the body binds it. The shape rule also checks the
body contract of each `kind`, the one the fusion pass builds and code generation relies on:

- loop: elementwise/broadcast ops, constants, slices of body inputs (read in place at their
  offset and strides: the gates of one recurrent-cell product), and concats of values of one
  shape along an axis of static size that only the outputs read (stored piece by piece in
  place: the gradients of those gates as one product's operand); every output but a concat,
  and every concat's pieces, have one shape S (the loop's index space), and every input other
  than a sliced one, and every other node result, broadcasts to S. An output may be a body
  input (copied through) or repeat another output (stored twice).
- reduction: a prologue of elementwise/broadcast ops and constants whose results broadcast to
  the reduction input's shape, exactly one reduce_* op, then an epilogue of elementwise ops whose
  results broadcast to the reduced shape and which read no prologue value; one output, the last
  node's.
- matmul, summed over rows: a matmul with transpose_a whose operands have one batch shape, then
  a reduce_sum over all its batch axes (`is_row_sum`); one output, the sum's.
- matmul / conv2d / max_pool2d / avg_pool2d: the first node is that op (the anchor); then
  constants and elementwise ops, each taking the running value (the anchor's result, then the
  previous epilogue op's) as exactly one operand, its other operands body inputs or constants,
  and keeping the anchor's result shape; one output, the last epilogue op's (or the anchor's).
"""
from __future__ import annotations

import numpy as np

from nncompile.ir.dims import symbols_of
from nncompile.ir.errors import ShapeError
from nncompile.ir.graph import Graph, Node, Value
from nncompile.ir.optable import OPS, Attr, AttrKind, Fusion, Region, defop
from nncompile.ir.types import Shape, TensorType, broadcast_shapes, is_symbol

ANCHOR_KINDS = ("matmul", "conv2d", "max_pool2d", "avg_pool2d")
KINDS = ("loop", "reduction") + ANCHOR_KINDS
REDUCE_OPS = frozenset({"reduce_sum", "reduce_mean", "reduce_max", "reduce_min", "reduce_prod"})


def is_pointwise(node: Node) -> bool:
    """An elementwise or broadcast op other than a constant: computable at one output index."""
    return node.op != "constant" and OPS[node.op].fusion in (Fusion.ELEMENTWISE, Fusion.BROADCAST)


def _describe(i: int, node: Node) -> str:
    return f"body node #{i} ({node.op!r})"


def _broadcasts_to(shape: Shape, target: Shape) -> bool:
    try:
        return broadcast_shapes(shape, target) == tuple(target)
    except ShapeError:
        return False


def is_static_slice(node: Node) -> bool:
    """A slice whose every sliced axis is static, so its offset and strides are known."""
    shape = node.inputs[0].type.shape if node.op == "slice" else ()
    return node.op == "slice" and all(not is_symbol(shape[a % len(shape)]) for a in node.attrs["axes"])


def is_loop_slice(node: Node, inputs) -> bool:
    """A slice a loop reads in place: of a body input, along static axes."""
    return is_static_slice(node) and node.inputs[0] in inputs


def is_loop_concat(node: Node) -> bool:
    """A concat a loop stores in place: of same-shaped values along an axis of static size, so
    each piece's offset in the result is known."""
    shapes = {v.type.shape for v in node.inputs} if node.op == "concat" else set()
    if len(shapes) != 1:
        return False
    (shape,) = shapes
    return bool(shape) and isinstance(shape[node.attrs["axis"] % len(shape)], int)


def loop_space(nodes, results) -> Value:
    """A value whose shape is a loop body's index space: its first result that is not a concat,
    else the first piece of its first concat (a result that concatenates loop values is stored
    piece by piece, at every index of the pieces' shape)."""
    concats = {n.outputs[0]: n for n in nodes if n.op == "concat"}
    plain = [v for v in results if v not in concats]
    return plain[0] if plain else concats[results[0]].inputs[0]


def _check_loop(body: Graph) -> None:
    inputs = set(body.inputs)
    concats = [n for n in body.nodes if n.op == "concat"]
    for i, node in enumerate(body.nodes):
        if node in concats:
            if not is_loop_concat(node) or any(node.outputs[0] in n.inputs for n in body.nodes):
                raise ShapeError(f"{_describe(i, node)} must join values of one shape along an axis "
                                 "of static size, and be read by no body node (a loop stores it in place)")
        elif node.op != "constant" and not is_pointwise(node) and not is_loop_slice(node, inputs):
            raise ShapeError(f"{_describe(i, node)} is not elementwise, broadcast, constant, a "
                             "slice of a body input along static axes or a concat of results; a "
                             "loop body holds only those")
    stored = [n.outputs[0] for n in concats]
    space = loop_space(body.nodes, body.outputs).type.shape
    for v in body.outputs:
        shape = v.producer.inputs[0].type.shape if v in stored else v.type.shape
        if shape != space:
            raise ShapeError(f"a loop body's outputs must share one shape, got "
                             f"{', '.join(str(v.type) for v in body.outputs)} (a concat it stores "
                             "counts as its pieces' shape)")
    sliced = {n.inputs[0] for n in body.nodes if n.op == "slice"}
    for v in body.inputs:
        if v in sliced and not any(v in n.inputs for n in body.nodes if n.op != "slice"):
            continue
        if not _broadcasts_to(v.type.shape, space):
            raise ShapeError(f"body input {v.name!r} ({v.type}) does not broadcast to the loop shape {space}")
    for i, node in enumerate(body.nodes):
        if node not in concats and not _broadcasts_to(node.outputs[0].type.shape, space):
            raise ShapeError(f"{_describe(i, node)} gives {node.outputs[0].type}, which does not "
                             f"broadcast to the loop shape {space}")


def _check_single_output(body: Graph, kind: str) -> None:
    if len(body.outputs) != 1 or not body.nodes or body.outputs[0] is not body.nodes[-1].outputs[0]:
        raise ShapeError(f"a {kind} body returns exactly one value, its last node's")


def _check_reduction(body: Graph) -> None:
    _check_single_output(body, "reduction")
    positions = [i for i, node in enumerate(body.nodes) if node.op in REDUCE_OPS]
    if len(positions) != 1:
        raise ShapeError(f"a reduction body holds exactly one reduce op, got {len(positions)}")
    at = positions[0]
    reduction = body.nodes[at]
    in_shape, out_shape = reduction.inputs[0].type.shape, reduction.outputs[0].type.shape
    prologue: set[Value] = set()
    for i, node in enumerate(body.nodes):
        if i == at:
            continue
        if node.op != "constant" and not is_pointwise(node):
            raise ShapeError(f"{_describe(i, node)} is not elementwise, broadcast or constant; "
                             "a reduction body holds only those besides its reduce op")
        space = in_shape if i < at else out_shape
        if not _broadcasts_to(node.outputs[0].type.shape, space):
            raise ShapeError(f"{_describe(i, node)} gives {node.outputs[0].type}, which does not "
                             f"broadcast to {space}, the index space it runs on")
        if i < at and node.op != "constant":
            prologue.update(node.outputs)
        if i > at and any(v in prologue for v in node.inputs):
            raise ShapeError(f"{_describe(i, node)} in the epilogue reads a prologue value")


def is_row_sum(matmul: Node, total: Node) -> bool:
    """Whether `total` sums `matmul` over its batch axes where that is one product over all the
    operands' rows: sum_b a_b^T @ g_b with a and g stacks of one batch shape."""
    a, g = matmul.inputs
    rank = matmul.outputs[0].type.rank
    return (matmul.op == "matmul" and total.op == "reduce_sum" and total.inputs[0] is matmul.outputs[0]
            and matmul.attrs["transpose_a"] and not matmul.attrs["transpose_b"] and rank > 2
            and a.type.rank == g.type.rank == rank and a.type.shape[:-2] == g.type.shape[:-2]
            and sorted(a % rank for a in total.attrs["axes"]) == list(range(rank - 2))
            and not total.attrs["keepdims"])


def _check_anchored(body: Graph, kind: str) -> None:
    if not body.nodes or body.nodes[0].op != kind:
        first = repr(body.nodes[0].op) if body.nodes else "nothing"
        raise ShapeError(f"a {kind} body starts with its {kind!r} op, got {first}")
    if kind == "matmul" and len(body.nodes) == 2 and is_row_sum(*body.nodes):
        if body.outputs != [body.nodes[1].outputs[0]]:
            raise ShapeError("a matmul body summed over rows returns its reduce_sum")
        return
    running = body.nodes[0].outputs[0]
    shape = running.type.shape
    free = set(body.inputs)
    for i, node in enumerate(body.nodes[1:], start=1):
        if node.op == "constant":
            free.update(node.outputs)
            continue
        if OPS[node.op].fusion is not Fusion.ELEMENTWISE:
            raise ShapeError(f"{_describe(i, node)} is not elementwise; a {kind} epilogue holds only those")
        others = [v for v in node.inputs if v is not running]
        if len(others) != len(node.inputs) - 1:
            raise ShapeError(f"{_describe(i, node)} must take the running value exactly once")
        if any(v not in free for v in others):
            raise ShapeError(f"{_describe(i, node)}: operands besides the running value must be "
                             "body inputs or constants")
        if node.outputs[0].type.shape != shape:
            raise ShapeError(f"{_describe(i, node)} gives {node.outputs[0].type}; an epilogue keeps "
                             f"the anchor's shape {shape}")
        running = node.outputs[0]
    if len(body.outputs) != 1 or body.outputs[0] is not running:
        raise ShapeError(f"a {kind} body returns exactly one value, its last epilogue op's")


def check_symbols_bound(body: Graph) -> None:
    bound = {s for v in body.inputs for d in v.type.shape for s in symbols_of(d)}
    for i, node in enumerate(body.nodes):
        for v in node.outputs:
            unbound = sorted({s for d in v.type.shape for s in symbols_of(d)} - bound)
            if unbound:
                raise ShapeError(f"{_describe(i, node)} gives {v.type}, but no body input's type "
                                 f"has the dimension {unbound[0]!r}, so running the body cannot bind it")


def _fused_rule(ts: list[TensorType], attrs: dict) -> list[TensorType]:
    body, kind = attrs["body"], attrs["kind"]
    if len(ts) != len(body.inputs):
        raise ShapeError(f"takes {len(body.inputs)} operands, one per body input, got {len(ts)}")
    for i, (t, v) in enumerate(zip(ts, body.inputs)):
        if v.is_param:
            raise ShapeError(f"body input {v.name!r} is a parameter; body inputs are plain data inputs")
        if t != v.type:
            raise ShapeError(f"operand {i} has type {t} but body input {v.name!r} is {v.type}")
    if not body.outputs:
        raise ShapeError("the body returns nothing; a fused node has at least one result")
    check_symbols_bound(body)
    if kind == "loop":
        _check_loop(body)
    elif kind == "reduction":
        _check_reduction(body)
    else:
        _check_anchored(body, kind)
    return [v.type for v in body.outputs]


def _run_body(xs: list[np.ndarray], attrs: dict) -> list[np.ndarray]:
    # Deferred import: the runtime imports the IR, so the IR reaches the runtime only when run.
    from nncompile.runtime.reference import run

    return run(attrs["body"], xs, params={})


FUSED = defop("fused", inputs=("operands",), variadic=True, num_outputs=None, fusion=Fusion.OPAQUE,
              attrs={"kind": Attr(AttrKind.STR, choices=KINDS), "body": Attr(AttrKind.GRAPH)},
              infer=_fused_rule, reference=_run_body, region=Region.KERNEL,
              doc="a group of ops run as one kernel; `body` is the group, `kind` its body contract")
# A loop kernel reads each element of an operand only to write the same element of its results,
# so the memory plan may let a result overwrite a dying same-shaped operand; not when it stores a
# concat, whose pieces land at other offsets than the slices it may read from that operand.
FUSED.extra["elementwise_when"] = lambda node: node.attrs["kind"] == "loop" and not any(
    n.op == "concat" for n in getattr(node.attrs.get("body"), "nodes", ()))

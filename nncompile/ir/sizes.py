"""Checks of a graph at bound symbol sizes: the sizes its symbolic expressions come to.

A shape rule checks a window against a static size when the graph is built; over a symbolic size
it can only write the expression of the positions (`(T+2)//3-2`). Whether the window fits is
known once the sizes are bound, so the runtimes call `check_sizes` then, before running anything.
"""
from __future__ import annotations

from typing import Iterator, Mapping

from nncompile.ir.dims import dim_value, is_expression, symbols_of
from nncompile.ir.errors import ShapeError
from nncompile.ir.graph import Graph, Node
from nncompile.ir.optable import OPS, AttrKind, get_op, infer_types, regions_of
from nncompile.ir.types import TensorType, resolve_shape


def _nodes(graph: Graph) -> Iterator[Node]:
    """The nodes without regions, those inside regions included: the ops that make the sizes."""
    for node in graph.nodes:
        regions = regions_of(node)
        if not regions:
            yield node
        for region in regions:
            yield from _nodes(region)


def fitting_env(graph: Graph, size: int) -> dict[str, int]:
    """Every symbol of the graph's types bound to `size`, or to a larger power of two where some
    expression would come to less than 1 at `size` (a window wider than `size`): sizes at which
    the graph can run, for decisions that depend on shapes, not sizes (memory sharing, order)."""
    dims = {d for node in _nodes(graph) for v in (*node.inputs, *node.outputs) for d in v.type.shape}
    dims.update(d for v in graph.inputs for d in v.type.shape)
    symbols = {s for d in dims for s in symbols_of(d)}
    while True:
        env = {s: size for s in symbols}
        if size >= 2**30 or all(dim_value(d, env) >= 1 for d in dims if is_expression(d)):
            return env
        size *= 2


def check_sizes(graph: Graph, env: Mapping[str, int]) -> None:
    """Refuse sizes at which a symbolic dimension of some value comes to less than 1 and the op
    that makes it refuses the concrete shapes (a window longer than its padded input): the
    ShapeError names the op, its layer and the inputs whose sizes were bound."""
    for node in _nodes(graph):
        dims = {d for v in node.outputs for d in v.type.shape if is_expression(d)}
        if any(symbols_of(d) <= env.keys() and dim_value(d, env) < 1 for d in dims):
            _recheck(graph, node, env)


def resolve_attrs(node: Node, env: Mapping[str, int]) -> dict:
    """The node's attributes with the symbolic sizes in shape attributes (a reshape's target,
    'same' pads) replaced by the sizes they come to."""
    attrs = dict(node.attrs)
    for name, spec in get_op(node.op).attrs.items():
        if spec.kind is AttrKind.SHAPE:
            attrs[name] = resolve_shape(attrs[name], env)
    return attrs


def _recheck(graph: Graph, node: Node, env: Mapping[str, int]) -> None:
    """Run the node's shape rule on the concrete shapes of its inputs."""
    where = f"op {node.op!r}" + (f" of {node.loc!r}" if node.loc else "")
    concrete = [TensorType(v.type.dtype, resolve_shape(v.type.shape, env)) for v in node.inputs]
    try:
        infer_types(OPS[node.op], concrete, resolve_attrs(node, env), where)
    except ShapeError as e:
        raise ShapeError(f"{e}; {_bound_by(graph, env)}") from None
    for v in node.outputs:
        sizes = tuple(dim_value(d, env) for d in v.type.shape)
        if min(sizes, default=0) < 0:
            raise ShapeError(f"{where}: shape {v.type} comes to {sizes}; {_bound_by(graph, env)}")


def _bound_by(graph: Graph, env: Mapping[str, int]) -> str:
    """Which input axes gave the symbols their sizes, for a message."""
    seen, parts = set(), []
    for v in graph.inputs:
        for axis, d in enumerate(v.type.shape):
            if isinstance(d, str) and d in env and d not in seen and d != "?":
                seen.add(d)
                parts.append(f"axis {axis} of input {v.name!r} is {env[d]} ({d})")
    return "; ".join(parts) or f"at sizes {dict(env)}"

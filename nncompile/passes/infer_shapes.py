"""Shape inference: re-derive every value's type from the graph's input types.

Useful after an input's type changed or a symbolic dimension was fixed (`fix_dims`).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from nncompile.ir.dims import substitute
from nncompile.ir.errors import ShapeError
from nncompile.ir.graph import Graph, Value
from nncompile.ir.optable import AttrKind, get_op, infer_types, normalize_attrs, regions_of
from nncompile.ir.types import TensorType, is_symbol
from nncompile.passes.manager import register_pass


@register_pass("infer-shapes", doc="Re-run every op's shape rule and rewrite the declared types.")
def infer_shapes(graph: Graph) -> Graph:
    """Rewrite the output types of every node in order; on error the graph is left unchanged."""
    types: dict[Value, TensorType] = {v: v.type for v in graph.inputs}
    for node in graph.nodes:
        opdef = get_op(node.op)
        where = node.describe()
        in_types = [types.get(v, v.type) for v in node.inputs]
        out_types = infer_types(opdef, in_types, normalize_attrs(opdef, node.attrs, where), where)
        types.update(zip(node.outputs, out_types))
    for value, type in types.items():
        value.type = type
    return graph


def fix_dims(graph: Graph, sizes: Mapping[str, int]) -> Graph:
    """A copy of `graph` with the symbols of `sizes` replaced by those sizes, types re-inferred.

    Symbols are replaced in input types and in shape attributes (`fix_dims(g, {"?": 32})`).
    Symbols the graph does not use are ignored.
    """
    for symbol, size in sizes.items():
        if not is_symbol(symbol):
            raise ShapeError(f"fix_dims: {symbol!r} is not a symbolic dimension (a str)")
        if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 0:
            raise ShapeError(f"fix_dims: size of {symbol!r} must be an int >= 0, got {size!r}")
    sizes = {symbol: int(size) for symbol, size in sizes.items()}

    return _fixed_in_place(graph.copy(), sizes)


def _fixed_in_place(graph: Graph, sizes: Mapping[str, int]) -> Graph:
    """`fix_dims` on a graph of its own: its regions (a scan's body, a fused node's) first, since
    their types are checked against the operands that the symbol's size now types."""
    def fixed(shape):
        return tuple(substitute(d, sizes) for d in shape)

    for value in graph.inputs:
        value.type = value.type.with_shape(fixed(value.type.shape))
    for node in graph.nodes:
        for region in regions_of(node):
            _fixed_in_place(region, sizes)
        for name, spec in get_op(node.op).attrs.items():
            if spec.kind is AttrKind.SHAPE and isinstance(node.attrs.get(name), (tuple, list)):
                node.attrs[name] = fixed(node.attrs[name])
    return infer_shapes(graph)

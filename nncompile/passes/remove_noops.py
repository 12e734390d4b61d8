"""Removal of no-ops: nodes whose result is their input, element for element.

Front ends and other passes leave these behind: a Flatten of what is already flat, a Reshape or
Permute to the same layout, a cast to the dtype a value has, a concatenation of one tensor, a
pooling over 1x1 windows. (An inference-mode Dropout is not traced at all; a training-mode one
with rate 0 is not either, see keras/layers/core.py.)

    reshape / broadcast to the input's own type        transpose by the identity permutation
    cast to the input's dtype                          concat of a single input
    pad by zeros                                       slice taking every element in order
    reduce_* over no axes                              max/avg pool with 1x1 windows, stride 1, no pads
"""
from __future__ import annotations

from typing import Callable

from nncompile.ir.graph import Graph, Node, Value
from nncompile.ir.ops.shape import slice_plan
from nncompile.ir.types import is_symbol
from nncompile.passes.manager import register_pass
from nncompile.passes.rewrite import Rewriter, sweep


def _whole_slice(node: Node) -> bool:
    """Every element in order: a symbolic axis taken whole forwards (not reversed, not trimmed)."""
    shape = node.inputs[0].type.shape
    plan = slice_plan(shape, node.attrs)
    return all(part == slice(None) if is_symbol(shape[a]) else part.indices(shape[a]) == (0, shape[a], 1)
               for a, part in plan.items())


def _unit_window(node: Node) -> bool:
    return (tuple(node.attrs["window"]) == (1, 1) and tuple(node.attrs["strides"]) == (1, 1)
            and not any(node.attrs["pads"]))


NOOPS: dict[str, Callable[[Node], bool]] = {
    "reshape": lambda node: True,      # the type check below decides
    "broadcast": lambda node: True,
    "cast": lambda node: True,
    "transpose": lambda node: list(node.attrs["perm"]) == list(range(len(node.attrs["perm"]))),
    "concat": lambda node: len(node.inputs) == 1,
    "pad": lambda node: not any(node.attrs["pads"]),
    "slice": _whole_slice,
    **{op: (lambda node: len(node.attrs["axes"]) == 0)
       for op in ("reduce_sum", "reduce_mean", "reduce_max", "reduce_min", "reduce_prod")},
    "max_pool2d": _unit_window,
    "avg_pool2d": _unit_window,
}


def _remove(rw: Rewriter, node: Node) -> Value | None:
    test = NOOPS.get(node.op)
    if test is None or len(node.inputs) != 1 or node.inputs[0].type != node.outputs[0].type:
        return None
    return node.inputs[0] if test(node) else None


@register_pass("remove-noops", doc="Remove nodes that return their input unchanged (same-shape "
                                   "reshape, identity transpose, same-dtype cast, 1x1 pooling...).")
def remove_noops(graph: Graph) -> Graph:
    """Replace every no-op by its input, in one forward sweep."""
    return sweep(graph, _remove)

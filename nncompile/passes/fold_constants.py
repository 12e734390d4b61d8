"""Constant folding: a node whose inputs are all constants becomes the constant it computes.

The value comes from the op table's reference implementation (`runtime.reference.run_node`), so
a folded graph gives exactly what the reference interpreter gave before, in the node's dtype.
Parameters are graph inputs, never constants: their live arrays change during training and are
never baked in. Not folded:
- results larger than MAX_ELEMENTS, or larger than both their inputs and SMALL_RESULT (a
  broadcast of a scalar stays a broadcast, which fused loops read for free, instead of becoming
  a large array in memory);
- results of symbolic shape, multi-result and region-carrying (`fused`, `scan`) nodes;
- ops listed in UNFOLDED (random draws: the value is a pure function of seed and key, but a mask
  of a whole tensor is exactly the large constant to avoid);
- nodes whose reference raises (an out-of-range gather): that error belongs to run time.
"""
from __future__ import annotations

import math

import numpy as np

from nncompile.ir.errors import IRError
from nncompile.ir.graph import Graph, Node, Value
from nncompile.ir.optable import has_region
from nncompile.passes.manager import register_pass
from nncompile.passes.rewrite import Rewriter, constant_of, sweep
from nncompile.runtime.reference import run_node

MAX_ELEMENTS = 1 << 20
SMALL_RESULT = 64            # fusion copies constants up to this size into its loop bodies
UNFOLDED = frozenset({"constant", "random_uniform"})


def _size(v: Value) -> int:
    return math.prod(v.type.shape)


def _worth_folding(node: Node) -> bool:
    if node.op in UNFOLDED or has_region(node) or len(node.outputs) != 1 or not node.outputs[0].type.is_static:
        return False
    size = _size(node.outputs[0])
    largest_input = max((_size(v) for v in node.inputs), default=0)
    return size <= MAX_ELEMENTS and (size <= SMALL_RESULT or size <= largest_input)


def _fold(rw: Rewriter, node: Node) -> Value | None:
    arrays = [constant_of(v) for v in node.inputs]
    if any(a is None for a in arrays) or not _worth_folding(node):
        return None
    try:
        (value,) = run_node(node, arrays, {})
    except (IRError, ValueError, ArithmeticError):
        return None
    return rw.emit("constant", [], node.loc, value=np.array(value, order="C"))


@register_pass("fold-constants", doc="Replace nodes whose inputs are all constants by the constant "
                                     "they compute (small results only; never parameters).")
def fold_constants(graph: Graph) -> Graph:
    """Fold, in one forward sweep, every foldable node (chains of them fold together)."""
    return sweep(graph, _fold)

"""Layout: let matmul read a transposed operand in place instead of materializing the transpose.

    matmul(transpose(a, swap), b) -> matmul(a, b, transpose_a=not transpose_a)   (b alike)

where `swap` exchanges the last two axes and keeps the others. The GEMM reads either layout at
the same speed (its packing step reorders anyway), so the transpose kernel, a full copy of the
operand, disappears. Front ends produce this pattern (ONNX Gemm/MatMul after Transpose, a
Dense applied to a permuted tensor). The products are the same; the summation order inside the
GEMM may differ, so results agree to rounding.

Everything else is already in the layout its kernels want: activations are NHWC and conv filters
HWIO end to end, so there is no NCHW <-> NHWC transposition to move or cancel.
"""
from __future__ import annotations

from nncompile.ir.graph import Graph, Node, Value
from nncompile.passes.manager import register_pass
from nncompile.passes.rewrite import Rewriter, sweep


def _swaps_last_two(node: Node | None) -> bool:
    if node is None or node.op != "transpose":
        return False
    perm, rank = list(node.attrs["perm"]), len(node.attrs["perm"])
    return rank >= 2 and perm == [*range(rank - 2), rank - 1, rank - 2]


def _absorb_transposes(rw: Rewriter, node: Node) -> Value | None:
    if node.op != "matmul":
        return None
    inputs, attrs = list(node.inputs), dict(node.attrs)
    for i, flag in ((0, "transpose_a"), (1, "transpose_b")):
        if _swaps_last_two(inputs[i].producer):
            inputs[i] = inputs[i].producer.inputs[0]
            attrs[flag] = not attrs[flag]
    if inputs == node.inputs:
        return None
    return rw.emit("matmul", inputs, node.loc, **attrs)


@register_pass("layout", doc="Read transposed matmul operands in place (transpose flags) "
                             "instead of copying them.")
def layout(graph: Graph) -> Graph:
    """Fold every last-two-axes transpose feeding a matmul into its flags, in one sweep."""
    return sweep(graph, _absorb_transposes)

"""Convolutions over images whose height or width is known only when run (a sequence of any
length): conv2d and its two gradients as direct loop nests over the run-time sizes.

The implicit GEMM of `conv.py` and the im2col gradients of `grad.py` bake the geometry (image and
output sizes) into their microkernels as constants; here every size is whatever `Kernel.dims`
gives, an int or the i64 a symbol or expression came to. All three ops are the one sum

    Y[n, r, q, g*og + o]  ~  X[n, r*sh - top + i*dh, q*sw - left + j*dw, g*cg + c] * W[i, j, c, g*og + o]

over the taps (i, j) whose input pixel lies inside the image: conv2d accumulates into Y from X and
W, conv2d_grad_input into X from Y and W, conv2d_grad_filter into W from X and Y. The output
channels run innermost, contiguous in W and Y, so LLVM vectorizes that loop.
"""
from __future__ import annotations

from llvmlite import ir

from nncompile.codegen import elementwise
from nncompile.codegen.kernel import Dim, Kernel, product, scalar_type
from nncompile.codegen.loop import FAST
from nncompile.codegen.loops import as_i64, const, entry_alloca, for_nest, for_range
from nncompile.ir.graph import Node, Value


def has_symbolic_image(k: Kernel, *values: Value) -> bool:
    """Whether the height or width of an NHWC value is a run-time size."""
    return any(not isinstance(d, int) for v in values for d in k.dims(v)[1:3])


def emit_direct(k: Kernel, node: Node, image: Value, pixels: Value, kernel_hw: tuple[int, int],
                buffers: dict[str, ir.Value], target: str) -> None:
    """Zero `buffers[target]` (one of "x", "w", "y": the image, the filter, the output pixels)
    and add into it, tap by tap, the products of the other two (see the module doc)."""
    b = k.b
    batch, h, w, cin = k.dims(image)
    _, oh, ow, cout = k.dims(pixels)
    sizes = {"x": k.dims(image), "y": k.dims(pixels), "w": [*kernel_hw, cin // node.attrs["groups"], cout]}
    with for_range(b, as_i64(product(b, sizes[target])), name="zero") as e:
        b.store(elementwise.constant(node.outputs[0].type.dtype, 0, None), b.gep(buffers[target], [e]))
    (sh, sw), (dh, dw), pads = node.attrs["strides"], node.attrs["dilations"], node.attrs["pads"]
    with for_nest(b, [batch, oh, ow], name="p") as (n, r, q):
        y_at = _pixel(b, n, r, q, oh, ow, cout)
        h0 = b.sub(b.mul(r, const(sh)), as_i64(k.dim(pads[0])))
        w0 = b.sub(b.mul(q, const(sw)), as_i64(k.dim(pads[2])))
        with for_nest(b, list(kernel_hw), name="t") as (i, j):
            ih, iw = b.add(h0, b.mul(i, const(dh))), b.add(w0, b.mul(j, const(dw)))
            inside = b.and_(b.icmp_unsigned("<", ih, as_i64(h)), b.icmp_unsigned("<", iw, as_i64(w)))
            with b.if_then(inside):
                x_at = _pixel(b, n, ih, iw, h, w, cin)
                tap = b.add(b.mul(i, const(kernel_hw[1])), j)
                _channels(b, node, buffers, target, (x_at, y_at, tap), (cin, cout))


def _pixel(b: ir.IRBuilder, n: ir.Value, r: ir.Value, q: ir.Value, h: Dim, w: Dim, c: Dim) -> ir.Value:
    """The element offset of pixel (n, r, q) of an NHWC array."""
    return b.mul(b.add(b.mul(b.add(b.mul(n, as_i64(h)), r), as_i64(w)), q), as_i64(c))


def _channels(b: ir.IRBuilder, node: Node, buffers: dict[str, ir.Value], target: str,
              at: tuple[ir.Value, ir.Value, ir.Value], channels: tuple[int, int]) -> None:
    """For every group g, input channel c and output channel o of one tap of one pixel: the
    target's element += the product of the other two buffers' elements. An image element (the
    input gradient) gets a sum over o, kept in a register and reassociated so that it vectorizes
    (in memory, with strict float order, it ran 15 times slower than the other two)."""
    x_at, y_at, tap = at
    cin, cout = channels
    groups = node.attrs["groups"]
    cg, og = cin // groups, cout // groups

    def pointers(g, c, o):
        column = b.add(b.mul(g, const(og)), o)
        offsets = {"x": b.add(x_at, b.add(b.mul(g, const(cg)), c)),
                   "y": b.add(y_at, column),
                   "w": b.add(b.mul(b.add(b.mul(tap, const(cg)), c), const(cout)), column)}
        return {name: b.gep(buffers[name], [offset]) for name, offset in offsets.items()}

    with for_nest(b, [groups, cg], name="ch") as (g, c):
        if target == "x":
            total = entry_alloca(b, scalar_type(node.outputs[0].type.dtype))
            b.store(elementwise.constant(node.outputs[0].type.dtype, 0, None), total)
        with for_range(b, og, name="o") as o:
            ptrs = pointers(g, c, o)
            left, right = (b.load(ptrs[name]) for name in "xwy" if name != target)
            into = total if target == "x" else ptrs[target]
            b.store(b.fadd(b.load(into), b.fmul(left, right, flags=FAST), flags=FAST), into)
        if target == "x":
            ptr = pointers(g, c, const(0))["x"]
            b.store(b.fadd(b.load(ptr), b.load(total)), ptr)

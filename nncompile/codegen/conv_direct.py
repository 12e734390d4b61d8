"""Convolutions over images whose height or width is known only when run (a sequence of any
length): conv2d and its two gradients as direct loop nests over the run-time sizes.

The implicit GEMM of `conv.py` and the im2col gradients of `grad.py` bake the geometry (image and
output sizes) into their microkernels as constants; here every size is whatever `Kernel.dims`
gives, an int or the i64 a symbol or expression came to. All three ops are the one sum

    Y[n, r, q, g*og + o]  ~  X[n, r*sh - top + i*dh, q*sw - left + j*dw, g*cg + c] * W[i, j, c, g*og + o]

over the taps (i, j) whose input pixel lies inside the image: conv2d accumulates into Y from X and
W, conv2d_grad_input into X from Y and W, conv2d_grad_filter into W from X and Y. The output
channels run innermost, contiguous in W and Y, so LLVM vectorizes that loop. The threads split
the images, or for the filter gradient (which every image adds to) the input channels, so that
no two write the same element.
"""
from __future__ import annotations

from llvmlite import ir

from nncompile.codegen import elementwise, gemm, parallel
from nncompile.codegen.gemm import smin
from nncompile.codegen.kernel import Kernel, product, scalar_type, storage_type
from nncompile.codegen.loop import FAST
from nncompile.codegen.loops import as_i64, const, entry_alloca, for_nest, for_range
from nncompile.ir.graph import Node, Value

i64 = ir.IntType(64)
_SIZES = ("batch", "h", "w", "oh", "ow", "top", "left")


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
    dtype = node.outputs[0].type.dtype
    shapes = {"x": k.dims(image), "y": k.dims(pixels), "w": [*kernel_hw, cin // node.attrs["groups"], cout]}
    with for_range(b, as_i64(product(b, shapes[target])), name="zero") as e:
        b.store(elementwise.constant(dtype, 0, None), b.gep(buffers[target], [e]))
    pads = node.attrs["pads"]
    sizes = [as_i64(d) for d in (batch, h, w, oh, ow, k.dim(pads[0]), k.dim(pads[2]))]
    task = _emit_task(k.module, node, kernel_hw, (cin, cout), target)
    fields = gemm.pack_fields(b, [buffers["x"], buffers["w"], buffers["y"], *sizes])
    work = b.mul(b.mul(sizes[0], b.mul(sizes[3], sizes[4])), const(kernel_hw[0] * kernel_hw[1] * cin * cout))
    threads = parallel.num_threads()
    parts = b.select(b.icmp_signed(">=", work, const(gemm.PARALLEL_WORK * threads)), const(threads), const(1))
    b.call(parallel.emit_parallel_for(k.module), [task, fields, parts])


def _share(b: ir.IRBuilder, total: ir.Value, index: ir.Value, count: ir.Value) -> tuple[ir.Value, ir.Value]:
    """Part `index` of `count` of the range [0, total)."""
    share = gemm.ceil_div(b, total, count)
    first = smin(b, b.mul(index, share), total)
    return first, smin(b, b.add(first, share), total)


def _emit_task(module: ir.Module, node: Node, kernel_hw: tuple[int, int], channels: tuple[int, int],
               target: str) -> ir.Function:
    """task(ctx, index, count): its share of the images (of the input channels for "w")."""
    dtype = node.outputs[0].type.dtype
    ptr = storage_type(dtype).as_pointer()
    task, b, ctx, index, count = parallel.task_function(module, module.get_unique_name("conv_direct"))
    x, w, y, *values = gemm.unpack_fields(b, ctx, [ptr] * 3 + [i64] * len(_SIZES))
    sizes = dict(zip(_SIZES, values))
    buffers = {"x": x, "w": w, "y": y}
    cin, cout = channels
    images = (const(0), sizes["batch"]) if target == "w" else _share(b, sizes["batch"], index, count)
    inputs = _share(b, const(cin), index, count) if target == "w" else (const(0), const(cin))
    (sh, sw), (dh, dw) = node.attrs["strides"], node.attrs["dilations"]
    with for_range(b, images[1], start=images[0], name="n") as n, \
            for_nest(b, [sizes["oh"], sizes["ow"]], name="p") as (r, q):
        y_at = _pixel(b, (n, r, q), sizes["oh"], sizes["ow"], cout)
        h0 = b.sub(b.mul(r, const(sh)), sizes["top"])
        w0 = b.sub(b.mul(q, const(sw)), sizes["left"])
        with for_nest(b, list(kernel_hw), name="t") as (i, j):
            ih, iw = b.add(h0, b.mul(i, const(dh))), b.add(w0, b.mul(j, const(dw)))
            inside = b.and_(b.icmp_unsigned("<", ih, sizes["h"]), b.icmp_unsigned("<", iw, sizes["w"]))
            with b.if_then(inside):
                x_at = _pixel(b, (n, ih, iw), sizes["h"], sizes["w"], cin)
                tap = b.add(b.mul(i, const(kernel_hw[1])), j)
                _channels(b, node, buffers, target, (x_at, y_at, tap), inputs, channels)
    b.ret_void()
    return task


def _pixel(b: ir.IRBuilder, index: tuple, h: ir.Value, w: ir.Value, c: int) -> ir.Value:
    """The element offset of pixel (n, r, q) of an NHWC array."""
    n, r, q = index
    return b.mul(b.add(b.mul(b.add(b.mul(n, h), r), w), q), const(c))


def _channels(b: ir.IRBuilder, node: Node, buffers: dict[str, ir.Value], target: str,
              at: tuple[ir.Value, ir.Value, ir.Value], inputs: tuple[ir.Value, ir.Value],
              channels: tuple[int, int]) -> None:
    """For every input channel of `inputs` (its group g, c within it) and output channel o of g,
    at one tap of one pixel: the target's element += the product of the other two buffers'
    elements. An image element (the input gradient) gets a sum over o, kept in a register and
    reassociated so that it vectorizes (in memory, in strict float order, it ran 15 times slower)."""
    x_at, y_at, tap = at
    cin, cout = channels
    groups = node.attrs["groups"]
    cg, og = cin // groups, cout // groups
    dtype = node.outputs[0].type.dtype

    def pointers(channel, o):
        column = b.add(b.mul(b.sdiv(channel, const(cg)), const(og)), o)
        offsets = {"x": b.add(x_at, channel), "y": b.add(y_at, column),
                   "w": b.add(b.mul(b.add(b.mul(tap, const(cg)), b.srem(channel, const(cg))), const(cout)), column)}
        return {name: b.gep(buffers[name], [offset]) for name, offset in offsets.items()}

    with for_range(b, inputs[1], start=inputs[0], name="c") as channel:
        if target == "x":
            total = entry_alloca(b, scalar_type(dtype))
            b.store(elementwise.constant(dtype, 0, None), total)
        with for_range(b, og, name="o") as o:
            ptrs = pointers(channel, o)
            left, right = (b.load(ptrs[name]) for name in "xwy" if name != target)
            into = total if target == "x" else ptrs[target]
            b.store(b.fadd(b.load(into), b.fmul(left, right, flags=FAST), flags=FAST), into)
        if target == "x":
            ptr = pointers(channel, const(0))["x"]
            b.store(b.fadd(b.load(ptr), b.load(total)), ptr)

"""Kernels of the backward-pass ops (`nncompile/ir/ops/grad.py`), registered in the op table's
`lower` slot.

The conv2d gradients run at GEMM speed on `gemm.emit_gemm`, over chunks of output pixels so that
the patch matrix of a chunk (CHUNK_ELEMENTS at most) stays in cache instead of the whole batch's:
- filter: per group and chunk, the patches P (rows x KH*KW*cg, im2col) give dW_g += P^T @ dY_g;
- input: per group and chunk, dP = dY_g @ W_g^T, then each patch row is added back onto the
  pixels it was read from (col2im). Every stride, padding, dilation and group count takes this
  path. The filter gradient splits its chunks between the threads (each with its own patch
  buffer and partial dW, added at the end); the input gradient splits the images (each thread
  with its own column buffer; a batch smaller than the thread count leaves the GEMMs both cores).
random_uniform is a plain loop nest; scatter_add splits the rows it writes between the threads.
The pooling gradients are in pooling.py.
"""
from __future__ import annotations

from dataclasses import dataclass

from llvmlite import ir

from nncompile.codegen import elementwise, gemm, library, parallel, simd, split_loop, target
from nncompile.codegen.conv import contiguous_window_rows
from nncompile.codegen.conv_direct import emit_direct, has_symbolic_image
from nncompile.codegen.gemm import at, smin
from nncompile.codegen.kernel import Dim, Kernel, picked_index, product, scalar_type, storage_type
from nncompile.codegen.loops import as_i64, const, for_range
from nncompile.ir.dtypes import DType
from nncompile.ir.errors import IRError
from nncompile.ir.graph import Node
from nncompile.ir.ops.grad import GOLDEN, MIX1, MIX2, key_hash
from nncompile.ir.optable import OPS
from nncompile.ir.types import normalize_axis

i32 = ir.IntType(32)
i64 = ir.IntType(64)
CHUNK_ELEMENTS = 1 << 18   # patch-matrix elements per chunk: 1 MB of f32, within L2


def _add(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    return b.fadd(x, y) if isinstance(x.type, (ir.FloatType, ir.DoubleType, ir.HalfType)) else b.add(x, y)


def zero_fill(b: ir.IRBuilder, ptr: ir.Value, count: Dim, dtype: DType) -> None:
    with for_range(b, count, name="z") as i:
        b.store(elementwise.constant(dtype, 0, None), b.gep(ptr, [i]))


def accumulate(b: ir.IRBuilder, ptr: ir.Value, value: ir.Value) -> None:
    b.store(_add(b, b.load(ptr), value), ptr)


# --- conv2d gradients ----------------------------------------------------------------------------

@dataclass(frozen=True)
class _Conv:
    """Static geometry of a convolution and its gradients."""
    h: int
    w: int
    cin: int
    kh: int
    kw: int
    oh: int
    ow: int
    cout: int
    groups: int
    strides: tuple[int, int]
    dilations: tuple[int, int]
    top: int
    left: int

    @property
    def cg(self) -> int:
        return self.cin // self.groups

    @property
    def og(self) -> int:
        return self.cout // self.groups

    @property
    def depth(self) -> int:
        return self.kh * self.kw * self.cg

    @property
    def taps(self) -> int:
        """Taps `_patch_rows` visits: whole window rows when they are contiguous."""
        return self.kh if contiguous_window_rows(self) else self.kh * self.kw

    @property
    def run(self) -> int:
        """Contiguous elements of a tap, in the image and in a patch row."""
        return self.kw * self.cg if contiguous_window_rows(self) else self.cg

    @property
    def chunk(self) -> int:
        return max(16, CHUNK_ELEMENTS // self.depth)


def _geometry(node: Node, x_shape, dy_shape) -> _Conv:
    _, h, w, cin = x_shape
    _, oh, ow, cout = dy_shape
    kh, kw = node.attrs["kernel_hw"] if node.op == "conv2d_grad_filter" else node.inputs[1].type.shape[:2]
    dtype = node.outputs[0].type.dtype
    if dtype not in (DType.f32, DType.f64):
        raise IRError(f"{node.describe()}: dtype {dtype} has no CPU kernel; expected f32 or f64")
    return _Conv(h, w, cin, kh, kw, oh, ow, cout, node.attrs["groups"], tuple(node.attrs["strides"]),
                 tuple(node.attrs["dilations"]), node.attrs["pads"][0], node.attrs["pads"][2])


def _patch_rows(b: ir.IRBuilder, g: _Conv, m0: ir.Value, rows: ir.Value, group: ir.Value, visit) -> None:
    """For each row r < rows (output pixel m0 + r) and tap t < g.taps of the window, call
    visit(r, tap, image_offset, inside): image_offset is the element offset of the tap's first
    element (g.run contiguous ones) of `group` in an NHWC image batch, meaningful only where
    `inside` holds; the tap's run starts at tap*g.run in a patch row."""
    rowwise = contiguous_window_rows(g)
    with for_range(b, rows, name="row") as r:
        m = b.add(m0, r)
        image, rest = b.sdiv(m, const(g.oh * g.ow)), b.srem(m, const(g.oh * g.ow))
        y0 = b.sub(b.mul(b.sdiv(rest, const(g.ow)), const(g.strides[0])), const(g.top))
        x0 = b.sub(b.mul(b.srem(rest, const(g.ow)), const(g.strides[1])), const(g.left))
        with for_range(b, g.taps, name="tap") as tap:
            tap_row, tap_col = (tap, const(0)) if rowwise else (b.sdiv(tap, const(g.kw)), b.srem(tap, const(g.kw)))
            iy = b.add(y0, b.mul(tap_row, const(g.dilations[0])))
            ix = b.add(x0, b.mul(tap_col, const(g.dilations[1])))
            inside = b.and_(b.icmp_unsigned("<", iy, const(g.h)), b.icmp_unsigned("<", ix, const(g.w)))
            pixel = b.add(b.mul(image, const(g.h)), iy)
            offset = b.add(b.mul(b.add(b.mul(pixel, const(g.w)), ix), const(g.cin)), b.mul(group, const(g.cg)))
            visit(r, tap, offset, inside)


def _channel_vectors(b: ir.IRBuilder, channels: int, lanes: int) -> list[tuple[int, ir.Value]]:
    """(first channel, lane mask) of each vector covering `channels` contiguous elements: the
    channel runs of im2col and col2im, moved a vector at a time (LLVM does not vectorize these
    loops by itself: their pointers come out of a task's argument block, without noalias)."""
    return [(c, simd.lane_mask(b, channels - c, lanes)) for c in range(0, channels, lanes)]


def _buffer(b: ir.IRBuilder, elements: int, dtype: DType) -> ir.Value:
    alloc, _ = gemm.libc(b.module)
    size = -(-elements * dtype.itemsize // 64) * 64
    return b.bitcast(b.call(alloc, [const(64), const(max(size, 64))]), scalar_type(dtype).as_pointer())


def _free(b: ir.IRBuilder, *ptrs: ir.Value) -> None:
    _, free = gemm.libc(b.module)
    for ptr in ptrs:
        b.call(free, [b.bitcast(ptr, gemm.i8p)])


def _emit_filter_task(k: Kernel, g: _Conv, dtype: DType) -> ir.Function:
    """task(ctx, index, count) of conv2d_grad_filter: its share of the chunks of output pixels,
    summed into its own partial dW (depth x cout) so that the threads never write the same memory."""
    ptr = scalar_type(dtype).as_pointer()
    task, b, ctx, index, count = parallel.task_function(k.module, k.module.get_unique_name("conv_dw"))
    x, dy, parts, m = gemm.unpack_fields(b, ctx, [ptr, ptr, ptr, i64])
    fn = library.shared_gemm(k.module, dtype, transpose_a=True)
    patches, partial = _buffer(b, g.chunk * g.depth, dtype), _buffer(b, g.depth * g.og, dtype)
    mine = at(b, parts, b.mul(index, const(g.depth * g.cout)))
    zero_fill(b, mine, g.depth * g.cout, dtype)
    share = gemm.ceil_div(b, gemm.ceil_div(b, m, g.chunk), count)
    first = b.mul(b.mul(index, share), const(g.chunk))
    stop = smin(b, m, b.add(first, b.mul(share, const(g.chunk))))
    lanes = target.vector_lanes(dtype.itemsize)
    zero = elementwise.constant(dtype, 0, None)
    with for_range(b, g.groups, name="group") as group, \
            for_range(b, stop, start=first, step=g.chunk, name="chunk") as m0:
        rows = smin(b, const(g.chunk), b.sub(m, m0))

        def gather(r, tap, offset, inside):
            src = at(b, x, b.select(inside, offset, const(0)))
            dst = at(b, patches, b.add(b.mul(r, const(g.depth)), b.mul(tap, const(g.run))))
            if g.run < lanes // 2:    # a few channels: scalar moves cost less than masked vectors
                with for_range(b, g.run, name="c") as c:
                    b.store(b.select(inside, b.load(at(b, src, c)), zero), at(b, dst, c))
                return
            for c, mask in _channel_vectors(b, g.run, lanes):
                on = b.and_(mask, simd.splat(b, inside, lanes))
                simd.masked_store(b, simd.masked_load(b, at(b, src, c), on), at(b, dst, c), mask)

        _patch_rows(b, g, m0, rows, group, gather)
        dy_block = at(b, dy, b.add(b.mul(m0, const(g.cout)), b.mul(group, const(g.og))))
        b.call(fn, [const(g.depth), const(g.og), rows, patches, const(g.depth), dy_block, const(g.cout),
                    partial, const(g.og)])
        with for_range(b, g.depth, name="kd") as kd, for_range(b, g.og, name="o") as o:
            target_ptr = at(b, mine, b.add(b.mul(kd, const(g.cout)), b.add(b.mul(group, const(g.og)), o)))
            accumulate(b, target_ptr, b.load(at(b, partial, b.add(b.mul(kd, const(g.og)), o))))
    _free(b, patches, partial)
    b.ret_void()
    return task


def _conv2d_grad_filter(k: Kernel, node: Node) -> None:
    """dW_g += P^T @ dY_g per chunk of output pixels (P: the chunk's im2col patch matrix); the
    chunks are split between the threads, each summing into a partial dW, and the partials added."""
    b = k.b
    x, dy = node.inputs
    dw = node.outputs[0]
    dtype = dw.type.dtype
    if has_symbolic_image(k, x, dy):
        buffers = {"x": k.ptr(x), "y": k.ptr(dy), "w": k.ptr(dw)}
        emit_direct(k, node, x, dy, tuple(node.attrs["kernel_hw"]), buffers, "w")
        return
    g = _geometry(node, x.type.shape, dy.type.shape)
    task = _emit_filter_task(k, g, dtype)
    m = b.mul(as_i64(k.dims(x)[0]), const(g.oh * g.ow))
    big = b.icmp_signed(">=", b.mul(m, const(g.depth * g.cout)), const(gemm.PARALLEL_WORK))
    tasks = b.select(big, smin(b, gemm.ceil_div(b, m, g.chunk), const(parallel.num_threads())), const(1))
    parts = _buffer(b, parallel.num_threads() * g.depth * g.cout, dtype)
    b.call(parallel.emit_parallel_for(k.module), [task, gemm.pack_fields(b, [k.ptr(x), k.ptr(dy), parts, m]), tasks])
    zero_fill(b, k.ptr(dw), g.depth * g.cout, dtype)
    with for_range(b, tasks, name="part") as t, for_range(b, g.depth * g.cout, name="e") as e:
        accumulate(b, at(b, k.ptr(dw), e), b.load(at(b, parts, b.add(b.mul(t, const(g.depth * g.cout)), e))))
    _free(b, parts)


def _emit_input_task(k: Kernel, g: _Conv, dtype: DType) -> ir.Function:
    """task(ctx, index, count) of conv2d_grad_input: its share of the images, chunk by chunk,
    with its own column buffer. Images are what the threads split because col2im adds each patch
    row onto neighbouring pixels: two threads never write the same image."""
    ptr = scalar_type(dtype).as_pointer()
    task, b, ctx, index, count = parallel.task_function(k.module, k.module.get_unique_name("conv_dx"))
    dy, w, dx, batch = gemm.unpack_fields(b, ctx, [ptr, ptr, ptr, i64])
    fn = library.shared_gemm(k.module, dtype, transpose_b=True)
    lanes = target.vector_lanes(dtype.itemsize)
    share = gemm.ceil_div(b, batch, count)
    first = b.mul(index, share)
    stop = smin(b, batch, b.add(first, share))
    with b.if_then(b.icmp_signed("<", first, stop)):
        pixels = g.oh * g.ow
        image = g.h * g.w * g.cin
        zero_fill(b, at(b, dx, b.mul(first, const(image))), b.mul(b.sub(stop, first), const(image)), dtype)
        columns = _buffer(b, g.chunk * g.depth, dtype)
        m1 = b.mul(stop, const(pixels))
        with for_range(b, g.groups, name="group") as group, \
                for_range(b, m1, start=b.mul(first, const(pixels)), step=g.chunk, name="chunk") as m0:
            rows = smin(b, const(g.chunk), b.sub(m1, m0))
            dy_block = at(b, dy, b.add(b.mul(m0, const(g.cout)), b.mul(group, const(g.og))))
            w_block = at(b, w, b.mul(group, const(g.og)))
            b.call(fn, [rows, const(g.depth), const(g.og), dy_block, const(g.cout), w_block, const(g.cout),
                        columns, const(g.depth)])

            def scatter(r, tap, offset, inside):
                with b.if_then(inside):
                    dst = at(b, dx, offset)
                    src = at(b, columns, b.add(b.mul(r, const(g.depth)), b.mul(tap, const(g.run))))
                    for c, mask in _channel_vectors(b, g.run, lanes):
                        total = b.fadd(simd.masked_load(b, at(b, dst, c), mask), simd.masked_load(b, at(b, src, c), mask))
                        simd.masked_store(b, total, at(b, dst, c), mask)

            _patch_rows(b, g, m0, rows, group, scatter)
        _free(b, columns)
    b.ret_void()
    return task


def _conv2d_grad_input(k: Kernel, node: Node) -> None:
    """dP = dY_g @ W_g^T per chunk of output pixels, then col2im adds dP back onto dX; the images
    are split between the threads when the work pays for it (else the GEMMs use every core)."""
    b = k.b
    dy, w = node.inputs
    dx = node.outputs[0]
    dtype = dx.type.dtype
    if has_symbolic_image(k, dx, dy):
        buffers = {"x": k.ptr(dx), "y": k.ptr(dy), "w": k.ptr(w)}
        emit_direct(k, node, dx, dy, tuple(w.type.shape[:2]), buffers, "x")
        return
    g = _geometry(node, dx.type.shape, dy.type.shape)
    task = _emit_input_task(k, g, dtype)
    batch = as_i64(k.dims(dx)[0])
    work = b.mul(b.mul(batch, const(g.oh * g.ow)), const(g.depth * g.cout))
    big = b.and_(b.icmp_signed(">=", work, const(gemm.PARALLEL_WORK * parallel.num_threads())),
                 b.icmp_signed(">=", batch, const(parallel.num_threads())))
    tasks = b.select(big, const(parallel.num_threads()), const(1))
    fields = gemm.pack_fields(b, [k.ptr(dy), k.ptr(w), k.ptr(dx), batch])
    b.call(parallel.emit_parallel_for(k.module), [task, fields, tasks])


# --- scatter_add and random_uniform --------------------------------------------------------------

def _scatter_add(k: Kernel, node: Node) -> None:
    """out = 0, then each row of updates added at its index. Every index is checked first (one
    out of range makes the kernel return 1 before anything is written); then the rows of `out`
    are split between the threads: each zeroes its own and adds the updates whose index falls
    among them, so no two threads add into one row (an embedding's gradient: 6,400 rows of a
    10,000-row table at batch 64)."""
    b = k.b
    indices, updates = node.inputs
    out = node.outputs[0]
    dims = k.dims(out)
    axis = normalize_axis(node.attrs["axis"], len(dims))
    outer, size, inner = product(b, dims[:axis]), dims[axis], product(b, dims[axis + 1:])
    count = k.size(indices)
    with for_range(b, count, name="check") as j:
        index = picked_index(b, k.ptr(indices), j, as_i64(size), node.attrs["allow_negative"])
        with b.if_then(b.icmp_unsigned(">=", index, as_i64(size)), likely=False):
            b.ret(ir.Constant(i32, 1))
    sizes = [as_i64(d) for d in (outer, size, inner, count)]
    work = b.mul(b.add(sizes[1], sizes[3]), b.mul(sizes[0], sizes[2]))
    threads = parallel.num_threads()
    big = b.and_(b.icmp_signed(">=", work, const(split_loop.PARALLEL_ELEMENTS)),
                 b.icmp_signed(">=", sizes[1], const(threads)))
    fields = gemm.pack_fields(b, [k.ptr(indices), k.ptr(updates), k.ptr(out), *sizes])
    task = _scatter_task(k.module, node)
    b.call(parallel.emit_parallel_for(k.module), [task, fields, b.select(big, const(threads), const(1))])


def _scatter_task(module: ir.Module, node: Node) -> ir.Function:
    """The task zeroing rows [lo, hi) of every outer slice of `out` and adding into them."""
    indices, updates = node.inputs
    out = node.outputs[0]
    fn, b, ctx, index, tasks = parallel.task_function(module, module.get_unique_name("scatter_add"))
    types = [storage_type(v.type.dtype).as_pointer() for v in (indices, updates, out)]
    idx, upd, dst, outer, size, inner, count = gemm.unpack_fields(b, ctx, types + [i64] * 4)
    share = gemm.ceil_div(b, size, tasks)
    lo = b.mul(index, share)
    hi = smin(b, size, b.add(lo, share))
    with b.if_then(b.icmp_signed("<", lo, hi)):
        with for_range(b, outer, name="o") as o:
            zero_fill(b, at(b, dst, b.mul(b.add(b.mul(o, size), lo), inner)), b.mul(b.sub(hi, lo), inner),
                      out.type.dtype)
            with for_range(b, count, name="j") as j:
                row = picked_index(b, idx, j, size, node.attrs["allow_negative"])
                with b.if_then(b.and_(b.icmp_signed(">=", row, lo), b.icmp_signed("<", row, hi))):
                    into = at(b, dst, b.mul(b.add(b.mul(o, size), row), inner))
                    source = at(b, upd, b.mul(b.add(b.mul(o, count), j), inner))
                    with for_range(b, inner, name="c") as c:
                        accumulate(b, at(b, into, c), b.load(at(b, source, c)))
    b.ret_void()
    return fn


def _signed(value: int) -> ir.Constant:
    """A uint64 as the i64 constant of the same bits."""
    value &= (1 << 64) - 1
    return const(value - (1 << 64) if value >= 1 << 63 else value)


def _mix(b: ir.IRBuilder, z: ir.Value) -> ir.Value:
    """splitmix64's finalizer, as `mix64` in the op's reference."""
    z = b.mul(b.xor(z, b.lshr(z, const(30))), _signed(MIX1))
    z = b.mul(b.xor(z, b.lshr(z, const(27))), _signed(MIX2))
    return b.xor(z, b.lshr(z, const(31)))


def _random_uniform(k: Kernel, node: Node) -> None:
    """out[i] = top 24 bits of mix64(stream + (i + 1) * GOLDEN) / 2**24, as `uniform_bits`."""
    b = k.b
    out = node.outputs[0]
    stream = _mix(b, b.xor(_signed(key_hash(node.attrs["key"])), b.load(k.ptr(node.inputs[0]))))
    f32 = scalar_type(DType.f32)
    scale = ir.Constant(f32, 2.0 ** -24)
    with for_range(b, k.size(out), name="r") as i:
        z = _mix(b, b.add(stream, b.mul(b.add(i, const(1)), _signed(GOLDEN))))
        b.store(b.fmul(b.uitofp(b.lshr(z, const(40)), f32), scale), at(b, k.ptr(out), i))


LOWERINGS = {
    "conv2d_grad_input": _conv2d_grad_input, "conv2d_grad_filter": _conv2d_grad_filter,
    "scatter_add": _scatter_add, "random_uniform": _random_uniform,
}

for _name, _fn in LOWERINGS.items():
    OPS[_name].lower = _fn

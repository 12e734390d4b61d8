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
max_pool2d_grad works on vectors of channels (NHWC: contiguous) and splits the images between the
threads: per output pixel, the window's maximum first, then dy goes to the first tap equal to it.
avg_pool2d_grad, scatter_add and random_uniform are plain loop nests (channels innermost).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

from llvmlite import ir

from nncompile.codegen import elementwise, gemm, library, parallel, simd, target
from nncompile.codegen.conv import contiguous_window_rows
from nncompile.codegen.conv_direct import emit_direct, has_symbolic_image
from nncompile.codegen.gemm import at, entry_alloca, smin
from nncompile.codegen.kernel import Dim, Kernel, product, scalar_type, storage_type
from nncompile.codegen.loops import as_i64, const, for_nest, for_range
from nncompile.ir.dtypes import DType
from nncompile.ir.errors import IRError
from nncompile.ir.graph import Node
from nncompile.ir.ops.grad import GOLDEN, MIX1, MIX2, key_hash
from nncompile.ir.optable import OPS
from nncompile.ir.types import normalize_axis

i32 = ir.IntType(32)
i64 = ir.IntType(64)
CHUNK_ELEMENTS = 1 << 18   # patch-matrix elements per chunk: 1 MB of f32, within L2
POOL_PARALLEL_ELEMENTS = 1 << 15   # input elements from which a pooling gradient uses every core


def _add(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    return b.fadd(x, y) if isinstance(x.type, (ir.FloatType, ir.DoubleType, ir.HalfType)) else b.add(x, y)


def _zero_fill(b: ir.IRBuilder, ptr: ir.Value, count: Dim, dtype: DType) -> None:
    with for_range(b, count, name="z") as i:
        b.store(elementwise.constant(dtype, 0, None), b.gep(ptr, [i]))


def _accumulate(b: ir.IRBuilder, ptr: ir.Value, value: ir.Value) -> None:
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
    _zero_fill(b, mine, g.depth * g.cout, dtype)
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
            _accumulate(b, target_ptr, b.load(at(b, partial, b.add(b.mul(kd, const(g.og)), o))))
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
    _zero_fill(b, k.ptr(dw), g.depth * g.cout, dtype)
    with for_range(b, tasks, name="part") as t, for_range(b, g.depth * g.cout, name="e") as e:
        _accumulate(b, at(b, k.ptr(dw), e), b.load(at(b, parts, b.add(b.mul(t, const(g.depth * g.cout)), e))))
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
        _zero_fill(b, at(b, dx, b.mul(first, const(image))), b.mul(b.sub(stop, first), const(image)), dtype)
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


# --- pooling gradients ---------------------------------------------------------------------------

def _window(b: ir.IRBuilder, start: ir.Value, size: int, limit: Dim) -> tuple[ir.Value, ir.Value]:
    """The window offsets [lo, hi) inside [0, limit) for a window of `size` at `start`."""
    lo = b.select(b.icmp_signed("<", start, const(0)), b.neg(start), const(0))
    room = b.sub(as_i64(limit), start)
    return lo, b.select(b.icmp_signed("<", room, const(size)), room, const(size))


def _pool_windows(k: Kernel, node: Node, x_dims, dy, visit) -> None:
    """For each output pixel (n, r, q) of `dy`: visit(dy_row, base, rows, cols) where dy_row is
    the element offset of its channels, base the offset of the window's corner pixel in the
    (unpadded) input, and rows/cols the in-bounds window offsets [lo, hi)."""
    b = k.b
    batch, h, w, c = x_dims
    (kh, kw), (sh, sw), (top, _, left, _) = node.attrs["window"], node.attrs["strides"], node.attrs["pads"]
    _, oh, ow, _ = k.dims(dy)
    with for_nest(b, [batch, oh, ow], name="p") as (n, r, q):
        dy_row = b.mul(b.add(b.mul(b.add(b.mul(n, as_i64(oh)), r), as_i64(ow)), q), as_i64(c))
        h0 = b.sub(b.mul(r, const(sh)), as_i64(k.dim(top)))
        w0 = b.sub(b.mul(q, const(sw)), as_i64(k.dim(left)))
        base = b.mul(b.add(b.mul(b.add(b.mul(n, as_i64(h)), h0), as_i64(w)), w0), as_i64(c))
        visit(dy_row, base, _window(b, h0, kh, h), _window(b, w0, kw, w))


@contextmanager
def _taps(b: ir.IRBuilder, rows: tuple[ir.Value, ir.Value], cols: tuple[ir.Value, ir.Value]):
    """Loop over the in-bounds taps (i, j) of a window in scan order."""
    with for_range(b, rows[1], start=rows[0], name="i") as i, for_range(b, cols[1], start=cols[0], name="j") as j:
        yield i, j


def _nan_max(b: ir.IRBuilder, v: ir.Value, best: ir.Value, dtype: DType) -> ir.Value:
    """max(best, v) lane-wise, a NaN winning over any number (as max_pool2d)."""
    if dtype.is_float:
        wins = b.or_(b.fcmp_ordered(">", v, best), b.fcmp_unordered("uno", v, v))
    else:
        wins = b.icmp_signed(">", v, best)
    return b.select(wins, v, best)


def _is_max(b: ir.IRBuilder, v: ir.Value, best: ir.Value, dtype: DType) -> ir.Value:
    """Whether v is the window's maximum `best` (a NaN when the maximum is one)."""
    if dtype.is_float:
        return b.or_(b.fcmp_ordered("==", v, best), b.fcmp_unordered("uno", v, v))
    return b.icmp_signed("==", v, best)


def _emit_max_pool_task(k: Kernel, node: Node, dtype: DType) -> ir.Function:
    """task(ctx, index, count) of max_pool2d_grad over its share of the images. Per output pixel
    and vector of channels: the window's maximum first, then dy goes to the first tap equal to it
    (a masked add, so every other element of dx keeps its bits)."""
    ty = storage_type(dtype)
    ptr = ty.as_pointer()
    lanes = target.vector_lanes(dtype.itemsize)
    task, b, ctx, index, count = parallel.task_function(k.module, k.module.get_unique_name("max_pool_grad"))
    x, dy, dx, batch, channels, *sizes = gemm.unpack_fields(b, ctx, [ptr, ptr, ptr] + [i64] * 8)
    _, h, w, static_channels = node.inputs[0].type.shape
    # whole vectors of a static channel count take plain loads and stores (masked ones cost more)
    whole = isinstance(static_channels, int) and static_channels % lanes == 0
    channels = const(static_channels) if isinstance(static_channels, int) else channels
    _, oh, ow, _ = node.inputs[1].type.shape
    (kh, kw), (sh, sw), (top, _, left, _) = node.attrs["window"], node.attrs["strides"], node.attrs["pads"]
    # sizes known only when run (a sequence of any length, its 'same' pads) come from the fields
    h, w, oh, ow, top, left = (const(d) if isinstance(d, int) else v
                               for d, v in zip((h, w, oh, ow, top, left), sizes))
    vec = ir.VectorType(ty, lanes)
    overlapping = sh < kh or sw < kw
    best_slot, done_slot = entry_alloca(b, vec), entry_alloca(b, ir.VectorType(ir.IntType(1), lanes))
    share = gemm.ceil_div(b, batch, count)
    first_image = b.mul(index, share)
    image_size = b.mul(b.mul(h, w), channels)
    with for_range(b, smin(b, batch, b.add(first_image, share)), start=first_image, name="n") as n:
        image = at(b, dx, b.mul(n, image_size))
        with for_range(b, image_size, name="z") as i:
            b.store(gemm.zero(ty), at(b, image, i))
        with for_nest(b, [oh, ow], name="p") as (r, q), for_range(b, channels, step=lanes, name="c") as c0:
            mask = simd.lane_mask(b, b.sub(channels, c0), lanes)

            def load(base, offset):
                if whole:
                    return simd.load_vector(b, at(b, base, offset), lanes)
                return simd.masked_load(b, at(b, base, offset), mask)

            h0 = b.sub(b.mul(r, const(sh)), top)
            w0 = b.sub(b.mul(q, const(sw)), left)
            rows, cols = _window(b, h0, kh, h), _window(b, w0, kw, w)
            corner = b.add(b.mul(b.add(b.mul(b.add(b.mul(n, h), h0), w), w0), channels), c0)

            def spot(i, j):
                return b.add(corner, b.mul(b.add(b.mul(i, w), j), channels))

            b.store(load(x, spot(rows[0], cols[0])), best_slot)
            with _taps(b, rows, cols) as (i, j):
                b.store(_nan_max(b, load(x, spot(i, j)), b.load(best_slot), dtype), best_slot)
            best = b.load(best_slot)
            pixel = b.add(b.mul(n, oh), r)
            grad = load(dy, b.add(b.mul(b.add(b.mul(pixel, ow), q), channels), c0))
            b.store(b.not_(mask), done_slot)
            with _taps(b, rows, cols) as (i, j):
                done = b.load(done_slot)
                hit = b.and_(_is_max(b, load(x, spot(i, j)), best, dtype), b.not_(done))
                if overlapping:
                    current = load(dx, spot(i, j))
                    update = b.select(hit, gemm.add(b, current, grad), current)
                else:   # this tap is the only writer of its element: no need to read it
                    update = b.select(hit, grad, ir.Constant(vec, None))
                if whole:
                    simd.store_vector(b, update, at(b, dx, spot(i, j)))
                else:
                    simd.masked_store(b, update, at(b, dx, spot(i, j)), mask)
                b.store(b.or_(done, hit), done_slot)
    b.ret_void()
    return task


def _max_pool2d_grad(k: Kernel, node: Node) -> None:
    """Each dy goes to the first maximum of its window (the first NaN, if any), as the reference;
    the images are split between the threads when there is enough work."""
    b = k.b
    x, dy = node.inputs
    dx = node.outputs[0]
    dtype = x.type.dtype
    task = _emit_max_pool_task(k, node, dtype)
    batch = as_i64(k.dims(x)[0])
    big = b.icmp_signed(">=", as_i64(k.size(x)), const(POOL_PARALLEL_ELEMENTS))
    tasks = b.select(big, smin(b, batch, const(parallel.num_threads())), const(1))
    (h, w, c), (oh, ow) = k.dims(x)[1:], k.dims(dy)[1:3]
    top, _, left, _ = node.attrs["pads"]
    sizes = [as_i64(d) for d in (c, h, w, oh, ow, k.dim(top), k.dim(left))]
    fields = gemm.pack_fields(b, [k.ptr(x), k.ptr(dy), k.ptr(dx), batch, *sizes])
    b.call(parallel.emit_parallel_for(k.module), [task, fields, tasks])


def _avg_pool2d_grad(k: Kernel, node: Node) -> None:
    b = k.b
    dy = node.inputs[0]
    dx = node.outputs[0]
    dtype = dx.type.dtype
    dims = k.dims(dx)
    width, channels = dims[2], as_i64(dims[3])
    _zero_fill(b, k.ptr(dx), k.size(dx), dtype)

    def visit(dy_row, base, rows, cols):
        count = b.mul(b.sub(rows[1], rows[0]), b.sub(cols[1], cols[0]))
        scale = b.fdiv(elementwise.constant(dtype, 1.0, None), b.sitofp(count, scalar_type(dtype)))
        with for_range(b, rows[1], start=rows[0], name="i") as i, \
                for_range(b, cols[1], start=cols[0], name="j") as j:
            dst = at(b, k.ptr(dx), b.add(base, b.mul(b.add(b.mul(i, as_i64(width)), j), channels)))
            with for_range(b, channels, name="c") as c:
                share = b.fmul(b.load(at(b, k.ptr(dy), b.add(dy_row, c))), scale)
                _accumulate(b, at(b, dst, c), share)

    _pool_windows(k, node, dims, dy, visit)


# --- scatter_add and random_uniform --------------------------------------------------------------

def _scatter_add(k: Kernel, node: Node) -> None:
    """out = 0, then each row of updates added at its index; an index out of range returns 1."""
    b = k.b
    indices, updates = node.inputs
    out = node.outputs[0]
    dims = k.dims(out)
    axis = normalize_axis(node.attrs["axis"], len(dims))
    outer, size, inner = product(b, dims[:axis]), dims[axis], product(b, dims[axis + 1:])
    count = k.size(indices)
    _zero_fill(b, k.ptr(out), k.size(out), out.type.dtype)
    with for_nest(b, [outer, count], name="s") as (o, j):
        index = b.load(at(b, k.ptr(indices), j))
        index = b.sext(index, i64) if indices.type.dtype is DType.i32 else index
        if node.attrs["allow_negative"]:
            index = b.select(b.icmp_signed("<", index, const(0)), b.add(index, as_i64(size)), index)
        with b.if_then(b.icmp_unsigned(">=", index, as_i64(size)), likely=False):
            b.ret(ir.Constant(i32, 1))
        dst = at(b, k.ptr(out), b.mul(b.add(b.mul(o, as_i64(size)), index), as_i64(inner)))
        src = at(b, k.ptr(updates), b.mul(b.add(b.mul(o, as_i64(count)), j), as_i64(inner)))
        with for_range(b, inner, name="c") as c:
            _accumulate(b, at(b, dst, c), b.load(at(b, src, c)))


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
    "max_pool2d_grad": _max_pool2d_grad, "avg_pool2d_grad": _avg_pool2d_grad,
    "scatter_add": _scatter_add, "random_uniform": _random_uniform,
}

for _name, _fn in LOWERINGS.items():
    OPS[_name].lower = _fn

"""Pooling kernels, forward and backward, registered in the op table's `lower` slot.

In NHWC a pixel's channels are contiguous, so max_pool2d, avg_pool2d and max_pool2d_grad work on
vectors of channels, in a task over a share of the output rows (of the images, for the
gradient; every thread when there is enough work): per output pixel and vector of channels the window's taps meet in a register, loaded once
each (`_emit_task`). A pooling of integers, or one with an elementwise epilogue (whose operands
are read element by element), is a plain loop nest instead, as is avg_pool2d_grad. Windows are
clipped to the image: the padding takes no part, and avg divides by the count of real taps.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Sequence

from llvmlite import ir

from nncompile.codegen import elementwise, gemm, parallel, simd, target
from nncompile.codegen.gemm import at, entry_alloca, smin
from nncompile.codegen.grad import accumulate, zero_fill
from nncompile.codegen.kernel import Dim, Kernel, load, scalar_type, storage_type, store
from nncompile.codegen.loop import apply_epilogue, combine, identity
from nncompile.codegen.loops import as_i64, const, for_nest, for_range, linear_index
from nncompile.ir.dtypes import DType
from nncompile.ir.graph import Node, Value
from nncompile.ir.optable import OPS

i64 = ir.IntType(64)
# input elements from which a pooling uses every core: the 30x30x32 pool after the CIFAR CNN's
# first convolution (28.8K) took 7 us on one thread, 4.2-5 on two (rows another core just wrote)
PARALLEL_ELEMENTS = 1 << 14
UNROLLED_TAPS = 16            # windows of at most this many taps are unrolled where they are whole


def _window(b: ir.IRBuilder, start: ir.Value, size: int, limit: Dim) -> tuple[ir.Value, ir.Value]:
    """The window offsets [lo, hi) inside [0, limit) for a window of `size` at `start`."""
    lo = b.select(b.icmp_signed("<", start, const(0)), b.neg(start), const(0))
    room = b.sub(as_i64(limit), start)
    return lo, b.select(b.icmp_signed("<", room, const(size)), room, const(size))


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


# --- vectors of channels, images split between the threads -----------------------------------------

@dataclass
class _Pixel:
    """One output pixel and vector of channels, as a task's visit sees it."""
    b: ir.IRBuilder
    image: ir.Value                        # n
    rows: tuple[ir.Value, ir.Value]        # the window's in-bounds rows [lo, hi)
    cols: tuple[ir.Value, ir.Value]
    spot: Callable[[ir.Value, ir.Value], ir.Value]   # offset of tap (i, j)'s vector in the input
    out: ir.Value                          # offset of the vector in the output (N, OH, OW, C)
    load: Callable[[ir.Value, ir.Value], ir.Value]   # load(pointer, offset): the vector there
    store: Callable[[ir.Value, ir.Value, ir.Value], None]   # store(value, pointer, offset)
    mask: ir.Value                         # the lanes that are channels


Visit = Callable[[_Pixel, list[ir.Value]], None]


def _emit_task(k: Kernel, node: Node, name: str, operands: int, y: Value, visit: Visit,
               before_image: Callable[[ir.IRBuilder, list[ir.Value], ir.Value, ir.Value], None] | None = None
               ) -> ir.Function:
    """task(ctx, index, count) over its share of the output rows of `node`'s input x (NHWC; `y`
    is a value shaped as the pooled output, y or dy): visit(pixel, pointers) at every output
    pixel and vector of channels, the `operands` pointers unpacked from the context (as `_run`
    packs them). With before_image(b, pointers, n, image_elements), run first for each image,
    the share is whole images (a gradient's windows overlap from row to row); without, any rows,
    so one image (batch-1 inference) is pooled by every thread, each reading the rows another
    core's kernel may have just written (one thread alone took 7 us to pull 115 KB across)."""
    x = node.inputs[0]
    dtype = x.type.dtype
    ty = storage_type(dtype)
    lanes = target.vector_lanes(dtype.itemsize)
    task, b, ctx, index, count = parallel.task_function(k.module, k.module.get_unique_name(name))
    *pointers, batch, channels, h, w, oh, ow, top, left = gemm.unpack_fields(
        b, ctx, [ty.as_pointer()] * operands + [i64] * 8)
    static_channels = x.type.shape[3]
    # whole vectors of a static channel count take plain loads and stores (masked ones cost more)
    whole = isinstance(static_channels, int) and static_channels % lanes == 0
    channels = const(static_channels) if isinstance(static_channels, int) else channels
    h, w, oh, ow, top, left = (const(d) if isinstance(d, int) else v for d, v in zip(
        (*x.type.shape[1:3], *y.type.shape[1:3], *_pads(node)), (h, w, oh, ow, top, left)))
    (kh, kw), (sh, sw) = node.attrs["window"], node.attrs["strides"]
    by_rows = before_image is None
    rows = oh if by_rows else const(1)   # the parts of an image a task may take apart
    units = b.mul(batch, rows)
    share = gemm.ceil_div(b, units, count)
    first = b.mul(index, share)
    with for_range(b, smin(b, units, b.add(first, share)), start=first, name="u") as unit:
        n = b.sdiv(unit, rows)
        if before_image is not None:
            before_image(b, pointers, n, b.mul(b.mul(h, w), channels))
        first_row, row_count = (b.srem(unit, rows), const(1)) if by_rows else (const(0), oh)
        with for_range(b, b.add(first_row, row_count), start=first_row, name="r") as r, \
                for_range(b, ow, name="q") as q, for_range(b, channels, step=lanes, name="c") as c0:
            mask = simd.lane_mask(b, b.sub(channels, c0), lanes)
            h0 = b.sub(b.mul(r, const(sh)), top)
            w0 = b.sub(b.mul(q, const(sw)), left)
            corner = b.add(b.mul(b.add(b.mul(b.add(b.mul(n, h), h0), w), w0), channels), c0)

            def spot(i, j, corner=corner):
                return b.add(corner, b.mul(b.add(b.mul(i, w), j), channels))

            def load_at(base, offset, mask=mask):
                ptr = at(b, base, offset)
                return simd.load_vector(b, ptr, lanes) if whole else simd.masked_load(b, ptr, mask)

            def store_at(value, base, offset, mask=mask):
                ptr = at(b, base, offset)
                simd.store_vector(b, value, ptr) if whole else simd.masked_store(b, value, ptr, mask)

            out = b.add(b.mul(b.add(b.mul(b.add(b.mul(n, oh), r), ow), q), channels), c0)
            visit(_Pixel(b, n, _window(b, h0, kh, h), _window(b, w0, kw, w), spot, out, load_at, store_at, mask),
                  pointers)
    b.ret_void()
    return task


def _pads(node: Node) -> tuple:
    top, _, left, _ = node.attrs["pads"]
    return top, left


def _run(k: Kernel, node: Node, task: ir.Function, pointers: Sequence[ir.Value], y: Value,
         by_rows: bool = True) -> None:
    """Run `task` over node's input x, its output rows (or, not `by_rows`, its images) shared out;
    `y` is output-shaped (N, OH, OW, C)."""
    b, x = k.b, node.inputs[0]
    batch = as_i64(k.dims(x)[0])
    big = b.icmp_signed(">=", as_i64(k.size(x)), const(PARALLEL_ELEMENTS))
    units = b.mul(batch, as_i64(k.dims(y)[1])) if by_rows else batch
    tasks = b.select(big, smin(b, units, const(parallel.num_threads())), const(1))
    (h, w, c), (oh, ow) = k.dims(x)[1:], k.dims(y)[1:3]
    sizes = [as_i64(d) for d in (c, h, w, oh, ow, *(k.dim(p) for p in _pads(node)))]
    fields = gemm.pack_fields(b, [*pointers, batch, *sizes])
    b.call(parallel.emit_parallel_for(k.module), [task, fields, tasks])


# --- forward -------------------------------------------------------------------------------------

def _pool(k: Kernel, node: Node, epilogue: Sequence[Node] = (), output: Value | None = None) -> None:
    """max or avg over each window, vectors of channels at a time (see the module)."""
    out = output if output is not None else node.outputs[0]
    dtype = node.inputs[0].type.dtype
    if epilogue or not dtype.is_float:
        _pool_loop(k, node, epilogue, out)
        return
    vec = ir.VectorType(scalar_type(dtype), target.vector_lanes(dtype.itemsize))
    maximum = node.op == "max_pool2d"
    start = simd.constant(vec, (identity("reduce_max" if maximum else "reduce_sum", dtype),) * vec.count)

    (kh, kw) = node.attrs["window"]

    def visit(p: _Pixel, pointers: list[ir.Value]) -> None:
        b, (x, y) = p.b, pointers
        acc = entry_alloca(b, vec)

        def add_tap(i, j):
            v = p.load(x, p.spot(i, j))
            b.store(_nan_max(b, v, b.load(acc), dtype) if maximum else b.fadd(b.load(acc), v), acc)

        b.store(start, acc)
        inside = b.and_(b.icmp_signed("==", b.add(p.rows[0], p.cols[0]), const(0)),
                        b.icmp_signed("==", b.mul(p.rows[1], p.cols[1]), const(kh * kw)))
        with b.if_else(inside) as (whole_window, clipped):
            with whole_window:       # the usual case, its taps unrolled (the loop costs more than a tap)
                for i in range(kh if kh * kw <= UNROLLED_TAPS else 0):
                    for j in range(kw):
                        add_tap(const(i), const(j))
                if kh * kw > UNROLLED_TAPS:
                    with _taps(b, p.rows, p.cols) as (i, j):
                        add_tap(i, j)
            with clipped:
                with _taps(b, p.rows, p.cols) as (i, j):
                    add_tap(i, j)
        result = b.load(acc)
        if not maximum:
            count = b.mul(b.sub(p.rows[1], p.rows[0]), b.sub(p.cols[1], p.cols[0]))
            result = b.fdiv(result, simd.splat(b, b.sitofp(count, vec.element), vec.count))
        p.store(result, y, p.out)

    task = _emit_task(k, node, node.op, 2, node.outputs[0], visit)
    _run(k, node, task, [k.ptr(node.inputs[0]), k.ptr(out)], node.outputs[0])


def _pool_loop(k: Kernel, node: Node, epilogue: Sequence[Node], out: Value) -> None:
    """Each output row (n, oh, ow, :) accumulates the in-bounds window rows, channels innermost;
    avg divides by the count of real elements; then the epilogue runs on the row."""
    b, x = k.b, node.inputs[0]
    result = node.outputs[0]
    batch, h, w, c = k.dims(x)
    _, oh, ow, _ = k.dims(result)
    (kh, kw), (sh, sw) = node.attrs["window"], node.attrs["strides"]
    top, left = _pads(node)
    dtype = x.type.dtype
    op = "reduce_max" if node.op == "max_pool2d" else "reduce_sum"
    acc_ptr = k.ptr(out)
    x_strides = k.strides(x)
    with for_nest(b, [batch, oh, ow], name="p") as (n, r, q):
        row = linear_index(b, [n, r, q], k.strides(result)[:3])
        h0 = b.sub(b.mul(r, const(sh)), as_i64(k.dim(top)))
        w0 = b.sub(b.mul(q, const(sw)), as_i64(k.dim(left)))
        r0, r1 = _window(b, h0, kh, h)
        q0, q1 = _window(b, w0, kw, w)
        with for_range(b, c, name="c0") as ch:
            b.store(elementwise.constant(dtype, identity(op, dtype), None), b.gep(acc_ptr, [b.add(row, ch)]))
        with _taps(b, (r0, r1), (q0, q1)) as (i, j):
            base = linear_index(b, [n, b.add(h0, i), b.add(w0, j)], x_strides[:3])
            with for_range(b, c, name="c") as ch:
                slot = b.gep(acc_ptr, [b.add(row, ch)])
                v = load(b, b.gep(k.ptr(x), [b.add(base, ch)]), dtype)
                b.store(combine(b, op, b.load(slot), v, dtype.is_float, dtype is DType.u8), slot)
        if op == "reduce_sum" or epilogue:
            scale = b.sitofp(b.mul(b.sub(r1, r0), b.sub(q1, q0)), scalar_type(dtype)) \
                if op == "reduce_sum" else None
            with for_range(b, c, name="ce") as ch:
                slot = b.gep(acc_ptr, [b.add(row, ch)])
                v = b.load(slot) if scale is None else b.fdiv(b.load(slot), scale)
                v = apply_epilogue(k, epilogue, result, v, [n, r, q, ch], [batch, oh, ow, c])
                store(b, v, slot, out.type.dtype)


# --- gradients -----------------------------------------------------------------------------------

def _max_pool2d_grad(k: Kernel, node: Node) -> None:
    """Each dy goes to the first maximum of its window (the first NaN, if any), as the reference:
    per output pixel and vector of channels, the window's maximum first, then dy goes to the first
    tap equal to it (a masked add, so every other element of dx keeps its bits)."""
    x, dy = node.inputs
    dtype = x.type.dtype
    ty = storage_type(dtype)
    vec = ir.VectorType(ty, target.vector_lanes(dtype.itemsize))
    (kh, kw), (sh, sw) = node.attrs["window"], node.attrs["strides"]
    overlapping = sh < kh or sw < kw

    def zero_image(b, pointers, n, size):
        image = at(b, pointers[2], b.mul(n, size))
        with for_range(b, size, name="z") as i:
            b.store(gemm.zero(ty), at(b, image, i))

    def visit(p: _Pixel, pointers: list[ir.Value]) -> None:
        b, (x_ptr, dy_ptr, dx_ptr) = p.b, pointers
        best_slot, done_slot = entry_alloca(b, vec), entry_alloca(b, ir.VectorType(ir.IntType(1), vec.count))
        b.store(p.load(x_ptr, p.spot(p.rows[0], p.cols[0])), best_slot)
        with _taps(b, p.rows, p.cols) as (i, j):
            b.store(_nan_max(b, p.load(x_ptr, p.spot(i, j)), b.load(best_slot), dtype), best_slot)
        best = b.load(best_slot)
        grad = p.load(dy_ptr, p.out)
        b.store(b.not_(p.mask), done_slot)
        with _taps(b, p.rows, p.cols) as (i, j):
            done = b.load(done_slot)
            hit = b.and_(_is_max(b, p.load(x_ptr, p.spot(i, j)), best, dtype), b.not_(done))
            if overlapping:
                current = p.load(dx_ptr, p.spot(i, j))
                update = b.select(hit, gemm.add(b, current, grad), current)
            else:   # this tap is the only writer of its element: no need to read it
                update = b.select(hit, grad, ir.Constant(vec, None))
            p.store(update, dx_ptr, p.spot(i, j))
            b.store(b.or_(done, hit), done_slot)

    task = _emit_task(k, node, "max_pool_grad", 3, dy, visit, zero_image)
    _run(k, node, task, [k.ptr(x), k.ptr(dy), k.ptr(node.outputs[0])], dy, by_rows=False)


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


def _avg_pool2d_grad(k: Kernel, node: Node) -> None:
    b = k.b
    dy = node.inputs[0]
    dx = node.outputs[0]
    dtype = dx.type.dtype
    dims = k.dims(dx)
    width, channels = dims[2], as_i64(dims[3])
    zero_fill(b, k.ptr(dx), k.size(dx), dtype)

    def visit(dy_row, base, rows, cols):
        count = b.mul(b.sub(rows[1], rows[0]), b.sub(cols[1], cols[0]))
        scale = b.fdiv(elementwise.constant(dtype, 1.0, None), b.sitofp(count, scalar_type(dtype)))
        with for_range(b, rows[1], start=rows[0], name="i") as i, \
                for_range(b, cols[1], start=cols[0], name="j") as j:
            dst = at(b, k.ptr(dx), b.add(base, b.mul(b.add(b.mul(i, as_i64(width)), j), channels)))
            with for_range(b, channels, name="c") as c:
                share = b.fmul(b.load(at(b, k.ptr(dy), b.add(dy_row, c))), scale)
                accumulate(b, at(b, dst, c), share)

    _pool_windows(k, node, dims, dy, visit)


LOWERINGS = {"max_pool2d": _pool, "avg_pool2d": _pool,
             "max_pool2d_grad": _max_pool2d_grad, "avg_pool2d_grad": _avg_pool2d_grad}

for _name, _fn in LOWERINGS.items():
    OPS[_name].lower = _fn

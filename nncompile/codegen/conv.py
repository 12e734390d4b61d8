"""2-D convolution (NHWC) as implicit GEMM on the GEMM machinery of `gemm.py`.

Per group g, the convolution is the GEMM  y[:, g*og:(g+1)*og] = patches_g @ w_g  with
  M = batch*OH*OW rows (one per output pixel), K = KH*KW*cg (k = (kh*KW + kw)*cg + c), N = og,
where cg = Cin/groups and og = Cout/groups. The weights (KH, KW, cg, Cout) already are that K x Cout
matrix, row-major, and are packed like GEMM's B (one K block). The patches are never materialized,
not even as packed panels: in NHWC a tap of a pixel is a contiguous run of channels, so the
microkernel reads A straight from the image through one pointer per tile row and tap (an
indirect convolution, as in XNNPACK), pointing at a row of zeros where the window hangs over the
padding. Packing A, a transpose here, cost as much as the arithmetic for typical channel counts.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

from llvmlite import ir

from nncompile.codegen import gemm, simd
from nncompile.codegen.gemm import Epilogue, Tiling, at, entry_alloca, smin, zero
from nncompile.codegen.kernel import scalar_type
from nncompile.codegen.loops import const, for_range
from nncompile.ir.dtypes import DType
from nncompile.ir.errors import IRError
from nncompile.ir.ops.linalg import window_output_size

i64 = ir.IntType(64)


def contiguous_window_rows(g) -> bool:
    """Whether every window row of geometry `g` (w, cin, cg, kw, ow, strides, dilations, left) is
    one contiguous run of kw*cin elements of an NHWC image, and so is the matching run of the
    patch matrix: one group, no dilation across the width, no window hanging over its padding."""
    return (g.cg == g.cin and g.dilations[1] == 1 and g.left == 0
            and (g.ow - 1) * g.strides[1] + g.kw <= g.w)


@dataclass(frozen=True)
class _Geometry:
    """Static sizes of one convolution."""
    h: int
    w: int
    cin: int
    kh: int
    kw: int
    cg: int          # input channels per group
    oh: int
    ow: int
    strides: tuple[int, int]
    dilations: tuple[int, int]
    top: int
    left: int

    @property
    def rowwise(self) -> bool:
        """Whether window rows are contiguous (see `contiguous_window_rows`): the microkernel then
        walks KH row taps of kw*cin channels instead of KH*KW taps of cin (3 input channels: 3 runs
        of 9, not 9 runs of 3, which spent the time on pointers rather than FMAs)."""
        return contiguous_window_rows(self)

    @property
    def taps(self) -> int:
        return self.kh if self.rowwise else self.kh * self.kw

    @property
    def run(self) -> int:
        """Contiguous elements read per tap."""
        return self.kw * self.cg if self.rowwise else self.cg


def _emit_micro(module: ir.Module, name: str, ty: ir.Type, t: Tiling, g: _Geometry,
                epilogue: Epilogue | None) -> ir.Function:
    """micro(x, bp, c, ldc, row, rows, cols, col, e...): the MR x NR tile of output pixels
    row..row+rows, reading each pixel's window straight from the image (x points at the group's
    first channel). Per tap, each row gets a pointer to its input pixel, or to zeros in the padding;
    per channel, one broadcast per row and NR/lanes vectors of packed weights feed the FMAs."""
    ptr = ty.as_pointer()
    n_epi = len(epilogue.operands) if epilogue else 0
    fn = gemm.new_function(module, f"{name}.micro", [ptr, ptr, ptr, i64, i64, i64, i64, i64] + [ptr] * n_epi)
    x, bp, c, ldc, row, rows, cols, col, *eptrs = fn.args
    for p in (x, bp, c):
        p.add_attribute("noalias")
    zeros = ir.GlobalVariable(module, ir.ArrayType(ty, g.run), f"{name}.zeros")
    zeros.linkage, zeros.global_constant = "internal", True
    zeros.initializer = ir.Constant(zeros.value_type, None)
    zero_row = zeros.bitcast(ptr)
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    vec = ir.VectorType(ty, t.lanes)
    slots = [[entry_alloca(b, vec) for _ in range(t.nr_vectors)] for _ in range(t.mr)]
    pixels = []
    for r, slot_row in enumerate(slots):
        for v, slot in enumerate(slot_row):
            b.store(zero(vec), slot)
            simd.prefetch(b, at(b, c, b.add(b.mul(const(r), ldc), const(v * t.lanes))), write=True)
        m = b.add(row, smin(b, const(r), b.sub(rows, const(1))))    # rows past the edge: zeros
        image, rest = b.sdiv(m, const(g.oh * g.ow)), b.srem(m, const(g.oh * g.ow))
        top = b.sub(b.mul(b.sdiv(rest, const(g.ow)), const(g.strides[0])), const(g.top))
        left = b.sub(b.mul(b.srem(rest, const(g.ow)), const(g.strides[1])), const(g.left))
        pixels.append((top, left, at(b, x, b.mul(image, const(g.h * g.w * g.cin))),
                       b.icmp_signed("<", const(r), rows)))
    with for_range(b, g.taps, name="tap") as tap:
        if g.rowwise:
            dy, dx = b.mul(tap, const(g.dilations[0])), const(0)
        else:
            dy = b.mul(b.sdiv(tap, const(g.kw)), const(g.dilations[0]))
            dx = b.mul(b.srem(tap, const(g.kw)), const(g.dilations[1]))
        sources = []
        for top, left, image, present in pixels:
            ih, iw = b.add(top, dy), b.add(left, dx)
            inside = b.and_(present, b.and_(_within(b, ih, g.h), _within(b, iw, g.w)))
            pixel = at(b, image, b.mul(b.add(b.mul(ih, const(g.w)), iw), const(g.cin)))
            sources.append(b.select(inside, pixel, zero_row))
        weights = at(b, bp, b.mul(tap, const(g.run * t.nr)))
        with for_range(b, g.run, name="ch") as ch:
            b_row = at(b, weights, b.mul(ch, const(t.nr)))
            b_vecs = [simd.load_vector(b, at(b, b_row, v * t.lanes), t.lanes, align=64)
                      for v in range(t.nr_vectors)]
            for source, slot_row in zip(sources, slots):
                a = simd.splat(b, b.load(at(b, source, ch)), t.lanes)
                for slot, b_vec in zip(slot_row, b_vecs):
                    b.store(simd.fma(b, a, b_vec, b.load(slot)), slot)
    accs = [[b.load(slot) for slot in slot_row] for slot_row in slots]
    gemm.store_tile(b, accs, c, ldc, rows, cols, True, True, row, col, epilogue, eptrs)
    b.ret_void()
    return fn


def _emit_tiles(module: ir.Module, name: str, ty: ir.Type, t: Tiling, micro: ir.Function,
                n_epi: int) -> ir.Function:
    """Task: the microkernel over this thread's share of output tiles, MC pixels at a time (their
    image rows stay in L2 while every column panel of weights passes over them)."""
    b, v = gemm.tiles_task(module, name, ty, t, n_epi)
    x = b.bitcast(v["a_ctx"], ty.as_pointer())
    with for_range(b, v["m1"], v["m0"], step=t.mc, name="ic") as ic:
        block_end = smin(b, v["m1"], b.add(ic, const(t.mc)))
        with for_range(b, v["n1"], v["n0"], step=t.nr, name="jr") as jr:
            cols = smin(b, const(t.nr), b.sub(v["n"], jr))
            b_panel = at(b, v["bp"], b.mul(jr, v["k"]))
            c_col = at(b, v["c"], jr)
            with for_range(b, block_end, ic, step=t.mr, name="ir") as r0:
                rows = smin(b, const(t.mr), b.sub(block_end, r0))
                b.call(micro, [x, b_panel, at(b, c_col, b.mul(r0, v["ldc"])), v["ldc"], r0, rows, cols,
                               b.add(v["col0"], jr)] + v["eptrs"])
    b.ret_void()
    return b.function


def _within(b: ir.IRBuilder, index: ir.Value, size: int) -> ir.Value:
    return b.icmp_unsigned("<", index, const(size))     # unsigned: negative indices are huge


def emit_conv2d(module: ir.Module, name: str, dtype: DType, *, in_hw: Sequence[int], cin: int,
                kernel_hw: Sequence[int], cout: int, strides: Sequence[int] = (1, 1),
                pads: Sequence[int] = (0, 0, 0, 0), dilations: Sequence[int] = (1, 1), groups: int = 1,
                epilogue: Epilogue | None = None) -> ir.Function:
    """Add `void name(i64 batch, T* x, T* w, T* y, T* e0, ...)`: y = epilogue(conv2d(x, w)).

    x is NHWC (batch, H, W, cin), w is (KH, KW, cin/groups, cout), y is (batch, OH, OW, cout), as
    the IR's conv2d defines them (pads are (top, bottom, left, right)). The epilogue sees y as a
    (batch*OH*OW, cout) matrix. y must not overlap x, w or an epilogue operand.
    """
    if dtype not in (DType.f32, DType.f64):
        raise IRError(f"emit_conv2d {name!r}: dtype {dtype} is not supported; expected f32 or f64")
    if groups < 1 or cin % groups or cout % groups:
        raise IRError(f"emit_conv2d {name!r}: groups={groups} must divide cin={cin} and cout={cout}")
    if not all(isinstance(d, int) for d in (*in_hw, cin, *kernel_hw, cout)):
        raise IRError(f"emit_conv2d {name!r}: in_hw {tuple(in_hw)}, cin, kernel_hw and cout "
                      f"must be static ints")
    (h, w), (kh, kw) = in_hw, kernel_hw
    oh = window_output_size(h, kh, strides[0], dilations[0], pads[0], pads[1], "height")
    ow = window_output_size(w, kw, strides[1], dilations[1], pads[2], pads[3], "width")
    cg, og = cin // groups, cout // groups
    geometry = _Geometry(h, w, cin, kh, kw, cg, oh, ow, tuple(strides), tuple(dilations), pads[0], pads[2])
    depth = kh * kw * cg
    ty = scalar_type(dtype)
    t = dataclasses.replace(gemm.tiling(dtype), kc=depth)   # weights packed whole: one K block
    n_epi = len(epilogue.operands) if epilogue else 0
    tiles = _emit_tiles(module, name, ty, t, _emit_micro(module, name, ty, t, geometry, epilogue), n_epi)
    driver = gemm.emit_driver(module, name, dtype, t, tiles, n_epi=n_epi)

    ptr = ty.as_pointer()
    fn = gemm.new_function(module, name, [i64, ptr, ptr, ptr] + [ptr] * n_epi, internal=False)
    batch, x, weights, y, *eptrs = fn.args
    for p in (x, weights, y):
        p.add_attribute("noalias")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    m = b.mul(batch, const(oh * ow))
    with for_range(b, groups, name="group") as group:
        column = b.mul(group, const(og))
        x_group = b.bitcast(at(b, x, b.mul(group, const(cg))), gemm.i8p)
        b.call(driver, [m, const(og), const(depth), at(b, weights, column), const(cout),
                        at(b, y, column), const(cout), column, x_group] + eptrs)
    b.ret_void()
    return fn

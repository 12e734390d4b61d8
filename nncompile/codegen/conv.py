"""2-D convolution (NHWC) as implicit GEMM on the GEMM machinery of `gemm.py` and `gemm_driver.py`.

Per group g, the convolution is the GEMM  y[:, g*og:(g+1)*og] = patches_g @ w_g  with
  M = batch*OH*OW rows (one per output pixel), K = KH*KW*cg (k = (kh*KW + kw)*cg + c), N = og,
where cg = Cin/groups and og = Cout/groups. The weights (KH, KW, cg, Cout) already are that K x Cout
matrix, row-major, and are packed like GEMM's B (one K block). The patches are never materialized,
not even as packed panels: in NHWC a tap of a pixel is a contiguous run of channels, so the
microkernel reads A straight from the image through one pointer per tile row and tap (an
indirect convolution, as in XNNPACK), pointing at a row of zeros where the window hangs over the
padding. Packing A, a transpose here, cost as much as the arithmetic for typical channel counts.
A tile whose windows all lie inside the image (most of them) skips the pointer per tap: its rows
read each window row as one run of kw*cin channels at a common offset (`_interior_taps`).
Convolutions whose output channels fill the wide register tile (6 x 64 f32 with AVX-512, half the
broadcasts per FMA) have a kernel of their own (`wide_tile`).

The geometry (sizes, strides, pads, dilations, groups) is read at run time from an array of
words (`geometry`), so one kernel serves every convolution of a dtype: it lives in the host's
kernel library (`library.py`) and no model compiles its own.
"""
from __future__ import annotations

from typing import Sequence

from llvmlite import ir

from nncompile.codegen import gemm, gemm_driver, gemm_pack, simd, target
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


GEOMETRY = ("h", "w", "cin", "kh", "kw", "cg", "oh", "ow", "stride_h", "stride_w", "dilation_h", "dilation_w",
            "top", "left", "groups", "cout")
"""The words of a convolution's geometry, in the order the kernel reads them (`geometry`)."""

# What the microkernel reads of the geometry, worked out once per call by the kernel's entry.
_DERIVED = ("ohw", "ow", "oh", "stride_h", "stride_w", "top", "left", "kh", "tap_w", "dilation_h",
            "dilation_w", "h", "w", "cin", "run", "image", "kw")


def geometry(name: str, dtype: DType, *, in_hw: Sequence[int], cin: int, kernel_hw: Sequence[int], cout: int,
             strides: Sequence[int] = (1, 1), pads: Sequence[int] = (0, 0, 0, 0),
             dilations: Sequence[int] = (1, 1), groups: int = 1) -> list[int]:
    """The GEOMETRY words of a convolution named `name` (for its errors): x is NHWC (batch, H, W,
    cin), w is (KH, KW, cin/groups, cout), y is (batch, OH, OW, cout), as the IR's conv2d defines
    them (pads are (top, bottom, left, right))."""
    if dtype not in (DType.f32, DType.f64):
        raise IRError(f"conv2d {name!r}: dtype {dtype} is not supported; expected f32 or f64")
    if groups < 1 or cin % groups or cout % groups:
        raise IRError(f"conv2d {name!r}: groups={groups} must divide cin={cin} and cout={cout}")
    if not all(isinstance(d, int) for d in (*in_hw, cin, *kernel_hw, cout)):
        raise IRError(f"conv2d {name!r}: in_hw {tuple(in_hw)}, cin, kernel_hw and cout must be static ints")
    (h, w), (kh, kw) = in_hw, kernel_hw
    oh = window_output_size(h, kh, strides[0], dilations[0], pads[0], pads[1], "height")
    ow = window_output_size(w, kw, strides[1], dilations[1], pads[2], pads[3], "width")
    return [h, w, cin, kh, kw, cin // groups, oh, ow, *strides, *dilations, pads[0], pads[2], groups, cout]


def emit_conv2d(module: ir.Module, name: str, dtype: DType, epilogue: Epilogue | None = None,
                prepacked: bool = False, wide: bool = False) -> ir.Function:
    """Add `void name(i64 batch, T* x, T* w, T* y, i64* geometry, T* e0, ...)`:
    y = epilogue(conv2d(x, w)) for any geometry (`geometry`'s words). The epilogue sees y as a
    (batch*OH*OW, cout) matrix. y must not overlap x, w or an epilogue operand. `prepacked`: one
    more argument last, `T* bp`, the weights packed ahead (`emit_pack_weights`), read instead.
    `wide`: the register tile of `wide_tile` convolutions, which only they may call."""
    ty = scalar_type(dtype)
    ptr = ty.as_pointer()
    t = tiling(dtype, wide)
    n_epi = len(epilogue.operands) if epilogue else 0
    tiles = _emit_tiles(module, name, ty, t, _emit_micro(module, name, ty, t, epilogue), n_epi)
    driver = gemm_driver.emit_driver(module, name, dtype, t, tiles, n_epi=n_epi, prepacked=prepacked)
    fn = gemm.new_function(module, name, [i64, ptr, ptr, ptr, i64.as_pointer()] + [ptr] * (n_epi + prepacked),
                           internal=False)
    batch, x, weights, y, words, *eptrs = fn.args
    packed = [eptrs.pop()] if prepacked else []
    for p in (x, weights, y):
        p.add_attribute("noalias")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    g = {key: b.load(at(b, words, i)) for i, key in enumerate(GEOMETRY)}
    derived = _derived(b, g)
    _, free = gemm.libc(module)
    zero_bytes = b.mul(b.add(derived["run"], const(16)), const(t.itemsize))
    zero_row = gemm.alloc_aligned(b, ptr, zero_bytes)
    with for_range(b, b.add(derived["run"], const(16)), name="zero") as i:
        b.store(zero(ty), at(b, zero_row, i))
    og = b.sdiv(g["cout"], g["groups"])
    depth = b.mul(b.mul(g["kh"], g["kw"]), g["cg"])
    m = b.mul(batch, derived["ohw"])
    group_bytes = gemm_pack.packed_bytes(b, t, og, depth)
    with for_range(b, g["groups"], name="group") as group:
        column = b.mul(group, og)
        x_group = at(b, x, b.mul(group, g["cg"]))
        a_ctx = gemm.pack_fields(b, [x_group, zero_row, *(derived[key] for key in _DERIVED)])
        group_packed = [at(b, bp, b.sdiv(b.mul(group, group_bytes), const(t.itemsize))) for bp in packed]
        b.call(driver, [m, og, depth, at(b, weights, column), g["cout"], at(b, y, column), g["cout"], column,
                        a_ctx] + eptrs + group_packed)
    b.call(free, [b.bitcast(zero_row, gemm.i8p)])
    b.ret_void()
    return fn


def wide_tile(dtype: DType, og: int) -> bool:
    """Whether a convolution of `og` output channels per group runs on the wide register tile
    (`gemm_pack.conv_tiling`): a library kernel of its own."""
    return gemm_pack.conv_tiling(dtype, og).nr != gemm_pack.conv_tiling(dtype, 1).nr


def tiling(dtype: DType, wide: bool) -> Tiling:
    """The tiling of the kernel that runs (`wide`) or does not run wide-tile convolutions."""
    columns = target.vector_lanes(dtype.itemsize) * gemm.register_tile(wide=True)[1] if wide else 1
    return gemm_pack.conv_tiling(dtype, columns)


def _derived(b: ir.IRBuilder, g: dict) -> dict:
    """The values of _DERIVED from the geometry words. Window rows are walked whole where they are
    contiguous (`contiguous_window_rows`): KH taps of kw*cin channels instead of KH*KW taps of cin
    (3 input channels: 3 runs of 9, not 9 runs of 3, which spent the time on pointers, not FMAs)."""
    def eq(x, y):
        return b.icmp_signed("==", x, y)
    reach = b.add(b.mul(b.sub(g["ow"], const(1)), g["stride_w"]), g["kw"])
    rowwise = b.and_(b.and_(eq(g["cg"], g["cin"]), eq(g["dilation_w"], const(1))),
                     b.and_(eq(g["left"], const(0)), b.icmp_signed("<=", reach, g["w"])))
    return {**{key: g[key] for key in _DERIVED if key in g},
            "ohw": b.mul(g["oh"], g["ow"]),
            "tap_w": b.select(rowwise, const(1), g["kw"]),
            "run": b.select(rowwise, b.mul(g["kw"], g["cg"]), g["cg"]),
            "image": b.mul(b.mul(g["h"], g["w"]), g["cin"])}


def _divmod(b: ir.IRBuilder, x: ir.Value, d: ir.Value) -> tuple[ir.Value, ir.Value]:
    """(x // d, x % d) for 0 <= x < 2**52 and d > 0, through a double multiply by 1/d and one
    correction (an integer division costs 25-40 cycles, twice per tile of a small convolution)."""
    f64 = ir.DoubleType()
    q = b.fptosi(b.fmul(b.sitofp(x, f64), b.fdiv(ir.Constant(f64, 1.0), b.sitofp(d, f64))), i64)
    r = b.sub(x, b.mul(q, d))
    low, high = b.icmp_signed("<", r, const(0)), b.icmp_signed(">=", r, d)
    q = b.select(low, b.sub(q, const(1)), b.select(high, b.add(q, const(1)), q))
    r = b.select(low, b.add(r, d), b.select(high, b.sub(r, d), r))
    return q, r


def _emit_micro(module: ir.Module, name: str, ty: ir.Type, t: Tiling, epilogue: Epilogue | None) -> ir.Function:
    """micro(x, bp, c, ldc, row, rows, cols, col, geometry, e...): the MR x NR tile of output
    pixels row..row+rows, reading each pixel's window straight from the image (x points at the
    group's first channel; geometry at the zero row and the _DERIVED values). Per tap, each row gets
    a pointer to its input pixel, or to zeros in the padding; per channel, one broadcast per row
    and NR/lanes vectors of packed weights feed the FMAs."""
    ptr = ty.as_pointer()
    n_epi = len(epilogue.operands) if epilogue else 0
    fn = gemm.new_function(module, f"{name}.micro", [ptr, ptr, ptr, i64, i64, i64, i64, i64, gemm.i8p]
                           + [ptr] * n_epi)
    x, bp, c, ldc, row, rows, cols, col, words, *eptrs = fn.args
    for p in (x, bp, c):
        p.add_attribute("noalias")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    zero_row, *values = gemm.unpack_fields(b, words, [ptr] + [i64] * len(_DERIVED))
    g = dict(zip(_DERIVED, values))
    vec = ir.VectorType(ty, t.lanes)
    slots = [[entry_alloca(b, vec) for _ in range(t.nr_vectors)] for _ in range(t.mr)]
    gemm.prefetch_tile(b, t, c, ldc, row, col, epilogue, eptrs)
    image, rest = _divmod(b, row, g["ohw"])
    oy, ox = _divmod(b, rest, g["ow"])
    pixels = []
    for r, slot_row in enumerate(slots):
        for v, slot in enumerate(slot_row):
            b.store(zero(vec), slot)
        if r:   # the next pixel: along the row, then down, then to the next image
            ox = b.add(ox, const(1))
            wrap = b.icmp_signed("==", ox, g["ow"])
            ox, oy = b.select(wrap, const(0), ox), b.select(wrap, b.add(oy, const(1)), oy)
            wrap = b.icmp_signed("==", oy, g["oh"])
            oy, image = b.select(wrap, const(0), oy), b.select(wrap, b.add(image, const(1)), image)
        top = b.sub(b.mul(oy, g["stride_h"]), g["top"])
        left = b.sub(b.mul(ox, g["stride_w"]), g["left"])
        pixels.append((top, left, b.gep(x, [b.mul(image, g["image"])]), b.icmp_signed("<", const(r), rows)))
    with b.if_else(_interior(b, g, pixels)) as (inside, straddling):
        with inside:
            _interior_taps(b, g, t, bp, pixels, slots)
        with straddling:
            _window_taps(b, g, t, bp, pixels, slots, zero_row)
    accs = [[b.load(slot) for slot in slot_row] for slot_row in slots]
    gemm.store_tile(b, accs, c, ldc, rows, cols, True, True, row, col, epilogue, eptrs)
    b.ret_void()
    return fn


def _emit_tiles(module: ir.Module, name: str, ty: ir.Type, t: Tiling, micro: ir.Function,
                n_epi: int) -> ir.Function:
    """Task: the microkernel over this thread's share of output tiles, MC pixels at a time (their
    image rows stay in L2 while every column panel of weights passes over them)."""
    b, v = gemm_driver.tiles_task(module, name, ty, t, n_epi)
    x = gemm.unpack_fields(b, v["a_ctx"], [ty.as_pointer()])[0]
    words = b.gep(v["a_ctx"], [const(8)])      # the micro's fields: the zero row, the _DERIVED values
    with for_range(b, v["m1"], v["m0"], step=t.mc, name="ic") as ic:
        block_end = smin(b, v["m1"], b.add(ic, const(t.mc)))
        with for_range(b, v["n1"], v["n0"], step=t.nr, name="jr") as jr:
            cols = smin(b, const(t.nr), b.sub(v["n"], jr))
            b_panel = at(b, v["bp"], b.mul(jr, v["k"]))
            c_col = at(b, v["c"], jr)
            with for_range(b, block_end, ic, step=t.mr, name="ir") as r0:
                rows = smin(b, const(t.mr), b.sub(block_end, r0))
                b.call(micro, [x, b_panel, at(b, c_col, b.mul(r0, v["ldc"])), v["ldc"], r0, rows, cols,
                               b.add(v["col0"], jr), words] + v["eptrs"])
    b.ret_void()
    return b.function


def _interior(b: ir.IRBuilder, g: dict, pixels: list) -> ir.Value:
    """Whether every row of the tile is present and its whole window lies inside its image,
    with the taps of a window row one contiguous run of channels (one group, no dilation across
    the width): then each row's window is kh runs of kw*cin channels at one offset per run."""
    last_y = b.mul(b.sub(g["kh"], const(1)), g["dilation_h"])
    # a run of all channels (one group) per tap, taps next to each other, or one run per row
    contiguous = b.or_(b.and_(b.icmp_signed("==", g["run"], g["cin"]), b.icmp_signed("==", g["dilation_w"], const(1))),
                       b.icmp_signed("==", g["run"], b.mul(g["kw"], g["cin"])))
    inside = contiguous
    for top, left, _, present in pixels:
        rows_in = b.and_(_within(b, top, g["h"]), _within(b, b.add(top, last_y), g["h"]))
        cols_in = b.and_(_within(b, left, g["w"]), _within(b, b.add(left, b.sub(g["kw"], const(1))), g["w"]))
        inside = b.and_(inside, b.and_(present, b.and_(rows_in, cols_in)))
    return inside


def _interior_taps(b: ir.IRBuilder, g: dict, t: Tiling, bp: ir.Value, pixels: list, slots: list) -> None:
    """The tile's FMAs when `_interior`: per window row, one loop over its kw*cin channels, every
    row of the tile read at the same offset from its window's first element (one index for all:
    no pointer is worked out per tap, and a 3x3 window is 3 loops, not 9)."""
    bases = [b.gep(image_at, [b.mul(b.add(b.mul(top, g["w"]), left), g["cin"])])
             for top, left, image_at, _ in pixels]
    run = b.mul(g["kw"], g["cin"])
    row_step = b.mul(b.mul(g["dilation_h"], g["w"]), g["cin"])
    with for_range(b, g["kh"], name="win_y") as win_y:
        offset = b.mul(win_y, row_step)
        weights = at(b, bp, b.mul(b.mul(win_y, run), const(t.nr)))
        with for_range(b, run, name="k") as k:
            _accumulate(b, t, at(b, weights, b.mul(k, const(t.nr))), bases, b.add(offset, k), slots)


def _window_taps(b: ir.IRBuilder, g: dict, t: Tiling, bp: ir.Value, pixels: list, slots: list,
                 zero_row: ir.Value) -> None:
    """The tile's FMAs for any tile: per tap, each row reads its input pixel, or a row of zeros
    where the window hangs over the padding or the row is past the tile's last."""
    with for_range(b, g["kh"], name="tap_y") as tap_y, for_range(b, g["tap_w"], name="tap_x") as tap_x:
        tap = b.add(b.mul(tap_y, g["tap_w"]), tap_x)
        dy, dx = b.mul(tap_y, g["dilation_h"]), b.mul(tap_x, g["dilation_w"])
        sources = []
        for top, left, image_at, present in pixels:
            ih, iw = b.add(top, dy), b.add(left, dx)
            inside = b.and_(present, b.and_(_within(b, ih, g["h"]), _within(b, iw, g["w"])))
            pixel = b.gep(image_at, [b.mul(b.add(b.mul(ih, g["w"]), iw), g["cin"])])
            sources.append(b.select(inside, pixel, zero_row))
        weights = at(b, bp, b.mul(b.mul(tap, g["run"]), const(t.nr)))
        with for_range(b, g["run"], name="ch") as ch:
            _accumulate(b, t, at(b, weights, b.mul(ch, const(t.nr))), sources, ch, slots)


def _accumulate(b: ir.IRBuilder, t: Tiling, b_row: ir.Value, sources: list, index: ir.Value, slots: list) -> None:
    """One k step: slots[r][v] += sources[r][index] * b_row[v*lanes...] (NR/lanes aligned vectors
    of packed weights, one broadcast per row)."""
    b_vecs = [simd.load_vector(b, at(b, b_row, v * t.lanes), t.lanes, align=64) for v in range(t.nr_vectors)]
    for source, slot_row in zip(sources, slots):
        a = simd.splat(b, b.load(at(b, source, index)), t.lanes)
        for slot, b_vec in zip(slot_row, b_vecs):
            b.store(simd.fma(b, a, b_vec, b.load(slot)), slot)


def _within(b: ir.IRBuilder, index: ir.Value, size: ir.Value) -> ir.Value:
    return b.icmp_unsigned("<", index, size)     # unsigned: negative indices are huge

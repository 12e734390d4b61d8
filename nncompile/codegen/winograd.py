"""3x3 stride-1 convolutions by Winograd's minimal filtering F(2x2, 3x3) (Lavin and Gray, "Fast
Algorithms for Convolutional Neural Networks", 2016), as NNPACK and oneDNN run them on CPUs.

Each 2x2 block of output pixels (a tile) comes from the 4x4 block of input pixels around it: for
one channel, with d that block, g the 3x3 filter and the constant matrices BT, G and AT below,
y = AT [(G g G^T) . (BT d BT^T)] AT^T, where . multiplies elementwise. Summed over the input
channels, the elementwise products become 16 matrix products, one per point p of the 4x4
transformed block: M_p (tiles x cout) = V_p (tiles x cin) @ U_p (cin x cout). That is 16
multiply-adds per tile and channel pair where the direct convolution does 36: 2.25x less
arithmetic, for transforms of the input and the output of a few additions per element.

The filter's transform U = G g G^T is made once per weight change by the model's prepare
function (`emit_transform_filter`, each U_p then packed as the convolution packs its weights),
so only convolutions whose weights are kept packed (`codegen.cpu.Layout.packed`: graphs that
update no parameter) take this path. A call cuts the tiles into blocks whose V and M take at
most half the L2; a task per block transforms its input tiles into V (zeros where a tile hangs
over the padding), multiplies (`gemm.emit_micro`, reading V in place) and transforms M into
the output pixels, applying the epilogue (bias, residual, floor) as it stores them
(`gemm.store_tile`). The results agree with the direct convolution within a few units of the
last place (the transforms add and halve); an infinite input pixel, where the direct
convolution gives an infinity, gives NaN in its tiles (the input transform subtracts it from
itself), as every Winograd convolution does.
"""
from __future__ import annotations

from llvmlite import ir

from nncompile.codegen import gemm, gemm_pack, host, parallel, simd
from nncompile.codegen.conv import GEOMETRY
from nncompile.codegen.gemm import Epilogue, Tiling, at, smin
from nncompile.codegen.kernel import scalar_type
from nncompile.codegen.loops import const, for_range
from nncompile.ir.dtypes import DType

i1 = ir.IntType(1)
i64 = ir.IntType(64)

BT = ((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1))
G = ((1, 0, 0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0, 0, 1))
AT = ((1, 1, 1, 0), (0, 1, -1, -1))
POINTS = 16
MIN_CHANNELS = 16
"""Fewer input or output channels than this keep the direct convolution: each product is then
too shallow or too narrow for the transforms to pay (a stem convolution of 3 channels)."""

_FIELDS = ("x", "y", "up", "zero_row", "h", "w", "cin", "cout", "oh", "ow", "top", "left", "tiles_h",
           "tiles_w", "tiles", "block_tiles", "point_elements")


def eligible(node) -> bool:
    """Whether conv2d `node` runs as F(2x2, 3x3) when its weights are kept packed: f32, 3x3,
    stride 1, no dilation, one group, a static image and at least MIN_CHANNELS each way."""
    x, w = node.inputs
    if node.op != "conv2d" or x.type.dtype != DType.f32 or w.type.dtype != DType.f32:
        return False
    kh, kw, cin, cout = w.type.shape
    return (node.attrs["groups"] == 1 and (kh, kw) == (3, 3) and tuple(node.attrs["strides"]) == (1, 1)
            and tuple(node.attrs["dilations"]) == (1, 1) and all(isinstance(d, int) for d in x.type.shape[1:])
            and cin >= MIN_CHANNELS and cout >= MIN_CHANNELS)


# --- the transforms: constant matrices applied to blocks of values (vectors or scalars) ---------

def _times(b: ir.IRBuilder, value: ir.Value, factor: float) -> ir.Value:
    if factor == 1:
        return value
    ty = value.type
    scale = ir.Constant(ty, [factor] * ty.count) if isinstance(ty, ir.VectorType) else ir.Constant(ty, factor)
    return b.fmul(value, scale)


def _combination(b: ir.IRBuilder, coefficients: tuple, values: list[ir.Value]) -> ir.Value:
    """sum of c * v over the coefficients that are not 0 (a row has one at least)."""
    total = None
    for c, value in zip(coefficients, values):
        if c == 0:
            continue
        term = _times(b, value, abs(c))
        if total is None:
            total = term if c > 0 else b.fneg(term)
        else:
            total = b.fadd(total, term) if c > 0 else b.fsub(total, term)
    return total


def _sandwich(b: ir.IRBuilder, left: tuple, block: list[list[ir.Value]]) -> list[list[ir.Value]]:
    """left @ block @ left^T."""
    columns = [[_combination(b, row, [block_row[j] for block_row in block]) for row in left]
               for j in range(len(block[0]))]
    return [[_combination(b, row, [columns[j][i] for j in range(len(block[0]))]) for row in left]
            for i in range(len(left))]


def emit_transform_filter(module: ir.Module, dtype: DType) -> ir.Function:
    """`void nnc.winograd.filter.<dtype>(i64 cin, i64 cout, T* w, T* u)`: u holds POINTS
    cin x cout matrices, u[p][ci][co] = (G w[:, :, ci, co] G^T)[p] for the (3, 3, cin, cout) w."""
    name = f"nnc.winograd.filter.{dtype}"
    existing = module.globals.get(name)
    if existing is not None:
        return existing
    ptr = scalar_type(dtype).as_pointer()
    fn = gemm.new_function(module, name, [i64, i64, ptr, ptr])
    cin, cout, w, u = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    plane = b.mul(cin, cout)
    with for_range(b, plane, name="pair") as pair:
        g = [[b.load(at(b, w, b.add(b.mul(const(3 * i + j), plane), pair))) for j in range(3)] for i in range(3)]
        transformed = [value for row in _sandwich(b, G, g) for value in row]
        for point, value in enumerate(transformed):
            b.store(value, at(b, u, b.add(b.mul(const(point), plane), pair)))
    b.ret_void()
    return fn


def emit_filter_transform_call(b: ir.IRBuilder, filter_type, source: ir.Value) -> ir.Value:
    """The transform of the 3x3 filter at `source` (of `filter_type`), made into a new buffer
    (freed with `free`) by `emit_transform_filter`: POINTS cin x cout matrices, which the prepare
    function then packs one by one as the convolution reads them."""
    _, _, cin, cout = filter_type.shape
    dtype = filter_type.dtype
    scratch = gemm.alloc_aligned(b, source.type, const(POINTS * cin * cout * dtype.itemsize))
    b.call(emit_transform_filter(b.module, dtype), [const(cin), const(cout), source, scratch])
    return scratch


# --- the convolution ------------------------------------------------------------------------------

def emit_conv2d(module: ir.Module, name: str, dtype: DType, epilogue: Epilogue | None, t: Tiling) -> ir.Function:
    """`void name(i64 batch, T* x, T* w, T* y, i64* geometry, T* e0, ..., T* up)`: as
    `conv.emit_conv2d` with prepacked weights, for the convolutions `eligible` says, up being
    the filter's transform as the prepare function packs it (POINTS packed B's of cin x cout,
    `emit_filter_transform_call`); w is not read."""
    ty = scalar_type(dtype)
    ptr = ty.as_pointer()
    n_epi = len(epilogue.operands) if epilogue else 0
    micro = gemm.emit_micro(module, name, ty, t, None, direct=True)
    task = _emit_block_task(module, name, ty, t, micro, epilogue, n_epi)
    fn = gemm.new_function(module, name, [i64, ptr, ptr, ptr, i64.as_pointer()] + [ptr] * (n_epi + 1),
                           internal=False)
    batch, x, _, y, words, *eptrs = fn.args
    up = eptrs.pop()
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    g = {key: b.load(at(b, words, i)) for i, key in enumerate(GEOMETRY)}
    cin, cout = g["cin"], g["cout"]
    tiles_h, tiles_w = gemm.ceil_div(b, g["oh"], 2), gemm.ceil_div(b, g["ow"], 2)
    tiles = b.mul(batch, b.mul(tiles_h, tiles_w))
    with b.if_then(b.icmp_signed(">", tiles, const(0))):     # a batch of none: nothing to cut
        block_tiles = _block_tiles(b, t, tiles, b.add(cin, cout))
        _, free = gemm.libc(module)
        zero_row = gemm.alloc_aligned(b, ptr, b.mul(b.add(cin, const(t.lanes)), const(t.itemsize)))
        with for_range(b, b.add(cin, const(t.lanes)), name="zero") as i:
            b.store(gemm.zero(ty), at(b, zero_row, i))
        point_elements = b.sdiv(gemm_pack.packed_bytes(b, t, cout, cin), const(t.itemsize))
        values = dict(x=x, y=y, up=up, zero_row=zero_row, tiles_h=tiles_h, tiles_w=tiles_w, tiles=tiles,
                      block_tiles=block_tiles, point_elements=point_elements,
                      **{key: g[key] for key in ("h", "w", "cin", "cout", "oh", "ow", "top", "left")})
        fields = gemm.pack_fields(b, [values[key] for key in _FIELDS] + eptrs)
        b.call(parallel.emit_parallel_for(module), [task, fields, gemm.ceil_div(b, tiles, block_tiles)])
        b.call(free, [b.bitcast(zero_row, gemm.i8p)])
    b.ret_void()
    return fn


def _block_tiles(b: ir.IRBuilder, t: Tiling, tiles: ir.Value, channels: ir.Value) -> ir.Value:
    """Tiles per block (tiles > 0), a multiple of MR: the fewest blocks whose V and M together
    (POINTS rows of cin + cout values per tile) take at most half the L2, a multiple of the
    threads."""
    threads = parallel.num_threads()
    per_tile = b.mul(channels, const(POINTS * t.itemsize))
    blocks = gemm.ceil_div(b, b.mul(tiles, per_tile), const(host.caches().l2 // 2))
    blocks = b.mul(gemm.ceil_div(b, blocks, threads), const(threads))
    return b.mul(gemm.ceil_div(b, gemm.ceil_div(b, tiles, blocks), t.mr), const(t.mr))


def _emit_block_task(module: ir.Module, name: str, ty: ir.Type, t: Tiling, micro: ir.Function,
                     epilogue: Epilogue | None, n_epi: int) -> ir.Function:
    """Task: the index-th block of tiles, transformed in, multiplied and transformed out."""
    ptr = ty.as_pointer()
    fn, b, ctx, index, _ = parallel.task_function(module, f"{name}.block")
    types = [ptr if key in ("x", "y", "up", "zero_row") else i64 for key in _FIELDS]
    words = gemm.unpack_fields(b, ctx, types + [ptr] * n_epi)
    v, eptrs = dict(zip(_FIELDS, words)), words[len(_FIELDS):]
    first = b.mul(index, v["block_tiles"])
    v["first"], v["rows"] = first, smin(b, v["block_tiles"], b.sub(v["tiles"], first))
    _, free = gemm.libc(module)
    points_of = [b.mul(const(POINTS), b.mul(v["block_tiles"], v[key])) for key in ("cin", "cout")]
    # room for a vector's reach past the last row (M's last tile is read a whole vector at a time)
    v["v_block"], v["m_block"] = (gemm.alloc_aligned(b, ptr, b.mul(b.add(size, const(t.nr)), const(t.itemsize)))
                      for size in points_of)
    _transform_input(b, t, v)
    _multiply(b, t, v, micro)
    _transform_output(b, t, v, epilogue, eptrs)
    for buffer in (v["v_block"], v["m_block"]):
        b.call(free, [b.bitcast(buffer, gemm.i8p)])
    b.ret_void()
    return fn


def _tile_position(b: ir.IRBuilder, v: dict, tile: ir.Value) -> tuple[ir.Value, ir.Value, ir.Value]:
    """(image, row, column) of a tile's top-left output pixel."""
    per_image = b.mul(v["tiles_h"], v["tiles_w"])
    image, rest = b.sdiv(tile, per_image), b.srem(tile, per_image)
    return image, b.mul(b.sdiv(rest, v["tiles_w"]), const(2)), b.mul(b.srem(rest, v["tiles_w"]), const(2))


def _transform_input(b: ir.IRBuilder, t: Tiling, v: dict) -> None:
    """V[p][r] = (BT d BT^T)[p] for each tile r of the block, d its 4x4 input pixels' channels."""
    cin = v["cin"]
    with for_range(b, v["rows"], name="in_tile") as r:
        image, oy, ox = _tile_position(b, v, b.add(v["first"], r))
        pixels = []
        for i in range(4):
            iy = b.sub(b.add(oy, const(i)), v["top"])
            for j in range(4):
                ix = b.sub(b.add(ox, const(j)), v["left"])
                inside = b.and_(b.icmp_unsigned("<", iy, v["h"]), b.icmp_unsigned("<", ix, v["w"]))
                offset = b.mul(b.add(b.mul(b.add(b.mul(image, v["h"]), iy), v["w"]), ix), cin)
                pixels.append(b.select(inside, b.gep(v["x"], [offset]), v["zero_row"]))
        with for_range(b, cin, step=t.lanes, name="in_c") as c:
            mask = simd.lane_mask(b, b.sub(cin, c), t.lanes)
            d = [[simd.masked_load(b, at(b, pixels[4 * i + j], c), mask) for j in range(4)] for i in range(4)]
            for point, value in enumerate(value for row in _sandwich(b, BT, d) for value in row):
                row_at = b.add(b.mul(const(point), v["block_tiles"]), r)
                simd.masked_store(b, value, at(b, v["v_block"], b.add(b.mul(row_at, cin), c)), mask)


def _multiply(b: ir.IRBuilder, t: Tiling, v: dict, micro: ir.Function) -> None:
    """M[p] = V[p] @ U[p] over the block's rows, a microkernel tile at a time."""
    cin, cout, rows = v["cin"], v["cout"], v["rows"]
    yes = ir.Constant(i1, 1)
    with for_range(b, POINTS, name="point") as point:
        base = b.mul(b.mul(point, v["block_tiles"]), cin)
        out = b.mul(b.mul(point, v["block_tiles"]), cout)
        u = at(b, v["up"], b.mul(point, v["point_elements"]))
        with for_range(b, cout, step=t.nr, name="jr") as jr:
            panel = at(b, u, b.mul(jr, cin))
            cols = smin(b, const(t.nr), b.sub(cout, jr))
            with for_range(b, rows, step=t.mr, name="ir") as ir_:
                a = at(b, v["v_block"], b.add(base, b.mul(ir_, cin)))
                c = at(b, v["m_block"], b.add(out, b.add(b.mul(ir_, cout), jr)))
                b.call(micro, [cin, a, panel, c, cout, smin(b, const(t.mr), b.sub(rows, ir_)), cols, yes, yes,
                               ir_, jr, cin, const(1)])


def _transform_output(b: ir.IRBuilder, t: Tiling, v: dict, epilogue: Epilogue | None, eptrs: list) -> None:
    """Each tile's 2x2 output pixels, AT M AT^T, stored through the epilogue (the right column
    and the bottom row only where the image has them)."""
    cout, ow = v["cout"], v["ow"]
    with for_range(b, v["rows"], name="out_tile") as r:
        image, oy, ox = _tile_position(b, v, b.add(v["first"], r))
        pixel = b.add(b.mul(b.add(b.mul(image, v["oh"]), oy), ow), ox)
        across = b.select(b.icmp_signed("<", b.add(ox, const(1)), ow), const(2), const(1))
        down = b.icmp_signed("<", b.add(oy, const(1)), v["oh"])
        with for_range(b, cout, step=t.lanes, name="out_c") as c:
            m = [simd.load_vector(b, at(b, v["m_block"], b.add(b.mul(b.add(b.mul(const(point), v["block_tiles"]), r), cout),
                                                         c)), t.lanes)
                 for point in range(POINTS)]
            y = _sandwich(b, AT, [m[4 * i:4 * i + 4] for i in range(4)])
            cols = smin(b, const(t.lanes), b.sub(cout, c))    # a tile function sees these lanes only
            for dy, row_pixel in ((0, pixel), (1, b.add(pixel, ow))):
                present = down if dy else ir.Constant(i1, 1)
                with b.if_then(present):
                    gemm.store_tile(b, [[y[dy][0]], [y[dy][1]]], at(b, v["y"], b.add(b.mul(row_pixel, cout), c)),
                                    cout, across, cols, True, True, row_pixel, c, epilogue, eptrs)

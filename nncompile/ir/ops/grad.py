"""Ops the backward pass needs: the input and filter gradients of conv2d, the input gradients of
pooling, scatter_add (the adjoint of gather) and random_uniform (Dropout masks).

All are OPAQUE: each is one kernel of its own, which accumulates (+=) into its output, so it
neither maps elements one to one nor fits the loop emitters' reductions.

random_uniform is counter based: element i of the output (row-major) is a pure function of the
i64 `seed` input, the `key` attribute and i, `uniform_bits` below, which the compiled code
computes bit for bit the same way. A new seed per step gives new masks without state.
"""
from __future__ import annotations

import numpy as np

from nncompile.ir.dtypes import DType
from nncompile.ir.errors import ShapeError
from nncompile.ir.ops.linalg import check_window_attrs, pad_spatial, pads_within, window_output_size, windows
from nncompile.ir.optable import OPS, Attr, AttrKind, Fusion, defop
from nncompile.ir.types import TensorType, is_symbol, normalize_axis

_CONV_ATTRS = {"strides": Attr(AttrKind.INTS, (1, 1)), "pads": Attr(AttrKind.SHAPE, (0, 0, 0, 0)),
               "dilations": Attr(AttrKind.INTS, (1, 1)), "groups": Attr(AttrKind.INT, 1)}
_POOL_ATTRS = {"window": Attr(AttrKind.INTS), "strides": Attr(AttrKind.INTS),
               "pads": Attr(AttrKind.SHAPE, (0, 0, 0, 0))}


def _check_nhwc(name: str, t: TensorType) -> None:
    if t.rank != 4 or not t.dtype.is_float:
        raise ShapeError(f"{name} {t} must be a float NHWC tensor of rank 4")


def _check_static(name: str, t: TensorType, axes) -> None:
    if any(is_symbol(t.shape[a]) for a in axes):
        raise ShapeError(f"{name} {t} must have static sizes on axes {tuple(axes)}")


def _check_positive(attrs: dict, name: str) -> tuple[int, int]:
    """Two sizes >= 1; a size known only when run (a symbol or expression) is taken as it is."""
    value = attrs[name]
    if len(value) != 2 or any(not is_symbol(v) and v < 1 for v in value):
        raise ShapeError(f"attribute {name!r} is {value}; expected 2 ints >= 1 or symbolic sizes")
    return value


def _conv_out_hw(in_hw, kernel_hw, attrs) -> tuple[int, int]:
    (sh, sw), (dh, dw), (top, bottom, left, right) = attrs["strides"], attrs["dilations"], attrs["pads"]
    return (window_output_size(in_hw[0], kernel_hw[0], sh, dh, top, bottom, "height"),
            window_output_size(in_hw[1], kernel_hw[1], sw, dw, left, right, "width"))


def _check_dy(dy: TensorType, expected_hw, cout, what: str) -> None:
    if tuple(dy.shape[1:]) != (*expected_hw, cout):
        raise ShapeError(f"dy {dy} does not match the forward {what}: expected spatial size "
                         f"{tuple(expected_hw)} and {cout} channels")


# --- conv2d gradients --------------------------------------------------------------------------

def _conv2d_grad_input_rule(ts: list[TensorType], attrs: dict) -> TensorType:
    dy, w = ts
    check_window_attrs(attrs, ("strides", "pads", "dilations"))
    _check_nhwc("dy", dy)
    in_hw = _check_positive(attrs, "input_hw")
    if w.rank != 4 or w.dtype != dy.dtype or not w.is_static:
        raise ShapeError(f"w {w} must be a static (KH,KW,Cin/groups,Cout) tensor of dy's dtype {dy.dtype}")
    kh, kw, cg, cout = w.shape
    groups = attrs["groups"]
    if groups < 1 or cout % groups:
        raise ShapeError(f"groups is {groups}; expected an int >= 1 dividing w's {cout} output channels")
    _check_dy(dy, _conv_out_hw(in_hw, (kh, kw), attrs), cout, "convolution")
    return TensorType(dy.dtype, (dy.shape[0], *in_hw, cg * groups))


def _conv2d_grad_input(xs: list[np.ndarray], attrs: dict) -> np.ndarray:
    dy, w = xs
    kh, kw, cg, cout = w.shape
    groups = attrs["groups"]
    og = cout // groups
    (sh, sw), (dh, dw), (top, bottom, left, right) = attrs["strides"], attrs["dilations"], attrs["pads"]
    h, wd = attrs["input_hw"]
    n, oh, ow, _ = dy.shape
    dx = np.zeros((n, h + top + bottom, wd + left + right, cg * groups), dy.dtype)
    rows, cols = sh * np.arange(oh), sw * np.arange(ow)
    for i in range(kh):
        for j in range(kw):
            for g in range(groups):
                taps = dy[..., g * og:(g + 1) * og] @ w[i, j, :, g * og:(g + 1) * og].T
                # One tap reads each padded pixel at most once, so += through the index is exact.
                dx[:, (i * dh + rows)[:, None], (j * dw + cols)[None, :], g * cg:(g + 1) * cg] += taps
    return dx[:, top:top + h, left:left + wd]


def _conv2d_grad_input_vjp(b, node, cts):
    """conv2d_grad_input is the adjoint of conv2d in x (a transposed convolution, as the Keras
    ConvTranspose layers use it), so its cotangent goes back through conv2d itself, and the
    filter's gradient is conv2d_grad_filter with the roles of x and dy swapped."""
    dy, w = node.inputs
    g = cts[0]
    window = {k: node.attrs[k] for k in ("strides", "pads", "dilations", "groups")}
    ddy = b.conv2d(g, w, **window)
    dw = b.op("conv2d_grad_filter", g, dy, kernel_hw=w.type.shape[:2], **window)
    return [ddy, dw]


defop("conv2d_grad_input", inputs=("dy", "w"), fusion=Fusion.OPAQUE, infer=_conv2d_grad_input_rule,
      reference=_conv2d_grad_input, attrs={**_CONV_ATTRS, "input_hw": Attr(AttrKind.SHAPE)},
      doc="gradient of conv2d w.r.t. its input x (N, input_hw, Cin) from dy and the filter w")
OPS["conv2d_grad_input"].vjp = _conv2d_grad_input_vjp


def _conv2d_grad_filter_rule(ts: list[TensorType], attrs: dict) -> TensorType:
    x, dy = ts
    check_window_attrs(attrs, ("strides", "pads", "dilations"))
    _check_nhwc("x", x)
    _check_nhwc("dy", dy)
    _check_static("x", x, (3,))
    _check_static("dy", dy, (3,))
    if x.dtype != dy.dtype or x.shape[0] != dy.shape[0]:
        raise ShapeError(f"x {x} and dy {dy} must share dtype and batch size")
    kh, kw = _check_positive(attrs, "kernel_hw")
    groups, cin, cout = attrs["groups"], x.shape[3], dy.shape[3]
    if groups < 1 or cin % groups or cout % groups:
        raise ShapeError(f"groups is {groups}; expected an int >= 1 dividing x's {cin} and dy's "
                         f"{cout} channels")
    _check_dy(dy, _conv_out_hw(x.shape[1:3], (kh, kw), attrs), cout, "convolution")
    return TensorType(x.dtype, (kh, kw, cin // groups, cout))


def _conv2d_grad_filter(xs: list[np.ndarray], attrs: dict) -> np.ndarray:
    x, dy = xs
    kh, kw = attrs["kernel_hw"]
    groups = attrs["groups"]
    cg, og = x.shape[3] // groups, dy.shape[3] // groups
    patches = windows(pad_spatial(x, attrs["pads"], 0), (kh, kw), attrs["strides"], attrs["dilations"])
    parts = [np.einsum("nhwckl,nhwo->klco", patches[:, :, :, g * cg:(g + 1) * cg],
                       dy[..., g * og:(g + 1) * og]) for g in range(groups)]
    return np.concatenate(parts, axis=3)


defop("conv2d_grad_filter", inputs=("x", "dy"), fusion=Fusion.OPAQUE, infer=_conv2d_grad_filter_rule,
      reference=_conv2d_grad_filter, attrs={**_CONV_ATTRS, "kernel_hw": Attr(AttrKind.INTS)},
      doc="gradient of conv2d w.r.t. its filter (kernel_hw, Cin/groups, Cout) from x and dy")


# --- pooling gradients -------------------------------------------------------------------------

def _pool_out_hw(in_hw, attrs) -> tuple[int, int]:
    (kh, kw), (sh, sw), (top, bottom, left, right) = attrs["window"], attrs["strides"], attrs["pads"]
    if not pads_within(attrs["pads"], attrs["window"]):
        raise ShapeError(f"pads {attrs['pads']} must be smaller than the window {attrs['window']}")
    return (window_output_size(in_hw[0], kh, sh, 1, top, bottom, "height"),
            window_output_size(in_hw[1], kw, sw, 1, left, right, "width"))


def _max_pool2d_grad_rule(ts: list[TensorType], attrs: dict) -> TensorType:
    x, dy = ts
    check_window_attrs(attrs, ("window", "strides", "pads"))
    _check_nhwc("x", x)
    _check_nhwc("dy", dy)
    if x.dtype != dy.dtype or x.shape[0] != dy.shape[0]:
        raise ShapeError(f"x {x} and dy {dy} must share dtype and batch size")
    _check_dy(dy, _pool_out_hw(x.shape[1:3], attrs), x.shape[3], "pooling")
    return x


def window_argmax(x: np.ndarray, attrs: dict) -> tuple[np.ndarray, np.ndarray]:
    """(row, col) in the padded input of the first maximum (in window scan order) among the real
    elements of each pooling window, each of shape (N, OH, OW, C). A NaN is the maximum of any
    window holding one, as in max_pool2d."""
    window, strides, pads = attrs["window"], attrs["strides"], attrs["pads"]
    values = windows(pad_spatial(x, pads, 0), window, strides, (1, 1))
    ones = np.ones((1,) + x.shape[1:3] + (1,), bool)
    real = windows(pad_spatial(ones, pads, False), window, strides, (1, 1))
    masked = np.where(real, values, -np.inf)
    best = masked.max(axis=(4, 5), keepdims=True)
    hit = real & ((masked == best) | np.isnan(values))
    first = hit.reshape(hit.shape[:4] + (-1,)).argmax(axis=-1)
    di, dj = np.divmod(first, window[1])
    oh, ow = values.shape[1:3]
    rows = strides[0] * np.arange(oh)[None, :, None, None] + di
    cols = strides[1] * np.arange(ow)[None, None, :, None] + dj
    return rows, cols


def _max_pool2d_grad(xs: list[np.ndarray], attrs: dict) -> np.ndarray:
    x, dy = xs
    (top, bottom, left, right) = attrs["pads"]
    n, h, w, c = x.shape
    rows, cols = window_argmax(x, attrs)
    dx = np.zeros((n, h + top + bottom, w + left + right, c), dy.dtype)
    shape = dy.shape
    index = (np.broadcast_to(np.arange(n)[:, None, None, None], shape), np.broadcast_to(rows, shape),
             np.broadcast_to(cols, shape), np.broadcast_to(np.arange(c), shape))
    np.add.at(dx, index, dy)
    return dx[:, top:top + h, left:left + w]


defop("max_pool2d_grad", inputs=("x", "dy"), fusion=Fusion.OPAQUE, infer=_max_pool2d_grad_rule,
      reference=_max_pool2d_grad, attrs=_POOL_ATTRS,
      doc="gradient of max_pool2d w.r.t. x: each dy goes to the first maximum of its window")


def _avg_pool2d_grad_rule(ts: list[TensorType], attrs: dict) -> TensorType:
    dy = ts[0]
    check_window_attrs(attrs, ("window", "strides", "pads"))
    _check_nhwc("dy", dy)
    in_hw = _check_positive(attrs, "input_hw")
    _check_dy(dy, _pool_out_hw(in_hw, attrs), dy.shape[3], "pooling")
    return dy.with_shape((dy.shape[0], *in_hw, dy.shape[3]))


def _avg_pool2d_grad(xs: list[np.ndarray], attrs: dict) -> np.ndarray:
    dy = xs[0]
    (kh, kw), (sh, sw), (top, bottom, left, right) = attrs["window"], attrs["strides"], attrs["pads"]
    h, w = attrs["input_hw"]
    n, oh, ow, c = dy.shape
    ones = np.ones((1, h, w, 1), dy.dtype)
    counts = windows(pad_spatial(ones, attrs["pads"], 0), (kh, kw), (sh, sw), (1, 1)).sum(axis=(4, 5))
    share = dy / counts
    dx = np.zeros((n, h + top + bottom, w + left + right, c), dy.dtype)
    rows, cols = sh * np.arange(oh), sw * np.arange(ow)
    for i in range(kh):
        for j in range(kw):
            dx[:, (i + rows)[:, None], (j + cols)[None, :]] += share
    return dx[:, top:top + h, left:left + w]


defop("avg_pool2d_grad", inputs=("dy",), fusion=Fusion.OPAQUE, infer=_avg_pool2d_grad_rule,
      reference=_avg_pool2d_grad, attrs={**_POOL_ATTRS, "input_hw": Attr(AttrKind.SHAPE)},
      doc="gradient of avg_pool2d w.r.t. its input (N, input_hw, C): dy shared among the real "
          "elements of each window")


# --- scatter_add -------------------------------------------------------------------------------

def _scatter_add_rule(ts: list[TensorType], attrs: dict) -> TensorType:
    indices, updates = ts
    shape = attrs["shape"]
    if -1 in shape or not shape:
        raise ShapeError(f"shape {list(shape)} must have rank >= 1 and no -1")
    if indices.dtype not in (DType.i32, DType.i64):
        raise ShapeError(f"indices have dtype {indices.dtype}; expected i32 or i64")
    if not (updates.dtype.is_float or updates.dtype.is_int):
        raise ShapeError(f"updates have dtype {updates.dtype}; expected a number dtype")
    axis = normalize_axis(attrs["axis"], len(shape))
    expected = tuple(shape[:axis]) + indices.shape + tuple(shape[axis + 1:])
    if updates.shape != expected:
        raise ShapeError(f"updates {updates} do not match indices {indices} scattered into "
                         f"{list(shape)} along axis {axis}: expected shape {list(expected)}")
    return updates.with_shape(shape)


def _scatter_add(xs: list[np.ndarray], attrs: dict) -> np.ndarray:
    indices, updates = xs
    shape = attrs["shape"]
    axis = normalize_axis(attrs["axis"], len(shape))
    size = shape[axis]
    lowest = -size if attrs["allow_negative"] else 0
    bad = indices[(indices < lowest) | (indices >= size)]
    if bad.size:
        raise ShapeError(f"op 'scatter_add': index {bad.flat[0]} is out of range for axis {axis} "
                         f"of size {size} (expected {lowest} <= index < {size})")
    out = np.zeros(shape, updates.dtype)
    moved = np.moveaxis(out, axis, 0)   # a view: adding into it adds into out
    rows = np.moveaxis(updates.reshape(shape[:axis] + (indices.size,) + tuple(shape[axis + 1:])), axis, 0)
    np.add.at(moved, indices.reshape(-1) % size if size else indices.reshape(-1), rows)
    return out


defop("scatter_add", inputs=("indices", "updates"), fusion=Fusion.OPAQUE, infer=_scatter_add_rule,
      reference=_scatter_add,
      attrs={"shape": Attr(AttrKind.SHAPE), "axis": Attr(AttrKind.INT, 0),
             "allow_negative": Attr(AttrKind.BOOL, True)},
      doc="zeros of `shape` plus each slice of `updates` added at its index along `axis` (the "
          "adjoint of gather); repeated indices accumulate")



def _scatter_add_vjp(b, node, cts):
    """The cotangent's slices at the indices (scatter_add is gather's adjoint, and the reverse)."""
    return [None, b.gather(cts[0], node.inputs[0], axis=node.attrs["axis"],
                           allow_negative=node.attrs["allow_negative"])]


OPS["scatter_add"].vjp = _scatter_add_vjp


# --- random_uniform ----------------------------------------------------------------------------

GOLDEN = 0x9E3779B97F4A7C15     # 2**64 / golden ratio: splitmix64's increment
MIX1, MIX2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer on uint64 arrays (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(MIX1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(MIX2)
    return z ^ (z >> np.uint64(31))


def _as_u64(value: int) -> np.ndarray:
    """An int64 as the uint64 of the same bits, in a 1-element array (arrays wrap silently)."""
    return np.asarray(value, np.int64).astype(np.uint64).reshape(1)


def key_hash(key: int) -> int:
    """mix64(key + GOLDEN): the part of a stream that depends on the `key` attribute only."""
    with np.errstate(over="ignore"):
        return int(mix64(_as_u64(key) + np.uint64(GOLDEN))[0])


def uniform_bits(seed: int, key: int, count: int) -> np.ndarray:
    """Elements 0..count-1 of the stream (seed, key) as float32 in [0, 1): the top 24 bits of
    mix64(stream + (i + 1) * GOLDEN), stream = mix64(mix64(key + GOLDEN) ^ seed)."""
    with np.errstate(over="ignore"):
        stream = mix64(np.asarray([key_hash(key)], np.uint64) ^ _as_u64(seed))
        counter = np.arange(1, count + 1, dtype=np.uint64) * np.uint64(GOLDEN) + stream
        return (mix64(counter) >> np.uint64(40)).astype(np.float32) * np.float32(2.0 ** -24)


def _random_uniform_rule(ts: list[TensorType], attrs: dict) -> TensorType:
    seed = ts[0]
    if seed != TensorType(DType.i64, ()):
        raise ShapeError(f"seed is {seed}; expected an i64 scalar (i64[])")
    if -1 in attrs["shape"]:
        raise ShapeError(f"shape {list(attrs['shape'])} may not contain -1")
    return TensorType(DType.f32, attrs["shape"])


def _random_uniform(xs: list[np.ndarray], attrs: dict) -> np.ndarray:
    shape = attrs["shape"]
    return uniform_bits(int(xs[0]), attrs["key"], int(np.prod(shape, dtype=np.int64))).reshape(shape)


defop("random_uniform", inputs=("seed",), fusion=Fusion.OPAQUE, infer=_random_uniform_rule,
      reference=_random_uniform, attrs={"shape": Attr(AttrKind.SHAPE), "key": Attr(AttrKind.INT, 0)},
      doc="f32 uniform in [0, 1) of `shape`; element i is a hash of (seed, key, i), no state")

"""Small example graphs that together use every op of the op table, each with a numpy twin.

`EXAMPLES[name](rng)` builds a graph with `nncompile.ir.Builder` and returns it with valid random
data inputs. `NUMPY[name](inputs, params)` computes the same outputs directly in numpy, written
independently of the op table (conv and pooling with explicit loops), so that any backend can be
checked against it. Other test modules import these tables; keep the cases small and fast.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from nncompile.ir import BATCH, Builder, Graph, f32, f64, i32, i64
from nncompile.ir.dtypes import bool_

Build = Callable[[np.random.Generator], "tuple[Graph, list[np.ndarray]]"]
Twin = Callable[[list[np.ndarray], dict[str, np.ndarray]], list[np.ndarray]]

EXAMPLES: dict[str, Build] = {}
NUMPY: dict[str, Twin] = {}


def _case(name: str, twin: Twin) -> Callable[[Build], Build]:
    def register(build: Build) -> Build:
        if name in EXAMPLES:
            raise ValueError(f"example {name!r} is defined twice")
        EXAMPLES[name] = build
        NUMPY[name] = twin
        return build
    return register


def _batch(rng: np.random.Generator) -> int:
    return int(rng.integers(1, 4))


def _normal(rng: np.random.Generator, *shape: int, dtype=np.float32) -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)


def _uniform(rng: np.random.Generator, low: float, high: float, *shape: int, dtype=np.float32) -> np.ndarray:
    return rng.uniform(low, high, shape).astype(dtype)


# --- elementwise ----------------------------------------------------------------------------

def _erf(x: np.ndarray) -> np.ndarray:
    return np.array([math.erf(v) for v in x.ravel().tolist()], np.float64).reshape(x.shape)


def _halves(rng: np.random.Generator, *shape: int) -> np.ndarray:
    """Multiples of 0.5, so that rounding meets exact ties."""
    return (rng.integers(-8, 9, shape) / 2).astype(np.float32)


# name -> (numpy formulation, input sampler); inputs are f32[?,3,4] unless the sampler says bool
_UNARY = {
    "neg": (lambda x: 0 - x, lambda r, n: _normal(r, n, 3, 4)),
    "abs": (lambda x: np.where(x < 0, -x, x), lambda r, n: _normal(r, n, 3, 4)),
    "sign": (lambda x: (x > 0).astype(x.dtype) - (x < 0).astype(x.dtype), lambda r, n: _halves(r, n, 3, 4)),
    "exp": (lambda x: np.e ** x.astype(np.float64), lambda r, n: _normal(r, n, 3, 4)),
    "expm1": (lambda x: np.expm1(x.astype(np.float64)), lambda r, n: _normal(r, n, 3, 4) * 1e-3),
    "log": (lambda x: np.log(x.astype(np.float64)), lambda r, n: _uniform(r, 0.1, 5, n, 3, 4)),
    "log1p": (lambda x: np.log1p(x.astype(np.float64)), lambda r, n: _uniform(r, -1e-3, 1e-3, n, 3, 4)),
    "sqrt": (lambda x: x.astype(np.float64) ** 0.5, lambda r, n: _uniform(r, 0, 5, n, 3, 4)),
    "rsqrt": (lambda x: x.astype(np.float64) ** -0.5, lambda r, n: _uniform(r, 0.1, 5, n, 3, 4)),
    "reciprocal": (lambda x: 1.0 / x.astype(np.float64), lambda r, n: _uniform(r, 0.5, 5, n, 3, 4)),
    "square": (lambda x: x * x, lambda r, n: _normal(r, n, 3, 4)),
    "tanh": (lambda x: np.sinh(x.astype(np.float64)) / np.cosh(x.astype(np.float64)),
             lambda r, n: _normal(r, n, 3, 4) * 3),
    "sigmoid": (lambda x: 1 / (1 + np.exp(-x.astype(np.float64))), lambda r, n: _normal(r, n, 3, 4) * 5),
    "relu": (lambda x: x * (x > 0), lambda r, n: _normal(r, n, 3, 4)),
    "erf": (_erf, lambda r, n: _normal(r, n, 3, 4)),
    "sin": (lambda x: np.sin(x.astype(np.float64)), lambda r, n: _normal(r, n, 3, 4) * 3),
    "cos": (lambda x: np.cos(x.astype(np.float64)), lambda r, n: _normal(r, n, 3, 4) * 3),
    "atan": (lambda x: np.arctan2(x.astype(np.float64), 1.0), lambda r, n: _normal(r, n, 3, 4) * 4),
    "floor": (lambda x: x - np.mod(x, 1), lambda r, n: _normal(r, n, 3, 4) * 3),
    "ceil": (lambda x: -(-x - np.mod(-x, 1)), lambda r, n: _normal(r, n, 3, 4) * 3),
    "round": (lambda x: np.rint(x), lambda r, n: _halves(r, n, 3, 4)),
    "logical_not": (lambda x: x == 0, lambda r, n: r.random((n, 3, 4)) < 0.5),
    "stop_gradient": (lambda x: x + 0, lambda r, n: _normal(r, n, 3, 4)),
}


def _unary_case(op: str, twin, sample) -> None:
    def build(rng: np.random.Generator):
        data = sample(rng, _batch(rng))
        dtype = bool_ if data.dtype == np.bool_ else f32
        b = Builder()
        x = b.input("x", dtype[BATCH, 3, 4])
        return b.finish([b.op(op, x)], ["y"]), [data]

    _case(f"unary_{op}", lambda xs, ps: [twin(xs[0])])(build)


for _op, (_twin, _sample) in _UNARY.items():
    _unary_case(_op, _twin, _sample)


def _pos(r, *shape):
    return _uniform(r, 0.5, 2.0, *shape)


def _coin(r, *shape):
    return r.random(shape) < 0.5


# name -> (numpy formulation, dtype of both inputs, sampler of x (batch, 3, 4), sampler of y (4,))
_BINARY = {
    "add": (lambda x, y: x + y, f32, _normal, _normal),
    "fmod": (lambda x, y: np.fmod(x, y), f32, _normal, _pos),
    "sub": (lambda x, y: x + (-y), i32, lambda r, *s: r.integers(-50, 50, s, np.int32),
            lambda r, *s: r.integers(-50, 50, s, np.int32)),
    "mul": (lambda x, y: x * y, i64, lambda r, *s: r.integers(-50, 50, s, np.int64),
            lambda r, *s: r.integers(-50, 50, s, np.int64)),
    "div": (lambda x, y: x * (1.0 / y.astype(np.float64)), f64,
            lambda r, *s: _normal(r, *s, dtype=np.float64),
            lambda r, *s: _uniform(r, 0.5, 2.0, *s, dtype=np.float64)),
    "pow": (lambda x, y: np.exp(y.astype(np.float64) * np.log(x.astype(np.float64))), f32, _pos, _normal),
    "maximum": (lambda x, y: np.where(x > y, x, y), f32, _normal, _normal),
    "minimum": (lambda x, y: np.where(x < y, x, y), i32, lambda r, *s: r.integers(-5, 5, s, np.int32),
                lambda r, *s: r.integers(-5, 5, s, np.int32)),
    "logical_and": (lambda x, y: x & y, bool_, _coin, _coin),
    "logical_or": (lambda x, y: x | y, bool_, _coin, _coin),
}


def _binary_case(op: str, twin, dtype, sample_x, sample_y) -> None:
    """x: [?,3,4] input, y: [4] parameter, so every binary op also broadcasts."""
    def build(rng: np.random.Generator):
        b = Builder()
        x = b.input("x", dtype[BATCH, 3, 4])
        y = b.param("y", sample_y(rng, 4))
        return b.finish([b.op(op, x, y)], ["z"]), [sample_x(rng, _batch(rng), 3, 4)]

    _case(f"binary_{op}", lambda xs, ps: [twin(xs[0], ps["y"])])(build)


for _op, _spec in _BINARY.items():
    _binary_case(_op, *_spec)


_COMPARE = {
    "equal": lambda x, y: ~((x < y) | (x > y)),
    "not_equal": lambda x, y: (x < y) | (x > y),
    "less": lambda x, y: y - x > 0,
    "less_equal": lambda x, y: ~(x > y),
    "greater": lambda x, y: x - y > 0,
    "greater_equal": lambda x, y: ~(x < y),
}


def _compare_case(op: str, twin) -> None:
    """Small integers (as i32 and as f32 in x[?,1,4] vs y[3,1]) so that ties occur."""
    def build(rng: np.random.Generator):
        b = Builder()
        x = b.input("x", i32[BATCH, 1, 4])
        y = b.input("y", i32[3, 1])
        xf = b.input("xf", f32[BATCH, 4])
        n = _batch(rng)
        data = [rng.integers(-2, 3, (n, 1, 4), np.int32), rng.integers(-2, 3, (3, 1), np.int32),
                rng.integers(-2, 3, (n, 4)).astype(np.float32)]
        half = b.constant(np.float32(0.5))
        return b.finish([b.op(op, x, y), b.op(op, xf, half)], ["ints", "floats"]), data

    _case(f"compare_{op}", lambda xs, ps: [twin(xs[0].astype(np.int64), xs[1].astype(np.int64)),
                                           twin(xs[2].astype(np.float64), 0.5)])(build)


for _op, _twin in _COMPARE.items():
    _compare_case(_op, _twin)


@_case("select_cast_constant", lambda xs, ps: [
    np.where(xs[0] > 0, xs[0], ps["alt"]).astype(np.float64).astype(np.int32),
    np.where(xs[0] > np.float32(0.25), np.float32(1.0), np.float32(0.0)),
    np.arange(6, dtype=np.int64).reshape(2, 3)])
def _select_cast_constant(rng):
    b = Builder()
    x = b.input("x", f32[BATCH, 5])
    alt = b.param("alt", _normal(rng, 5) * 10)
    chosen = b.select(b.greater(x, b.scalar(0.0, x)), x, alt)
    as_int = b.cast(chosen, dtype="i32")
    mask = b.cast(b.greater(x, b.constant(np.float32(0.25))), dtype=f32)
    table = b.constant(np.arange(6, dtype=np.int64).reshape(2, 3))
    g = b.finish([as_int, mask, table], ["as_int", "mask", "table"])
    return g, [_normal(rng, _batch(rng), 5) * 10]


# --- reductions -----------------------------------------------------------------------------

def _first_index(x: np.ndarray, axis: int, better) -> np.ndarray:
    """Index of the first element along `axis` that no later element beats."""
    moved = np.moveaxis(x, axis, -1)
    rows = moved.reshape(-1, moved.shape[-1])
    out = []
    for row in rows.tolist():
        best = 0
        for k, v in enumerate(row):
            if better(v, row[best]):
                best = k
        out.append(best)
    return np.array(out, np.int64).reshape(moved.shape[:-1])


@_case("reduce_sum_mean", lambda xs, ps: [
    xs[0].astype(np.float64).sum(axis=2).sum(axis=1)[:, None, None],
    xs[0],
    xs[0].astype(np.float64).sum(axis=0) / xs[0].shape[0],
    (xs[0].astype(np.float64).sum(axis=1) / 3)[:, None]])
def _reduce_sum_mean(rng):
    b = Builder()
    x = b.input("x", f32[BATCH, 3, 4])
    total = b.reduce_sum(x, axes=[-1, 1], keepdims=True)
    same = b.reduce_sum(x, axes=[])
    mean_over_batch = b.reduce_mean(x, axes=[0])
    mean_kept = b.reduce_mean(x, axes=[1], keepdims=True)
    g = b.finish([total, same, mean_over_batch, mean_kept], ["total", "same", "mean", "mean_kept"])
    return g, [_normal(rng, _batch(rng), 3, 4)]


def _fold(x: np.ndarray, axis: int, fn) -> np.ndarray:
    """Reduce `axis` by applying the binary `fn` left to right."""
    moved = np.moveaxis(x, axis, 0)
    acc = moved[0]
    for part in moved[1:]:
        acc = fn(acc, part)
    return acc


@_case("reduce_max_min_prod", lambda xs, ps: [
    _fold(xs[0], 1, np.maximum),
    _fold(_fold(xs[1], 2, np.minimum), 0, np.minimum)[None, :, None],
    _fold(xs[2].astype(np.float64), 2, np.multiply),
    _fold(xs[0], 2, np.maximum)[:, :, None],
    _fold(xs[1], 1, np.minimum),
    _fold(xs[2].astype(np.float64), 1, np.multiply)[:, None, :]])
def _reduce_max_min_prod(rng):
    b = Builder()
    x = b.input("x", f32[BATCH, 3, 4])
    k = b.input("k", i32[BATCH, 3, 4])
    d = b.input("d", f64[BATCH, 2, 5])
    n = _batch(rng)
    g = b.finish([b.reduce_max(x, axes=[1]), b.reduce_min(k, axes=[0, 2], keepdims=True),
                  b.reduce_prod(d, axes=[-1]), b.reduce_max(x, axes=[2], keepdims=True),
                  b.reduce_min(k, axes=[1]), b.reduce_prod(d, axes=[1], keepdims=True)],
                 ["max", "min_kept", "prod", "max_kept", "min", "prod_kept"])
    return g, [_normal(rng, n, 3, 4), rng.integers(-9, 9, (n, 3, 4), np.int32),
               _uniform(rng, 0.5, 1.5, n, 2, 5, dtype=np.float64)]


@_case("argmax_argmin", lambda xs, ps: [
    _first_index(xs[0], 2, lambda v, best: v > best)[:, :, None],
    _first_index(xs[0], 1, lambda v, best: v < best),
    _first_index(xs[1], 0, lambda v, best: v > best),
    _first_index(xs[1], 1, lambda v, best: v < best)[:, None]])
def _argmax_argmin(rng):
    b = Builder()
    x = b.input("x", i32[BATCH, 3, 5])
    f = b.input("f", f32[BATCH, 4])
    g = b.finish([b.argmax(x, axis=-1, keepdims=True), b.argmin(x, axis=1), b.argmax(f, axis=0),
                  b.argmin(f, axis=-1, keepdims=True)], ["argmax", "argmin", "argmax_batch", "argmin_kept"])
    n = _batch(rng)
    return g, [rng.integers(0, 3, (n, 3, 5), np.int32), _normal(rng, n, 4)]


# --- matmul ---------------------------------------------------------------------------------

def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Matrix product by explicit sums over the contraction index."""
    return sum(a[..., :, k, None] * b[..., None, k, :] for k in range(a.shape[-1]))


@_case("matmul_dense_3d", lambda xs, ps: [_dot(xs[0].astype(np.float64), ps["w"]) + ps["bias"]])
def _matmul_dense_3d(rng):
    b = Builder()
    x = b.input("x", f32[BATCH, 5, 6])
    w = b.param("w", _normal(rng, 6, 4))
    bias = b.param("bias", _normal(rng, 4))
    return b.finish([b.add(b.matmul(x, w), bias)], ["y"]), [_normal(rng, _batch(rng), 5, 6)]


@_case("matmul_transposed_batch", lambda xs, ps: [
    _dot(np.swapaxes(xs[0], -1, -2).astype(np.float64), np.swapaxes(ps["b"], -1, -2).astype(np.float64)),
    _dot(xs[1].astype(np.int64), ps["k"].astype(np.int64))])
def _matmul_transposed_batch(rng):
    """a[?,1,5,3]^T x b[2,4,5]^T: batch dims (?,1) and (2,) broadcast to (?,2); plus an i32 matmul."""
    b = Builder()
    a = b.input("a", f32[BATCH, 1, 5, 3])
    k_in = b.input("i", i32[BATCH, 3])
    w = b.param("b", _normal(rng, 2, 4, 5))
    k = b.param("k", rng.integers(-5, 5, (3, 2), np.int32))
    g = b.finish([b.matmul(a, w, transpose_a=True, transpose_b=True), b.matmul(k_in, k)], ["y", "ints"])
    n = _batch(rng)
    return g, [_normal(rng, n, 1, 5, 3), rng.integers(-5, 5, (n, 3), np.int32)]


# --- conv2d and pooling ---------------------------------------------------------------------

def conv2d_loops(x, w, strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), groups=1):
    """Direct convolution: per output pixel, kernel tap and group, a (batch, cin) x (cin, cout) product."""
    n, h, wd, cin = x.shape
    kh, kw, cg, cout = w.shape
    (sh, sw), (top, bottom, left, right), (dh, dw) = strides, pads, dilations
    xp = np.zeros((n, h + top + bottom, wd + left + right, cin))
    xp[:, top:top + h, left:left + wd] = x
    oh = (h + top + bottom - (kh - 1) * dh - 1) // sh + 1
    ow = (wd + left + right - (kw - 1) * dw - 1) // sw + 1
    og = cout // groups
    out = np.zeros((n, oh, ow, cout))
    for i in range(oh):
        for j in range(ow):
            for ki in range(kh):
                for kj in range(kw):
                    pixel = xp[:, i * sh + ki * dh, j * sw + kj * dw, :]
                    for g in range(groups):
                        out[:, i, j, g * og:(g + 1) * og] += (
                            pixel[:, g * cg:(g + 1) * cg] @ w[ki, kj, :, g * og:(g + 1) * og])
    return out


@_case("conv2d_valid", lambda xs, ps: [conv2d_loops(xs[0], ps["w"])])
def _conv2d_valid(rng):
    b = Builder()
    x = b.input("x", f32[BATCH, 7, 6, 3])
    w = b.param("w", _normal(rng, 3, 2, 3, 4))
    return b.finish([b.conv2d(x, w)], ["y"]), [_normal(rng, _batch(rng), 7, 6, 3)]


@_case("conv2d_same_stride2_groups2", lambda xs, ps: [
    conv2d_loops(xs[0], ps["w"], strides=(2, 2), pads=(1, 1, 0, 1), groups=2)])
def _conv2d_same_stride2_groups2(rng):
    """'same' padding from same_pads: H 9 -> 5 needs (1, 1), W 8 -> 4 needs (0, 1)."""
    from nncompile.ir.ops.linalg import same_pads

    b = Builder()
    x = b.input("x", f32[BATCH, 9, 8, 4])
    w = b.param("w", _normal(rng, 3, 3, 2, 6))
    pads = same_pads(9, 3, 2, 1) + same_pads(8, 3, 2, 1)
    y = b.conv2d(x, w, strides=[2, 2], pads=pads, groups=2)
    return b.finish([y], ["y"]), [_normal(rng, _batch(rng), 9, 8, 4)]


@_case("conv2d_dilated_depthwise", lambda xs, ps: [
    conv2d_loops(xs[0], ps["w"], strides=(1, 2), pads=(1, 0, 2, 1), dilations=(2, 1)),
    conv2d_loops(xs[0], ps["dw"], pads=(1, 1, 1, 1), groups=2)])
def _conv2d_dilated_depthwise(rng):
    b = Builder()
    x = b.input("x", f32[BATCH, 10, 9, 2])
    w = b.param("w", _normal(rng, 2, 3, 2, 3))
    dw = b.param("dw", _normal(rng, 3, 3, 1, 4))
    y = b.conv2d(x, w, strides=[1, 2], pads=[1, 0, 2, 1], dilations=[2, 1])
    z = b.conv2d(x, dw, pads=[1, 1, 1, 1], groups=2)
    return b.finish([y, z], ["dilated", "depthwise"]), [_normal(rng, _batch(rng), 10, 9, 2)]


def pool2d_loops(x, window, strides, pads, reduce):
    """Each output pixel reduces the input rows/cols its window covers, clipped to the real input."""
    n, h, w, c = x.shape
    (kh, kw), (sh, sw), (top, bottom, left, right) = window, strides, pads
    oh = (h + top + bottom - kh) // sh + 1
    ow = (w + left + right - kw) // sw + 1
    out = np.zeros((n, oh, ow, c))
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * sh - top, j * sw - left
            block = x[:, max(r0, 0):min(r0 + kh, h), max(c0, 0):min(c0 + kw, w), :]
            out[:, i, j, :] = reduce(block.reshape(n, -1, c).astype(np.float64))
    return out


def window_max(block: np.ndarray) -> np.ndarray:
    """Reduction of pool2d_loops: (batch, elements, channels) -> (batch, channels)."""
    return block.max(axis=1)


def window_mean(block: np.ndarray) -> np.ndarray:
    """Mean over the elements actually present, so padding never counts."""
    return block.sum(axis=1) / block.shape[1]


@_case("max_pool2d", lambda xs, ps: [
    pool2d_loops(xs[0], (2, 2), (2, 2), (0, 0, 0, 0), window_max),
    pool2d_loops(xs[0] - 10, (3, 3), (2, 1), (1, 1, 1, 1), window_max),
    pool2d_loops(xs[1], (2, 3), (1, 3), (1, 0, 0, 2), window_max)])
def _max_pool2d(rng):
    """The shifted input is negative everywhere, so a zero from padding would win if counted."""
    b = Builder()
    x = b.input("x", f32[BATCH, 6, 7, 3])
    k = b.input("k", i32[BATCH, 5, 4, 2])
    shifted = b.sub(x, b.scalar(10.0, x))
    g = b.finish([b.max_pool2d(x, window=[2, 2], strides=[2, 2]),
                  b.max_pool2d(shifted, window=[3, 3], strides=[2, 1], pads=[1, 1, 1, 1]),
                  b.max_pool2d(k, window=[2, 3], strides=[1, 3], pads=[1, 0, 0, 2])],
                 ["valid", "same", "ints"])
    n = _batch(rng)
    return g, [_normal(rng, n, 6, 7, 3), rng.integers(-100, 0, (n, 5, 4, 2), np.int32)]


@_case("avg_pool2d", lambda xs, ps: [
    pool2d_loops(xs[0], (2, 2), (1, 2), (0, 0, 0, 0), window_mean),
    pool2d_loops(xs[0], (3, 2), (2, 2), (1, 1, 0, 1), window_mean)])
def _avg_pool2d(rng):
    """The padded case's border windows hold fewer real elements; the mean is over those only."""
    b = Builder()
    x = b.input("x", f32[BATCH, 5, 7, 2])
    g = b.finish([b.avg_pool2d(x, window=[2, 2], strides=[1, 2]),
                  b.avg_pool2d(x, window=[3, 2], strides=[2, 2], pads=[1, 1, 0, 1])], ["valid", "same"])
    return g, [_normal(rng, _batch(rng), 5, 7, 2) + 3]


# --- data movement --------------------------------------------------------------------------

@_case("reshape", lambda xs, ps: [xs[0].reshape(len(xs[0]), 100), xs[0].reshape(len(xs[0]), 100),
                                  ps["w"].reshape(3, 4, 2)])
def _reshape(rng):
    b = Builder()
    x = b.input("x", f32[BATCH, 5, 5, 4])
    w = b.param("w", _normal(rng, 6, 4))
    g = b.finish([b.reshape(x, shape=[BATCH, 100]), b.reshape(x, shape=[BATCH, -1]),
                  b.reshape(w, shape=[3, -1, 2])], ["explicit", "inferred", "static"])
    return g, [_normal(rng, _batch(rng), 5, 5, 4)]


@_case("transpose_broadcast", lambda xs, ps: [
    np.einsum("nhwc->nchw", xs[0]),
    xs[1] * np.ones((1, 3, 1), np.float32),
    ps["b"][None, None, :] + np.zeros((len(xs[1]), 3, 1), np.float32)])
def _transpose_broadcast(rng):
    b = Builder()
    x = b.input("x", f32[BATCH, 3, 4, 5])
    r = b.input("r", f32[BATCH, 1, 4])
    bias = b.param("b", _normal(rng, 4))
    g = b.finish([b.transpose(x, perm=[0, 3, 1, 2]), b.broadcast(r, shape=[BATCH, 3, 4]),
                  b.broadcast(bias, shape=[BATCH, 3, 4])], ["nchw", "rows", "bias"])
    n = _batch(rng)
    return g, [_normal(rng, n, 3, 4, 5), _normal(rng, n, 1, 4)]


def _stack_rows(parts: list[np.ndarray], axis: int) -> np.ndarray:
    """Concatenation by copying each part into its place in a preallocated array."""
    shape = list(parts[0].shape)
    shape[axis] = sum(p.shape[axis] for p in parts)
    out = np.empty(shape, parts[0].dtype)
    offset = 0
    for p in parts:
        index = [slice(None)] * len(shape)
        index[axis] = slice(offset, offset + p.shape[axis])
        out[tuple(index)] = p
        offset += p.shape[axis]
    return out


@_case("concat", lambda xs, ps: [_stack_rows([xs[0], xs[1], np.broadcast_to(ps["c"], (len(xs[0]), 1, 3))], 1),
                                 _stack_rows([xs[0], xs[0]], 2)])
def _concat(rng):
    b = Builder()
    x = b.input("x", f32[BATCH, 2, 3])
    y = b.input("y", f32[BATCH, 4, 3])
    c = b.broadcast(b.param("c", _normal(rng, 1, 3)), shape=[BATCH, 1, 3])
    g = b.finish([b.concat(x, y, c, axis=-2), b.concat(x, x, axis=2)], ["rows", "cols"])
    n = _batch(rng)
    return g, [_normal(rng, n, 2, 3), _normal(rng, n, 4, 3)]


@_case("slice", lambda xs, ps: [xs[0][:, 8:1:-3, -1:-100:-2], xs[0][:, -100:100, 1:-1:2],
                                ps["t"][5:2:-1]])
def _slice(rng):
    from nncompile.ir.ops.shape import SLICE_END

    b = Builder()
    x = b.input("x", f32[BATCH, 10, 7])
    t = b.param("t", np.arange(4, dtype=np.int64))
    backwards = b.slice(x, starts=[0, 8, -1], ends=[SLICE_END, 1, -100], axes=[0, 1, -1], steps=[1, -3, -2])
    g = b.finish([backwards,
                  b.slice(x, starts=[-100, 1], ends=[100, -1], axes=[1, 2], steps=[1, 2]),
                  b.slice(t, starts=[5], ends=[2], axes=[0], steps=[-1])], ["backwards", "clamped", "static"])
    return g, [_normal(rng, _batch(rng), 10, 7)]


@_case("gather", lambda xs, ps: [ps["table"][xs[0]], xs[1][:, ps["cols"]]])
def _gather(rng):
    """An embedding lookup (i32 ids into a table, negative ids refused) and an i64 gather along
    axis 1, negative ids included."""
    b = Builder()
    ids = b.input("ids", i32[BATCH, 5])
    x = b.input("x", f32[BATCH, 6])
    table = b.param("table", _normal(rng, 10, 4))
    cols = b.param("cols", np.array([[5, -1], [0, -6], [2, 2]], np.int64))
    g = b.finish([b.gather(table, ids, allow_negative=False), b.gather(x, cols, axis=1)],
                 ["embedded", "picked"])
    n = _batch(rng)
    return g, [rng.integers(0, 10, (n, 5), np.int32), _normal(rng, n, 6)]


def _padded(x: np.ndarray, pairs, value) -> np.ndarray:
    out = np.full([d + lo + hi for d, (lo, hi) in zip(x.shape, pairs)], value, x.dtype)
    out[tuple(slice(lo, lo + d) for d, (lo, _) in zip(x.shape, pairs))] = x
    return out


@_case("pad", lambda xs, ps: [_padded(xs[0], [(0, 0), (1, 2), (0, 3)], -1.5),
                              _padded(xs[1], [(0, 0), (2, 1)], 0)])
def _pad(rng):
    b = Builder()
    x = b.input("x", f32[BATCH, 3, 4])
    k = b.input("k", i64[BATCH, 2])
    g = b.finish([b.pad(x, pads=[0, 0, 1, 2, 0, 3], value=-1.5), b.pad(k, pads=[0, 0, 2, 1])],
                 ["floats", "ints"])
    n = _batch(rng)
    return g, [_normal(rng, n, 3, 4), rng.integers(1, 9, (n, 2), np.int64)]


# --- nn ---------------------------------------------------------------------------------------

def _softmax64(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x.astype(np.float64))
    return e / e.sum(axis=axis, keepdims=True)


@_case("softmax", lambda xs, ps: [_softmax64(xs[0], -1), _softmax64(xs[1], 1),
                                  np.log(_softmax64(xs[1], -1)), np.log(_softmax64(xs[0], 0))])
def _softmax(rng):
    """Logits up to ~150 overflow exp in f32, so only a stable implementation passes."""
    b = Builder()
    x = b.input("x", f32[BATCH, 10])
    y = b.input("y", f32[BATCH, 4, 3])
    g = b.finish([b.softmax(x), b.softmax(y, axis=1), b.log_softmax(y), b.log_softmax(x, axis=0)],
                 ["probs", "probs_axis1", "logp", "logp_batch"])
    n = _batch(rng)
    return g, [_normal(rng, n, 10) * 50, _normal(rng, n, 4, 3) * 50]


# --- fused ------------------------------------------------------------------------------------

def _fused_body(build: Callable, *types) -> Graph:
    """A region: inputs arg0, arg1, ... of `types`; `build(b, *args)` returns the outputs."""
    b = Builder(name="body")
    args = [b.input(f"arg{i}", t) for i, t in enumerate(types)]
    outs = build(b, *args)
    return b.finish(list(outs) if isinstance(outs, (list, tuple)) else [outs])


@_case("fused", lambda xs, ps: [np.maximum(xs[0] @ ps["w"] + ps["b"], 0) * 0.5,
                                np.exp(xs[0]) - xs[0], np.exp(xs[0]) * ps["s"],
                                np.sqrt((xs[0] * xs[0]).sum(axis=1) + 1)])
def _fused(rng):
    """One fused node of each body shape: a matmul epilogue with a copied-in constant, a loop
    with two outputs, a reduction with a prologue and an epilogue."""
    b = Builder()
    x = b.input("x", f32[BATCH, 4])
    w, bias, s = b.param("w", _normal(rng, 4, 3)), b.param("b", _normal(rng, 3)), b.param("s", _normal(rng, 4))
    dense = _fused_body(lambda f, a, k, c: f.mul(f.relu(f.add(f.matmul(a, k), c)), f.constant(0.5)),
                        f32[BATCH, 4], f32[4, 3], f32[3])
    loop = _fused_body(lambda f, a, c: (lambda e: [f.sub(e, a), f.mul(e, c)])(f.exp(a)), f32[BATCH, 4], f32[4])
    norm = _fused_body(lambda f, a: f.sqrt(f.add(f.reduce_sum(f.mul(a, a), axes=[1]), f.constant(1.0))),
                       f32[BATCH, 4])
    (y,) = b.fused(x, w, bias, kind="matmul", body=dense)
    d, e = b.fused(x, s, kind="loop", body=loop)
    (n,) = b.fused(x, kind="reduction", body=norm)
    g = b.finish([y, d, e, n], ["dense", "diff", "scaled", "norm"])
    return g, [_normal(rng, _batch(rng), 4)]


# --- scan -------------------------------------------------------------------------------------

def _elman(xs, ps, reverse: bool):
    """h_t = tanh(x_t @ w + h_{t-1} @ u), run over time axis 1, forwards or backwards."""
    x, h = xs[0], xs[1]
    ys = np.zeros(x.shape[:2] + (h.shape[1],), np.float64)
    steps = range(x.shape[1] - 1, -1, -1) if reverse else range(x.shape[1])
    total = np.zeros_like(h, dtype=np.float64)
    for t in steps:
        h = np.tanh(x[:, t] @ ps["w"] + h @ ps["u"])
        total = total + h
        ys[:, t] = h
    return [h, total, ys]


def _elman_body() -> Graph:
    b = Builder(name="body")
    h, total = b.input("h", f32[BATCH, 3]), b.input("total", f32[BATCH, 3])
    x = b.input("x", f32[BATCH, 2])
    w, u = b.input("w", f32[2, 3]), b.input("u", f32[3, 3])
    h2 = b.tanh(b.add(b.matmul(x, w), b.matmul(h, u)))
    return b.finish([h2, b.add(total, h2), h2])


def _elman_cell(xs, ps):
    """The forward Elman RNN's final state and states, time-major."""
    h, _, ys = _elman(xs, ps, False)
    return [h, ys.transpose(1, 0, 2)]


def _elman_cell_body() -> Graph:
    b = Builder(name="cell")
    h, xw, u = b.input("h", f32[BATCH, 3]), b.input("xw", f32[BATCH, 3]), b.input("u", f32[3, 3])
    h2 = b.tanh(b.add(xw, b.matmul(h, u)))
    return b.finish([h2, h2])


@_case("scan", lambda xs, ps: _elman(xs, ps, False) + _elman(xs, ps, True) + _elman_cell(xs, ps))
def _scan(rng):
    """An Elman RNN over time axis 1 (carries: the state and a running sum; per step: the state),
    forwards and backwards; and as the cell it is (`cell`: time-major, inputs projected first)."""
    b = Builder()
    steps = int(rng.integers(1, 5))
    x, h0 = b.input("x", f32[BATCH, steps, 2]), b.input("h0", f32[BATCH, 3])
    w, u = b.param("w", _normal(rng, 2, 3)), b.param("u", _normal(rng, 3, 3) * 0.5)
    zero = b.broadcast(b.constant(np.float32(0)), shape=[BATCH, 3])
    outs = []
    for reverse in (False, True):
        outs += b.scan(h0, zero, x, w, u, body=_elman_body(), num_carry=2, num_scanned=1,
                       axis=1, reverse=reverse)
    projected = b.transpose(b.matmul(x, w), perm=[1, 0, 2])
    outs += b.scan(h0, projected, u, body=_elman_cell_body(), num_carry=1, num_scanned=1,
                   cell="simple_rnn:tanh")
    g = b.finish(outs, ["h", "total", "ys", "h_rev", "total_rev", "ys_rev", "h_cell", "ys_cell"])
    n = _batch(rng)
    return g, [_normal(rng, n, steps, 2), _normal(rng, n, 3)]


# --- backward-pass ops ------------------------------------------------------------------------

def _pad_hw(x: np.ndarray, pads) -> np.ndarray:
    top, bottom, left, right = pads
    out = np.zeros((x.shape[0], x.shape[1] + top + bottom, x.shape[2] + left + right, x.shape[3]))
    out[:, top:top + x.shape[1], left:left + x.shape[2]] = x
    return out


def conv2d_grad_input_loops(dy, w, input_hw, strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), groups=1):
    """Each output pixel's dy, times each tap's weights, added back onto the pixel it read."""
    n, oh, ow, cout = dy.shape
    kh, kw, cg, _ = w.shape
    (sh, sw), (top, bottom, left, right), (dh, dw) = strides, pads, dilations
    h, wd = input_hw
    og = cout // groups
    dx = np.zeros((n, h + top + bottom, wd + left + right, cg * groups))
    for i in range(oh):
        for j in range(ow):
            for ki in range(kh):
                for kj in range(kw):
                    for g in range(groups):
                        dx[:, i * sh + ki * dh, j * sw + kj * dw, g * cg:(g + 1) * cg] += (
                            dy[:, i, j, g * og:(g + 1) * og] @ w[ki, kj, :, g * og:(g + 1) * og].T)
    return dx[:, top:top + h, left:left + wd]


def conv2d_grad_filter_loops(x, dy, kernel_hw, strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), groups=1):
    """Each tap's weights collect (input pixel)^T @ dy over all output pixels."""
    n, oh, ow, cout = dy.shape
    kh, kw = kernel_hw
    (sh, sw), (dh, dw) = strides, dilations
    cg, og = x.shape[3] // groups, cout // groups
    xp = _pad_hw(x, pads)
    dwt = np.zeros((kh, kw, cg, cout))
    for i in range(oh):
        for j in range(ow):
            for ki in range(kh):
                for kj in range(kw):
                    pixel = xp[:, i * sh + ki * dh, j * sw + kj * dw, :]
                    for g in range(groups):
                        dwt[ki, kj, :, g * og:(g + 1) * og] += (
                            pixel[:, g * cg:(g + 1) * cg].T @ dy[:, i, j, g * og:(g + 1) * og])
    return dwt


def _window_cells(i, j, shape, window, strides, pads):
    """The in-bounds (row, col) cells of output pixel (i, j)'s window, in scan order."""
    (kh, kw), (sh, sw), (top, _, left, _) = window, strides, pads
    return [(r, c) for r in range(i * sh - top, i * sh - top + kh) for c in range(j * sw - left, j * sw - left + kw)
            if 0 <= r < shape[1] and 0 <= c < shape[2]]


def max_pool2d_grad_loops(x, dy, window, strides, pads):
    """dy of each window goes to its first maximum (strictly greater replaces)."""
    dx = np.zeros(x.shape)
    for n in range(dy.shape[0]):
        for i in range(dy.shape[1]):
            for j in range(dy.shape[2]):
                cells = _window_cells(i, j, x.shape, window, strides, pads)
                for ch in range(x.shape[3]):
                    best = cells[0]
                    for cell in cells[1:]:
                        if x[n, cell[0], cell[1], ch] > x[n, best[0], best[1], ch]:
                            best = cell
                    dx[n, best[0], best[1], ch] += dy[n, i, j, ch]
    return dx


def avg_pool2d_grad_loops(dy, input_hw, window, strides, pads):
    shape = (dy.shape[0], *input_hw, dy.shape[3])
    dx = np.zeros(shape)
    for i in range(dy.shape[1]):
        for j in range(dy.shape[2]):
            cells = _window_cells(i, j, shape, window, strides, pads)
            for r, c in cells:
                dx[:, r, c, :] += dy[:, i, j, :] / len(cells)
    return dx


def scatter_add_loops(indices, updates, shape, axis):
    """Element by element: updates[..., j, ...] added at out[..., indices.flat[j] mod size, ...]."""
    out = np.zeros(shape, updates.dtype)
    flat = indices.reshape(-1)
    rows = updates.reshape(shape[:axis] + (flat.size,) + tuple(shape[axis + 1:]))
    for position in np.ndindex(*rows.shape):
        target = list(position)
        target[axis] = int(flat[position[axis]]) % shape[axis]
        out[tuple(target)] += rows[position]
    return out


def uniform_python(seed: int, key: int, count: int) -> np.ndarray:
    """The counter-based stream of random_uniform in plain Python integers (splitmix64)."""
    mask = (1 << 64) - 1

    def mix(z: int) -> int:
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        return z ^ (z >> 31)

    golden = 0x9E3779B97F4A7C15
    stream = mix(mix((key + golden) & mask) ^ (seed & mask))
    return np.array([(mix((stream + (i + 1) * golden) & mask) >> 40) / 2.0 ** 24 for i in range(count)],
                    np.float32)


@_case("conv2d_grads", lambda xs, ps: [
    conv2d_grad_input_loops(xs[0], ps["w"], (9, 8), strides=(2, 2), pads=(1, 1, 0, 1), groups=2),
    conv2d_grad_filter_loops(xs[1], xs[0], (3, 3), strides=(2, 2), pads=(1, 1, 0, 1), groups=2),
    conv2d_grad_input_loops(xs[2], ps["v"], (9, 8), pads=(1, 0, 2, 1), dilations=(2, 1)),
    conv2d_grad_filter_loops(xs[1], xs[2], (2, 3), pads=(1, 0, 2, 1), dilations=(2, 1))])
def _conv2d_grads(rng):
    """The gradients of conv2d_same_stride2_groups2 and of a dilated convolution of x."""
    b = Builder()
    dy = b.input("dy", f32[BATCH, 5, 4, 6])
    x = b.input("x", f32[BATCH, 9, 8, 4])
    dz = b.input("dz", f32[BATCH, 8, 9, 3])
    w = b.param("w", _normal(rng, 3, 3, 2, 6))
    v = b.param("v", _normal(rng, 2, 3, 4, 3))
    same = {"strides": [2, 2], "pads": [1, 1, 0, 1], "groups": 2}
    dilated = {"pads": [1, 0, 2, 1], "dilations": [2, 1]}
    g = b.finish([b.conv2d_grad_input(dy, w, input_hw=[9, 8], **same),
                  b.conv2d_grad_filter(x, dy, kernel_hw=[3, 3], **same),
                  b.conv2d_grad_input(dz, v, input_hw=[9, 8], **dilated),
                  b.conv2d_grad_filter(x, dz, kernel_hw=[2, 3], **dilated)], ["dx", "dw", "dx_dilated", "dw_dilated"])
    n = _batch(rng)
    return g, [_normal(rng, n, 5, 4, 6), _normal(rng, n, 9, 8, 4), _normal(rng, n, 8, 9, 3)]


@_case("pool2d_grads", lambda xs, ps: [
    max_pool2d_grad_loops(xs[0], xs[1], (3, 3), (2, 1), (1, 1, 1, 1)),
    avg_pool2d_grad_loops(xs[1], (6, 7), (3, 3), (2, 1), (1, 1, 1, 1))])
def _pool2d_grads(rng):
    """Inputs in steps of 0.25 from a small range, so that windows hold ties (the first wins)."""
    b = Builder()
    x = b.input("x", f32[BATCH, 6, 7, 3])
    dy = b.input("dy", f32[BATCH, 3, 7, 3])
    attrs = {"window": [3, 3], "strides": [2, 1], "pads": [1, 1, 1, 1]}
    g = b.finish([b.max_pool2d_grad(x, dy, **attrs), b.avg_pool2d_grad(dy, input_hw=[6, 7], **attrs)],
                 ["max", "avg"])
    n = _batch(rng)
    return g, [(rng.integers(-4, 4, (n, 6, 7, 3)) / 4).astype(np.float32), _normal(rng, n, 3, 7, 3)]


@_case("scatter_add", lambda xs, ps: [scatter_add_loops(xs[0], xs[1], (10, 4), 0),
                                      scatter_add_loops(ps["cols"], xs[2], (len(xs[2]), 6), 1)])
def _scatter_add(rng):
    """The gradients of the gather example: ids repeat (their rows add up), negatives wrap."""
    b = Builder()
    ids = b.input("ids", i32[BATCH, 5])
    rows = b.input("rows", f32[BATCH, 5, 4])
    picked = b.input("picked", f32[BATCH, 3, 2])
    cols = b.param("cols", np.array([[5, -1], [0, -6], [2, 2]], np.int64))
    g = b.finish([b.scatter_add(ids, rows, shape=[10, 4], allow_negative=False),
                  b.scatter_add(cols, picked, shape=[BATCH, 6], axis=1)], ["table", "x"])
    n = _batch(rng)
    return g, [rng.integers(0, 4, (n, 5), np.int32), _normal(rng, n, 5, 4), _normal(rng, n, 3, 2)]


@_case("random_uniform", lambda xs, ps: [uniform_python(int(xs[0]), 0, 12).reshape(3, 4),
                                         uniform_python(int(xs[0]), -7, len(xs[1]) * 5).reshape(-1, 5)])
def _random_uniform(rng):
    b = Builder()
    seed = b.input("seed", i64[()])
    x = b.input("x", f32[BATCH, 2])
    g = b.finish([b.random_uniform(seed, shape=[3, 4]), b.random_uniform(seed, shape=[BATCH, 5], key=-7)],
                 ["static", "batch"])
    return g, [np.array(rng.integers(-2**62, 2**62), np.int64), _normal(rng, _batch(rng), 2)]


def lu_loops(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Doolittle LU with partial pivoting of one matrix, element by element: (L and U packed,
    the row swapped with row k at step k, the rows' order: a[perm] = L @ U)."""
    lu, n = [list(map(float, row)) for row in a], len(a)
    pivots, perm = [], list(range(n))
    for k in range(n):
        p = max(range(k, n), key=lambda i: (abs(lu[i][k]), -i))   # the first largest
        pivots.append(p)
        lu[k], lu[p], perm[k], perm[p] = lu[p], lu[k], perm[p], perm[k]
        for i in range(k + 1, n):
            lu[i][k] = lu[i][k] / lu[k][k] if lu[k][k] else lu[i][k]
            for j in range(k + 1, n):
                lu[i][j] -= lu[i][k] * lu[k][j]
    return np.array(lu), np.array(pivots), np.array(perm)


def _per_matrix(fn, *arrays):
    return np.stack([fn(*parts) for parts in zip(*arrays)])


@_case("decompositions", lambda xs, ps: [
    *(np.stack(parts) for parts in zip(*(lu_loops(a) for a in xs[0]))),
    np.linalg.cholesky(xs[0]), np.linalg.det(xs[0]),
    _per_matrix(lambda a, r: np.linalg.solve(np.tril(a, -1) + np.eye(4), r), xs[0], xs[1]),
    _per_matrix(lambda a, r: np.linalg.solve(np.triu(a), r.T).T, xs[0], xs[2])])
def _decompositions(rng):
    """Symmetric positive-definite matrices (cholesky exists) whose LU still swaps rows."""
    b = Builder()
    x = b.input("x", f64[BATCH, 4, 4])
    rhs = b.input("rhs", f64[BATCH, 4, 2])
    rows = b.input("rows", f64[BATCH, 3, 4])
    lu, pivots, perm = b.lu(x)
    g = b.finish([lu, pivots, perm, b.cholesky(x), b.det(x),
                  b.triangular_solve(x, rhs, lower=True, unit_diagonal=True),
                  b.triangular_solve(x, rows, transpose_a=True, left_side=False)],
                 ["lu", "pivots", "permutation", "cholesky", "det", "unit_lower", "right_upper_t"])
    n = _batch(rng)
    a = _normal(rng, n, 4, 4, dtype=np.float64)
    spd = a @ np.swapaxes(a, 1, 2) + np.diag([0.1, 4.0, 0.5, 9.0])
    return g, [spd, _normal(rng, n, 4, 2, dtype=np.float64), _normal(rng, n, 3, 4, dtype=np.float64)]

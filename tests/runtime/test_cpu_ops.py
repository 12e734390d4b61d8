"""Every op of the op table, compiled for the CPU, against the reference interpreter: randomized
shapes (sizes 1, 3, 17 and 257 put vector loops on their tails), every dtype an op accepts, a
symbolic batch dimension, and the same executable called with two batch sizes. Then chains of
ops in the patterns fusion groups (elementwise chains, matmul/conv epilogues, layer norm, diamonds).

Executables are cached by graph structure, so hypothesis examples that only change sizes bound to
symbols, or the data, reuse one compile."""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from cpu_harness import (FEW, FLOATS, RTOL, SEED, SIZE, SMALL, SOME, SPECIALS, TWO_BATCHES, check,
                         executable, inject, inputs_for, ints)
from nncompile.ir import BATCH, OPS, Builder, DType, Fusion, Graph, bool_, f16, f32, f64, i8, i32, i64, u8
from nncompile.ir.ops.elementwise import BINARY, COMPARE, UNARY
from nncompile.ir.ops.shape import SLICE_END
from nncompile.runtime.reference import run as reference_run

INTS = (i8, u8, i32, i64)
ACCEPTS = {"float": FLOATS, "number": FLOATS + INTS, "bool": (bool_,)}


def _normal_sampler(rng):
    """Standard normal floats, integers over their whole range, bools at random."""
    def sample(name, dtype, shape):
        if dtype is bool_:
            return rng.random(shape) < 0.5
        return ints(rng, dtype, shape) if dtype.is_int else rng.normal(0, 1, shape).astype(dtype.numpy)
    return sample


# --- elementwise: unary, binary, comparison, select, cast ------------------------------------------

def _log_uniform(r, shape, low, high):
    return np.exp(r.uniform(math.log(low), math.log(high), shape))


def _halves(r, shape, bound=8):
    """Multiples of 0.5: rounding meets exact ties, comparisons meet equal values."""
    return r.integers(-2 * bound, 2 * bound, shape, endpoint=True) / 2


# op -> float sampler (rng, shape) in the range where the op is interesting; default _halves * 10
FLOAT_SAMPLES = {
    "exp": lambda r, s: r.uniform(-100, 100, s),          # overflow to inf and underflow included
    "expm1": lambda r, s: np.where(r.random(s) < 0.5, r.uniform(-20, 20, s), r.normal(0, 1e-6, s)),
    "log": lambda r, s: _log_uniform(r, s, 1e-30, 1e30),
    "log1p": lambda r, s: np.where(r.random(s) < 0.5, r.uniform(-0.999, 50, s), r.normal(0, 1e-6, s)),
    "sqrt": lambda r, s: _log_uniform(r, s, 1e-30, 1e30),
    "rsqrt": lambda r, s: _log_uniform(r, s, 1e-30, 1e30),
    "reciprocal": lambda r, s: _log_uniform(r, s, 1e-30, 1e30) * r.choice([-1, 1], s),
    "tanh": lambda r, s: r.normal(0, 10, s),
    "sigmoid": lambda r, s: r.normal(0, 30, s),
    "erf": lambda r, s: r.normal(0, 3, s),
    "sin": lambda r, s: r.uniform(-100, 100, s),
    "cos": lambda r, s: r.uniform(-100, 100, s),
    "atan": lambda r, s: _log_uniform(r, s, 1e-30, 1e30) * r.choice([-1, 1], s),
    "floor": lambda r, s: np.where(r.random(s) < 0.5, _halves(r, s), r.normal(0, 100, s)),
    "ceil": lambda r, s: np.where(r.random(s) < 0.5, _halves(r, s), r.normal(0, 100, s)),
    "round": lambda r, s: np.where(r.random(s) < 0.5, _halves(r, s), r.normal(0, 100, s)),
    "div": lambda r, s: r.normal(0, 10, s),
    "pow": lambda r, s: r.normal(0, 2, s),
}


def sample_for(op: str, rng: np.random.Generator) -> Callable[[str, DType, tuple], np.ndarray]:
    """The sampler of `op`'s inputs: its float range with NaN, inf and signed zeros sprinkled in,
    integers over their whole range, bools at random."""
    def sample(name: str, dtype: DType, shape: tuple) -> np.ndarray:
        if dtype is bool_:
            return rng.random(shape) < 0.5
        if dtype.is_int:
            return ints(rng, dtype, shape)
        if op == "pow" and name.startswith("y"):
            x = _halves(rng, shape, 3)   # integer exponents of negative bases are real numbers
        else:
            x = FLOAT_SAMPLES.get(op, lambda r, s: _halves(r, s) * 10)(rng, shape)
        # numpy takes x ** 0.5 with a scalar 0.5 for sqrt(x), so (-inf) ** 0.5 is NaN there but
        # inf in C99 pow and in numpy with an array exponent: the reference disagrees with itself.
        specials = SPECIALS[:2] + SPECIALS[3:] if op == "pow" and name.startswith("x") else SPECIALS
        return inject(rng, np.asarray(x, dtype.numpy), specials)
    return sample


def _unary_graph(op: str) -> Graph:
    b = Builder()
    outs, names = [], []
    for dtype in ACCEPTS[UNARY[op][1]]:
        outs += [b.op(op, b.input(f"x_{dtype}", dtype[BATCH, "W"])),
                 b.op(op, b.input(f"s_{dtype}", dtype[BATCH, 3, 17]))]
        names += [f"{op}_{dtype}_symbolic", f"{op}_{dtype}_static"]
    return b.finish(outs, names)


# pattern -> (shape of x, shape of y): numpy broadcasting of every kind, "W" bound per call
PATTERNS = {
    "same": ((BATCH, "W"), (BATCH, "W")),
    "row": ((BATCH, "W"), ("W",)),
    "column": ((BATCH, 1), (BATCH, "W")),
    "scalar": ((BATCH, "W"), ()),
    "scalar_first": ((), (BATCH, 17)),
    "middle": ((BATCH, 3, 257), (3, 1)),
    "outer": ((BATCH, 1, 257), (3, 1)),
}


def _binary_graph(op: str, allowed: str) -> Graph:
    b = Builder()
    outs, names = [], []
    for dtype in ACCEPTS[allowed]:
        for pattern, (sx, sy) in PATTERNS.items():
            x = b.input(f"x_{dtype}_{pattern}", dtype[sx])
            y = b.input(f"y_{dtype}_{pattern}", dtype[sy])
            outs.append(b.op(op, x, y))
            names.append(f"{op}_{dtype}_{pattern}")
    return b.finish(outs, names)


def _run_elementwise(key: tuple, build: Callable[[], Graph], op: str, batches, width, seed) -> None:
    graph, exe = executable(key, build)
    rng = np.random.default_rng(seed)
    for n in batches:
        check(graph, exe, inputs_for(graph, {BATCH: n, "W": width}, sample_for(op, rng)))


@pytest.mark.parametrize("op", sorted(UNARY))
@FEW
@given(batches=TWO_BATCHES, width=SIZE, seed=SEED)
def test_unary(op, batches, width, seed):
    _run_elementwise(("unary", op), lambda: _unary_graph(op), op, batches, width, seed)


@pytest.mark.parametrize("op", sorted(BINARY))
@FEW
@given(batches=TWO_BATCHES, width=SIZE, seed=SEED)
def test_binary_with_broadcasting(op, batches, width, seed):
    _run_elementwise(("binary", op), lambda: _binary_graph(op, BINARY[op][1]), op, batches, width, seed)


@pytest.mark.parametrize("op", sorted(COMPARE))
@FEW
@given(batches=TWO_BATCHES, width=SIZE, seed=SEED)
def test_compare_with_broadcasting(op, batches, width, seed):
    _run_elementwise(("compare", op), lambda: _binary_graph(op, "number"), op, batches, width, seed)


def _select_graph() -> Graph:
    b = Builder()
    outs, names = [], []
    for dtype in ACCEPTS["number"] + ACCEPTS["bool"]:
        c = b.input(f"c_{dtype}", bool_[BATCH, 1])
        x = b.input(f"x_{dtype}", dtype["W"])
        y = b.input(f"y_{dtype}", dtype[()])
        c2 = b.input(f"c2_{dtype}", bool_[BATCH, 3, "W"])
        x2 = b.input(f"x2_{dtype}", dtype[BATCH, 1, "W"])
        y2 = b.input(f"y2_{dtype}", dtype[3, 1])
        outs += [b.select(c, x, y), b.select(c2, x2, y2)]
        names += [f"select_{dtype}_column_row_scalar", f"select_{dtype}_mixed"]
    return b.finish(outs, names)


@FEW
@given(batches=TWO_BATCHES, width=SIZE, seed=SEED)
def test_select_with_broadcasting(batches, width, seed):
    _run_elementwise(("select",), _select_graph, "select", batches, width, seed)


CAST_DTYPES = (f16, f32, f64, i8, u8, i32, i64, bool_)


def _cast_graph() -> Graph:
    b = Builder()
    outs, names = [], []
    for src in CAST_DTYPES:
        for dst in CAST_DTYPES:
            outs.append(b.cast(b.input(f"x_{src}_{dst}", src[BATCH, "W"]), dtype=dst))
            names.append(f"cast_{src}_to_{dst}")
    return b.finish(outs, names)


def _cast_sample(rng: np.random.Generator):
    """Floats cast to an int stay in the int's range (numpy leaves the rest undefined), with
    fractions of both signs to see truncation; any other pair takes any value of the source."""
    def sample(name: str, dtype: DType, shape: tuple) -> np.ndarray:
        dst = DType.parse(name.rsplit("_", 1)[1])
        if dtype is bool_:
            return rng.random(shape) < 0.5
        if dtype.is_int:
            return ints(rng, dtype, shape)
        if dst.is_int:
            info = np.iinfo(dst.numpy)
            bound = min(float(info.max), float(np.finfo(dtype.numpy).max), 2.0**60)
            x = rng.uniform(max(float(info.min), -bound) * 0.999, bound * 0.999, shape)
            small = rng.random(shape) < 0.5
            x[small] = rng.uniform(max(info.min, -100), 100, small.sum())
            return x.astype(dtype.numpy)
        x = _log_uniform(rng, shape, 1e-10, 1e10 if dtype is not f16 else 6e4) * rng.choice([-1, 1], shape)
        return inject(rng, x.astype(dtype.numpy), SPECIALS)
    return sample


@FEW
@given(batches=TWO_BATCHES, width=SIZE, seed=SEED)
def test_cast_between_all_dtype_pairs(batches, width, seed):
    graph, exe = executable(("cast",), _cast_graph)
    rng = np.random.default_rng(seed)
    for n in batches:
        check(graph, exe, inputs_for(graph, {BATCH: n, "W": width}, _cast_sample(rng)))


# --- reductions ----------------------------------------------------------------------------------

REDUCE_DTYPES = {"reduce_sum": ("number",), "reduce_mean": ("float",), "reduce_max": ("number",),
                 "reduce_min": ("number",), "reduce_prod": ("number",)}


@st.composite
def reduction_cases(draw):
    """(op, dtype, static dims after the batch axis, axes, keepdims); at most 17 * 257 elements
    per batch row."""
    op = draw(st.sampled_from(sorted(REDUCE_DTYPES)))
    dtype = draw(st.sampled_from(ACCEPTS[REDUCE_DTYPES[op][0]]))
    dims = tuple(draw(st.lists(SIZE, min_size=0, max_size=2).filter(lambda d: math.prod(d) <= 17 * 257)))
    rank = len(dims) + 1
    axes = draw(st.lists(st.integers(-rank, rank - 1), min_size=1, max_size=rank,
                         unique_by=lambda a: a % rank))
    return op, dtype, dims, tuple(axes), draw(st.booleans())


def _reduction_data(op: str, dtype: DType, shape: tuple, rng: np.random.Generator) -> np.ndarray:
    if dtype.is_int:
        # Odd factors keep a wrapped integer product from collapsing to 0.
        return rng.choice(np.array([-3, -1, 1, 3]).astype(dtype.numpy), shape) if op == "reduce_prod" \
            else ints(rng, dtype, shape)
    if op == "reduce_prod":
        return (rng.uniform(0.9, 1.1, shape) * rng.choice([-1, 1], shape)).astype(dtype.numpy)
    x = rng.normal(0, 10, shape).astype(dtype.numpy)
    return inject(rng, x, (np.nan, np.inf, -np.inf), 0.002) if op in ("reduce_max", "reduce_min") else x


@SOME
@given(case=reduction_cases(), batches=TWO_BATCHES, seed=SEED)
def test_reductions_over_random_axes(case, batches, seed):
    op, dtype, dims, axes, keep = case

    def build():
        b = Builder()
        return b.finish([b.op(op, b.input("x", dtype[(BATCH, *dims)]), axes=axes, keepdims=keep)], [op])

    graph, exe = executable(("reduce", *case), build)
    rng = np.random.default_rng(seed)
    for n in batches:
        x = _reduction_data(op, dtype, (n, *dims), rng)
        count = math.prod(x.shape[a] for a in axes)
        if op in ("reduce_sum", "reduce_mean"):
            # Summation order differs (vector lanes vs numpy's pairwise): error scales with sum |x|.
            scale = np.sum(np.abs(x), axis=axes, keepdims=keep, dtype=np.float64) / (
                count if op == "reduce_mean" else 1)
            check(graph, exe, [x], [scale])
        elif op == "reduce_prod" and dtype.is_float:
            # Each of the `count` products rounds once (relative error eps / 2), in another order
            # than numpy's: the two results may differ by count * eps at worst.
            check(graph, exe, [x], rtol=max(RTOL[dtype], count * np.finfo(dtype.numpy).eps))
        else:
            check(graph, exe, [x])


@st.composite
def arg_cases(draw):
    dims = draw(st.sampled_from([(), ("W",), (3, "W"), (17, 3)]))
    rank = len(dims) + 1
    return dims, draw(st.integers(-rank, rank - 1)), draw(st.booleans())


@SOME
@given(case=arg_cases(), batches=TWO_BATCHES, width=SIZE, seed=SEED)
def test_argmax_argmin_with_ties_and_nan(case, batches, width, seed):
    dims, axis, keep = case

    def build():
        b = Builder()
        outs, names = [], []
        for dtype in (f32, f64, i8, u8, i32, i64):
            x = b.input(f"x_{dtype}", dtype[(BATCH, *dims)])
            outs += [b.argmax(x, axis=axis, keepdims=keep), b.argmin(x, axis=axis, keepdims=keep)]
            names += [f"argmax_{dtype}", f"argmin_{dtype}"]
        return b.finish(outs, names)

    graph, exe = executable(("arg", *case), build)
    rng = np.random.default_rng(seed)

    def sample(name, dtype, shape):
        if dtype.is_int:   # a handful of values, the extremes among them: many ties
            info = np.iinfo(dtype.numpy)
            return rng.choice(np.array([info.min, info.max, 0, 1, 2], dtype.numpy), shape)
        return inject(rng, _halves(rng, shape, 2).astype(dtype.numpy), (np.nan, np.inf, -np.inf), 0.02)

    for n in batches:
        check(graph, exe, inputs_for(graph, {BATCH: n, "W": width}, sample))


@SOME
@given(dims=st.sampled_from([(3, "W"), (17, 257), (257,)]), axis=st.integers(-3, 2),
       batches=TWO_BATCHES, width=SIZE, seed=SEED)
def test_softmax_and_log_softmax_along_any_axis_with_large_values(dims, axis, batches, width, seed):
    rank = len(dims) + 1
    assume(-rank <= axis < rank)

    def build():
        b = Builder()
        outs, names = [], []
        for dtype in FLOATS:
            x = b.input(f"x_{dtype}", dtype[(BATCH, *dims)])
            outs += [b.softmax(x, axis=axis), b.log_softmax(x, axis=axis)]
            names += [f"softmax_{dtype}", f"log_softmax_{dtype}"]
        return b.finish(outs, names)

    graph, exe = executable(("softmax", dims, axis), build)
    rng = np.random.default_rng(seed)
    offset = rng.uniform(-1000, 1000)   # exp of the unshifted values would overflow
    for n in batches:
        check(graph, exe, inputs_for(graph, {BATCH: n, "W": width},
                                     lambda name, dt, shape: rng.normal(offset, 30, shape).astype(dt.numpy)))


# --- contractions --------------------------------------------------------------------------------

def _magnitude(graph: Graph, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """The graph run on |inputs| and |params|: for one matmul or conv, the sum of the magnitudes
    of the products in each output, which bounds the error of any summation order."""
    params = {k: np.abs(v) for k, v in graph.params.items()}
    return reference_run(graph, [np.abs(x) for x in inputs], params)


@st.composite
def matmul_cases(draw):
    dtype = draw(st.sampled_from((f32, f64, i32, i64)))
    ta, tb, batched, param = (draw(st.booleans()) for _ in range(4))
    k, n = draw(SIZE), draw(SIZE)
    m = draw(SMALL) if batched else BATCH
    return dtype, ta, tb, batched, param and not batched, m, k, n


@SOME
@given(case=matmul_cases(), batches=TWO_BATCHES, seed=SEED)
def test_matmul(case, batches, seed):
    """2-D (the batch is the rows: M symbolic) or batched a[?,1,M,K] x b[3,K,N] broadcasting to
    [?,3,M,N]; either side transposed; b a bound parameter or a data input."""
    dtype, ta, tb, batched, param, m, k, n = case
    rng = np.random.default_rng(seed)

    def data(shape):
        return ints(rng, dtype, shape, -9, 9) if dtype.is_int else rng.normal(0, 1, shape).astype(dtype.numpy)

    def build():
        a_shape = (BATCH, 1, *((k, m) if ta else (m, k))) if batched else ((k, m) if ta else (m, k))
        b_shape = (3, *((n, k) if tb else (k, n))) if batched else ((n, k) if tb else (k, n))
        b = Builder()
        a = b.input("a", dtype[a_shape])
        w = b.param("w", data(b_shape)) if param else b.input("w", dtype[b_shape])
        return b.finish([b.matmul(a, w, transpose_a=ta, transpose_b=tb)], ["y"])

    graph, exe = executable(("matmul", *case), build)
    for size in batches:
        inputs = inputs_for(graph, {BATCH: size}, lambda name, dt, shape: data(shape))
        check(graph, exe, inputs, None if dtype.is_int else _magnitude(graph, inputs))


@st.composite
def conv_cases(draw):
    dtype = draw(st.sampled_from(FLOATS))
    groups = draw(st.sampled_from((1, 2, 3)))
    cg, og = draw(SMALL), draw(SMALL)
    h, w = draw(st.sampled_from((1, 3, 8, 17))), draw(st.sampled_from((1, 3, 8, 17)))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilations = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pads = tuple(draw(st.integers(0, 2)) for _ in range(4))
    assume((kh - 1) * dilations[0] + 1 <= h + pads[0] + pads[1])
    assume((kw - 1) * dilations[1] + 1 <= w + pads[2] + pads[3])
    return dtype, groups, cg, og, h, w, kh, kw, strides, dilations, pads


@SOME
@given(case=conv_cases(), batches=TWO_BATCHES, seed=SEED)
def test_conv2d(case, batches, seed):
    dtype, groups, cg, og, h, w, kh, kw, strides, dilations, pads = case
    rng = np.random.default_rng(seed)

    def build():
        b = Builder()
        x = b.input("x", dtype[BATCH, h, w, groups * cg])
        k = b.param("k", rng.normal(0, 1, (kh, kw, cg, groups * og)).astype(dtype.numpy))
        y = b.conv2d(x, k, strides=strides, dilations=dilations, pads=pads, groups=groups)
        return b.finish([y], ["y"])

    graph, exe = executable(("conv2d", *case), build)
    for n in batches:
        inputs = inputs_for(graph, {BATCH: n}, _normal_sampler(rng))
        check(graph, exe, inputs, _magnitude(graph, inputs))


@st.composite
def pool_cases(draw):
    op = draw(st.sampled_from(("max_pool2d", "avg_pool2d")))
    dtype = draw(st.sampled_from(FLOATS + ((i32, u8) if op == "max_pool2d" else ())))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    pads = (draw(st.integers(0, kh - 1)), draw(st.integers(0, kh - 1)),
            draw(st.integers(0, kw - 1)), draw(st.integers(0, kw - 1)))
    h, w = draw(st.sampled_from((1, 3, 8, 17))), draw(st.sampled_from((1, 3, 8, 17)))
    assume(kh <= h + pads[0] + pads[1] and kw <= w + pads[2] + pads[3])
    return op, dtype, (kh, kw), (draw(st.integers(1, 3)), draw(st.integers(1, 3))), pads, h, w, draw(SMALL)


@SOME
@given(case=pool_cases(), batches=TWO_BATCHES, seed=SEED)
def test_pooling_with_pads(case, batches, seed):
    """Negative data: a padding zero counted by max (or by avg's divisor) would show."""
    op, dtype, window, strides, pads, h, w, c = case

    def build():
        b = Builder()
        x = b.input("x", dtype[BATCH, h, w, c])
        return b.finish([b.op(op, x, window=window, strides=strides, pads=pads)], ["y"])

    graph, exe = executable(("pool", *case), build)
    rng = np.random.default_rng(seed)

    def sample(name, dt, shape):
        return ints(rng, dt, shape) if dt.is_int else rng.uniform(-10, -1, shape).astype(dt.numpy)

    for n in batches:
        check(graph, exe, inputs_for(graph, {BATCH: n}, sample))


# --- data movement -------------------------------------------------------------------------------

MOVE_DTYPES = st.sampled_from((f32, f64, i8, i64, bool_))
DIMS_UP_TO_2 = st.lists(SIZE, min_size=1, max_size=2).filter(lambda d: math.prod(d) <= 17 * 257)
DIMS_UP_TO_3 = st.lists(SIZE, min_size=1, max_size=3).filter(lambda d: math.prod(d) <= 17 * 257)


@st.composite
def reshape_cases(draw):
    dims = tuple(draw(st.lists(SMALL, min_size=1, max_size=3)))
    total = math.prod(dims)
    split = draw(st.sampled_from([d for d in range(1, total + 1) if total % d == 0]))
    target = draw(st.sampled_from([(split, total // split), (-1,), (total // split, -1), (1, total, 1)]))
    return draw(MOVE_DTYPES), dims, target


@SOME
@given(case=reshape_cases(), batches=TWO_BATCHES, seed=SEED)
def test_reshape(case, batches, seed):
    """As an output of its own (a view the runtime copies) and feeding an op (a real read)."""
    dtype, dims, target = case

    def build():
        b = Builder()
        x = b.input("x", dtype[(BATCH, *dims)])
        y = b.reshape(x, shape=(BATCH, *target))
        z = b.logical_not(y) if dtype is bool_ else b.abs(y)
        return b.finish([y, z], ["reshaped", "used"])

    graph, exe = executable(("reshape", *case), build)
    rng = np.random.default_rng(seed)
    for n in batches:
        check(graph, exe, inputs_for(graph, {BATCH: n}, _normal_sampler(rng)))


@SOME
@given(dtype=MOVE_DTYPES, dims=st.lists(SMALL, min_size=1, max_size=3), data=st.data(),
       batches=TWO_BATCHES, seed=SEED)
def test_transpose(dtype, dims, data, batches, seed):
    perm = tuple(data.draw(st.permutations(range(len(dims) + 1))))

    def build():
        b = Builder()
        return b.finish([b.transpose(b.input("x", dtype[(BATCH, *dims)]), perm=perm)], ["y"])

    graph, exe = executable(("transpose", dtype, tuple(dims), perm), build)
    rng = np.random.default_rng(seed)
    for n in batches:
        check(graph, exe, inputs_for(graph, {BATCH: n}, _normal_sampler(rng)))


@SOME
@given(dtype=MOVE_DTYPES, target=DIMS_UP_TO_3,
       data=st.data(), batches=TWO_BATCHES, seed=SEED)
def test_broadcast(dtype, target, data, batches, seed):
    """From a shape with some axes 1 and some leading axes missing, batch axis included or not."""
    full = (BATCH, *target)
    keep = data.draw(st.integers(0, len(full)))
    source = tuple(1 if data.draw(st.booleans()) else d for d in full[len(full) - keep:])

    def build():
        b = Builder()
        b.input("batch", bool_[BATCH])   # binds the batch size when the source has no batch axis
        return b.finish([b.broadcast(b.input("x", dtype[source]), shape=full)], ["y"])

    graph, exe = executable(("broadcast", dtype, full, source), build)
    rng = np.random.default_rng(seed)
    for n in batches:
        check(graph, exe, inputs_for(graph, {BATCH: n}, _normal_sampler(rng)))


@SOME
@given(dtype=MOVE_DTYPES, rank=st.integers(2, 3), count=st.integers(2, 4), data=st.data(),
       batches=TWO_BATCHES, seed=SEED)
def test_concat(dtype, rank, count, data, batches, seed):
    """2-4 inputs along any static axis (given as positive or negative)."""
    axis = data.draw(st.integers(1, rank - 1))
    others = [data.draw(SMALL) for _ in range(rank - 2)]
    sizes = [data.draw(SIZE) for _ in range(count)]
    shapes = [tuple([BATCH, *others[:axis - 1], s, *others[axis - 1:]]) for s in sizes]
    written = axis - rank if data.draw(st.booleans()) else axis

    def build():
        b = Builder()
        xs = [b.input(f"x{i}", dtype[s]) for i, s in enumerate(shapes)]
        return b.finish([b.concat(*xs, axis=written)], ["y"])

    graph, exe = executable(("concat", dtype, tuple(shapes), written), build)
    rng = np.random.default_rng(seed)
    for n in batches:
        check(graph, exe, inputs_for(graph, {BATCH: n}, _normal_sampler(rng)))


@st.composite
def slice_part(draw, size):
    """(start, end, step) of one axis: negative, stepped, out of range (clamped), empty."""
    step = draw(st.sampled_from((1, 2, 3, -1, -2, -5)))
    start = draw(st.integers(-size - 3, size + 3))
    end = draw(st.one_of(st.integers(-size - 3, size + 3), st.just(SLICE_END), st.just(-SLICE_END)))
    return start, end, step


@SOME
@given(dtype=MOVE_DTYPES, dims=DIMS_UP_TO_2,
       data=st.data(), batches=TWO_BATCHES, seed=SEED)
def test_slice(dtype, dims, data, batches, seed):
    axes = data.draw(st.lists(st.integers(1, len(dims)), min_size=1, max_size=len(dims), unique=True))
    parts = [data.draw(slice_part(dims[a - 1])) for a in axes]
    starts, ends, steps = ([p[i] for p in parts] for i in range(3))
    negative = data.draw(st.booleans())
    written = [a - len(dims) - 1 if negative else a for a in axes]
    if data.draw(st.booleans()):   # the symbolic batch axis, taken whole
        written, starts, ends, steps = [0, *written], [0, *starts], [SLICE_END, *ends], [1, *steps]

    def build():
        b = Builder()
        x = b.input("x", dtype[(BATCH, *dims)])
        return b.finish([b.slice(x, starts=starts, ends=ends, axes=written, steps=steps)], ["y"])

    graph, exe = executable(("slice", dtype, tuple(dims), tuple(written), tuple(starts), tuple(ends),
                             tuple(steps)), build)
    rng = np.random.default_rng(seed)
    for n in batches:
        check(graph, exe, inputs_for(graph, {BATCH: n}, _normal_sampler(rng)))


def test_slice_reverses_a_symbolic_axis_whole():
    """A sequence of symbolic length read backwards (start -1, end -SLICE_END, step -1), beside
    a static axis reversed and strided; one executable for every length."""
    def build():
        b = Builder()
        x = b.input("x", f32[BATCH, "T", 5])
        return b.finish([b.slice(x, starts=[-1, 4], ends=[-SLICE_END, 0], axes=[1, 2], steps=[-1, -2])], ["y"])

    graph, exe = executable(("slice-reversed-symbol",), build)
    rng = np.random.default_rng(5)
    for n, steps in [(1, 1), (2, 4), (3, 9)]:
        x = rng.standard_normal((n, steps, 5)).astype(np.float32)
        np.testing.assert_array_equal(exe(x), x[:, ::-1, 4:0:-2])
        check(graph, exe, [x])


@SOME
@given(dtype=st.sampled_from((f32, f64, u8, i32)), dims=st.lists(SMALL, min_size=1, max_size=2),
       data=st.data(), value=st.sampled_from((0.0, -1.0, 3.0, -1.5)), batches=TWO_BATCHES, seed=SEED)
def test_pad_with_values(dtype, dims, data, value, batches, seed):
    assume(dtype.is_float or (value.is_integer() and (value >= 0 or dtype is not u8)))
    pads = (0, 0, *(data.draw(st.integers(0, 3)) for _ in range(2 * len(dims))))

    def build():
        b = Builder()
        return b.finish([b.pad(b.input("x", dtype[(BATCH, *dims)]), pads=pads, value=value)], ["y"])

    graph, exe = executable(("pad", dtype, tuple(dims), pads, value), build)
    rng = np.random.default_rng(seed)
    for n in batches:
        check(graph, exe, inputs_for(graph, {BATCH: n}, _normal_sampler(rng)))


@SOME
@given(axis=st.sampled_from((0, 1, -1)), index_dtype=st.sampled_from((i32, i64)),
       index_rank=st.integers(1, 2), vocab=SIZE, width=SMALL, batches=TWO_BATCHES, seed=SEED)
def test_gather_with_negative_indices(axis, index_dtype, index_rank, vocab, width, batches, seed):
    """Axis 0: a table (a bound parameter) read at data indices [?, 3] (an embedding lookup).
    Axis 1 (or -1): a data input [?, vocab] read at indices that are a parameter."""
    rng = np.random.default_rng(seed)

    def indices(shape):
        return rng.integers(-vocab, vocab, shape).astype(index_dtype.numpy)

    def build():
        b = Builder()
        if axis == 0:
            table = b.param("table", rng.normal(0, 1, (vocab, width)).astype(np.float32))
            ids = b.input("ids", index_dtype[(BATCH, 3)[:index_rank]])
            return b.finish([b.gather(table, ids, axis=0)], ["y"])
        x = b.input("x", f64[BATCH, vocab])
        picks = b.param("picks", indices((2, 5)[:index_rank]))
        return b.finish([b.gather(x, picks, axis=axis)], ["y"])

    graph, exe = executable(("gather", axis, index_dtype, index_rank, vocab, width), build)
    for n in batches:
        check(graph, exe, inputs_for(graph, {BATCH: n}, lambda name, dt, shape:
                                     indices(shape) if dt.is_int else rng.normal(0, 1, shape)))


COVERED = {*UNARY, *BINARY, *COMPARE, "select", "cast", *REDUCE_DTYPES, "argmax", "argmin", "softmax",
           "log_softmax", "matmul", "conv2d", "max_pool2d", "avg_pool2d", "reshape", "transpose",
           "broadcast", "concat", "slice", "pad", "gather",
           # in test_cpu_grad_ops.py:
           "conv2d_grad_input", "conv2d_grad_filter", "max_pool2d_grad", "avg_pool2d_grad",
           "scatter_add", "random_uniform",
           # in test_cpu_scan.py:
           "scan",
           # in tests/ir/test_decompositions.py:
           "cholesky", "triangular_solve", "lu", "det"}


def test_every_op_the_cpu_backend_lowers_is_covered_here():
    """`fused` is covered by the fusion patterns' tests; `constant` is hoisted into a parameter.
    An op gets a CPU lowering and a test here together."""
    lowered = {name for name, op in OPS.items()
               if op.lower is not None or op.fusion in (Fusion.ELEMENTWISE, Fusion.BROADCAST)}
    missing = lowered - {"fused", "constant"} - COVERED
    assert not missing, f"ops without a compiled-vs-reference test: {sorted(missing)}"

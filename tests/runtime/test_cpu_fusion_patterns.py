"""Chains of ops in the patterns fusion groups, compiled for the CPU, against the reference
interpreter: elementwise chains with broadcasts, matmul + bias + activation + residual,
conv + bias + relu, reductions with a prologue and an epilogue (layer norm), and diamonds whose
shared values feed elementwise ops, a reduction and a matmul at once. Shapes are random, the batch
is symbolic, and every executable runs at two batch sizes."""
from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import nncompile

from cpu_harness import FEW, FLOATS, SEED, SIZE, SMALL, SOME, TWO_BATCHES, check, executable, inputs_for
from nncompile.ir import BATCH, Builder, DType
from nncompile.ir.ops.linalg import same_pads
from nncompile.runtime.reference import run as reference_run

UNARY_STEPS = ("tanh", "sigmoid", "neg", "abs", "relu", "sin")
BINARY_STEPS = ("add", "sub", "mul", "maximum", "minimum")
OPERANDS = ("bias", "column", "rows", "scalar", "x")


def _normal(rng: np.random.Generator, scale: float = 1.0):
    return lambda name, dtype, shape: rng.normal(0, scale, shape).astype(dtype.numpy)


@SOME
@given(dtype=st.sampled_from(FLOATS), rows=SMALL, width=SIZE, seed=SEED, batches=TWO_BATCHES,
       steps=st.lists(st.one_of(st.tuples(st.sampled_from(UNARY_STEPS), st.none()),
                                st.tuples(st.sampled_from(BINARY_STEPS), st.sampled_from(OPERANDS))),
                      min_size=2, max_size=7),
       tap=st.integers(0, 6))
def test_elementwise_chain_with_broadcasts(dtype, rows, width, seed, batches, steps, tap):
    """x[?, rows, width] through random unary ops and binary ops against a bias [width], a column
    [?, rows, 1], rows [rows, 1], a scalar constant or x itself; one intermediate is an output too."""
    def build():
        b = Builder()
        x = b.input("x", dtype[BATCH, rows, width])
        operands = {"bias": b.input("bias", dtype[width]), "column": b.input("column", dtype[BATCH, rows, 1]),
                    "rows": b.input("rows", dtype[rows, 1]), "x": x}
        y, seen = x, []
        for op, other in steps:
            if other is None:
                y = b.op(op, y)
            else:
                y = b.op(op, y, b.scalar(0.75, y) if other == "scalar" else operands[other])
            seen.append(y)
        return b.finish([y, seen[tap % len(seen)]], ["y", "intermediate"])

    graph, exe = executable(("chain", dtype, rows, width, tuple(steps), tap), build)
    rng = np.random.default_rng(seed)
    # sin near a multiple of pi turns an ulp of its argument (up to ~8 here, after a product
    # with the bias) into a large relative error of a small result: 0.0491045 for 0.0491071
    # after three tanh and a bias, each step within its own bounds
    rtol = 1e-4 if dtype == DType.f32 and any(op == "sin" for op, _ in steps) else None
    for n in batches:
        check(graph, exe, inputs_for(graph, {BATCH: n}, _normal(rng, 2.0)), rtol=rtol)


@FEW   # every example compiles a GEMM with its epilogue
@given(dtype=st.sampled_from(FLOATS), k=SIZE, n=SIZE, rows=st.sampled_from((None, 3)),
       act=st.sampled_from(("relu", "tanh", "sigmoid")), residual=st.sampled_from(("input", "x", "none")),
       seed=SEED, batches=TWO_BATCHES)
def test_matmul_bias_activation_residual(dtype, k, n, rows, act, residual, seed, batches):
    """Dense on [?, K] or [?, 3, K]: act(x @ w + b) + r, r a data input or x itself (K == N)."""
    if residual == "x" and k != n:
        residual = "input"
    lead = (BATCH,) if rows is None else (BATCH, rows)
    rng = np.random.default_rng(seed)

    def build():
        b = Builder()
        x = b.input("x", dtype[(*lead, k)])
        w = b.param("w", (rng.normal(0, 1, (k, n)) / np.sqrt(k)).astype(dtype.numpy))
        bias = b.param("b", rng.normal(0, 1, n).astype(dtype.numpy))
        y = b.op(act, b.add(b.matmul(x, w), bias))
        if residual != "none":
            y = b.add(y, x if residual == "x" else b.input("r", dtype[(*lead, n)]))
        return b.finish([y], ["y"])

    graph, exe = executable(("dense", dtype, k, n, rows, act, residual, seed), build)
    w, bias = np.abs(graph.params["w"]).astype(np.float64), np.abs(graph.params["b"])
    for size in batches:
        inputs = inputs_for(graph, {BATCH: size}, _normal(rng))
        # The activations are 1-Lipschitz: the error of x @ w (any summation order) bounds theirs.
        scale = np.abs(inputs[0]) @ w + bias + sum(np.abs(a) for a in inputs[1:])
        check(graph, exe, inputs, [scale])


@FEW   # every example compiles a convolution with its epilogue
@given(dtype=st.sampled_from(FLOATS), hw=st.sampled_from((3, 8, 17)), cin=SMALL, cout=SMALL,
       kernel=st.sampled_from((1, 3)), stride=st.sampled_from((1, 2)), same=st.booleans(),
       residual=st.booleans(), pool=st.booleans(), seed=SEED, batches=TWO_BATCHES)
def test_conv_bias_relu(dtype, hw, cin, cout, kernel, stride, same, residual, pool, seed, batches):
    """relu(conv(x) + b), plus x when the shapes allow, then an optional 2x2 max pool."""
    pads = same_pads(hw, kernel, stride, 1) * 2 if same else (0, 0, 0, 0)
    rng = np.random.default_rng(seed)

    def build():
        b = Builder()
        x = b.input("x", dtype[BATCH, hw, hw, cin])
        w = b.param("w", (rng.normal(0, 1, (kernel, kernel, cin, cout)) / kernel).astype(dtype.numpy))
        bias = b.param("b", rng.normal(0, 1, cout).astype(dtype.numpy))
        y = b.relu(b.add(b.conv2d(x, w, strides=(stride, stride), pads=pads), bias))
        if residual and y.type.shape == x.type.shape:
            y = b.add(y, x)
        if pool and y.type.shape[1] >= 2:
            y = b.max_pool2d(y, window=(2, 2), strides=(2, 2))
        return b.finish([y], ["y"])

    graph, exe = executable(("conv", dtype, hw, cin, cout, kernel, stride, same, residual, pool, seed), build)
    magnitudes = {k: np.abs(v) for k, v in graph.params.items()}
    for n in batches:
        inputs = inputs_for(graph, {BATCH: n}, _normal(rng))
        # relu and max are monotone: the graph on magnitudes bounds every partial sum.
        scale = reference_run(graph, [np.abs(a) for a in inputs], magnitudes)
        check(graph, exe, inputs, scale)


@SOME
@given(dtype=st.sampled_from(FLOATS), rows=st.sampled_from((None, 3, 17)), width=SIZE,
       two_axes=st.booleans(), seed=SEED, batches=TWO_BATCHES)
def test_layer_norm(dtype, rows, width, two_axes, seed, batches):
    """(x - mean) * rsqrt(var + eps) * gamma + beta over the last axis (or the last two): the
    reductions take a prologue (square of the centered values) and an epilogue (eps, rsqrt)."""
    lead = (BATCH,) if rows is None else (BATCH, rows)
    axes = (-2, -1) if two_axes and rows is not None else (-1,)
    rng = np.random.default_rng(seed)

    def build():
        b = Builder()
        x = b.input("x", dtype[(*lead, width)])
        gamma = b.param("gamma", rng.normal(1, 0.5, width).astype(dtype.numpy))
        beta = b.param("beta", rng.normal(0, 1, width).astype(dtype.numpy))
        centered = b.sub(x, b.reduce_mean(x, axes=axes, keepdims=True))
        var = b.reduce_mean(b.square(centered), axes=axes, keepdims=True)
        y = b.add(b.mul(b.mul(centered, b.rsqrt(b.add(var, b.scalar(1e-3, var)))), gamma), beta)
        return b.finish([y, var], ["y", "var"])

    graph, exe = executable(("layer_norm", dtype, rows, width, axes, seed), build)
    gamma = np.abs(graph.params["gamma"])
    for n in batches:
        (x,) = inputs_for(graph, {BATCH: n}, lambda name, dt, shape: rng.normal(3, 2, shape).astype(dt.numpy))
        # x - mean cancels: a centered value near 0 keeps the mean's error, which is relative to
        # mean |x| (summation order), then scaled by gamma / std.
        wide = x.astype(np.float64)
        std = np.sqrt(wide.var(axis=axes, keepdims=True) + 1e-3)
        check(graph, exe, [x], [np.abs(wide).mean(axis=axes, keepdims=True) / std * gamma, None])


@FEW   # every example compiles a GEMM and three other kernels
@given(dtype=st.sampled_from(FLOATS), width=SIZE, n=SMALL, seed=SEED, batches=TWO_BATCHES)
def test_diamond_with_shared_values(dtype, width, n, seed, batches):
    """a = tanh(x + bias) feeds three branches that meet again: elementwise (sigmoid(a) - a * a + a),
    a reduction (exp(a) / sum(exp(a))), and a matmul (a @ w + sigmoid(a)); a is an output too."""
    rng = np.random.default_rng(seed)

    def build():
        b = Builder()
        x = b.input("x", dtype[BATCH, width])
        a = b.tanh(b.add(x, b.input("bias", dtype[width])))
        s = b.sigmoid(a)
        mixed = b.add(b.sub(s, b.mul(a, a)), a)
        e = b.exp(a)
        probs = b.div(e, b.reduce_sum(e, axes=(-1,), keepdims=True))
        w = b.param("w", rng.normal(0, 1, (width, n)).astype(dtype.numpy))
        dense = b.add(b.matmul(a, w), b.slice(s, starts=(0,), ends=(n,), axes=(1,), steps=(1,))) \
            if n <= width else b.matmul(a, w)
        return b.finish([mixed, probs, dense, a], ["mixed", "probs", "dense", "shared"])

    graph, exe = executable(("diamond", dtype, width, n, seed), build)
    w = np.abs(graph.params["w"]).astype(np.float64)
    for size in batches:
        inputs = inputs_for(graph, {BATCH: size}, _normal(rng))
        # |a| <= 1 and |sigmoid| <= 1: the matmul's terms are bounded by sum |w| (plus 1).
        scales = [None, None, np.ones((size, width)) @ w + 1, None]
        check(graph, exe, inputs, scales)


def test_the_patterns_form_fused_groups_of_every_kind():
    """The patterns above exercise fusion only if fusion forms groups of each kind from them."""
    rng = np.random.default_rng(0)
    b = Builder()
    x = b.input("x", DType.f32[BATCH, 4, 4, 3])
    w = b.param("w", rng.normal(0, 1, (3, 3, 3, 5)).astype(np.float32))
    conv = b.relu(b.add(b.conv2d(x, w, pads=(1, 1, 1, 1)), b.param("cb", np.ones(5, np.float32))))
    flat = b.reshape(conv, shape=(BATCH, 80))
    dense = b.tanh(b.add(b.matmul(flat, b.param("dw", np.ones((80, 6), np.float32))),
                         b.param("db", np.ones(6, np.float32))))
    norm = b.sqrt(b.add(b.reduce_sum(b.square(dense), axes=(-1,)), b.scalar(1.0, dense)))
    graph = b.finish([b.sigmoid(b.neg(dense)), norm], ["y", "norm"])
    graph, exe = executable(("fusion_kinds",), lambda: graph)
    kinds = {node.attrs["kind"] for node in exe.graph.nodes if node.op == "fused"}
    assert {"loop", "reduction", "matmul", "conv2d"} <= kinds, kinds
    check(graph, exe, [rng.normal(0, 1, (2, 4, 4, 3)).astype(np.float32)])


def test_an_epilogue_that_changes_the_dtype_stays_out_of_the_matmul():
    # The GEMM accumulates in its group's output: a comparison after it (bool) or a cast cannot
    # be its epilogue (found by tests/fuzz_cases.py: "cannot store i1 to float*").
    rng = np.random.default_rng(3)
    b = Builder()
    x = b.input("x", DType.f32[BATCH, 6])
    column = b.input("column", DType.f32[BATCH, 1])
    w1, w2 = (b.param(name, rng.standard_normal((6, 5)).astype(np.float32)) for name in ("w1", "w2"))
    y, z = b.op("matmul", x, w1), b.op("matmul", x, w2)
    graph = b.finish([b.op("greater", y, column), b.op("cast", b.op("relu", z), dtype="i32")],
                     ["above", "truncated"])
    exe = nncompile.compile(graph)
    data = [rng.standard_normal((7, 6)).astype(np.float32) * 3, rng.standard_normal((7, 1)).astype(np.float32)]
    for got, want in zip(exe(*data), reference_run(graph, data)):
        np.testing.assert_array_equal(got, want)


def test_a_constant_read_before_and_after_a_fused_reduction():
    """One constant (CSE merges a loss's 2.0 with a penalty's) read by a reduction's prologue and
    by its epilogue: the epilogue makes it again (it was a KeyError in codegen)."""
    b = Builder()
    x, w = b.input("x", DType.f32[BATCH, 3]), b.input("w", DType.f32[3])
    two = b.scalar(2.0, x)
    y = b.add(b.reduce_sum(b.mul(x, two), axes=[0]), b.mul(w, two))
    exe = nncompile.compile(b.finish([y], ["y"]))
    xs, ws = np.arange(15, dtype=np.float32).reshape(5, 3), np.array([0.5, -1.0, 2.0], np.float32)
    np.testing.assert_allclose(exe(xs, ws), (xs * 2).sum(axis=0) + ws * 2, rtol=1e-6)

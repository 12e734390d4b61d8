"""Elementwise kernels split between the threads (`split_loop`), compiled and run against the
reference interpreter: sizes around the split threshold with a symbolic batch, a static weight-
sized multi-output loop (Adam's update), broadcast operands, bool results, and a loop whose
result the memory plan writes in place over its input."""
import numpy as np
from hypothesis import given, settings, strategies as st

import nncompile
from nncompile.codegen import split_loop
from nncompile.ir import BATCH, Builder, f32
from nncompile.runtime.reference import run as reference_run


def test_only_nests_that_may_be_large_are_split():
    if nncompile.codegen.parallel.num_threads() == 1:
        return
    assert split_loop.worth_splitting([300, 300])
    assert not split_loop.worth_splitting([100, 10])
    assert not split_loop.worth_splitting([1, 10])


@settings(max_examples=10, deadline=None)
@given(rows=st.sampled_from((1, 7, 33, 257, 1000)), cols=st.sampled_from((64, 131, 900)),
       seed=st.integers(0, 2**31))
def test_relu_mask_and_bias_over_a_symbolic_batch(rows, cols, seed):
    b = Builder()
    x = b.input("x", f32[BATCH, cols])
    dy = b.input("dy", f32[BATCH, cols])
    bias = b.input("bias", f32[cols])
    zero = b.constant(np.float32(0))
    positive = b.greater(x, zero)
    graph = b.finish([b.select(positive, b.add(dy, bias), zero), positive], ["masked", "positive"])
    rng = np.random.default_rng(seed)
    inputs = [rng.normal(0, 1, (rows, cols)).astype(np.float32) for _ in range(2)]
    inputs.append(rng.normal(0, 1, cols).astype(np.float32))
    for got, want in zip(nncompile.compile(graph)(*inputs), reference_run(graph, inputs)):
        np.testing.assert_array_equal(got, want)


def test_adam_like_update_of_a_weight_matrix():
    rng = np.random.default_rng(0)
    b = Builder()
    g = b.input("g", f32[784, 128])
    m = b.input("m", f32[784, 128])
    v = b.input("v", f32[784, 128])
    lr = b.input("lr", f32[()])
    m2 = b.add(m, b.mul(b.sub(g, m), b.constant(np.float32(0.1))))
    v2 = b.add(v, b.mul(b.sub(b.square(g), v), b.constant(np.float32(0.001))))
    step = b.div(b.mul(m2, lr), b.add(b.sqrt(v2), b.constant(np.float32(1e-7))))
    graph = b.finish([m2, v2, step], ["m", "v", "step"])
    inputs = [rng.normal(0, 1, (784, 128)).astype(np.float32) for _ in range(2)]
    inputs += [np.abs(rng.normal(0, 1, (784, 128))).astype(np.float32), np.float32(1e-3)]
    for got, want in zip(nncompile.compile(graph)(*inputs), reference_run(graph, inputs)):
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_chain_written_in_place():
    """exp(-x) * x - x over a large batch, its chain computed where the memory plan reuses buffers
    (the absolute tolerance is for results that cancel to about zero)."""
    b = Builder()
    x = b.input("x", f32[BATCH, 512])
    t = b.neg(x)
    graph = b.finish([b.add(b.mul(b.exp(t), x), t)], ["y"])
    x_value = np.random.default_rng(1).normal(0, 1, (300, 512)).astype(np.float32)
    np.testing.assert_allclose(nncompile.compile(graph)(x_value), reference_run(graph, [x_value])[0], rtol=1e-6, atol=1e-6)

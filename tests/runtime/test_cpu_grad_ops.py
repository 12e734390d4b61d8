"""The backward-pass ops (conv2d and pooling gradients, scatter_add, random_uniform), compiled for
the CPU, against the reference interpreter: random window geometry (strides, dilations, groups,
pads), a symbolic batch and two batch sizes per executable, ties and repeated indices where the
ops must pick or accumulate."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from cpu_harness import (FEW, FLOATS, SEED, SIZE, SMALL, SOME, TWO_BATCHES, check, executable, inject,
                         inputs_for)
import nncompile
from nncompile.ir import BATCH, Builder, f32, i32, i64
from nncompile.ir.errors import ShapeError
from nncompile.runtime.reference import run as reference_run

SPATIAL = st.sampled_from((1, 3, 8, 17))
I64 = st.integers(-2**63, 2**63 - 1)


def _normal(rng: np.random.Generator):
    return lambda name, dtype, shape: rng.normal(0, 1, shape).astype(dtype.numpy)


def _out_size(size: int, kernel: int, stride: int, dilation: int, before: int, after: int) -> int:
    return (size + before + after - (kernel - 1) * dilation - 1) // stride + 1


@st.composite
def conv_geometry(draw):
    h, w, kh, kw = draw(SPATIAL), draw(SPATIAL), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilations = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pads = tuple(draw(st.integers(0, 2)) for _ in range(4))
    assume((kh - 1) * dilations[0] + 1 <= h + pads[0] + pads[1])
    assume((kw - 1) * dilations[1] + 1 <= w + pads[2] + pads[3])
    return (draw(st.sampled_from(FLOATS)), draw(st.sampled_from((1, 2, 3))), draw(SMALL), draw(SMALL),
            h, w, kh, kw, strides, dilations, pads)


@FEW   # each example compiles two GEMM-based kernels
@given(case=conv_geometry(), batches=TWO_BATCHES, seed=SEED)
def test_conv2d_gradients(case, batches, seed):
    """dx from dy and the filter, dw from x and dy (a sum over the batch) in one graph."""
    dtype, groups, cg, og, h, w, kh, kw, strides, dilations, pads = case
    oh = _out_size(h, kh, strides[0], dilations[0], pads[0], pads[1])
    ow = _out_size(w, kw, strides[1], dilations[1], pads[2], pads[3])
    attrs = {"strides": strides, "dilations": dilations, "pads": pads, "groups": groups}
    rng = np.random.default_rng(seed)

    def build():
        b = Builder()
        dy = b.input("dy", dtype[BATCH, oh, ow, groups * og])
        x = b.input("x", dtype[BATCH, h, w, groups * cg])
        k = b.param("w", rng.normal(0, 1, (kh, kw, cg, groups * og)).astype(dtype.numpy))
        return b.finish([b.conv2d_grad_input(dy, k, input_hw=(h, w), **attrs),
                         b.conv2d_grad_filter(x, dy, kernel_hw=(kh, kw), **attrs)], ["dx", "dw"])

    graph, exe = executable(("conv_grad", *case), build)
    magnitudes = {name: np.abs(v) for name, v in graph.params.items()}
    for n in batches:
        inputs = inputs_for(graph, {BATCH: n}, _normal(rng))
        # Sums of products in any order: the same sums of magnitudes bound their error.
        check(graph, exe, inputs, reference_run(graph, [np.abs(a) for a in inputs], magnitudes))


@st.composite
def pool_geometry(draw):
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    pads = (draw(st.integers(0, kh - 1)), draw(st.integers(0, kh - 1)),
            draw(st.integers(0, kw - 1)), draw(st.integers(0, kw - 1)))
    h, w = draw(SPATIAL), draw(SPATIAL)
    assume(kh <= h + pads[0] + pads[1] and kw <= w + pads[2] + pads[3])
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    # 16 channels fill whole vectors (a path of its own); 1, 3 and 17 leave partial ones
    return draw(st.sampled_from(FLOATS)), (kh, kw), strides, pads, h, w, draw(st.sampled_from((1, 3, 16, 17)))


@SOME
@given(case=pool_geometry(), batches=TWO_BATCHES, seed=SEED)
def test_pooling_gradients_with_ties_and_pads(case, batches, seed):
    """x on a coarse grid (ties: the first maximum of a window takes dy), NaN now and then;
    overlapping windows add into one element."""
    dtype, window, strides, pads, h, w, c = case
    oh = _out_size(h, window[0], strides[0], 1, pads[0], pads[1])
    ow = _out_size(w, window[1], strides[1], 1, pads[2], pads[3])
    attrs = {"window": window, "strides": strides, "pads": pads}

    def build():
        b = Builder()
        x = b.input("x", dtype[BATCH, h, w, c])
        dy = b.input("dy", dtype[BATCH, oh, ow, c])
        max_dx = b.max_pool2d_grad(x, dy, **attrs)
        return b.finish([max_dx, b.avg_pool2d_grad(dy, input_hw=(h, w), **attrs)], ["max_dx", "avg_dx"])

    graph, exe = executable(("pool_grad", *case), build)
    rng = np.random.default_rng(seed)
    for n in batches:
        x = inject(rng, (rng.integers(-2, 3, (n, h, w, c)) / 2).astype(dtype.numpy), (np.nan,), 0.02)
        dy = rng.normal(0, 1, (n, oh, ow, c)).astype(dtype.numpy)
        check(graph, exe, [x, dy], reference_run(graph, [x, np.abs(dy)]))


@SOME
@given(axis=st.sampled_from((0, 1)), index_dtype=st.sampled_from((i32, i64)),
       dtype=st.sampled_from((*FLOATS, i32)), vocab=st.sampled_from((1, 3, 17)), width=SIZE,
       batches=TWO_BATCHES, seed=SEED)
def test_scatter_add_with_repeated_and_negative_indices(axis, index_dtype, dtype, vocab, width, batches,
                                                         seed):
    """Axis 0: rows of updates [?, 5, width] added into [vocab, width] (the adjoint of an embedding
    lookup, summed over the batch). Axis 1: columns of updates [?, 7] added into [?, vocab] at
    fixed indices."""
    rng = np.random.default_rng(seed)

    def indices(shape):
        return rng.integers(-vocab, vocab, shape).astype(index_dtype.numpy)

    def build():
        b = Builder()
        if axis == 0:
            ids = b.input("ids", index_dtype[BATCH, 5])
            updates = b.input("updates", dtype[BATCH, 5, width])
            return b.finish([b.scatter_add(ids, updates, shape=(vocab, width), axis=0)], ["y"])
        ids = b.param("ids", indices((7,)))
        updates = b.input("updates", dtype[BATCH, 7])
        return b.finish([b.scatter_add(ids, updates, shape=(BATCH, vocab), axis=1)], ["y"])

    graph, exe = executable(("scatter_add", axis, index_dtype, dtype, vocab, width), build)

    def sample(name, dt, shape):
        if name == "ids":
            return indices(shape)
        return rng.integers(-50, 50, shape).astype(dt.numpy) if dt.is_int else _normal(rng)(name, dt, shape)

    for n in batches:
        inputs = inputs_for(graph, {BATCH: n}, sample)
        scale = reference_run(graph, [a if v.type.dtype == index_dtype else np.abs(a)
                                      for v, a in zip(graph.data_inputs, inputs)])
        check(graph, exe, inputs, scale)


@pytest.mark.parametrize("axis, vocab, width", [(0, 3001, 40), (0, 2, 4096), (1, 2000, 1)])
def test_scatter_add_into_a_large_table_splits_its_rows_between_threads(axis, vocab, width):
    """Large enough for every core (an embedding's gradient): each thread zeroes and adds into its
    own rows; repeated, negative and boundary indices land once each; an index out of range is
    refused before anything is added."""
    rng = np.random.default_rng(vocab)
    b = Builder()
    if axis == 0:
        ids = b.input("ids", i32[BATCH, 350])
        updates = b.input("updates", f32[BATCH, 350, width])
        out = b.scatter_add(ids, updates, shape=(vocab, width), axis=0)
    else:
        ids = b.param("ids", rng.integers(-vocab, vocab, 700).astype(np.int64))
        updates = b.input("updates", f32[BATCH, 700])
        out = b.scatter_add(ids, updates, shape=(BATCH, vocab), axis=1)
    graph = b.finish([out], ["y"])
    exe = nncompile.compile(graph)
    if axis == 0:
        tokens = rng.integers(-vocab, vocab, (2, 350)).astype(np.int32)
        tokens[0, :4] = [0, vocab - 1, -vocab, tokens[0, 4]]
        tokens[1] = np.arange(350) % vocab + max(0, vocab // 2 - 175)   # where the threads' rows meet
        grads = rng.normal(0, 1, (2, 350, width)).astype(np.float32)
        exe(tokens, grads + 1)   # its output's memory, freed, may hold the next one: all is written
        want = np.zeros((vocab, width), np.float64)
        np.add.at(want, tokens.reshape(-1) % vocab, grads.reshape(-1, width))
        np.testing.assert_allclose(exe(tokens, grads), want, rtol=1e-5, atol=1e-4)   # sums of 350 f32
        tokens[1, 7] = vocab
        with pytest.raises(ShapeError):
            exe(tokens, grads)
    else:
        grads = rng.normal(0, 1, (64, 700)).astype(np.float32)
        want = np.zeros((64, vocab), np.float64)
        for j, index in enumerate(graph.params["ids"] % vocab):
            want[:, index] += grads[:, j]
        np.testing.assert_allclose(exe(grads), want, rtol=1e-5, atol=1e-5)


@SOME
@given(dims=st.sampled_from(((3, 257), (17,), (BATCH, 17), (BATCH, 2, 3))), key=I64,
       seeds=st.lists(I64, min_size=2, max_size=2), batches=TWO_BATCHES)
def test_random_uniform_is_bit_exact(dims, key, seeds, batches):
    """The compiled stream equals the reference's bit for bit, for any seed and key."""
    def build():
        b = Builder()
        seed = b.input("seed", i64[()])
        b.input("batch", i32[BATCH])   # binds the batch size of a symbolic shape
        return b.finish([b.random_uniform(seed, shape=dims, key=key)], ["u"])

    graph, exe = executable(("random_uniform", dims, key), build)
    for seed, n in zip(seeds, batches):
        inputs = [np.array(seed, np.int64), np.zeros(n, np.int32)]
        got, (want,) = exe(*inputs), reference_run(graph, inputs)
        np.testing.assert_array_equal(got, want, err_msg=f"seed {seed}, key {key}, batch {n}")
        assert 0 <= got.min() and got.max() < 1

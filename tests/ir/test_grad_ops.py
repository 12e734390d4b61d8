"""The backward-pass ops: references against independent numpy (adjoint identities, loops),
compiled kernels against the reference on random odd shapes, random_uniform's bits, errors."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import nncompile
from nncompile.ir import BATCH, Builder, ShapeError, f32, f64, i32, i64
from nncompile.ir.ops.grad import uniform_bits
from nncompile.ir.ops.linalg import window_output_size
from nncompile.runtime.reference import run
from op_examples import (conv2d_loops, max_pool2d_grad_loops, pool2d_loops, scatter_add_loops, uniform_python,
                         window_mean)

FEW = settings(max_examples=10, deadline=None)
ODD = st.sampled_from([1, 3, 17])


def _conv_out(size, kernel, attrs) -> tuple[int, int]:
    (sh, sw), (dh, dw), (top, bottom, left, right) = attrs["strides"], attrs["dilations"], attrs["pads"]
    return (window_output_size(size[0], kernel[0], sh, dh, top, bottom, "height"),
            window_output_size(size[1], kernel[1], sw, dw, left, right, "width"))


conv_attrs = st.fixed_dictionaries({
    "strides": st.sampled_from([(1, 1), (2, 2), (3, 1)]), "dilations": st.sampled_from([(1, 1), (1, 2)]),
    "pads": st.sampled_from([(0, 0, 0, 0), (1, 1, 1, 1), (2, 0, 1, 0)]), "groups": st.sampled_from([1, 3]),
})


def _conv_graph(size, kernel, cin, cout, attrs, dtype):
    """dx and dw of a convolution of x [?, size, cin] by w [kernel, cin/groups, cout]."""
    oh, ow = _conv_out(size, kernel, attrs)
    b = Builder()
    x = b.input("x", dtype[BATCH, *size, cin])
    dy = b.input("dy", dtype[BATCH, oh, ow, cout])
    w = b.input("w", dtype[*kernel, cin // attrs["groups"], cout])
    dx = b.conv2d_grad_input(dy, w, input_hw=list(size), **attrs)
    dw = b.conv2d_grad_filter(x, dy, kernel_hw=list(kernel), **attrs)
    return b.finish([dx, dw]), (oh, ow)


@FEW
@given(attrs=conv_attrs, h=st.integers(5, 8), w=st.integers(5, 8), kernel=st.sampled_from([(1, 1), (2, 3), (3, 3)]),
       seed=st.integers(0, 2**16))
def test_conv2d_grad_references_are_adjoints_of_conv2d(attrs, h, w, kernel, seed):
    """<conv(x, w), dy> = <x, grad_input(dy, w)> = <w, grad_filter(x, dy)>, conv by explicit loops."""
    rng = np.random.default_rng(seed)
    cin, cout = 3, 6
    graph, (oh, ow) = _conv_graph((h, w), kernel, cin, cout, attrs, f64)
    x = rng.standard_normal((2, h, w, cin))
    dy = rng.standard_normal((2, oh, ow, cout))
    wt = rng.standard_normal((*kernel, cin // attrs["groups"], cout))
    dx, dw = run(graph, [x, dy, wt])
    forward = np.sum(conv2d_loops(x, wt, **attrs) * dy)
    np.testing.assert_allclose(np.sum(x * dx), forward, rtol=1e-10)
    np.testing.assert_allclose(np.sum(wt * dw), forward, rtol=1e-10)


@settings(max_examples=6, deadline=None)
@given(batch=ODD, attrs=conv_attrs, size=st.sampled_from([(3, 17), (17, 3), (5, 5)]),
       channels=st.sampled_from([(3, 3), (3, 6), (6, 3)]), seed=st.integers(0, 2**16))
def test_conv2d_grads_compiled_match_reference(batch, attrs, size, channels, seed):
    rng = np.random.default_rng(seed)
    cin, cout = channels
    graph, (oh, ow) = _conv_graph(size, (3, 2), cin, cout, attrs, f32)
    inputs = [rng.standard_normal((batch, *size, cin)).astype(np.float32),
              rng.standard_normal((batch, oh, ow, cout)).astype(np.float32),
              rng.standard_normal((3, 2, cin // attrs["groups"], cout)).astype(np.float32)]
    for got, want in zip(nncompile.compile(graph)(*inputs), run(graph, inputs)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_conv2d_grad_filter_spans_several_chunks():
    """More output pixels than one chunk of the compiled kernel holds (partial sums add up)."""
    rng = np.random.default_rng(1)
    graph, (oh, ow) = _conv_graph((40, 41), (3, 3), 64, 8, {"strides": (1, 1), "dilations": (1, 1),
                                                                  "pads": (1, 1, 1, 1), "groups": 1}, f32)
    inputs = [rng.standard_normal((9, 40, 41, 64)).astype(np.float32),
              rng.standard_normal((9, oh, ow, 8)).astype(np.float32),
              rng.standard_normal((3, 3, 64, 8)).astype(np.float32)]
    for got, want in zip(nncompile.compile(graph)(*inputs), run(graph, inputs)):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)


pool_attrs = st.fixed_dictionaries({
    "window": st.sampled_from([(2, 2), (3, 3), (1, 3)]), "strides": st.sampled_from([(1, 1), (2, 2), (3, 1)]),
    "pads": st.sampled_from([(0, 0, 0, 0), (1, 1, 0, 0), (0, 0, 0, 2)]),
})


def _pool_graph(size, channels, attrs, dtype):
    (kh, kw), (sh, sw), (top, bottom, left, right) = attrs["window"], attrs["strides"], attrs["pads"]
    oh = window_output_size(size[0], kh, sh, 1, top, bottom, "height")
    ow = window_output_size(size[1], kw, sw, 1, left, right, "width")
    b = Builder()
    x = b.input("x", dtype[BATCH, *size, channels])
    dy = b.input("dy", dtype[BATCH, oh, ow, channels])
    graph = b.finish([b.max_pool2d_grad(x, dy, **attrs), b.avg_pool2d_grad(dy, input_hw=list(size), **attrs)])
    return graph, (oh, ow)


@FEW
@given(attrs=pool_attrs, size=st.sampled_from([(3, 4), (5, 3), (4, 4)]), seed=st.integers(0, 2**16))
def test_pool2d_grad_references(attrs, size, seed):
    """max: the first maximum takes dy (ties are frequent here); avg: the adjoint of avg_pool."""
    assume(attrs["pads"][3] < attrs["window"][1] and attrs["pads"][0] < attrs["window"][0])
    rng = np.random.default_rng(seed)
    graph, (oh, ow) = _pool_graph(size, 2, attrs, f64)
    x = rng.integers(-2, 3, (2, *size, 2)).astype(np.float64)
    dy = rng.standard_normal((2, oh, ow, 2))
    dmax, davg = run(graph, [x, dy])
    np.testing.assert_allclose(dmax, max_pool2d_grad_loops(x, dy, **attrs))
    forward = np.sum(pool2d_loops(x, attrs["window"], attrs["strides"], attrs["pads"], window_mean) * dy)
    np.testing.assert_allclose(np.sum(x * davg), forward, rtol=1e-10)


@FEW
@given(batch=ODD, attrs=pool_attrs, size=st.sampled_from([(3, 17), (17, 3), (4, 5)]), channels=ODD,
       seed=st.integers(0, 2**16))
def test_pool2d_grads_compiled_match_reference(batch, attrs, size, channels, seed):
    assume(attrs["pads"][3] < attrs["window"][1] and attrs["pads"][0] < attrs["window"][0])
    rng = np.random.default_rng(seed)
    graph, (oh, ow) = _pool_graph(size, channels, attrs, f32)
    inputs = [(rng.integers(-3, 3, (batch, *size, channels)) / 2).astype(np.float32),
              rng.standard_normal((batch, oh, ow, channels)).astype(np.float32)]
    for got, want in zip(nncompile.compile(graph)(*inputs), run(graph, inputs)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_max_pool2d_grad_sends_nan_windows_to_the_first_nan():
    x = np.array([1.0, np.nan, 5.0, np.nan], np.float32).reshape(1, 1, 4, 1)
    b = Builder()
    xv, dy = b.input("x", f32[BATCH, 1, 4, 1]), b.input("dy", f32[BATCH, 1, 1, 1])
    graph = b.finish([b.max_pool2d_grad(xv, dy, window=[1, 4], strides=[1, 1])])
    want = np.array([0, 2, 0, 0], np.float32).reshape(1, 1, 4, 1)
    for got in (run(graph, [x, np.full((1, 1, 1, 1), 2, np.float32)])[0],
                nncompile.compile(graph)(x, np.full((1, 1, 1, 1), 2, np.float32))):
        np.testing.assert_array_equal(got, want)


@FEW
@given(batch=ODD, rows=ODD, axis=st.sampled_from([0, 1]), seed=st.integers(0, 2**16))
def test_scatter_add_compiled_and_reference_match_loops(batch, rows, axis, seed):
    rng = np.random.default_rng(seed)
    b = Builder()
    if axis == 0:
        shape, ids_type, upd_type = (rows, 3), i64[BATCH, 2], f32[BATCH, 2, 3]
        ids = rng.integers(-rows, rows, (batch, 2))
        updates = rng.standard_normal((batch, 2, 3)).astype(np.float32)
    else:
        shape, ids_type, upd_type = (BATCH, rows), i32[4], f32[BATCH, 4]
        ids = rng.integers(-rows, rows, 4).astype(np.int32)
        updates = rng.standard_normal((batch, 4)).astype(np.float32)
    out = b.scatter_add(b.input("ids", ids_type), b.input("u", upd_type), shape=list(shape), axis=axis)
    graph = b.finish([out])
    concrete = (rows, 3) if axis == 0 else (batch, rows)
    want = scatter_add_loops(ids, updates.astype(np.float64), concrete, axis)
    np.testing.assert_allclose(run(graph, [ids, updates])[0], want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(nncompile.compile(graph)(ids, updates), want, rtol=1e-6, atol=1e-6)


def test_scatter_add_rejects_indices_out_of_range():
    b = Builder()
    out = b.scatter_add(b.input("ids", i32[3]), b.input("u", f32[3, 2]), shape=[4, 2], allow_negative=False)
    graph = b.finish([out])
    bad = [np.array([0, -1, 2], np.int32), np.ones((3, 2), np.float32)]
    with pytest.raises(ShapeError, match="index -1 is out of range for axis 0 of size 4"):
        run(graph, bad)
    with pytest.raises(ShapeError):
        nncompile.compile(graph)(*bad)


# --- random_uniform ----------------------------------------------------------------------------------

def test_random_uniform_reference_matches_plain_python_splitmix():
    for seed, key in [(0, 0), (-1, 3), (2**62 + 5, -9)]:
        np.testing.assert_array_equal(uniform_bits(seed, key, 50), uniform_python(seed, key, 50))


@FEW
@given(batch=ODD, width=ODD, seed=st.integers(-2**63, 2**63 - 1), key=st.integers(-2**31, 2**31))
def test_random_uniform_compiled_gives_the_same_bits(batch, width, seed, key):
    b = Builder()
    s = b.input("seed", i64[()])
    b.input("x", f32[BATCH])
    graph = b.finish([b.random_uniform(s, shape=[BATCH, width], key=key)])
    inputs = [np.array(seed, np.int64), np.zeros(batch, np.float32)]
    np.testing.assert_array_equal(nncompile.compile(graph)(*inputs), run(graph, inputs)[0])


def test_random_uniform_is_uniform_and_streams_differ():
    values = uniform_bits(7, 1, 200_000)
    assert values.min() >= 0 and values.max() < 1
    counts = np.histogram(values, bins=10, range=(0, 1))[0]
    assert np.all(np.abs(counts - 20_000) < 5 * np.sqrt(20_000))
    assert np.abs(np.corrcoef(values[:-1], values[1:])[0, 1]) < 0.01
    others = [uniform_bits(8, 1, 1000), uniform_bits(7, 2, 1000)]
    assert all(np.mean(o == values[:1000]) < 0.01 for o in others)


# --- shape rules -------------------------------------------------------------------------------------

@pytest.mark.parametrize("build, message", [
    (lambda b: b.conv2d_grad_input(b.input("dy", f32[BATCH, 4, 4, 6]), b.input("w", f32[3, 3, 2, 6]),
                                   input_hw=[5, 5]), "does not match the forward convolution"),
    (lambda b: b.conv2d_grad_input(b.input("dy", f32[BATCH, 3, 3, 6]), b.input("w", f32[3, 3, 2, 6]),
                                   input_hw=[5, 5], groups=4), "dividing w's 6 output channels"),
    (lambda b: b.conv2d_grad_filter(b.input("x", f32[BATCH, 5, 5, 4]), b.input("dy", f32[BATCH, 3, 3, 6]),
                                    kernel_hw=[3, 3], groups=4), "dividing x's 4 and dy's 6 channels"),
    (lambda b: b.max_pool2d_grad(b.input("x", f32[BATCH, 4, 4, 2]), b.input("dy", f32[BATCH, 2, 2, 3]),
                                 window=[2, 2], strides=[2, 2]), "does not match the forward pooling"),
    (lambda b: b.avg_pool2d_grad(b.input("dy", f32[BATCH, 2, 2, 3]), window=[2, 2], strides=[2, 2],
                                 pads=[2, 0, 0, 0], input_hw=[4, 4]), "must be smaller than the window"),
    (lambda b: b.scatter_add(b.input("i", f32[3]), b.input("u", f32[3, 2]), shape=[4, 2]),
     "expected i32 or i64"),
    (lambda b: b.scatter_add(b.input("i", i32[3]), b.input("u", f32[2, 2]), shape=[4, 2]),
     r"expected shape \[3, 2\]"),
    (lambda b: b.random_uniform(b.input("s", i32[()]), shape=[3]), r"expected an i64 scalar"),
])
def test_shape_rules_reject_bad_inputs(build, message):
    with pytest.raises(ShapeError, match=message):
        build(Builder())

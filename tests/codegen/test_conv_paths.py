"""The convolution paths chosen by geometry, compiled and run against the reference interpreter:
contiguous window rows (the forward microkernel's row taps, im2col and col2im by runs of kw*cin)
and their exclusions (groups, width padding, dilation), and the input gradient with its images
split between the threads (batches large enough for the split, odd ones that split unevenly)."""
import numpy as np
from hypothesis import given, settings, strategies as st

import nncompile
from nncompile.codegen.conv import contiguous_window_rows
from nncompile.codegen.grad import _Conv
from nncompile.ir import BATCH, Builder, f32
from nncompile.runtime.reference import run as reference_run


def _out(size, k, stride, dilation, before, after):
    return (size + before + after - (k - 1) * dilation - 1) // stride + 1


def _geometry(h, w, cin, kh, kw, strides, dilations, pads, groups):
    oh = _out(h, kh, strides[0], dilations[0], pads[0], pads[1])
    ow = _out(w, kw, strides[1], dilations[1], pads[2], pads[3])
    return _Conv(h, w, cin, kh, kw, oh, ow, 8 * groups, groups, strides, dilations, pads[0], pads[2])


def test_contiguous_window_rows_only_where_every_row_is_one_run():
    assert contiguous_window_rows(_geometry(32, 32, 3, 3, 3, (1, 1), (1, 1), (0, 0, 0, 0), 1))
    assert contiguous_window_rows(_geometry(9, 9, 4, 3, 3, (2, 2), (1, 1), (1, 1, 0, 0), 1))  # height pads only
    assert not contiguous_window_rows(_geometry(9, 9, 4, 3, 3, (1, 1), (1, 1), (0, 0, 1, 1), 1))
    assert not contiguous_window_rows(_geometry(9, 9, 4, 3, 3, (1, 1), (1, 2), (0, 0, 0, 0), 1))
    assert not contiguous_window_rows(_geometry(9, 9, 4, 3, 3, (1, 1), (1, 1), (0, 0, 0, 0), 2))


def _conv_step(h, w, cin, cout, kh, kw, attrs, seed):
    rng = np.random.default_rng(seed)
    b = Builder()
    x = b.input("x", f32[BATCH, h, w, cin])
    kernel = b.param("k", rng.normal(0, 1, (kh, kw, cin // attrs["groups"], cout)).astype(np.float32))
    y = b.conv2d(x, kernel, **attrs)
    oh, ow = y.type.shape[1:3]
    dy = b.input("dy", f32[BATCH, oh, ow, cout])
    return b.finish([y, b.conv2d_grad_input(dy, kernel, input_hw=(h, w), **attrs),
                     b.conv2d_grad_filter(x, dy, kernel_hw=(kh, kw), **attrs)], ["y", "dx", "dw"])


def _check(graph, inputs):
    got = nncompile.compile(graph)(*inputs)
    want = reference_run(graph, inputs)
    bound = reference_run(graph, [np.abs(a) for a in inputs], {n: np.abs(p) for n, p in graph.params.items()})
    for name, g, wv, s in zip(("y", "dx", "dw"), got, want, bound):
        assert g.shape == wv.shape, name
        assert np.all(np.abs(g - wv) <= 1e-5 * (np.abs(s) + np.abs(wv)) + 1e-6), name


@settings(max_examples=8, deadline=None)
@given(cin=st.sampled_from((1, 3, 5, 32)), kh=st.integers(1, 3), kw=st.integers(1, 3),
       strides=st.sampled_from(((1, 1), (2, 1), (1, 2))), vertical=st.sampled_from(((0, 0), (1, 1), (2, 0))),
       batch=st.sampled_from((1, 3)), seed=st.integers(0, 2**31))
def test_row_taps_match_reference(cin, kh, kw, strides, vertical, batch, seed):
    attrs = {"strides": strides, "dilations": (1, 1), "pads": (*vertical, 0, 0), "groups": 1}
    graph = _conv_step(9, 8, cin, 12, kh, kw, attrs, seed)
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (batch, 9, 8, cin)).astype(np.float32)
    oh, ow = graph.outputs[0].type.shape[1:3]
    _check(graph, [x, rng.normal(0, 1, (batch, oh, ow, 12)).astype(np.float32)])


@settings(max_examples=4, deadline=None)
@given(batch=st.sampled_from((2, 5, 9)), pads=st.sampled_from(((0, 0, 0, 0), (1, 1, 1, 1))),
       seed=st.integers(0, 2**31))
def test_input_gradient_split_between_threads(batch, pads, seed):
    """15x15x32 -> 64 channels, as the CNN's second layer: large enough for the image split."""
    attrs = {"strides": (1, 1), "dilations": (1, 1), "pads": pads, "groups": 1}
    graph = _conv_step(15, 15, 32, 64, 3, 3, attrs, seed)
    rng = np.random.default_rng(seed)
    oh, ow = graph.outputs[0].type.shape[1:3]
    _check(graph, [rng.normal(0, 1, (batch, 15, 15, 32)).astype(np.float32),
                   rng.normal(0, 1, (batch, oh, ow, 64)).astype(np.float32)])

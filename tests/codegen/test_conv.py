"""The convolution kernel (one for any geometry) run against a numpy convolution written here:
strides, same/valid padding, dilation, groups (depthwise too), 1x1, odd batches, epilogues, the
threaded size, the wide register tile, tiles whose windows all lie inside the image."""
import ctypes

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from llvmlite import ir

from nncompile.codegen import conv, gemm, library, target
from nncompile.ir.dtypes import DType
from nncompile.ir.errors import IRError

P, I = ctypes.c_void_p, ctypes.c_int64


def numpy_conv(x, w, strides, pads, dilations, groups):
    """Direct NHWC convolution: one matrix product per kernel tap and group."""
    batch, h, wd, cin = x.shape
    kh, kw, cg, cout = w.shape
    og = cout // groups
    top, bottom, left, right = pads
    padded = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    oh = (h + top + bottom - (kh - 1) * dilations[0] - 1) // strides[0] + 1
    ow = (wd + left + right - (kw - 1) * dilations[1] - 1) // strides[1] + 1
    y = np.zeros((batch, oh, ow, cout))
    for i in range(kh):
        for j in range(kw):
            r0, c0 = i * dilations[0], j * dilations[1]
            rows = slice(r0, r0 + (oh - 1) * strides[0] + 1, strides[0])
            tap = padded[:, rows, c0:c0 + (ow - 1) * strides[1] + 1:strides[1]]
            for g in range(groups):
                y[..., g * og:(g + 1) * og] += tap[..., g * cg:(g + 1) * cg] @ w[i, j, :, g * og:(g + 1) * og]
    return y


def same(size, kernel, stride, dilation):
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _relu(b, x):
    zero = ir.Constant(x.type, None)
    return b.select(b.fcmp_ordered(">", x, zero), x, zero)


def run_conv(batch, hw, cin, khw, cout, strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), groups=1,
             epilogue=None, dtype=DType.f32, seed=0, wide=False):
    """Compile and run one convolution; returns (result, float64 numpy result)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, *hw, cin)).astype(dtype.numpy)
    w = rng.standard_normal((*khw, cin // groups, cout)).astype(dtype.numpy)
    want = numpy_conv(x.astype(np.float64), w.astype(np.float64), strides, pads, dilations, groups)
    operands, epi = [], None
    if epilogue == "bias_relu":
        operands = [rng.standard_normal(cout).astype(dtype.numpy)]
        epi = gemm.Epilogue(((0, 1),), lambda b, acc, ops: _relu(b, b.fadd(acc, ops[0])))
        want = np.maximum(want + operands[0], 0)
    elif epilogue == "residual":
        operands = [rng.standard_normal(want.shape).astype(dtype.numpy)]
        epi = gemm.Epilogue(((cout, 1),), lambda b, acc, ops: b.fadd(acc, ops[0]))
        want = want + operands[0]
    words = np.array(conv.geometry("conv", dtype, in_hw=hw, cin=cin, kernel_hw=khw, cout=cout, strides=strides,
                                   pads=pads, dilations=dilations, groups=groups), np.int64)
    fn = _compiled(dtype, epilogue, epi, len(operands), wide)
    y = np.full(want.shape, np.nan, dtype.numpy)
    fn(batch, x.ctypes.data, w.ctypes.data, y.ctypes.data, words.ctypes.data, *[o.ctypes.data for o in operands])
    return y, want


_KERNELS: dict = {}


def _compiled(dtype, epilogue, epi, n_operands, wide=False):
    """The convolution kernel (any geometry) for this dtype and epilogue, compiled once."""
    key = (dtype, epilogue, epi.operands if epi else None, wide)     # a residual's stride is its width
    if key not in _KERNELS:
        module = target.new_module("conv_test")
        conv.emit_conv2d(module, "conv", dtype, epi, wide=wide)
        jit = target.JitModule(object_code=library.compile_module(module))
        _KERNELS[key] = jit, ctypes.CFUNCTYPE(None, I, P, P, P, P, *[P] * n_operands)(jit.address("conv"))
    return _KERNELS[key][1]


def _check(got, want, depth, dtype=DType.f32):
    eps = 1e-6 if dtype is DType.f32 else 1e-14
    np.testing.assert_allclose(got, want, rtol=10 * eps, atol=eps * 4 * (depth + 1))


CASES = {   # name: (batch, hw, cin, khw, cout, strides, pads, dilations, groups, epilogue)
    "same_3x3_batch1_bias_relu": (1, (5, 6), 3, (3, 3), 8, (1, 1), (1, 1, 1, 1), (1, 1), 1, "bias_relu"),
    "valid_3x3_stride2_batch3": (3, (9, 8), 5, (3, 3), 7, (2, 2), (0, 0, 0, 0), (1, 1), 1, None),
    "dilated_same": (2, (8, 7), 4, (3, 3), 6, (1, 1), (2, 2, 2, 2), (2, 2), 1, None),
    "grouped_asymmetric": (3, (9, 7), 8, (3, 2), 6, (2, 1), (0, 1, 2, 0), (1, 2), 2, "bias_relu"),
    "depthwise": (2, (6, 6), 4, (3, 3), 4, (1, 1), (1, 1, 1, 1), (1, 1), 4, None),
    "pointwise_residual": (3, (5, 7), 16, (1, 1), 40, (1, 1), (0, 0, 0, 0), (1, 1), 1, "residual"),
    "pointwise_grouped": (2, (4, 4), 8, (1, 1), 12, (1, 1), (0, 0, 0, 0), (1, 1), 4, None),
    "pointwise_stride2": (2, (7, 7), 6, (1, 1), 5, (2, 2), (0, 0, 0, 0), (1, 1), 1, None),
    "kernel_fills_input": (1, (5, 5), 2, (5, 5), 3, (1, 1), (0, 0, 0, 0), (1, 1), 1, None),
    "one_pixel_padded": (1, (1, 1), 3, (3, 3), 2, (1, 1), (1, 1, 1, 1), (1, 1), 1, None),
    "threaded_28x28x32_to_64": (1, (28, 28), 32, (3, 3), 64, (1, 1), (1, 1, 1, 1), (1, 1), 1, "bias_relu"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_conv_matches_numpy(name):
    batch, hw, cin, khw, cout, strides, pads, dilations, groups, epilogue = CASES[name]
    got, want = run_conv(batch, hw, cin, khw, cout, strides, pads, dilations, groups, epilogue)
    _check(got, want, khw[0] * khw[1] * cin // groups)


# Images wide enough that most tiles have every window inside the image (the fast path) and the
# rest straddle its borders, its rows or two images; 64 or 128 output channels per group fill
# the wide tile.
WIDE_CASES = {   # name: (batch, hw, cin, khw, cout, strides, pads, dilations, groups, epilogue)
    "same_3x3_64": (2, (23, 30), 16, (3, 3), 64, (1, 1), (1, 1, 1, 1), (1, 1), 1, "bias_relu"),
    "stride2_grouped_og64": (1, (31, 29), 8, (3, 3), 128, (2, 2), (1, 1, 1, 1), (1, 1), 2, None),
    "dilated_residual_64": (2, (26, 26), 12, (3, 3), 64, (1, 1), (2, 2, 2, 2), (2, 2), 1, "residual"),
    "pointwise_stride2_64": (1, (30, 30), 16, (1, 1), 64, (2, 2), (0, 0, 0, 0), (1, 1), 1, None),
    "valid_rows_3ch_128": (1, (28, 40), 3, (3, 3), 128, (1, 1), (0, 0, 0, 0), (1, 1), 1, None),
    "asymmetric_40ch": (3, (17, 33), 5, (3, 5), 40, (1, 2), (0, 2, 1, 3), (1, 1), 1, "bias_relu"),
}


@pytest.mark.parametrize("wide", [False, True])
@pytest.mark.parametrize("name", sorted(WIDE_CASES))
def test_wide_tile_and_windows_inside_the_image(name, wide):
    batch, hw, cin, khw, cout, strides, pads, dilations, groups, epilogue = WIDE_CASES[name]
    got, want = run_conv(batch, hw, cin, khw, cout, strides, pads, dilations, groups, epilogue, wide=wide)
    _check(got, want, khw[0] * khw[1] * cin // groups)


def test_wide_tile_only_where_the_channels_fill_it():
    lanes = target.vector_lanes(4)
    wide = gemm.register_tile(wide=True)[1] * lanes
    for og in (wide, 2 * wide):
        assert conv.wide_tile(DType.f32, og) == (target.vector_registers() >= 32)
    for og in (1, wide // 2, wide + lanes * 2):
        assert not conv.wide_tile(DType.f32, og)


def test_f64():
    got, want = run_conv(2, (6, 5), 3, (3, 3), 4, pads=(1, 1, 1, 1), dtype=DType.f64)
    _check(got, want, 27, DType.f64)


@settings(max_examples=8, deadline=None)
@given(batch=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9), cg=st.integers(1, 5),
       og=st.integers(1, 6), groups=st.integers(1, 3), kh=st.integers(1, 3), kw=st.integers(1, 3),
       sh=st.integers(1, 2), sw=st.integers(1, 2), dh=st.integers(1, 2), dw=st.integers(1, 2),
       padding=st.sampled_from(["same", "valid"]))
def test_random_geometry(batch, h, w, cg, og, groups, kh, kw, sh, sw, dh, dw, padding):
    if padding == "same":
        pads = same(h, kh, sh, dh) + same(w, kw, sw, dw)
    else:
        pads = (0, 0, 0, 0)
        h, w = max(h, (kh - 1) * dh + 1), max(w, (kw - 1) * dw + 1)
    got, want = run_conv(batch, (h, w), cg * groups, (kh, kw), og * groups, (sh, sw), pads, (dh, dw), groups)
    _check(got, want, kh * kw * cg)


def test_bad_groups_are_named():
    with pytest.raises(IRError, match="groups=3 must divide cin=4 and cout=6"):
        conv.geometry("c", DType.f32, in_hw=(4, 4), cin=4, kernel_hw=(3, 3), cout=6, groups=3)


def test_window_larger_than_input_is_named():
    with pytest.raises(IRError, match="height"):
        conv.geometry("c", DType.f32, in_hw=(2, 4), cin=1, kernel_hw=(3, 3), cout=1)


def test_symbolic_image_size_is_named():
    with pytest.raises(IRError, match="must be static ints"):
        conv.geometry("c", DType.f32, in_hw=("H", 4), cin=1, kernel_hw=(1, 1), cout=1)

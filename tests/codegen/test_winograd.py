"""F(2x2, 3x3) convolutions against a numpy convolution written in tests/codegen/test_conv.py:
the filter's transform against G g G^T done in numpy here, the kernel over odd image sizes (edge
tiles), padding and none, channel counts off the vector width, the wide register tile, several
blocks of tiles, epilogues; and, through a compiled model, which convolutions take the path,
the prepare function that makes the transform, and a weight change that remakes it."""
import ctypes
import re

import numpy as np
import pytest
import nncompile
import nncompile.keras as keras
from nncompile.codegen import conv, gemm, gemm_pack, library, target, winograd
from nncompile.ir import BATCH, Builder
from nncompile.ir.dtypes import DType
from nncompile.ir.types import TensorType
from nncompile.keras import layers
from tests.codegen.test_conv import numpy_conv

P, I = ctypes.c_void_p, ctypes.c_int64
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])


def test_filter_transform_is_g_w_gt():
    rng = np.random.default_rng(0)
    cin, cout = 5, 7
    w = rng.standard_normal((3, 3, cin, cout)).astype(np.float32)
    module = target.new_module("filter_test")
    winograd.emit_transform_filter(module, DType.f32).linkage = "external"
    jit = target.JitModule(module)
    transform = ctypes.CFUNCTYPE(None, I, I, P, P)(jit.address(f"nnc.winograd.filter.{DType.f32}"))
    u = np.full((16, cin, cout), np.nan, np.float32)
    transform(cin, cout, w.ctypes.data, u.ctypes.data)
    want = np.einsum("ai,ijcd,bj->abcd", G, w.astype(np.float64), G).reshape(16, cin, cout)
    np.testing.assert_allclose(u, want, rtol=1e-6, atol=1e-6)


_KERNELS: dict = {}


def _compiled(wide: bool, residual: bool):
    """The filter transform, the weight packer and the F(2x2, 3x3) kernel, compiled once each way."""
    key = (wide, residual)
    if key not in _KERNELS:
        module = target.new_module("winograd_test")
        for fn in (winograd.emit_transform_filter(module, DType.f32),
                   gemm_pack.emit_pack_b_into(module, DType.f32, conv_columns=64 if wide else 8)):
            fn.linkage = "external"
        epilogue = gemm.Epilogue(((gemm.LDC, 1),), lambda b, acc, ops: b.fadd(acc, ops[0])) if residual else None
        winograd.emit_conv2d(module, "wconv", DType.f32, epilogue, conv.tiling(DType.f32, wide))
        jit = target.JitModule(object_code=library.compile_module(module))
        extra = [P] if residual else []
        _KERNELS[key] = (jit, ctypes.CFUNCTYPE(None, I, I, P, P)(jit.address(f"nnc.winograd.filter.{DType.f32}")),
                         ctypes.CFUNCTYPE(None, I, I, P, I, P)(jit.address(module.globals[
                             f"gemm.pack_b_into.{DType.f32}.whole{conv.tiling(DType.f32, wide).nr}"].name)),
                         ctypes.CFUNCTYPE(None, I, P, P, P, P, *extra, P)(jit.address("wconv")))
    return _KERNELS[key][1:]


def run_winograd(batch, hw, cin, cout, pads, residual=False, seed=0):
    """Transform and pack the filter as the prepare function does, run the kernel."""
    wide = conv.wide_tile(DType.f32, cout)
    transform, pack, kernel = _compiled(wide, residual)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, *hw, cin)).astype(np.float32)
    w = rng.standard_normal((3, 3, cin, cout)).astype(np.float32)
    want = numpy_conv(x.astype(np.float64), w.astype(np.float64), (1, 1), pads, (1, 1), 1)
    u = np.empty((16, cin, cout), np.float32)
    transform(cin, cout, w.ctypes.data, u.ctypes.data)
    point = gemm_pack.packed_size(DType.f32, cout, cin, conv=True) // 4
    packed = np.empty(16 * point + 16, np.float32)
    at = -(packed.ctypes.data % 64) // 4 % 16          # 64-byte aligned, as the runtime's slots are
    for p in range(16):
        pack(cout, cin, u[p].ctypes.data, cout, packed[at + p * point:].ctypes.data)
    words = np.array(conv.geometry("conv", DType.f32, in_hw=hw, cin=cin, kernel_hw=(3, 3), cout=cout,
                                   pads=pads), np.int64)
    operands = [rng.standard_normal(want.shape).astype(np.float32)] if residual else []
    want = want + (operands[0] if residual else 0)
    y = np.full(want.shape, np.nan, np.float32)
    kernel(batch, x.ctypes.data, w.ctypes.data, y.ctypes.data, words.ctypes.data,
           *[o.ctypes.data for o in operands], packed[at:].ctypes.data)
    return y, want


CASES = {   # name: (batch, (h, w), cin, cout, pads (top, bottom, left, right))
    "same_odd_image": (1, (7, 5), 16, 16, (1, 1, 1, 1)),
    "valid_odd_output": (2, (9, 8), 20, 24, (0, 0, 0, 0)),   # output 7 x 6: a bottom row of half tiles
    "channels_off_the_vector": (3, (6, 11), 19, 33, (1, 1, 1, 1)),
    "asymmetric_pads": (2, (8, 7), 16, 20, (0, 1, 2, 0)),     # 'same' of an even size, ONNX's pads
    "tall_pads": (1, (5, 6), 17, 16, (3, 0, 0, 2)),
    "wide_tile": (2, (13, 10), 32, 64, (1, 1, 1, 1)),
    "wide_tile_two_panels": (1, (8, 9), 48, 128, (1, 1, 1, 1)),
    "one_pixel": (1, (1, 1), 16, 16, (1, 1, 1, 1)),
    "many_blocks": (4, (40, 36), 64, 64, (1, 1, 1, 1)),      # more tiles than one block takes
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_kernel_matches_numpy(name):
    batch, hw, cin, cout, pad = CASES[name]
    got, want = run_winograd(batch, hw, cin, cout, pad)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.sqrt(9 * cin))


@pytest.mark.parametrize("cout", [24, 64])
def test_residual_epilogue(cout):
    got, want = run_winograd(2, (10, 7), 16, cout, (1, 1, 1, 1), residual=True, seed=3)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_a_batch_of_no_images():
    got, want = run_winograd(0, (6, 6), 16, 16, (1, 1, 1, 1))
    assert got.shape == want.shape == (0, 6, 6, 16)


def _conv_model(h, w, cin, cout, activation="relu"):
    return keras.Sequential([keras.Input((h, w, cin)), layers.Conv2D(cout, 3, padding="same", activation=activation)])


def _reference(model, x, activation=lambda y: np.maximum(y, 0)):
    kernel, bias = model.layers[0].get_weights()
    return activation(numpy_conv(x.astype(np.float64), kernel.astype(np.float64), (1, 1), (1, 1, 1, 1), (1, 1), 1)
                      + bias)


def test_an_epilogue_of_the_model_own():
    """elu has no kernel of its own: the model's tile function applies it to each stored pixel."""
    rng = np.random.default_rng(4)
    model = _conv_model(9, 8, 16, 80, activation="elu")
    x = rng.standard_normal((2, 9, 8, 16)).astype(np.float32)
    want = _reference(model, x, lambda y: np.where(y > 0, y, np.expm1(y)))
    np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=1e-5, atol=1e-4)


def test_model_predicts_through_winograd_and_a_weight_change_remakes_the_transform():
    rng = np.random.default_rng(1)
    model = _conv_model(12, 9, 24, 40)
    x = rng.standard_normal((3, 12, 9, 24)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x, verbose=0), _reference(model, x), rtol=1e-5, atol=1e-4)
    assert any(spec.name == "nnc.conv2d.f32.packed.winograd.bias" for spec in library._loaded)
    kernel, bias = model.layers[0].get_weights()
    model.layers[0].set_weights([rng.standard_normal(kernel.shape).astype(np.float32), bias + 0.5])
    np.testing.assert_allclose(model.predict(x, verbose=0), _reference(model, x), rtol=1e-5, atol=1e-4)


def _conv_node(cin=16, dtype=DType.f32, hw=(8, 8), **attrs):
    b = Builder()
    x = b.input("x", TensorType(dtype, (BATCH, *hw, cin)))
    w = b.param("w", np.zeros((3, 3, cin // attrs.get("groups", 1), 16), dtype.numpy))
    b.finish([b.conv2d(x, w, **attrs)])
    return b.graph.nodes[-1]


def test_the_executable_calls_winograd_only_for_the_eligible_convolution():
    b = Builder()
    x = b.input("x", TensorType(DType.f32, (BATCH, 10, 10, 16)))
    w = [b.param(f"w{i}", np.random.default_rng(i).standard_normal((3, 3, 16, 16)).astype(np.float32))
         for i in range(2)]
    y = b.conv2d(b.relu(b.conv2d(x, w[0], pads=[1, 1, 1, 1])), w[1], strides=[2, 2], pads=[1, 1, 1, 1])
    graph = b.finish([y])
    exe = nncompile.compile(graph)
    inputs = np.random.default_rng(5).standard_normal((2, 10, 10, 16)).astype(np.float32)
    hidden = np.maximum(numpy_conv(inputs.astype(np.float64), graph.params["w0"].astype(np.float64), (1, 1),
                                   (1, 1, 1, 1), (1, 1), 1), 0)
    want = numpy_conv(hidden, graph.params["w1"].astype(np.float64), (2, 2), (1, 1, 1, 1), (1, 1), 1)
    np.testing.assert_allclose(exe(inputs), want, rtol=1e-5, atol=1e-4)
    names = set(re.findall(rb"nnc\.conv2d\.[a-z0-9._]+", exe.object_code))
    assert names == {b"nnc.conv2d.f32.packed.winograd.bias", b"nnc.conv2d.f32"}   # relu: a floor


@pytest.mark.parametrize("name", ["nnc.conv2d.f32.packed.winograd", "nnc.conv2d.f32.wide.packed.winograd.bias",
                                  "nnc.conv2d.f32.packed.winograd.residual"])
def test_library_names_round_trip(name):
    spec = library.ConvSpec.parse(name)
    assert spec.winograd and spec.prepacked and spec.name == name
    assert library.ConvSpec.parse(name.replace(".packed", "")) is None


@pytest.mark.parametrize("attrs", [dict(strides=[2, 2]), dict(groups=2), dict(dilations=[2, 2]), dict(cin=8),
                                   dict(dtype=DType.f64), dict(hw=("h", 8))])
def test_only_3x3_stride_1_single_group_f32_convolutions_of_enough_channels_are_eligible(attrs):
    assert winograd.eligible(_conv_node())
    assert not winograd.eligible(_conv_node(**attrs))

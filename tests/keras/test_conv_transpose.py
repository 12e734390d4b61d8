"""Conv1DTranspose, Conv2DTranspose, Conv3DTranspose: against numpy written here (the input
dilated by the stride, padded as Keras 3 pads it, correlated with the flipped kernel), gradients
by finite differences, compiled vs reference, fit and files, and real Keras 3's files
(tests/fixtures/keras/spatial/make_spatial.py)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from layer_checks import (check_compiled_matches_reference, check_fit_and_files,
                          check_real_keras_files, check_sgd_step, random_array)
from nncompile import keras
from nncompile.keras import layers

CLASSES = {1: layers.Conv1DTranspose, 2: layers.Conv2DTranspose, 3: layers.Conv3DTranspose}


def _keras_pads(kernel, stride, dilation, padding, output_padding):
    """(left, right) zeros around the stride-dilated input, as Keras 3's docs and JAX backend say."""
    span = (kernel - 1) * dilation + 1
    if padding == "valid":
        extra = max(span, stride) - span if output_padding is None else output_padding
        return span - 1, span - 1 + extra
    total = stride + span - 2 if output_padding is None else span + span % 2 - 2 + output_padding
    left = min(total // 2 + total % 2, span - 1)
    return left, total - left


def transpose_numpy(x, kernel, strides, dilations, padding="valid", output_padding=None):
    """Transposed convolution of x (N, *spatial, C) by kernel (*k, F, C), by loops over taps."""
    rank = x.ndim - 2
    spatial = x.shape[1:-1]
    dilated = np.zeros((x.shape[0], *[(n - 1) * s + 1 for n, s in zip(spatial, strides)], x.shape[-1]))
    dilated[(slice(None), *[slice(None, None, s) for s in strides])] = x
    extras = output_padding or (None,) * rank
    pads = [_keras_pads(k, s, d, padding, e) for k, s, d, e in
            zip(kernel.shape[:rank], strides, dilations, extras)]
    padded = np.pad(dilated, [(0, 0), *pads, (0, 0)])
    spans = [(k - 1) * d + 1 for k, d in zip(kernel.shape[:rank], dilations)]
    out = [p - s + 1 for p, s in zip(padded.shape[1:-1], spans)]
    y = np.zeros((x.shape[0], *out, kernel.shape[-2]))
    flipped = kernel[tuple(slice(None, None, -1) for _ in range(rank))]
    for taps in itertools.product(*[range(k) for k in kernel.shape[:rank]]):
        window = tuple(slice(t * d, t * d + o) for t, d, o in zip(taps, dilations, out))
        y += padded[(slice(None), *window)] @ flipped[taps].T
    return y


CASES = [
    (2, {"kernel_size": 3, "strides": 2, "padding": "same"}),
    (2, {"kernel_size": 3, "strides": 2}),
    (2, {"kernel_size": (2, 3), "strides": (2, 3), "padding": "same", "output_padding": (1, 2)}),
    (2, {"kernel_size": (4, 3), "strides": (3, 1), "output_padding": (2, 0)}),
    (2, {"kernel_size": 3, "dilation_rate": 2, "padding": "same"}),
    (1, {"kernel_size": 4, "strides": 3, "padding": "same", "output_padding": 1}),
    (1, {"kernel_size": 2, "strides": 1}),
    (3, {"kernel_size": (3, 2, 2), "strides": (2, 1, 2), "padding": "same"}),
    (3, {"kernel_size": (2, 3, 1), "strides": (3, 2, 1), "output_padding": (1, 1, 0)}),
    (3, {"kernel_size": 3, "dilation_rate": (2, 1, 1), "padding": "same"}),
]
SHAPES = {1: (2, 5, 3), 2: (2, 5, 4, 3), 3: (2, 4, 5, 3, 2)}


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("rank, args", CASES)
def test_matches_numpy(rank, args, backend, monkeypatch):
    monkeypatch.setenv("NNCOMPILE_BACKEND", backend)
    layer = CLASSES[rank](4, bias_initializer="random_normal", **args)
    x = random_array(SHAPES[rank], 0)
    y = layer(x)
    kernel, bias = layer.get_weights()
    assert kernel.shape == layer.kernel_size + (4, SHAPES[rank][-1])
    want = transpose_numpy(x, kernel, layer.strides, layer.dilation_rate, layer.padding,
                           layer.output_padding) + bias
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


def _step_forward(layer_args, rank):
    def forward(weights, x):
        kernel, bias = weights
        y = transpose_numpy(x, kernel, (layer_args.get("strides", 1),) * rank, (1,) * rank,
                            layer_args.get("padding", "valid")) + bias
        return y.reshape(len(x), -1)
    return forward


@pytest.mark.parametrize("rank, args", [(1, {"strides": 2, "padding": "same"}),
                                        (2, {"strides": 2}), (3, {"padding": "same"})])
def test_sgd_step_follows_finite_differences(rank, args, monkeypatch):
    monkeypatch.setenv("NNCOMPILE_BACKEND", "reference")
    shape = SHAPES[rank][1:-1][:rank]
    x = random_array((2, *[min(n, 3) for n in shape], 2), 1)
    model = keras.Sequential([keras.Input(x.shape[1:]),
                              CLASSES[rank](2, 2, bias_initializer="random_normal", **args),
                              layers.Flatten()])
    y = random_array((2, model.output_shape[-1]), 2)
    check_sgd_step(model, x, y, _step_forward(args, rank))


def _decoder():
    return keras.Sequential([keras.Input((3, 4)), layers.Conv1DTranspose(2, 3, strides=2),
                             layers.Reshape((7, 1, 2)),
                             layers.Conv2DTranspose(3, 2, strides=(1, 2), padding="same",
                                                    activation="relu"),
                             layers.Reshape((7, 2, 1, 3)),
                             layers.Conv3DTranspose(2, (1, 2, 2), output_padding=(0, 1, 0),
                                                    strides=(1, 2, 1)),
                             layers.Flatten()])


def test_compiled_matches_reference(monkeypatch):
    check_compiled_matches_reference(_decoder(), random_array((5, 3, 4), 3), monkeypatch)


def test_trains_in_fit_and_saves(tmp_path):
    model = _decoder()
    x = random_array((8, 3, 4), 4)
    check_fit_and_files(model, x, random_array((8, model.output_shape[-1]), 5), tmp_path)


def test_real_keras_files_load_and_predict():
    check_real_keras_files("transpose")


@pytest.mark.parametrize("layer", [
    layers.Conv2DTranspose(4, 3, strides=2, padding="same", output_padding=1, use_bias=False),
    layers.Conv1DTranspose(2, 5, dilation_rate=2, activation="relu", kernel_regularizer="l2"),
    layers.Conv3DTranspose(3, (1, 2, 3), strides=(1, 2, 2), kernel_initializer="he_normal")])
def test_configs_round_trip(layer):
    config = layer.get_config()
    assert config["output_padding"] == layer.output_padding
    assert type(layer).from_config(config).get_config() == config


@pytest.mark.parametrize("make, message", [
    (lambda: layers.Conv2DTranspose(0, 3), "`filters`"),
    (lambda: layers.Conv2DTranspose(2, 3, strides=2, output_padding=2),
     "`output_padding` must be strictly less than `strides`"),
    (lambda: layers.Conv1DTranspose(2, 3, strides=2, dilation_rate=2), "`dilation_rate > 1`"),
    (lambda: layers.Conv3DTranspose(2, 3, padding="causal"), "`padding`"),
    (lambda: layers.Conv2DTranspose(2, 3, output_padding=-1), "`output_padding`"),
    (lambda: layers.Conv2DTranspose(2, (3, 3, 3)), "`kernel_size`"),
])
def test_bad_arguments_name_the_layer_and_argument(make, message):
    with pytest.raises(ValueError, match=message) as info:
        make()
    assert "Transpose)" in str(info.value)


def test_wrong_input_rank_is_refused():
    with pytest.raises(ValueError, match="expected ndim=4"):
        layers.Conv2DTranspose(2, 3)(np.zeros((2, 5, 3), "float32"))

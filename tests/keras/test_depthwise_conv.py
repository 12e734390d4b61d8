"""DepthwiseConv1D, DepthwiseConv2D, SeparableConv1D and SeparableConv2D: against numpy written
here (forward, and the gradients of a training step by finite differences), compiled vs the
reference interpreter, and against models made by real Keras 3
(tests/fixtures/keras/depthwise/make_depthwise.py; DepthwiseConv1D's in
tests/fixtures/keras/spatial/, checked in test_volume_layers.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from finite_differences import gradients
from layer_checks import check_compiled_matches_reference, check_fit_and_files, check_sgd_step
from nncompile import keras
from nncompile.keras import layers

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "keras" / "depthwise"
LR = 0.1


def _depthwise_numpy(x, kernel, strides=(1, 1), dilation=(1, 1)):
    """Valid depthwise convolution by loops: output channel c * multiplier + m is filter m of
    input channel c, as in Keras (kernel (kh, kw, channels, multiplier))."""
    kh, kw, channels, multiplier = kernel.shape
    span_h, span_w = (kh - 1) * dilation[0] + 1, (kw - 1) * dilation[1] + 1
    out_h = (x.shape[1] - span_h) // strides[0] + 1
    out_w = (x.shape[2] - span_w) // strides[1] + 1
    y = np.zeros((x.shape[0], out_h, out_w, channels * multiplier))
    for i in range(out_h):
        for j in range(out_w):
            for c in range(channels):
                for m in range(multiplier):
                    for a in range(kh):
                        for b in range(kw):
                            y[:, i, j, c * multiplier + m] += kernel[a, b, c, m] * x[
                                :, i * strides[0] + a * dilation[0], j * strides[1] + b * dilation[1], c]
    return y


def _x(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_depthwise_conv2d_matches_numpy(backend, monkeypatch):
    monkeypatch.setenv("NNCOMPILE_BACKEND", backend)
    layer = layers.DepthwiseConv2D((3, 2), strides=(2, 1), depth_multiplier=2,
                                   bias_initializer="random_normal")
    x = _x((2, 7, 6, 3), 0)
    y = layer(x)
    kernel, bias = layer.get_weights()
    np.testing.assert_allclose(y, _depthwise_numpy(x, kernel, (2, 1)) + bias, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_separable_conv2d_matches_numpy(backend, monkeypatch):
    monkeypatch.setenv("NNCOMPILE_BACKEND", backend)
    layer = layers.SeparableConv2D(4, 2, dilation_rate=2, depth_multiplier=3, activation="relu",
                                   bias_initializer="random_normal")
    x = _x((2, 6, 5, 2), 1)
    y = layer(x)
    depthwise, pointwise, bias = layer.get_weights()
    assert (depthwise.shape, pointwise.shape) == ((2, 2, 2, 3), (1, 1, 6, 4))
    want = np.maximum(_depthwise_numpy(x, depthwise, dilation=(2, 2)) @ pointwise[0, 0] + bias, 0)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_depthwise_conv1d_matches_numpy(backend, monkeypatch):
    monkeypatch.setenv("NNCOMPILE_BACKEND", backend)
    layer = layers.DepthwiseConv1D(3, strides=2, padding="same", depth_multiplier=2,
                                   bias_initializer="random_normal")
    x = _x((2, 7, 3), 5)
    y = layer(x)
    kernel, bias = layer.get_weights()
    assert kernel.shape == (3, 3, 2)
    padded = np.pad(x, ((0, 0), (1, 1), (0, 0)))[:, None]
    want = _depthwise_numpy(padded, kernel[None], (1, 2))[:, 0] + bias
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


def test_depthwise_conv1d_step_follows_finite_differences(monkeypatch):
    monkeypatch.setenv("NNCOMPILE_BACKEND", "reference")
    model = keras.Sequential([keras.Input((5, 2)),
                              layers.DepthwiseConv1D(2, dilation_rate=2, depth_multiplier=2,
                                                     bias_initializer="random_normal"),
                              layers.Flatten()])
    x = _x((2, 5, 2), 6)

    def forward(weights, x):
        kernel, bias = weights
        return (_depthwise_numpy(x[:, None], kernel[None], dilation=(1, 2))[:, 0] + bias).reshape(2, -1)

    check_sgd_step(model, x, _x((2, 12), 7), forward)


def test_depthwise_conv1d_compiles_trains_and_saves(monkeypatch, tmp_path):
    def model():
        return keras.Sequential([keras.Input((9, 3)),
                                 layers.DepthwiseConv1D(3, padding="same", depth_multiplier=2,
                                                        activation="tanh"),
                                 layers.DepthwiseConv1D(2, strides=2), layers.Flatten()])
    x = _x((8, 9, 3), 8)
    check_compiled_matches_reference(model(), x, monkeypatch)
    monkeypatch.setenv("NNCOMPILE_BACKEND", "cpu")
    check_fit_and_files(model(), x, _x((8, 24), 9), tmp_path)


def test_separable_conv1d_same_padding_matches_numpy():
    layer = layers.SeparableConv1D(3, 3, padding="same", depth_multiplier=2, use_bias=False)
    x = _x((2, 5, 2), 2)
    y = layer(x)
    depthwise, pointwise = layer.get_weights()
    padded = np.pad(x, ((0, 0), (1, 1), (0, 0)))[:, None]
    want = _depthwise_numpy(padded, depthwise[None])[:, 0] @ pointwise[0]
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


def test_separable_step_follows_finite_differences(monkeypatch):
    monkeypatch.setenv("NNCOMPILE_BACKEND", "reference")
    model = keras.Sequential([keras.Input((4, 4, 2)),
                              layers.SeparableConv2D(2, 2, depth_multiplier=2,
                                                     bias_initializer="random_normal"),
                              layers.DepthwiseConv2D(2, bias_initializer="random_normal"),
                              layers.Flatten()])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=LR), loss="mse")
    weights = [w.astype(np.float64) for w in model.get_weights()]
    x = _x((2, 4, 4, 2), 3).astype(np.float64)
    y = _x((2, 8), 4).astype(np.float64)

    def forward():
        depthwise, pointwise, bias, kernel, bias_2 = weights
        hidden = _depthwise_numpy(x, depthwise) @ pointwise[0, 0] + bias
        return (_depthwise_numpy(hidden, kernel) + bias_2).reshape(2, -1)

    def loss():
        return np.mean((forward() - y) ** 2)

    np.testing.assert_allclose(model.predict(x, verbose=0), forward(), rtol=1e-5, atol=1e-5)
    grads = gradients(loss, weights, 1e-6)
    model.train_on_batch(x.astype(np.float32), y.astype(np.float32))
    for got, weight, grad in zip(model.get_weights(), weights, grads):
        np.testing.assert_allclose(got, weight - LR * grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["depthwise", "separable1d"])
def test_real_keras_files_load_and_predict(name, tmp_path):
    data = np.load(FIXTURES / f"{name}.npz")
    model = keras.models.load_model(FIXTURES / f"{name}.keras")
    got = model.predict(data["x"], verbose=0)
    np.testing.assert_allclose(got, data["y"], rtol=1e-5, atol=1e-5)
    model.save(tmp_path / "again.keras")
    again = keras.models.load_model(tmp_path / "again.keras")
    np.testing.assert_array_equal(again.predict(data["x"], verbose=0), got)


@pytest.mark.parametrize("layer", [
    layers.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=4, use_bias=False,
                           depthwise_initializer="he_normal"),
    layers.SeparableConv2D(8, (3, 1), dilation_rate=2, activation="relu",
                           pointwise_regularizer="l2"),
    layers.SeparableConv1D(2, 5, strides=2, depth_multiplier=3),
    layers.DepthwiseConv1D(4, dilation_rate=2, depth_multiplier=2, depthwise_regularizer="l1")])
def test_configs_round_trip(layer):
    again = type(layer).from_config(layer.get_config())
    assert again.get_config() == layer.get_config()


@pytest.mark.parametrize("make, message", [
    (lambda: layers.DepthwiseConv2D(3, depth_multiplier=0), "`depth_multiplier`"),
    (lambda: layers.SeparableConv2D(0, 3), "`filters`"),
    (lambda: layers.SeparableConv1D(2, 3, padding="causal"), "padding"),
    (lambda: layers.DepthwiseConv2D((3, 3, 3)), "kernel_size"),
    (lambda: layers.DepthwiseConv1D(3, padding="causal"), "DepthwiseConv1D.*padding"),
])
def test_bad_arguments_name_the_argument(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_wrong_input_rank_is_refused():
    with pytest.raises(ValueError, match="DepthwiseConv2D"):
        layers.DepthwiseConv2D(3)(np.zeros((2, 5, 3), "float32"))


def test_keras_other_names_of_the_separable_convolutions():
    assert layers.SeparableConvolution1D is layers.SeparableConv1D
    assert layers.SeparableConvolution2D is layers.SeparableConv2D

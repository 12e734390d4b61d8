"""The 3-D layers: Conv3D, MaxPooling3D, AveragePooling3D, GlobalAveragePooling3D,
GlobalMaxPooling3D, ZeroPadding3D, UpSampling3D, Cropping3D; against numpy written here (forward,
and the gradients of a training step by finite differences), compiled vs reference, fit and
files, and real Keras 3's files (tests/fixtures/keras/spatial/make_spatial.py)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from layer_checks import (check_compiled_matches_reference, check_fit_and_files,
                          check_real_keras_files, check_sgd_step, random_array)
from nncompile import keras
from nncompile.keras import layers


def _same_pads(size, window, stride, dilation=1):
    span = (window - 1) * dilation + 1
    total = max((-(-size // stride) - 1) * stride + span - size, 0)
    return total // 2, total - total // 2


def conv3d_numpy(x, kernel, strides=(1, 1, 1), dilations=(1, 1, 1), padding="valid", groups=1):
    """Correlation of x (N, D, H, W, C) with kernel (kd, kh, kw, C / groups, F), tap by tap."""
    if padding == "same":
        x = np.pad(x, [(0, 0), *[_same_pads(n, k, s, d) for n, k, s, d in
                                 zip(x.shape[1:4], kernel.shape[:3], strides, dilations)], (0, 0)])
    out = [(n - (k - 1) * d - 1) // s + 1
           for n, k, s, d in zip(x.shape[1:4], kernel.shape[:3], strides, dilations)]
    cg, f = kernel.shape[3], kernel.shape[4]
    fg = f // groups
    y = np.zeros((x.shape[0], *out, f))
    for taps in itertools.product(*[range(k) for k in kernel.shape[:3]]):
        window = x[(slice(None), *[slice(t * d, t * d + (o - 1) * s + 1, s) for t, d, o, s in
                                   zip(taps, dilations, out, strides)])]
        for g in range(groups):
            y[..., g * fg:(g + 1) * fg] += (window[..., g * cg:(g + 1) * cg]
                                            @ kernel[taps][:, g * fg:(g + 1) * fg])
    return y


def pool3d_numpy(x, window, strides, padding, reduce):
    """max or mean (`reduce`) over each window's real elements, by loops over the outputs."""
    pads = ([_same_pads(n, w, s) for n, w, s in zip(x.shape[1:4], window, strides)]
            if padding == "same" else [(0, 0)] * 3)
    out = [(n + a + b - w) // s + 1 for n, (a, b), w, s in zip(x.shape[1:4], pads, window, strides)]
    y = np.zeros((x.shape[0], *out, x.shape[-1]))
    for index in np.ndindex(*out):
        box = tuple(slice(max(i * s - a, 0), min(i * s - a + w, n)) for i, s, (a, _), w, n in
                    zip(index, strides, pads, window, x.shape[1:4]))
        y[(slice(None), *index)] = reduce(x[(slice(None), *box)], axis=(1, 2, 3))
    return y


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("args", [
    {"kernel_size": (2, 3, 2), "strides": (2, 1, 2), "padding": "same"},
    {"kernel_size": 3, "dilation_rate": (1, 2, 1), "groups": 2},
    {"kernel_size": (1, 2, 3), "strides": (1, 3, 2)},
])
def test_conv3d_matches_numpy(args, backend, monkeypatch):
    monkeypatch.setenv("NNCOMPILE_BACKEND", backend)
    layer = layers.Conv3D(4, bias_initializer="random_normal", **args)
    x = random_array((2, 4, 5, 6, 2), 0)
    y = layer(x)
    kernel, bias = layer.get_weights()
    assert kernel.shape == layer.kernel_size + (2 // layer.groups, 4)
    want = conv3d_numpy(x, kernel, layer.strides, layer.dilation_rate, layer.padding,
                        layer.groups) + bias
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("kind, reduce", [("Max", np.max), ("Average", np.mean)])
@pytest.mark.parametrize("window, strides, padding", [
    ((2, 2, 3), (1, 2, 2), "same"), ((3, 2, 2), (2, 2, 2), "same"), ((2, 2, 2), None, "valid")])
def test_pooling3d_matches_numpy(kind, reduce, window, strides, padding, backend, monkeypatch):
    monkeypatch.setenv("NNCOMPILE_BACKEND", backend)
    layer = getattr(layers, f"{kind}Pooling3D")(window, strides=strides, padding=padding)
    x = random_array((2, 4, 5, 6, 3), 1)
    want = pool3d_numpy(x, window, strides or window, padding, reduce)
    np.testing.assert_allclose(layer(x), want, rtol=1e-5, atol=1e-6)


def test_global_pooling3d_and_reshaping_match_numpy():
    x = random_array((2, 3, 4, 5, 2), 2)
    np.testing.assert_allclose(layers.GlobalAveragePooling3D()(x), x.mean(axis=(1, 2, 3)),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layers.GlobalMaxPooling3D(keepdims=True)(x),
                               x.max(axis=(1, 2, 3), keepdims=True))
    np.testing.assert_array_equal(layers.ZeroPadding3D((1, (0, 2), 0))(x),
                                  np.pad(x, [(0, 0), (1, 1), (0, 2), (0, 0), (0, 0)]))
    np.testing.assert_array_equal(layers.ZeroPadding3D()(x),
                                  np.pad(x, [(0, 0), (1, 1), (1, 1), (1, 1), (0, 0)]))
    np.testing.assert_array_equal(layers.UpSampling3D((1, 2, 3))(x),
                                  x.repeat(2, axis=2).repeat(3, axis=3))
    np.testing.assert_array_equal(layers.Cropping3D(((1, 0), 1, (0, 2)))(x), x[:, 1:, 1:-1, :-2])
    np.testing.assert_array_equal(layers.Cropping3D()(x), x[:, 1:-1, 1:-1, 1:-1])


def test_sgd_step_follows_finite_differences(monkeypatch):
    monkeypatch.setenv("NNCOMPILE_BACKEND", "reference")
    model = keras.Sequential([
        keras.Input((3, 4, 3, 2)),
        layers.Conv3D(2, 2, padding="same", groups=2, bias_initializer="random_normal"),
        layers.AveragePooling3D((2, 1, 2), strides=1, padding="same"),
        layers.MaxPooling3D((1, 2, 1)), layers.Flatten()])
    x = random_array((2, 3, 4, 3, 2), 3)
    y = random_array((2, model.output_shape[-1]), 4)

    def forward(weights, x):
        kernel, bias = weights
        h = conv3d_numpy(x, kernel, padding="same", groups=2) + bias
        h = pool3d_numpy(h, (2, 1, 2), (1, 1, 1), "same", np.mean)
        return pool3d_numpy(h, (1, 2, 1), (1, 2, 1), "valid", np.max).reshape(2, -1)

    check_sgd_step(model, x, y, forward)


def test_reshaping_and_global_pooling_gradients_follow_finite_differences(monkeypatch):
    monkeypatch.setenv("NNCOMPILE_BACKEND", "reference")
    volume = keras.Input((3, 2, 3, 2))
    v = layers.Conv3D(2, (1, 2, 1), bias_initializer="random_normal")(volume)
    v = layers.ZeroPadding3D((1, 0, (1, 0)))(v)
    v = layers.Cropping3D(((1, 0), 0, (0, 1)))(layers.UpSampling3D((1, 2, 1))(v))
    pooled = [layers.GlobalAveragePooling3D()(v), layers.GlobalMaxPooling3D()(v)]
    model = keras.Model(volume, layers.Concatenate()(pooled))
    x = random_array((2, 3, 2, 3, 2), 8)

    def forward(weights, x):
        kernel, bias = weights
        h = conv3d_numpy(x, kernel) + bias
        h = np.pad(h, [(0, 0), (1, 1), (0, 0), (1, 0), (0, 0)]).repeat(2, axis=2)[:, 1:, :, :-1]
        return np.concatenate([h.mean(axis=(1, 2, 3)), h.max(axis=(1, 2, 3))], axis=1)

    check_sgd_step(model, x, random_array((2, 4), 9), forward)


def _volume_model():
    return keras.Sequential([
        keras.Input((4, 5, 6, 2)), layers.ZeroPadding3D(1),
        layers.Conv3D(3, 3, strides=2, padding="same", activation="relu"),
        layers.MaxPooling3D((1, 2, 2)), layers.UpSampling3D((2, 1, 1)),
        layers.Cropping3D(((1, 0), 0, 0)), layers.AveragePooling3D(2, padding="same"),
        layers.GlobalMaxPooling3D(), layers.Dense(2)])


def _grouped_model():
    return keras.Sequential([
        keras.Input((4, 5, 6, 2)), layers.Conv3D(4, (2, 3, 2), dilation_rate=(2, 1, 1), groups=2),
        layers.AveragePooling3D((2, 2, 3), strides=(1, 2, 2), padding="same"),
        layers.GlobalAveragePooling3D()])


@pytest.mark.parametrize("make", [_grouped_model, _volume_model])
def test_compiled_matches_reference(make, monkeypatch):
    check_compiled_matches_reference(make(), random_array((3, 4, 5, 6, 2), 5), monkeypatch)


def test_trains_in_fit_and_saves(tmp_path):
    x = random_array((8, 4, 5, 6, 2), 6)
    check_fit_and_files(_volume_model(), x, random_array((8, 2), 7), tmp_path)


def test_real_keras_files_load_and_predict():
    check_real_keras_files("volumes")


@pytest.mark.parametrize("layer", [
    layers.Conv3D(4, (1, 2, 3), strides=(1, 2, 2), groups=2, kernel_regularizer="l2"),
    layers.MaxPooling3D((1, 2, 2), padding="same"), layers.AveragePooling3D(3, strides=1),
    layers.GlobalAveragePooling3D(keepdims=True), layers.GlobalMaxPooling3D(),
    layers.ZeroPadding3D(((1, 0), 2, (0, 3))), layers.Cropping3D(2), layers.UpSampling3D(3)])
def test_configs_round_trip(layer):
    config = layer.get_config()
    assert type(layer).from_config(config).get_config() == config


@pytest.mark.parametrize("make, message", [
    (lambda: layers.Conv3D(3, 2, groups=2), "evenly divisible by the number of groups"),
    (lambda: layers.Conv3D(2, (2, 2)), "`kernel_size`"),
    (lambda: layers.Conv3D(2, 2, strides=2, dilation_rate=2), "`dilation_rate > 1`"),
    (lambda: layers.MaxPooling3D(padding="full"), "`padding`"),
    (lambda: layers.AveragePooling3D((2, 2)), "`pool_size`"),
    (lambda: layers.ZeroPadding3D((1, 2)), r"tuple of 3 ints \(symmetric_dim1_padding"),
    (lambda: layers.Cropping3D(((1, 1), (1, -1), 0)), "`cropping`"),
    (lambda: layers.UpSampling3D((2, 0, 2)), "`size`"),
])
def test_bad_arguments_name_the_layer_and_argument(make, message):
    with pytest.raises(ValueError, match=message) as info:
        make()
    assert "3D)" in str(info.value)


def test_keras_3_aliases():
    assert layers.Convolution3D is layers.Conv3D and layers.MaxPool3D is layers.MaxPooling3D
    assert layers.AvgPool3D is layers.AveragePooling3D
    assert layers.GlobalAvgPool3D is layers.GlobalAveragePooling3D
    assert layers.GlobalMaxPool3D is layers.GlobalMaxPooling3D
    assert layers.Convolution3DTranspose is layers.Conv3DTranspose


def test_average_pooling3d_needs_a_pool_size():
    with pytest.raises(TypeError, match="pool_size"):
        layers.AveragePooling3D()


def test_wrong_input_rank_is_refused():
    with pytest.raises(ValueError, match="expected ndim=5"):
        layers.Conv3D(2, 3)(np.zeros((2, 5, 5, 3), "float32"))


@pytest.mark.parametrize("layer", [layers.Conv3D(2, 3), layers.MaxPooling3D()])
def test_unknown_depth_is_refused_by_name(layer):
    with pytest.raises(ValueError, match="depth is unknown"):
        keras.Sequential([keras.Input((None, 6, 6, 3)), layer])


def test_a_window_deeper_than_the_input_is_refused():
    with pytest.raises(ValueError, match="window of depth spans 3"):
        keras.Sequential([keras.Input((2, 6, 6, 3)), layers.Conv3D(2, 3)])

"""GroupNormalization: against numpy written here (forward, and the gradients of a training step
by finite differences), compiled vs reference, fit and files, and real Keras 3's files
(tests/fixtures/keras/spatial/make_spatial.py)."""
from __future__ import annotations

import numpy as np
import pytest

from layer_checks import (check_compiled_matches_reference, check_fit_and_files,
                          check_real_keras_files, check_sgd_step, random_array)
from nncompile import keras
from nncompile.keras import layers


def group_norm_numpy(x, groups, axis=-1, epsilon=1e-3, gamma=None, beta=None):
    """Each sample's channels along `axis` cut into `groups` consecutive blocks, each block
    normalized over its channels and all other non-batch axes."""
    moved = np.moveaxis(x, axis, -1)
    blocks = moved.reshape(moved.shape[:-1] + (groups, -1))
    reduced = tuple(range(1, blocks.ndim - 2)) + (blocks.ndim - 1,)
    mean = blocks.mean(axis=reduced, keepdims=True)
    var = blocks.var(axis=reduced, keepdims=True)
    y = ((blocks - mean) / np.sqrt(var + epsilon)).reshape(moved.shape)
    y = y * (1 if gamma is None else gamma) + (0 if beta is None else beta)
    return np.moveaxis(y, -1, axis)


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("shape, args, groups", [
    ((2, 4, 5, 6), {"groups": 3}, 3),
    ((2, 4, 5, 6), {"groups": -1, "epsilon": 0.1}, 6),
    ((3, 6, 4), {"groups": 2, "axis": 1}, 2),
    ((3, 8), {"groups": 4, "center": False}, 4),
])
def test_matches_numpy(shape, args, groups, backend, monkeypatch):
    monkeypatch.setenv("NNCOMPILE_BACKEND", backend)
    layer = layers.GroupNormalization(gamma_initializer="random_normal",
                                      beta_initializer="random_normal", **args)
    x = random_array(shape, 0) * 3 + 1
    y = layer(x)
    weights = layer.get_weights()
    gamma, beta = weights if len(weights) == 2 else (weights[0], None)
    want = group_norm_numpy(x, groups, args.get("axis", -1), args.get("epsilon", 1e-3), gamma, beta)
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)
    assert layer.groups == groups


def test_sgd_step_follows_finite_differences(monkeypatch):
    monkeypatch.setenv("NNCOMPILE_BACKEND", "reference")
    model = keras.Sequential([keras.Input((3, 4)), layers.Dense(4),
                              layers.GroupNormalization(2, beta_initializer="random_normal"),
                              layers.Flatten()])
    x = random_array((2, 3, 4), 1)

    def forward(weights, x):
        kernel, bias, gamma, beta = weights
        return group_norm_numpy(x @ kernel + bias, 2, gamma=gamma, beta=beta).reshape(2, -1)

    check_sgd_step(model, x, random_array((2, 12), 2), forward)


def _model():
    return keras.Sequential([keras.Input((5, 6, 4)), layers.Conv2D(6, 3, padding="same"),
                             layers.GroupNormalization(3), layers.ReLU(),
                             layers.GroupNormalization(-1, axis=1, scale=False),
                             layers.GlobalAveragePooling2D(), layers.Dense(2)])


def test_compiled_matches_reference(monkeypatch):
    check_compiled_matches_reference(_model(), random_array((4, 5, 6, 4), 3), monkeypatch)


def test_trains_in_fit_and_saves(tmp_path):
    check_fit_and_files(_model(), random_array((8, 5, 6, 4), 4), random_array((8, 2), 5), tmp_path)


def test_real_keras_files_load_and_predict():
    check_real_keras_files("group_norm")


def test_config_is_keras_3s():
    layer = layers.GroupNormalization(-1, axis=1, epsilon=0.01, center=False,
                                      gamma_regularizer="l2")
    assert type(layer).from_config(layer.get_config()).get_config() == layer.get_config()
    layer.build((None, 4, 3))
    config = layer.get_config()
    assert (config["groups"], config["axis"], config["epsilon"]) == (4, 1, 0.01)
    assert (config["center"], config["scale"]) == (False, True)
    assert [w.shape for w in layer.get_weights()] == [(4,)]


@pytest.mark.parametrize("make, message", [
    (lambda: layers.GroupNormalization(0), "invalid value for argument `groups`"),
    (lambda: layers.GroupNormalization(2.0), "invalid value for argument `groups`"),
    (lambda: layers.GroupNormalization(axis="last"), "`axis`"),
    (lambda: layers.GroupNormalization(epsilon=-1.0), "`epsilon`"),
    (lambda: layers.GroupNormalization(2, center="yes"), "`center`"),
])
def test_bad_arguments_name_the_layer_and_argument(make, message):
    with pytest.raises(ValueError, match=message) as info:
        make()
    assert "(GroupNormalization)" in str(info.value)


@pytest.mark.parametrize("groups, axis, message", [
    (4, -1, r"Number of groups \(4\) must be a multiple"),
    (8, -1, r"Number of groups \(8\) cannot be more than the number of channels \(6\)"),
    (2, 0, "batch axis"),
    (2, 3, "out of range"),
])
def test_groups_that_do_not_fit_the_channels_are_refused(groups, axis, message):
    with pytest.raises(ValueError, match=message):
        layers.GroupNormalization(groups, axis=axis)(np.zeros((2, 3, 6), "float32"))


def test_the_mask_passes_on_as_in_keras():
    ids = np.array([[3, 1, 0, 0], [2, 0, 0, 0]], "int32")
    tokens = keras.Input((4,), dtype="int32")
    hidden = layers.Embedding(5, 4, mask_zero=True)(tokens)
    normalized = layers.GroupNormalization(2)(hidden)
    model = keras.Model(tokens, layers.GlobalAveragePooling1D()(normalized))
    embedded = model.layers[1].get_weights()[0][ids]
    kept = group_norm_numpy(embedded, 2) * (ids > 0)[..., None]   # statistics over all steps
    want = kept.sum(1) / (ids > 0).sum(1, keepdims=True)
    np.testing.assert_allclose(model.predict(ids, verbose=0), want, rtol=1e-4, atol=1e-5)

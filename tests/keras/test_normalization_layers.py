"""BatchNormalization and LayerNormalization against the numpy formulas written here; RMSNormalization
against its formula and files made by real Keras (tests/fixtures/keras/rms)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nncompile import keras
from nncompile.keras import constraints, layers
from nncompile.keras.layers.normalization import BatchNormalization, LayerNormalization
from nncompile.keras.models import Sequential


def _data(shape, seed=0):
    return (np.random.default_rng(seed).standard_normal(shape) * 3 + 1).astype(np.float32)


def _along(param, axis, rank):
    """A per-channel vector shaped to broadcast along `axis` of a rank-`rank` array."""
    shape = [1] * rank
    shape[axis] = -1
    return np.reshape(param, shape)


def _set_random_weights(layer, seed):
    rng = np.random.default_rng(seed)
    values = []
    for var in layer.weights:
        low = 0.5 if var.name == "moving_variance" else -2.0
        values.append(rng.uniform(low, 2.0, var.shape).astype(np.float32))
    layer.set_weights(values)
    return values


@pytest.mark.parametrize("shape, axis", [((6, 4), -1), ((3, 5, 4, 2), 1), ((3, 2, 5), 2),
                                         ((3, 2, 5), -2), ((2, 3, 3, 4), 3)])
def test_batch_norm_inference_uses_moving_statistics(shape, axis):
    x = _data(shape)
    layer = BatchNormalization(axis=axis, epsilon=0.01)
    layer.build((None,) + shape[1:])
    gamma, beta, mean, var = _set_random_weights(layer, seed=len(shape))
    a, rank = axis % len(shape), len(shape)
    expected = ((x - _along(mean, a, rank)) / np.sqrt(_along(var, a, rank) + 0.01)
                * _along(gamma, a, rank) + _along(beta, a, rank))
    np.testing.assert_allclose(layer(x), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer(x, training=False), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape, axis", [((16, 4), -1), ((4, 3, 5, 2), 1), ((5, 2, 3), -1)])
def test_batch_norm_training_uses_batch_statistics(shape, axis):
    x = _data(shape, seed=1)
    layer = BatchNormalization(axis=axis)
    layer.build((None,) + shape[1:])
    gamma, beta, _, _ = _set_random_weights(layer, seed=2)
    a, rank = axis % len(shape), len(shape)
    others = tuple(d for d in range(rank) if d != a)
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=others, keepdims=True)
    var = ((x64 - mean) ** 2).mean(axis=others, keepdims=True)
    expected = (x64 - mean) / np.sqrt(var + 1e-3) * _along(gamma, a, rank) + _along(beta, a, rank)
    np.testing.assert_allclose(layer(x, training=True), expected, rtol=1e-4, atol=1e-4)


def test_frozen_batch_norm_uses_moving_statistics_even_when_training():
    x = _data((8, 3))
    layer = BatchNormalization()
    layer.build((None, 3))
    _set_random_weights(layer, seed=0)
    layer.trainable = False
    np.testing.assert_array_equal(layer(x, training=True), layer(x))


@pytest.mark.parametrize("center, scale, names", [
    (True, True, ["gamma", "beta", "moving_mean", "moving_variance"]),
    (False, True, ["gamma", "moving_mean", "moving_variance"]),
    (True, False, ["beta", "moving_mean", "moving_variance"]),
    (False, False, ["moving_mean", "moving_variance"])])
def test_batch_norm_weights_in_keras_order(center, scale, names):
    x = _data((5, 2, 3))
    layer = BatchNormalization(center=center, scale=scale)
    layer.build((None, 2, 3))
    values = dict(zip(names, _set_random_weights(layer, seed=3)))
    assert [v.name for v in layer.weights] == names
    assert [v.name for v in layer.non_trainable_weights] == ["moving_mean", "moving_variance"]
    assert layer.count_params() == 3 * len(names)
    expected = ((x - values["moving_mean"]) / np.sqrt(values["moving_variance"] + 1e-3)
                * values.get("gamma", 1.0) + values.get("beta", 0.0))
    np.testing.assert_allclose(layer(x), expected, rtol=1e-5, atol=1e-5)


def test_batch_norm_default_initial_weights():
    layer = BatchNormalization()
    layer.build((None, 3))
    np.testing.assert_array_equal(np.stack(layer.get_weights()),
                                  [[1, 1, 1], [0, 0, 0], [0, 0, 0], [1, 1, 1]])


@pytest.mark.parametrize("shape, axis", [((4, 6), -1), ((2, 3, 4), [1, 2]), ((2, 3, 4), 1),
                                         ((2, 3, 4, 5), [-3, -1]), ((3, 5, 2), [-2]),
                                         ((2, 3, 4), [2, 1]), ((2, 3, 4, 5), [-1, 1])])
def test_layer_norm_matches_numpy(shape, axis):
    x = _data(shape, seed=4)
    layer = LayerNormalization(axis=axis, epsilon=1e-2)
    layer.build((None,) + shape[1:])
    rank = len(shape)
    given = [a % rank for a in ([axis] if isinstance(axis, int) else axis)]
    axes = sorted(given)
    gamma, beta = _set_random_weights(layer, seed=5)
    # As Keras: the weights follow the axis order given, and are reshaped (not transposed) to
    # broadcast against the input.
    assert gamma.shape == beta.shape == tuple(shape[a] for a in given)
    param_shape = [shape[d] if d in axes else 1 for d in range(rank)]
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=tuple(axes), keepdims=True)
    var = x64.var(axis=tuple(axes), keepdims=True)
    expected = ((x64 - mean) / np.sqrt(var + 1e-2) * gamma.reshape(param_shape)
                + beta.reshape(param_shape))
    np.testing.assert_allclose(layer(x), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape, axis, scale", [((4, 6), -1, True), ((2, 3, 4), [1, 2], False),
                                                ((2, 3, 4), [2, 1], True), ((3, 5, 2), 1, True)])
def test_layer_norm_rms_scaling_matches_numpy(shape, axis, scale):
    x = _data(shape, seed=10)
    layer = LayerNormalization(axis=axis, epsilon=1e-2, scale=scale, rms_scaling=True)
    layer.build((None,) + shape[1:])
    rank = len(shape)
    given = [a % rank for a in ([axis] if isinstance(axis, int) else axis)]
    assert [w.name for w in layer.weights] == ["gamma"]   # no beta, gamma even if scale=False
    (gamma,) = _set_random_weights(layer, seed=11)
    param_shape = [shape[d] if d in given else 1 for d in range(rank)]
    x64 = x.astype(np.float64)
    mean_square = (x64 ** 2).mean(axis=tuple(given), keepdims=True)
    expected = x64 / np.sqrt(mean_square + 1e-2) * gamma.reshape(param_shape)
    np.testing.assert_allclose(layer(x), expected, rtol=1e-4, atol=1e-5)


def test_layer_norm_without_center_and_scale_has_no_weights():
    x = _data((3, 7))
    layer = LayerNormalization(center=False, scale=False)
    y = layer(x)
    assert layer.weights == []
    x64 = x.astype(np.float64)
    expected = (x64 - x64.mean(1, keepdims=True)) / np.sqrt(x64.var(1, keepdims=True) + 1e-3)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)


def test_training_flag_does_not_change_layer_norm():
    x = _data((3, 7))
    layer = LayerNormalization()
    np.testing.assert_array_equal(layer(x, training=True), layer(x))


@pytest.mark.parametrize("make, shape, error, match", [
    (lambda: BatchNormalization(axis=3, name="bn"), (None, 4, 5), ValueError, "'bn'.*axis 3"),
    (lambda: LayerNormalization(axis=[1, -2], name="ln"), (None, 4, 5), ValueError, "duplicate"),
    (lambda: BatchNormalization(axis=0, name="bn0"), (None, 4), ValueError, "defined dimension"),
])
def test_bad_axes_name_the_layer(make, shape, error, match):
    with pytest.raises(error, match=match):
        make().build(shape)


def test_axis_must_be_an_integer():
    with pytest.raises(TypeError, match="BatchNormalization.*axis"):
        BatchNormalization(axis=[1, 2])
    with pytest.raises(TypeError, match="LayerNormalization.*axis"):
        LayerNormalization(axis=[])


def test_keras1_initializer_names_warn_and_match_new_names():
    x = _data((4, 3))
    with pytest.warns(DeprecationWarning) as record:
        old = BatchNormalization(gamma_init="zeros", beta_init="ones")
    assert sorted(str(w.message).split("`")[3] for w in record) == ["beta_initializer",
                                                                  "gamma_initializer"]
    new = BatchNormalization(gamma_initializer="zeros", beta_initializer="ones")
    np.testing.assert_array_equal(old(x), new(x))
    np.testing.assert_array_equal(old(x), np.ones_like(x))


@pytest.mark.parametrize("make, keys", [
    (lambda: BatchNormalization(axis=1, momentum=0.9, epsilon=1e-5, center=False, name="bn"),
     ("axis", "momentum", "epsilon", "center", "scale", "beta_initializer", "gamma_initializer",
      "moving_mean_initializer", "moving_variance_initializer")),
    (lambda: LayerNormalization(axis=[1, 2], epsilon=1e-4, scale=False),
     ("axis", "epsilon", "center", "scale", "rms_scaling", "beta_initializer",
      "gamma_initializer", "beta_constraint", "gamma_constraint")),
    (lambda: LayerNormalization(axis=[2, 1], rms_scaling=True, gamma_constraint="non_neg"),
     ("axis", "rms_scaling", "gamma_constraint")),
    (lambda: BatchNormalization(beta_constraint=constraints.MaxNorm(3), gamma_constraint="unit_norm"),
     ("beta_constraint", "gamma_constraint")),
])
def test_config_round_trip(make, keys):
    layer = make()
    config = layer.get_config()
    assert set(keys) <= set(config)
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    x = _data((2, 3, 4))
    layer.build((None, 3, 4))
    clone.build((None, 3, 4))
    clone.set_weights(_set_random_weights(layer, seed=6))
    np.testing.assert_array_equal(clone(x), layer(x))


@pytest.mark.parametrize("cls", [BatchNormalization, LayerNormalization])
def test_constraints_are_kept_on_gamma_and_beta(cls):
    layer = cls(beta_constraint="max_norm", gamma_constraint=constraints.NonNeg())
    layer.build((None, 3))
    assert isinstance(layer.beta.constraint, constraints.MaxNorm)
    assert layer.gamma.constraint is layer.gamma_constraint
    config = layer.get_config()
    assert config["gamma_constraint"]["class_name"] == "NonNeg"
    assert cls().get_config()["beta_constraint"] is None


def test_normalization_in_a_sequential_model_predicts_with_moving_statistics():
    model = Sequential([BatchNormalization(axis=1, input_shape=(3, 4)), LayerNormalization()])
    gamma, beta, mean, var = _set_random_weights(model.layers[0], seed=7)
    ln_gamma, ln_beta = _set_random_weights(model.layers[1], seed=8)
    assert model.count_params() == 4 * 3 + 2 * 4
    assert len(model.non_trainable_weights) == 2
    x = _data((5, 3, 4), seed=9).astype(np.float64)
    h = (x - mean[:, None]) / np.sqrt(var[:, None] + 1e-3) * gamma[:, None] + beta[:, None]
    h = (h - h.mean(-1, keepdims=True)) / np.sqrt(h.var(-1, keepdims=True) + 1e-3)
    np.testing.assert_allclose(model.predict(x.astype(np.float32)), h * ln_gamma + ln_beta,
                               rtol=1e-4, atol=1e-4)


def test_batch_normalization_training_call_updates_moving_statistics_like_keras():
    bn = BatchNormalization(momentum=0.9)
    x = np.random.default_rng(3).random((8, 5, 3)).astype("float32")
    bn(x, training=True)
    bn(2 * x, training=True)
    mean, var = x.mean(axis=(0, 1)), x.var(axis=(0, 1))
    want_mean = 0.9 * (0.1 * mean) + 0.1 * (2 * mean)
    want_var = 0.9 * (0.9 + 0.1 * var) + 0.1 * (4 * var)
    np.testing.assert_allclose(bn.moving_mean.numpy(), want_mean, rtol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), want_var, rtol=1e-5)
    before = bn.moving_mean.numpy().copy()
    bn(x, training=False)
    np.testing.assert_array_equal(bn.moving_mean.numpy(), before)


# --- RMSNormalization ---------------------------------------------------------------------------

RMS_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "keras" / "rms"


def test_rms_normalization_is_the_formula_in_numpy():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 3, 4)).astype(np.float32)
    layer = layers.RMSNormalization(axis=[2, 1], epsilon=0.01)
    y = layer(x)
    assert layer.axis == [1, 2] and layer.scale.shape == (3, 4)
    want = x / np.sqrt(np.mean(x.astype(np.float64) ** 2, axis=(1, 2), keepdims=True) + 0.01)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)
    scale = rng.uniform(0.5, 2.0, 4).astype(np.float32)
    last = layers.RMSNormalization()
    last.build((None, 3, 4))
    last.set_weights([scale])
    want = x / np.sqrt(np.mean(x.astype(np.float64) ** 2, axis=-1, keepdims=True) + 1e-6) * scale
    np.testing.assert_allclose(last(x), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("file", ["rms.keras", "rms.h5"])
def test_rms_normalization_files_of_keras_predict_and_train_as_keras(file):
    data = np.load(RMS_FIXTURES / "rms.npz")
    model = keras.models.load_model(RMS_FIXTURES / file)
    np.testing.assert_allclose(model.predict(data["x"], verbose=0), data["y"], rtol=1e-5, atol=1e-5)
    configs = json.loads(str(data["configs"]))
    for layer, config in zip(model.layers[1:3], configs):
        assert (layer.get_config()["axis"], layer.epsilon) == (config["axis"], config["epsilon"])
    model.train_on_batch(data["x"], data["t"])       # SGD(0.1), mse: the gradients through both
    for i, w in enumerate(model.get_weights()):
        np.testing.assert_allclose(w, data[f"next_{i}"], rtol=1e-5, atol=1e-6)


def test_rms_normalization_arguments_are_checked():
    with pytest.raises(TypeError, match="`axis` argument must be an integer"):
        layers.RMSNormalization(axis="last")
    with pytest.raises(ValueError, match="out of range"):
        layers.RMSNormalization(axis=3)(np.zeros((2, 3), np.float32))

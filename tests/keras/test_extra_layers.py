"""Identity, Rescaling, UnitNormalization, GaussianNoise, GaussianDropout and SpatialDropout: against numpy
written here, their gradients against finite differences, compiled vs the reference
interpreter, configs, and errors. (Real Keras 3 files with them: the `extras` fixture.)"""
from __future__ import annotations

import numpy as np
import pytest

from nncompile import keras
from nncompile.keras import layers

LR = 0.1


def _x(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_rescaling_identity_and_unit_normalization_match_numpy():
    x = _x((3, 2, 4))
    np.testing.assert_array_equal(layers.Identity()(x), x)
    pixels = np.arange(12, dtype=np.uint8).reshape(3, 4)
    np.testing.assert_allclose(layers.Rescaling(1 / 127.5, offset=-1.0)(pixels), pixels / 127.5 - 1,
                               rtol=1e-6)
    per_channel = [1.0, 2.0, 3.0, 4.0]
    np.testing.assert_allclose(layers.Rescaling(per_channel, offset=0.5)(x), x * per_channel + 0.5,
                               rtol=1e-6)
    np.testing.assert_allclose(layers.UnitNormalization()(x),
                               x / np.sqrt((x ** 2).sum(-1, keepdims=True)), rtol=1e-5)
    np.testing.assert_allclose(layers.UnitNormalization(axis=[1, 2])(x),
                               x / np.sqrt((x ** 2).sum((1, 2), keepdims=True)), rtol=1e-5)
    np.testing.assert_array_equal(layers.UnitNormalization()(np.zeros((2, 3), np.float32)), 0)


def _forward(kernels, x):
    """The test model in float64: Dense -> Rescaling(2, 0.5) -> UnitNormalization -> Dense."""
    hidden = (x @ kernels[0]) * 2 + 0.5
    hidden = hidden / np.sqrt(np.maximum((hidden ** 2).sum(-1, keepdims=True), 1e-12))
    return hidden @ kernels[1]


def test_one_sgd_step_follows_finite_differences(monkeypatch):
    monkeypatch.setenv("NNCOMPILE_BACKEND", "reference")
    rng = np.random.default_rng(4)
    model = keras.Sequential([keras.Input(shape=(4,)), layers.Dense(3, use_bias=False),
                              layers.Rescaling(2.0, offset=0.5), layers.UnitNormalization(),
                              layers.Identity(), layers.GaussianNoise(0.3), layers.Dense(2, use_bias=False)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=LR), loss="mse")
    kernels = [w.astype(np.float64) for w in model.get_weights()]
    x, y = rng.standard_normal((5, 4)), rng.standard_normal((5, 2))

    def loss():
        return np.mean((_forward(kernels, x) - y) ** 2)

    grads = []
    for kernel in kernels:
        grad = np.zeros_like(kernel)
        for index in np.ndindex(kernel.shape):
            saved = kernel[index]
            kernel[index] = saved + 1e-6
            up = loss()
            kernel[index] = saved - 1e-6
            grad[index] = (up - loss()) / 2e-6
            kernel[index] = saved
        grads.append(grad)
    np.testing.assert_allclose(model.predict(x, verbose=0), _forward(kernels, x), rtol=1e-5, atol=1e-6)
    model.layers[4].stddev = 0.0   # no noise for the step compared with the noiseless numpy
    model.train_on_batch(x.astype(np.float32), y.astype(np.float32))
    for got, kernel, grad in zip(model.get_weights(), kernels, grads):
        np.testing.assert_allclose(got, kernel - LR * grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("layer, data, mean, std", [
    (lambda: layers.GaussianNoise(0.5, seed=1), np.zeros, 0.0, 0.5),
    (lambda: layers.GaussianDropout(0.2, seed=2), np.ones, 1.0, 0.5),   # sqrt(0.2 / 0.8)
])
def test_noise_layers_draw_normal_noise_in_training_only(layer, data, mean, std):
    x = data((400, 50), np.float32)
    noise = layer()
    np.testing.assert_array_equal(noise(x), x)
    drawn = np.asarray(noise(x, training=True), np.float64)
    assert abs(drawn.mean() - mean) < 0.01 and abs(drawn.std() - std) < 0.01
    assert abs(np.corrcoef(drawn[:, :-1].ravel(), drawn[:, 1:].ravel())[0, 1]) < 0.02


@pytest.mark.parametrize("make", [lambda seed: layers.GaussianNoise(0.5, seed=seed),
                                  lambda seed: layers.GaussianDropout(0.2, seed=seed),
                                  lambda seed: layers.Dropout(0.5, seed=seed)])
def test_a_seeded_layer_draws_the_same_at_its_kth_call(make):
    """As Keras 3's per-layer SeedGenerator: two layers with one seed agree call by call,
    whatever numpy's global generator did in between; successive calls differ."""
    x = np.ones((8, 16), np.float32)
    first, second = make(5), make(5)
    drawn = [np.asarray(first(x, training=True)) for _ in range(2)]
    np.random.seed(0)
    np.random.rand(7)
    again = [np.asarray(second(x, training=True)) for _ in range(2)]
    np.testing.assert_array_equal(drawn, again)
    assert not np.array_equal(drawn[0], drawn[1])
    assert not np.array_equal(drawn[0], np.asarray(make(6)(x, training=True)))


@pytest.mark.parametrize("layer, shape", [(layers.SpatialDropout1D, (300, 4, 20)),
                                          (layers.SpatialDropout2D, (300, 3, 2, 20)),
                                          (layers.SpatialDropout3D, (100, 2, 2, 2, 20))])
def test_spatial_dropout_drops_whole_channels(layer, shape):
    x = np.ones(shape, np.float32)
    drawn = np.asarray(layer(0.25, seed=3)(x, training=True))
    first = drawn.reshape(shape[0], -1, shape[-1])[:, :1]
    assert (drawn.reshape(shape[0], -1, shape[-1]) == first).all()   # one draw per channel
    assert set(np.unique(drawn)) == {0.0, np.float32(1 / 0.75)}
    assert abs((first == 0).mean() - 0.25) < 0.03
    np.testing.assert_array_equal(layer(0.25)(x), x)
    with pytest.raises(ValueError, match=f"expected ndim={len(shape)}, found ndim=2"):
        layer(0.25)(np.ones((2, 3), np.float32))


def test_compiled_matches_reference(monkeypatch):
    model = keras.Sequential([keras.Input(shape=(2, 4)), layers.Rescaling([1.0, -1.0, 2.0, 0.5]),
                              layers.UnitNormalization(axis=[1, 2]), layers.Identity(),
                              layers.GaussianDropout(0.1), layers.Dense(3)])
    x = _x((6, 2, 4), seed=3)
    outputs = []
    for backend in ("cpu", "reference"):
        monkeypatch.setenv("NNCOMPILE_BACKEND", backend)
        outputs.append(model.predict(x, verbose=0))
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layer", [
    layers.Identity(name="same"), layers.Rescaling([0.5, 2.0], offset=-1.0),
    layers.UnitNormalization(axis=[1, -1]), layers.GaussianNoise(0.2, seed=7),
    layers.GaussianDropout(0.4), layers.SpatialDropout2D(0.3, seed=1)])
def test_configs_round_trip(layer):
    again = type(layer).from_config(layer.get_config())
    assert again.get_config() == layer.get_config()


def test_spatial_dropout_config_is_keras_3s():
    """Keras 3's SpatialDropout takes neither `trainable` nor `noise_shape`: a config holding
    them does not load there."""
    assert layers.SpatialDropout1D(0.1, seed=4, name="drop").get_config() == {
        "name": "drop", "dtype": "float32", "rate": 0.1, "seed": 4}


@pytest.mark.parametrize("make, message", [
    (lambda: layers.Rescaling("big"), "`scale` must be a finite number"),
    (lambda: layers.UnitNormalization(axis="last"), "expected an int or a list/tuple of ints"),
    (lambda: layers.GaussianNoise(-0.1), "stddev"),
    (lambda: layers.GaussianDropout(1.5), "rate"),
    (lambda: layers.UnitNormalization(axis=0)(np.ones((2, 3), np.float32)), "non-batch axis"),
])
def test_bad_arguments_name_the_argument(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


ALPHA_P = -1.6732632423543772 * 1.0507009873554805


@pytest.mark.parametrize("rate", [0.1, 0.3])
def test_alpha_dropout_keeps_mean_and_variance_as_keras(rate):
    """Each output is a x + b (kept) or a alpha' + b (dropped), with Keras's a and b written here;
    about `rate` of them dropped; standard normal inputs keep about zero mean and unit variance;
    the identity at inference and at rate 0."""
    x = _x((400, 250), seed=3)
    layer = layers.AlphaDropout(rate, seed=4)
    np.testing.assert_array_equal(layer(x), x)
    out = np.asarray(layer(x, training=True), np.float64)
    a = ((1 - rate) * (1 + rate * ALPHA_P ** 2)) ** -0.5
    b = -a * ALPHA_P * rate
    kept = np.isclose(out, a * x + b, rtol=1e-5, atol=1e-5)
    dropped = np.isclose(out, a * ALPHA_P + b, rtol=1e-5, atol=1e-5)
    assert (kept | dropped).all()
    assert abs(dropped.mean() - rate) < 0.01
    assert abs(out.mean()) < 0.02 and abs(out.var() - 1) < 0.03
    np.testing.assert_array_equal(layers.AlphaDropout(0.0)(x, training=True), x)
    assert layers.AlphaDropout(rate, noise_shape=(None, 1), seed=1).get_config()["noise_shape"] == (None, 1)

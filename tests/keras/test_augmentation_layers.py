"""RandomFlip, RandomContrast and RandomBrightness: the identity at inference; in training each
image's output checked against numpy (np.flip, Keras's contrast and brightness formulas with
the factor the layer drew, recovered from the output) and the draws' distribution against
binomial / uniform bounds; arguments and configs as Keras 3.15's; inside models that fit,
predict, save and load."""
from __future__ import annotations

import math

import numpy as np
import pytest

from nncompile import keras
from nncompile.keras import layers


@pytest.fixture
def reference(monkeypatch):
    """Eager calls on the numpy interpreter (no LLVM compile per call)."""
    monkeypatch.setenv("NNCOMPILE_BACKEND", "reference")


def _images(n=256, h=5, w=6, c=3, seed=0):
    return (np.random.default_rng(seed).random((n, h, w, c)) * 255).astype(np.float32)


def _binomial_ok(count: int, n: int, p: float = 0.5, sigmas: float = 5.0) -> bool:
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


# --- RandomFlip ---------------------------------------------------------------------------------

FLIP_AXES = {"horizontal": (2,), "vertical": (1,), "horizontal_and_vertical": (1, 2)}


@pytest.mark.parametrize("mode", sorted(FLIP_AXES))
def test_flip_each_sample_is_input_or_its_flip(reference, mode):
    x = _images(n=2000, h=3, w=4, c=2)
    layer = layers.RandomFlip(mode, seed=7)
    y = layer(x, training=True)
    assert y.shape == x.shape and y.dtype == np.float32
    same = (y == x).all(axis=(1, 2, 3))
    flipped = (y == np.flip(x, FLIP_AXES[mode])).all(axis=(1, 2, 3))
    assert (same ^ flipped).all()        # exactly one (no image here equals its own flip)
    assert _binomial_ok(int(flipped.sum()), len(x))
    assert 0 < flipped.sum() < len(x)


def test_flip_inference_is_identity_and_direct_call_augments(reference):
    x = _images(n=200)
    layer = layers.RandomFlip("horizontal", seed=1)
    np.testing.assert_array_equal(layer(x, training=False), x)
    # As Keras 3 (call(..., training=True)): a direct call without `training` augments.
    y = layer(x)
    assert not np.array_equal(y, x)


def test_flip_draws_differ_between_calls_and_seeded_layers_repeat(reference):
    x = _images(n=200)
    a, b = layers.RandomFlip("vertical", seed=3), layers.RandomFlip("vertical", seed=3)
    first, second = a(x, training=True), a(x, training=True)
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(b(x, training=True), first)


def test_flip_unbatched_image_and_integer_input(reference):
    image = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    outs = [layers.RandomFlip("horizontal", seed=s)(image, training=True) for s in range(40)]
    assert all(o.dtype == np.float32 for o in outs)
    kinds = {("same" if np.array_equal(o, image) else "flip" if np.array_equal(o, np.flip(image, 1))
              else "other") for o in outs}
    assert kinds == {"same", "flip"}
    # Keras casts to the compute dtype at inference too
    out = layers.RandomFlip()(image[None], training=False)
    assert out.dtype == np.float32 and np.array_equal(out, image[None])


def test_flip_arguments_and_config():
    layer = layers.RandomFlip()
    config = layer.get_config()
    assert config["mode"] == "horizontal_and_vertical" and config["seed"] is None
    assert config["data_format"] == "channels_last"
    layer = layers.RandomFlip("vertical", seed=5, name="flip")
    again = layers.RandomFlip.from_config(layer.get_config())
    assert again.get_config() == layer.get_config()
    with pytest.raises(ValueError, match="mode"):
        layers.RandomFlip("diagonal")
    with pytest.raises(ValueError, match="channels_first"):
        layers.RandomFlip(data_format="channels_first")


# --- RandomContrast -----------------------------------------------------------------------------

def test_contrast_is_keras_formula_with_one_factor_per_image(reference):
    x = _images(n=2000, h=4, w=4, c=3)
    lower, upper = 0.3, 0.6
    # a value range wide enough that nothing clips: the factor can be read back
    layer = layers.RandomContrast((lower, upper), value_range=(-1e6, 1e6), seed=2)
    y = layer(x, training=True).astype(np.float64)
    mean = x.mean(axis=(1, 2), keepdims=True, dtype=np.float64)
    ratio = (y - mean) / (x - mean)
    factor = np.median(ratio.reshape(len(x), -1), axis=1)
    expected = (x - mean) * factor[:, None, None, None] + mean
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-2)
    assert factor.min() >= 1 - lower - 1e-4 and factor.max() < 1 + upper + 1e-4
    # uniform on [1 - lower, 1 + upper): its mean and each half's share
    span = lower + upper
    assert abs(factor.mean() - (1 - lower + span / 2)) < 5 * span / math.sqrt(12 * len(x))
    assert _binomial_ok(int((factor < 1 - lower + span / 2).sum()), len(x))


def test_contrast_clips_to_value_range_and_inference_is_identity(reference):
    x = _images(n=300)
    layer = layers.RandomContrast(0.9, seed=4)
    y = layer(x, training=True)
    assert y.min() >= 0 and y.max() <= 255
    # every pixel equals the unclipped formula clipped, for the factor of its image
    unclipped = layers.RandomContrast(0.9, value_range=(-1e6, 1e6), seed=4)(x, training=True)
    np.testing.assert_allclose(y, np.clip(unclipped, 0, 255), rtol=1e-5, atol=1e-3)
    assert layer.get_config()["factor"] == (0, 0.9)
    np.testing.assert_array_equal(layer(x, training=False), x)
    xi = x.astype(np.uint8)
    out = layer(xi, training=False)
    assert out.dtype == np.uint8 and np.array_equal(out, xi)   # Keras: untouched
    assert layer(xi, training=True).dtype == np.float32


def test_contrast_arguments_and_config():
    for bad in (1.5, -0.1, (0.1,), (2, 3), "a"):
        with pytest.raises(ValueError, match=r"`factor` argument should be a number .* \[0, 1\]"):
            layers.RandomContrast(bad)
    assert layers.RandomContrast((0.5, 0.2)).factor == (0.2, 0.5)
    layer = layers.RandomContrast(0.2, value_range=(0, 1), seed=3, name="c")
    config = layer.get_config()
    assert config["factor"] == (0, 0.2) and tuple(config["value_range"]) == (0, 1)
    assert config["seed"] == 3 and config["data_format"] == "channels_last"
    assert layers.RandomContrast.from_config(config).get_config() == config


# --- RandomBrightness ---------------------------------------------------------------------------

def test_brightness_is_keras_formula_with_one_delta_per_image(reference):
    x = _images(n=2000, h=3, w=3, c=3) / 255.0
    lower, upper = -0.2, 0.4
    # values in [0.3, 0.7) of a [0, 1] range only clip if the delta pushes them out: read the
    # delta from pixels that are inside after the shift
    x = (0.3 + 0.4 * x).astype(np.float32)
    layer = layers.RandomBrightness((lower, upper), value_range=(-10, 11), seed=9)
    y = layer(x, training=True)
    delta = (y - x).reshape(len(x), -1)
    np.testing.assert_allclose(delta, delta[:, :1].repeat(delta.shape[1], 1), atol=1e-5)
    d = delta[:, 0] / 21.0         # delta = U[lower, upper) * (high - low)
    assert d.min() >= lower - 1e-5 and d.max() < upper + 1e-5
    span = upper - lower
    assert abs(d.mean() - (lower + span / 2)) < 5 * span / math.sqrt(12 * len(x))
    assert _binomial_ok(int((d < lower + span / 2).sum()), len(x))


def test_brightness_clips_and_inference_is_identity(reference):
    x = _images(n=300)
    layer = layers.RandomBrightness(0.5, seed=1)
    y = layer(x, training=True)
    assert y.min() >= 0 and y.max() <= 255
    unclipped = layers.RandomBrightness(0.5, value_range=(0, 255), seed=1)(x, training=True)
    np.testing.assert_array_equal(y, unclipped)
    delta = np.where((y > 0) & (y < 255), y - x, np.nan).reshape(len(x), -1)
    spread = np.nanmax(delta, axis=1) - np.nanmin(delta, axis=1)
    assert np.nanmax(spread) < 1e-3
    np.testing.assert_array_equal(layer(x, training=False), x)


def test_brightness_arguments_and_config():
    for bad in (1.5, (0.1,), "a"):
        with pytest.raises(ValueError, match=r"`factor` argument should be a number .* \[-1, 1\]"):
            layers.RandomBrightness(bad)
    for bad in ((0,), 5):
        with pytest.raises(ValueError, match="`value_range` argument should be a list of two"):
            layers.RandomBrightness(0.1, value_range=bad)
    assert layers.RandomBrightness(-0.5).factor == (-0.5, 0.5)
    layer = layers.RandomBrightness(0.2, value_range=(255, 0), seed=1)
    config = layer.get_config()
    assert config["factor"] == (-0.2, 0.2) and config["value_range"] == [0, 255]
    assert layers.RandomBrightness.from_config(config).get_config() == config


# --- in models ----------------------------------------------------------------------------------

def _augmenting_model(shape=(8, 8, 1)):
    data_augmentation = keras.Sequential([layers.RandomFlip("horizontal"),
                                          layers.RandomContrast(0.2, value_range=(0, 1)),
                                          layers.RandomBrightness(0.1, value_range=(0, 1))])
    inputs = keras.Input(shape)
    x = data_augmentation(inputs)
    x = layers.Conv2D(4, 3, activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(1)(x)
    return keras.Model(inputs, outputs)


def test_model_predict_is_identity_fit_learns_and_saves(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((128, 8, 8, 1)).astype(np.float32)
    y = x.mean(axis=(1, 2, 3))[:, None].astype(np.float32) * 3
    keras.utils.set_random_seed(0)
    model = _augmenting_model()
    augment = keras.Sequential([keras.Input((8, 8, 1)), layers.RandomFlip(seed=1)])
    np.testing.assert_array_equal(augment.predict(x, verbose=0), x)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    history = model.fit(x, y, epochs=8, batch_size=16, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.5 * losses[0]
    before = model.predict(x, verbose=0)
    assert np.array_equal(before, model.predict(x, verbose=0))   # deterministic at inference
    path = tmp_path / "augmenting.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), before, rtol=1e-5, atol=1e-6)
    names = [type(l).__name__ for l in loaded.layers[1].layers]
    assert names == ["RandomFlip", "RandomContrast", "RandomBrightness"]
    assert list(loaded.layers[1].layers[1].get_config()["factor"]) == [0, 0.2]
    model.evaluate(x, y, verbose=0)


def test_flip_in_fit_flips_about_half_of_the_samples():
    """A model that only flips, trained with a loss that reads the output: a Dense kernel that
    tells a flipped image from the original through the gradient of each step."""
    # The training step's view of the layer, compiled: run the training graph's forward part
    # through a model whose loss is zero for unflipped and 1 for flipped images (a fixed read-out).
    x = np.zeros((1000, 1, 2, 1), np.float32)
    x[:, 0, 0, 0] = 1.0                  # flipped: [0, 1]; not: [1, 0]
    target = np.zeros((1000, 1), np.float32)
    inputs = keras.Input((1, 2, 1))
    flipped = layers.RandomFlip("horizontal", seed=11)(inputs)
    out = layers.Dense(1, use_bias=False, kernel_initializer="zeros")(layers.Flatten()(flipped))
    model = keras.Model(inputs, out)
    # SGD on mse with a zero kernel: the step's gradient on the kernel is
    # -2/n * sum(target - 0) * input = 0; use a loss whose gradient reads the inputs instead
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss=lambda t, p: keras.ops.mean(p))
    model.fit(x, target, epochs=1, batch_size=1000, verbose=0)
    # the mean loss's gradient on the kernel is the mean (augmented) input: [1 - q, q], q the
    # share of flipped samples; one SGD step of rate 1 makes the kernel minus that
    kernel = model.layers[-1].get_weights()[0].ravel()
    q = -kernel[1]
    assert abs(kernel[0] + kernel[1] + 1) < 1e-5
    assert _binomial_ok(round(q * 1000), 1000)
    assert 0 < q < 1

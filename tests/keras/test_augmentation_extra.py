"""The colour, pixel and geometric augmentation layers against real Keras 3
(tests/fixtures/keras/augmentation_extra: Keras's `transform_images` given the transformation its
formulas build from fixed uniform draws, which nncompile's layer is given in place of its own;
AutoContrast and Equalization on real data; configs; a saved model), compiled and on the
reference interpreter; the random draws' ranges and per-image independence; training changes
images and inference does not; a model with the layers inside fits."""
from __future__ import annotations

import doctest
import importlib
import json
from pathlib import Path

import numpy as np
import pytest

from nncompile import keras
from nncompile.ir import Builder, DType, TensorType
from nncompile.keras import layers
from nncompile.keras.layers.base import run_graph
from tests.keras.keras_files import fixture_module

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "keras" / "augmentation_extra"
DATA = np.load(FIXTURES / "augmentation_extra.npz")
CONFIGS = json.loads(str(DATA["configs"]))
TOLERANCE = {"rtol": 1e-5, "atol": 1e-3}


def _maker():
    return fixture_module(FIXTURES / "make_augmentation_extra.py")


CASES = _maker().CASES


@pytest.fixture(params=["compiled", "reference"])
def backend(request, monkeypatch):
    if request.param == "reference":
        monkeypatch.setenv("NNCOMPILE_BACKEND", "reference")
    return request.param


def _build(name):
    cls, kwargs, _ = CASES[name]
    return getattr(layers, cls)(**kwargs)


def _run_with_draws(layer, name, images):
    """The layer's training graph on `images` (batch known), drawing the fixture's uniform values
    in place of its own: stream s gives u_<name>_<s>."""
    def draw(b, shape, dtype=DType.f32, stream=0):
        v = b.constant(np.asarray(DATA[f"u_{name}_{stream}"], np.float32).reshape(shape))
        return v if dtype == DType.f32 else b.cast(v, dtype=dtype)
    layer._draw = draw
    b = Builder(name=layer.name)
    out = layer.emit(b, b.input("images", TensorType(DType.f32, images.shape)), training=True)
    return run_graph(b.finish([out], ["out"]), [images])[0]


def _images(name):
    return (DATA["images"] / 255.0).astype(np.float32) if name.endswith("_unit") else DATA["images"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_layer_is_keras_transform_for_the_same_draws(backend, name):
    got = _run_with_draws(_build(name), name, _images(name))
    np.testing.assert_allclose(got, DATA[f"out_{name}"], **TOLERANCE)


@pytest.mark.parametrize("name", sorted(CASES))
def test_inference_is_keras(name):
    layer = _build(name)
    np.testing.assert_array_equal(layer(_images(name), training=False), DATA[f"inference_{name}"])


@pytest.mark.parametrize("name", sorted(CASES) + ["auto_contrast", "equalization"])
def test_configs_are_keras(name):
    keras_config = CONFIGS[name]
    layer = _build(name) if name in CASES else {"auto_contrast": layers.AutoContrast,
                                                  "equalization": layers.Equalization}[name]()
    ours = layer.get_config()
    for key in keras_config.keys() - {"name", "dtype", "trainable"}:
        got = list(ours[key]) if isinstance(ours[key], tuple) else ours[key]
        want = list(keras_config[key]) if isinstance(keras_config[key], tuple) else keras_config[key]
        assert got == want, key
    assert set(ours) >= set(keras_config) - {"dtype"}
    again = type(layer).from_config(ours).get_config()
    assert again == ours


@pytest.mark.parametrize("training", [True, False])
def test_deterministic_layers_are_keras(backend, training):
    x = DATA["images"]
    np.testing.assert_allclose(layers.AutoContrast()(x, training=training), DATA["auto_contrast"], **TOLERANCE)
    np.testing.assert_allclose(layers.AutoContrast(value_range=(0, 1))(x / 255.0, training=training),
                               DATA["auto_contrast_unit"], rtol=1e-5, atol=1e-6)
    equalized = layers.Equalization()(x, training=True)
    np.testing.assert_allclose(equalized, DATA["equalization"], **TOLERANCE)
    np.testing.assert_allclose(layers.Equalization(value_range=(0, 1))(x / 255.0), DATA["equalization_unit"],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layers.Equalization(bins=64)(DATA["levels"]), DATA["equalization_levels"], **TOLERANCE)


def test_auto_contrast_keeps_constant_channels_and_equalization_is_inference_identity():
    x = DATA["images"].copy()
    x[..., 1] = 40.0
    out = layers.AutoContrast()(x, training=False)
    np.testing.assert_array_equal(out[..., 1], x[..., 1])
    assert out[..., 0].min(axis=(1, 2)).max() == 0 and out[..., 0].max(axis=(1, 2)).min() == 255
    np.testing.assert_array_equal(layers.Equalization()(x, training=False), x)


def test_saved_keras_model_loads_and_predicts():
    model = keras.models.load_model(FIXTURES / "augmentation_extra.keras")
    names = [type(layer).__name__ for layer in model.layers[1:9]]
    assert names == ["RandomInvert", "RandomSaturation", "RandomGaussianBlur", "RandomShear", "RandomPerspective",
                     "AutoContrast", "RandomColorJitter", "GlobalAveragePooling2D"]
    want = np.load(FIXTURES / "model.npz")["y"]
    np.testing.assert_allclose(model.predict(DATA["images"], verbose=0), want, rtol=1e-4, atol=1e-3)


# --- the draws ------------------------------------------------------------------------------

RANDOM = {
    "grayscale": lambda: layers.RandomGrayscale(0.5, seed=1),
    "invert": lambda: layers.RandomInvert(seed=2),
    "solarization": lambda: layers.Solarization(0.2, 0.5, seed=3),
    "posterization": lambda: layers.RandomPosterization((1, 8), seed=4),
    "saturation": lambda: layers.RandomSaturation(0.8, seed=5),
    "hue": lambda: layers.RandomHue(0.8, seed=6),
    "degeneration": lambda: layers.RandomColorDegeneration(0.9, seed=7),
    "sharpness": lambda: layers.RandomSharpness(1.0, seed=8),
    "blur": lambda: layers.RandomGaussianBlur(0.5, seed=9),
    "erasing": lambda: layers.RandomErasing(0.5, seed=10),
    "shear": lambda: layers.RandomShear(0.3, 0.3, seed=11),
    "perspective": lambda: layers.RandomPerspective(0.7, seed=12),
    "jitter": lambda: layers.RandomColorJitter(brightness_factor=0.2, contrast_factor=0.3, saturation_factor=0.5,
                                               hue_factor=0.3, seed=13),
}


@pytest.mark.parametrize("name", sorted(RANDOM))
def test_training_changes_images_per_image_and_inference_does_not(name):
    x = np.repeat(DATA["images"][:1], 64, axis=0)      # one image, many draws
    layer = RANDOM[name]()
    y = layer(x, training=True)
    assert y.shape == x.shape and np.isfinite(y).all()
    distinct = len({np.round(image, 2).tobytes() for image in y})
    assert distinct >= (2 if name in ("grayscale", "invert", "blur") else 5), distinct   # each image draws its own
    assert not np.array_equal(y, layer(x, training=True))   # and anew at every call
    np.testing.assert_array_equal(layer(x, training=False), x)
    seeded = RANDOM[name]()
    np.testing.assert_array_equal(seeded(x, training=True), y)


def _share(flags, expected, n):
    return abs(flags.mean() - expected) < 5 * np.sqrt(expected * (1 - expected) / n)


def test_probabilities_of_the_chance_layers(backend):
    x = np.repeat(DATA["images"][:1], 2000, axis=0)
    changed = lambda y: ~np.isclose(y, x[:len(y)], atol=1e-4).all(axis=(1, 2, 3))   # noqa: E731
    assert _share(changed(layers.RandomGrayscale(0.3, seed=1)(x)), 0.3, len(x))
    # p ~ U[0.2, 0.6) then t < p: probability 0.4 on average
    assert _share(changed(layers.RandomInvert((0.2, 0.6), seed=2)(x)), 0.4, len(x))
    assert _share(changed(layers.RandomPerspective((0.0, 0.5), seed=3)(x[:300])), 0.25, 300)


def test_draw_ranges(backend):
    n = 1000
    gray = np.broadcast_to(np.linspace(10, 200, 6, dtype=np.float32)[None, None, :, None], (n, 2, 6, 3))
    # brightness-free: degeneration of a grey image keeps it; of a colour image, blends by f
    red = np.zeros((n, 1, 1, 3), np.float32)
    red[..., 0] = 200.0
    out = layers.RandomColorDegeneration((-0.5, 0.9), value_range=(-1e6, 1e6), seed=4)(red)
    f = (200.0 - out[:, 0, 0, 0]) / (200.0 - 200.0 * 0.2989)
    assert f.min() >= -0.5 - 1e-4 and f.max() < 0.9 + 1e-4 and f.min() < -0.4 and f.max() > 0.8
    np.testing.assert_allclose(layers.RandomColorDegeneration(0.9, seed=4)(gray), gray, atol=0.05)   # luma sums to 0.9999
    bits = layers.RandomPosterization((2, 6), seed=5)(np.full((n, 1, 1, 1), 255.0, np.float32)).ravel()
    assert set(np.unique(bits)) == {256 - 2 ** (8 - k) for k in range(2, 6)}   # bits 2..5: [2, 6)
    erased = layers.RandomErasing((1.0, 1.0), scale=(0.04, 0.25), fill_value=0.0, seed=6)(np.ones((n, 20, 20, 1),
                                                                                                  np.float32))
    area = (erased == 0).mean(axis=(1, 2, 3))    # sides sqrt(s) * 20 in [4, 10): whole pixels in 3..11 of them
    assert area.max() <= 0.3025 and area.min() >= 0.01 and area.min() <= 0.05 and area.max() > 0.16


def test_argument_errors_are_keras():
    with pytest.raises(ValueError, match=r"`factor` should be between 0 and 1. Received: factor=1.5"):
        layers.RandomGrayscale(1.5)
    with pytest.raises(ValueError, match=r"`addition_factor` and `threshold_factor` .* Received: input_number=2"):
        layers.Solarization(threshold_factor=(0.1, 2))
    with pytest.raises(ValueError, match=r"range \[1, 8\]. Received: factor=9"):
        layers.RandomPosterization(9)
    with pytest.raises(ValueError, match="kernel_size must be an odd number"):
        layers.RandomGaussianBlur(kernel_size=4)
    with pytest.raises(ValueError, match=r"The `sigma` argument .* Received: factor=2"):
        layers.RandomGaussianBlur(sigma=2)
    with pytest.raises(ValueError, match="`fill_value` argument should be a number"):
        layers.RandomErasing(fill_value=(1, 2))
    with pytest.raises(ValueError, match=r"range \[0, 1.0\]. Received: input_number=1.3"):
        layers.RandomShear(x_factor=(0.2, 1.3))
    with pytest.raises(ValueError, match=r"`scale` argument should be a number in the range \[0,1\]"):
        layers.RandomPerspective(scale=1.5)
    with pytest.raises(NotImplementedError, match="Unknown `interpolation` bicubic"):
        layers.RandomPerspective(interpolation="bicubic")
    with pytest.raises(ValueError, match="`value_range` argument should be a list of two numbers"):
        layers.AutoContrast(value_range=5)
    with pytest.raises(ValueError, match="channels_first"):
        layers.RandomHue(0.1, data_format="channels_first")
    with pytest.raises(Exception, match="3 channels"):
        layers.RandomSaturation(0.5)(np.ones((1, 2, 2, 4), np.float32))


def test_fit_with_the_layers_inside_learns_and_saves(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((64, 10, 10, 3), dtype=np.float32) * 255
    y = (x.mean(axis=(1, 2, 3)) / 255 > 0.5).astype(np.int64)
    x[y == 0] *= 0.4
    keras.utils.set_random_seed(2)
    augment = [layers.RandomShear(0.1, 0.1), layers.RandomPerspective(0.5, 0.2), layers.RandomSharpness(0.3),
               layers.RandomGaussianBlur(0.3), layers.RandomErasing(0.3, fill_value=0.0),
               layers.RandomColorJitter(brightness_factor=0.05, saturation_factor=0.3, hue_factor=0.05),
               layers.RandomGrayscale(0.2), layers.RandomPosterization((6, 8))]
    model = keras.Sequential([keras.Input((10, 10, 3)), *augment, layers.Rescaling(1 / 255),
                              layers.Conv2D(4, 3, activation="relu"), layers.GlobalAveragePooling2D(), layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.Adam(0.02),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    losses = model.fit(x, y, epochs=12, batch_size=16, verbose=0).history["loss"]
    assert np.isfinite(losses).all() and losses[-1] < 0.8 * losses[0], losses
    plain = keras.Sequential([keras.Input((10, 10, 3)), *model.layers[len(augment):]])
    np.testing.assert_allclose(model.predict(x, verbose=0), plain.predict(x, verbose=0), rtol=1e-5, atol=1e-5)
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("module", ["color_augmentation", "pixel_augmentation", "geometric_augmentation"])
def test_docstring_examples_hold(module):
    imported = importlib.import_module(f"nncompile.keras.layers.{module}")
    result = doctest.testmod(imported, extraglobs={"np": np})
    assert result.failed == 0 and result.attempted >= 3

"""ops.image.affine_transform, RandomRotation, RandomTranslation and RandomZoom against real
Keras 3 (tests/fixtures/keras/affine: Keras's outputs for every interpolation and fill mode, the
layers with factor ranges of one value so that their draw is known, a saved model), against a
numpy loop written here for the fill modes, and the random draws' ranges; compiled and on the
reference interpreter; arguments, configs and errors as Keras 3.15's."""
from __future__ import annotations

import doctest
import json
from pathlib import Path

import numpy as np
import pytest

from nncompile import keras
from nncompile.keras import layers, ops
from tests.keras.keras_files import fixture_module

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "keras" / "affine"
DATA = np.load(FIXTURES / "affine.npz")
ULP = {"rtol": 1e-6, "atol": 2e-6}



def _cases():
    return fixture_module(FIXTURES / "cases.py")


CASES = _cases()


@pytest.fixture(params=["compiled", "reference"])
def backend(request, monkeypatch):
    if request.param == "reference":
        monkeypatch.setenv("NNCOMPILE_BACKEND", "reference")
    return request.param


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
@pytest.mark.parametrize("fill_mode", ["constant", "nearest", "wrap", "mirror", "reflect"])
def test_affine_transform_is_keras(backend, interpolation, fill_mode):
    got = ops.image.affine_transform(DATA["images"], DATA["transforms"], interpolation=interpolation,
                                     fill_mode=fill_mode, fill_value=0.5)
    np.testing.assert_allclose(got, DATA[f"affine_{interpolation}_{fill_mode}"], **ULP)


def _numpy_affine(image, t, fill_mode, fill_value):
    """Nearest-neighbour resampling written out: the source pixel of each output pixel, its index
    folded into the image by the fill mode."""
    height, width, _ = image.shape
    out = np.empty_like(image)

    def fold(i, n):
        if fill_mode == "wrap":
            return i % n
        if fill_mode == "nearest":
            return min(max(i, 0), n - 1)
        if fill_mode == "mirror":      # ... c b | a b c d | c b ...
            period = 2 * (n - 1) if n > 1 else 1
            i %= period
            return period - i if i >= n else i
        period = 2 * n                 # reflect: ... b a | a b c d | d c ...
        i %= period
        return period - 1 - i if i >= n else i

    for y in range(height):
        for x in range(width):
            k = t[6] * x + t[7] * y + 1
            sx = (t[0] * x + t[1] * y + t[2]) / k
            sy = (t[3] * x + t[4] * y + t[5]) / k
            ix, iy = int(np.sign(sx) * np.floor(abs(sx) + 0.5)), int(np.sign(sy) * np.floor(abs(sy) + 0.5))
            if fill_mode == "constant" and not (0 <= ix < width and 0 <= iy < height):
                out[y, x] = fill_value
            else:
                out[y, x] = image[fold(iy, height), fold(ix, width)]
    return out


@pytest.mark.parametrize("fill_mode", ["constant", "nearest", "wrap", "mirror", "reflect"])
def test_fill_modes_fold_far_outside_as_a_numpy_loop(backend, fill_mode):
    """Shifts and scales that read two and more images away, and a projective row (k != 1)."""
    image = np.arange(4 * 5 * 2, dtype=np.float32).reshape(4, 5, 2)
    transforms = np.array([[1, 0, -11, 0, 1, 9, 0, 0], [3, 0, -2, 0, -2.5, 1, 0, 0],
                           [1, 0, 0, 0, 1, 0, 0.125, -0.0625]], np.float32)
    got = ops.image.affine_transform(np.stack([image] * 3), transforms, interpolation="nearest",
                                     fill_mode=fill_mode, fill_value=-7)
    for i, t in enumerate(transforms):
        np.testing.assert_array_equal(got[i], _numpy_affine(image, t, fill_mode, -7), err_msg=str(t))


def test_one_image_one_transform_integers_and_channels_first(backend):
    image = DATA["images"][1]
    got = ops.image.affine_transform(image, DATA["transforms"][1], fill_mode="wrap", fill_value=0.5)
    np.testing.assert_allclose(got, DATA["affine_bilinear_wrap"][1], **ULP)
    first = ops.image.affine_transform(DATA["images"].transpose(0, 3, 1, 2), DATA["transforms"],
                                       interpolation="nearest", fill_mode="reflect", data_format="channels_first")
    np.testing.assert_array_equal(first.transpose(0, 2, 3, 1), DATA["affine_nearest_reflect"])
    ints = ops.image.affine_transform(np.arange(-6, 6, dtype=np.int32).reshape(3, 4, 1), [1, 0, 0.5, 0, 1, 0, 0, 0])
    assert ints.dtype == np.int32
    # halfway between columns: (a + b) / 2 rounded half away from zero, as jax's map_coordinates
    np.testing.assert_array_equal(ints[..., 0], [[-6, -5, -4, -2], [-2, -1, 1, 1], [3, 4, 5, 3]])   # Keras gives these


def test_affine_transform_arguments_are_checked():
    image = np.zeros((2, 3, 3, 1), np.float32)
    with pytest.raises(ValueError, match="Invalid value for argument `interpolation`"):
        ops.image.affine_transform(image, np.zeros((2, 8)), interpolation="bicubic")
    with pytest.raises(ValueError, match="Invalid value for argument `fill_mode`"):
        ops.image.affine_transform(image, np.zeros((2, 8)), fill_mode="edge")
    with pytest.raises(ValueError, match="Invalid images rank: expected rank 3"):
        ops.image.affine_transform(np.zeros((3, 3)), np.zeros(8))
    with pytest.raises(ValueError, match="Invalid transform"):
        ops.image.affine_transform(image, np.zeros((2, 6)))
    with pytest.raises(ValueError, match="3 transforms for a batch of 2 images"):
        ops.image.affine_transform(image, np.zeros((3, 8)))


def test_bool_images_are_nonzero_after_interpolation():
    """As Keras on JAX: the interpolated value cast to bool (any nonzero part is True)."""
    mask = np.zeros((1, 1, 4, 1), bool)
    mask[0, 0, 1] = True
    got = ops.image.affine_transform(mask, [1, 0, 0.75, 0, 1, 0, 0, 0])   # x' = x + 0.75
    assert got.dtype == np.bool_
    np.testing.assert_array_equal(got[0, 0, :, 0], [True, True, False, False])


@pytest.mark.parametrize("name", sorted(CASES.LAYERS))
def test_layers_draw_keras_transform(backend, name):
    layer = CASES.build(layers, name)
    np.testing.assert_allclose(layer(DATA["images"], training=True), DATA[f"layer_{name}"], **ULP)


def test_channels_first_rotation_is_keras_rotation_of_transposed_images():
    """nncompile's layers take channels-last images; Keras's channels-first rotation is the same
    rotation of the images transposed."""
    got = layers.RandomRotation((0.15, 0.15))(DATA["images"], training=True)
    np.testing.assert_allclose(got, DATA["layer_rotation_channels_first"].transpose(0, 2, 3, 1), **ULP)


@pytest.mark.parametrize("name", sorted(CASES.LAYERS))
def test_configs_are_keras(name):
    keras_config = json.loads(str(DATA["configs"]))[name]
    ours = CASES.build(layers, name).get_config()
    for key in keras_config.keys() - {"name", "dtype", "trainable"}:
        got = list(ours[key]) if isinstance(ours[key], tuple) else ours[key]
        assert got == keras_config[key], key
    assert set(ours) >= set(keras_config) - {"dtype"}


def test_saved_keras_model_loads_and_predicts_unchanged():
    model = keras.models.load_model(FIXTURES / "affine.keras")
    assert [type(layer).__name__ for layer in model.layers[:3]] == ["RandomRotation", "RandomTranslation",
                                                                      "RandomZoom"]
    np.testing.assert_allclose(model.predict(DATA["images"], verbose=0), DATA["model_y"], rtol=1e-5, atol=1e-5)
    assert model.layers[0].factor == (-0.1, 0.1) and model.layers[2].fill_mode == "wrap"


def test_translation_draws_one_uniform_shift_per_image(backend):
    """Columns hold their index, so an output pixel away from the edges is its column minus the
    image's shift dx: each dx / width lies in [lower, upper), and they spread over it."""
    count, width = 400, 10
    ramp = np.broadcast_to(np.arange(width, dtype=np.float32)[None, None, :, None], (count, 3, width, 1))
    out = layers.RandomTranslation(0, (-0.2, 0.3), seed=3)(ramp, training=True)
    shifts = (np.arange(width) - out[:, 1, :, 0])[:, 4] / width
    assert np.allclose((np.arange(3, 6) - out[:, 1, 3:6, 0]) / width, shifts[:, None], atol=1e-5)
    assert shifts.min() >= -0.2 - 1e-6 and shifts.max() < 0.3 + 1e-6
    assert shifts.min() < -0.15 and shifts.max() > 0.25 and abs(shifts.mean() - 0.05) < 0.03


def test_rotation_angles_are_drawn_per_image_in_range(backend):
    """A rotated ramp tells each image's angle a: it reads x' = cos a (x - c) - sin a (y - c) + c
    at (y, x), so 4 + 2 cos a two columns right of the centre and 4 + 2 sin a two rows above it;
    the angles (degrees, U[-36, 18)) spread over their range."""
    count, size = 300, 9
    ramp = np.broadcast_to(np.arange(size, dtype=np.float32)[None, None, :, None], (count, size, size, 1))
    out = layers.RandomRotation((-0.1, 0.05), fill_mode="constant", seed=5)(ramp, training=True)
    angles = np.degrees(np.arctan2(out[:, 2, 4, 0] - 4, out[:, 4, 6, 0] - 4))
    assert angles.min() >= -36 - 0.01 and angles.max() <= 18 + 0.01
    assert angles.min() < -30 and angles.max() > 12


def test_inference_is_identity_and_direct_call_augments():
    x = DATA["images"]
    for name in CASES.LAYERS:
        np.testing.assert_array_equal(CASES.build(layers, name)(x, training=False), x)
    layer = layers.RandomRotation((0.1, 0.1))
    np.testing.assert_allclose(layer(x), DATA["layer_rotation_reflect_bilinear"], **ULP)   # training by default
    ints = layers.RandomZoom(0.1)(np.ones((2, 4, 4, 1), np.int32), training=False)
    assert ints.dtype == np.float32


def test_layer_arguments_are_checked_as_keras():
    with pytest.raises(ValueError, match=r"in the range \[-1, 1\]. Received: factor=1.5"):
        layers.RandomRotation(1.5)
    with pytest.raises(ValueError, match=r"in the range \(-1.0, 1.0\]. Received: input_number=-1.0"):
        layers.RandomZoom(-1.0)
    with pytest.raises(ValueError, match=r"in the range \[-1.0, 1.0\]. Received: input_number=1.2"):
        layers.RandomTranslation(0.1, 1.2)
    with pytest.raises(NotImplementedError, match="Unknown `fill_mode` mirror"):
        layers.RandomRotation(0.1, fill_mode="mirror")
    with pytest.raises(NotImplementedError, match="Unknown `interpolation` bicubic"):
        layers.RandomTranslation(0.1, 0.1, interpolation="bicubic")
    assert layers.RandomRotation(0.1).factor == (-0.1, 0.1)
    assert layers.RandomZoom(0.2).get_config()["height_factor"] == 0.2


def test_fit_with_the_layers_trains_and_predicts_without_them(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 12, 12, 3), dtype=np.float32), rng.integers(0, 3, 64)
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((12, 12, 3)), layers.RandomRotation(0.1), layers.RandomZoom(0.1),
                              layers.RandomTranslation(0.1, 0.1), layers.Conv2D(4, 3, activation="relu"),
                              layers.GlobalAveragePooling2D(), layers.Dense(3)])
    model.compile(optimizer=keras.optimizers.Adam(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(x, y, epochs=4, batch_size=16, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    plain = keras.Sequential([keras.Input((12, 12, 3)), *model.layers[3:]])
    np.testing.assert_allclose(model.predict(x, verbose=0), plain.predict(x, verbose=0), rtol=1e-6, atol=1e-6)
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6, atol=1e-6)


def test_docstring_examples_hold():
    from nncompile.keras.layers import augmentation
    result = doctest.testmod(augmentation, extraglobs={"np": np})
    assert result.failed == 0 and result.attempted >= 6


# --- RandomCrop ---------------------------------------------------------------------------------

def test_crop_window_is_one_offset_per_batch_spread_over_the_range(backend):
    """Pixels hold their (row, column): each training call's output is one window of the images,
    the same for every image of the batch, and the offsets cover [0, 3] x [0, 4]."""
    rows, cols = np.meshgrid(np.arange(7), np.arange(9), indexing="ij")
    images = np.broadcast_to(np.stack([rows, cols], -1).astype(np.float32), (4, 7, 9, 2))
    layer = layers.RandomCrop(4, 5, seed=9)
    seen = set()
    for _ in range(60):
        out = layer(images, training=True)
        top, left = int(out[0, 0, 0, 0]), int(out[0, 0, 0, 1])
        np.testing.assert_array_equal(out, images[:, top:top + 4, left:left + 5])
        seen.add((top, left))
    assert {t for t, _ in seen} == set(range(4)) and {w for _, w in seen} == set(range(5))


def test_crop_of_smaller_images_and_at_inference_is_keras(backend):
    """Smaller than the window on one side: cropped from the aspect-centred offset and resized, as
    real Keras does in training; at inference the aspect-centred window resized, which is Keras's
    Resizing(crop_to_aspect_ratio=True)."""
    np.testing.assert_allclose(layers.RandomCrop(8, 5)(DATA["images"], training=True), DATA["crop_small_training"],
                               **ULP)
    np.testing.assert_allclose(layers.RandomCrop(4, 5)(DATA["images"], training=False),
                               DATA["crop_aspect_resize_4x5"], rtol=1e-6, atol=4e-6)
    one = layers.RandomCrop(4, 5)(DATA["images"][0], training=False)
    np.testing.assert_allclose(one, DATA["crop_aspect_resize_4x5"][0], rtol=1e-6, atol=4e-6)


def test_crop_in_a_model_config_and_errors(tmp_path):
    config = layers.RandomCrop(8, 5, seed=2).get_config()
    keras_config = json.loads(str(DATA["configs"]))["crop"]
    assert {k: config[k] for k in ("height", "width", "seed", "data_format")} == \
        {k: keras_config[k] for k in ("height", "width", "seed", "data_format")}
    rng = np.random.default_rng(2)
    x, y = rng.random((32, 10, 10, 3), dtype=np.float32), rng.random((32, 1), dtype=np.float32)
    model = keras.Sequential([keras.Input((10, 10, 3)), layers.RandomCrop(6, 6), layers.Flatten(), layers.Dense(1)])
    assert model.output_shape == (None, 1) and model.layers[0].output.shape == (None, 6, 6, 3)
    model.compile(optimizer="sgd", loss="mse")
    assert np.isfinite(model.fit(x, y, epochs=2, batch_size=8, verbose=0).history["loss"]).all()
    model.save(tmp_path / "crop.keras")
    again = keras.models.load_model(tmp_path / "crop.keras")
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="height"):
        layers.RandomCrop(0, 3)


def test_keras_functional_file_predicts_without_augmenting():
    """Keras records the augmentation calls of a functional model with training=True; predict
    runs them in inference mode, as Keras does."""
    model = keras.models.load_model(FIXTURES / "affine_functional.keras")
    np.testing.assert_allclose(model.predict(DATA["images"], verbose=0), DATA["functional_y"], rtol=1e-5, atol=1e-5)

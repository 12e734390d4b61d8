"""Normalization, Resizing, CenterCrop and Dot: against numpy written here, against real Keras 3
(fixtures/keras/preprocessing/, made by make_preprocessing.py there: outputs and configs),
compiled vs the reference interpreter, and the gradients through them by finite differences."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from nncompile import keras
from nncompile.keras import layers
from tests.keras.finite_differences import gradients

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "keras" / "preprocessing"


@pytest.fixture
def reference(monkeypatch):
    """Layers run on the numpy interpreter (no LLVM compile per eager call); the compiled code
    is checked against it once, on a model holding every layer (the last tests)."""
    monkeypatch.setenv("NNCOMPILE_BACKEND", "reference")


def _x(shape, seed=0, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


# --- numpy references ---------------------------------------------------------------------------

def _bilinear_axis(images, axis, size):
    """Half-pixel-centre linear interpolation along `axis`, coordinates clamped to the image."""
    old = images.shape[axis]
    centres = np.clip((np.arange(size) + 0.5) * old / size - 0.5, 0, old - 1)
    low = np.floor(centres).astype(int)
    high = np.minimum(low + 1, old - 1)
    frac = (centres - low).reshape([-1 if a == axis else 1 for a in range(images.ndim)])
    return np.take(images, low, axis) * (1 - frac) + np.take(images, high, axis) * frac


def _bilinear(images, height, width):
    return _bilinear_axis(_bilinear_axis(images.astype(np.float64), 1, height), 2, width)


def _nearest(images, height, width):
    rows = np.floor((np.arange(height) + 0.5) * images.shape[1] / height).astype(int)
    cols = np.floor((np.arange(width) + 0.5) * images.shape[2] / width).astype(int)
    return images[:, rows][:, :, cols]


def _aspect_window(images, height, width):
    """The largest centred window with the aspect ratio height:width (Keras's smart crop)."""
    h, w = images.shape[1:3]
    crop_h, crop_w = max(min(h, w * height // width), 1), max(min(w, h * width // height), 1)
    top, left = (h - crop_h) // 2, (w - crop_w) // 2
    return images[:, top:top + crop_h, left:left + crop_w]


def test_resizing_and_center_crop_match_numpy(reference):
    images = _x((2, 5, 7, 3), scale=10)
    np.testing.assert_allclose(layers.Resizing(8, 10)(images), _bilinear(images, 8, 10), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(layers.Resizing(3, 4)(images), _bilinear(images, 3, 4), rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(layers.Resizing(8, 4, interpolation="nearest")(images),
                                  _nearest(images, 8, 4))
    np.testing.assert_allclose(layers.Resizing(4, 4, crop_to_aspect_ratio=True)(images),
                               _bilinear(_aspect_window(images, 4, 4), 4, 4), rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(layers.CenterCrop(3, 4)(images), images[:, 1:4, 1:5])
    # an image smaller than the crop is cropped to the aspect ratio and resized, as in Keras
    np.testing.assert_allclose(layers.CenterCrop(6, 4)(images),
                               _bilinear(_aspect_window(images, 6, 4), 6, 4), rtol=1e-5, atol=1e-4)
    pixels = np.arange(2 * 4 * 4 * 1, dtype=np.uint8).reshape(2, 4, 4, 1)
    assert layers.Resizing(2, 2)(pixels).dtype == np.float32   # as in a Keras model


def test_normalization_matches_numpy(reference):
    data = _x((6, 3, 4), seed=1, scale=3) + 1
    features = layers.Normalization()
    features.adapt(data)
    mean, std = data.mean((0, 1)), data.std((0, 1))
    np.testing.assert_allclose(features(data), (data - mean) / std, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(features.get_weights()[0], mean, rtol=1e-5)
    # adapt on batches merges them as one data set: an iterable, a PyDataset
    per_position = layers.Normalization(axis=(1, 2))
    per_position.adapt(iter([data[:1], data[1:4], data[4:]]))
    np.testing.assert_allclose(per_position(data), (data - data.mean(0)) / data.std(0), rtol=1e-4, atol=1e-5)

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 3

        def __getitem__(self, index):
            return data[2 * index:2 * index + 2], np.zeros(2)

    overall = layers.Normalization(axis=None)
    overall.adapt(Batches())
    np.testing.assert_allclose(overall(data), (data - data.mean()) / data.std(), rtol=1e-4, atol=1e-5)
    given = layers.Normalization(mean=[1.0, 2.0, 3.0, 4.0], variance=[1.0, 4.0, 0.0, 16.0])
    expected = (data - [1, 2, 3, 4]) / np.maximum(np.sqrt([1, 4, 0, 16]), 1e-7)
    np.testing.assert_allclose(given(data), expected, rtol=1e-5)
    inverted = layers.Normalization(axis=None, mean=0.5, variance=4.0, invert=True)
    np.testing.assert_allclose(inverted(data), data * 2 + 0.5, rtol=1e-6)


def test_dot_matches_numpy(reference):
    a, b = _x((4, 6), seed=2), _x((4, 6), seed=3)
    seq = _x((4, 3, 6), seed=4)
    np.testing.assert_allclose(layers.Dot(axes=1)([a, b]), (a * b).sum(1, keepdims=True), rtol=1e-5)
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    np.testing.assert_allclose(layers.Dot(axes=-1, normalize=True)([a, b]), cosine[:, None], rtol=1e-5)
    np.testing.assert_allclose(layers.Dot(axes=(2, 2))([seq, seq]), np.einsum("bik,bjk->bij", seq, seq),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layers.Dot(axes=(1, 2))([a, seq]), np.einsum("bk,bjk->bj", a, seq),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layers.dot([seq, seq], axes=1), np.einsum("bki,bkj->bij", seq, seq),
                               rtol=1e-5, atol=1e-6)


# --- real Keras 3 -------------------------------------------------------------------------------

def test_outputs_and_configs_match_real_keras(reference):
    fixture = np.load(FIXTURE / "preprocessing.npz")
    model = keras.models.load_model(FIXTURE / "preprocessing.keras")
    outputs = model.predict([fixture[k] for k in ("image", "a", "b", "seq")], verbose=0)
    assert sorted(outputs) == sorted(k[4:] for k in fixture.files if k.startswith("out_"))
    for name, got in outputs.items():   # bicubic included: Keys' kernel as jax.image has it
        np.testing.assert_allclose(got, fixture[f"out_{name}"], rtol=1e-5, atol=1e-4, err_msg=name)
    with zipfile.ZipFile(FIXTURE / "preprocessing.keras") as z:
        theirs = json.loads(z.read("config.json"))["config"]["layers"]
    for entry in theirs:
        if entry["class_name"] in ("Normalization", "Resizing", "CenterCrop", "Dot"):
            config = {k: v for k, v in entry["config"].items() if k != "dtype"}
            ours = {k: v for k, v in model.get_layer(config["name"]).get_config().items() if k != "dtype"}
            assert ours == config, config["name"]


# --- compiled code, gradients -------------------------------------------------------------------

def _model():
    """Dense layers before each new layer, so that their gradients pass through it."""
    image, vector = keras.Input((4, 5, 2)), keras.Input((3,))
    pixels = layers.Dense(2, use_bias=False)(image)
    pixels = layers.CenterCrop(3, 3)(layers.Resizing(5, 4, interpolation="bilinear")(pixels))
    pixels = layers.Flatten()(layers.Resizing(2, 3, interpolation="bicubic")(pixels))
    features = layers.Normalization(mean=[1.0, -1.0, 0.5], variance=[4.0, 1.0, 0.25])(vector)
    hidden = layers.Dense(3, use_bias=False)(features)
    cosine = layers.Dot(axes=1, normalize=True)([hidden, features])
    outer = layers.Flatten()(layers.Dot(axes=(2, 2))([layers.Reshape((3, 1))(hidden),
                                                      layers.Reshape((3, 1))(features)]))
    out = layers.Dense(1, use_bias=False)(layers.Concatenate()([pixels, cosine, outer]))
    model = keras.Model([image, vector], out)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse")
    return model


def test_compiled_matches_reference_and_gradients_match_finite_differences(monkeypatch):
    # fixed weights and a wide step: the float32 noise of the differenced losses stays far
    # below the tolerance (some draws give losses in the hundreds)
    keras.utils.set_random_seed(0)
    model = _model()
    x = [_x((3, 4, 5, 2), seed=5, scale=0.3), _x((3, 3), seed=6)]
    y = _x((3, 1), seed=7, scale=0.3)
    compiled = model.predict(x, verbose=0)
    monkeypatch.setenv("NNCOMPILE_BACKEND", "reference")
    np.testing.assert_allclose(compiled, model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    weights = [w.astype(np.float64) for w in model.get_weights()]

    def loss():
        model.set_weights(weights)
        return float(np.mean((model.predict(x, verbose=0).astype(np.float64) - y) ** 2))

    grads = gradients(loss, weights, eps=1e-2)
    model.set_weights(weights)
    monkeypatch.setenv("NNCOMPILE_BACKEND", "cpu")
    model.train_on_batch(x, y)
    for got, weight, grad in zip(model.get_weights(), weights, grads):
        np.testing.assert_allclose(got, weight - 0.1 * grad, rtol=2e-3, atol=2e-4)


# --- arguments ----------------------------------------------------------------------------------

@pytest.mark.parametrize("layer", [
    layers.Resizing(3, 4, interpolation="nearest", crop_to_aspect_ratio=True, name="r"),
    layers.CenterCrop(2, 5), layers.Dot(axes=[1, 2], normalize=True), layers.Dot(axes=-1),
    layers.Normalization(axis=(1, 2), mean=[1.0, 2.0], variance=[3.0, 4.0], invert=True),
    layers.Normalization(axis=None)])
def test_configs_round_trip(layer):
    again = type(layer).from_config(layer.get_config())
    assert again.get_config() == layer.get_config()


@pytest.mark.parametrize("make, message", [
    (lambda: layers.Resizing(2, 2, interpolation="area"), "`interpolation` argument must be one of"),
    (lambda: layers.Resizing(2, 2, pad_to_aspect_ratio=True, crop_to_aspect_ratio=True),
     "Only one of `pad_to_aspect_ratio`, `crop_to_aspect_ratio` can be set to `True`"),
    (lambda: layers.Resizing(0, 2), "height"),
    (lambda: layers.CenterCrop(2, 2)(np.ones((2, 3), np.float32)), "rank 4"),
    (lambda: layers.Dot(axes=(1, 2, 3)), "should contain two elements"),
    (lambda: layers.Dot(axes=1)([np.ones((2, 3), np.float32), np.ones((2, 4), np.float32)]),
     r"axis values 3 \(at axis 1\) != 4"),
    (lambda: layers.Dot(axes=0)([np.ones((2, 3), np.float32)] * 2), "non-batch axis"),
    (lambda: layers.Normalization(mean=1.0), "both `mean` and `variance`"),
    (lambda: layers.Normalization(axis="last"), "`axis` argument must be None, an int"),
    (lambda: layers.Normalization(mean=1.0, variance=1.0).adapt(np.ones((2, 2))), "was given"),
])
def test_bad_arguments_name_the_layer_and_argument(reference, make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


# --- CategoryEncoding ---------------------------------------------------------------------------

def _numpy_encoding(ids: np.ndarray, depth: int, mode: str) -> np.ndarray:
    """Keras 3's encodings written out: ids outside [0, depth) count nowhere."""
    eye = np.vstack([np.eye(depth), np.zeros((1, depth))])
    hot = eye[np.where((ids >= 0) & (ids < depth), ids, depth)]
    if mode == "one_hot":
        return hot[..., 0, :] if ids.ndim > 1 and ids.shape[-1] == 1 else hot
    axis = 1 if ids.ndim > 1 else 0
    return hot.max(axis=axis) if mode == "multi_hot" else hot.sum(axis=axis)


@pytest.mark.parametrize("mode", ["one_hot", "multi_hot", "count", "binary"])
@pytest.mark.parametrize("ids", [np.array([[0, 3, 3], [2, 5, -1]]), np.array([[1], [3], [0]]),
                                 np.array([1, 3, 3, 0]), np.array([[[0, 1], [1, 1]], [[2, 2], [3, 0]]])])
def test_category_encoding_is_keras_encoding(mode, ids):
    layer = layers.CategoryEncoding(num_tokens=4, output_mode=mode)
    want = _numpy_encoding(ids, 4, "multi_hot" if mode == "binary" else mode)
    got = layer(ids.astype(np.int32))
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)


def test_category_encoding_in_a_model_config_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    ids, y = rng.integers(0, 6, (32, 3)).astype(np.int32), rng.random((32, 1)).astype(np.float32)
    model = keras.Sequential([keras.Input((3,), dtype="int32"), layers.CategoryEncoding(6, output_mode="count"),
                              layers.Dense(1)])
    assert model.output_shape == (None, 1) and model.layers[0].output.shape == (None, 6)
    model.compile(optimizer="sgd", loss="mse")
    assert np.isfinite(model.fit(ids, y, epochs=2, batch_size=8, verbose=0).history["loss"]).all()
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(again.predict(ids, verbose=0), model.predict(ids, verbose=0), rtol=1e-6)
    assert layers.CategoryEncoding(3, output_mode="binary").get_config()["output_mode"] == "multi_hot"
    with pytest.raises(ValueError, match="num_tokens must be set"):
        layers.CategoryEncoding()
    with pytest.raises(ValueError, match="Unknown arg for output_mode: int"):
        layers.CategoryEncoding(3, output_mode="int")
    with pytest.raises(ValueError, match="`num_tokens` must be >= 1"):
        layers.CategoryEncoding(0)


# --- Discretization -----------------------------------------------------------------------------

DISCRETIZATION = np.load(Path(__file__).resolve().parents[1] / "fixtures" / "keras" / "discretization"
                         / "discretization.npz")


@pytest.mark.parametrize("bins,epsilon", [(4, 0.01), (7, 0.05), (3, 0.3)])
def test_discretization_adapt_is_keras_summary_one_batch_and_three(bins, epsilon):
    data = DISCRETIZATION["data"]
    layer = layers.Discretization(num_bins=bins, epsilon=epsilon)
    layer.adapt(data)
    np.testing.assert_allclose(layer.bin_boundaries, DISCRETIZATION[f"boundaries_{bins}_{epsilon}"], rtol=1e-6)
    batched = layers.Discretization(num_bins=bins, epsilon=epsilon)
    batched.adapt([data[:100], data[100:250], data[250:]])
    np.testing.assert_allclose(batched.bin_boundaries, DISCRETIZATION[f"batched_{bins}_{epsilon}"], rtol=1e-6)


def test_discretization_of_few_values_is_their_interpolated_quantiles():
    """Fewer values than 1 / epsilon are kept whole, so the boundaries are the sorted values'
    cumulative fractions interpolated at 1/4, 2/4, 3/4, written out here."""
    values = np.array([5.0, -1.0, 2.0, 8.0, 0.5, 3.0], np.float32)
    layer = layers.Discretization(num_bins=4, epsilon=0.1)
    layer.adapt(values)
    ordered = np.sort(values)
    fractions = np.arange(1, 7) / 6
    np.testing.assert_allclose(layer.bin_boundaries, np.interp([0.25, 0.5, 0.75], fractions, ordered), rtol=1e-6)


@pytest.mark.parametrize("mode", ["int", "one_hot", "multi_hot", "count"])
def test_discretization_outputs_are_keras(mode):
    layer = layers.Discretization(bin_boundaries=[-1.0, 0.0, 1.0, 3.0], output_mode=mode)
    got = layer(DISCRETIZATION["x"])
    want = DISCRETIZATION[f"out_{mode}"]
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.digitize(DISCRETIZATION["x"], [-1.0, 0.0, 1.0, 3.0]),
                                  layers.Discretization(bin_boundaries=[-1.0, 0.0, 1.0, 3.0])(DISCRETIZATION["x"]))


def test_discretization_in_a_model_config_and_errors(tmp_path):
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((40, 2)).astype(np.float32), rng.random((40, 1)).astype(np.float32)
    bucket = layers.Discretization(num_bins=5)
    bucket.adapt(x)
    model = keras.Sequential([keras.Input((2,)), bucket, layers.CategoryEncoding(5, output_mode="count"),
                              layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    assert np.isfinite(model.fit(x, y, epochs=2, batch_size=8, verbose=0).history["loss"]).all()
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    assert again.layers[0].bin_boundaries == bucket.bin_boundaries and again.layers[0].num_bins == 5
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
    with pytest.raises(ValueError, match="You need to set either `num_bins` or `bin_boundaries`"):
        layers.Discretization()
    with pytest.raises(ValueError, match="Both `num_bins` and `bin_boundaries` should not be set"):
        layers.Discretization(bin_boundaries=[0.0], num_bins=2)
    with pytest.raises(ValueError, match="Cannot adapt a Discretization layer that has been initialized"):
        layers.Discretization(bin_boundaries=[0.0]).adapt(x)
    with pytest.raises(ValueError, match="call `adapt"):
        layers.Discretization(num_bins=3)(x)

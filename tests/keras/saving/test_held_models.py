"""Layers and models held by a layer's attributes (keras.io's TransformerBlock keeps
`self.ffn = keras.Sequential([...])`): their weights are saved where Keras 3 saves them and read
back from there, in `.weights.h5` and `.keras` files, or a clear error names the layer and group.

The references are independent of nncompile: the files real Keras 3 wrote for the same models
(tests/fixtures/keras/held, made by make_held.py from held_models.py, the code these tests build
too), Keras's predictions stored beside them, and numpy forwards computed from the arrays of
Keras's files at the paths Keras gave them.
"""
from __future__ import annotations

import io
import json
import shutil
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from nncompile import keras
from nncompile.keras.saving import SavingError

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "keras" / "held"
sys.path.insert(0, str(FIXTURES))
import held_models  # noqa: E402

MADE = held_models.classes(keras)
TOLERANCE = 1e-5


def _build(name: str):
    return held_models.build(keras, name, MADE)


def _fixture(name: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(FIXTURES / f"{name}.npz") as z:
        return z["x"], z["y"]


def _predict(model, x: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(x, verbose=0))


def _layout(f: h5py.Group) -> dict[str, object]:
    """Every group and dataset of an h5 file: a dataset's shape, a group's `name` attribute's
    presence (its value is the layer's name, which differs from program to program)."""
    items: dict[str, object] = {}
    f.visititems(lambda path, item: items.__setitem__(
        path, item.shape if isinstance(item, h5py.Dataset) else ("group", "name" in item.attrs)))
    return items


def _zip_layout(path: Path) -> dict[str, object]:
    with zipfile.ZipFile(path) as z, h5py.File(io.BytesIO(z.read("model.weights.h5"))) as f:
        return _layout(f)


# --- numpy forwards from the arrays of a Keras 3 weights file --------------------------------------

def _dense(f, path: str, x: np.ndarray, activation=lambda v: v) -> np.ndarray:
    return activation(x @ f[f"{path}/vars/0"][()] + f[f"{path}/vars/1"][()])


def _relu(v):
    return np.maximum(v, 0.0)


def _reference(name: str, f: h5py.Group, x: np.ndarray) -> np.ndarray:
    """The model `name` in numpy, its weights read at the paths Keras 3 writes."""
    x = x.astype(np.float64)
    if name == "sequential_in_layer":
        ffn = "layers/feed_forward/ffn/layers"
        z = x + _dense(f, f"{ffn}/dense_1", _dense(f, f"{ffn}/dense", x, _relu))
        mean, var = z.mean(-1, keepdims=True), z.var(-1, keepdims=True)
        z = (z - mean) / np.sqrt(var + 1e-6) * f["layers/feed_forward/norm/vars/0"][()] \
            + f["layers/feed_forward/norm/vars/1"][()]
        return _dense(f, "layers/dense", z.mean(axis=1))
    if name == "functional_in_layer":
        towers = [_dense(f, f"layers/{t}/net/layers/dense_1", _dense(f, f"layers/{t}/net/layers/dense", x, np.tanh))
                  for t in ("tower", "tower_1")]   # the left tower is met first
        return _dense(f, "layers/dense", np.concatenate(towers, axis=-1))
    if name == "layer_in_layer_in_layer":
        h = _dense(f, "layers/outer/middle/inner/dense", x, np.tanh)
        h = _dense(f, "layers/outer/middle/steps/dense_1", _dense(f, "layers/outer/middle/steps/dense", h, _relu))
        return _dense(f, "layers/outer/head", h)
    if name == "subclassed_holder":
        h = _dense(f, "ffn/layers/dense_1", _dense(f, "ffn/layers/dense", _dense(f, "embed", x), _relu))
        return _dense(f, "layers/dense_1", h)   # `proj`, met in the model's `layers` list
    if name == "configured_layer":
        affine = x @ f["layers/affine/vars/0"][()] * 0.5 - 1.0
        return _dense(f, "layers/dense", affine)
    raise KeyError(name)


# --- 1. the layout Keras 3 writes ----------------------------------------------------------------

@pytest.mark.parametrize("name", held_models.NAMES)
def test_weights_file_layout_is_keras_3(tmp_path, name):
    model = _build(name)
    model.save_weights(tmp_path / "m.weights.h5")
    with h5py.File(tmp_path / "m.weights.h5") as mine, h5py.File(FIXTURES / f"{name}.weights.h5") as keras3:
        assert _layout(mine) == _layout(keras3)


@pytest.mark.parametrize("name", held_models.WHOLE_MODEL)
def test_keras_file_layout_is_keras_3(tmp_path, name):
    model = _build(name)
    model.save(tmp_path / "m.keras")
    assert _zip_layout(tmp_path / "m.keras") == _zip_layout(FIXTURES / f"{name}.keras")


def test_transformer_block_layout_names_the_held_sequential(tmp_path):
    # The pattern of the bug report, spelled out: the held Sequential's layers are under its
    # attribute's group, as `layers/<class>`.
    _build("sequential_in_layer").save_weights(tmp_path / "m.weights.h5")
    with h5py.File(tmp_path / "m.weights.h5") as f:
        assert f["layers/feed_forward/ffn/layers/dense/vars/0"].shape == (6, 8)
        assert f["layers/feed_forward/ffn/layers/dense_1/vars/0"].shape == (8, 6)
        assert len(f["layers/feed_forward/ffn/vars"]) == 0   # the model itself has no weights


# --- 2. files real Keras 3 wrote ---------------------------------------------------------------------

@pytest.mark.parametrize("name", held_models.NAMES)
def test_numpy_reference_agrees_with_keras(name):
    # The reference of the other tests is itself checked against Keras's own predictions.
    x, y = _fixture(name)
    with h5py.File(FIXTURES / f"{name}.weights.h5") as f:
        np.testing.assert_allclose(_reference(name, f, x), y, rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("name", held_models.NAMES)
def test_keras_weights_file_loads(name):
    x, y = _fixture(name)
    model = _build(name)
    assert np.max(np.abs(_predict(model, x) - y)) > 0.1   # the initial weights predict otherwise
    model.load_weights(FIXTURES / f"{name}.weights.h5")
    np.testing.assert_allclose(_predict(model, x), y, rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("name", held_models.WHOLE_MODEL)
def test_keras_model_file_loads(name):
    x, y = _fixture(name)
    model = keras.models.load_model(FIXTURES / f"{name}.keras", custom_objects=MADE)
    np.testing.assert_allclose(_predict(model, x), y, rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("name", held_models.NAMES)
def test_written_weights_are_where_keras_reads_them(tmp_path, name):
    # What nncompile writes, read by the numpy forward at Keras's paths, predicts as nncompile
    # does: each array is at the path Keras would read it from (checked by hand with real Keras
    # too: check_held_files.py).
    x, _ = _fixture(name)
    model = _build(name)
    held_models.randomize(model, seed=7)
    model.save_weights(tmp_path / "m.weights.h5")
    with h5py.File(tmp_path / "m.weights.h5") as f:
        np.testing.assert_allclose(_reference(name, f, x), _predict(model, x), rtol=0, atol=TOLERANCE)


# --- round trips ---------------------------------------------------------------------------------

def _trained(name: str):
    """The model `name` with random weights, then a few SGD steps (so that the held model's
    weights are neither the initial nor the random ones)."""
    x, _ = _fixture(name)
    model = _build(name)
    held_models.randomize(model, seed=3)
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    targets = np.random.default_rng(0).normal(size=_predict(model, x).shape).astype("float32")
    model.fit(x, targets, epochs=2, batch_size=2, verbose=0)
    return model


def _assert_same_model(again, model, x, want) -> None:
    """`again` predicts what `model` predicted (`want`) and holds exactly its weights."""
    np.testing.assert_allclose(_predict(again, x), want, rtol=0, atol=1e-6)
    assert len(again.get_weights()) == len(model.get_weights())
    for got, expected in zip(again.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("name", held_models.NAMES)
def test_save_weights_load_weights_round_trip(tmp_path, name):
    x, _ = _fixture(name)
    model = _trained(name)
    want = _predict(model, x)
    model.save_weights(tmp_path / "m.weights.h5")
    again = _build(name)
    assert np.max(np.abs(_predict(again, x) - want)) > 0.1
    again.load_weights(tmp_path / "m.weights.h5")
    _assert_same_model(again, model, x, want)


@pytest.mark.parametrize("name", held_models.WHOLE_MODEL)
def test_save_load_model_round_trip(tmp_path, name):
    x, _ = _fixture(name)
    model = _trained(name)
    want = _predict(model, x)
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras", custom_objects=MADE)
    _assert_same_model(again, model, x, want)


# --- 3. files that do not fit ----------------------------------------------------------------------

FFN = "layers/feed_forward/ffn/layers"


def _edited(tmp_path: Path, edit) -> Path:
    """A copy of Keras's sequential_in_layer weights file, changed by `edit(h5 file)`."""
    path = tmp_path / "edited.weights.h5"
    shutil.copy(FIXTURES / "sequential_in_layer.weights.h5", path)
    with h5py.File(path, "r+") as f:
        edit(f)
    return path


def _refused(model, path: Path, pattern: str) -> None:
    """Loading `path` raises a SavingError matching `pattern`, and changes no weight."""
    before = model.get_weights()
    with pytest.raises(SavingError, match=pattern):
        model.load_weights(path)
    for got, want in zip(model.get_weights(), before):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("deleted, pattern", [
    # a held model's layer without its weights
    (f"{FFN}/dense_1/vars", rf"edited.weights.h5.*layer 'dense_\d+' \(group '{FFN}/dense_1'\): its "
                            rf"weights are missing \(no group '{FFN}/dense_1/vars'\)"),
    # one weight of a held layer missing
    (f"{FFN}/dense/vars/1", rf"layer 'dense\w*' \(group '{FFN}/dense'\) expects 2 weights "
                            rf"\(\S+/kernel, \S+/bias\), the file has 1"),
    # the layout older nncompile wrote: an empty `ffn/vars` and nothing under it (the weights were
    # lost); refused by name, never loaded as if it had them
    (FFN, rf"its weights are missing \(no group '{FFN}/dense/vars'\)"),
])
def test_missing_held_weights_are_named(tmp_path, deleted, pattern):
    def drop(f):
        del f[deleted]
    _refused(_build("sequential_in_layer"), _edited(tmp_path, drop), pattern)


def test_misshaped_held_weight_is_named_or_skipped(tmp_path):
    def widen(f):
        del f[f"{FFN}/dense/vars/0"]
        f[f"{FFN}/dense/vars/0"] = np.zeros((6, 9), "float32")
    path = _edited(tmp_path, widen)
    model = _build("sequential_in_layer")
    _refused(model, path, rf"layer 'dense\w*' \(group '{FFN}/dense'\): weight '\S+/kernel' expects "
                          rf"shape \(6, 8\), the file has shape \(6, 9\)")
    held = model.get_layer("block").ffn.layers[0]
    own = [w.numpy() for w in held.weights]
    with pytest.warns(UserWarning, match=rf"Skipping.*group '{FFN}/dense'"):
        model.load_weights(path, skip_mismatch=True)
    for got, want in zip(held.weights, own):   # the whole layer keeps its weights, as Keras
        np.testing.assert_array_equal(got.numpy(), want)
    with h5py.File(path) as f:   # the others are loaded
        np.testing.assert_array_equal(model.get_layer("block").ffn.layers[1].weights[0].numpy(),
                                      f[f"{FFN}/dense_1/vars/0"][()])


def test_held_weights_no_layer_takes_are_named(tmp_path):
    def add_layer(f):
        f[f"{FFN}/dense_2/vars/0"] = np.zeros((6, 6), "float32")
    path = _edited(tmp_path, add_layer)
    _refused(_build("sequential_in_layer"), path, rf"no layer of the model takes: {FFN}/dense_2\b")


def test_subclassed_model_weights_no_layer_takes_are_named(tmp_path):
    # A subclassed model's layers sit at the file's root (`embed/vars`): a stray one there is
    # named too.
    path = tmp_path / "stray.weights.h5"
    shutil.copy(FIXTURES / "subclassed_holder.weights.h5", path)
    with h5py.File(path, "r+") as f:
        f["extra/vars/0"] = np.zeros(3, "float32")
    _refused(_build("subclassed_holder"), path, r"no layer of the model takes: extra\b")


# --- configs Keras 3 records from the constructor --------------------------------------------------

def _keras_config(name: str, layer: str | None = None) -> dict:
    with zipfile.ZipFile(FIXTURES / f"{name}.keras") as z:
        config = json.loads(z.read("config.json"))
    if layer is not None:
        config = next(entry for entry in config["config"]["layers"] if entry["config"]["name"] == layer)
    return {k: v for k, v in config["config"].items() if k != "dtype"}


def test_constructor_arguments_are_the_config_as_keras_records_them():
    # Affine and Holder define no get_config: Keras 3 wrote the arguments they were made with.
    affine = _build("configured_layer").get_layer("affine")
    assert {k: v for k, v in affine.get_config().items() if k != "dtype"} == \
        _keras_config("configured_layer", "affine")
    holder = _build("subclassed_holder")
    assert {k: v for k, v in holder.get_config().items() if k != "dtype"} == _keras_config("subclassed_holder")


def test_subclassed_model_file_predicts_at_any_batch():
    # Keras's build_config holds the batch of the first call (4); the model takes any batch.
    x, y = _fixture("subclassed_holder")
    model = keras.models.load_model(FIXTURES / "subclassed_holder.keras", custom_objects=MADE)
    assert isinstance(model, MADE["Holder"])
    more = np.concatenate([x, x[:3]])
    np.testing.assert_allclose(_predict(model, more)[:4], y, rtol=0, atol=TOLERANCE)


def test_clone_keeps_the_constructor_arguments():
    x, _ = _fixture("configured_layer")
    model = _build("configured_layer")
    clone = keras.models.clone_model(model)
    affine = clone.get_layer("affine")
    assert (affine.units, affine.scale, affine.shift) == (3, 0.5, -1.0)
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(_predict(clone, x), _predict(model, x), rtol=0, atol=1e-6)


def test_subclassed_model_with_arguments_round_trips(tmp_path):
    # A width other than the default: the file holds it, and the model comes back that wide.
    x, _ = _fixture("subclassed_holder")
    model = MADE["Holder"](width=6, name="wide")
    want = _predict(model, x)
    model.save(tmp_path / "wide.keras")
    again = keras.models.load_model(tmp_path / "wide.keras", custom_objects=MADE)
    assert again.get_config()["width"] == 6 and again.name == "wide"
    _assert_same_model(again, model, x, want)
    assert keras.models.clone_model(model).embed.units == 6


class _Offset(keras.layers.Layer):
    def __init__(self, offset, **kwargs):
        super().__init__(**kwargs)
        self.offset = offset

    def call(self, inputs):
        return inputs + self.offset


def test_a_layer_made_with_other_values_must_define_get_config(tmp_path):
    # An array argument is not a plain value: Keras 3 cannot record it, and saving says so
    # instead of writing a layer that would come back without it; no file is left behind.
    inputs = keras.Input((3,))
    model = keras.Model(inputs, _Offset(np.ones(3, "float32"))(inputs))
    with pytest.raises(NotImplementedError, match=r"_Offset was created by passing non-serializable "
                                                  r"argument values in `__init__\(\)`.*implement `get_config\(\)`"):
        model.save(tmp_path / "m.keras")
    assert not (tmp_path / "m.keras").exists()
    assert _Offset(2.5).get_config()["offset"] == 2.5


def test_a_subclassed_model_is_not_saved_as_legacy_h5(tmp_path):
    # The .h5 format has no build config: the file could not be loaded back, so none is written.
    with pytest.raises(ValueError, match=r"Model 'subclassed_holder' \(Holder\) defines its own `call`.*'\.keras'"):
        _build("subclassed_holder").save(tmp_path / "m.h5")
    assert not (tmp_path / "m.h5").exists()

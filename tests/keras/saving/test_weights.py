"""save_weights / load_weights: Keras 3's `.weights.h5` layout, legacy `.h5` by position or by
name, `skip_mismatch`, and clear errors for files that do not fit."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from nncompile import keras
from nncompile.keras import layers
from nncompile.keras.saving import SavingError


def _model(units: int = 3, name: str = "m"):
    return keras.Sequential([keras.Input(shape=(4,)), layers.Dense(units, name="a"),
                             layers.BatchNormalization(name="bn"), layers.Dense(2, name="b")], name=name)


def _randomize(model, seed: int = 0):
    rng = np.random.default_rng(seed)
    for var in model.weights:
        var.assign(rng.uniform(0.5, 1.5, var.shape))
    return model


def test_weights_file_layout_is_keras_3(tmp_path):
    model = _randomize(_model())
    model.save_weights(tmp_path / "w.weights.h5")
    with h5py.File(tmp_path / "w.weights.h5") as f:
        assert f["layers/dense/vars"].attrs["name"] == "a"
        assert f["layers/dense_1/vars"].attrs["name"] == "b"
        np.testing.assert_array_equal(f["layers/dense/vars/0"][()], model.get_layer("a").weights[0].numpy())
        bn = [f[f"layers/batch_normalization/vars/{i}"][()] for i in range(4)]
        gamma, beta, mean, variance = (v.numpy() for v in model.get_layer("bn").weights)
        for got, want in zip(bn, [gamma, beta, mean, variance]):   # trainable first, as Keras
            np.testing.assert_array_equal(got, want)
        assert f["vars"].attrs["name"] == "m"


def test_weights_round_trip_and_name_requirement(tmp_path):
    model = _randomize(_model())
    with pytest.raises(ValueError, match=r"must end in `.weights.h5`"):
        model.save_weights(tmp_path / "w.h5")
    model.save_weights(tmp_path / "w.weights.h5")
    other = _randomize(_model(), seed=1)
    other.load_weights(tmp_path / "w.weights.h5")
    for want, got in zip(model.weights, other.weights):
        np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_shape_mismatch_is_named_or_skipped(tmp_path):
    _randomize(_model()).save_weights(tmp_path / "w.weights.h5")
    wider = _model(units=5)
    before = [w.numpy() for w in wider.weights]
    with pytest.raises(SavingError, match=r"w.weights.h5.*layer 'a'.*'a/kernel' expects shape \(4, 5\)"):
        wider.load_weights(tmp_path / "w.weights.h5")
    for want, got in zip(before, wider.weights):    # nothing changed
        np.testing.assert_array_equal(got.numpy(), want)
    with pytest.warns(UserWarning, match="Skipping"):
        wider.load_weights(tmp_path / "w.weights.h5", skip_mismatch=True)
    for want, got in zip(before, wider.weights):    # every layer has a weight that does not fit
        np.testing.assert_array_equal(got.numpy(), want)


def test_skip_mismatch_skips_the_whole_layer_in_keras_3_files(tmp_path):
    # As Keras 3: a layer whose kernel does not fit keeps its own bias too, though the bias fits.
    def model(features):
        return keras.Sequential([keras.Input(shape=(features,)), layers.Dense(3, name="a"),
                                 layers.Dense(2, name="b")])

    _randomize(model(4)).save_weights(tmp_path / "w.weights.h5")
    narrower = _randomize(model(5), seed=1)
    own_bias = narrower.get_layer("a").weights[1].numpy()
    with pytest.warns(UserWarning, match="Skipping.*layer 'a'"):
        narrower.load_weights(tmp_path / "w.weights.h5", skip_mismatch=True)
    with h5py.File(tmp_path / "w.weights.h5") as f:
        np.testing.assert_array_equal(narrower.get_layer("a").weights[1].numpy(), own_bias)
        np.testing.assert_array_equal(narrower.get_layer("b").weights[0].numpy(), f["layers/dense_1/vars/0"][()])


def test_legacy_h5_weights_by_position_and_by_name(tmp_path):
    model = _randomize(_model())
    model.save(tmp_path / "full.h5")
    by_position = _model(name="other")
    by_position.load_weights(tmp_path / "full.h5")
    np.testing.assert_array_equal(by_position.get_layer("b").weights[0].numpy(),
                                  model.get_layer("b").weights[0].numpy())
    renamed = keras.Sequential([keras.Input(shape=(4,)), layers.Dense(3, name="x"),
                                layers.BatchNormalization(name="bn"), layers.Dense(2, name="b")])
    renamed.load_weights(tmp_path / "full.h5", by_name=True)
    np.testing.assert_array_equal(renamed.get_layer("b").weights[0].numpy(),
                                  model.get_layer("b").weights[0].numpy())
    assert not np.array_equal(renamed.get_layer("x").weights[0].numpy(), model.get_layer("a").weights[0].numpy())


def test_layer_count_mismatch(tmp_path):
    _randomize(_model()).save(tmp_path / "full.h5")
    small = keras.Sequential([keras.Input(shape=(4,)), layers.Dense(2, name="b")])
    with pytest.raises(SavingError, match=r"full.h5.*layer count mismatch.*1 layers with weights.*3"):
        small.load_weights(tmp_path / "full.h5")


@pytest.mark.parametrize("name", ["w.weights.h5", "m.keras"])
def test_by_name_is_refused_for_keras_3_files(tmp_path, name):
    model = _randomize(_model())
    (model.save_weights if name.endswith(".weights.h5") else model.save)(tmp_path / name)
    with pytest.raises(SavingError, match=rf"{name}.*`by_name=True` only supports legacy '.h5'"):
        _model().load_weights(tmp_path / name, by_name=True)

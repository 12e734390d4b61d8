"""ConvLSTM1D/2D/3D files real Keras made and trained one step (tests/fixtures/keras/conv_lstm,
`make_conv_lstm.py`): nncompile loads the .keras and .h5 files, predicts what Keras predicted and
takes the same SGD step; the files nncompile writes load back the same."""
from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest

from nncompile import keras

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "keras", "conv_lstm")
MODELS = ["video", "sequences", "volume", "channels_first"]
LOSSES = {"video": "binary_crossentropy"}


def _plain(config):
    """A config as JSON data, without the ids Keras's saving adds to shared objects."""
    if isinstance(config, dict):
        return {k: _plain(v) for k, v in config.items() if k != "shared_object_id"}
    if isinstance(config, (list, tuple)):
        return [_plain(v) for v in config]
    return config


def _load(name: str, extension: str):
    return keras.models.load_model(os.path.join(FIXTURES, f"{name}.{extension}")), \
        np.load(os.path.join(FIXTURES, f"{name}.npz"))


@pytest.mark.parametrize("extension", ["keras", "h5"])
@pytest.mark.parametrize("name", MODELS)
def test_files_real_keras_made_predict_and_train_as_keras_did(name, extension):
    model, data = _load(name, extension)
    np.testing.assert_allclose(model.predict(data["x"], verbose=0), data["prediction"],
                               rtol=1e-5, atol=1e-5)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=LOSSES.get(name, "mse"))
    model.train_on_batch(data["x"], data["y"])
    trained = [data[f"trained_{i}"] for i in range(len(model.weights))]
    assert len(trained) == len(model.weights) and f"trained_{len(trained)}" not in data
    for got, want in zip(model.get_weights(), trained):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def _conv_lstm_configs(path: str) -> dict:
    with zipfile.ZipFile(path) as z:
        layers = json.loads(z.read("config.json"))["config"]["layers"]
    # nncompile writes every layer's dtype as its name, Keras 3.15 as a DTypePolicy
    return {c["config"]["name"]: {k: v for k, v in _plain(c["config"]).items() if k != "dtype"}
            for c in layers if c["class_name"].startswith("ConvLSTM")}


@pytest.mark.parametrize("name", MODELS)
def test_configs_are_keras_s_and_files_nncompile_writes_load_back(name, tmp_path):
    model, data = _load(name, "keras")
    prediction = model.predict(data["x"], verbose=0)
    for extension in ("keras", "h5"):
        path = str(tmp_path / f"again.{extension}")
        model.save(path)
        again = keras.models.load_model(path)
        np.testing.assert_allclose(again.predict(data["x"], verbose=0), prediction, rtol=1e-6)
        assert [w.path for w in again.weights] == [w.path for w in model.weights]
    written = _conv_lstm_configs(str(tmp_path / "again.keras"))
    assert written and written == _conv_lstm_configs(os.path.join(FIXTURES, f"{name}.keras"))

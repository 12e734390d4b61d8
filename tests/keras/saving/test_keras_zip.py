"""The `.keras` zip nncompile writes has Keras 3.15's members and weights layout."""
from __future__ import annotations

import io
import json
import zipfile

import h5py
import numpy as np

from nncompile import keras
from nncompile.keras import layers


def test_zip_members_config_and_weights_layout(tmp_path):
    inner = keras.Sequential([keras.Input(shape=(3,)), layers.Dense(3, name="i1")], name="inner")
    x = keras.Input(shape=(3,), name="x")
    model = keras.Model(x, layers.Dense(1, name="top")(inner(layers.Dense(3, name="pre")(x))), name="outer")
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.ones((4, 3)), np.zeros((4, 1)), verbose=0)
    model.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as z:
        assert z.namelist() == ["metadata.json", "config.json", "model.weights.h5"]
        metadata = json.loads(z.read("metadata.json"))
        config = json.loads(z.read("config.json"))
        blob = z.read("model.weights.h5")
    assert set(metadata) == {"keras_version", "date_saved"}
    assert config["class_name"] == "Functional" and config["registered_name"] == "Functional"
    assert config["compile_config"]["optimizer"]["class_name"] == "Adam"
    assert config["compile_config"]["loss"] == "mse"
    with h5py.File(io.BytesIO(blob)) as f:
        # layers by class name in model order, nested models recurse, then the optimizer
        assert f["layers/input_layer/vars"].attrs["name"] == "x"
        assert f["layers/dense/vars"].attrs["name"] == "pre"
        assert f["layers/sequential/layers/dense/vars"].attrs["name"] == "i1"
        assert f["layers/dense_1/vars"].attrs["name"] == "top"
        np.testing.assert_array_equal(f["layers/sequential/layers/dense/vars/0"][()],
                                      inner.get_layer("i1").weights[0].numpy())
        optimizer = f["optimizer/vars"]
        assert int(optimizer["0"][()]) == 1                       # iteration
        assert optimizer["1"][()] == np.float32(0.001)            # learning rate
        assert len(optimizer) == 2 + 2 * len(model.trainable_weights)
        assert optimizer["2"].shape == optimizer["3"].shape == (3, 3)   # momentum, velocity of pre/kernel

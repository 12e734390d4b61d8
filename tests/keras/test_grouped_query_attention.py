"""GroupQueryAttention against real Keras 3.15 (tests/fixtures/keras/gqa, made by its script):
Keras files predict, return their scores and take one SGD step as Keras did, configs as Keras
writes them (class name GroupQueryAttention, weights under grouped_query_attention/_query_dense,
...), and nncompile's own files load back; errors as Keras's."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nncompile import keras
from nncompile.keras import layers
from tests.keras.keras_files import predicts_and_trains_as_keras

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "keras" / "gqa"
KERAS = np.load(FIXTURES / "gqa.npz")


def test_keras_files_predict_and_train_as_keras():
    count = sum(name.startswith("next_") for name in KERAS.files)
    predicts_and_trains_as_keras(FIXTURES / "gqa.keras", [KERAS["q"], KERAS["v"]], [KERAS["t"], KERAS["scores"]],
                                 [KERAS["y"], KERAS["scores"]], [KERAS[f"next_{i}"] for i in range(count)])
    count = sum(name.startswith("self_next_") for name in KERAS.files)
    predicts_and_trains_as_keras(FIXTURES / "gqa_self.keras", KERAS["x"], KERAS["xt"], KERAS["self_y"],
                                 [KERAS[f"self_next_{i}"] for i in range(count)])


def test_configs_and_files_as_keras_writes_them(tmp_path):
    model = keras.models.load_model(FIXTURES / "gqa_self.keras")
    got, want = model.get_layer("own").get_config(), json.loads(str(KERAS["configs"]))[1]
    assert {k: v for k, v in got.items() if k != "dtype"} == {k: v for k, v in want.items() if k != "dtype"}
    model.save(tmp_path / "again.keras")
    again = keras.models.load_model(tmp_path / "again.keras")
    np.testing.assert_allclose(again.predict(KERAS["x"], verbose=0), KERAS["self_y"], rtol=1e-5, atol=1e-6)
    import zipfile
    with zipfile.ZipFile(tmp_path / "again.keras") as archive:
        entry = next(layer for layer in json.loads(archive.read("config.json"))["config"]["layers"]
                     if layer["config"]["name"] == "own")
    assert entry["class_name"] == "GroupQueryAttention" and entry["registered_name"] is None
    assert layers.GroupQueryAttention is layers.GroupedQueryAttention


def test_bad_arguments_as_keras():
    with pytest.raises(ValueError, match="`num_query_heads` must be divisible by `num_key_value_heads`"):
        layers.GroupQueryAttention(head_dim=2, num_query_heads=3, num_key_value_heads=2)
    layer = layers.GroupQueryAttention(head_dim=2, num_query_heads=2, num_key_value_heads=1)
    with pytest.raises(ValueError, match="the last dimension of `query_shape` and `value_shape` must be equal"):
        layer(np.zeros((1, 3, 4), np.float32), np.zeros((1, 5, 6), np.float32))

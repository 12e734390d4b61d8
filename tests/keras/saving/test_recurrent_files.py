"""Recurrent models in files nncompile writes: they load back and predict the same, configs
survive, and weights sit where Keras 3 puts them (the layouts below are those Keras 3.15.1
writes for the same models; tests/fixtures/keras/recurrent holds real Keras files)."""
from __future__ import annotations

import zipfile

import h5py
import numpy as np
import pytest

from nncompile import keras
from nncompile.keras import layers


@pytest.fixture
def reference_backend(monkeypatch):
    monkeypatch.setenv("NNCOMPILE_BACKEND", "reference")


def _model():
    tokens = keras.Input((6,), dtype="int32", name="tokens")
    h, c = keras.Input((4,), name="h"), keras.Input((4,), name="c")
    x = layers.Embedding(9, 3, mask_zero=True)(tokens)
    x = layers.LSTM(4, return_sequences=True)(x, initial_state=[h, c])
    x = layers.Bidirectional(layers.GRU(2, return_sequences=True, reset_after=False))(x)
    x = layers.TimeDistributed(layers.Dense(3))(x)
    x = layers.RNN([layers.SimpleRNNCell(2), layers.GRUCell(2)])(x)
    return keras.Model([tokens, h, c], x)


def _inputs(rng):
    return [np.array([[0, 1, 2, 3, 4, 5], [1, 2, 3, 0, 0, 0]]),
            rng.standard_normal((2, 4)).astype(np.float32), rng.standard_normal((2, 4)).astype(np.float32)]


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_round_trip_predicts_the_same(tmp_path, reference_backend, suffix):
    keras.utils.set_random_seed(0)
    model = _model()
    x = _inputs(np.random.default_rng(0))
    path = tmp_path / f"m{suffix}"
    model.save(path)
    loaded = keras.models.load_model(path, compile=False)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert loaded.get_config() == model.get_config()


def test_keras_zip_weights_sit_under_sublayer_paths(tmp_path):
    inputs = keras.Input((5, 3))
    model = keras.Model(inputs, layers.RNN([layers.LSTMCell(2), layers.GRUCell(3)])(
        layers.Bidirectional(layers.LSTM(4, return_sequences=True))(inputs)))
    model.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as archive, archive.open("model.weights.h5") as member:
        with h5py.File(member, "r") as f:
            found = []
            f.visititems(lambda path, item: found.append((path, item.shape))
                         if isinstance(item, h5py.Dataset) else None)
    assert sorted(found) == sorted([
        ("layers/bidirectional/forward_layer/cell/vars/0", (3, 16)),
        ("layers/bidirectional/forward_layer/cell/vars/1", (4, 16)),
        ("layers/bidirectional/forward_layer/cell/vars/2", (16,)),
        ("layers/bidirectional/backward_layer/cell/vars/0", (3, 16)),
        ("layers/bidirectional/backward_layer/cell/vars/1", (4, 16)),
        ("layers/bidirectional/backward_layer/cell/vars/2", (16,)),
        ("layers/rnn/cell/cells/lstm_cell/vars/0", (8, 8)),
        ("layers/rnn/cell/cells/lstm_cell/vars/1", (2, 8)),
        ("layers/rnn/cell/cells/lstm_cell/vars/2", (8,)),
        ("layers/rnn/cell/cells/gru_cell/vars/0", (2, 9)),
        ("layers/rnn/cell/cells/gru_cell/vars/1", (3, 9)),
        ("layers/rnn/cell/cells/gru_cell/vars/2", (2, 9))])


def test_legacy_h5_weight_names_are_variable_paths(tmp_path):
    inputs = keras.Input((5, 3))
    model = keras.Model(inputs, layers.Bidirectional(layers.LSTM(4, name="lstm"), name="bidirectional")(inputs))
    model.save(tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5", "r") as f:
        names = [n.decode() for n in f["model_weights/bidirectional"].attrs["weight_names"]]
    assert names == [f"bidirectional/{side}_lstm/lstm_cell/{w}" for side in ("forward", "backward")
                     for w in ("kernel", "recurrent_kernel", "bias")]


def test_configs_are_keras_3_configs():
    lstm = layers.LSTM(3, dropout=0.1, name="lstm")
    config = lstm.get_config()
    assert "cell" not in config
    assert {"units", "activation", "recurrent_activation", "use_bias", "unit_forget_bias",
            "kernel_initializer", "recurrent_initializer", "bias_initializer", "dropout",
            "recurrent_dropout", "seed", "return_sequences", "return_state", "go_backwards",
            "stateful", "unroll", "zero_output_for_mask"} <= set(config)
    assert config["recurrent_initializer"]["class_name"] == "Orthogonal"
    rnn = layers.RNN(layers.GRUCell(2), name="rnn").get_config()
    assert rnn["cell"]["class_name"] == "GRUCell" and rnn["cell"]["config"]["reset_after"] is True
    bidirectional = layers.Bidirectional(layers.SimpleRNN(2, name="simple_rnn")).get_config()
    assert bidirectional["layer"]["config"]["name"] == "forward_simple_rnn"
    assert bidirectional["backward_layer"]["config"]["go_backwards"] is True
    assert "seed" not in bidirectional["layer"]["config"]   # Keras 3's SimpleRNN omits it

"""Bidirectional and TimeDistributed against numpy written in the test (recurrent_reference.py
holds the loops, from Keras 3's equations)."""
from __future__ import annotations

import numpy as np
import pytest

import nncompile
from nncompile import keras
from nncompile.keras import layers

import recurrent_reference as ref
from recurrent_reference import close, randomize

MERGES = {"concat": lambda a, b: np.concatenate([a, b], axis=-1), "sum": np.add,
          "mul": np.multiply, "ave": lambda a, b: (a + b) / 2}


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave", None])
def test_bidirectional_merges_forward_and_time_ordered_backward(rnn_backend, merge_mode):
    rng = np.random.default_rng(10)
    layer = layers.Bidirectional(layers.LSTM(3, return_sequences=True), merge_mode=merge_mode)
    inputs = keras.Input((5, 2))
    model = keras.Model(inputs, layer(inputs))
    weights = randomize(layer, rng)
    x = rng.standard_normal((2, 5, 2)).astype(np.float32)
    zeros = ref.zeros_like_states(2, [3, 3])
    forward = ref.run(ref.lstm_step(weights[:3]), x, zeros)[0]
    backward = ref.run(ref.lstm_step(weights[3:]), x, zeros, backwards=True)[0][:, ::-1]
    got = model.predict(x, verbose=0)
    if merge_mode is None:
        close(got[0], forward)
        close(got[1], backward)
    else:
        close(got, MERGES[merge_mode](forward, backward))


def test_bidirectional_last_outputs_states_and_mask(rnn_backend):
    rng = np.random.default_rng(11)
    layer = layers.Bidirectional(layers.GRU(3, return_state=True))
    tokens_in = keras.Input((5,), dtype="int32")
    embedding = layers.Embedding(8, 2, mask_zero=True)
    model = keras.Model(tokens_in, layer(embedding(tokens_in)))
    weights = randomize(layer, rng)
    table = embedding.get_weights()[0].astype(np.float64)
    tokens = np.array([[1, 2, 3, 0, 0], [0, 4, 5, 6, 7]])
    zeros, mask = ref.zeros_like_states(2, [3]), tokens != 0
    _, last_f, (h_f,) = ref.run(ref.gru_step(weights[:3]), table[tokens], zeros, mask=mask)
    _, last_b, (h_b,) = ref.run(ref.gru_step(weights[3:]), table[tokens], zeros, mask=mask, backwards=True)
    got = model.predict(tokens, verbose=0)
    close(got[0], np.concatenate([last_f, last_b], axis=-1))
    close(got[1], h_f)
    close(got[2], h_b)


def test_bidirectional_masked_sequences_are_zero_at_masked_steps(rnn_backend):
    """Bidirectional sets zero_output_for_mask on both layers when they return sequences."""
    rng = np.random.default_rng(12)
    layer = layers.Bidirectional(layers.SimpleRNN(2, return_sequences=True), merge_mode="sum")
    model = keras.Sequential([keras.Input((4, 3)), layers.Masking(), layer])
    weights = randomize(layer, rng)
    x = rng.standard_normal((2, 4, 3)).astype(np.float32)
    x[0, 2:] = 0
    mask, zeros = np.abs(x).sum(-1) != 0, ref.zeros_like_states(2, [2])
    forward = ref.run(ref.simple_step(weights[:3]), x, zeros, mask=mask, zero_output=True)[0]
    backward = ref.run(ref.simple_step(weights[3:]), x, zeros, mask=mask, backwards=True,
                       zero_output=True)[0][:, ::-1]
    close(model.predict(x, verbose=0), forward + backward)


def test_bidirectional_with_a_backward_layer_and_initial_states(rnn_backend):
    rng = np.random.default_rng(13)
    layer = layers.Bidirectional(layers.SimpleRNN(2, return_sequences=True),
                                 backward_layer=layers.GRU(2, go_backwards=True, return_sequences=True))
    x_in, h_f, h_b = keras.Input((4, 3)), keras.Input((2,)), keras.Input((2,))
    model = keras.Model([x_in, h_f, h_b], layer(x_in, initial_state=[h_f, h_b]))
    weights = randomize(layer, rng)
    x = rng.standard_normal((2, 4, 3)).astype(np.float32)
    f0, b0 = (rng.standard_normal((2, 2)).astype(np.float32) for _ in range(2))
    forward = ref.run(ref.simple_step(weights[:3]), x, [f0])[0]
    backward = ref.run(ref.gru_step(weights[3:]), x, [b0], backwards=True)[0][:, ::-1]
    close(model.predict([x, f0, b0], verbose=0), np.concatenate([forward, backward], axis=-1))


def test_bidirectional_names_and_arguments():
    layer = layers.Bidirectional(layers.LSTM(2, name="lstm"))
    assert (layer.forward_layer.name, layer.backward_layer.name) == ("forward_lstm", "backward_lstm")
    assert layer.backward_layer.go_backwards and not layer.forward_layer.go_backwards
    with pytest.raises(ValueError, match="Invalid merge mode"):
        layers.Bidirectional(layers.LSTM(2), merge_mode="max")
    with pytest.raises(ValueError, match="should have different `go_backwards`"):
        layers.Bidirectional(layers.LSTM(2), backward_layer=layers.LSTM(2))
    with pytest.raises(ValueError, match='same value for attribute "return_sequences"'):
        layers.Bidirectional(layers.LSTM(2), backward_layer=layers.LSTM(2, go_backwards=True,
                                                                       return_sequences=True))


def test_time_distributed_dense(rnn_backend):
    rng = np.random.default_rng(14)
    dense = layers.Dense(3, activation="tanh")
    model = keras.Sequential([keras.Input((4, 5)), layers.TimeDistributed(dense)])
    kernel, bias = randomize(dense, rng)
    x = rng.standard_normal((2, 4, 5)).astype(np.float32)
    close(model.predict(x, verbose=0), np.tanh(x @ kernel + bias))


def test_time_distributed_dense_is_one_matmul_and_other_layers_a_loop():
    dense = keras.Sequential([keras.Input((4, 5)), layers.TimeDistributed(layers.Dense(3))])
    assert [n.op for n in nncompile.trace(dense).nodes] == ["matmul", "add"]
    conv = keras.Sequential([keras.Input((4, 6, 2)), layers.TimeDistributed(layers.Conv1D(3, 2))])
    assert "scan" in [n.op for n in nncompile.trace(conv).nodes]


def test_time_distributed_layer_that_is_not_per_step(rnn_backend):
    rng = np.random.default_rng(16)
    conv = layers.Conv1D(3, 2, activation="relu")
    model = keras.Sequential([keras.Input((4, 6, 2)), layers.TimeDistributed(conv)])
    kernel, bias = randomize(conv, rng)
    x = rng.standard_normal((2, 4, 6, 2)).astype(np.float32)
    # A valid 1-D convolution of width 2 along axis 2, at every one of the 4 steps.
    want = np.maximum(x[:, :, :-1] @ kernel[0] + x[:, :, 1:] @ kernel[1] + bias, 0)
    close(model.predict(x, verbose=0), want)


def test_time_distributed_keeps_the_mask_for_a_recurrent_layer(rnn_backend):
    rng = np.random.default_rng(15)
    dense, rnn = layers.Dense(2), layers.SimpleRNN(2)
    tokens_in = keras.Input((4,), dtype="int32")
    embedding = layers.Embedding(6, 3, mask_zero=True)
    model = keras.Model(tokens_in, rnn(layers.TimeDistributed(dense)(embedding(tokens_in))))
    kernel, bias = randomize(dense, rng)
    weights = randomize(rnn, rng)
    table = embedding.get_weights()[0].astype(np.float64)
    tokens = np.array([[1, 2, 0, 0], [3, 0, 4, 5]])
    _, last, _ = ref.run(ref.simple_step(weights), table[tokens] @ kernel + bias,
                         ref.zeros_like_states(2, [2]), mask=tokens != 0)
    close(model.predict(tokens, verbose=0), last)


def test_time_distributed_needs_a_time_axis():
    with pytest.raises(ValueError, match="at least 3 dimensions"):
        keras.Sequential([keras.Input((4,)), layers.TimeDistributed(layers.Dense(2))])

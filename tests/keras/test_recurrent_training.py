"""Training recurrent models: one SGD step moves every weight by the learning rate times the
gradient that finite differences of a numpy loop (recurrent_reference.py) give. (The IMDB
tutorial program, examples/imdb_lstm.py, trains in tests/test_examples.py.)"""
from __future__ import annotations

import numpy as np
import pytest

from nncompile import keras
from nncompile.keras import layers

import recurrent_reference as ref
from tests.keras.finite_differences import gradients

LR = 0.1


def _lstm(weights, x):
    return ref.run(ref.lstm_step(weights), x, ref.zeros_like_states(len(x), [2, 2]))[1]


def _gru(reset_after):
    return lambda weights, x: ref.run(ref.gru_step(weights, reset_after=reset_after), x,
                                      ref.zeros_like_states(len(x), [2]))[1]


def _simple_backwards(weights, x):
    return ref.run(ref.simple_step(weights), x, ref.zeros_like_states(len(x), [2]), backwards=True)[1]


def _masked_lstm(weights, x):
    mask = np.abs(x).sum(-1) != 0
    return ref.run(ref.lstm_step(weights), x, ref.zeros_like_states(len(x), [2, 2]), mask=mask)[1]


def _bidirectional(weights, x):
    zeros = ref.zeros_like_states(len(x), [2, 2])
    forward = ref.run(ref.lstm_step(weights[:3]), x, zeros)[1]
    backward = ref.run(ref.lstm_step(weights[3:]), x, zeros, backwards=True)[1]
    return np.concatenate([forward, backward], axis=-1)


def _stacked(weights, x):
    step = ref.stacked_step([ref.gru_step(weights[:3]), ref.simple_step(weights[3:])], [1, 1])
    return ref.run(step, x, ref.zeros_like_states(len(x), [2, 2]))[1]


CASES = {
    "lstm": (lambda: layers.LSTM(2), _lstm, False),
    "gru": (lambda: layers.GRU(2), _gru(True), False),
    "gru_reset_before": (lambda: layers.GRU(2, reset_after=False), _gru(False), False),
    "simple_rnn_backwards": (lambda: layers.SimpleRNN(2, go_backwards=True), _simple_backwards, False),
    "masked_lstm": (lambda: layers.LSTM(2), _masked_lstm, True),
    "bidirectional": (lambda: layers.Bidirectional(layers.LSTM(2)), _bidirectional, False),
    "stacked": (lambda: layers.RNN([layers.GRUCell(2), layers.SimpleRNNCell(2)]), _stacked, False),
}


def _loss(forward, weights, x, y):
    return float(np.mean((forward(weights, x) - y) ** 2))


def _numeric_gradients(forward, weights, x, y, eps=1e-6):
    return gradients(lambda: _loss(forward, weights, x, y), weights, eps)


@pytest.mark.parametrize("case", sorted(CASES))
def test_one_sgd_step_follows_finite_differences(rnn_backend, case):
    make, forward, masked = CASES[case]
    rng = np.random.default_rng(20)
    layer = make()
    stack = [keras.Input((4, 3)), *([layers.Masking()] if masked else []), layer]
    model = keras.Sequential(stack)
    weights = ref.randomize(layer, rng)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=LR), loss="mse")
    x = rng.standard_normal((3, 4, 3)).astype(np.float32)
    if masked:
        x[0, 2:] = 0
        x[1, :1] = 0
    y = rng.standard_normal((3,) + model.output_shape[1:]).astype(np.float32)
    grads = _numeric_gradients(forward, weights, x.astype(np.float64), y)
    model.train_on_batch(x, y)
    for got, w, g in zip(layer.get_weights(), weights, grads):
        np.testing.assert_allclose(got, w - LR * g, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("loss", ["categorical_crossentropy", "sparse_categorical_crossentropy", "mse"])
def test_outputs_over_a_sequence_of_any_length_train_and_evaluate(loss):
    """Input((None, 3)) -> LSTM(return_sequences) -> Dense(softmax): the targets' time axis is the
    output's symbol, so one model trains on length 5 and evaluates on length 7; the losses are
    numpy's, from the model's own predictions."""
    inputs = keras.Input((None, 3))
    model = keras.Model(inputs, layers.Dense(2, activation="softmax")(layers.LSTM(4, return_sequences=True)(inputs)))
    model.compile(keras.optimizers.SGD(learning_rate=0.0), loss)
    rng = np.random.default_rng(0)

    def targets(steps):
        labels = rng.integers(0, 2, (4, steps))
        return labels, (labels if "sparse" in loss else np.eye(2, dtype=np.float32)[labels])

    for steps in (5, 7):
        x = rng.standard_normal((4, steps, 3)).astype(np.float32)
        labels, y = targets(steps)
        p = model.predict(x, verbose=0).astype(np.float64)
        want = (np.mean((p - np.eye(2)[labels]) ** 2) if loss == "mse"
                else -np.mean(np.log(np.take_along_axis(p, labels[..., None], -1))))
        got = (model.fit(x, y, batch_size=4, verbose=0).history["loss"][0] if steps == 5
               else model.evaluate(x, y, verbose=0))
        np.testing.assert_allclose(got, want, rtol=1e-5)
        # one weight a timestep (Keras 3's per-entry weights): the first step of each sample only
        first = np.zeros((4, steps), np.float32)
        first[:, 0] = 1
        entries = (np.mean((p - np.eye(2)[labels]) ** 2, axis=-1) if loss == "mse"
                   else -np.log(np.take_along_axis(p, labels[..., None], -1))[..., 0])
        np.testing.assert_allclose(model.evaluate(x, y, sample_weight=first, verbose=0),
                                   np.sum(entries * first) / first.size, rtol=1e-5)

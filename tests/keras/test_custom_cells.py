"""`keras.layers.RNN` over cells users write (Keras's cell protocol: `state_size`, `output_size`,
`call(inputs, states)`): against numpy loops written here, gradients by finite differences, and
files real Keras made and trained (tests/fixtures/keras/custom_cells)."""
from __future__ import annotations

import os

import numpy as np
import pytest

from nncompile import keras
from nncompile.keras import layers, ops
from tests.keras.finite_differences import gradients
from tests.keras.keras_files import fixture_module
from tests.keras.recurrent_reference import run, sigmoid

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "keras", "custom_cells")
cell_sources = fixture_module(os.path.join(FIXTURES, "cells.py"))

MinimalRNNCell, PeepholeCell = cell_sources.define(keras)


def minimal_step(kernel, recurrent):
    def step(x, states):
        h = np.tanh(x @ kernel + states[0] @ recurrent)
        return h, [h]
    return step


def peephole_step(kernel, peephole, units):
    def step(x, states):
        h, c = states
        z = x @ kernel
        gate = sigmoid(z[:, :units] + peephole * c)
        c = gate * c + (1 - gate) * np.tanh(z[:, units:] + h)
        h = np.tanh(c)
        return 2 * h + c, [h, c]
    return step


def _sequences(rng, batch=4, steps=6, features=3):
    return rng.standard_normal((batch, steps, features)).astype(np.float32)


@pytest.mark.parametrize("steps", [1, 2, 17])
@pytest.mark.parametrize("backwards", [False, True])
def test_a_guide_cell_runs_as_its_numpy_loop(steps, backwards):
    rng = np.random.default_rng(steps)
    x = _sequences(rng, steps=steps)
    layer = layers.RNN(MinimalRNNCell(5), return_sequences=True, return_state=True, go_backwards=backwards)
    sequence, final = layer(x)
    kernel, recurrent = (w.astype(np.float64) for w in layer.get_weights())
    want, _, states = run(minimal_step(kernel, recurrent), x, [np.zeros((4, 5))], backwards=backwards)
    np.testing.assert_allclose(sequence, want, rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(final, states[0], rtol=2e-5, atol=2e-5)


def test_an_output_that_is_no_state_and_masked_steps_hold_the_first_state():
    rng = np.random.default_rng(3)
    x = _sequences(rng)
    mask = np.ones((4, 6), bool)
    mask[:, 4:] = False
    mask[1, 2:] = False
    x[~mask] = 0.0
    model = keras.Sequential([keras.Input((6, 3)), layers.Masking(0.0),
                              layers.RNN(PeepholeCell(4), return_sequences=True)])
    kernel, peephole = (w.astype(np.float64) for w in model.get_weights())
    # Keras's loop: a masked step keeps the states and outputs the cell's first state (h) as it was
    want, _, _ = run(peephole_step(kernel, peephole, 4), x, [np.zeros((4, 4))] * 2, mask=mask)
    np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=2e-5, atol=2e-5)
    last = keras.Sequential([keras.Input((6, 3)), layers.RNN(PeepholeCell(4))])
    last.set_weights(model.get_weights())
    _, want_last, _ = run(peephole_step(kernel, peephole, 4), x, [np.zeros((4, 4))] * 2)
    np.testing.assert_allclose(last.predict(x, verbose=0), want_last, rtol=2e-5, atol=2e-5)


def test_gradients_of_stacked_custom_and_built_in_cells_match_finite_differences():
    rng = np.random.default_rng(5)
    x, y = _sequences(rng, batch=3, steps=4), rng.standard_normal((3, 2)).astype(np.float32)
    model = keras.Sequential([keras.Input((4, 3)), layers.RNN([PeepholeCell(3), layers.GRUCell(2)])])
    start = [w * 0.7 for w in model.get_weights()]
    model.set_weights(start)
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse")
    model.train_on_batch(x, y)
    got = [w0 - w1 for w0, w1 in zip(start, model.get_weights())]     # one step of rate 1: -gradient

    weights = [w.astype(np.float64) for w in start]
    kernel, peephole, gru_kernel, gru_recurrent, gru_bias = weights

    def loss():
        def gru(x, states):
            h = states[0]
            zx, zh = x @ gru_kernel + gru_bias[0], h @ gru_recurrent + gru_bias[1]
            z, r = sigmoid(zx[:, :2] + zh[:, :2]), sigmoid(zx[:, 2:4] + zh[:, 2:4])
            h = z * h + (1 - z) * np.tanh(zx[:, 4:] + r * zh[:, 4:])
            return h, [h]

        cell = peephole_step(kernel, peephole, 3)

        def stacked(x, states):
            out, (h, c) = cell(x, states[:2])
            out, (g,) = gru(out, states[2:])
            return out, [h, c, g]
        _, last, _ = run(stacked, x, [np.zeros((3, 3))] * 2 + [np.zeros((3, 2))])
        return np.mean((last - y) ** 2)

    for g, want in zip(got, gradients(loss, weights, 1e-6)):
        np.testing.assert_allclose(g, want, rtol=2e-3, atol=2e-5)


@pytest.mark.parametrize("kind", ["plain", "masked"])
def test_files_real_keras_made_predict_and_train_as_keras_did(kind):
    data = np.load(os.path.join(FIXTURES, f"{kind}.npz"))
    model = keras.models.load_model(os.path.join(FIXTURES, f"{kind}.keras"))
    np.testing.assert_allclose(model.predict(data["x"], verbose=0), data["prediction"], rtol=1e-5, atol=1e-5)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    model.train_on_batch(data["x"], data["y"])
    trained = [data[f"trained_{i}"] for i in range(len(model.weights))]
    for got, want in zip(model.get_weights(), trained):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_saved_and_loaded_in_nncompile(tmp_path):
    model = cell_sources.build_model(keras, masked=False)
    x = _sequences(np.random.default_rng(8), steps=7)
    path = str(tmp_path / "cells.keras")
    model.save(path)
    again = keras.models.load_model(path)
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
    assert [w.path for w in again.weights] == [w.path for w in model.weights]


class _NoStateSize(layers.Layer):
    def call(self, inputs, states):
        return inputs, states


class _WrongState(layers.Layer):
    state_size = 4

    def call(self, inputs, states):
        return inputs, [ops.concatenate([states[0], states[0]], axis=-1)]


class _NoPair(layers.Layer):
    state_size = 3

    def call(self, inputs, states):
        return inputs


def test_cells_that_break_the_protocol_are_named():
    with pytest.raises(ValueError, match="state_size must be specified"):
        layers.RNN(_NoStateSize())
    with pytest.raises(ValueError, match="state_size must be an integer, or a list/tuple of integers"):
        layers.RNN(type("Odd", (layers.Layer,), {"state_size": "big"})())
    x = np.ones((2, 3, 4), np.float32)
    with pytest.raises(ValueError, match=r"_wrong_state'.*returned state 0 of shape \('\?', 8\); its state_size "
                                         r"gives \('\?', 4\)"):
        layers.RNN(_WrongState())(x)
    with pytest.raises(TypeError, match=r"_no_pair'.*must return \(output, new_states\)"):
        layers.RNN(_NoPair())(x)


class _ScaledInTraining(layers.Layer):
    """h = x + h, output doubled in training: tells which mode the loop ran the cell in."""
    state_size = 2

    def call(self, inputs, states, training=None):
        h = inputs + states[0]
        return (2.0 * h if training else h), [h]


def test_the_cell_runs_in_the_layer_s_training_mode():
    x = np.ones((3, 4, 2), np.float32)
    model = keras.Sequential([keras.Input((4, 2)), layers.RNN(_ScaledInTraining())])
    model.compile(optimizer="sgd", loss="mse")
    y = np.zeros((3, 2), np.float32)
    assert model.evaluate(x, y, verbose=0) == pytest.approx(16.0)     # h = 4 at the last step
    assert model.train_on_batch(x, y) == pytest.approx(64.0)


class _TenTimes(layers.Layer):
    """h = h + x, output 10 h: an output that is not the state."""
    state_size = 2

    def call(self, inputs, states):
        h = states[0] + inputs
        return 10.0 * h, [h]


def test_unrolled_masked_steps_output_the_previous_output_as_keras():
    x = np.ones((1, 4, 2), np.float32)
    x[0, 2] = 0.0
    masked = keras.Sequential([keras.Input((4, 2)), layers.Masking(0.0)])
    rolled = keras.Sequential([masked, layers.RNN(_TenTimes(), return_sequences=True)])
    unrolled = keras.Sequential([masked, layers.RNN(_TenTimes(), return_sequences=True, unroll=True)])
    # Keras 3.15 on JAX: the loop outputs the held state (2) at the masked step, unrolled the
    # previous output (20)
    np.testing.assert_allclose(rolled.predict(x, verbose=0)[0, :, 0], [10, 20, 2, 30])
    np.testing.assert_allclose(unrolled.predict(x, verbose=0)[0, :, 0], [10, 20, 20, 30])


class _Narrow(layers.Layer):
    state_size = [4, 4]

    def call(self, inputs, states):
        h = states[0] + ops.sum(inputs)
        return h[:, :2], [h, states[1]]


class _OwnStart(layers.Layer):
    state_size = 2

    def get_initial_state(self, batch_size=None):
        return [ops.ones((batch_size, 2))]

    def call(self, inputs, states):
        return states[0], states


def test_outputs_of_another_width_and_own_initial_states_are_named():
    x = np.ones((2, 3, 4), np.float32)
    with pytest.raises(ValueError, match=r"_narrow'.*output of shape \('\?', 2\); its output_size"):
        layers.RNN(_Narrow())(x)
    with pytest.raises(ValueError, match="its cell '__own_start' .*defines get_initial_state.*initial_state="):
        layers.RNN(_OwnStart())(x[..., :2])
    ones = np.ones((2, 2), np.float32)
    np.testing.assert_allclose(layers.RNN(_OwnStart())(x[..., :2], initial_state=[ones]), ones)


class _NonzeroCell(layers.Layer):
    """A step using an op nncompile cannot trace (ops.where with one argument)."""
    state_size = 2

    def call(self, inputs, states):
        ops.where(inputs > 0)
        return states[0], states


def test_an_op_the_ir_cannot_express_names_the_cell():
    with pytest.raises(NotImplementedError, match=r"Layer '__nonzero_cell' \(_NonzeroCell\): ops.where with one"):
        layers.RNN(_NonzeroCell())(np.ones((2, 3, 2), np.float32))

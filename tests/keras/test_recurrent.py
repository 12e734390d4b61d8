"""SimpleRNN, LSTM, GRU and the RNN layer over cells, against numpy loops written from Keras 3's
equations (recurrent_reference.py): outputs, states, go_backwards, masks, initial states,
stacked cells, stateful layers, dropout in training; and the shape of the IR they emit."""
from __future__ import annotations

import numpy as np
import pytest

import nncompile
from nncompile import keras
from nncompile.keras import layers

import recurrent_reference as ref
from recurrent_reference import close, randomize

STEPS = {
    "SimpleRNN": lambda w, cfg: ref.simple_step(w),
    "LSTM": lambda w, cfg: ref.lstm_step(w),
    "GRU": lambda w, cfg: ref.gru_step(w, reset_after=cfg.get("reset_after", True)),
}
STATES = {"SimpleRNN": 1, "LSTM": 2, "GRU": 1}


@pytest.mark.parametrize("kind, units, steps, batch, extra", [
    ("SimpleRNN", 3, 1, 2, {}),
    ("SimpleRNN", 5, 17, 1, {"go_backwards": True}),
    ("LSTM", 4, 2, 3, {}),
    ("LSTM", 2, 100, 2, {"go_backwards": True}),
    ("LSTM", 6, 17, 4, {"unit_forget_bias": False, "unroll": True}),
    ("GRU", 4, 17, 2, {}),
    ("GRU", 3, 2, 3, {"reset_after": False}),
    ("GRU", 2, 100, 1, {"reset_after": False, "go_backwards": True}),
])
def test_layer_matches_numpy_loop(rnn_backend, kind, units, steps, batch, extra):
    rng = np.random.default_rng(units * 100 + steps)
    layer = getattr(layers, kind)(units, return_sequences=True, return_state=True, **extra)
    inputs = keras.Input((steps, 3))
    model = keras.Model(inputs, layer(inputs))
    weights = randomize(layer, rng)
    x = rng.standard_normal((batch, steps, 3)).astype(np.float32)
    got = model.predict(x, verbose=0)
    step = STEPS[kind](weights, extra)
    sequence, last, states = ref.run(step, x, ref.zeros_like_states(batch, [units] * STATES[kind]),
                                     backwards=extra.get("go_backwards", False))
    # Keras returns a go_backwards sequence in processing order, as the loop collects it.
    close(got[0], sequence)
    for g, w in zip(got[1:], states):
        close(g, w)
    close(got[1], last)


def test_last_output_only(rnn_backend):
    rng = np.random.default_rng(0)
    layer = layers.LSTM(3)
    model = keras.Sequential([keras.Input((5, 2)), layer])
    weights = randomize(layer, rng)
    x = rng.standard_normal((4, 5, 2)).astype(np.float32)
    _, last, _ = ref.run(ref.lstm_step(weights), x, ref.zeros_like_states(4, [3, 3]))
    close(model.predict(x, verbose=0), last)


def _masked_model(layer, steps=6, vocab=9, width=3):
    inputs = keras.Input((steps,), dtype="int32")
    embedded = layers.Embedding(vocab, width, mask_zero=True)
    return keras.Model(inputs, layer(embedded(inputs))), embedded


@pytest.mark.parametrize("kind, go_backwards", [("LSTM", False), ("GRU", True), ("SimpleRNN", False)])
def test_mask_holds_states_and_outputs(rnn_backend, kind, go_backwards):
    rng = np.random.default_rng(1)
    layer = getattr(layers, kind)(4, return_sequences=True, return_state=True, go_backwards=go_backwards)
    model, embedding = _masked_model(layer)
    weights = randomize(layer, rng)
    table = embedding.get_weights()[0].astype(np.float64)
    # Padding before, after and inside, and a sequence with no kept step at all.
    tokens = np.array([[0, 0, 3, 4, 5, 1], [2, 3, 0, 4, 0, 0], [0, 0, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6]])
    got = model.predict(tokens, verbose=0)
    sequence, _, states = ref.run(STEPS[kind](weights, {}), table[tokens],
                                  ref.zeros_like_states(4, [4] * STATES[kind]), mask=tokens != 0,
                                  backwards=go_backwards)
    close(got[0], sequence)
    for g, w in zip(got[1:], states):
        close(g, w)


def test_mask_from_masking_layer_and_last_output(rnn_backend):
    rng = np.random.default_rng(2)
    layer = layers.GRU(3)
    model = keras.Sequential([keras.Input((5, 2)), layers.Masking(0.0), layer])
    weights = randomize(layer, rng)
    x = rng.standard_normal((3, 5, 2)).astype(np.float32)
    x[0, 3:] = 0.0
    x[1, :2] = 0.0
    _, last, _ = ref.run(ref.gru_step(weights), x, ref.zeros_like_states(3, [3]),
                         mask=np.abs(x).sum(-1) != 0)
    close(model.predict(x, verbose=0), last)


@pytest.mark.parametrize("return_sequences", [True, False])
def test_zero_output_for_mask(rnn_backend, return_sequences):
    rng = np.random.default_rng(3)
    layer = layers.RNN(layers.LSTMCell(3), return_sequences=return_sequences, zero_output_for_mask=True)
    model, embedding = _masked_model(layer, steps=4)
    weights = randomize(layer, rng)
    table = embedding.get_weights()[0].astype(np.float64)
    tokens = np.array([[1, 2, 0, 0], [0, 3, 4, 5]])
    sequence, last, _ = ref.run(ref.lstm_step(weights), table[tokens], ref.zeros_like_states(2, [3, 3]),
                                mask=tokens != 0, zero_output=True)
    close(model.predict(tokens, verbose=0), sequence if return_sequences else last)


@pytest.mark.parametrize("unroll", [False, True])
def test_masked_steps_after_initial_states(rnn_backend, unroll):
    """Masked steps before the first kept one output the initial h (JAX and numpy loops), or
    zeros when unrolled; the last output and states are held either way."""
    rng = np.random.default_rng(4)
    tokens_in, h_in, c_in = keras.Input((5,), dtype="int32"), keras.Input((3,)), keras.Input((3,))
    embedding = layers.Embedding(7, 2, mask_zero=True)
    sequences = layers.LSTM(3, return_sequences=True, unroll=unroll)
    last = layers.LSTM(3, return_state=True, unroll=unroll)
    embedded = embedding(tokens_in)
    outputs = [sequences(embedded, initial_state=[h_in, c_in]), *last(embedded, initial_state=[h_in, c_in])]
    model = keras.Model([tokens_in, h_in, c_in], outputs)
    w_sequences, w_last = randomize(sequences, rng), randomize(last, rng)
    table = embedding.get_weights()[0].astype(np.float64)
    tokens = np.array([[0, 0, 1, 2, 3], [4, 5, 6, 0, 0], [0, 0, 0, 0, 0]])
    h0, c0 = (rng.standard_normal((3, 3)).astype(np.float32) for _ in range(2))
    got = model.predict([tokens, h0, c0], verbose=0)
    want, _, _ = ref.run(ref.lstm_step(w_sequences), table[tokens], [h0, c0], mask=tokens != 0,
                         unrolled=unroll)
    close(got[0], want)
    _, final, states = ref.run(ref.lstm_step(w_last), table[tokens], [h0, c0], mask=tokens != 0,
                               unrolled=unroll)
    for g, w in zip(got[1:], [final, *states]):
        close(g, w)


def test_stacked_cells(rnn_backend):
    rng = np.random.default_rng(5)
    cells = [layers.LSTMCell(4), layers.GRUCell(3, reset_after=False), layers.SimpleRNNCell(2)]
    layer = layers.RNN(cells, return_sequences=True, return_state=True)
    inputs = keras.Input((6, 3))
    model = keras.Model(inputs, layer(inputs))
    randomize(layer, rng)
    weights = [[w.astype(np.float64) for w in c.get_weights()] for c in cells]
    x = rng.standard_normal((2, 6, 3)).astype(np.float32)
    step = ref.stacked_step([ref.lstm_step(weights[0]), ref.gru_step(weights[1], reset_after=False),
                             ref.simple_step(weights[2])], [2, 1, 1])
    sequence, _, states = ref.run(step, x, ref.zeros_like_states(2, [4, 4, 3, 2]))
    got = model.predict(x, verbose=0)
    close(got[0], sequence)
    for g, w in zip(got[1:], states):
        close(g, w)


def test_activations_and_no_bias(rnn_backend):
    rng = np.random.default_rng(6)
    layer = layers.LSTM(3, activation="relu", recurrent_activation="hard_sigmoid", use_bias=False,
                        return_sequences=True)
    model = keras.Sequential([keras.Input((4, 2)), layer])
    kernel, recurrent = randomize(layer, rng)
    x = rng.standard_normal((2, 4, 2)).astype(np.float32)
    # Keras 3's hard_sigmoid: relu6(x + 3) / 6.
    step = ref.lstm_step([kernel, recurrent, 0.0], activation=lambda v: np.maximum(v, 0),
                         gate=lambda v: np.clip(v + 3, 0, 6) / 6)
    close(model.predict(x, verbose=0), ref.run(step, x, ref.zeros_like_states(2, [3, 3]))[0])


def test_stateful_carries_states_until_reset(rnn_backend):
    rng = np.random.default_rng(7)
    layer = layers.GRU(3, stateful=True, return_sequences=True)
    model = keras.Sequential([keras.Input(batch_shape=(2, 4, 2)), layer])
    weights = randomize(layer, rng)
    x = rng.standard_normal((2, 8, 2)).astype(np.float32)
    whole, _, _ = ref.run(ref.gru_step(weights), x, ref.zeros_like_states(2, [3]))
    first = model.predict(x[:, :4], batch_size=2, verbose=0)
    second = model.predict(x[:, 4:], batch_size=2, verbose=0)
    close(np.concatenate([first, second], axis=1), whole)
    layer.reset_states()
    close(model.predict(x[:, :4], batch_size=2, verbose=0), whole[:, :4])


def test_stateful_layer_carries_states_across_the_batches_of_fit(rnn_backend):
    """With a learning rate of 0 the weights stay: batch 2 (samples 2, 3) continues the
    sequences of batch 1 (samples 0, 1), so the last states are those of the joined sequences."""
    rng = np.random.default_rng(17)
    layer = layers.SimpleRNN(3, stateful=True)
    model = keras.Sequential([keras.Input(batch_shape=(2, 4, 2)), layer])
    weights = randomize(layer, rng)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss="mse")
    x = rng.standard_normal((4, 4, 2)).astype(np.float32)
    model.fit(x, np.zeros((4, 3), np.float32), batch_size=2, epochs=1, shuffle=False, verbose=0)
    joined = np.concatenate([x[:2], x[2:]], axis=1)
    _, last, _ = ref.run(ref.simple_step(weights), joined, ref.zeros_like_states(2, [3]))
    close(layer.states[0].numpy(), last)


def test_a_fixed_batch_size_reaches_a_stateful_layer_through_an_embedding(rnn_backend):
    """Input(batch_size=2) -> Embedding -> LSTM(stateful=True), as Keras 3 builds it: the batch
    size stays in the layers' output shapes, and the states carry between predictions as a
    numpy loop over the joined sequences gives."""
    rng = np.random.default_rng(23)
    tokens = keras.Input((3,), batch_size=2, dtype="int32")
    embedding = layers.Embedding(10, 4)
    layer = layers.LSTM(3, stateful=True)
    assert embedding(tokens).shape == (2, 3, 4) and layers.Dense(5)(tokens).shape == (2, 5)
    model = keras.Sequential([keras.Input((3,), batch_size=2, dtype="int32"), embedding, layer])
    assert model.output_shape == (2, 3)
    table = randomize(embedding, rng)[0]
    weights = randomize(layer, rng)
    x = rng.integers(0, 10, (2, 6)).astype(np.int32)
    model.predict(x[:, :3], batch_size=2, verbose=0)
    _, last, _ = ref.run(ref.lstm_step(weights), table[x], ref.zeros_like_states(2, [3, 3]))
    close(model.predict(x[:, 3:], batch_size=2, verbose=0), last)


def test_a_batch_of_another_size_than_a_stateful_layer_is_refused_by_name():
    """Every way a batch reaches the model (predict and its last batch, a call, fit's ragged last
    batch before any batch runs, train_on_batch, a stateful layer inside Bidirectional) names the
    layer and its batch size; batches of that size still run."""
    layer = layers.LSTM(3, stateful=True, name="recurrent")
    model = keras.Sequential([keras.Input(batch_shape=(2, 4, 2)), layers.Bidirectional(layer)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse")
    x, y = np.ones((5, 4, 2), np.float32), np.zeros((5, 6), np.float32)
    message = r"Layer 'forward_recurrent' \(LSTM\) is stateful with batch size 2: .* received a batch of {}"
    with pytest.raises(ValueError, match=message.format(1)):
        model.predict(x, batch_size=2, verbose=0)
    with pytest.raises(ValueError, match=message.format(3)):
        model(x[:3])
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match=message.format(1)):
        model.fit(x, y, batch_size=2, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    with pytest.raises(ValueError, match=message.format(5)):
        model.train_on_batch(x, y)
    assert model.predict(x[:4], batch_size=2, verbose=0).shape == (4, 6)
    model.fit(x[:4], y[:4], batch_size=2, verbose=0)


def test_gru_without_bias(rnn_backend):
    rng = np.random.default_rng(18)
    layer = layers.GRU(3, use_bias=False, return_sequences=True)
    model = keras.Sequential([keras.Input((5, 2)), layer])
    kernel, recurrent = randomize(layer, rng)
    x = rng.standard_normal((2, 5, 2)).astype(np.float32)
    step = ref.gru_step([kernel, recurrent, np.zeros((2, 9))])
    close(model.predict(x, verbose=0), ref.run(step, x, ref.zeros_like_states(2, [3]))[0])


def test_stateful_needs_a_static_batch():
    with pytest.raises(ValueError, match="the batch size must be static"):
        keras.Sequential([keras.Input((4, 2)), layers.LSTM(3, stateful=True)])


def test_dropout_masks_are_one_per_batch_and_sample(rnn_backend):
    """SimpleRNN with an identity kernel, no recurrence and a linear activation outputs its
    input times the dropout mask: the same at every step, its own for each sample."""
    layer = layers.SimpleRNN(24, activation=None, use_bias=False, dropout=0.5, return_sequences=True,
                             kernel_initializer="identity", recurrent_initializer="zeros")
    x = np.ones((4, 3, 24), np.float32)
    out = layer(x, training=True)
    assert set(np.unique(out)) <= {0.0, 2.0}
    assert (out == out[:, :1]).all()
    assert len({row.tobytes() for row in out[:, 0]}) == 4
    np.testing.assert_array_equal(layer(x), x)


def test_recurrent_dropout_mask_is_one_per_batch(rnn_backend):
    """h_t = 1 + m * h_{t-1} with an identity recurrent kernel: each unit's m is 0 or 2 for
    the whole sequence, so h is 1, 1 + m, 1 + m + m^2, ..."""
    layer = layers.SimpleRNN(24, activation=None, use_bias=False, recurrent_dropout=0.5,
                             return_sequences=True, kernel_initializer="identity",
                             recurrent_initializer="identity")
    out = layer(np.ones((3, 4, 24), np.float32), training=True)
    m = out[:, 1] - 1
    assert set(np.unique(m)) <= {0.0, 2.0}
    np.testing.assert_allclose(out[:, 3], 1 + m + m ** 2 + m ** 3)


def test_gated_dropout_applies_in_training_only(rnn_backend):
    rng = np.random.default_rng(8)
    layer = layers.LSTM(3, dropout=0.3, recurrent_dropout=0.3, return_sequences=True)
    x = rng.standard_normal((2, 4, 5)).astype(np.float32)
    inference = layer(x)
    weights = [w.astype(np.float64) for w in layer.get_weights()]
    close(inference, ref.run(ref.lstm_step(weights), x, ref.zeros_like_states(2, [3, 3]))[0])
    assert not np.allclose(layer(x, training=True), inference)


# --- the IR ---------------------------------------------------------------------------------

def _graph(steps, layer):
    inputs = keras.Input((steps, 8), name="x")
    return nncompile.trace(keras.Model(inputs, layer(inputs)))


def test_one_projection_before_the_loop_and_one_matmul_a_step():
    """The loop runs over a time-major copy of the sequence (axis 0), whose steps it reads and
    writes in place; the sequence is transposed once on the way in and once on the way out."""
    graph = _graph(12, layers.LSTM(5, return_sequences=True))
    outside = [n.op for n in graph.nodes]
    (scan,) = [n for n in graph.nodes if n.op == "scan"]
    inside = [n.op for n in scan.attrs["body"].nodes]
    assert outside.count("matmul") == 1 and inside.count("matmul") == 1
    assert outside.count("transpose") == 2
    assert scan.attrs["axis"] == 0 and scan.attrs["num_carry"] == 2


def test_graph_size_does_not_grow_with_the_sequence():
    short, long = _graph(10, layers.GRU(4, name="gru")), _graph(1000, layers.GRU(4, name="gru"))
    assert len(str(short).splitlines()) == len(str(long).splitlines())
    assert str(short).replace("10,", "1000,") == str(long)


def test_unknown_length_go_backwards_sequence(rnn_backend):
    rng = np.random.default_rng(9)
    layer = layers.SimpleRNN(3, go_backwards=True, return_sequences=True)
    model = keras.Sequential([keras.Input((None, 2)), layer])
    weights = randomize(layer, rng)
    for steps in (1, 5):
        x = rng.standard_normal((2, steps, 2)).astype(np.float32)
        want = ref.run(ref.simple_step(weights), x, ref.zeros_like_states(2, [3]), backwards=True)[0]
        close(model.predict(x, verbose=0), want)


# --- arguments ----------------------------------------------------------------------------

def test_units_must_be_positive():
    with pytest.raises(ValueError, match="expected a positive integer, got 0"):
        layers.LSTM(0)


def test_recurrent_layers_take_sequences():
    with pytest.raises(ValueError, match="expected ndim=3, found ndim=2"):
        keras.Sequential([keras.Input((4,)), layers.GRU(3)])


def test_layer_exposes_its_cell_arguments():
    layer = layers.GRU(4, dropout=0.2, reset_after=False, recurrent_activation="hard_sigmoid")
    assert (layer.units, layer.dropout, layer.reset_after) == (4, 0.2, False)
    assert layer.cell.name == "gru_cell"


def test_param_counts_are_keras_formulas():
    model = keras.Sequential([keras.Input((7, 6)), layers.LSTM(5, return_sequences=True),
                              layers.GRU(4, return_sequences=True), layers.GRU(3, reset_after=False,
                                                                             return_sequences=True),
                              layers.SimpleRNN(2)])
    counts = [layer.count_params() for layer in model.layers]
    assert counts == [4 * (5 * (6 + 5) + 5), 3 * (4 * (5 + 4) + 2 * 4), 3 * (3 * (4 + 3) + 3),
                      2 * (3 + 2) + 2]


def test_pad_sequences_defaults_are_keras():
    padded = keras.utils.pad_sequences([[1, 2, 3], [4]], maxlen=2)
    np.testing.assert_array_equal(padded, [[2, 3], [0, 4]])
    assert padded.dtype == np.int32


def test_keras_1_argument_names():
    with pytest.warns(DeprecationWarning) as warned:
        layer = layers.LSTM(output_dim=4, input_dim=3, input_length=5, inner_activation="hard_sigmoid",
                            dropout_U=0.25)
    assert len(warned) == 4   # one for each Keras 1 argument, input_length with input_dim
    assert (layer.units, layer.batch_input_shape, layer.recurrent_dropout) == (4, (None, 5, 3), 0.25)
    assert layer.recurrent_activation.__name__ == "hard_sigmoid"


def test_unroll_needs_a_known_length():
    with pytest.raises(ValueError, match="Cannot unroll a RNN if the time dimension is undefined"):
        keras.Sequential([keras.Input((None, 3)), layers.GRU(2, unroll=True)])


def test_rnn_refuses_what_is_no_cell():
    with pytest.raises(ValueError, match="state_size must be specified as property on the RNN cell"):
        layers.RNN(layers.Dense(3))
    with pytest.raises(ValueError, match="Argument `cell` should be a Layer"):
        layers.RNN("lstm")

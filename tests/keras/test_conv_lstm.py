"""ConvLSTM1D, ConvLSTM2D and ConvLSTM3D against numpy loops written here (convolutions as
explicit sliding windows, from Keras 3's ConvLSTMCell equations), gradients by finite
differences, a fit whose loss falls, and the arguments Keras refuses. Files real Keras made:
test_conv_lstm_files.py."""
from __future__ import annotations

import numpy as np
import pytest

from nncompile import keras
from nncompile.keras import layers, ops
from nncompile.keras.model import trace

from finite_differences import gradients
from recurrent_reference import close, randomize, sigmoid


def conv(x, w, strides, dilations, padding):
    """x (batch, *spatial, c) by w (*kernel, c, f): every tap a strided window, summed."""
    kernel = w.shape[:-2]
    if padding == "same":
        pads = []
        for size, k, s, d in zip(x.shape[1:-1], kernel, strides, dilations):
            total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads.append((total // 2, total - total // 2))
        x = np.pad(x, [(0, 0), *pads, (0, 0)])
    out = [(size - (k - 1) * d - 1) // s + 1
           for size, k, s, d in zip(x.shape[1:-1], kernel, strides, dilations)]
    y = np.zeros((x.shape[0], *out, w.shape[-1]))
    for tap in np.ndindex(*kernel):
        window = tuple(slice(t * d, t * d + (o - 1) * s + 1, s)
                       for t, d, o, s in zip(tap, dilations, out, strides))
        y += np.einsum("b...c,cf->b...f", x[(slice(None), *window)], w[tap])
    return y


def conv_lstm_step(weights, strides, dilations, padding, gate=sigmoid):
    kernel, recurrent, bias = weights
    f = recurrent.shape[-2]
    ones = (1,) * (kernel.ndim - 2)

    def step(x, states):
        h, c = states
        z = conv(x, kernel, strides, dilations, padding) + bias + conv(h, recurrent, ones, ones, "same")
        i, forget, o = gate(z[..., :f]), gate(z[..., f:2 * f]), gate(z[..., 3 * f:])
        c = forget * c + i * np.tanh(z[..., 2 * f:3 * f])
        h = o * np.tanh(c)
        return h, [h, c]
    return step


def run_images(step, x, states, mask=None, backwards=False):
    """Keras's loop over steps of images: (outputs in processing order, final states); a masked
    step keeps the states and outputs the held h."""
    outputs = []
    for t in (range(x.shape[1] - 1, -1, -1) if backwards else range(x.shape[1])):
        out, new = step(x[:, t], states)
        if mask is not None:
            keep = mask[:, t].reshape((-1,) + (1,) * (out.ndim - 1))
            new = [np.where(keep, n, s) for n, s in zip(new, states)]
            out = new[0]
        states = new
        outputs.append(out)
    return np.stack(outputs, axis=1), states


LAYERS = {1: layers.ConvLSTM1D, 2: layers.ConvLSTM2D, 3: layers.ConvLSTM3D}

# (rank, spatial, channels, filters, kernel, strides, dilation, padding)
CASES = [
    (1, (9,), 2, 3, 3, 1, 1, "valid"),
    (1, (10,), 3, 2, 4, 2, 1, "same"),
    (1, (8,), 1, 2, 2, 1, 3, "same"),
    (2, (6, 5), 2, 3, 3, 1, 1, "same"),
    (2, (7, 6), 1, 2, (3, 2), (2, 1), 1, "valid"),
    (2, (5, 5), 3, 4, 2, 2, 1, "same"),
    (2, (6, 6), 2, 2, 3, 1, 2, "valid"),
    (3, (4, 5, 4), 2, 2, (2, 3, 2), (1, 2, 1), 1, "same"),
]


def _triple(v, rank):
    return (v,) * rank if isinstance(v, int) else tuple(v)


@pytest.mark.parametrize("backwards", [False, True])
@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}d-{c[7]}-{i}" for i, c in enumerate(CASES)])
def test_conv_lstm_runs_as_its_numpy_loop(case, backwards):
    rank, spatial, channels, filters, kernel, strides, dilation, padding = case
    rng = np.random.default_rng(len(spatial) * 10 + filters)
    x = rng.standard_normal((3, 4, *spatial, channels)).astype(np.float32)
    layer = LAYERS[rank](filters, kernel, strides=strides, dilation_rate=dilation, padding=padding,
                         return_sequences=True, return_state=True, go_backwards=backwards)
    sequence, h, c = layer(x)
    weights = randomize(layer, rng)
    sequence, h, c = layer(x)
    step = conv_lstm_step(weights, _triple(strides, rank), _triple(dilation, rank), padding)
    zeros = np.zeros(h.shape)
    want, (want_h, want_c) = run_images(step, x.astype(np.float64), [zeros, zeros], backwards=backwards)
    close(sequence, want)   # go_backwards returns the steps in the order it ran them
    close(h, want_h)
    close(c, want_c)
    assert layer.cell.kernel.shape == (*_triple(kernel, rank), channels, 4 * filters)
    assert layer.cell.recurrent_kernel.shape == (*_triple(kernel, rank), filters, 4 * filters)


def test_the_forget_gate_bias_starts_at_one_and_the_layer_is_one_loop():
    layer = layers.ConvLSTM2D(3, 3, bias_initializer="random_normal")
    model = keras.Sequential([keras.Input((5, 6, 6, 2)), layer])
    bias = layer.cell.bias.numpy()
    np.testing.assert_array_equal(bias[3:6], 1.0)
    assert np.all(bias[:3] != 1.0) and np.all(bias[6:] != 1.0)
    without = layers.ConvLSTM2D(3, 3, unit_forget_bias=False)
    keras.Sequential([keras.Input((5, 6, 6, 2)), without])
    np.testing.assert_array_equal(without.cell.bias.numpy(), 0.0)
    graph = trace(model)
    (scan,) = [n for n in graph.nodes if n.op == "scan"]
    # the input convolution of every step before the loop, the recurrent one inside
    assert [n.op for n in graph.nodes].count("conv2d") == 1
    assert [n.op for n in scan.attrs["body"].nodes].count("conv2d") == 1


@pytest.mark.parametrize("rank", [1, 2])
def test_unknown_steps_run_the_input_convolution_as_its_own_loop(rank):
    spatial = (7,) if rank == 1 else (5, 6)
    layer = LAYERS[rank](2, 3, padding="same", return_sequences=True)
    model = keras.Sequential([keras.Input((None, *spatial, 2)), layer])
    rng = np.random.default_rng(rank)
    weights = randomize(layer, rng)
    step = conv_lstm_step(weights, (1,) * rank, (1,) * rank, "same")
    for steps in (1, 5):
        x = rng.standard_normal((2, steps, *spatial, 2)).astype(np.float32)
        zeros = np.zeros((2, *spatial, 2))
        want, _ = run_images(step, x.astype(np.float64), [zeros, zeros])
        close(model.predict(x, verbose=0), want)


def test_channels_first_is_channels_last_transposed():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 6, 7, 3)).astype(np.float32)
    last = layers.ConvLSTM2D(2, (2, 3), strides=(1, 2), return_sequences=True, return_state=True)
    first = layers.ConvLSTM2D(2, (2, 3), strides=(1, 2), return_sequences=True, return_state=True,
                              data_format="channels_first")
    want = last(x)
    first(np.moveaxis(x, -1, 2))
    first.set_weights(last.get_weights())
    sequence, h, c = first(np.moveaxis(x, -1, 2))
    close(sequence, np.moveaxis(want[0], -1, 2))
    close(h, np.moveaxis(want[1], -1, 1))
    close(c, np.moveaxis(want[2], -1, 1))


def test_initial_states_and_stateful_calls_continue_the_sequence():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 6, 5, 2)).astype(np.float32)
    layer = layers.ConvLSTM1D(3, 3, padding="same", return_state=True)
    layer(x)
    weights = randomize(layer, rng)
    step = conv_lstm_step(weights, (1,), (1,), "same")
    h0, c0 = (rng.standard_normal((2, 5, 3)).astype(np.float32) for _ in range(2))
    inputs = keras.Input((6, 5, 2))
    states = [keras.Input((5, 3)), keras.Input((5, 3))]
    model = keras.Model([inputs, *states], layer(inputs, initial_state=states))
    _, (want_h, want_c) = run_images(step, x.astype(np.float64), [h0, c0])
    output, h, c = model.predict([x, h0, c0], verbose=0)
    close(output, want_h)
    close(c, want_c)

    stateful = layers.ConvLSTM1D(3, 3, padding="same", stateful=True)
    chained = keras.Sequential([keras.Input((3, 5, 2), batch_size=2), stateful])
    stateful.set_weights(layer.get_weights())
    chained.predict(x[:, :3], verbose=0)
    close(chained.predict(x[:, 3:], verbose=0), want_h_from_zeros(step, x))
    stateful.reset_states()
    zeros = np.zeros((2, 5, 3))
    close(chained.predict(x[:, :3], verbose=0), run_images(step, x[:, :3].astype(np.float64), [zeros, zeros])[1][0])


def want_h_from_zeros(step, x):
    zeros = np.zeros((x.shape[0], x.shape[2], 3))
    return run_images(step, x.astype(np.float64), [zeros, zeros])[1][0]


class _StepMask(layers.Layer):
    """Masks the steps whose images are all zeros, as a mask of (batch, steps)."""

    def call(self, x):
        return x

    def compute_mask(self, x, mask=None):
        return ops.any(ops.not_equal(x, 0.0), axis=(2, 3, 4))


def test_masked_steps_hold_the_states_and_a_pixel_mask_is_refused():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 5, 5, 4, 2)).astype(np.float32)
    x[:, 4:] = 0.0
    x[1, 2:] = 0.0
    layer = layers.ConvLSTM2D(2, 3, return_sequences=True)
    model = keras.Sequential([keras.Input((5, 5, 4, 2)), _StepMask(), layer])
    weights = randomize(layer, rng)
    zeros = np.zeros((3, 3, 2, 2))
    want, _ = run_images(conv_lstm_step(weights, (1, 1), (1, 1), "valid"), x.astype(np.float64),
                         [zeros, zeros], mask=np.abs(x).sum(axis=(2, 3, 4)) != 0)
    close(model.predict(x, verbose=0), want)
    with pytest.raises(ValueError, match=r"mask of whole steps \(batch, steps\); layer 'masking'"):
        keras.Sequential([keras.Input((5, 5, 4, 2)), layers.Masking(name="masking"),
                          layers.ConvLSTM2D(2, 3)])


def test_dropout_masks_are_drawn_in_training_only():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((4, 3, 6, 2)).astype(np.float32)
    layer = layers.ConvLSTM1D(2, 3, dropout=0.5, recurrent_dropout=0.5, seed=3)
    plain = layers.ConvLSTM1D(2, 3)
    for model_layer in (layer, plain):
        model_layer(x)
    plain.set_weights(layer.get_weights())
    close(layer(x), plain(x))
    assert not np.allclose(layer(x, training=True), plain(x), atol=1e-3)
    model = keras.Sequential([keras.Input((3, 6, 2)), layer, layers.Flatten(), layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    assert np.isfinite(model.train_on_batch(x, np.ones((4, 1), np.float32)))


def test_gradients_match_finite_differences():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 4, 3, 1)).astype(np.float32)
    layer = layers.ConvLSTM2D(2, (2, 3), padding="same", go_backwards=True, return_sequences=True)
    model = keras.Sequential([keras.Input((3, 4, 3, 1)), layer, layers.Flatten(), layers.Dense(2)])
    y = rng.standard_normal((2, 2)).astype(np.float32)
    start = [w * 1.5 for w in model.get_weights()]
    model.set_weights(start)
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse")
    model.train_on_batch(x, y)
    got = [w0 - w1 for w0, w1 in zip(start, model.get_weights())]   # one step of rate 1

    weights = [w.astype(np.float64) for w in start]

    def loss():
        kernel, recurrent, bias, dense, dense_bias = weights
        step = conv_lstm_step([kernel, recurrent, bias], (1, 1), (1, 1), "same")
        zeros = np.zeros((2, 4, 3, 2))
        sequence, _ = run_images(step, x.astype(np.float64), [zeros, zeros], backwards=True)
        out = sequence.reshape(2, -1) @ dense + dense_bias
        return np.mean((out - y) ** 2)

    for g, want in zip(got, gradients(loss, weights, 1e-6)):
        np.testing.assert_allclose(g, want, rtol=2e-3, atol=2e-6)


def test_a_next_frame_model_fits():
    rng = np.random.default_rng(8)
    frames = np.zeros((16, 5, 6, 6, 1), np.float32)
    for i in range(16):   # a dot moving one pixel right per frame
        row, col = rng.integers(0, 6), rng.integers(0, 2)
        for t in range(5):
            frames[i, t, row, col + t % 4, 0] = 1.0
    model = keras.Sequential([
        keras.Input((4, 6, 6, 1)),
        layers.ConvLSTM2D(4, 3, padding="same", return_sequences=True),
        layers.BatchNormalization(),
        layers.ConvLSTM2D(4, 3, padding="same", return_sequences=True),
        layers.Conv3D(1, 3, padding="same", activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="binary_crossentropy")
    history = model.fit(frames[:, :4], frames[:, 1:], epochs=8, batch_size=8, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.6 * losses[0]


def test_arguments_keras_refuses():
    with pytest.raises(ValueError, match="strides > 1"):
        layers.ConvLSTM2D(2, 3, strides=2, dilation_rate=2)
    with pytest.raises(ValueError, match="padding"):
        layers.ConvLSTM1D(2, 3, padding="causal")
    with pytest.raises(ValueError, match="filters"):
        layers.ConvLSTM2D(0, 3)
    with pytest.raises(ValueError, match="use_cudnn"):
        layers.ConvLSTM2D(2, 3, use_cudnn=True)
    with pytest.raises(ValueError, match="static input shapes for the spatial dimension"):
        keras.Sequential([keras.Input((4, None, 5, 1)), layers.ConvLSTM2D(2, 3)])
    with pytest.raises(ValueError, match="expected ndim=5"):
        keras.Sequential([keras.Input((4, 5, 1)), layers.ConvLSTM2D(2, 3)])

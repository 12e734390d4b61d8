"""Recurrent layers written as plain numpy loops, from Keras 3's equations (keras/src/layers/rnn
and keras/src/backend/tensorflow/rnn.py), to test nncompile's layers against."""
from __future__ import annotations

import numpy as np


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def simple_step(weights, activation=np.tanh):
    kernel, recurrent, bias = weights

    def step(x, states):
        h = activation(x @ kernel + bias + states[0] @ recurrent)
        return h, [h]
    return step


def lstm_step(weights, activation=np.tanh, gate=sigmoid):
    kernel, recurrent, bias = weights
    u = recurrent.shape[0]

    def step(x, states):
        h, c = states
        z = x @ kernel + h @ recurrent + bias
        i, f, g, o = gate(z[:, :u]), gate(z[:, u:2 * u]), activation(z[:, 2 * u:3 * u]), gate(z[:, 3 * u:])
        c = f * c + i * g
        h = o * activation(c)
        return h, [h, c]
    return step


def gru_step(weights, reset_after=True, activation=np.tanh, gate=sigmoid):
    kernel, recurrent, bias = weights
    u = recurrent.shape[0]

    def step(x, states):
        h = states[0]
        if reset_after:
            xs = x @ kernel + bias[0]
            hs = h @ recurrent + bias[1]
            z = gate(xs[:, :u] + hs[:, :u])
            r = gate(xs[:, u:2 * u] + hs[:, u:2 * u])
            hh = activation(xs[:, 2 * u:] + r * hs[:, 2 * u:])
        else:
            xs = x @ kernel + bias
            z = gate(xs[:, :u] + h @ recurrent[:, :u])
            r = gate(xs[:, u:2 * u] + h @ recurrent[:, u:2 * u])
            hh = activation(xs[:, 2 * u:] + (r * h) @ recurrent[:, 2 * u:])
        h = z * h + (1 - z) * hh
        return h, [h]
    return step


def stacked_step(steps, sizes):
    """Cells one after another within a step; `sizes` says how many states each cell has."""
    def step(x, states):
        new, at = [], 0
        for cell, n in zip(steps, sizes):
            x, cell_states = cell(x, states[at:at + n])
            new += cell_states
            at += n
        return x, new
    return step


def run(step, x, states, mask=None, backwards=False, zero_output=False, unrolled=False,
        output_state=0):
    """Keras's rnn(): (outputs in processing order, last output, final states). A masked step
    keeps the states and outputs the held output state (states[output_state]) as the JAX and
    numpy loops do, or (`unrolled`) the previous output, zeros before any; or zeros."""
    x = np.asarray(x, np.float64)
    states = [np.asarray(s, np.float64) for s in states]
    order = range(x.shape[1] - 1, -1, -1) if backwards else range(x.shape[1])
    outputs, previous = [], None
    for t in order:
        out, new = step(x[:, t], states)
        if mask is not None:
            keep = mask[:, t, None].astype(bool)
            if zero_output or (unrolled and previous is None):
                held = np.zeros_like(out)
            else:
                held = previous if unrolled else states[output_state]
            states = [np.where(keep, n, s) for n, s in zip(new, states)]
            out = np.where(keep, out, held)
        else:
            states = new
        outputs.append(out)
        previous = out
    return np.stack(outputs, axis=1), outputs[-1], states


def zeros_like_states(batch, sizes):
    return [np.zeros((batch, s)) for s in sizes]


# --- test helpers -------------------------------------------------------------------------

def randomize(layer, rng, scale=0.5):
    """Weights drawn so that the activations stay in their sensitive range; returned as float64."""
    layer.set_weights([rng.standard_normal(w.shape).astype(np.float32) * scale
                       for w in layer.get_weights()])
    return [w.astype(np.float64) for w in layer.get_weights()]


def close(got, want, tol=2e-5):
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)

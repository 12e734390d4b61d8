"""Whole Keras models compiled for the CPU against the reference interpreter on their traced graph:
an MLP, a CNN, a functional model with two inputs and two outputs, a residual block with layer
normalization, batch normalization (set moving statistics) with dropout, an embedding with global
average pooling, and 1-D convolutions with pooling. One executable per model runs batches of 1,
7 and 64."""
from __future__ import annotations

from typing import Callable

import numpy as np
import pytest

import nncompile
from cpu_harness import assert_close
from nncompile import keras
from nncompile.keras import backend
from nncompile.keras import layers as L
from nncompile.runtime.reference import run as reference_run

BATCHES = (1, 7, 64)


@pytest.fixture(autouse=True)
def fresh_names():
    backend.clear_session()


def randomize(model: keras.Model, rng: np.random.Generator) -> None:
    """Weights of a useful scale, biases and normalization offsets included, so every term shows."""
    weights = []
    for w in model.get_weights():
        fan_in = int(np.prod(w.shape[:-1])) if w.ndim > 1 else 1
        weights.append((rng.uniform(-1, 1, w.shape) / np.sqrt(fan_in)).astype(w.dtype))
    model.set_weights(weights)


def mlp(rng):
    model = keras.Sequential([keras.Input(shape=(20,)), L.Dense(64, activation="relu"),
                              L.Dense(32, activation="tanh"), L.Dense(10, activation="softmax")])
    return model, [lambda n: rng.normal(0, 1, (n, 20))]


def cnn(rng):
    model = keras.Sequential([keras.Input(shape=(12, 12, 3)), L.Conv2D(8, 3, activation="relu"),
                              L.MaxPooling2D(2),
                              L.Conv2D(16, 3, padding="same", strides=2, activation="relu"),
                              L.Flatten(), L.Dense(10, activation="softmax")])
    return model, [lambda n: rng.normal(0, 1, (n, 12, 12, 3))]


def two_inputs_two_outputs(rng):
    a, b = keras.Input(shape=(8,), name="a"), keras.Input(shape=(5,), name="b")
    ha = L.Dense(16, activation="relu")(a)
    hb = L.Dense(16, activation="sigmoid")(b)
    merged = L.Concatenate()([ha, hb])
    summed = L.Add()([ha, hb])
    probs = L.Dense(3, activation="softmax", name="probs")(merged)
    value = L.Dense(1, name="value")(summed)
    model = keras.Model([a, b], [probs, value])
    return model, [lambda n: rng.normal(0, 1, (n, 8)), lambda n: rng.normal(0, 1, (n, 5))]


def residual_layer_norm(rng):
    """A transformer-style block on a sequence: x + Dense(relu(Dense(x))), then LayerNormalization."""
    x = keras.Input(shape=(6, 17))
    h = L.Dense(17)(L.Dense(32, activation="relu")(x))
    y = L.LayerNormalization()(L.Add()([x, h]))
    model = keras.Model(x, L.Dense(4)(y))
    return model, [lambda n: rng.normal(0, 2, (n, 6, 17))]


def batch_norm_dropout(rng):
    model = keras.Sequential([keras.Input(shape=(10, 10, 2)), L.Conv2D(6, 3), L.BatchNormalization(),
                              L.Activation("relu"), L.Flatten(), L.Dropout(0.5), L.Dense(12),
                              L.BatchNormalization(), L.Dropout(0.25), L.Dense(3)])
    return model, [lambda n: rng.normal(0, 1, (n, 10, 10, 2))]


def embedding_average(rng):
    model = keras.Sequential([keras.Input(shape=(9,), dtype="int32"), L.Embedding(50, 8),
                              L.GlobalAveragePooling1D(), L.Dense(3, activation="sigmoid")])
    return model, [lambda n: rng.integers(0, 50, (n, 9)).astype(np.int32)]


def conv1d_pooling(rng):
    model = keras.Sequential([keras.Input(shape=(20, 4)), L.Conv1D(8, 3, padding="same", activation="relu"),
                              L.MaxPooling1D(2), L.Conv1D(8, 3, strides=2, activation="tanh"),
                              L.AveragePooling1D(2), L.GlobalMaxPooling1D(), L.Dense(2)])
    return model, [lambda n: rng.normal(0, 1, (n, 20, 4))]


MODELS: dict[str, Callable] = {f.__name__: f for f in (mlp, cnn, two_inputs_two_outputs, residual_layer_norm,
                                                      batch_norm_dropout, embedding_average, conv1d_pooling)}


def _set_moving_statistics(model: keras.Model, rng: np.random.Generator) -> None:
    """BatchNormalization weights are (gamma, beta, moving mean, moving variance): make the
    statistics far from (0, 1) so that inference-mode normalization shows in the outputs."""
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            size = layer.get_weights()[0].shape
            layer.set_weights([rng.uniform(0.5, 2, size), rng.normal(0, 1, size), rng.normal(0, 3, size),
                               rng.uniform(0.2, 4, size)])


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_compiled_matches_reference_at_several_batch_sizes(name):
    rng = np.random.default_rng(sorted(MODELS).index(name))
    model, samplers = MODELS[name](rng)
    randomize(model, rng)
    _set_moving_statistics(model, rng)
    graph = nncompile.trace(model)
    exe = nncompile.compile(graph)
    for n in BATCHES:
        inputs = [s(n) for s in samplers]
        inputs = [x if x.dtype.kind == "i" else x.astype(np.float32) for x in inputs]
        got = exe(*inputs)
        got = got if isinstance(got, list) else [got]
        want = reference_run(graph, inputs)
        assert len(got) == len(want) == len(model.outputs)
        for out_name, g, w in zip(graph.output_names, got, want):
            assert_close(g, w, f"{name}: output {out_name!r} at batch {n}")


def test_run_by_name_on_a_two_input_model():
    model, samplers = two_inputs_two_outputs(np.random.default_rng(0))
    graph = nncompile.trace(model)
    exe = nncompile.compile(graph)
    a, b = (s(7).astype(np.float32) for s in samplers)
    got = exe.run({"b": b, "a": a})
    want = reference_run(graph, {"a": a, "b": b})
    assert list(got) == graph.output_names
    for out_name, w in zip(graph.output_names, want):
        assert_close(got[out_name], w, out_name)


def test_batch_norm_uses_the_moving_statistics_and_dropout_is_the_identity():
    """Guards the model test above against a trace in which BN or dropout vanished: the compiled
    output moves when the moving mean does and is the same on every call."""
    rng = np.random.default_rng(3)
    model, samplers = batch_norm_dropout(rng)
    randomize(model, rng)
    _set_moving_statistics(model, rng)
    exe = nncompile.compile(nncompile.trace(model))
    x = samplers[0](5).astype(np.float32)
    first = exe(x)
    np.testing.assert_array_equal(exe(x), first)
    bn = next(layer for layer in model.layers if isinstance(layer, L.BatchNormalization))
    gamma, beta, mean, var = bn.get_weights()
    bn.set_weights([gamma, beta, mean + 1, var])
    assert not np.allclose(nncompile.compile(nncompile.trace(model))(x), first)

"""gather-first and prepared values: an Embedding's table times the next layer's weights is made
once per change of the weights (`passes/gather_first.py`, `passes/prepare.py`), and each call
gathers its rows. Expected values are numpy written here on the weights of each call."""
from __future__ import annotations

import numpy as np
import pytest

import nncompile
from nncompile import keras
from nncompile.ir import BATCH, Builder, i32
from nncompile.passes import PassManager
from nncompile.passes.prepare import PREFIX, split_prepared
from tests.keras import recurrent_reference as ref


def _table_model(vocab: int = 3000, dim: int = 64, units: int = 96):
    model = keras.Sequential([keras.Input((7,), dtype="int32"), keras.layers.Embedding(vocab, dim),
                              keras.layers.Dense(units, activation="tanh")])
    rng = np.random.default_rng(0)
    model.set_weights([rng.standard_normal(w.shape).astype(np.float32) / 4 for w in model.get_weights()])
    return model


def _numpy_table_model(model, tokens: np.ndarray) -> np.ndarray:
    table, kernel, bias = (w.astype(np.float64) for w in model.get_weights())
    return np.tanh(table[tokens] @ kernel + bias)


def test_the_rewrite_moves_the_product_and_the_bias_ahead_of_the_gather():
    b = Builder()
    tokens = b.input("tokens", i32[BATCH, 7])
    table = b.param("table", np.ones((3000, 64), np.float32))
    kernel = b.param("kernel", np.ones((64, 96), np.float32))
    bias = b.param("bias", np.ones((96,), np.float32))
    y = b.add(b.op("matmul", b.op("gather", table, tokens, allow_negative=False), kernel), bias)
    graph = PassManager(["gather-first", "dce"]).run(b.finish([y], ["y"]))
    assert [n.op for n in graph.nodes] == ["matmul", "add", "gather"]
    main, prepared = split_prepared(graph)
    assert [n.op for n in prepared.nodes] == ["matmul", "add"] and [n.op for n in main.nodes] == ["gather"]
    assert main.nodes[0].inputs[0].name == f"{PREFIX}0"


def test_a_small_table_or_a_training_graph_is_left_alone():
    b = Builder()
    tokens = b.input("tokens", i32[BATCH, 7])
    small = b.op("gather", b.param("table", np.ones((10, 4), np.float32)), tokens, allow_negative=False)
    graph = PassManager(["gather-first", "dce"]).run(
        b.finish([b.op("matmul", small, b.param("kernel", np.ones((4, 3), np.float32)))], ["y"]))
    assert [n.op for n in graph.nodes] == ["gather", "matmul"]     # 10 x 4 x 3: not worth preparing
    b = Builder()
    tokens = b.input("tokens", i32[BATCH, 7])
    table = b.param("table", np.ones((3000, 64), np.float32))
    kernel = b.param("kernel", np.ones((64, 96), np.float32))
    b.graph.updates["k_next"] = "kernel"
    y = b.op("matmul", b.op("gather", table, tokens, allow_negative=False), kernel)
    graph = PassManager(["gather-first", "dce"]).run(b.finish([y, b.mul(kernel, b.scalar(0.5, kernel))],
                                                              ["y", "k_next"]))
    assert [n.op for n in graph.nodes][:2] == ["gather", "matmul"]


@pytest.mark.parametrize("batch", [1, 5, 300])
def test_an_embedding_then_dense_model_prepares_its_table_and_follows_weight_changes(batch):
    model = _table_model()
    exe = nncompile.compile(nncompile.trace(model))
    assert exe.prepared is not None and [n.op for n in exe.graph.nodes] == ["gather", "tanh"]
    rng = np.random.default_rng(batch)
    tokens = rng.integers(0, 3000, (batch, 7)).astype(np.int32)
    np.testing.assert_allclose(exe(tokens), _numpy_table_model(model, tokens), rtol=1e-5, atol=1e-5)
    model.layers[1].kernel.assign(model.layers[1].kernel.numpy()[::-1].copy())
    np.testing.assert_allclose(exe(tokens), _numpy_table_model(model, tokens), rtol=1e-5, atol=1e-5)
    tokens[-1, -1] = 3000
    with pytest.raises(ValueError, match="gather.*out of range"):
        exe(tokens)


def test_the_tutorial_recurrent_model_predicts_as_numpy_after_training():
    model = keras.Sequential([keras.Input((12,), dtype="int32"), keras.layers.Embedding(2000, 32),
                              keras.layers.LSTM(24), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy")
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 2000, (64, 12)).astype(np.int32)
    before = model.predict(tokens, verbose=0)
    model.fit(tokens, rng.integers(0, 2, (64, 1)).astype(np.float32), batch_size=16, epochs=1, verbose=0)
    after = model.predict(tokens, verbose=0)
    assert np.abs(after - before).max() > 1e-4
    table, kernel, recurrent, bias, dense, dense_bias = (w.astype(np.float64) for w in model.get_weights())
    h = c = np.zeros((64, 24))
    sigmoid = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    for t in range(12):
        i, f, g, o = np.split(table[tokens[:, t]] @ kernel + h @ recurrent + bias, 4, axis=1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
    np.testing.assert_allclose(after, sigmoid(h @ dense + dense_bias), rtol=1e-4, atol=1e-5)


def test_a_prepared_value_kept_packed_is_made_and_packed_again():
    """GRU(reset_after=False) reads its recurrent kernel as two column slices: with an Embedding
    ahead, the slices are prepared values (made with the table's product) and, read as a
    product's B, kept packed too; they are made again, then packed again, when the weights change."""
    model = keras.Sequential([keras.Input((4,), dtype="int32"), keras.layers.Embedding(3000, 128),
                              keras.layers.GRU(128, reset_after=False)])
    rng = np.random.default_rng(3)
    model.set_weights([rng.standard_normal(w.shape).astype(np.float32) * 0.1 for w in model.get_weights()])
    exe = nncompile.compile(nncompile.trace(model))
    assert exe.prepared is not None and any(v.name.startswith(PREFIX) for v in exe.layout.packed)
    tokens = rng.integers(0, 3000, (2, 4)).astype(np.int32)
    for _ in range(2):
        table, kernel, recurrent, bias = (w.astype(np.float64) for w in model.get_weights())
        step = ref.gru_step((kernel, recurrent, bias), reset_after=False)
        _, want, _ = ref.run(step, table[tokens], ref.zeros_like_states(2, [128]))
        ref.close(exe(tokens), want)
        model.layers[1].cell.recurrent_kernel.assign(recurrent[:, ::-1].astype(np.float32).copy())

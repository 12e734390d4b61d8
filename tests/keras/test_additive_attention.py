"""AdditiveAttention against real Keras 3.15 (tests/fixtures/keras/additive, made by its script):
a Keras file's predictions, attention scores and one SGD step, configs as Keras writes them;
a model with an output that has no loss (loss=["mse", None]) trains, logging what Keras logs."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nncompile import keras
from tests.keras.keras_files import predicts_and_trains_as_keras
from tests.passes.test_autodiff import check_gradients

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "keras" / "additive"
KERAS = np.load(FIXTURES / "additive.npz")


def test_a_keras_file_predicts_and_trains_as_keras():
    count = sum(name.startswith("next_") for name in KERAS.files)
    model = predicts_and_trains_as_keras(FIXTURES / "additive.keras", [KERAS["q"], KERAS["v"]],
                                         [KERAS["t"], KERAS["scores"]], [KERAS["y"], KERAS["scores"]],
                                         [KERAS[f"next_{i}"] for i in range(count)])
    configs = json.loads(str(KERAS["configs"]))
    for layer, want in zip([model.get_layer("additive"), model.get_layer("unscaled")], configs):
        got = layer.get_config()
        assert {k: got[k] for k in ("use_scale", "dropout", "seed")} == {k: want[k] for k in ("use_scale", "dropout", "seed")}
        assert "score_mode" not in got


def test_scores_are_scaled_sums_of_tanh():
    """Against numpy: sum(scale * tanh(q_i + k_j)) then softmax; the gradient by finite differences."""
    rng = np.random.default_rng(0)
    q, v = rng.standard_normal((2, 3, 4)).astype(np.float32), rng.standard_normal((2, 5, 4)).astype(np.float32)
    layer = keras.layers.AdditiveAttention()
    out = layer([q, v])
    scale = layer.get_weights()[0]
    scores = (scale * np.tanh(q[:, :, None] + v[:, None])).sum(-1)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    np.testing.assert_allclose(out, weights @ v, rtol=1e-5, atol=1e-6)

    def build(b, values):
        from nncompile.keras import ops
        with ops.tracing(b):
            s = ops.sum(ops.tanh(ops.add(ops.expand_dims(values["q"], -2), ops.expand_dims(values["v"], -3))), axis=-1)
            return ops.matmul(ops.softmax(s), values["v"])
    check_gradients(build, {"q": q.astype(np.float64), "v": v.astype(np.float64)}, samples=6)


def test_an_output_without_a_loss_trains():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, [keras.layers.Dense(2, name="d1")(inputs), keras.layers.Dense(1, name="d2")(inputs)])
    model.compile(optimizer="sgd", loss=["mse", None])
    history = model.fit(np.ones((4, 3)), [np.ones((4, 2)), np.ones((4, 1))], epochs=1, verbose=0)
    assert list(history.history) == ["loss"]
    model.compile(optimizer="sgd", loss=["mse", "mse"])
    history = model.fit(np.ones((4, 3)), [np.ones((4, 2)), np.ones((4, 1))], epochs=1, verbose=0)
    assert sorted(history.history) == ["d1_loss", "d2_loss", "loss"]


def test_inputs_must_be_a_list():
    with pytest.raises(ValueError, match="must be called on a list of inputs"):
        keras.layers.AdditiveAttention()(np.zeros((1, 2, 3), np.float32))

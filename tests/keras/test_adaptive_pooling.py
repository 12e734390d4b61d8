"""Adaptive pooling (keras.ops.adaptive_average_pool / adaptive_max_pool and the Adaptive*Pooling
layers) against real Keras 3.15 (tests/fixtures/keras/adaptive, made by its script): values in
1-D, 2-D and 3-D, both data formats, eagerly, traced and compiled; a Keras file with the layers
predicts as Keras did; gradients by finite differences; configs as Keras writes them."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import nncompile
from nncompile import keras
from nncompile.keras import ops
from tests.keras.ops_harness import both, trace_graph
from tests.passes.test_autodiff import check_gradients

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "keras" / "adaptive"
sys.path.insert(0, str(FIXTURES))
from make_adaptive import CASES  # noqa: E402

KERAS = np.load(FIXTURES / "adaptive.npz")


@pytest.mark.parametrize("name", sorted(CASES))
def test_ops_match_keras(name):
    op, _, size, data_format = CASES[name]
    x, want = KERAS[f"{name}/x"], KERAS[f"{name}/out"]

    def fn(v):
        return getattr(ops, op)(v, size, data_format=data_format)
    graph, _ = trace_graph(fn, [x])
    for got in [*both(fn, x), nncompile.compile(graph)(x)]:
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_a_keras_file_with_the_layers_predicts_as_keras():
    model = keras.models.load_model(FIXTURES / "adaptive.keras")
    np.testing.assert_allclose(model.predict(KERAS["model/x"], verbose=0), KERAS["model/y"], rtol=1e-5, atol=1e-5)
    config = model.layers[0].get_config()
    assert config["output_size"] == (4, 3) and config["data_format"] == "channels_last"


@pytest.mark.parametrize("op", ["adaptive_average_pool", "adaptive_max_pool"])
def test_gradients_match_finite_differences(op):
    def build(b, values):
        with ops.tracing(b):
            return getattr(ops, op)(values["x"], (2, 3))
    check_gradients(build, {"x": np.random.default_rng(1).standard_normal((1, 5, 7, 2))}, samples=8)


def test_layers_train_and_refuse_bad_arguments():
    model = keras.Sequential([keras.Input((10, 3)), keras.layers.AdaptiveMaxPooling1D(4), keras.layers.Flatten(),
                              keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    history = model.fit(np.random.rand(16, 10, 3), np.random.rand(16, 1), epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    with pytest.raises(ValueError, match="output_size"):
        keras.layers.AdaptiveAveragePooling2D((2, 3, 4))
    with pytest.raises(ValueError, match=r"ops\.adaptive_average_pool: the input must be 3-D, 4-D or 5-D"):
        ops.adaptive_average_pool(np.zeros((2, 3)), 2)

"""The code users write (issue 14): custom layers, a residual `+`, a subclassed model, a custom
loss function and Loss subclass, a custom Metric, a Lambda. Each program of
tests/fixtures/keras/custom/programs.py (the same source real Keras 3 ran) is checked against a
numpy model written here (forward, and the gradients by finite differences, read back from one
SGD step), and against real Keras's predictions, loss and weights after that step."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from nncompile import keras
from tests.keras.finite_differences import gradients

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "keras" / "custom"
sys.path.insert(0, str(FIXTURES))
from programs import programs  # noqa: E402

PROGRAMS = programs(keras)
LEARNING_RATE = 0.1   # as make_custom.py


@pytest.fixture(autouse=True)
def reference_backend(monkeypatch):
    """The numpy interpreter runs these models (tests below compile a few natively)."""
    monkeypatch.setenv("NNCOMPILE_BACKEND", "reference")


# --- numpy models of the programs ---------------------------------------------------------------

def relu(x):
    return np.maximum(x, 0.0)


def linear(x, w, b):
    return x @ w + b


def antirectifier(x, kernel):
    x = x - x.mean(axis=-1, keepdims=True)
    return np.concatenate([relu(x), relu(-x)], axis=-1) @ kernel


def forward(name, w, x):
    if name == "custom_layer":
        return linear(antirectifier(linear(x, w[0], w[1]), w[2]), w[3], w[4])
    if name == "residual":
        a = linear(x, w[0], w[1])
        y = relu(linear(a, w[2], w[3])) + a
        return linear(y * 0.5 - np.tanh(a), w[4], w[5])
    if name == "subclassed":
        h = np.concatenate([relu(linear(x, w[0], w[1])), np.tanh(linear(x, w[2], w[3]))], axis=-1)
        return linear(h, w[4], w[5])
    if name == "lambda_layer":
        return linear(np.tanh(linear(x, w[0], w[1])) * 2.0, w[2], w[3])
    return linear(np.tanh(linear(x, w[0], w[1])), w[2], w[3])


def loss(name, y, pred):
    if name == "loss_function":
        return np.mean(np.mean((y - pred) ** 2 + 0.1 * np.abs(pred), axis=-1))
    if name == "loss_class":
        return np.mean(2.0 * np.mean(np.log(np.cosh(pred - y)), axis=-1))
    return np.mean((y - pred) ** 2)


def finite_differences(name, weights, x, y, eps=1e-4):
    """d loss / d weight for every weight, by central differences in float64."""
    weights = [w.astype(np.float64) for w in weights]
    return gradients(lambda: loss(name, y, forward(name, weights, x)), weights, eps)


def made(name):
    """The program's model with real Keras's initial weights, compiled with SGD, and the fixture."""
    fixture = np.load(FIXTURES / f"{name}.npz")
    model, loss_fn, metrics = PROGRAMS[name]()
    model(fixture["x"][:1])
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE), loss=loss_fn, metrics=metrics)
    count = len([k for k in fixture.files if k.startswith("initial_")])
    model.set_weights([fixture[f"initial_{i}"] for i in range(count)])
    return model, fixture, count


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_program_against_numpy_and_real_keras(name):
    model, fixture, count = made(name)
    x, y = fixture["x"], fixture["y"]
    initial = model.get_weights()
    expected = forward(name, [w.astype(np.float64) for w in initial], x)
    pred = model.predict(x, verbose=0)
    np.testing.assert_allclose(pred, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pred, fixture["pred"], rtol=1e-5, atol=1e-5)

    logs = model.train_on_batch(x, y, return_dict=True)
    assert logs["loss"] == pytest.approx(loss(name, y, expected), rel=1e-5)
    assert logs["loss"] == pytest.approx(float(fixture["loss"]), rel=1e-5)
    for key in (k for k in fixture.files if k.startswith("metric_")):
        assert logs[key.removeprefix("metric_")] == pytest.approx(float(fixture[key]), rel=1e-5)
    trained = model.get_weights()
    grads = finite_differences(name, initial, x, y)
    for i, (before, after, grad) in enumerate(zip(initial, trained, grads)):
        np.testing.assert_allclose((before - after) / LEARNING_RATE, grad, rtol=2e-3, atol=2e-4)
        np.testing.assert_allclose(after, fixture[f"trained_{i}"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["custom_layer", "subclassed", "metric"])
def test_compiled_matches_reference(name, monkeypatch):
    results = {}
    for backend in ("reference", "cpu"):
        monkeypatch.setenv("NNCOMPILE_BACKEND", backend)
        model, fixture, _ = made(name)
        pred = model.predict(fixture["x"], verbose=0)
        logs = model.train_on_batch(fixture["x"], fixture["y"], return_dict=True)
        results[backend] = [pred, *model.get_weights(), *map(np.float32, logs.values())]
    for compiled, reference in zip(results["cpu"], results["reference"]):
        np.testing.assert_allclose(compiled, reference, rtol=1e-5, atol=1e-6)


def test_custom_layer_trace_is_the_ir_of_its_ops():
    import nncompile

    model, _, _ = made("custom_layer")
    layer = next(layer for layer in model.layers if type(layer).__name__ == "Antirectifier")
    ops_of = [node.op for node in nncompile.trace(model).nodes if node.loc == layer.name]
    assert ops_of == ["reduce_mean", "sub", "relu", "neg", "relu", "concat", "matmul"]


def test_readme_examples_run(tmp_path, monkeypatch):
    """The examples of the README's "Your own layers, losses and models" run as written."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Your own layers, losses and models")[1].split("\n## ")[0]
    blocks = [block.split("```")[0] for block in section.split("```python\n")[1:]]
    assert len(blocks) == 3
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["predictions"].shape == (4, 1)
    assert np.isfinite(namespace["history"].history["mean_error"]).all()
    stack, again = namespace["stack"], namespace["again"]
    assert type(again.layers[0]).__name__ == "Linear" and (tmp_path / "regressor.weights.h5").exists()
    sample = namespace["x_train"][:4]
    np.testing.assert_allclose(again.predict(sample, verbose=0), stack.predict(sample, verbose=0))

"""Checks every new layer goes through: one training step against finite differences of a numpy
forward written in the test, compiled vs the reference interpreter, training in `fit`, and the
.keras and .h5 files of a trained model."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from finite_differences import gradients
from nncompile import keras

LR = 0.1
SPATIAL = Path(__file__).resolve().parent.parent / "fixtures" / "keras" / "spatial"


def random_array(shape, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


def check_sgd_step(model, x: np.ndarray, y: np.ndarray,
                   forward: Callable[[list[np.ndarray], np.ndarray], np.ndarray]) -> None:
    """`model` (compiled here with SGD and mse) predicts forward(weights, x), and one
    train_on_batch moves each weight by -LR times its finite-difference gradient."""
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=LR), loss="mse")
    weights = [w.astype(np.float64) for w in model.get_weights()]
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(model.predict(x, verbose=0), forward(weights, x64),
                               rtol=1e-5, atol=1e-5)
    grads = gradients(lambda: np.mean((forward(weights, x64) - y) ** 2), weights, 1e-6)
    model.train_on_batch(x, y)
    for got, weight, grad in zip(model.get_weights(), weights, grads):
        np.testing.assert_allclose(got, weight - LR * grad, rtol=1e-4, atol=1e-5)


def check_compiled_matches_reference(model, x: np.ndarray, monkeypatch) -> None:
    """Predictions, and the weights after one SGD step from the same start, agree between the
    compiled code and the reference interpreter."""
    start = model.get_weights()
    y = random_array((len(x),) + tuple(model.output_shape[1:]), 99)
    outputs, stepped = [], []
    for backend in ("cpu", "reference"):
        monkeypatch.setenv("NNCOMPILE_BACKEND", backend)
        model.set_weights(start)
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=LR), loss="mse")
        outputs.append(model.predict(x, verbose=0))
        model.train_on_batch(x, y)
        stepped.append(model.get_weights())
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-5, atol=1e-5)
    for compiled, reference in zip(*stepped):
        np.testing.assert_allclose(compiled, reference, rtol=1e-4, atol=1e-5)


def check_fit_and_files(model, x: np.ndarray, y: np.ndarray, tmp_path) -> None:
    """fit lowers the loss, and the trained model's .keras and .h5 files predict as it does."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01), loss="mse")
    losses = model.fit(x, y, epochs=5, batch_size=4, verbose=0).history["loss"]
    assert losses[-1] < losses[0]
    want = model.predict(x, verbose=0)
    for name in ("model.keras", "model.h5"):
        model.save(tmp_path / name)
        again = keras.models.load_model(tmp_path / name)
        np.testing.assert_allclose(again.predict(x, verbose=0), want, rtol=1e-6, atol=1e-6)


def check_real_keras_files(name: str) -> None:
    """Real Keras 3's `<name>.keras` and `<name>.h5` (fixtures/keras/spatial) predict what Keras
    predicted."""
    data = np.load(SPATIAL / f"{name}.npz")
    xs = [data[f"x{i}"] for i in range(sum(k.startswith("x") for k in data.files))]
    for suffix in (".keras", ".h5"):
        model = keras.models.load_model(SPATIAL / f"{name}{suffix}", compile=False)
        ys = model.predict(xs, verbose=0)
        for i, y in enumerate(ys if isinstance(ys, list) else [ys]):
            np.testing.assert_allclose(y, data[f"y{i}"], rtol=1e-5, atol=1e-5,
                                       err_msg=f"{name}{suffix} output {i}")

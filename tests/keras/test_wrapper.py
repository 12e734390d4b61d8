"""`keras.layers.Wrapper` as users subclass it: against numpy, and a file real Keras made and
trained one step (tests/fixtures/keras/wrapper)."""
from __future__ import annotations

import os

import numpy as np
import pytest

from nncompile import keras

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "keras", "wrapper")


@keras.saving.register_keras_serializable(package="wrap")
class Doubled(keras.layers.Wrapper):
    """Twice the wrapped layer's output (the class the fixture's script defines for Keras)."""

    def call(self, inputs):
        return self.layer(inputs) * 2.0


def test_a_wrapper_subclass_runs_its_layer_as_its_call_says():
    inner = keras.layers.Dense(3)
    model = keras.Sequential([keras.Input((4,)), Doubled(inner)])
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    kernel, bias = inner.get_weights()
    np.testing.assert_allclose(model.predict(x, verbose=0), 2 * (x @ kernel + bias), rtol=1e-5, atol=1e-6)


def test_a_keras_file_with_a_wrapper_predicts_and_trains_as_keras_did(tmp_path):
    data = np.load(os.path.join(FIXTURE, "wrapper.npz"))
    model = keras.models.load_model(os.path.join(FIXTURE, "wrapper.keras"))
    # the wrapped layer's weights sit under the wrapper's name (Keras 3 also starts a Sequential's
    # paths with the model's name, which nncompile's paths leave out)
    assert [w.path for w in model.weights] == [p.split("/", 1)[1] for p in data["paths"]]
    np.testing.assert_allclose(model.predict(data["x"], verbose=0), data["prediction"], rtol=1e-5, atol=1e-6)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    model.train_on_batch(data["x"], data["y"])
    for i, got in enumerate(model.get_weights()):
        np.testing.assert_allclose(got, data[f"trained_{i}"], rtol=1e-5, atol=1e-6)
    path = str(tmp_path / "again.keras")
    model.save(path)
    np.testing.assert_allclose(keras.models.load_model(path).predict(data["x"], verbose=0),
                               model.predict(data["x"], verbose=0), rtol=1e-6)


def test_a_wrapper_needs_a_layer():
    with pytest.raises(ValueError, match="supplied to Wrapper isn't a supported layer type"):
        Doubled("dense")

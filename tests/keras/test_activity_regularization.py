"""`activity_regularizer` and ActivityRegularization: the penalty of a layer's output, divided
by the batch size, joins the training and the test loss, as in Keras 3's `Layer.__call__`.
Checked against numpy written here (loss and finite-difference gradients) and against real
Keras 3 (fixtures/keras/activity/, made by make_activity.py there)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nncompile import keras
from nncompile.keras import layers, ops
from nncompile.keras.layers.arguments import ArgumentError
from tests.keras.finite_differences import gradients

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "keras" / "activity"
LR = 0.1
DENSE_L1, DENSE_L2, LAYER_L1, LAYER_L2 = 0.01, 0.02, 0.05, 0.1


def _model():
    model = keras.Sequential([
        keras.Input((4,)),
        layers.Dense(3, activation="tanh",
                     activity_regularizer=keras.regularizers.L1L2(DENSE_L1, DENSE_L2)),
        layers.ActivityRegularization(l1=LAYER_L1, l2=LAYER_L2),
        layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=LR), loss="mse")
    return model


def _loss(weights, x, t):
    """The Keras 3 loss in float64: mse plus each regularized output's penalty over the batch."""
    kernel, bias, head, head_bias = weights
    hidden = np.tanh(x @ kernel + bias)
    mse = np.mean((hidden @ head + head_bias - t) ** 2)
    l1, l2 = DENSE_L1 + LAYER_L1, DENSE_L2 + LAYER_L2   # both penalize the same hidden output
    return mse + (l1 * np.abs(hidden).sum() + l2 * np.square(hidden).sum()) / len(x)


def test_loss_and_sgd_step_match_numpy_and_finite_differences():
    rng = np.random.default_rng(3)
    x, t = rng.standard_normal((6, 4)), rng.standard_normal((6, 2))
    model = _model()
    weights = [w.astype(np.float64) for w in model.get_weights()]
    # predictions are the plain forward pass: no penalty there, and the layer is the identity
    kernel, bias, head, head_bias = weights
    np.testing.assert_allclose(model.predict(x, verbose=0), np.tanh(x @ kernel + bias) @ head + head_bias,
                               rtol=1e-5, atol=1e-6)
    # batches of 4 and 2: each batch's penalty is divided by its own size, the logs weigh
    # batches by size, so the mean is the per-sample mean (a sum over the batch would not be)
    assert model.evaluate(x, t, batch_size=4, verbose=0) == pytest.approx(_loss(weights, x, t), rel=1e-5)
    grads = gradients(lambda: _loss(weights, x, t), weights, eps=1e-6)
    expected = [w - LR * g for w, g in zip(weights, grads)]
    assert model.train_on_batch(x, t) == pytest.approx(_loss(weights, x, t), rel=1e-5)
    for got, want in zip(model.get_weights(), expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_matches_real_keras_from_the_same_weights():
    fixture = np.load(FIXTURE / "activity.npz")
    meta = json.loads(str(fixture["meta"]))
    model = keras.models.load_model(FIXTURE / "activity.keras")
    for i, weight in enumerate(model.get_weights()):
        np.testing.assert_array_equal(weight, fixture[f"initial_{i}"])
    x, t = fixture["x"], fixture["t"]
    assert model.evaluate(x, t, batch_size=3, verbose=0) == pytest.approx(meta["evaluate_batch_3"], rel=1e-6)
    assert model.train_on_batch(x, t) == pytest.approx(meta["train_on_batch_loss"], rel=1e-6)
    for i, weight in enumerate(model.get_weights()):
        np.testing.assert_allclose(weight, fixture[f"after_{i}"], rtol=1e-5, atol=1e-7)
    assert model.layers[1].get_config() == {"name": "activity_regularization", "trainable": True,
                                            "dtype": "float32", "l1": LAYER_L1, "l2": LAYER_L2}


class _Block(keras.Model):
    """A subclassed model: its Dense, called inside `call`, carries the regularizer."""

    def __init__(self):
        super().__init__()
        self.dense = layers.Dense(2, use_bias=False, activity_regularizer=keras.regularizers.L1(0.5))

    def call(self, x):
        return self.dense(x)


def test_layers_called_in_functional_and_subclassed_models_add_their_penalty():
    x, t = np.ones((4, 3), np.float32), np.zeros((4, 2), np.float32)
    inputs = keras.Input((3,))
    functional = keras.Model(inputs, layers.ActivityRegularization(l2=0.25)(inputs * 1.0)[:, :2])
    functional.compile(optimizer="sgd", loss="mse")
    # mse of ones is 1; l2 * sum(ones of 4x3) / 4 = 0.25 * 3
    assert functional.evaluate(x, np.zeros((4, 2)), verbose=0) == pytest.approx(1 + 0.75)
    block = _Block()
    block.compile(optimizer="sgd", loss="mse")
    block.build((None, 3))
    kernel = block.dense.kernel.numpy().astype(np.float64)
    out = x @ kernel
    assert block.evaluate(x, t, verbose=0) == pytest.approx(
        np.mean(out ** 2) + 0.5 * np.abs(out).sum() / 4, rel=1e-5)


def test_bad_arguments_name_the_layer():
    with pytest.raises(ArgumentError, match=r"ActivityRegularization: .*l1.*non-negative"):
        layers.ActivityRegularization(l1=-1.0)
    with pytest.raises(ArgumentError, match="not `activity_regularizer`"):
        layers.ActivityRegularization(activity_regularizer="l2")
    model = keras.Sequential([keras.Input((2,)), layers.Dense(1, activity_regularizer=lambda x: "big")])
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(TypeError, match=r"Layer 'dense.*activity_regularizer: the regularizer returned str"):
        model.evaluate(np.ones((2, 2)), np.ones((2, 1)), verbose=0)


def test_regularizers_written_with_keras_ops_are_traced():
    """Keras takes any callable as a regularizer; its penalty (summed, as Keras sums every
    added loss) joins the loss, for weights and for activities alike."""
    model = keras.Sequential([keras.Input((2,)), layers.Dense(
        1, use_bias=False, kernel_regularizer=lambda w: 0.5 * ops.sum(ops.abs(w)),
        activity_regularizer=lambda y: 0.25 * ops.square(y))])
    model.compile(optimizer="sgd", loss="mse")
    x = np.array([[1.0, 2.0], [3.0, -1.0], [0.5, 0.5]], np.float32)
    kernel = model.get_weights()[0].astype(np.float64)
    out = x @ kernel
    expected = np.mean(out ** 2) + 0.5 * np.abs(kernel).sum() + 0.25 * np.square(out).sum() / 3
    assert model.evaluate(x, np.zeros((3, 1)), verbose=0) == pytest.approx(expected, rel=1e-5)

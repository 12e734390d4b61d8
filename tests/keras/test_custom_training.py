"""Subclassed models through compile / fit / evaluate / predict / summary / weight files, and
custom losses and metrics in the training step and on arrays (issue 14, items 4 and 5). Expected
values are numpy computed here."""
from __future__ import annotations

import numpy as np
import pytest

from nncompile import keras
from nncompile.keras import layers, ops

RNG = np.random.default_rng(7)
X = RNG.standard_normal((6, 3)).astype("float32")
Y = RNG.standard_normal((6, 2)).astype("float32")


@pytest.fixture(autouse=True)
def reference_backend(monkeypatch):
    monkeypatch.setenv("NNCOMPILE_BACKEND", "reference")


class TwoLayers(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = layers.Dense(4, activation="relu")
        self.head = layers.Dense(2)

    def call(self, inputs, training=False):
        return self.head(self.hidden(inputs))


def numpy_two_layers(model, x):
    k1, b1, k2, b2 = model.get_weights()
    return np.maximum(x @ k1 + b1, 0) @ k2 + b2


def test_subclassed_model_builds_on_first_data_and_predicts():
    model = TwoLayers(name="two")
    assert not model.built and [layer.name for layer in model.layers] == [
        model.hidden.name, model.head.name]
    out = model.predict(X, verbose=0)
    assert model.built and model.input_shape == (None, 3) and model.output_shape == (None, 2)
    np.testing.assert_allclose(out, numpy_two_layers(model, X), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model(X), out, rtol=1e-6)
    # Keras 3 puts the model's name before its layers' in the weight paths
    assert [w.path for w in model.weights][:2] == [f"two/{model.hidden.name}/kernel",
                                                    f"two/{model.hidden.name}/bias"]


def test_subclassed_model_compiled_before_it_is_built_trains_like_numpy():
    model = TwoLayers()
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse", metrics=["mae"])
    assert not model.built
    model.build((None, 3))
    before = model.get_weights()
    pred = numpy_two_layers(model, X)
    logs = model.train_on_batch(X, Y, return_dict=True)
    assert logs["loss"] == pytest.approx(np.mean((pred - Y) ** 2), rel=1e-5)
    assert logs["mae"] == pytest.approx(np.mean(np.abs(pred - Y)), rel=1e-5)
    # d mean((pred - y)^2) / d head bias: 2 (pred - y) averaged over samples and the 2 outputs
    grad_b2 = 2 * (pred - Y).mean(axis=0) / 2
    b2 = before[3]
    np.testing.assert_allclose(model.get_weights()[3], b2 - 0.05 * grad_b2, rtol=1e-5, atol=1e-6)
    history = model.fit(X, Y, epochs=3, batch_size=3, verbose=0)
    assert len(history.history["loss"]) == 3
    loss, mae = model.evaluate(X, Y, verbose=0)
    now = numpy_two_layers(model, X)
    assert loss == pytest.approx(np.mean((now - Y) ** 2), rel=1e-5)
    assert mae == pytest.approx(np.mean(np.abs(now - Y)), rel=1e-5)


def test_subclassed_model_summary_and_weight_files(tmp_path):
    model = TwoLayers(name="two")
    model.build((None, 3))
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert 'Model: "two"' in text and f"{model.hidden.name} (Dense)" in text
    assert "Total params: 26" in text
    model.save(tmp_path / "two.keras")   # its config: the constructor's arguments (none but name)
    x = np.random.default_rng(1).normal(size=(4, 3)).astype("float32")
    loaded = keras.models.load_model(tmp_path / "two.keras", custom_objects={"TwoLayers": TwoLayers})
    assert type(loaded) is TwoLayers and loaded.name == "two"
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    path = tmp_path / "two.weights.h5"
    model.save_weights(path)
    again = TwoLayers()
    again.build((None, 3))
    again.load_weights(path)
    for a, b in zip(again.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


class Residual(keras.Model):
    """A subclassed model of a custom layer holding layers, over two inputs."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.project = layers.Dense(3, use_bias=False)

    def call(self, inputs):
        a, b = inputs
        return a + self.project(b)


def test_subclassed_model_on_two_inputs_inside_a_functional_model():
    inner = Residual()
    a, b = keras.Input(shape=(3,)), keras.Input(shape=(3,))
    outer = keras.Model([a, b], layers.Dense(1)(inner([a, b])))
    (kernel,), (k, bias) = inner.get_weights(), outer.layers[-1].get_weights()
    want = (X + X[::-1] @ kernel) @ k + bias
    np.testing.assert_allclose(outer.predict([X, X[::-1]], verbose=0), want, rtol=1e-5, atol=1e-6)


class Pooled(keras.Model):
    """Masks travel between the layers a model's call uses, as in Keras."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.embedding = layers.Embedding(5, 3, mask_zero=True)
        self.pool = layers.GlobalAveragePooling1D()

    def call(self, tokens):
        return self.pool(self.embedding(tokens))


def test_masks_travel_between_layers_inside_call():
    model = Pooled()
    tokens = np.array([[1, 2, 0, 0], [3, 0, 0, 0]])
    got = model.predict(tokens, verbose=0)
    table = model.embedding.get_weights()[0]
    np.testing.assert_allclose(got, np.stack([table[[1, 2]].mean(axis=0), table[3]]), rtol=1e-6)


def test_a_custom_training_step_is_refused_with_the_reason():
    class Stepping(TwoLayers):
        def train_step(self, data):
            return {}

    with pytest.raises(NotImplementedError, match=r"overrides `train_step`.*one graph.*GradientTape"):
        Stepping().compile(optimizer="sgd", loss="mse")


# --- losses ------------------------------------------------------------------------------------

class WeightedAbsolute(keras.losses.Loss):
    def __init__(self, weight=3.0, **kwargs):
        super().__init__(**kwargs)
        self.weight = weight

    def call(self, y_true, y_pred):
        return self.weight * ops.mean(ops.abs(y_true - y_pred), axis=-1)


def test_loss_subclass_on_arrays_with_reduction_and_sample_weights():
    weights = np.arange(1, 7, dtype="float32")
    per_sample = 3.0 * np.abs(Y - X[:, :2]).mean(axis=-1)
    assert float(WeightedAbsolute()(Y, X[:, :2])) == pytest.approx(per_sample.mean(), rel=1e-6)
    summed = WeightedAbsolute(reduction="sum")(Y, X[:, :2], sample_weight=weights)
    assert float(summed) == pytest.approx((per_sample * weights).sum(), rel=1e-6)


def test_loss_function_reduced_to_a_scalar_trains():
    model = keras.Sequential([keras.Input(shape=(3,)), layers.Dense(2)])
    model.compile(optimizer="sgd", loss=lambda t, p: ops.mean(ops.square(t - p)))
    kernel, bias = model.get_weights()
    logs = model.train_on_batch(X, Y, return_dict=True)
    assert logs["loss"] == pytest.approx(np.mean((X @ kernel + bias - Y) ** 2), rel=1e-5)


def test_loss_function_errors_name_the_function():
    def bad_loss(y_true, y_pred):
        return y_pred if float(ops.sum(y_pred)) > 0 else y_true

    model = keras.Sequential([keras.Input(shape=(3,)), layers.Dense(2)])
    model.compile(optimizer="sgd", loss=bad_loss)
    with pytest.raises(TypeError, match=r"Loss function 'bad_loss'.*float\(ops.sum"):
        model.train_on_batch(X, Y)


# --- metrics -----------------------------------------------------------------------------------

class TruePositives(keras.metrics.Metric):
    """keras.io's BinaryTruePositives."""

    def __init__(self, name="true_positives", **kwargs):
        super().__init__(name=name, **kwargs)
        self.true_positives = self.add_variable(shape=(), initializer="zeros", name="tp")

    def update_state(self, y_true, y_pred, sample_weight=None):
        values = ops.logical_and(ops.cast(y_true, "bool"), y_pred > 0.5)
        values = ops.cast(values, self.dtype)
        if sample_weight is not None:
            values = values * ops.reshape(ops.cast(sample_weight, self.dtype), (-1, 1))
        self.true_positives.assign_add(ops.sum(values))

    def result(self):
        return self.true_positives

    def reset_state(self):
        self.true_positives.assign(0.0)


LABELS = (RNG.uniform(size=(6, 1)) > 0.5).astype("float32")
SCORES = RNG.uniform(size=(6, 1)).astype("float32")


def test_metric_subclass_on_arrays():
    metric = TruePositives()
    metric.update_state(LABELS, SCORES)
    metric.update_state(LABELS[:3], SCORES[:3])
    hits = (LABELS > 0.5) & (SCORES > 0.5)
    assert float(metric.result()) == hits.sum() + hits[:3].sum()
    metric.reset_state()
    assert float(metric.result()) == 0.0


def test_metric_subclass_and_metric_function_in_the_training_step():
    model = keras.Sequential([keras.Input(shape=(1,)), layers.Dense(1, activation="sigmoid")])

    def absolute_error(y_true, y_pred):
        return ops.abs(y_true - y_pred)

    model.compile(optimizer="sgd", loss="binary_crossentropy",
                  metrics=[absolute_error], weighted_metrics=[TruePositives()])
    weights = np.arange(1, 7, dtype="float32")
    scores = model.predict(SCORES, verbose=0)
    logs = model.evaluate(SCORES, LABELS, sample_weight=weights, batch_size=4, verbose=0,
                          return_dict=True)
    hits = ((LABELS > 0.5) & (scores > 0.5))[:, 0]
    assert logs["true_positives"] == pytest.approx(float((hits * weights).sum()))
    assert logs["absolute_error"] == pytest.approx(float(np.abs(LABELS - scores).mean()), rel=1e-5)


class Remaining(keras.metrics.Metric):
    """Counts down from 100 by the positive labels seen: assign_sub on a traced value."""

    def __init__(self, name="remaining", **kwargs):
        super().__init__(name=name, **kwargs)
        self.left = self.add_variable(shape=(), initializer="zeros", name="left")
        self.left.assign(100.0)

    def update_state(self, y_true, y_pred, sample_weight=None):
        self.left.assign_sub(ops.sum(ops.cast(y_true, self.dtype)))

    def result(self):
        return self.left

    def reset_state(self):
        self.left.assign(100.0)


def test_assign_sub_on_arrays_and_in_a_compiled_metric():
    metric = Remaining()
    metric.update_state(LABELS, SCORES)
    assert float(metric.result()) == 100.0 - LABELS.sum()
    metric.left.assign_sub(np.float32(2.5))
    assert float(metric.result()) == 97.5 - LABELS.sum()
    model = keras.Sequential([keras.Input(shape=(1,)), layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="sgd", loss="binary_crossentropy", metrics=[Remaining()])
    logs = model.evaluate(SCORES, LABELS, batch_size=4, verbose=0, return_dict=True)
    assert logs["remaining"] == pytest.approx(100.0 - LABELS.sum())

"""compile / fit / evaluate / *_on_batch: the whole training step compiled, checked against numpy
written here, against the reference interpreter running the same step, and against Keras's
behaviour (logs, History, progress lines, errors)."""
from __future__ import annotations

import re

import numpy as np
import pytest

from nncompile import keras
from nncompile.keras import layers


def pima_like(n=200, seed=0):
    """Eight features and a label that depends on two of them, like the Pima tutorial's data."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, 8)).astype(np.float32)
    y = ((x[:, 1] + 0.5 * x[:, 5] + 0.1 * rng.standard_normal(n)) > 0.75).astype(np.float32)
    return x, y


def pima_model():
    with pytest.warns(DeprecationWarning):
        return keras.Sequential([
            layers.Dense(12, input_dim=8, init="uniform", activation="relu"),
            layers.Dense(8, init="uniform", activation="relu"),
            layers.Dense(1, init="uniform", activation="sigmoid"),
        ])


def test_the_pima_tutorial_trains_and_its_loss_falls():
    keras.utils.set_random_seed(7)
    x, y = pima_like()
    model = pima_model()
    model.compile(loss="binary_crossentropy", optimizer="adam", metrics=["accuracy"])
    with pytest.warns(DeprecationWarning, match="nb_epoch"):
        history = model.fit(x, y, nb_epoch=40, batch_size=10, verbose=0)
    losses = history.history["loss"]
    assert len(losses) == 40 and losses[-1] < 0.8 * losses[0]
    loss, accuracy = model.evaluate(x, y, verbose=0)
    assert accuracy > 0.75
    assert set(history.history) == {"loss", "accuracy"}


def _numpy_sgd_steps(w0, b0, w1, b1, batches, lr):
    """Dense(4, tanh) -> Dense(1) with mse, plain SGD, in float64."""
    w0, b0, w1, b1 = (a.astype(np.float64) for a in (w0, b0, w1, b1))
    for x, y in batches:
        x, y = x.astype(np.float64), y.astype(np.float64)[:, None]
        h = np.tanh(x @ w0 + b0)
        pred = h @ w1 + b1
        g_pred = 2 * (pred - y) / len(x)
        g_w1, g_b1 = h.T @ g_pred, g_pred.sum(0)
        g_h = g_pred @ w1.T * (1 - h ** 2)
        g_w0, g_b0 = x.T @ g_h, g_h.sum(0)
        w0, b0, w1, b1 = w0 - lr * g_w0, b0 - lr * g_b0, w1 - lr * g_w1, b1 - lr * g_b1
    return w0, b0, w1, b1


def test_train_on_batch_matches_sgd_written_in_numpy():
    rng = np.random.default_rng(1)
    model = keras.Sequential([keras.Input(shape=(3,)), layers.Dense(4, activation="tanh"), layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse")
    start = [w.copy() for w in model.get_weights()]
    batches = [(rng.standard_normal((n, 3)).astype(np.float32), rng.standard_normal(n).astype(np.float32))
               for n in (5, 2, 7)]
    for x, y in batches:
        model.train_on_batch(x, y)
    for got, want in zip(model.get_weights(), _numpy_sgd_steps(*start, batches, 0.1)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def _train(backend, monkeypatch, model_fn, x, y, **compile_args):
    monkeypatch.setenv("NNCOMPILE_BACKEND", backend)
    keras.utils.set_random_seed(3)
    model = model_fn()
    model.compile(**compile_args)
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, shuffle=True)
    return model.get_weights()


def _cnn():
    return keras.Sequential([
        keras.Input(shape=(8, 8, 2)),
        layers.Conv2D(4, 3, activation="relu"), layers.BatchNormalization(),
        layers.MaxPooling2D(2), layers.Dropout(0.25), layers.Flatten(),
        layers.Dense(3, activation="softmax")])


def test_compiled_step_and_reference_step_give_the_same_weights(monkeypatch):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((50, 8, 8, 2)).astype(np.float32)
    y = rng.integers(0, 3, 50)
    args = dict(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    compiled = _train("cpu", monkeypatch, _cnn, x, y, **args)
    reference = _train("reference", monkeypatch, _cnn, x, y, **args)
    for got, want in zip(compiled, reference):
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)


def test_fit_in_chunks_of_steps_equals_fit_batch_by_batch(monkeypatch):
    # fit runs its full batches as native calls of several steps, a chunk of samples at a time;
    # a callback that wants every batch makes it run them one by one: the weights must agree.
    from nncompile.keras import training

    x, y = pima_like(n=203)
    monkeypatch.setattr(training, "CHUNK_BYTES", 3 * 16 * 4 * 10)   # three 16-sample steps a chunk
    weights, losses = [], []
    for callbacks in ([], [keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: None)]):
        keras.utils.set_random_seed(5)
        model = keras.Sequential([keras.Input(shape=(8,)), layers.Dense(6, activation="relu"),
                                  layers.Dense(1, activation="sigmoid")])
        model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
        history = model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=callbacks)
        weights.append(model.get_weights())
        losses.append(history.history["loss"])
    for chunked, one_by_one in zip(*weights):
        np.testing.assert_allclose(chunked, one_by_one, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-6)


def test_the_ragged_last_batch_does_not_build_a_second_step():
    x, y = pima_like(n=53)
    model = keras.Sequential([keras.Input(shape=(8,)), layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="sgd", loss="binary_crossentropy")
    model.fit(x, y, batch_size=10, epochs=2, verbose=0)
    assert sum(1 for train, *_ in model._compiled.steps if train) == 1


def test_validation_split_and_validation_data_give_val_logs():
    x, y = pima_like()
    model = keras.Sequential([keras.Input(shape=(8,)), layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    h = model.fit(x, y, epochs=2, validation_split=0.25, verbose=0)
    assert set(h.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    h = model.fit(x[:100], y[:100], epochs=1, validation_data=(x[100:], y[100:]), verbose=0)
    assert h.history["val_loss"][0] == pytest.approx(model.evaluate(x[100:], y[100:], verbose=0)[0], rel=1e-5)


def test_evaluate_without_metrics_returns_a_float_and_matches_numpy():
    x, y = pima_like(n=40)
    model = keras.Sequential([keras.Input(shape=(8,)), layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    loss = model.evaluate(x, y, batch_size=7, verbose=0)
    want = np.mean((model.predict(x, verbose=0)[:, 0] - y) ** 2)
    assert isinstance(loss, float) and loss == pytest.approx(want, rel=1e-5)


def test_two_outputs_with_their_own_losses_and_weights():
    rng = np.random.default_rng(4)
    inp = keras.Input(shape=(5,), name="x")
    h = layers.Dense(8, activation="relu")(inp)
    a = layers.Dense(1, name="reg")(h)
    c = layers.Dense(3, activation="softmax", name="cls")(h)
    model = keras.Model(inp, [a, c])
    model.compile(optimizer="adam", loss={"reg": "mse", "cls": "sparse_categorical_crossentropy"},
                  loss_weights={"reg": 0.5, "cls": 2.0}, metrics={"cls": ["accuracy"]})
    x = rng.standard_normal((30, 5)).astype(np.float32)
    ys = [rng.standard_normal(30).astype(np.float32), rng.integers(0, 3, 30)]
    h = model.fit(x, ys, epochs=1, batch_size=30, verbose=0)
    assert {"loss", "reg_loss", "cls_loss", "cls_accuracy"} <= set(h.history)
    total = h.history["loss"][0]
    assert total == pytest.approx(0.5 * h.history["reg_loss"][0] + 2.0 * h.history["cls_loss"][0], rel=1e-4)


def test_verbose_2_prints_one_keras_line_per_epoch(capsys):
    x, y = pima_like(n=40)
    model = keras.Sequential([keras.Input(shape=(8,)), layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=2, batch_size=10, verbose=2)
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out
    assert re.search(r"4/4 - \d+s - \d+(ms|us|s)/step - accuracy: \d\.\d{4} - loss: \d\.\d{4}", out)


def test_integer_labels_with_categorical_crossentropy_suggest_the_sparse_loss():
    model = keras.Sequential([keras.Input(shape=(4,)), layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    with pytest.raises(ValueError, match="sparse_categorical_crossentropy"):
        model.fit(np.ones((6, 4), np.float32), np.array([0, 1, 2, 0, 1, 2]), verbose=0)


def test_terminate_on_nan_stops_training():
    x, y = pima_like(n=40)
    x[3, 0] = np.nan
    model = keras.Sequential([keras.Input(shape=(8,)), layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    h = model.fit(x, y, epochs=5, batch_size=40, verbose=0, callbacks=[keras.callbacks.TerminateOnNaN()])
    assert len(h.history["loss"]) == 1 and np.isnan(h.history["loss"][0])


def test_early_stopping_restores_the_best_weights():
    x = np.random.default_rng(8).standard_normal((60, 8)).astype(np.float32)
    y = x.sum(axis=1)
    model = keras.Sequential([keras.Input(shape=(8,)), layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=2.0), loss="mse")   # diverges
    snapshots = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: snapshots.append([w.copy() for w in model.get_weights()]))
    stop = keras.callbacks.EarlyStopping(monitor="loss", patience=1, restore_best_weights=True)
    h = model.fit(x, y, epochs=30, batch_size=60, verbose=0, callbacks=[record, stop], shuffle=False)
    losses = h.history["loss"]
    assert len(losses) == 2 and losses[1] > losses[0]
    for got, want in zip(model.get_weights(), snapshots[0]):
        np.testing.assert_array_equal(got, want)


def test_training_is_reproducible_with_set_random_seed():
    x = np.random.default_rng(5).standard_normal((40, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.float32)

    def run():
        keras.utils.set_random_seed(11)
        model = keras.Sequential([keras.Input(shape=(6,)), layers.Dense(16, activation="relu"),
                                  layers.Dropout(0.5), layers.Dense(1, activation="sigmoid")])
        model.compile(optimizer="rmsprop", loss="binary_crossentropy")
        model.fit(x, y, epochs=2, batch_size=8, verbose=0)
        return model.get_weights()

    for a, b in zip(run(), run()):
        np.testing.assert_array_equal(a, b)


def test_batch_normalization_moving_statistics_follow_training():
    x = np.random.default_rng(6).standard_normal((64, 4)).astype(np.float32) * 3 + 2
    model = keras.Sequential([keras.Input(shape=(4,)), layers.BatchNormalization(momentum=0.5), layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, np.zeros(64, np.float32), epochs=3, batch_size=64, verbose=0)
    bn = model.layers[0]
    np.testing.assert_allclose(bn.moving_mean.numpy(), x.mean(0) * (1 - 0.5 ** 3), rtol=1e-4)


def test_fit_before_compile_is_a_clear_error():
    model = keras.Sequential([keras.Input(shape=(2,)), layers.Dense(1)])
    with pytest.raises(RuntimeError, match="You must call `compile\\(\\)`"):
        model.fit(np.ones((2, 2)), np.ones(2))


def test_weight_constraints_hold_after_every_step():
    x, y = pima_like(n=30)
    model = keras.Sequential([keras.Input(shape=(8,)),
                              # no biases and a fixed head of ones: the prediction of the
                              # non-negative features stays above the negative target, so every
                              # step pulls the kernel down, whatever weights it was drawn with
                              layers.Dense(4, use_bias=False,
                                           kernel_constraint=keras.constraints.NonNeg()),
                              layers.Dense(1, use_bias=False, kernel_initializer="ones",
                                           trainable=False)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05), loss="mse")
    model.fit(x, -x.sum(axis=1), epochs=3, batch_size=5, verbose=0)   # pulls the kernel negative
    kernel = model.layers[0].kernel.numpy()
    assert np.isfinite(kernel).all() and (kernel >= 0).all() and (kernel == 0).any()


def test_only_weighted_metrics_see_sample_weights():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((20, 3)).astype(np.float32)
    y = rng.standard_normal(20).astype(np.float32)
    w = (np.arange(20) % 2).astype(np.float32)
    model = keras.Sequential([keras.Input(shape=(3,)), layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"], weighted_metrics=["mae"])
    logs = model.evaluate(x, y, sample_weight=w, verbose=0, return_dict=True)
    error = np.abs(model.predict(x, verbose=0)[:, 0] - y)
    assert set(logs) == {"loss", "mae", "weighted_mae"}
    assert logs["mae"] == pytest.approx(error.mean(), rel=1e-5)
    assert logs["weighted_mae"] == pytest.approx((error * w).sum() / w.sum(), rel=1e-5)


def test_train_on_batch_returns_the_logs_of_its_own_batch_as_keras_3():
    """Keras 3 resets the metrics in every train_on_batch (checked in Keras 3.x, JAX backend):
    with a zero learning rate the second call gives the second batch's loss alone."""
    x, y = pima_like(n=16)
    model = keras.Sequential([keras.Input(shape=(8,)), layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss="binary_crossentropy",
                  metrics=["accuracy"])
    model.train_on_batch(x[:8], y[:8])
    second = model.train_on_batch(x[8:], y[8:])
    np.testing.assert_allclose(second, model.test_on_batch(x[8:], y[8:]), rtol=1e-6)


def test_keras_2_positional_metrics_are_refused_at_compile_naming_loss_weights():
    """Keras 3 takes compile('adam', 'binary_crossentropy', ['accuracy']) as loss_weights and
    fails in fit ("Value 'accuracy' ... is not a valid JAX array type"); this fails at once."""
    model = keras.Sequential([keras.Input(shape=(8,)), layers.Dense(1, activation="sigmoid")])
    with pytest.raises(TypeError, match=r"loss_weights=\['accuracy'\].*metrics=\['accuracy'\]"):
        model.compile("adam", "binary_crossentropy", ["accuracy"])


def test_fit_writes_one_plain_line_per_epoch_into_a_pipe(capsys):
    x, y = pima_like(n=40)
    model = keras.Sequential([keras.Input(shape=(8,)), layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy")
    model.fit(x, y, epochs=2, batch_size=10)
    lines = capsys.readouterr().out.split("\n")
    assert lines[0] == "Epoch 1/2" and lines[2] == "Epoch 2/2" and lines[4:] == [""]
    assert all(re.fullmatch(r"4/4 - \d+s - \d+(ms|us|s)/step - loss: \d\.\d{4}", lines[i])
               for i in (1, 3))


def _per_timestep_model():
    keras.utils.set_random_seed(2)
    model = keras.Sequential([keras.Input(shape=(4, 5)), layers.Dense(5, activation="sigmoid")])
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"], weighted_metrics=["mse"])
    return model


def test_rank_3_targets_take_one_weight_per_timestep_as_keras_3(monkeypatch):
    """Keras 3 weighs per-timestep losses by a sample_weight of shape (batch, timesteps): the
    loss is the mean of the weighted entries, a weighted metric their weighted mean."""
    monkeypatch.setenv("NNCOMPILE_BACKEND", "reference")
    rng = np.random.default_rng(0)
    x, t = rng.random((6, 4, 5), np.float32), rng.random((6, 4, 5), np.float32)
    weights = rng.random((6, 4)).astype(np.float32)
    model = _per_timestep_model()
    per_entry = ((model.predict(x, verbose=0) - t) ** 2).mean(-1)
    loss, mae, weighted_mse = model.evaluate(x, t, sample_weight=weights, verbose=0)
    np.testing.assert_allclose(loss, (per_entry * weights).mean(), rtol=1e-5)
    np.testing.assert_allclose(weighted_mse, (per_entry * weights).sum() / weights.sum(), rtol=1e-5)
    np.testing.assert_allclose(mae, np.abs(model.predict(x, verbose=0) - t).mean(), rtol=1e-5)
    history = model.fit(x, t, sample_weight=weights, batch_size=4, epochs=2, verbose=0).history
    assert len(history["loss"]) == 2 and np.isfinite(history["loss"]).all()


def test_rank_3_targets_refuse_misshapen_weights_and_class_weight():
    rng = np.random.default_rng(0)
    x, t = rng.random((6, 4, 5), np.float32), rng.random((6, 4, 5), np.float32)
    model = _per_timestep_model()
    with pytest.raises(ValueError, match=r"one per entry of the loss, \(6, 4\). Received shape \(6, 4, 5\)"):
        model.fit(x, t, sample_weight=np.ones((6, 4, 5)), verbose=0)
    with pytest.raises(ValueError, match=r"`class_weight` .* `sample_weight` of shape \(6, 4\)"):
        model.fit(x, t, class_weight={0: 1.0, 1: 2.0}, verbose=0)


def test_a_step_keeps_the_constraints_it_was_built_with():
    """As Keras 3's compiled step: a constraint removed after the first fit still holds (the
    ragged last batch, run alone, too), and one added later is not applied."""
    x, y = pima_like(n=30)
    model = keras.Sequential([keras.Input(shape=(8,)),
                              layers.Dense(4, use_bias=False, kernel_constraint=keras.constraints.NonNeg()),
                              layers.Dense(1, use_bias=False, kernel_initializer="ones", trainable=False)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05), loss="mse")
    model.fit(x, -x.sum(axis=1), epochs=1, batch_size=8, verbose=0)
    model.layers[0].kernel.constraint = None
    model.fit(x, -x.sum(axis=1), epochs=2, batch_size=8, verbose=0)
    assert (model.layers[0].kernel.numpy() >= 0).all()
    free = keras.Sequential([keras.Input(shape=(8,)), layers.Dense(4, use_bias=False),
                             layers.Dense(1, use_bias=False, kernel_initializer="ones", trainable=False)])
    free.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05), loss="mse")
    free.fit(x, -x.sum(axis=1), epochs=1, batch_size=8, verbose=0)
    free.layers[0].kernel.constraint = keras.constraints.NonNeg()
    free.fit(x, -x.sum(axis=1), epochs=2, batch_size=8, verbose=0)
    assert (free.layers[0].kernel.numpy() < 0).any()

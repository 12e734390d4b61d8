"""Callbacks driven by a small fake training loop that calls the hooks as the trainer does."""
import csv
import math

import numpy as np
import pytest

from nncompile.keras import callbacks as cb
from nncompile.keras import utils

# ANSI pieces of Keras's progress bar, written out here so the expected text is independent.
BOLD, RESET, GREEN, GREY, BAR = "\x1b[1m", "\x1b[0m", "\x1b[32m", "\x1b[37m", "━"


class FakeOptimizer:
    def __init__(self, learning_rate=0.01):
        self.learning_rate = learning_rate


class FakeModel:
    """What callbacks touch on a model: stop_training, optimizer, weights, save."""

    def __init__(self, metrics=(), metrics_names=()):
        self.stop_training = False
        self.optimizer = FakeOptimizer()
        self.weights = [np.zeros(2)]
        self.metrics = list(metrics)
        self.metrics_names = list(metrics_names)
        self.saved = []

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        self.weights = [w.copy() for w in weights]

    def save(self, path, overwrite=True):
        self.saved.append(("model", path))
        open(path, "w").close()

    def save_weights(self, path, overwrite=True):
        self.saved.append(("weights", path))
        open(path, "w").close()


def fit(callbacks, epoch_logs, model=None, steps=2, batch_logs=None, verbose=0):
    """Call the hooks like `fit`: one entry of `epoch_logs` per epoch; the weights become the
    epoch number at each epoch end; stops when a callback sets `model.stop_training`.
    Returns (model, number of epochs run)."""
    model = model or FakeModel()
    cbs = cb.CallbackList(callbacks, add_history=True, add_progbar=verbose != 0, model=model,
                          verbose=verbose, epochs=len(epoch_logs), steps=steps)
    cbs.on_train_begin()
    epochs_run = 0
    for epoch, logs in enumerate(epoch_logs):
        cbs.on_epoch_begin(epoch)
        for batch in range(steps):
            cbs.on_train_batch_begin(batch)
            cbs.on_train_batch_end(batch, (batch_logs or {"loss": 1.0})
                                   if not callable(batch_logs) else batch_logs(epoch, batch))
            if model.stop_training:
                break
        model.weights = [np.full(2, float(epoch))]
        cbs.on_epoch_end(epoch, dict(logs))
        epochs_run += 1
        if model.stop_training:
            break
    cbs.on_train_end(dict(epoch_logs[epochs_run - 1]) if epochs_run else {})
    return model, epochs_run


def test_base_callback_has_every_hook_and_legacy_batch_aliases():
    seen = []

    class Legacy(cb.Callback):
        def on_batch_begin(self, batch, logs=None):
            seen.append(("begin", batch))

        def on_batch_end(self, batch, logs=None):
            seen.append(("end", batch, logs["loss"]))

    callback = Legacy()
    for hook in ("on_epoch_begin", "on_epoch_end", "on_test_batch_begin", "on_test_batch_end",
                 "on_predict_batch_begin", "on_predict_batch_end"):
        getattr(callback, hook)(0, {})
    for hook in ("on_train_begin", "on_train_end", "on_test_begin", "on_test_end",
                 "on_predict_begin", "on_predict_end"):
        getattr(callback, hook)({})
    callback.on_train_batch_begin(3)
    callback.on_train_batch_end(3, {"loss": 0.5})
    assert seen == [("begin", 3), ("end", 3, 0.5)]


def test_callback_list_adds_history_and_progbar_once_and_sets_model_and_params():
    model = FakeModel()
    history = cb.History()
    cbs = cb.CallbackList([history], add_history=True, add_progbar=True, model=model,
                          verbose=2, epochs=3, steps=5)
    assert [type(c) for c in cbs.callbacks] == [cb.History, cb.ProgbarLogger]
    assert model.history is history and history.model is model
    assert history.params == {"verbose": 2, "epochs": 3, "steps": 5}
    with pytest.raises(TypeError, match="Callback"):
        cb.CallbackList([lambda: None])
    late = cb.LambdaCallback()
    cbs.append(late)
    assert cbs.callbacks[-1] is late and late.model is model and late.params["steps"] == 5
    with pytest.raises(TypeError, match="function"):
        cbs.append(print)


def test_callback_list_passes_batch_logs_sorted_as_floats():
    got = []
    lam = cb.LambdaCallback(on_train_batch_end=lambda batch, logs: got.append(logs))
    cbs = cb.CallbackList([lam])
    cbs.on_train_batch_end(0, {"loss": np.float32(0.25), "accuracy": np.array(0.5)})
    assert list(got[0]) == ["accuracy", "loss"]
    assert all(type(v) is float for v in got[0].values()) and got[0]["loss"] == 0.25


def test_history_records_every_epoch_and_becomes_model_history():
    model, _ = fit([], [{"loss": 0.5, "val_loss": 0.6}, {"loss": 0.4, "val_loss": 0.7}])
    assert model.history.history == {"loss": [0.5, 0.4], "val_loss": [0.6, 0.7]}
    assert model.history.epoch == [0, 1]


@pytest.fixture
def clock(monkeypatch):
    """The progress bar's clock, set by the test."""
    now = [0.0]
    monkeypatch.setattr(utils.progbar, "_clock", lambda: now[0])
    return now


@pytest.fixture
def terminal(monkeypatch):
    """stdout taken for a terminal, where Keras's bar is redrawn in place."""
    monkeypatch.setattr(utils.progbar, "_interactive_stdout", lambda: True)


def _bar(done, digits_text):
    head = f"{BOLD}{digits_text}{RESET} "
    green = f"{GREEN}{BAR * done}{RESET}" if done else ""
    return head + green + f"{GREY}{BAR * (20 - done)}{RESET}"


def test_progbar_logger_verbose_1_prints_keras_bar(clock, capsys, terminal):
    cbs = cb.CallbackList([], add_progbar=True, model=FakeModel(), verbose=1, epochs=2, steps=4)
    cbs.on_train_begin()
    cbs.on_epoch_begin(0)
    # Step 1 is slow (0.5 s); later steps are timed from the end of step 1. Updates closer than
    # 0.05 s to the last drawn one are not drawn.
    for batch, (t, loss) in enumerate([(0.5, 0.9), (0.515625, 0.7), (0.6875, 0.5),
                                       (0.703125, 0.3)]):
        clock[0] = t
        cbs.on_train_batch_end(batch, {"loss": loss})
    clock[0] = 0.75
    cbs.on_epoch_end(0, {"loss": 0.55, "val_loss": 0.6})
    first = "\r" + _bar(5, "1/4") + f" {BOLD}1s{RESET} 500ms/step - loss: 0.9000"
    # Step 3: 0.1875 s over 2 steps -> 94ms/step; the mean of the three losses is 0.7.
    third = ("\b" * 53 + "\r" + _bar(15, "3/4") + f" {BOLD}0s{RESET} 94ms/step - loss: 0.7000"
             + " ")
    # The final line shows the epoch's logs as given: 0.25 s over 3 steps -> 83ms/step.
    final = ("\b" * 52 + "\r" + _bar(20, "4/4") + f" {BOLD}1s{RESET} 83ms/step - loss: 0.5500"
             " - val_loss: 0.6000\n")
    assert capsys.readouterr().out == "Epoch 1/2\n" + first + third + final


def test_progbar_logger_verbose_2_prints_one_line_per_epoch(clock, capsys):
    fit([], [{"accuracy": 0.615, "loss": 0.6737}], steps=16, verbose=2)
    assert capsys.readouterr().out == "16/16 - 0s - 0s/step - accuracy: 0.6150 - loss: 0.6737\n"


def test_progbar_verbose_1_writes_one_plain_line_per_epoch_when_stdout_is_not_a_terminal(
        clock, capsys):
    # capsys's stdout is no terminal: no carriage returns, backspaces nor colour codes.
    cbs = cb.CallbackList([], add_progbar=True, model=FakeModel(), verbose=1, epochs=2, steps=4)
    cbs.on_train_begin()
    for epoch in range(2):
        cbs.on_epoch_begin(epoch)
        for batch in range(4):
            clock[0] += 0.25
            cbs.on_train_batch_end(batch, {"loss": 1.0})
        cbs.on_epoch_end(epoch, {"loss": 0.5})
    line = "4/4 - 1s - 250ms/step - loss: 0.5000\n"
    assert capsys.readouterr().out == "Epoch 1/2\n" + line + "Epoch 2/2\n" + line


def test_progbar_logger_verbose_2_times_the_epoch(clock, capsys):
    cbs = cb.CallbackList([], add_progbar=True, model=FakeModel(), verbose=2, epochs=3, steps=16)
    cbs.on_train_begin()
    cbs.on_epoch_begin(1)
    clock[0] = 0.03125  # 16 steps -> 1.95 ms a step
    cbs.on_epoch_end(1, {"loss": -0.5, "accuracy": 0.0005})
    assert capsys.readouterr().out == ("Epoch 2/3\n16/16 - 0s - 2ms/step - accuracy: 5.0000e-04 "
                                       "- loss: -5.0000e-01\n")


def test_progbar_is_silent_for_validation_inside_fit_and_shows_evaluate(clock, capsys, terminal):
    in_fit = cb.CallbackList([], add_progbar=True, model=FakeModel(), verbose=1, epochs=1, steps=1)
    in_fit.on_train_begin()
    in_fit.on_test_begin()
    in_fit.on_test_batch_end(0, {"loss": 1.0})
    in_fit.on_test_end({"loss": 1.0})
    assert capsys.readouterr().out == ""
    evaluate = cb.CallbackList([], add_progbar=True, model=FakeModel(), verbose=1, epochs=1,
                               steps=1)
    evaluate.on_test_begin()
    clock[0] = 2.0
    evaluate.on_test_batch_end(0, {"loss": 1.0})
    evaluate.on_test_end({"loss": 0.25})
    # Before the end the bar shows the time left (none), at the end the time taken.
    first = "\r" + _bar(20, "1/1") + f" {BOLD}0s{RESET} 2s/step - loss: 1.0000"
    final = "\b" * 50 + "\r" + _bar(20, "1/1") + f" {BOLD}2s{RESET} 2s/step - loss: 0.2500\n"
    assert capsys.readouterr().out == first + final


def test_progbar_eta_formats_and_unknown_target(clock, capsys, terminal):
    bar = utils.Progbar(target=10000, verbose=1)
    clock[0] = 4.0  # 4 s a step, 9999 steps to go
    bar.update(1)
    assert f" {BOLD}11:06:36{RESET} 4s/step" in capsys.readouterr().out
    bar = utils.Progbar(target=None, verbose=1)
    clock[0] = 4.5
    bar.update(3, [("loss", 2.0)])
    assert capsys.readouterr().out == "\r      3/Unknown" + f" {BOLD}0s{RESET} 167ms/step - loss: 2.0000"


def test_early_stopping_waits_patience_epochs_then_stops():
    losses = [1.0, 0.5, 0.6, 0.55, 0.7, 0.1]
    stopper = cb.EarlyStopping(monitor="loss", patience=2)
    _, run = fit([stopper], [{"loss": v} for v in losses])
    assert run == 4 and stopper.stopped_epoch == 3 and stopper.best == 0.5


def test_early_stopping_min_delta_and_max_mode_from_the_metric_name():
    accuracies = [0.5, 0.505, 0.509, 0.9]
    stopper = cb.EarlyStopping(monitor="val_accuracy", min_delta=0.01, patience=1)
    _, run = fit([stopper], [{"val_accuracy": v} for v in accuracies])
    assert run == 2 and stopper.best == 0.5  # 0.505 is not 0.01 better


def test_early_stopping_explicit_mode_and_metric_direction_from_the_model():
    class Metric:
        name, _direction = "score", "up"

    stopper = cb.EarlyStopping(monitor="score", patience=0)
    _, run = fit([stopper], [{"score": v} for v in (1.0, 2.0, 1.5)],
                 model=FakeModel(metrics=[Metric()]))
    assert run == 3 and stopper.stopped_epoch == 2
    stopper = cb.EarlyStopping(monitor="score", mode="min", patience=0)
    _, run = fit([stopper], [{"score": v} for v in (1.0, 2.0, 1.5)])
    assert run == 2
    with pytest.raises(ValueError, match="mode='max'"):
        fit([cb.EarlyStopping(monitor="score")], [{"score": 1.0}])


def test_early_stopping_restores_best_weights():
    stopper = cb.EarlyStopping(monitor="val_loss", patience=1, restore_best_weights=True,
                               verbose=1)
    model, run = fit([stopper], [{"val_loss": v} for v in (0.9, 0.3, 0.4, 0.5)])
    assert run == 3
    np.testing.assert_array_equal(model.weights[0], [1.0, 1.0])  # the weights after epoch 1


def test_early_stopping_baseline_and_start_from_epoch():
    stopper = cb.EarlyStopping(monitor="loss", patience=2, baseline=0.1)
    _, run = fit([stopper], [{"loss": v} for v in (0.9, 0.95, 0.97, 0.99)])
    assert run == 2  # an improvement that does not beat the baseline does not reset the wait
    _, run = fit([cb.EarlyStopping(monitor="loss", patience=2)],
                 [{"loss": v} for v in (0.9, 0.95, 0.97, 0.99)])
    assert run == 3
    stopper = cb.EarlyStopping(monitor="loss", patience=0, start_from_epoch=2)
    _, run = fit([stopper], [{"loss": v} for v in (0.1, 0.5, 0.9, 0.95, 0.2)])
    assert run == 4 and stopper.best == 0.9


def test_early_stopping_warns_when_the_monitor_is_missing():
    with pytest.warns(UserWarning, match="val_loss.*Available metrics are: loss"):
        _, run = fit([cb.EarlyStopping()], [{"loss": 1.0}, {"loss": 2.0}])
    assert run == 2


def test_reduce_lr_on_plateau_factor_patience_min_lr_and_cooldown():
    reducer = cb.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, cooldown=2,
                                   min_lr=0.003)
    model = FakeModel()
    lrs = []
    record = cb.LambdaCallback(on_epoch_end=lambda e, logs: lrs.append(logs["learning_rate"]))
    fit([reducer, record], [{"loss": 1.0}] * 6, model=model)
    # The logs show the rate the epoch ran with: reduced at the end of epoch 1, cooling down in
    # epoch 2, reduced at the end of epoch 3 to the floor (0.003), then no lower.
    assert lrs == [0.01, 0.01, 0.005, 0.005, 0.003, 0.003]
    assert model.optimizer.learning_rate == 0.003
    with pytest.raises(ValueError, match="factor >= 1.0"):
        cb.ReduceLROnPlateau(factor=1.0)


def test_reduce_lr_on_plateau_min_delta_and_accuracy_direction():
    reducer = cb.ReduceLROnPlateau(monitor="val_acc", factor=0.1, patience=1, min_delta=0.05)
    model, _ = fit([reducer], [{"val_acc": v} for v in (0.5, 0.6, 0.62)])
    assert model.optimizer.learning_rate == pytest.approx(0.001)  # 0.62 is < 0.05 better than 0.6


def test_learning_rate_scheduler_sets_the_rate_each_epoch():
    model = FakeModel()
    scheduler = cb.LearningRateScheduler(lambda epoch, lr: lr * 0.5 if epoch else lr)
    history_lr = []
    record = cb.LambdaCallback(on_epoch_end=lambda e, logs: history_lr.append(logs["learning_rate"]))
    fit([scheduler, record], [{"loss": 1.0}] * 3, model=model)
    assert history_lr == [0.01, 0.005, 0.0025]
    fit([cb.LearningRateScheduler(lambda epoch: 0.1 / (epoch + 1))], [{"loss": 1.0}] * 2,
        model=model)
    assert model.optimizer.learning_rate == 0.05
    with pytest.raises(ValueError, match="should be a float"):
        fit([cb.LearningRateScheduler(lambda epoch, lr: "fast")], [{"loss": 1.0}])


def test_csv_logger_writes_sorted_columns_and_appends(tmp_path):
    path = tmp_path / "log.csv"
    fit([cb.CSVLogger(path)], [{"loss": 0.5, "accuracy": 0.25}, {"loss": 0.4, "accuracy": 0.5}])
    assert path.read_text().splitlines() == ["epoch,accuracy,loss", "0,0.25,0.5", "1,0.5,0.4"]
    fit([cb.CSVLogger(path, separator=";", append=True)], [{"loss": 0.3, "accuracy": 0.75}])
    rows = list(csv.reader(path.read_text().splitlines()[3:], delimiter=";"))
    assert rows == [["0", "0.75", "0.3"]]


def test_csv_logger_reserves_validation_columns_of_the_model(tmp_path):
    path = tmp_path / "log.csv"
    model = FakeModel(metrics_names=["loss", "val_loss"])
    fit([cb.CSVLogger(path)], [{"loss": 0.5}, {"loss": 0.4, "val_loss": 0.45}], model=model)
    assert path.read_text().splitlines() == ["epoch,loss,val_loss", "0,0.5,NA", "1,0.4,0.45"]


def test_terminate_on_nan_stops_at_the_batch_and_says_which(capsys):
    def logs(epoch, batch):
        return {"loss": math.nan if (epoch, batch) == (1, 2) else 1.0}

    model, run = fit([cb.TerminateOnNaN()], [{"loss": 1.0}] * 5, steps=4, batch_logs=logs)
    assert run == 2 and model.stop_training
    assert capsys.readouterr().out == "Batch 2: Invalid loss, terminating training\n"
    with pytest.raises(RuntimeError, match="batch 0"):
        fit([cb.TerminateOnNaN(raise_error=True)], [{"loss": 1.0}],
            batch_logs={"loss": math.inf})


def test_lambda_callback_calls_the_given_functions():
    calls = []
    lam = cb.LambdaCallback(on_train_begin=lambda logs: calls.append("begin"),
                            on_epoch_end=lambda epoch, logs: calls.append(("epoch", epoch)),
                            on_train_batch_end=lambda batch, logs: calls.append(("batch", batch)),
                            on_train_end=lambda logs: calls.append("end"))
    fit([lam], [{"loss": 1.0}] * 2, steps=1)
    assert calls == ["begin", ("batch", 0), ("epoch", 0), ("batch", 0), ("epoch", 1), "end"]
    with pytest.raises(ValueError, match="on_epoch_ending"):
        cb.LambdaCallback(on_epoch_ending=print)


def test_model_checkpoint_formats_the_path_and_saves_every_epoch(tmp_path):
    pattern = str(tmp_path / "ckpt" / "m-{epoch:02d}-{val_loss:.2f}.keras")
    model, _ = fit([cb.ModelCheckpoint(pattern)], [{"val_loss": 0.5}, {"val_loss": 0.25}])
    assert model.saved == [("model", str(tmp_path / "ckpt" / "m-01-0.50.keras")),
                           ("model", str(tmp_path / "ckpt" / "m-02-0.25.keras"))]


def test_model_checkpoint_save_best_only_weights_and_mode(tmp_path, capsys):
    path = str(tmp_path / "best.weights.h5")
    checkpoint = cb.ModelCheckpoint(path, monitor="val_accuracy", save_best_only=True,
                                    save_weights_only=True, verbose=1)
    model, _ = fit([checkpoint], [{"val_accuracy": v} for v in (0.5, 0.4, 0.7)])
    assert model.saved == [("weights", path), ("weights", path)]
    out = capsys.readouterr().out
    assert f"\nEpoch 1: val_accuracy improved from -inf to 0.50000, saving model to {path}\n" in out
    assert "\nEpoch 2: val_accuracy did not improve from 0.50000\n" in out
    checkpoint = cb.ModelCheckpoint(str(tmp_path / "m.h5"), monitor="val_loss", mode="max",
                                    save_best_only=True, initial_value_threshold=0.45)
    model, _ = fit([checkpoint], [{"val_loss": v} for v in (0.4, 0.5, 0.3)])
    assert len(model.saved) == 1


def test_model_checkpoint_save_freq_in_batches(tmp_path):
    checkpoint = cb.ModelCheckpoint(str(tmp_path / "m-{epoch}-{batch}.keras"), save_freq=3)
    model, _ = fit([checkpoint], [{"loss": 1.0}] * 2, steps=4)
    names = [p.rsplit("/", 1)[1] for _, p in model.saved]
    assert names == ["m-1-3.keras", "m-2-2.keras"]


def test_model_checkpoint_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match=r"\.weights\.h5"):
        cb.ModelCheckpoint(str(tmp_path / "w.h5"), save_weights_only=True)
    with pytest.raises(ValueError, match=r"must end in `\.keras`"):
        cb.ModelCheckpoint(str(tmp_path / "m.ckpt"))
    with pytest.raises(ValueError, match="save_freq"):
        cb.ModelCheckpoint(str(tmp_path / "m.keras"), save_freq="batch")
    with pytest.raises(KeyError, match="val_acc"):
        fit([cb.ModelCheckpoint(str(tmp_path / "{val_acc}.keras"))], [{"loss": 1.0}])

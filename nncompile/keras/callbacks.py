"""`keras.callbacks`: the Keras 3 callback API and its standard callbacks.

The trainer calls the hooks of a `CallbackList` with `logs` dicts of floats; callbacks read and
write `model.stop_training`, `model.optimizer.learning_rate` and
`model.get_weights()` / `model.set_weights()`.

>>> history = History()
>>> history.on_train_begin(); history.on_epoch_end(0, {"loss": 0.5})
>>> history.history
{'loss': [0.5]}
"""
from __future__ import annotations

import collections.abc
import csv
import math
import operator
import os
import sys
import warnings
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from nncompile.keras.utils import Progbar

# Hooks that receive (batch or epoch, logs) and those that receive (logs) only.
_INDEXED_HOOKS = ("on_batch_begin", "on_batch_end", "on_epoch_begin", "on_epoch_end",
                  "on_train_batch_begin", "on_train_batch_end", "on_test_batch_begin",
                  "on_test_batch_end", "on_predict_batch_begin", "on_predict_batch_end")
_PLAIN_HOOKS = ("on_train_begin", "on_train_end", "on_test_begin", "on_test_end",
                "on_predict_begin", "on_predict_end")

# Whether larger is better, for Keras's built-in metric names (`mode='auto'`); a metric object
# of the model with a `_direction` attribute ('up' / 'down') takes precedence.
_UP_METRICS = {"accuracy", "acc", "binary_accuracy", "categorical_accuracy",
               "sparse_categorical_accuracy", "top_k_categorical_accuracy",
               "sparse_top_k_categorical_accuracy", "auc", "precision", "recall", "f1_score",
               "fbeta_score", "r2_score", "iou", "mean_iou", "cosine_similarity",
               "true_positives", "true_negatives"}
_DOWN_METRICS = {"loss", "mean_squared_error", "mse", "mean_absolute_error", "mae",
                 "mean_absolute_percentage_error", "mape", "mean_squared_logarithmic_error",
                 "msle", "root_mean_squared_error", "rmse", "binary_crossentropy",
                 "categorical_crossentropy", "sparse_categorical_crossentropy", "hinge",
                 "squared_hinge", "categorical_hinge", "kl_divergence", "kld", "poisson",
                 "log_cosh_error", "logcosh", "huber", "false_positives", "false_negatives"}


def _print(message: str) -> None:
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def _as_float(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def _floats(logs: Mapping | None) -> dict:
    """Logs as Keras hands them to callbacks: sorted by name, numbers as Python floats."""
    return {key: _as_float(value) for key, value in sorted((logs or {}).items())}


def _checked(callback) -> "Callback":
    if not isinstance(callback, Callback):
        raise TypeError(f"Callbacks must be `keras.callbacks.Callback` instances; received "
                        f"{callback!r} of type {type(callback).__name__}")
    return callback


class Callback:
    """Base class of callbacks: override the `on_*` hooks of interest. `self.model` is the model
    being trained, `self.params` the training parameters (`verbose`, `epochs`, `steps`)."""

    def __init__(self):
        self.params: dict = {}
        self._model = None

    def set_params(self, params: dict) -> None:
        """Receive the training parameters."""
        self.params = params

    def set_model(self, model) -> None:
        """Receive the model the callbacks are used with."""
        self._model = model

    @property
    def model(self):
        return self._model

    def on_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        """Alias of `on_train_batch_begin`, kept for Keras 2 callbacks."""

    def on_batch_end(self, batch: int, logs: dict | None = None) -> None:
        """Alias of `on_train_batch_end`, kept for Keras 2 callbacks."""

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        """Start of a training epoch (0-based)."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """End of a training epoch: `logs` has its metrics and the `val_` ones."""

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        """Start of a training batch; calls `on_batch_begin`."""
        self.on_batch_begin(batch, logs=logs)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        """End of a training batch: `logs` has the metrics so far; calls `on_batch_end`."""
        self.on_batch_end(batch, logs=logs)

    def on_test_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        """Start of an evaluation (or validation) batch."""

    def on_test_batch_end(self, batch: int, logs: dict | None = None) -> None:
        """End of an evaluation (or validation) batch."""

    def on_predict_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        """Start of a prediction batch."""

    def on_predict_batch_end(self, batch: int, logs: dict | None = None) -> None:
        """End of a prediction batch."""

    def on_train_begin(self, logs: dict | None = None) -> None:
        """Start of `fit`."""

    def on_train_end(self, logs: dict | None = None) -> None:
        """End of `fit`: `logs` are the last epoch's."""

    def on_test_begin(self, logs: dict | None = None) -> None:
        """Start of `evaluate` or of a validation pass."""

    def on_test_end(self, logs: dict | None = None) -> None:
        """End of `evaluate` or of a validation pass."""

    def on_predict_begin(self, logs: dict | None = None) -> None:
        """Start of `predict`."""

    def on_predict_end(self, logs: dict | None = None) -> None:
        """End of `predict`."""


class CallbackList(Callback):
    """All callbacks of one `fit`/`evaluate`/`predict` behind one set of hooks. Adds a `History`
    (`add_history`) and a `ProgbarLogger` (`add_progbar`) when none is given; the progress bar
    comes last so that it shows what the other callbacks add to the logs. Batch and epoch logs
    are passed on sorted by name with numbers as Python floats, one dict shared by all."""

    def __init__(self, callbacks: Iterable[Callback] | None = None, add_history: bool = False,
                 add_progbar: bool = False, model=None, **params):
        super().__init__()
        self.callbacks = [_checked(c) for c in callbacks or []]
        self._history = next((c for c in self.callbacks if isinstance(c, History)), None)
        if self._history is None and add_history:
            self._history = History()
            self.callbacks.append(self._history)
        if add_progbar and not any(isinstance(c, ProgbarLogger) for c in self.callbacks):
            self.callbacks.append(ProgbarLogger())
        self.set_model(model)
        self.set_params(params)

    def set_params(self, params: dict) -> None:
        self.params = params
        if params:
            for callback in self.callbacks:
                callback.set_params(params)

    def set_model(self, model) -> None:
        if model is None:
            return
        super().set_model(model)
        if self._history is not None:
            model.history = self._history
        for callback in self.callbacks:
            callback.set_model(model)

    def append(self, callback: Callback) -> None:
        """Add a callback at the end, given the list's model and parameters."""
        self.callbacks.append(_checked(callback))
        if self.params:
            callback.set_params(self.params)
        if self.model is not None:
            callback.set_model(self.model)

    def _call_indexed(self, hook: str, index: int, logs: Mapping | None) -> None:
        logs = _floats(logs)
        for callback in self.callbacks:
            getattr(callback, hook)(index, logs)

    def _call_plain(self, hook: str, logs: Mapping | None) -> None:
        logs = dict(logs or {})
        for callback in self.callbacks:
            getattr(callback, hook)(logs)


def _dispatcher(hook: str, indexed: bool) -> Callable:
    if indexed:
        def dispatch(self, index, logs=None):
            self._call_indexed(hook, index, logs)
    else:
        def dispatch(self, logs=None):
            self._call_plain(hook, logs)
    dispatch.__name__ = hook
    dispatch.__doc__ = f"Call `{hook}` of every callback."
    return dispatch


for _hook in _INDEXED_HOOKS:
    setattr(CallbackList, _hook, _dispatcher(_hook, indexed=True))
for _hook in _PLAIN_HOOKS:
    setattr(CallbackList, _hook, _dispatcher(_hook, indexed=False))


class History(Callback):
    """Records each epoch's logs: `history.history[name]` is the list of values, `history.epoch`
    the epoch numbers. `fit` returns it and sets it as `model.history`."""

    def __init__(self):
        super().__init__()
        self.history: dict[str, list] = {}
        self.epoch: list[int] = []

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)
        if self.model is not None:
            self.model.history = self


class ProgbarLogger(Callback):
    """Prints Keras's progress bar to stdout: 'Epoch 1/10' (when there is more than one epoch),
    then for verbose=1 the live bar and for verbose=2 one line per epoch. Validation inside
    `fit` is silent; `evaluate` and `predict` get a bar of their own."""

    def __init__(self):
        super().__init__()
        self.seen = 0
        self.progbar: Progbar | None = None
        self.target: int | None = None
        self.verbose = 1
        self.epochs = 1
        self._called_in_fit = False

    def set_params(self, params):
        verbose = params.get("verbose", 1)
        self.verbose = 1 if verbose == "auto" else verbose
        self.epochs = params.get("epochs", 1)
        self.target = params.get("steps")

    def on_train_begin(self, logs=None):
        self._called_in_fit = True

    def on_test_begin(self, logs=None):
        if not self._called_in_fit:
            self._reset_progbar()

    def on_predict_begin(self, logs=None):
        self._reset_progbar()

    def on_epoch_begin(self, epoch, logs=None):
        self._reset_progbar()
        if self.verbose and self.epochs > 1:
            _print(f"Epoch {epoch + 1}/{self.epochs}")

    def on_train_batch_end(self, batch, logs=None):
        self._update_progbar(batch, logs)

    def on_test_batch_end(self, batch, logs=None):
        if not self._called_in_fit:
            self._update_progbar(batch, logs)

    def on_predict_batch_end(self, batch, logs=None):
        self._update_progbar(batch, None)

    def on_epoch_end(self, epoch, logs=None):
        self._finalize_progbar(logs)

    def on_test_end(self, logs=None):
        if not self._called_in_fit:
            self._finalize_progbar(logs)

    def on_predict_end(self, logs=None):
        self._finalize_progbar(logs)

    def _reset_progbar(self) -> None:
        self.seen = 0
        self.progbar = Progbar(target=self.target, verbose=self.verbose, unit_name="step")

    def _update_progbar(self, batch: int, logs) -> None:
        if self.progbar is None:
            self._reset_progbar()
        self.seen = batch + 1
        if self.verbose == 1:
            self.progbar.update(self.seen, list((logs or {}).items()), finalize=False)

    def _finalize_progbar(self, logs) -> None:
        if self.progbar is None:
            self._reset_progbar()
        if self.target is None:
            self.target = self.progbar.target = self.seen
        self.progbar.update(self.target, list((logs or {}).items()), finalize=True)


class _Monitor(Callback):
    """What EarlyStopping and ModelCheckpoint share: a monitored log value, and whether it
    should go down or up ('min', 'max', or 'auto' from the metric's name)."""

    def __init__(self, monitor: str, mode: str, initial_best: float | None, min_delta: float):
        super().__init__()
        if mode not in ("auto", "min", "max"):
            warnings.warn(f"{type(self).__name__} mode '{mode}' is unknown, fallback to auto "
                          "mode.", stacklevel=3)
            mode = "auto"
        self.monitor = monitor
        self.mode = mode
        self.best = initial_best
        self.min_delta = abs(min_delta)
        self.monitor_op: Callable | None = None

    def _set_monitor_op(self) -> None:
        if self.mode == "auto":
            decreasing = self._decreasing(self.monitor.removeprefix("val_"))
            if decreasing is None:
                raise ValueError(
                    f"{type(self).__name__} callback received monitor={self.monitor}, but Keras "
                    "isn't able to automatically determine whether that metric should be "
                    "maximized or minimized. Pass `mode='max'` in order to monitor based on the "
                    "highest metric value, or pass `mode='min'` in order to use the lowest value.")
        else:
            decreasing = self.mode == "min"
        self.monitor_op = operator.lt if decreasing else operator.gt
        if decreasing:
            self.min_delta = -abs(self.min_delta)
        if self.best is None:
            self.best = math.inf if decreasing else -math.inf

    def _decreasing(self, name: str) -> bool | None:
        for metric in _model_metrics(self.model):
            if getattr(metric, "name", None) == name and hasattr(metric, "_direction"):
                return metric._direction != "up"
        if name in _DOWN_METRICS:
            return True
        if name in _UP_METRICS:
            return False
        return None

    def _is_improvement(self, value: float, reference: float | None) -> bool:
        return reference is None or bool(self.monitor_op(value - self.min_delta, reference))


def _model_metrics(model) -> list:
    """The model's metric objects, looking one level into metric containers."""
    found = []
    for metric in getattr(model, "metrics", None) or []:
        found.append(metric)
        found.extend(getattr(metric, "metrics", None) or [])
    return found


class EarlyStopping(_Monitor):
    """Stop training when `monitor` has not improved by more than `min_delta` for `patience`
    epochs (counted from `start_from_epoch`). With `baseline`, the wait restarts only on epochs
    that beat it too; `restore_best_weights` puts back the best epoch's weights at the end."""

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0, patience: int = 0,
                 verbose: int = 0, mode: str = "auto", baseline: float | None = None,
                 restore_best_weights: bool = False, start_from_epoch: int = 0):
        super().__init__(monitor, mode, None, min_delta)
        self.patience = patience
        self.verbose = verbose
        self.baseline = baseline
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = start_from_epoch
        self.wait = 0
        self.stopped_epoch = 0
        self.best_epoch = 0
        self.best_weights = None

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.stopped_epoch = 0
        self.best_epoch = 0
        self.best_weights = None
        if self.monitor_op is not None:
            self.best = math.inf if self.monitor_op is operator.lt else -math.inf

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor_op is None:
            self._set_monitor_op()
        current = (logs or {}).get(self.monitor)
        if current is None:
            warnings.warn(f"Early stopping conditioned on metric `{self.monitor}` which is not "
                          f"available. Available metrics are: {','.join(logs or {})}",
                          stacklevel=2)
            return
        if epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            _print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                _print(f"Restoring model weights from the end of the best epoch: "
                       f"{self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


class ReduceLROnPlateau(Callback):
    """Multiply the optimizer's learning rate by `factor` (not below `min_lr`) when `monitor` has
    not improved by more than `min_delta` for `patience` epochs, then wait `cooldown` epochs.
    'auto' mode maximizes names containing 'acc' and minimizes the rest, as Keras does."""

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 verbose: int = 0, mode: str = "auto", min_delta: float = 1e-4,
                 cooldown: int = 0, min_lr: float = 0.0, **kwargs):
        super().__init__()
        if factor >= 1.0:
            raise ValueError(f"ReduceLROnPlateau does not support a factor >= 1.0. "
                             f"Received factor={factor}")
        if kwargs:
            raise TypeError(f"ReduceLROnPlateau got unexpected arguments: {sorted(kwargs)}")
        if mode not in ("auto", "min", "max"):
            warnings.warn(f"Learning rate reduction mode {mode} is unknown, fallback to auto "
                          "mode.", stacklevel=2)
            mode = "auto"
        self.monitor = monitor
        self.factor = factor
        self.min_lr = min_lr
        self.min_delta = min_delta
        self.patience = patience
        self.verbose = verbose
        self.cooldown = cooldown
        self.mode = mode
        self._reset()

    def _reset(self) -> None:
        if self.mode == "min" or (self.mode == "auto" and "acc" not in self.monitor):
            self.monitor_op = lambda a, b: a < b - self.min_delta
            self.best = math.inf
        else:
            self.monitor_op = lambda a, b: a > b + self.min_delta
            self.best = -math.inf
        self.cooldown_counter = 0
        self.wait = 0

    def in_cooldown(self) -> bool:
        """Whether the cooldown after a reduction is still running."""
        return self.cooldown_counter > 0

    def on_train_begin(self, logs=None):
        self._reset()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        logs["learning_rate"] = float(self.model.optimizer.learning_rate)
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(f"Learning rate reduction is conditioned on metric `{self.monitor}` "
                          f"which is not available. Available metrics are: {','.join(logs)}.",
                          stacklevel=2)
            return
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self.monitor_op(current, self.best):
            self.best = current
            self.wait = 0
            return
        if self.in_cooldown():
            return
        self.wait += 1
        old_lr = float(self.model.optimizer.learning_rate)
        if self.wait >= self.patience and old_lr > np.float32(self.min_lr):
            new_lr = max(old_lr * self.factor, self.min_lr)
            self.model.optimizer.learning_rate = new_lr
            if self.verbose > 0:
                _print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new_lr}.")
            self.cooldown_counter = self.cooldown
            self.wait = 0


class LearningRateScheduler(Callback):
    """At the start of every epoch, set the learning rate to `schedule(epoch, lr)` (or
    `schedule(epoch)` for one-argument schedules); the epoch's logs get 'learning_rate'."""

    def __init__(self, schedule: Callable, verbose: int = 0):
        super().__init__()
        self.schedule = schedule
        self.verbose = verbose

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = self.model.optimizer
        if not hasattr(optimizer, "learning_rate"):
            raise ValueError('Optimizer must have a "learning_rate" attribute.')
        try:
            learning_rate = self.schedule(epoch, float(optimizer.learning_rate))
        except TypeError:  # Keras 2 schedules take the epoch only
            learning_rate = self.schedule(epoch)
        if not isinstance(learning_rate, (float, np.floating)):
            raise ValueError(f"The output of the `schedule` function should be a float. "
                             f"Got: {learning_rate}")
        optimizer.learning_rate = float(learning_rate)
        if self.verbose > 0:
            _print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to "
                   f"{learning_rate}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.learning_rate)


def _csv_value(value: Any) -> Any:
    if isinstance(value, str):
        return value
    if isinstance(value, collections.abc.Iterable) and not (
            isinstance(value, np.ndarray) and value.ndim == 0):
        return f'"[{", ".join(map(str, value))}]"'
    return value


class CSVLogger(Callback):
    """Write each epoch's logs as a CSV row ('epoch' then the log names, sorted) to `filename`;
    `append=True` continues an existing file without repeating its header."""

    def __init__(self, filename: str | os.PathLike, separator: str = ",", append: bool = False):
        super().__init__()
        self.sep = separator
        self.filename = os.fspath(filename)
        self.append = append
        self.writer = None
        self.keys: list[str] | None = None
        self.append_header = True
        self.csv_file = None

    def on_train_begin(self, logs=None):
        if self.append and os.path.exists(self.filename):
            with open(self.filename) as f:
                self.append_header = not bool(len(f.readline()))
        if self.csv_file is not None and not self.csv_file.closed:
            self.csv_file.close()
        self.csv_file = open(self.filename, "a" if self.append else "w", newline="")
        self.writer = None
        self.keys = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
            # Validation names the model will log later get a column from the start.
            for name in getattr(self.model, "metrics_names", None) or []:
                if name.startswith("val_") and name not in self.keys:
                    self.keys.append(name)
        if self.writer is None:
            class Dialect(csv.excel):
                delimiter = self.sep
            self.writer = csv.DictWriter(self.csv_file, fieldnames=["epoch"] + self.keys,
                                         dialect=Dialect)
            if self.append_header:
                self.writer.writeheader()
        row = {"epoch": epoch}
        row.update((key, _csv_value(logs.get(key, "NA"))) for key in self.keys)
        self.writer.writerow(row)
        self.csv_file.flush()

    def on_train_end(self, logs=None):
        if self.csv_file is not None and not self.csv_file.closed:
            self.csv_file.close()
        self.writer = None


class TerminateOnNaN(Callback):
    """Stop training at the first batch whose loss is NaN or infinite, with a message naming the
    batch; `raise_error=True` raises a RuntimeError instead (skipping `on_train_end`)."""

    def __init__(self, raise_error: bool = False):
        super().__init__()
        self.raise_error = raise_error

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or np.isfinite(loss):
            return
        if self.raise_error:
            raise RuntimeError(f"NaN or Inf loss encountered at batch {batch}. Loss value: "
                               f"{loss}. Terminating training immediately.")
        _print(f"Batch {batch}: Invalid loss, terminating training")
        self.model.stop_training = True


class LambdaCallback(Callback):
    """A callback made of functions: `on_epoch_begin(epoch, logs)`, `on_train_begin(logs)`,
    `on_train_batch_end(batch, logs)`, ..., any hook by keyword."""

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_begin=None,
                 on_train_end=None, on_train_batch_begin=None, on_train_batch_end=None,
                 **kwargs):
        super().__init__()
        hooks = dict(on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end,
                     on_train_begin=on_train_begin, on_train_end=on_train_end,
                     on_train_batch_begin=on_train_batch_begin,
                     on_train_batch_end=on_train_batch_end, **kwargs)
        for name, function in hooks.items():
            if name not in _INDEXED_HOOKS + _PLAIN_HOOKS:
                raise ValueError(f"LambdaCallback got an unknown hook {name!r}; hooks are "
                                 f"{', '.join(_INDEXED_HOOKS + _PLAIN_HOOKS)}")
            if function is not None:
                setattr(self, name, function)


class ModelCheckpoint(_Monitor):
    """Save the model (`model.save`) or its weights (`model.save_weights`) after every epoch or
    every `save_freq` batches, to `filepath` formatted with `epoch` (1-based), `batch` and the
    logs (e.g. 'w-{epoch:02d}-{val_loss:.2f}.keras'). With `save_best_only`, only when
    `monitor` improved on the best so far (or on `initial_value_threshold`)."""

    def __init__(self, filepath: str | os.PathLike, monitor: str = "val_loss", verbose: int = 0,
                 save_best_only: bool = False, save_weights_only: bool = False,
                 mode: str = "auto", save_freq="epoch",
                 initial_value_threshold: float | None = None):
        super().__init__(monitor, mode, initial_value_threshold, 0)
        self.verbose = verbose
        self.filepath = os.fspath(filepath)
        self.save_best_only = save_best_only
        self.save_weights_only = save_weights_only
        self.save_freq = save_freq
        self._batches_seen_since_last_saving = 0
        self._last_batch_seen = 0
        self._current_epoch = 0
        if save_freq != "epoch" and (isinstance(save_freq, bool) or not isinstance(save_freq, int)):
            raise ValueError(f"Unrecognized save_freq: {save_freq}. Expected save_freq are "
                             "'epoch' or integer values")
        if save_weights_only and not self.filepath.endswith(".weights.h5"):
            raise ValueError("When using `save_weights_only=True` in `ModelCheckpoint`, the "
                             "filepath provided must end in `.weights.h5` (Keras weights "
                             f"format). Received: filepath={self.filepath}")
        if not save_weights_only and not self.filepath.endswith((".keras", ".h5")):
            raise ValueError("The filepath provided must end in `.keras` (Keras model format). "
                             f"Received: filepath={self.filepath}")

    def on_epoch_begin(self, epoch, logs=None):
        self._current_epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        # A batch index that does not grow means a new epoch began.
        seen = batch + 1 if batch <= self._last_batch_seen else batch - self._last_batch_seen
        self._batches_seen_since_last_saving += seen
        self._last_batch_seen = batch
        if self._batches_seen_since_last_saving >= self.save_freq:
            self._batches_seen_since_last_saving = 0
            self._save_model(self._current_epoch, batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor_op is None:
            self._set_monitor_op()
        if self.save_freq == "epoch":
            self._save_model(epoch, None, logs)

    def _file_path(self, epoch: int, batch: int | None, logs: Mapping) -> str:
        fields = dict(logs)
        if batch is not None and "batch" not in logs:
            fields["batch"] = batch + 1
        try:
            return self.filepath.format(epoch=epoch + 1, **fields)
        except KeyError as e:
            raise KeyError(f'Failed to format this callback filepath: "{self.filepath}". '
                           f"Reason: {e}") from e

    def _should_save(self, epoch: int, logs: Mapping, filepath: str) -> bool:
        if not self.save_best_only:
            if self.verbose > 0:
                _print(f"\nEpoch {epoch + 1}: saving model to {filepath}")
            return True
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(f"Can save best model only with {self.monitor} available.",
                          stacklevel=3)
            return True
        best = "None" if self.best is None else f"{self.best:.5f}"
        if self._is_improvement(current, self.best):
            if self.verbose > 0:
                _print(f"\nEpoch {epoch + 1}: {self.monitor} improved from {best} to "
                       f"{current:.5f}, saving model to {filepath}")
            self.best = current
            return True
        if self.verbose > 0:
            _print(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from {best}")
        return False

    def _save_model(self, epoch: int, batch: int | None, logs) -> None:
        if self.monitor_op is None:
            self._set_monitor_op()
        logs = logs or {}
        filepath = self._file_path(epoch, batch, logs)
        if not self._should_save(epoch, logs, filepath):
            return
        if os.path.isdir(filepath):
            raise IOError("Please specify a non-directory filepath for ModelCheckpoint. "
                          f"Filepath used is an existing directory: {filepath}")
        dirname = os.path.dirname(filepath)
        if dirname:
            os.makedirs(dirname, exist_ok=True)
        if self.save_weights_only:
            self.model.save_weights(filepath, overwrite=True)
        else:
            self.model.save(filepath, overwrite=True)
        if self.verbose > 0:
            _print(f"\nEpoch {epoch + 1}: finished saving model to {filepath}")

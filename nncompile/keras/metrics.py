"""Metrics with Keras 3's names, classes and formulas, their per-batch statistics emitted as IR.

A metric is split the way a compiled training step needs it: `emit(b, y_true, y_pred,
sample_weight)` adds one batch's sufficient statistics to the step graph (a weighted sum and a
count, or confusion counts per threshold), `merge(stats)` adds a batch's statistics (arrays the
step returned) to the running state, and `result()` computes the value from that state in Python.
`update_state` on arrays does both, running the emitted graph on the reference interpreter.

A metric users write as in Keras (a `Metric` subclass whose `update_state` adds to variables made
with `add_variable` by `assign_add`, in keras.ops) fits the same split: `emit` is the trace of
`update_state`, its statistics the increments of the variables (keras/tracing.py), and `result`
runs in Python on the variables. A plain function of `(y_true, y_pred)` is averaged like a loss.

>>> import numpy as np
>>> from nncompile.keras import metrics
>>> m = metrics.get("accuracy", loss="sparse_categorical_crossentropy")
>>> m.update_state(np.array([1, 0]), np.array([[0.2, 0.8], [0.3, 0.7]]))
>>> m.name, m.result()
('accuracy', 0.5)
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Sequence

import numpy as np

from nncompile.ir import Builder, DType, Value
from nncompile.keras import backend, initializers, losses, tracing
from nncompile.keras.losses import (all_axes, as_array, binary_crossentropy, binary_focal_crossentropy,
                                    cast_to, categorical_crossentropy, categorical_focal_crossentropy,
                                    categorical_hinge, class_mask, clip, const,
                                    evaluate, expand_last, hinge, huber, ir_function, kl_divergence, log_cosh,
                                    mean_absolute_error, mean_absolute_percentage_error, mean_squared_error,
                                    mean_squared_logarithmic_error, poisson,
                                    sparse_categorical_crossentropy, squared_hinge, squeeze_last,
                                    squeeze_or_expand_to_same_rank)
from nncompile.keras.serialization import Catalog, KerasObject
from nncompile.keras.ops.sorting import beaten_by_fewer_than

__all__ = ["binary_crossentropy", "binary_focal_crossentropy", "categorical_crossentropy",
           "categorical_focal_crossentropy", "categorical_hinge", "hinge", "huber",
           "kl_divergence", "log_cosh", "mean_absolute_error", "mean_absolute_percentage_error",
           "mean_squared_error", "mean_squared_logarithmic_error", "poisson",
           "sparse_categorical_crossentropy", "squared_hinge"]   # extended below with this module's own

NEG_INF = -1e10   # Keras's stand-in for predictions outside the top k


# --- per-sample metric functions --------------------------------------------------------------

def _float32(b: Builder, x: Value) -> Value:
    return cast_to(b, x, DType.f32)


@ir_function
def accuracy(b: Builder, y_true: Value, y_pred: Value) -> Value:
    """1.0 where y_pred equals y_true exactly."""
    y_true, y_pred = squeeze_or_expand_to_same_rank(b, y_true, cast_to(b, y_pred, y_true.type.dtype))
    return _float32(b, b.equal(y_true, y_pred))


@ir_function
def binary_accuracy(b: Builder, y_true: Value, y_pred: Value, threshold: float = 0.5) -> Value:
    """1.0 where (y_pred > threshold) equals y_true."""
    y_true, y_pred = squeeze_or_expand_to_same_rank(b, y_true, y_pred)
    predicted = b.cast(b.greater(y_pred, const(b, threshold, y_pred)), dtype=y_true.type.dtype)
    return _float32(b, b.equal(y_true, predicted))


@ir_function
def categorical_accuracy(b: Builder, y_true: Value, y_pred: Value) -> Value:
    """1.0 where argmax(y_pred) equals argmax(y_true) (one-hot targets)."""
    return _float32(b, b.equal(b.argmax(y_true, axis=-1), b.argmax(y_pred, axis=-1)))


def _class_indices(b: Builder, y_true: Value, y_pred: Value) -> Value:
    """Integer labels of y_pred's shape minus the class axis (a trailing 1 squeezed)."""
    if y_true.type.rank == y_pred.type.rank and y_true.type.shape[-1] == 1:
        y_true = squeeze_last(b, y_true)
    return y_true if y_true.type.dtype.is_int else b.cast(y_true, dtype=DType.i64)


@ir_function
def sparse_categorical_accuracy(b: Builder, y_true: Value, y_pred: Value) -> Value:
    """1.0 where argmax(y_pred) equals the integer label."""
    labels = _class_indices(b, y_true, y_pred)
    return _float32(b, b.equal(cast_to(b, labels, DType.i64), b.argmax(y_pred, axis=-1)))


def _in_top_k(b: Builder, target: Value, y_pred: Value, k: int) -> Value:
    """1.0 where fewer than k scores beat the target's (`keras.ops.in_top_k`'s rule)."""
    return _float32(b, beaten_by_fewer_than(b, target, y_pred, k))


@ir_function
def top_k_categorical_accuracy(b: Builder, y_true: Value, y_pred: Value, k: int = 5) -> Value:
    """1.0 where the class of argmax(y_true) is among the k highest predictions."""
    target = class_mask(b, b.argmax(y_true, axis=-1), _num_classes(y_pred))
    return _in_top_k(b, target, y_pred, k)


@ir_function
def sparse_top_k_categorical_accuracy(b: Builder, y_true: Value, y_pred: Value, k: int = 5) -> Value:
    """1.0 where the integer label is among the k highest predictions."""
    target = class_mask(b, _class_indices(b, y_true, y_pred), _num_classes(y_pred))
    return _in_top_k(b, target, y_pred, k)


@ir_function
def cosine_similarity(b: Builder, y_true: Value, y_pred: Value, axis: int = -1) -> Value:
    """sum(l2_normalize(y_true) * l2_normalize(y_pred), axis): the loss without its minus sign."""
    return b.neg(losses.cosine_similarity(b, y_true, y_pred, axis=axis))


def _num_classes(y_pred: Value) -> int:
    classes = y_pred.type.shape[-1]
    if isinstance(classes, str):
        raise ValueError(f"top-k accuracy needs a known number of classes; y_pred has type {y_pred.type}")
    return classes


_METRIC_FUNCTIONS = [accuracy, binary_accuracy, categorical_accuracy, sparse_categorical_accuracy,
                     top_k_categorical_accuracy, sparse_top_k_categorical_accuracy]
__all__ += [f.__name__ for f in _METRIC_FUNCTIONS]


# --- base classes -----------------------------------------------------------------------------

class Metric(KerasObject):
    """Base class: subclasses give `state_shapes()`, `emit(...) -> list[Value]` (one batch's
    statistics, one per state array) and `result()` (from `self.state`); or, as in Keras, make
    their state with `add_variable` and define `update_state` (traced) and `result`."""

    def __init__(self, name: str | None = None, dtype=None):
        self.name = name or backend.to_snake_case(type(self).__name__)
        self.dtype = np.dtype(dtype or backend.floatx()).name
        self.variables: list = []
        Metric.reset_state(self)   # a subclass's own reset_state may need what it makes later

    def add_variable(self, shape=(), initializer="zeros", dtype=None, aggregation="sum",
                     name: str | None = None):
        """A state variable (Keras 3's `Metric.add_variable`); `update_state` adds to it with
        `assign_add`, the only update that sums over batches."""
        from nncompile.keras.layers.base import Variable

        if aggregation != "sum":
            raise ValueError(f"Metric '{self.name}': add_variable(aggregation={aggregation!r}) is "
                             f"not supported; the compiled step sums a variable's increments")
        dtype = dtype or self.dtype
        name = name or backend.numbered("variable", len(self.variables))
        value = np.asarray(initializers.get(initializer)(tuple(shape), dtype), dtype)
        var = Variable(value, name, f"{self.name}/{name}", trainable=False)
        self.variables.append(var)
        self.state.append(var.value)
        return var

    def state_shapes(self) -> list[tuple[int, ...]]:
        return [var.shape for var in self.variables]

    def emit(self, b: Builder, y_true: Value, y_pred: Value,
             sample_weight: Value | None = None) -> list[Value]:
        return tracing.trace_updates(self, b, y_true, y_pred, sample_weight)

    def result(self):
        raise NotImplementedError(f"{type(self).__name__}.result must compute the metric from its state")

    def reset_state(self) -> None:
        """Zero the running state: the variables, or float64 arrays, one per statistic."""
        for var in self.variables:
            var.assign(np.zeros(var.shape, var.dtype))
        self.state = [var.value for var in self.variables] or [
            np.zeros(shape, np.float64) for shape in self.state_shapes()]

    def merge(self, stats: Sequence[np.ndarray]) -> None:
        """Add one batch's statistics (as `emit` computes them) to the running state."""
        if len(stats) != len(self.state):
            raise ValueError(f"metric {self.name!r}: expected {len(self.state)} statistics "
                             f"{[s.shape for s in self.state]}, received {len(stats)}")
        for total, batch in zip(self.state, stats):
            batch = np.asarray(batch, np.float64)
            if batch.shape != total.shape:
                raise ValueError(f"metric {self.name!r}: a statistic has shape {batch.shape}; "
                                 f"expected {total.shape}")
            total += batch

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        """Accumulate one batch of arrays."""
        weights = None if sample_weight is None else as_array(sample_weight, integer_ok=False)
        self.merge(evaluate(self.emit, as_array(y_true), as_array(y_pred, integer_ok=False), weights))

    def __call__(self, *args, **kwargs):
        self.update_state(*args, **kwargs)
        return self.result()

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype}


def emit_mean(b: Builder, values: Value, sample_weight: Value | None = None) -> list[Value]:
    """[weighted sum, weight] of one batch, Keras's `Mean.update_state`: values are averaged down
    to the weights' rank, then to one per sample; without weights each sample counts 1."""
    values = _float32(b, values)
    if sample_weight is not None:
        values, sample_weight = squeeze_or_expand_to_same_rank(b, values, _float32(b, sample_weight))
        weight_rank = sample_weight.type.rank
        if values.type.rank > weight_rank:
            values = b.reduce_mean(values, axes=list(range(weight_rank, values.type.rank)))
        if sample_weight.type.shape != values.type.shape:
            sample_weight = b.broadcast(sample_weight, shape=list(values.type.shape))
        values = b.mul(values, sample_weight)
        if weight_rank > 1:
            sample_weight = b.reduce_mean(sample_weight, axes=list(range(1, weight_rank)))
    if values.type.rank > 1:
        values = b.reduce_mean(values, axes=list(range(1, values.type.rank)))
    total = b.reduce_sum(values, axes=all_axes(values))
    if sample_weight is not None:
        return [total, b.reduce_sum(sample_weight, axes=all_axes(sample_weight))]
    if values.type.rank == 0:
        return [total, const(b, 1.0, total)]
    ones = b.broadcast(const(b, 1.0, values), shape=list(values.type.shape))
    return [total, b.reduce_sum(ones, axes=[0])]


class Mean(Metric):
    """The (weighted) mean of the values seen; the trainer's running loss."""

    def state_shapes(self) -> list[tuple[int, ...]]:
        return [(), ()]

    def emit(self, b: Builder, values: Value, sample_weight: Value | None = None) -> list[Value]:
        return emit_mean(b, values, sample_weight)

    def update_state(self, values, sample_weight=None) -> None:
        """Accumulate `values`; a scalar with a scalar weight (the batch loss and batch size) is
        added directly."""
        if np.ndim(values) == 0 and (sample_weight is None or np.ndim(sample_weight) == 0):
            weight = 1.0 if sample_weight is None else float(sample_weight)
            self.merge([np.asarray(float(values) * weight), np.asarray(weight)])
            return
        weights = None if sample_weight is None else as_array(sample_weight, integer_ok=False)
        self.merge(evaluate(self.emit, as_array(values, integer_ok=False), weights))

    def result(self) -> float:
        total, count = self.state
        return float(total / count) if count else 0.0


class MeanMetricWrapper(Mean):
    """The mean of a per-sample function of (y_true, y_pred), such as an accuracy or a loss."""

    def __init__(self, fn: Callable, name: str | None = None, dtype=None, **kwargs):
        name = name or getattr(fn, "__name__", type(fn).__name__)
        self._fn = fn
        self._emit = getattr(fn, "emit", None) or tracing.emitter(fn, f"Metric function '{name}'")
        self._fn_kwargs = kwargs
        super().__init__(name=name, dtype=dtype)

    def emit(self, b: Builder, y_true: Value, y_pred: Value,
             sample_weight: Value | None = None) -> list[Value]:
        y_true, y_pred = squeeze_or_expand_to_same_rank(b, y_true, y_pred)
        return emit_mean(b, self._emit(b, y_true, y_pred, **self._fn_kwargs), sample_weight)

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        Metric.update_state(self, y_true, y_pred, sample_weight)

    def get_config(self) -> dict[str, Any]:
        fn = {"fn": self._fn.__name__} if type(self) is MeanMetricWrapper else {}
        return {**super().get_config(), **fn, **self._fn_kwargs}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if "fn" in config:
            config["fn"] = _FUNCTIONS_BY_NAME[config["fn"]]
        return cls(**config)


def _wrapper_class(class_name: str, fn: Callable, default_name: str, **options) -> type:
    """A MeanMetricWrapper subclass with Keras's constructor (name, dtype, then `options`)."""
    def __init__(self, name: str = default_name, dtype=None, **kwargs):
        unknown = sorted(set(kwargs) - set(options))
        if unknown:
            raise TypeError(f"{class_name}() got an unexpected keyword argument {unknown[0]!r}")
        MeanMetricWrapper.__init__(self, fn, name=name, dtype=dtype, **{**options, **kwargs})

    doc = f"Keras's `{class_name}`: the mean of `{fn.__name__}`, {fn.__doc__}"
    return type(class_name, (MeanMetricWrapper,), {"__init__": __init__, "__doc__": doc,
                                                   "__module__": __name__})


Accuracy = _wrapper_class("Accuracy", accuracy, "accuracy")
BinaryAccuracy = _wrapper_class("BinaryAccuracy", binary_accuracy, "binary_accuracy", threshold=0.5)
CategoricalAccuracy = _wrapper_class("CategoricalAccuracy", categorical_accuracy, "categorical_accuracy")
SparseCategoricalAccuracy = _wrapper_class("SparseCategoricalAccuracy", sparse_categorical_accuracy,
                                           "sparse_categorical_accuracy")
TopKCategoricalAccuracy = _wrapper_class("TopKCategoricalAccuracy", top_k_categorical_accuracy,
                                         "top_k_categorical_accuracy", k=5)
SparseTopKCategoricalAccuracy = _wrapper_class("SparseTopKCategoricalAccuracy",
                                               sparse_top_k_categorical_accuracy,
                                               "sparse_top_k_categorical_accuracy", k=5)
MeanSquaredError = _wrapper_class("MeanSquaredError", mean_squared_error, "mean_squared_error")
MeanAbsoluteError = _wrapper_class("MeanAbsoluteError", mean_absolute_error, "mean_absolute_error")
MeanAbsolutePercentageError = _wrapper_class("MeanAbsolutePercentageError", mean_absolute_percentage_error,
                                             "mean_absolute_percentage_error")
MeanSquaredLogarithmicError = _wrapper_class("MeanSquaredLogarithmicError", mean_squared_logarithmic_error,
                                             "mean_squared_logarithmic_error")
CosineSimilarity = _wrapper_class("CosineSimilarity", cosine_similarity, "cosine_similarity", axis=-1)
LogCoshError = _wrapper_class("LogCoshError", log_cosh, "logcosh")
Hinge = _wrapper_class("Hinge", hinge, "hinge")
SquaredHinge = _wrapper_class("SquaredHinge", squared_hinge, "squared_hinge")
CategoricalHinge = _wrapper_class("CategoricalHinge", categorical_hinge, "categorical_hinge")
KLDivergence = _wrapper_class("KLDivergence", kl_divergence, "kl_divergence")
Poisson = _wrapper_class("Poisson", poisson, "poisson")
BinaryCrossentropy = _wrapper_class("BinaryCrossentropy", binary_crossentropy, "binary_crossentropy",
                                    from_logits=False, label_smoothing=0.0)
CategoricalCrossentropy = _wrapper_class("CategoricalCrossentropy", categorical_crossentropy,
                                         "categorical_crossentropy", from_logits=False,
                                         label_smoothing=0.0, axis=-1)
SparseCategoricalCrossentropy = _wrapper_class("SparseCategoricalCrossentropy",
                                               sparse_categorical_crossentropy,
                                               "sparse_categorical_crossentropy", from_logits=False, axis=-1)


class RootMeanSquaredError(Mean):
    """sqrt of the mean of (y_pred - y_true)^2 over every element seen."""

    def __init__(self, name: str = "root_mean_squared_error", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def emit(self, b: Builder, y_true: Value, y_pred: Value,
             sample_weight: Value | None = None) -> list[Value]:
        y_pred = _float32(b, y_pred)
        y_true, y_pred = squeeze_or_expand_to_same_rank(b, _float32(b, y_true), y_pred)
        return emit_mean(b, b.square(b.sub(y_pred, y_true)), sample_weight)

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        Metric.update_state(self, y_true, y_pred, sample_weight)

    def result(self) -> float:
        return float(np.sqrt(super().result()))


# --- confusion-matrix metrics -----------------------------------------------------------------

def _filter_top_k(b: Builder, x: Value, k: int) -> Value:
    """x where it is among the k largest of its row (earlier index first among ties, as top_k
    orders them), NEG_INF elsewhere."""
    classes = _num_classes(x)
    column = expand_last(b, x)                                          # [..., i, 1]
    row = b.reshape(x, shape=[*x.type.shape[:-1], 1, classes])          # [..., 1, j]
    earlier = b.constant(np.tril(np.ones((classes, classes), bool), -1))  # [i, j]: j < i
    ahead = b.logical_or(b.greater(row, column), b.logical_and(b.equal(row, column), earlier))
    rank = b.reduce_sum(_float32(b, ahead), axes=[-1])
    return b.select(b.less(rank, const(b, float(k), rank)), x, const(b, NEG_INF, x))


def confusion_counts(b: Builder, y_true: Value, y_pred: Value, sample_weight: Value | None,
                     thresholds: Sequence[float], kinds: Sequence[str], evenly: bool = False,
                     top_k: int | None = None, class_id: int | None = None) -> list[Value]:
    """Weighted counts per threshold, one f32[len(thresholds)] per kind in `kinds` ("tp", "fp",
    "tn", "fn"), over every element of the batch: a prediction is positive above a threshold, a
    label is positive when non-zero. With `evenly` spaced thresholds Keras's bucket rule decides
    instead (predictions clipped to [0, 1], bucket ceil(p * (n - 1)) - 1)."""
    y_pred = _float32(b, y_pred)
    y_pred, y_true = squeeze_or_expand_to_same_rank(b, y_pred, _float32(b, y_true))
    if sample_weight is not None:
        column = expand_last(b, _float32(b, sample_weight))
        _, sample_weight = squeeze_or_expand_to_same_rank(b, y_true, column, expand_rank_1=False)
    if top_k is not None:
        y_pred = _filter_top_k(b, y_pred, top_k)
    if class_id is not None:
        end = class_id + 1
        y_true = b.slice(y_true, starts=[class_id], ends=[end], axes=[-1], steps=[1])
        y_pred = b.slice(y_pred, starts=[class_id], ends=[end], axes=[-1], steps=[1])
    count = len(thresholds)
    if evenly:
        bucket = b.sub(b.ceil(b.mul(clip(b, y_pred, 0.0, 1.0), const(b, count - 1.0, y_pred))),
                       const(b, 1.0, y_pred))
        if thresholds[0] < 0.0 or thresholds[-1] > 1.0:
            bucket = b.relu(bucket)
        above = b.greater_equal(expand_last(b, bucket), b.constant(np.arange(count, dtype=np.float32)))
    else:
        above = b.greater(expand_last(b, y_pred), b.constant(np.asarray(thresholds, np.float32)))
    above = _float32(b, above)
    positive = _float32(b, b.not_equal(y_true, const(b, 0.0, y_true)))
    negative = b.sub(const(b, 1.0, positive), positive)
    if sample_weight is not None:
        weights = sample_weight
        if weights.type.shape != y_pred.type.shape:
            weights = b.broadcast(weights, shape=list(y_pred.type.shape))
        positive, negative = b.mul(positive, weights), b.mul(negative, weights)
    sample_axes = all_axes(y_pred)

    def above_count(labels: Value) -> Value:
        return b.reduce_sum(b.mul(above, expand_last(b, labels)), axes=sample_axes)

    counts = {"tp": above_count(positive), "fp": above_count(negative)}
    counts["fn"] = b.sub(b.reduce_sum(positive, axes=sample_axes), counts["tp"])
    counts["tn"] = b.sub(b.reduce_sum(negative, axes=sample_axes), counts["fp"])
    return [counts[kind] for kind in kinds]


def _parse_thresholds(thresholds, default: float) -> list[float]:
    if thresholds is None:
        return [default]
    values = [float(t) for t in np.atleast_1d(thresholds)]
    if not values or any(not 0.0 <= t <= 1.0 for t in values):
        raise ValueError(f"Threshold values must be in [0, 1]. Received: {thresholds}")
    return values


def _evenly_distributed(thresholds: Sequence[float]) -> bool:
    """Keras's test: at least 3 thresholds at i / (n - 1)."""
    count = len(thresholds)
    return count >= 3 and np.allclose(thresholds, np.arange(count, dtype=np.float32) / (count - 1),
                                      atol=backend.epsilon())


def _divide_no_nan(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.divide(x, y, out=np.zeros_like(x), where=y != 0)


class _ThresholdMetric(Metric):
    """Precision or recall at each threshold, from weighted confusion counts."""

    kinds: tuple[str, str] = ("tp", "fp")

    def __init__(self, thresholds=None, top_k: int | None = None, class_id: int | None = None,
                 name: str | None = None, dtype=None):
        self.init_thresholds = thresholds
        self.top_k = top_k
        self.class_id = class_id
        self.thresholds = _parse_thresholds(thresholds, 0.5 if top_k is None else NEG_INF)
        super().__init__(name=name, dtype=dtype)

    def state_shapes(self) -> list[tuple[int, ...]]:
        return [(len(self.thresholds),)] * 2

    def emit(self, b: Builder, y_true: Value, y_pred: Value,
             sample_weight: Value | None = None) -> list[Value]:
        return confusion_counts(b, y_true, y_pred, sample_weight, self.thresholds, self.kinds,
                                _evenly_distributed(self.thresholds), self.top_k, self.class_id)

    def result(self):
        hits, misses = self.state
        value = _divide_no_nan(hits, hits + misses)
        return float(value[0]) if len(self.thresholds) == 1 else value

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "thresholds": self.init_thresholds, "top_k": self.top_k,
                "class_id": self.class_id}


class Precision(_ThresholdMetric):
    """tp / (tp + fp): how many predicted positives (above the threshold, default 0.5) are right."""

    kinds = ("tp", "fp")


class Recall(_ThresholdMetric):
    """tp / (tp + fn): how many positive labels are predicted (above the threshold, default 0.5)."""

    kinds = ("tp", "fn")


class AUC(Metric):
    """Area under the ROC (or PR) curve, from confusion counts at `num_thresholds` thresholds,
    summed as Keras does (trapezoids, or the interpolated PR of Davis & Goadrich)."""

    CURVES = ("ROC", "PR")
    SUMMATIONS = ("interpolation", "minoring", "majoring")

    def __init__(self, num_thresholds: int = 200, curve: str = "ROC", summation_method: str = "interpolation",
                 name: str | None = None, dtype=None, thresholds=None, multi_label: bool = False,
                 num_labels: int | None = None, label_weights=None, from_logits: bool = False):
        if multi_label or label_weights is not None:
            raise ValueError("AUC: multi_label=True and label_weights are not supported; labels are "
                             "flattened into one binary problem")
        self._init_from_thresholds = thresholds is not None
        if thresholds is not None:
            inner = sorted(_parse_thresholds(thresholds, 0.5))
            self.num_thresholds = len(inner) + 2
            self._evenly = _evenly_distributed([0.0, *inner, 1.0])
        else:
            if not isinstance(num_thresholds, (int, np.integer)) or num_thresholds <= 1:
                raise ValueError(f"Argument `num_thresholds` must be an integer > 1. Received: "
                                 f"num_thresholds={num_thresholds}")
            self.num_thresholds = int(num_thresholds)
            inner = [(i + 1) / (num_thresholds - 1) for i in range(num_thresholds - 2)]
            self._evenly = True
        self.thresholds = [-backend.epsilon(), *inner, 1.0 + backend.epsilon()]
        self.curve = _choice("curve", curve, self.CURVES)
        self.summation_method = _choice("summation_method", summation_method, self.SUMMATIONS)
        self.multi_label, self.num_labels, self.label_weights = multi_label, num_labels, label_weights
        self._from_logits = from_logits
        super().__init__(name=name, dtype=dtype)

    def state_shapes(self) -> list[tuple[int, ...]]:
        return [(self.num_thresholds,)] * 4

    def emit(self, b: Builder, y_true: Value, y_pred: Value,
             sample_weight: Value | None = None) -> list[Value]:
        if self._from_logits:
            y_pred = b.sigmoid(_float32(b, y_pred))
        return confusion_counts(b, y_true, y_pred, sample_weight, self.thresholds, ("tp", "fp", "tn", "fn"),
                                self._evenly)

    def result(self) -> float:
        tp, fp, tn, fn = self.state
        if self.curve == "PR" and self.summation_method == "interpolation":
            return _interpolated_pr_auc(tp, fp, fn)
        recall = _divide_no_nan(tp, tp + fn)
        if self.curve == "ROC":
            x, y = _divide_no_nan(fp, fp + tn), recall
        else:
            x, y = recall, _divide_no_nan(tp, tp + fp)
        heights = {"interpolation": (y[:-1] + y[1:]) / 2, "minoring": np.minimum(y[:-1], y[1:]),
                   "majoring": np.maximum(y[:-1], y[1:])}[self.summation_method]
        return float(np.sum((x[:-1] - x[1:]) * heights))

    def get_config(self) -> dict[str, Any]:
        config = {**super().get_config(), "num_thresholds": self.num_thresholds, "curve": self.curve,
                  "summation_method": self.summation_method, "multi_label": self.multi_label,
                  "num_labels": self.num_labels, "label_weights": self.label_weights,
                  "from_logits": self._from_logits}
        if self._init_from_thresholds:
            config["thresholds"] = self.thresholds[1:-1]
        return config


def _choice(what: str, value: str, choices: Sequence[str]) -> str:
    for choice in choices:
        if isinstance(value, str) and value.lower() == choice.lower():
            return choice
    raise ValueError(f"Invalid AUC {what} value {value!r}; expected one of {', '.join(choices)}")


def _interpolated_pr_auc(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> float:
    """Keras's PR-AUC with precision interpolated between thresholds (Davis & Goadrich 2006)."""
    dtp = tp[:-1] - tp[1:]
    p = tp + fp
    dp = p[:-1] - p[1:]
    slope = _divide_no_nan(dtp, np.maximum(dp, 0))
    intercept = tp[1:] - slope * p[1:]
    both_positive = (p[:-1] > 0) & (p[1:] > 0)
    ratio = np.where(both_positive, _divide_no_nan(p[:-1], np.maximum(p[1:], 0)), 1.0)
    increment = _divide_no_nan(slope * (dtp + intercept * np.log(ratio)), np.maximum(tp[1:] + fn[1:], 0))
    return float(np.sum(increment))


# --- identifiers ------------------------------------------------------------------------------

# Further families live in their own modules, as in Keras 3; they build on the classes above.
from nncompile.keras.confusion_metrics import (  # noqa: E402
    CONFUSION_METRICS, FalseNegatives, FalsePositives, PrecisionAtRecall, RecallAtPrecision,
    SensitivityAtSpecificity, SpecificityAtSensitivity, TrueNegatives, TruePositives)
from nncompile.keras.score_metrics import SCORE_METRICS, F1Score, FBetaScore, R2Score  # noqa: E402
from nncompile.keras.iou_metrics import (  # noqa: E402
    IOU_METRICS, BinaryIoU, IoU, MeanIoU, OneHotIoU, OneHotMeanIoU)
from nncompile.keras.correlation_metrics import (  # noqa: E402, F401
    CORRELATION_METRICS, ConcordanceCorrelation, PearsonCorrelation, Sum, concordance_correlation,
    pearson_correlation)

METRIC_CLASSES = (Mean, MeanMetricWrapper, Accuracy, BinaryAccuracy, CategoricalAccuracy,
                  SparseCategoricalAccuracy, TopKCategoricalAccuracy, SparseTopKCategoricalAccuracy,
                  MeanSquaredError, RootMeanSquaredError, MeanAbsoluteError, MeanAbsolutePercentageError,
                  MeanSquaredLogarithmicError, CosineSimilarity, LogCoshError, Hinge, SquaredHinge,
                  CategoricalHinge, KLDivergence, Poisson, BinaryCrossentropy, CategoricalCrossentropy,
                  SparseCategoricalCrossentropy, Precision, Recall, AUC, *CONFUSION_METRICS,
                  *SCORE_METRICS, *IOU_METRICS, *CORRELATION_METRICS)
_BY_NAME: dict[str, type] = {cls.__name__: cls for cls in METRIC_CLASSES}
_BY_NAME.update({backend.to_snake_case(cls.__name__): cls for cls in METRIC_CLASSES})
_BY_NAME.update({"bce": BinaryCrossentropy, "BCE": BinaryCrossentropy, "mse": MeanSquaredError,
                 "MSE": MeanSquaredError, "mae": MeanAbsoluteError, "MAE": MeanAbsoluteError,
                 "mape": MeanAbsolutePercentageError, "MAPE": MeanAbsolutePercentageError,
                 "msle": MeanSquaredLogarithmicError, "MSLE": MeanSquaredLogarithmicError,
                 "rmse": RootMeanSquaredError})
_CATALOG = Catalog("metric", Metric, "keras.metrics", _BY_NAME, "of IR (a Metric subclass)")
_CORRELATION_FUNCTIONS = [pearson_correlation, concordance_correlation]
__all__ += [f.__name__ for f in _CORRELATION_FUNCTIONS]
_FUNCTIONS_BY_NAME = {**losses.FUNCTIONS, **{f.__name__: f for f in _METRIC_FUNCTIONS + _CORRELATION_FUNCTIONS},
                      "cosine_similarity": cosine_similarity}
_CLASS_OF_FUNCTION = {cls()._fn: cls for cls in METRIC_CLASSES
                      if issubclass(cls, MeanMetricWrapper) and cls is not MeanMetricWrapper}


def accuracy_class(loss=None, output_shape: Sequence | None = None) -> type:
    """The accuracy 'accuracy'/'acc' means: binary for binary crossentropy or a one-unit output,
    sparse categorical for sparse categorical crossentropy, categorical otherwise; the exact-match
    `Accuracy` when neither the loss nor the output shape is known."""
    if loss is None and output_shape is None:
        return Accuracy
    loss = losses.get(loss) if loss is not None else None
    units = tuple(output_shape)[-1] if output_shape else None
    if isinstance(loss, losses.BinaryCrossentropy) or units == 1:
        return BinaryAccuracy
    if isinstance(loss, losses.SparseCategoricalCrossentropy):
        return SparseCategoricalAccuracy
    return CategoricalAccuracy


def get(identifier, loss=None, output_shape: Sequence | None = None) -> Metric | None:
    """The Metric for a name, a config dict, a Metric instance or class, or a metric or loss
    function of nncompile.keras; None gives None. A name also becomes the metric's name, as Keras
    3's compile does ("mse" logs as "mse"); 'accuracy'/'acc' resolve with `accuracy_class`."""
    if isinstance(identifier, str) and identifier.lower() in ("accuracy", "acc"):
        return accuracy_class(loss, output_shape)(name=identifier)
    if inspect.isfunction(identifier) and hasattr(identifier, "emit"):
        cls = _CLASS_OF_FUNCTION.get(identifier)
        return cls(name=identifier.__name__) if cls is not None else MeanMetricWrapper(identifier)
    metric = _CATALOG.get(identifier)
    if metric is not None and not isinstance(metric, Metric):
        return MeanMetricWrapper(metric)
    if isinstance(identifier, str):
        metric.name = identifier
    return metric


def serialize(metric: Metric) -> dict:
    """Keras 3's config dict of a Metric."""
    return _CATALOG.serialize(get(metric))


def deserialize(config) -> Metric | None:
    """The Metric of a config written by `serialize`."""
    return get(config)

"""Keras 3's F-scores (`FBetaScore`, `F1Score`) and `R2Score`: metrics whose state is sums per
class or output (sized by the first batch, as Keras builds them). Each batch adds its weighted
sums over the samples (emitted in the step graph); the result comes from them in Python.

>>> import numpy as np
>>> m = F1Score(average="macro", threshold=0.5)
>>> m.update_state(np.array([[1, 0], [0, 1]]), np.array([[0.9, 0.2], [0.6, 0.7]]))
>>> round(m.result(), 4)
0.8333
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from nncompile.ir import Builder, Value
from nncompile.keras import backend
from nncompile.keras.losses import const, expand_last, squeeze_or_expand_to_same_rank
from nncompile.keras.metrics import Metric, _divide_no_nan, _float32


class _PerColumn(Metric):
    """Sums per column of 2D (batch, columns) data; the column count comes from the first batch."""

    sums = 0   # statistics per column
    scalars = 0   # statistics of one number

    def __init__(self, name: str | None = None, dtype=None):
        self.columns: int | None = None
        super().__init__(name=name, dtype=dtype)

    def state_shapes(self) -> list[tuple[int, ...]]:
        if self.columns is None:
            return []
        return [(self.columns,)] * self.sums + [()] * self.scalars

    def _build(self, y_true: Value, y_pred: Value) -> None:
        if y_pred.type.rank != 2 or y_true.type.rank != 2:
            raise ValueError(f"{type(self).__name__} expects 2D inputs with shape (batch_size, "
                             f"output_dim). Received input shapes: y_pred.shape={y_pred.type.shape} "
                             f"and y_true.shape={y_true.type.shape}.")
        if self.columns is None:
            self.columns = int(y_pred.type.shape[-1])
            self.reset_state()

    def _weighted_sums(self, b: Builder, values: list[Value], weight: Value | None) -> list[Value]:
        """Each (batch, columns) value times the samples' weights, summed over the batch."""
        out = []
        for value in values:
            if weight is not None:
                if weight.type.shape != value.type.shape:
                    weight = b.broadcast(weight, shape=list(value.type.shape))
                value = b.mul(value, weight)
            out.append(b.reduce_sum(value, axes=[0]))
        return out

    def result(self):
        if self.columns is None:
            raise ValueError(f"Metric '{self.name}' has seen no data: call `update_state` first")
        return self._result()


def _column(b: Builder, sample_weight: Value | None) -> Value | None:
    """Sample weights as a (batch, 1) column."""
    if sample_weight is None:
        return None
    weight = _float32(b, sample_weight)
    return expand_last(b, weight) if weight.type.rank == 1 else weight


class FBetaScore(_PerColumn):
    """The F-beta score, (1 + beta^2) * precision * recall / (beta^2 * precision + recall), of
    each class (`average=None`), or their mean ('macro'), their mean weighted by the classes'
    support ('weighted'), or that of the pooled counts ('micro'). A prediction is positive above
    `threshold`, or where it is its row's highest when `threshold` is None."""

    sums = 4   # true positives, false positives, false negatives, support

    def __init__(self, average: str | None = None, beta: float = 1.0, threshold: float | None = None,
                 name: str = "fbeta_score", dtype=None):
        if average not in (None, "micro", "macro", "weighted"):
            raise ValueError("Invalid `average` argument value. Expected one of: {None, 'micro', "
                             f"'macro', 'weighted'}}. Received: average={average}")
        if not isinstance(beta, float):
            raise ValueError(f"Invalid `beta` argument value. It should be a Python float. "
                             f"Received: beta={beta} of type '{type(beta)}'")
        if beta <= 0.0:
            raise ValueError(f"Invalid `beta` argument value. It should be > 0. Received: beta={beta}")
        if threshold is not None:
            if not isinstance(threshold, float):
                raise ValueError(f"Invalid `threshold` argument value. It should be a Python float. "
                                 f"Received: threshold={threshold} of type '{type(threshold)}'")
            if not 0.0 < threshold <= 1.0:
                raise ValueError(f"Invalid `threshold` argument value. It should be between 0 and 1. "
                                 f"Received: threshold={threshold}")
        self.average, self.beta, self.threshold = average, beta, threshold
        super().__init__(name=name, dtype=dtype)

    def emit(self, b: Builder, y_true: Value, y_pred: Value,
             sample_weight: Value | None = None) -> list[Value]:
        y_true, y_pred = _float32(b, y_true), _float32(b, y_pred)
        self._build(y_true, y_pred)
        if self.threshold is None:
            top = b.reduce_max(y_pred, axes=[-1], keepdims=True)
            predicted = b.greater_equal(y_pred, b.broadcast(top, shape=list(y_pred.type.shape)))
        else:
            predicted = b.greater(y_pred, const(b, self.threshold, y_pred))
        predicted = _float32(b, predicted)
        one = const(b, 1.0, y_true)
        missed, wrong = b.sub(one, predicted), b.sub(one, y_true)
        return self._weighted_sums(b, [b.mul(predicted, y_true), b.mul(predicted, wrong),
                                       b.mul(missed, y_true), y_true], _column(b, sample_weight))

    def _result(self):
        tp, fp, fn, support = self.state
        epsilon = backend.epsilon()
        if self.average == "micro":
            tp, fp, fn = tp.sum(keepdims=True), fp.sum(keepdims=True), fn.sum(keepdims=True)
        precision, recall = tp / (tp + fp + epsilon), tp / (tp + fn + epsilon)
        beta2 = self.beta ** 2
        scores = _divide_no_nan(precision * recall, beta2 * precision + recall) * (1 + beta2)
        if self.average == "weighted":
            return float(np.sum(scores * _divide_no_nan(support, np.full_like(support, support.sum()))))
        if self.average is not None:
            return float(np.mean(scores))
        return scores.astype(np.float32)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "average": self.average, "beta": self.beta,
                "threshold": self.threshold}


class F1Score(FBetaScore):
    """The F1 score: `FBetaScore` with beta = 1, the harmonic mean of precision and recall."""

    def __init__(self, average: str | None = None, threshold: float | None = None,
                 name: str = "f1_score", dtype=None):
        super().__init__(average=average, beta=1.0, threshold=threshold, name=name, dtype=dtype)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        del config["beta"]
        return config


class R2Score(_PerColumn):
    """The coefficient of determination, 1 - SS_res / SS_tot, of each output, then averaged
    ('uniform_average'), weighted by the outputs' variance ('variance_weighted_average') or kept
    (None); `num_regressors` > 0 gives the adjusted R^2."""

    sums, scalars = 4, 1   # sum, squared sum, squared error, weight per output; entries seen

    def __init__(self, class_aggregation: str | None = "uniform_average", num_regressors: int = 0,
                 name: str = "r2_score", dtype=None):
        choices = (None, "uniform_average", "variance_weighted_average")
        if class_aggregation not in choices:
            raise ValueError(f"Invalid value for argument `class_aggregation`. Expected one of "
                             f"{choices}. Received: class_aggregation={class_aggregation}")
        if num_regressors < 0:
            raise ValueError(f"Invalid value for argument `num_regressors`. Expected a value >= 0. "
                             f"Received: num_regressors={num_regressors}")
        self.class_aggregation, self.num_regressors = class_aggregation, num_regressors
        super().__init__(name=name, dtype=dtype)

    def emit(self, b: Builder, y_true: Value, y_pred: Value,
             sample_weight: Value | None = None) -> list[Value]:
        y_true, y_pred = squeeze_or_expand_to_same_rank(b, _float32(b, y_true), _float32(b, y_pred))
        self._build(y_true, y_pred)
        ones = b.broadcast(const(b, 1.0, y_true), shape=list(y_true.type.shape))
        weight = _column(b, sample_weight)
        weight = ones if weight is None else b.broadcast(weight, shape=list(y_true.type.shape))
        error = b.square(b.sub(y_true, y_pred))
        sums = self._weighted_sums(b, [y_true, b.mul(y_true, y_true), error], weight)
        return sums + [b.reduce_sum(weight, axes=[0]), b.reduce_sum(ones, axes=[0, 1])]

    def _result(self):
        total_sum, squared_sum, squared_error, count, entries = self.state
        mean = total_sum / count
        variation = squared_sum - total_sum * mean
        with np.errstate(divide="ignore", invalid="ignore"):
            scores = 1 - squared_error / variation
        scores = np.where(np.isinf(scores), 0.0, scores)
        if self.class_aggregation == "uniform_average":
            score = float(np.mean(scores))
        elif self.class_aggregation == "variance_weighted_average":
            score = float(np.sum(variation * scores) / np.sum(variation))
        else:
            return scores.astype(np.float32)
        return self._adjusted(score, float(entries))

    def _adjusted(self, score: float, samples: float) -> float:
        regressors = self.num_regressors
        if not regressors:
            return score
        if regressors > samples - 1:
            warnings.warn("More independent predictors than datapoints in adjusted R2 score. "
                          "Falling back to standard R2 score.", UserWarning, stacklevel=3)
            return score
        if regressors == samples - 1:
            warnings.warn("Division by zero in Adjusted R2 score. Falling back to standard R2 "
                          "score.", UserWarning, stacklevel=3)
            return score
        return 1 - (1 - score) * (samples - 1) / (samples - regressors - 1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "class_aggregation": self.class_aggregation,
                "num_regressors": self.num_regressors}


SCORE_METRICS = (FBetaScore, F1Score, R2Score)

"""Keras 3's correlation metrics, `pearson_correlation` / `PearsonCorrelation` and
`concordance_correlation` / `ConcordanceCorrelation`, and the reduction metric `Sum`.
keras/metrics.py imports and re-exports everything here and registers the names.

As in Keras 3.15 the correlations are computed within each sample, along `axis`, and the
classes average those per-sample coefficients over every sample seen (they are mean metrics,
not a correlation of all the samples pooled). The formulas follow
keras/src/metrics/correlation_metrics.py: Pearson divides by the deviations with no epsilon
(a constant sample gives NaN), Concordance adds epsilon to its denominator.

>>> import numpy as np
>>> y_true, y_pred = np.array([[0, 1, 0.5], [1, 1, 0.2]]), np.array([[0.1, 0.9, 0.5], [1, 0.9, 0.2]])
>>> pearson_correlation(y_true, y_pred).round(6)
array([1.      , 0.993399], dtype=float32)
"""
from __future__ import annotations

from nncompile.ir import Builder, Value
from nncompile.keras.losses import (EPSILON, as_array, const, evaluate, float_like, ir_function,
                                    reduce_weighted_values, squeeze_or_expand_to_same_rank)
from nncompile.keras.metrics import MeanMetricWrapper, Metric, _float32
from nncompile.keras.ops import numpy as numpy_ops


def _mean(b: Builder, x: Value, axis, keepdims: bool = False) -> Value:
    return numpy_ops.mean.__wrapped__(b, x, axis=axis, keepdims=keepdims)


def _matched(b: Builder, y_true: Value, y_pred: Value) -> tuple[Value, Value]:
    return squeeze_or_expand_to_same_rank(b, float_like(b, y_true, y_pred), y_pred)


@ir_function
def pearson_correlation(b: Builder, y_true: Value, y_pred: Value, axis=-1) -> Value:
    """mean(z(y_true) * z(y_pred), axis), z(x) = (x - mean(x)) / std(x) along `axis` (an int or
    a tuple), the population standard deviation.

    >>> import numpy as np
    >>> round(float(pearson_correlation(np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 7.0]))), 4)
    0.9934
    """
    y_true, y_pred = _matched(b, y_true, y_pred)

    def standardized(x: Value) -> Value:
        centred = b.sub(x, _mean(b, x, axis, keepdims=True))
        return b.div(centred, numpy_ops.std.__wrapped__(b, centred, axis=axis, keepdims=True))

    return _mean(b, b.mul(standardized(y_true), standardized(y_pred)), axis)


@ir_function
def concordance_correlation(b: Builder, y_true: Value, y_pred: Value, axis=-1) -> Value:
    """mean(2 * (y_true - mean(y_pred)) * (y_pred - mean(y_pred)) / (var(y_true) + var(y_pred) +
    (mean(y_true) - mean(y_pred))^2 + epsilon), axis), Keras's ops in Keras's order (centring
    y_true on either mean gives the same covariance once averaged along `axis`).

    >>> import numpy as np
    >>> y_true, y_pred = np.array([[0, 1, 0.5], [1, 1, 0.2]]), np.array([[0.1, 0.9, 0.5], [1, 0.9, 0.2]])
    >>> concordance_correlation(y_true, y_pred).round(6)
    array([0.97561 , 0.987654], dtype=float32)
    """
    y_true, y_pred = _matched(b, y_true, y_pred)
    true_mean, pred_mean = (_mean(b, x, axis, keepdims=True) for x in (y_true, y_pred))
    true_var, pred_var = (numpy_ops.var.__wrapped__(b, b.sub(x, mean), axis=axis, keepdims=True)
                          for x, mean in ((y_true, true_mean), (y_pred, pred_mean)))
    covariance = b.mul(b.sub(y_true, pred_mean), b.sub(y_pred, pred_mean))
    norm = b.add(b.add(true_var, pred_var), b.square(b.sub(true_mean, pred_mean)))
    twice = b.mul(const(b, 2.0, covariance), covariance)
    return _mean(b, b.div(twice, b.add(norm, const(b, EPSILON, norm))), axis)


class _CorrelationMetric(MeanMetricWrapper):
    """The mean over the samples of a per-sample correlation along `axis`; larger is better."""

    def __init__(self, fn, name: str, dtype=None, axis=-1):
        super().__init__(fn, name=name, dtype=dtype, axis=axis)
        self.axis = axis
        self._direction = "up"   # for callbacks' mode="auto", as Keras sets it


class PearsonCorrelation(_CorrelationMetric):
    """Keras's `PearsonCorrelation`: the mean of `pearson_correlation` over the samples seen.

    >>> import numpy as np
    >>> m = PearsonCorrelation(axis=-1)
    >>> m.update_state(np.array([[0, 1, 0.5], [1, 1, 0.2]]), np.array([[0.1, 0.9, 0.5], [1, 0.9, 0.2]]))
    >>> round(m.result(), 6)
    0.9967
    """

    def __init__(self, name: str = "pearson_correlation", dtype=None, axis=-1):
        super().__init__(pearson_correlation, name=name, dtype=dtype, axis=axis)


class ConcordanceCorrelation(_CorrelationMetric):
    """Keras's `ConcordanceCorrelation`: the mean of `concordance_correlation` over the samples
    seen.

    >>> import numpy as np
    >>> m = ConcordanceCorrelation(axis=-1)
    >>> m.update_state(np.array([[0, 1, 0.5], [1, 1, 0.2]]), np.array([[0.1, 0.9, 0.5], [1, 0.9, 0.2]]))
    >>> round(m.result(), 6)
    0.981632
    """

    def __init__(self, name: str = "concordance_correlation", dtype=None, axis=-1):
        super().__init__(concordance_correlation, name=name, dtype=dtype, axis=axis)


class Sum(Metric):
    """Keras's `Sum`: the (weighted) sum of every value seen; values of higher rank than the
    weights are summed down to the weights' rank first.

    >>> import numpy as np
    >>> m = Sum()
    >>> m.update_state(np.array([1, 3, 5, 7]), sample_weight=np.array([1, 1, 0, 0]))
    >>> m.update_state(np.array([[2.0, 0.5]]))
    >>> m.result()
    6.5
    """

    def __init__(self, name: str = "sum", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def state_shapes(self) -> list[tuple[int, ...]]:
        return [()]

    def emit(self, b: Builder, values: Value, sample_weight: Value | None = None) -> list[Value]:
        return [reduce_weighted_values(b, _float32(b, values), sample_weight, reduction="sum")]

    def update_state(self, values, sample_weight=None) -> None:
        weights = None if sample_weight is None else as_array(sample_weight, integer_ok=False)
        self.merge(evaluate(self.emit, as_array(values, integer_ok=False), weights))

    def result(self) -> float:
        return float(self.state[0])


CORRELATION_METRICS = (PearsonCorrelation, ConcordanceCorrelation, Sum)

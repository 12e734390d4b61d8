"""Keras 3's confusion-count metrics beyond Precision, Recall and AUC: the counts themselves
(`TruePositives` ...) and the best value of one rate where another reaches a bound
(`PrecisionAtRecall`, `SensitivityAtSpecificity` ...). Each batch adds its weighted counts per
threshold (`metrics.confusion_counts`, emitted in the step graph); the result comes from them.

>>> import numpy as np
>>> m = TruePositives()
>>> m.update_state(np.array([0, 1, 1, 1]), np.array([1.0, 0.0, 0.9, 0.6]))
>>> m.result()
2.0
"""
from __future__ import annotations

from typing import Any

import numpy as np

from nncompile.ir import Builder, Value
from nncompile.keras.metrics import (Metric, _divide_no_nan, _evenly_distributed, _parse_thresholds,
                                     confusion_counts)


class _ConfusionCount(Metric):
    """One weighted count ("tp", "fp", "tn" or "fn") per threshold (default 0.5)."""

    kind = "tp"

    def __init__(self, thresholds=None, name: str | None = None, dtype=None):
        self.init_thresholds = thresholds
        self.thresholds = _parse_thresholds(thresholds, 0.5)
        super().__init__(name=name, dtype=dtype)

    def state_shapes(self) -> list[tuple[int, ...]]:
        return [(len(self.thresholds),)]

    def emit(self, b: Builder, y_true: Value, y_pred: Value,
             sample_weight: Value | None = None) -> list[Value]:
        return confusion_counts(b, y_true, y_pred, sample_weight, self.thresholds, [self.kind],
                                _evenly_distributed(self.thresholds))

    def result(self):
        counts = self.state[0]
        return float(counts[0]) if self.init_thresholds is None or np.ndim(self.init_thresholds) == 0 \
            else counts.astype(np.float32)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "thresholds": self.init_thresholds}


class TruePositives(_ConfusionCount):
    """The (weighted) number of positive labels predicted above the threshold."""

    kind = "tp"


class FalsePositives(_ConfusionCount):
    """The (weighted) number of negative labels predicted above the threshold."""

    kind = "fp"


class TrueNegatives(_ConfusionCount):
    """The (weighted) number of negative labels predicted at or below the threshold."""

    kind = "tn"


class FalseNegatives(_ConfusionCount):
    """The (weighted) number of positive labels predicted at or below the threshold."""

    kind = "fn"


class _RateAtRate(Metric):
    """The largest `dependent` rate over the thresholds where the `constrained` rate is at least
    `value` (0 when none is): counts at `num_thresholds` thresholds 0, 1/(n-1), ..., 1."""

    value_name = "value"
    rates_of: tuple = ()   # ((hits, misses) of the constrained rate, those of the dependent one)

    def __init__(self, value: float, num_thresholds: int = 200, class_id: int | None = None,
                 name: str | None = None, dtype=None):
        if not isinstance(value, (int, float, np.number)) or not 0 <= value <= 1:
            raise ValueError(f"Argument `{self.value_name}` must be in the range [0, 1]. "
                             f"Received: {self.value_name}={value}")
        if not isinstance(num_thresholds, (int, np.integer)) or num_thresholds <= 0:
            raise ValueError(f"Argument `num_thresholds` must be an integer > 0. "
                             f"Received: num_thresholds={num_thresholds}")
        self.value = float(value)
        self.num_thresholds = int(num_thresholds)
        self.class_id = class_id
        if num_thresholds == 1:
            self.thresholds = [0.5]
        else:
            inner = [(i + 1) / (num_thresholds - 1) for i in range(num_thresholds - 2)]
            self.thresholds = [0.0, *inner, 1.0]
        super().__init__(name=name, dtype=dtype)

    def state_shapes(self) -> list[tuple[int, ...]]:
        return [(len(self.thresholds),)] * 4

    def emit(self, b: Builder, y_true: Value, y_pred: Value,
             sample_weight: Value | None = None) -> list[Value]:
        return confusion_counts(b, y_true, y_pred, sample_weight, self.thresholds,
                                ("tp", "fp", "tn", "fn"), len(self.thresholds) > 1,
                                class_id=self.class_id)

    def result(self) -> float:
        counts = dict(zip(("tp", "fp", "tn", "fn"), self.state))
        (hits, misses), (good, bad) = self.rates_of
        constrained = _divide_no_nan(counts[hits], counts[hits] + counts[misses])
        dependent = _divide_no_nan(counts[good], counts[good] + counts[bad])
        feasible = constrained >= self.value
        return float(np.max(np.where(feasible, dependent, 0.0))) if feasible.any() else 0.0

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_thresholds": self.num_thresholds,
                "class_id": self.class_id, self.value_name: self.value}


class SensitivityAtSpecificity(_RateAtRate):
    """The best sensitivity (recall) where the specificity is at least `specificity`."""

    value_name, rates_of = "specificity", (("tn", "fp"), ("tp", "fn"))

    def __init__(self, specificity, num_thresholds=200, class_id=None, name=None, dtype=None):
        super().__init__(specificity, num_thresholds, class_id, name, dtype)


class SpecificityAtSensitivity(_RateAtRate):
    """The best specificity where the sensitivity (recall) is at least `sensitivity`."""

    value_name, rates_of = "sensitivity", (("tp", "fn"), ("tn", "fp"))

    def __init__(self, sensitivity, num_thresholds=200, class_id=None, name=None, dtype=None):
        super().__init__(sensitivity, num_thresholds, class_id, name, dtype)


class PrecisionAtRecall(_RateAtRate):
    """The best precision where the recall is at least `recall`."""

    value_name, rates_of = "recall", (("tp", "fn"), ("tp", "fp"))

    def __init__(self, recall, num_thresholds=200, class_id=None, name=None, dtype=None):
        super().__init__(recall, num_thresholds, class_id, name, dtype)


class RecallAtPrecision(_RateAtRate):
    """The best recall where the precision is at least `precision`."""

    value_name, rates_of = "precision", (("tp", "fp"), ("tp", "fn"))

    def __init__(self, precision, num_thresholds=200, class_id=None, name=None, dtype=None):
        super().__init__(precision, num_thresholds, class_id, name, dtype)


CONFUSION_METRICS = (TruePositives, FalsePositives, TrueNegatives, FalseNegatives,
                     SensitivityAtSpecificity, SpecificityAtSensitivity, PrecisionAtRecall,
                     RecallAtPrecision)

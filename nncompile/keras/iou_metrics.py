"""Keras 3's intersection-over-union metrics: `IoU`, `MeanIoU`, `BinaryIoU`, `OneHotIoU` and
`OneHotMeanIoU`. Each batch adds its weighted confusion matrix (true class by predicted class,
emitted in the step graph); the result, tp / (tp + fp + fn) averaged over the target classes
that occur, comes from the matrix in Python. As in Keras 3 the default dtype is int32, which
truncates fractional sample weights.

>>> import numpy as np
>>> m = IoU(num_classes=2, target_class_ids=[0])
>>> m.update_state([0, 0, 1, 1], [0, 1, 0, 1])
>>> round(m.result(), 4)
0.3333
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from nncompile.ir import Builder, DType, Value
from nncompile.keras import backend
from nncompile.keras.losses import class_mask, const, expand_last
from nncompile.keras.metrics import Metric, _float32


class IoU(Metric):
    """IoU of each class in `target_class_ids`, averaged over those that occur (in the labels or
    the predictions). Labels and predictions are class ids, or scores over `axis` when
    `sparse_y_true` / `sparse_y_pred` is False; entries labelled `ignore_class`, and ids outside
    [0, num_classes), do not count."""

    _config_keys = ("num_classes", "target_class_ids", "ignore_class", "sparse_y_true",
                    "sparse_y_pred", "axis")

    def __init__(self, num_classes: int, target_class_ids: Sequence[int], name: str | None = None,
                 dtype=None, ignore_class: int | None = None, sparse_y_true: bool = True,
                 sparse_y_pred: bool = True, axis: int = -1):
        if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
            raise ValueError(f"Argument `num_classes` must be a positive integer. Received: "
                             f"num_classes={num_classes}")
        ids = [int(i) for i in target_class_ids]
        if not ids:
            raise ValueError(f"Argument `target_class_ids` must name at least one class. "
                             f"Received: target_class_ids={target_class_ids}")
        for i in ids:
            if not 0 <= i < num_classes:
                raise ValueError(f"Target class id {i} is out of range, which is "
                                 f"[0, {num_classes}). Received: target_class_ids={ids}")
        self.num_classes, self.target_class_ids = int(num_classes), ids
        self.ignore_class, self.axis = ignore_class, axis
        self.sparse_y_true, self.sparse_y_pred = sparse_y_true, sparse_y_pred
        super().__init__(name=name, dtype=dtype or "int32")   # Keras 3's default, "int"

    def state_shapes(self) -> list[tuple[int, ...]]:
        return [(self.num_classes, self.num_classes)]

    def _flat_labels(self, b: Builder, values: Value, sparse: bool) -> Value:
        """(batch, entries) class ids."""
        if not sparse:
            values = b.argmax(values, axis=self.axis)
        if values.type.rank == 1:
            values = expand_last(b, values)
        return b.reshape(values, shape=(values.type.shape[0], -1))

    def class_ids(self, b: Builder, y_true: Value, y_pred: Value) -> tuple[Value, Value]:
        """The true and predicted class ids, each (batch, entries)."""
        return (self._flat_labels(b, y_true, self.sparse_y_true),
                self._flat_labels(b, y_pred, self.sparse_y_pred))

    def emit(self, b: Builder, y_true: Value, y_pred: Value,
             sample_weight: Value | None = None) -> list[Value]:
        labels, guesses = self.class_ids(b, y_true, y_pred)
        weight = b.broadcast(const(b, 1.0, _float32(b, labels)), shape=list(labels.type.shape))
        if sample_weight is not None:
            given = self._flat_labels(b, _float32(b, sample_weight), True)
            if np.dtype(self.dtype).kind in "iu":   # as Keras: weights cast to an int dtype
                given = _float32(b, b.cast(given, dtype=DType.from_numpy(self.dtype)))
            weight = b.mul(weight, b.broadcast(given, shape=list(labels.type.shape))
                           if given.type.shape != labels.type.shape else given)
        if self.ignore_class is not None:
            kept = b.not_equal(_float32(b, labels), const(b, float(self.ignore_class), weight))
            weight = b.mul(weight, _float32(b, kept))
        # An id outside [0, num_classes) has an all-zero row in class_mask, so it drops out.
        truth = _float32(b, class_mask(b, labels, self.num_classes))      # (batch, entries, C)
        guessed = b.mul(_float32(b, class_mask(b, guesses, self.num_classes)), expand_last(b, weight))
        matrix = b.matmul(b.transpose(truth, perm=(0, 2, 1)), guessed)    # (batch, C, C)
        return [b.reduce_sum(matrix, axes=[0])]

    def result(self) -> float:
        """Keras 3's: the mean of tp / (union + epsilon) over the target classes whose union
        is not 0."""
        matrix = self.state[0]
        hits = np.diag(matrix)
        union = matrix.sum(axis=0) + matrix.sum(axis=1) - hits
        hits, union = hits[self.target_class_ids], union[self.target_class_ids]
        valid = union > 1e-9
        iou = np.where(valid, hits / (union + backend.epsilon()), 0.0)
        return float(iou.sum() / (valid.sum() + backend.epsilon()))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **{k: getattr(self, k) for k in self._config_keys}}


class MeanIoU(IoU):
    """IoU averaged over every class that occurs."""

    _config_keys = ("num_classes", "ignore_class", "sparse_y_true", "sparse_y_pred", "axis")

    def __init__(self, num_classes: int, name: str | None = None, dtype=None,
                 ignore_class: int | None = None, sparse_y_true: bool = True,
                 sparse_y_pred: bool = True, axis: int = -1):
        super().__init__(num_classes, range(num_classes) if isinstance(num_classes, int) else [],
                         name, dtype, ignore_class, sparse_y_true, sparse_y_pred, axis)


class BinaryIoU(IoU):
    """IoU of classes 0 and / or 1 (`target_class_ids`): predictions >= `threshold` are class
    1, the others class 0; fractional labels truncate to a class id (0.7 is class 0), as in
    Keras."""

    _config_keys = ("target_class_ids", "threshold")

    def __init__(self, target_class_ids: Sequence[int] = (0, 1), threshold: float = 0.5,
                 name: str | None = None, dtype=None):
        super().__init__(2, target_class_ids, name, dtype)
        self.threshold = threshold

    def class_ids(self, b: Builder, y_true: Value, y_pred: Value) -> tuple[Value, Value]:
        scores = _float32(b, y_pred)
        above = b.greater_equal(scores, const(b, float(self.threshold), scores))
        return (self._flat_labels(b, y_true, True),
                self._flat_labels(b, b.cast(above, dtype=DType.i32), True))


class OneHotIoU(IoU):
    """IoU with one-hot labels (scores, or class ids with `sparse_y_pred=True`, as predictions)."""

    _config_keys = ("num_classes", "target_class_ids", "ignore_class", "sparse_y_pred", "axis")

    def __init__(self, num_classes: int, target_class_ids: Sequence[int], name: str | None = None,
                 dtype=None, ignore_class: int | None = None, sparse_y_pred: bool = False,
                 axis: int = -1):
        super().__init__(num_classes, target_class_ids, name, dtype, ignore_class, False,
                         sparse_y_pred, axis)


class OneHotMeanIoU(MeanIoU):
    """MeanIoU with one-hot labels."""

    _config_keys = ("num_classes", "ignore_class", "sparse_y_pred", "axis")

    def __init__(self, num_classes: int, name: str | None = None, dtype=None,
                 ignore_class: int | None = None, sparse_y_pred: bool = False, axis: int = -1):
        super().__init__(num_classes, name, dtype, ignore_class, False, sparse_y_pred, axis)


IOU_METRICS = (IoU, MeanIoU, BinaryIoU, OneHotIoU, OneHotMeanIoU)

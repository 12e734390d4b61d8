"""Keras 3's focal losses: `binary_focal_crossentropy` / `BinaryFocalCrossentropy` and
`categorical_focal_crossentropy` / `CategoricalFocalCrossentropy` (Lin et al., 2018), written
as IR like the other losses. keras/losses.py imports and re-exports everything here and
registers the names ("binary_focal_crossentropy", "BinaryFocalCrossentropy", ...).

The formulas follow Keras 3 step by step, including its quirks: from logits, the binary loss
takes sigmoid(x) and then the clipped probability crossentropy (so it saturates at -log(eps)
like Keras's, not the unclipped logits formula of `binary_crossentropy`); the focal factor uses
the unclipped probabilities; label smoothing also moves the labels of the focal factor and the
class balancing.

>>> import numpy as np
>>> from nncompile.keras import losses
>>> losses.binary_focal_crossentropy([[0, 1], [0, 0]], [[0.6, 0.4], [0.4, 0.6]], gamma=2).round(3)
array([0.33 , 0.206], dtype=float32)
>>> losses.categorical_focal_crossentropy([[0, 1, 0]], [[0.05, 0.9, 0.05]]).round(6)
array([0.000263], dtype=float32)
"""
from __future__ import annotations

from typing import Any

import numpy as np

from nncompile.ir import Builder, Value
from nncompile.keras.losses import (EPSILON, Loss, LossFunctionWrapper, _check_axis, _check_same_shape,
                                    categorical_targets, clip, const, float_like, loss_function,
                                    smoothed)


def _focal_factor(b: Builder, base: Value, gamma) -> Value | None:
    """base ** gamma (base in [0, 1]); None for gamma == 0, where it is 1 everywhere (pow's
    gradient, 0 * base**-1, would be NaN at base 0: JAX's is 0). gamma 1 and 2 need no pow."""
    gamma = float(gamma)
    if gamma == 0.0:
        return None
    if gamma == 1.0:
        return base
    if gamma == 2.0:
        return b.square(base)
    return b.pow(base, const(b, gamma, base))


def _weight(b: Builder, value, like: Value, what: str) -> Value:
    """A constant factor of `like`'s dtype: a number, or (for `alpha`) one value per class,
    broadcast along the last axis as Keras's ops.multiply does."""
    array = np.asarray(value, dtype=like.type.dtype.numpy)
    if array.ndim == 0:
        return b.constant(array)
    classes = like.type.shape[-1] if like.type.rank else None
    if array.ndim != 1 or (not isinstance(classes, str) and array.shape[0] not in (1, classes)):
        raise ValueError(f"`{what}` must be a float or a list of one float per class ({classes} here); "
                         f"received {what}={value!r}")
    return b.constant(array)


@loss_function
def binary_focal_crossentropy(b: Builder, y_true: Value, y_pred: Value, apply_class_balancing: bool = False,
                              alpha=0.25, gamma: float = 2.0, from_logits: bool = False,
                              label_smoothing: float = 0.0, axis: int = -1) -> Value:
    """mean((1 - p_t) ** gamma * bce, axis), p_t = y * p + (1 - y) * (1 - p), bce the clipped
    binary crossentropy of p (p = sigmoid(y_pred) from logits); times y * alpha + (1 - y) *
    (1 - alpha) with `apply_class_balancing`. Labels smoothed toward 0.5 first."""
    _check_axis(axis)
    y_true = float_like(b, y_true, y_pred)
    if label_smoothing:
        y_true = smoothed(b, y_true, label_smoothing, 0.5)
    if from_logits:
        y_pred = b.sigmoid(y_pred)
    _check_same_shape(y_true, y_pred)
    one = const(b, 1.0, y_pred)
    not_true = b.sub(one, y_true)
    p = clip(b, y_pred, EPSILON, 1.0 - EPSILON)
    bce = b.neg(b.add(b.mul(y_true, b.log(p)), b.mul(not_true, b.log(b.sub(one, p)))))
    p_t = b.add(b.mul(y_true, y_pred), b.mul(not_true, b.sub(one, y_pred)))
    factor = _focal_factor(b, b.sub(one, p_t), gamma)
    focal_bce = bce if factor is None else b.mul(factor, bce)
    if apply_class_balancing:
        # 1 - alpha in double precision, as Keras's Python float arithmetic has it.
        complement = 1.0 - np.asarray(alpha, np.float64)
        weight = b.add(b.mul(y_true, _weight(b, alpha, y_pred, "alpha")),
                       b.mul(not_true, _weight(b, complement, y_pred, "alpha")))
        focal_bce = b.mul(weight, focal_bce)
    return b.reduce_mean(focal_bce, axes=[axis])


@loss_function
def categorical_focal_crossentropy(b: Builder, y_true: Value, y_pred: Value, alpha=0.25, gamma: float = 2.0,
                                   from_logits: bool = False, label_smoothing: float = 0.0,
                                   axis: int = -1) -> Value:
    """sum(alpha * (1 - p) ** gamma * -y_true * log(p), axis), p the predictions (softmax of
    logits) normalized to sum 1 and clipped to [eps, 1 - eps]; `alpha` a number or one per
    class. Labels smoothed toward 1 / num_classes first."""
    y_true = categorical_targets(b, "categorical_focal_crossentropy", y_true, y_pred, label_smoothing, axis)
    if from_logits:
        y_pred = b.softmax(y_pred, axis=axis)
    output = b.div(y_pred, b.reduce_sum(y_pred, axes=[axis], keepdims=True))
    output = clip(b, output, EPSILON, 1.0 - EPSILON)
    cce = b.mul(b.neg(y_true), b.log(output))
    factor = _focal_factor(b, b.sub(const(b, 1.0, output), output), gamma)
    alpha_value = _weight(b, alpha, output, "alpha")
    weighting = alpha_value if factor is None else b.mul(factor, alpha_value)
    return b.reduce_sum(b.mul(weighting, cce), axes=[axis])


class BinaryFocalCrossentropy(LossFunctionWrapper):
    """Keras's `BinaryFocalCrossentropy`: the reduced `binary_focal_crossentropy`, which
    down-weights easy examples by (1 - p_t) ** gamma (and, with `apply_class_balancing`, weighs
    class 1 by `alpha` and class 0 by 1 - alpha)."""

    def __init__(self, apply_class_balancing: bool = False, alpha=0.25, gamma: float = 2.0,
                 from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1,
                 reduction="sum_over_batch_size", name: str = "binary_focal_crossentropy", dtype=None):
        super().__init__(binary_focal_crossentropy, reduction=reduction, name=name, dtype=dtype,
                         apply_class_balancing=apply_class_balancing, alpha=alpha, gamma=gamma,
                         from_logits=from_logits, label_smoothing=label_smoothing, axis=axis)
        self.from_logits, self.label_smoothing, self.axis = from_logits, label_smoothing, axis
        self.apply_class_balancing, self.alpha, self.gamma = apply_class_balancing, alpha, gamma

    def get_config(self) -> dict[str, Any]:
        # Keras's keys in Keras's order.
        return {**Loss.get_config(self), "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing, "axis": self.axis,
                "apply_class_balancing": self.apply_class_balancing, "alpha": self.alpha,
                "gamma": self.gamma}


class CategoricalFocalCrossentropy(LossFunctionWrapper):
    """Keras's `CategoricalFocalCrossentropy`: the reduced `categorical_focal_crossentropy` of
    one-hot (or soft) targets, alpha-balanced (a number or one weight per class)."""

    def __init__(self, alpha=0.25, gamma: float = 2.0, from_logits: bool = False,
                 label_smoothing: float = 0.0, axis: int = -1, reduction="sum_over_batch_size",
                 name: str = "categorical_focal_crossentropy", dtype=None):
        super().__init__(categorical_focal_crossentropy, reduction=reduction, name=name, dtype=dtype,
                         alpha=alpha, gamma=gamma, from_logits=from_logits,
                         label_smoothing=label_smoothing, axis=axis)
        self.from_logits, self.label_smoothing, self.axis = from_logits, label_smoothing, axis
        self.alpha, self.gamma = alpha, gamma

    def get_config(self) -> dict[str, Any]:
        # Keras's keys in Keras's order.
        return {**Loss.get_config(self), "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing, "axis": self.axis, "alpha": self.alpha,
                "gamma": self.gamma}

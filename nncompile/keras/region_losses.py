"""Keras 3's segmentation, similarity and noise-robust losses, written as IR like the others:
`dice` / `Dice` and `tversky` / `Tversky` (overlap of a predicted and a true region), `circle` /
`Circle` (metric learning on L2-normalized embeddings and integer labels) and
`categorical_generalized_cross_entropy` / `CategoricalGeneralizedCrossEntropy` (Zhang &
Sabuncu, 2018). keras/losses.py imports and re-exports everything here and registers the names.

The formulas follow keras/src/losses/losses.py step by step: epsilon added to the Dice and
Tversky denominators, Circle's distances clipped at 0 and its reduction averaged over the
samples whose loss is positive (Keras marks them with a mask).

>>> import numpy as np
>>> from nncompile.keras import losses
>>> float(losses.dice(np.array([[1.0, 0.0]]), np.array([[1.0, 0.0]])).round(6))
0.0
>>> losses.tversky(np.array([[1.0, 1.0]]), np.array([[1.0, 0.0]]), alpha=0.2, beta=0.8, axis=-1).round(4)
array([0.1667], dtype=float32)
"""
from __future__ import annotations

import numpy as np

from nncompile.ir import Builder, DType, Value
from nncompile.keras.losses import (EPSILON, LossFunctionWrapper, cast_to, class_mask, const, float_like,
                                    loss_function, softplus, squeeze_last)
from nncompile.keras.ops import numpy as numpy_ops


def _sum(b: Builder, x: Value, axis) -> Value:
    """`keras.ops.sum(x, axis)`: axis None, an int or a tuple of ints."""
    return numpy_ops.sum.__wrapped__(b, x, axis=axis)


def _one_minus(b: Builder, x: Value) -> Value:
    return b.sub(const(b, 1.0, x), x)


@loss_function
def dice(b: Builder, y_true: Value, y_pred: Value, axis=None) -> Value:
    """1 - 2 * sum(y_true * y_pred) / (sum(y_true) + sum(y_pred) + epsilon), the sums over
    `axis` (None: every axis, one number for the whole batch).

    >>> import numpy as np
    >>> y_true = np.array([[[[1.0], [1.0]], [[0.0], [0.0]]], [[[1.0], [1.0]], [[0.0], [0.0]]]])
    >>> y_pred = np.array([[[[0.0], [1.0]], [[0.0], [1.0]]], [[[0.4], [0.0]], [[0.0], [0.9]]]])
    >>> dice(y_true, y_pred, axis=(1, 2, 3)).round(6)
    array([0.5     , 0.757576], dtype=float32)
    """
    y_true = float_like(b, y_true, y_pred)
    intersection = _sum(b, b.mul(y_true, y_pred), axis)
    total = b.add(b.add(_sum(b, y_true, axis), _sum(b, y_pred, axis)), const(b, EPSILON, y_pred))
    return _one_minus(b, b.div(b.mul(const(b, 2.0, intersection), intersection), total))


@loss_function
def tversky(b: Builder, y_true: Value, y_pred: Value, alpha: float = 0.5, beta: float = 0.5,
            axis=None) -> Value:
    """1 - TP / (TP + alpha * sum((1 - y_pred) * y_true) + beta * sum(y_pred * (1 - y_true)) +
    epsilon), TP = sum(y_true * y_pred), the sums over `axis` (None: every axis). alpha = beta =
    0.5 is the Dice loss.

    >>> import numpy as np
    >>> round(float(tversky(np.array([[1.0, 0.0]]), np.array([[0.5, 0.5]]), alpha=0.0, beta=1.0)), 4)
    0.5
    """
    y_true = float_like(b, y_true, y_pred)
    intersection = _sum(b, b.mul(y_true, y_pred), axis)
    # Keras's names: "false positives" weighted by alpha are the labels the predictions miss.
    false_positives = _sum(b, b.mul(_one_minus(b, y_pred), y_true), axis)
    false_negatives = _sum(b, b.mul(y_pred, _one_minus(b, y_true)), axis)
    denominator = b.add(b.add(intersection, b.mul(false_positives, const(b, alpha, false_positives))),
                        b.mul(false_negatives, const(b, beta, false_negatives)))
    return _one_minus(b, b.div(intersection, b.add(denominator, const(b, EPSILON, denominator))))


# --- circle -----------------------------------------------------------------------------------

def _as_value(b: Builder, x, dtype: DType) -> Value:
    """A reference set given as a Value (traced) or an array (a constant of the graph)."""
    return x if isinstance(x, Value) else b.constant(np.asarray(x, dtype.numpy))


def _label_column(b: Builder, labels: Value) -> Value:
    """Integer labels (n,) or (n, 1) as an int32 column (n, 1), as Keras's build_pos_neg_masks."""
    labels = cast_to(b, labels, DType.i32)
    return b.reshape(labels, shape=[labels.type.shape[0], 1]) if labels.type.rank == 1 else labels


def _row_numbers(b: Builder, x: Value) -> Value:
    """1, 2, ..., n along the first axis of `x` (a column), whose length may be symbolic: the
    running sum of ones."""
    ones = b.broadcast(const(b, 1.0, x), shape=[x.type.shape[0]])
    return b.reshape(numpy_ops.running(b, ones, 0, "circle"), shape=[x.type.shape[0], 1])


def _pair_masks(b: Builder, labels: Value, ref_labels: Value, queries: Value, keys: Value,
                remove_diagonal: bool) -> tuple[Value, Value]:
    """(positive, negative) bool masks of query-by-key pairs: same label or not; with
    `remove_diagonal` a query is not its own positive (the pair of equal row numbers)."""
    positive = b.equal(_label_column(b, labels), b.transpose(_label_column(b, ref_labels), perm=[1, 0]))
    negative = b.logical_not(positive)
    if remove_diagonal:
        same_row = b.equal(_row_numbers(b, queries), b.transpose(_row_numbers(b, keys), perm=[1, 0]))
        positive = b.logical_and(positive, b.logical_not(same_row))
    return positive, negative


def _masked_logsumexp(b: Builder, mask: Value, x: Value) -> Value:
    """log(sum(exp(x))) per row over the entries of `mask`; -inf for a row without any."""
    masked = b.select(mask, x, const(b, float("-inf"), x))
    return numpy_ops.logsumexp.__wrapped__(b, masked, axis=1)


@loss_function
def circle(b: Builder, y_true: Value, y_pred: Value, ref_labels=None, ref_embeddings=None,
           remove_diagonal: bool = True, gamma: float = 80, margin: float = 0.4) -> Value:
    """softplus(logsumexp over positives of -gamma * a_p * (margin - d) + logsumexp over
    negatives of gamma * a_n * (1 - margin - d)) per sample (Sun et al., 2020): d = max(1 -
    y_pred . ref_embeddings, 0) the cosine distances of L2-normalized embeddings, a_p =
    max(margin + d, 0), a_n = max(1 + margin - d, 0); pairs with the same integer label are
    positives. The reference set defaults to the batch itself.

    >>> import numpy as np
    >>> embeddings = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    >>> circle(np.array([0, 0, 1]), embeddings, gamma=10).round(4)
    array([0.059 , 1.1711, 0.    ], dtype=float32)
    """
    keys = y_pred if ref_embeddings is None else _as_value(b, ref_embeddings, y_pred.type.dtype)
    key_labels = y_true if ref_labels is None else _as_value(b, ref_labels, DType.i32)
    similarity = b.matmul(y_pred, b.transpose(keys, perm=[1, 0]))
    distance = b.maximum(_one_minus(b, similarity), const(b, 0.0, similarity))
    positive, negative = _pair_masks(b, y_true, key_labels, y_pred, keys, remove_diagonal)

    def weights(mask: Value, optimum: Value) -> Value:
        return b.maximum(b.mul(optimum, cast_to(b, mask, distance.type.dtype)), const(b, 0.0, distance))

    positive_weights = weights(positive, b.add(const(b, margin, distance), distance))
    negative_weights = weights(negative, b.sub(const(b, 1.0 + margin, distance), distance))
    positive_logits = b.mul(b.mul(const(b, -gamma, distance), positive_weights),
                            b.sub(const(b, margin, distance), distance))
    negative_logits = b.mul(b.mul(const(b, gamma, distance), negative_weights),
                            b.sub(const(b, 1.0 - margin, distance), distance))
    return softplus(b, b.add(_masked_logsumexp(b, positive, positive_logits),
                             _masked_logsumexp(b, negative, negative_logits)))


# --- generalized cross entropy ----------------------------------------------------------------

@loss_function
def categorical_generalized_cross_entropy(b: Builder, y_true: Value, y_pred: Value, q: float) -> Value:
    """(1 - p ** q) / q, p the predicted probability of the true class; `y_true` integer class
    indices of shape (batch,) or (batch, 1).

    >>> import numpy as np
    >>> categorical_generalized_cross_entropy(np.array([1, 0]), np.array([[0.75, 0.25], [0.36, 0.64]]),
    ...                                       q=0.5).round(4)
    array([1. , 0.8], dtype=float32)
    """
    labels = y_true
    if labels.type.rank == y_pred.type.rank and labels.type.shape[-1] == 1:
        # Keras documents (batch, 1) labels but broadcasts them to a (batch, batch) loss; fit
        # hands nncompile's losses class indices as (batch, 1), so they are squeezed.
        labels = squeeze_last(b, labels)
    true_class = cast_to(b, class_mask(b, labels, y_pred.type.shape[-1]), y_pred.type.dtype)
    p = b.reduce_sum(b.mul(y_pred, true_class), axes=[-1])
    return b.div(_one_minus(b, b.pow(p, const(b, q, p))), const(b, q, p))


# --- Loss classes -----------------------------------------------------------------------------

class Dice(LossFunctionWrapper):
    """Keras's `Dice`: the `dice` loss (per sample with `axis`, else of the whole batch), reduced.

    >>> import numpy as np
    >>> y_true = np.array([[[[1.0], [1.0]], [[0.0], [0.0]]], [[[1.0], [1.0]], [[0.0], [0.0]]]])
    >>> y_pred = np.array([[[[0.0], [1.0]], [[0.0], [1.0]]], [[[0.4], [0.0]], [[0.0], [0.9]]]])
    >>> round(float(Dice()(y_true, y_pred)), 6)
    0.616438
    """

    def __init__(self, reduction="sum_over_batch_size", name: str = "dice", axis=None, dtype=None):
        super().__init__(dice, reduction=reduction, name=name, dtype=dtype, axis=axis)
        self.axis = axis


class Tversky(LossFunctionWrapper):
    """Keras's `Tversky`: the `tversky` loss, alpha weighing missed labels and beta false
    alarms, reduced.

    >>> import numpy as np
    >>> round(float(Tversky(alpha=0.0, beta=1.0)(np.array([[1.0, 0.0]]), np.array([[0.5, 0.5]]))), 4)
    0.5
    """

    def __init__(self, alpha: float = 0.5, beta: float = 0.5, reduction="sum_over_batch_size",
                 name: str = "tversky", axis=None, dtype=None):
        super().__init__(tversky, reduction=reduction, name=name, dtype=dtype, alpha=alpha, beta=beta,
                         axis=axis)
        self.alpha, self.beta, self.axis = alpha, beta, axis


class Circle(LossFunctionWrapper):
    """Keras's `Circle`: the `circle` loss of a batch of L2-normalized embeddings (a model ending
    in UnitNormalization) and integer labels; the mean runs over the samples whose loss is
    positive, as Keras masks the others out.

    >>> import numpy as np
    >>> embeddings = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    >>> round(float(Circle(gamma=10)(np.array([0, 0, 1]), embeddings)), 4)   # (0.059 + 1.1711) / 2
    0.6151
    """

    def __init__(self, gamma: float = 80.0, margin: float = 0.4, remove_diagonal: bool = True,
                 reduction="sum_over_batch_size", name: str = "circle", dtype=None):
        super().__init__(circle, reduction=reduction, name=name, dtype=dtype, gamma=gamma, margin=margin,
                         remove_diagonal=remove_diagonal)
        self.gamma, self.margin, self.remove_diagonal = gamma, margin, remove_diagonal

    def mask(self, b: Builder, y_true: Value, y_pred: Value) -> Value:
        # The same ops as the losses themselves: the compiled graph computes them once (CSE).
        losses = self.per_sample(b, y_true, y_pred)
        return b.greater(losses, const(b, 0.0, losses))


class CategoricalGeneralizedCrossEntropy(LossFunctionWrapper):
    """Keras's `CategoricalGeneralizedCrossEntropy`: the reduced
    `categorical_generalized_cross_entropy`, between cross entropy (q near 0) and mean absolute
    error (q near 1); q must lie in (0, 1).

    >>> import numpy as np
    >>> loss = CategoricalGeneralizedCrossEntropy(q=0.5)
    >>> round(float(loss(np.array([1, 0]), np.array([[0.75, 0.25], [0.36, 0.64]]))), 4)
    0.9
    """

    def __init__(self, q: float = 0.5, reduction="sum_over_batch_size",
                 name: str = "categorical_generalized_cross_entropy", dtype=None):
        if not 0 < q < 1:
            raise ValueError("q must be in the interval (0, 1)")
        super().__init__(categorical_generalized_cross_entropy, reduction=reduction, name=name, dtype=dtype,
                         q=q)
        self.q = q


REGION_LOSSES = (Dice, Tversky, Circle, CategoricalGeneralizedCrossEntropy)

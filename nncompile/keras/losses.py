"""Losses with Keras 3's names, classes, defaults and formulas, written once as IR.

Every loss function is an emitter `(b: Builder, y_true: Value, y_pred: Value, **options) -> Value`
of per-sample losses. The public function dispatches on its first argument, like the activations:
given a `Builder` it adds the loss to that graph; given arrays it builds a one-loss graph and runs
it on the reference interpreter, so the eager value comes from the very IR a training step
compiles. A `Loss` object adds Keras's reduction with sample weights (`emit` for the step graph,
`__call__` on arrays). Losses users write (a function of `(y_true, y_pred)`, or a `Loss` subclass
with `call(y_true, y_pred)`, in keras.ops) are traced into the same IR (keras/tracing.py).

>>> import numpy as np
>>> from nncompile.keras import losses
>>> losses.binary_crossentropy(np.array([[0.0, 1.0]]), np.array([[0.4, 0.6]])).round(4)
array([0.5108], dtype=float32)
>>> float(losses.get("mse")(np.array([[1.0], [2.0]]), np.array([[1.5], [2.0]])))
0.125
"""
from __future__ import annotations

import functools
import warnings
from typing import Any, Callable, Sequence

import numpy as np

from nncompile.ir import Builder, DType, TensorType, Value
from nncompile.keras import backend, tracing
from nncompile.keras.serialization import Catalog, KerasObject
from nncompile.runtime import reference

EPSILON = backend.epsilon()
REDUCTIONS = ("sum_over_batch_size", "sum", None, "none", "mean", "mean_with_sample_weight")


# --- IR helpers (shared with metrics) ---------------------------------------------------------

def const(b: Builder, value: float, like: Value) -> Value:
    """A rank-0 constant of `like`'s dtype."""
    return b.scalar(value, like)


def cast_to(b: Builder, x: Value, dtype: DType) -> Value:
    return x if x.type.dtype is dtype else b.cast(x, dtype=dtype)


def float_like(b: Builder, x: Value, like: Value) -> Value:
    """`x` cast to `like`'s (float) dtype, as Keras casts labels to the predictions' dtype."""
    return cast_to(b, x, like.type.dtype)


def clip(b: Builder, x: Value, low: float, high: float) -> Value:
    return b.maximum(b.minimum(x, const(b, high, x)), const(b, low, x))


def softplus(b: Builder, x: Value) -> Value:
    """log(1 + exp(x)) as max(x, 0) + log1p(exp(-|x|)): finite for every x."""
    return b.add(b.relu(x), b.log1p(b.exp(b.neg(b.abs(x)))))


def divide_no_nan(b: Builder, x: Value, y: Value) -> Value:
    """x / y, and 0 where y == 0; the division never sees a zero, so its gradient stays finite."""
    zero = b.equal(y, const(b, 0.0, y))
    safe = b.select(zero, const(b, 1.0, y), y)
    return b.select(zero, const(b, 0.0, y), b.div(x, safe))


def all_axes(x: Value) -> list[int]:
    return list(range(x.type.rank))


def squeeze_last(b: Builder, x: Value) -> Value:
    return b.reshape(x, shape=list(x.type.shape[:-1]))


def expand_last(b: Builder, x: Value) -> Value:
    return b.reshape(x, shape=[*x.type.shape, 1])


def squeeze_or_expand_to_same_rank(b: Builder, x1: Value, x2: Value,
                                   expand_rank_1: bool = True) -> tuple[Value, Value]:
    """Keras's rule: when the ranks differ by one and the longer ends in 1, squeeze it (or, for a
    rank-1 partner and `expand_rank_1`, expand the partner instead)."""
    r1, r2 = x1.type.rank, x2.type.rank
    if r1 == r2 + 1 and x1.type.shape[-1] == 1:
        if r2 == 1 and expand_rank_1:
            return x1, expand_last(b, x2)
        return squeeze_last(b, x1), x2
    if r2 == r1 + 1 and x2.type.shape[-1] == 1:
        if r1 == 1 and expand_rank_1:
            return expand_last(b, x1), x2
        return x1, squeeze_last(b, x2)
    return x1, x2


def class_mask(b: Builder, labels: Value, num_classes: int) -> Value:
    """The one-hot mask (bool, labels' shape + (num_classes,)) of integer class indices, made by
    comparing against 0..num_classes-1 (no gather, so nothing to differentiate)."""
    if not labels.type.dtype.is_int:
        labels = b.cast(labels, dtype=DType.i32)
    classes = b.constant(np.arange(num_classes, dtype=labels.type.dtype.numpy))
    return b.equal(expand_last(b, labels), classes)


def _check_same_shape(t: Value, p: Value) -> None:
    if t.type.shape != p.type.shape:
        raise ValueError("Arguments `target` and `output` must have the same shape. Received: "
                         f"target.shape={_shown(t.type.shape)}, output.shape={_shown(p.type.shape)}")


def _shown(shape: Sequence) -> tuple:
    return tuple(None if isinstance(d, str) else d for d in shape)


# --- eager evaluation -------------------------------------------------------------------------

def as_array(x, integer_ok: bool = True) -> np.ndarray:
    """`x` as an array the IR takes: floats as float32, integers kept (when `integer_ok`)."""
    array = np.asarray(x)
    if array.dtype.kind in "iu" and integer_ok:
        return array if array.dtype in (np.int8, np.uint8, np.int32, np.int64) else array.astype(np.int64)
    if array.dtype.kind not in "biuf":
        raise ValueError(f"expected a numeric array, received dtype {array.dtype}")
    return array.astype(backend.floatx())


def evaluate(emit: Callable[..., Value | Sequence[Value]], *arrays: np.ndarray | None) -> list[np.ndarray]:
    """Build a graph with one input per array (None passes None to `emit`), emit, and run it on
    the reference interpreter; one array per emitted value."""
    b = Builder(name=getattr(emit, "__name__", "eager"))
    args = [None if a is None else b.input(f"arg{i}", TensorType(DType.from_numpy(a.dtype), a.shape))
            for i, a in enumerate(arrays)]
    out = emit(b, *args)
    outs = list(out) if isinstance(out, (list, tuple)) else [out]
    graph = b.finish(outs, [f"out{i}" for i in range(len(outs))])
    return reference.run(graph, [a for a in arrays if a is not None])


def ir_function(emit: Callable[..., Value]) -> Callable:
    """Make the per-sample emitter `emit(b, y_true, y_pred, **options)` a Keras function:
    `f(b, y_true, y_pred, ...)` adds it to `b`'s graph, `f(y_true, y_pred, ...)` computes it on
    arrays. The emitter stays reachable as `f.emit`."""
    @functools.wraps(emit)
    def function(*args, **kwargs):
        if args and isinstance(args[0], Builder):
            return emit(*args, **kwargs)
        if len(args) != 2:
            raise TypeError(f"{emit.__name__}() takes (y_true, y_pred) arrays or (b, y_true, y_pred) "
                            f"values; received {len(args)} positional arguments")
        y_true, y_pred = as_array(args[0]), as_array(args[1], integer_ok=False)
        return evaluate(lambda b, t, p: emit(b, t, p, **kwargs), y_true, y_pred)[0]

    function.emit = emit
    return function


FUNCTIONS: dict[str, Callable] = {}


def loss_function(emit: Callable[..., Value]) -> Callable:
    """`ir_function(emit)`, registered as a loss function by its name."""
    function = FUNCTIONS[emit.__name__] = ir_function(emit)
    return function


# --- per-sample loss functions ----------------------------------------------------------------

def _matched(b: Builder, y_true: Value, y_pred: Value) -> tuple[Value, Value]:
    """Labels cast to the predictions' dtype, both of one rank (Keras's squeeze-or-expand)."""
    return squeeze_or_expand_to_same_rank(b, float_like(b, y_true, y_pred), y_pred)


@loss_function
def mean_squared_error(b: Builder, y_true: Value, y_pred: Value) -> Value:
    """mean(square(y_true - y_pred), axis=-1)."""
    y_true, y_pred = _matched(b, y_true, y_pred)
    return b.reduce_mean(b.square(b.sub(y_true, y_pred)), axes=[-1])


@loss_function
def mean_absolute_error(b: Builder, y_true: Value, y_pred: Value) -> Value:
    """mean(abs(y_true - y_pred), axis=-1)."""
    y_true, y_pred = _matched(b, y_true, y_pred)
    return b.reduce_mean(b.abs(b.sub(y_true, y_pred)), axes=[-1])


@loss_function
def mean_absolute_percentage_error(b: Builder, y_true: Value, y_pred: Value) -> Value:
    """100 * mean(abs((y_true - y_pred) / maximum(abs(y_true), epsilon)), axis=-1)."""
    y_true, y_pred = _matched(b, y_true, y_pred)
    diff = b.abs(b.div(b.sub(y_true, y_pred), b.maximum(b.abs(y_true), const(b, EPSILON, y_true))))
    return b.mul(b.reduce_mean(diff, axes=[-1]), const(b, 100.0, diff))


@loss_function
def mean_squared_logarithmic_error(b: Builder, y_true: Value, y_pred: Value) -> Value:
    """mean(square(log(max(y_pred, eps) + 1) - log(max(y_true, eps) + 1)), axis=-1)."""
    y_true, y_pred = _matched(b, y_true, y_pred)
    first, second = (b.log1p(b.maximum(x, const(b, EPSILON, x))) for x in (y_pred, y_true))
    return b.reduce_mean(b.square(b.sub(first, second)), axes=[-1])


def _l2_normalize(b: Builder, x: Value, axis: int) -> Value:
    # x / max(||x||, eps), written as x * rsqrt(max(sum(x^2), eps^2)) so that a zero vector has a
    # finite gradient.
    square_sum = b.reduce_sum(b.square(x), axes=[axis], keepdims=True)
    return b.mul(x, b.rsqrt(b.maximum(square_sum, const(b, EPSILON ** 2, x))))


@loss_function
def cosine_similarity(b: Builder, y_true: Value, y_pred: Value, axis: int = -1) -> Value:
    """-sum(l2_normalize(y_true) * l2_normalize(y_pred), axis)."""
    y_true, y_pred = _matched(b, y_true, y_pred)
    product = b.mul(_l2_normalize(b, y_true, axis), _l2_normalize(b, y_pred, axis))
    return b.neg(b.reduce_sum(product, axes=[axis]))


@loss_function
def huber(b: Builder, y_true: Value, y_pred: Value, delta: float = 1.0) -> Value:
    """mean(0.5 * e^2 if |e| <= delta else delta * |e| - 0.5 * delta^2, axis=-1), e = y_pred - y_true."""
    y_true, y_pred = _matched(b, y_true, y_pred)
    error = b.sub(y_pred, y_true)
    abs_error = b.abs(error)
    quadratic = b.mul(const(b, 0.5, error), b.square(error))
    linear = b.sub(b.mul(const(b, delta, error), abs_error), const(b, 0.5 * delta * delta, error))
    return b.reduce_mean(b.select(b.less_equal(abs_error, const(b, delta, error)), quadratic, linear),
                         axes=[-1])


@loss_function
def log_cosh(b: Builder, y_true: Value, y_pred: Value) -> Value:
    """mean(log(cosh(y_pred - y_true)), axis=-1), as x + softplus(-2x) - log(2)."""
    y_true, y_pred = _matched(b, y_true, y_pred)
    x = b.sub(y_pred, y_true)
    logcosh = b.sub(b.add(x, softplus(b, b.mul(x, const(b, -2.0, x)))), const(b, float(np.log(2.0)), x))
    return b.reduce_mean(logcosh, axes=[-1])


def _hinge_labels(b: Builder, y_true: Value) -> Value:
    """Keras converts labels to -1/1 when every label in the batch is 0 or 1: y + all01 * (y - 1)."""
    is_binary = b.logical_or(b.equal(y_true, const(b, 0.0, y_true)), b.equal(y_true, const(b, 1.0, y_true)))
    all_binary = b.reduce_min(b.cast(is_binary, dtype=y_true.type.dtype), axes=all_axes(y_true))
    return b.add(y_true, b.mul(all_binary, b.sub(y_true, const(b, 1.0, y_true))))


def _hinge_margin(b: Builder, y_true: Value, y_pred: Value) -> Value:
    y_true = _hinge_labels(b, float_like(b, y_true, y_pred))
    return b.relu(b.sub(const(b, 1.0, y_pred), b.mul(y_true, y_pred)))


@loss_function
def hinge(b: Builder, y_true: Value, y_pred: Value) -> Value:
    """mean(maximum(1 - y_true * y_pred, 0), axis=-1); 0/1 labels become -1/1."""
    return b.reduce_mean(_hinge_margin(b, y_true, y_pred), axes=[-1])


@loss_function
def squared_hinge(b: Builder, y_true: Value, y_pred: Value) -> Value:
    """mean(square(maximum(1 - y_true * y_pred, 0)), axis=-1); 0/1 labels become -1/1."""
    return b.reduce_mean(b.square(_hinge_margin(b, y_true, y_pred)), axes=[-1])


@loss_function
def categorical_hinge(b: Builder, y_true: Value, y_pred: Value) -> Value:
    """maximum(max((1 - y_true) * y_pred) - sum(y_true * y_pred) + 1, 0) over the last axis."""
    y_true = float_like(b, y_true, y_pred)
    pos = b.reduce_sum(b.mul(y_true, y_pred), axes=[-1])
    neg = b.reduce_max(b.mul(b.sub(const(b, 1.0, y_true), y_true), y_pred), axes=[-1])
    return b.relu(b.add(b.sub(neg, pos), const(b, 1.0, pos)))


@loss_function
def kl_divergence(b: Builder, y_true: Value, y_pred: Value) -> Value:
    """sum(y_true * log(y_true / y_pred), axis=-1), both clipped to [epsilon, 1]."""
    y_true = clip(b, float_like(b, y_true, y_pred), EPSILON, 1.0)
    y_pred = clip(b, y_pred, EPSILON, 1.0)
    return b.reduce_sum(b.mul(y_true, b.log(b.div(y_true, y_pred))), axes=[-1])


@loss_function
def poisson(b: Builder, y_true: Value, y_pred: Value) -> Value:
    """mean(y_pred - y_true * log(y_pred + epsilon), axis=-1)."""
    y_true = float_like(b, y_true, y_pred)
    log_pred = b.log(b.add(y_pred, const(b, EPSILON, y_pred)))
    return b.reduce_mean(b.sub(y_pred, b.mul(y_true, log_pred)), axes=[-1])


def _log_probabilities(b: Builder, y_pred: Value, from_logits: bool, axis: int) -> Value:
    """log_softmax of logits; for probabilities, Keras's normalize-then-clip before the log."""
    if from_logits:
        return b.log_softmax(y_pred, axis=axis)
    normalized = b.div(y_pred, b.reduce_sum(y_pred, axes=[axis], keepdims=True))
    return b.log(clip(b, normalized, EPSILON, 1.0 - EPSILON))


def _check_axis(axis) -> None:
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise ValueError(f"`axis` must be of type `int`. Received: axis={axis} of type {type(axis)}")


@loss_function
def binary_crossentropy(b: Builder, y_true: Value, y_pred: Value, from_logits: bool = False,
                        label_smoothing: float = 0.0, axis: int = -1) -> Value:
    """mean(-(y log p + (1 - y) log(1 - p)), axis): p clipped to [eps, 1 - eps], or, from logits,
    the overflow-free max(x, 0) - x * y + log1p(exp(-|x|))."""
    _check_axis(axis)
    y_true = float_like(b, y_true, y_pred)
    if label_smoothing:
        y_true = smoothed(b, y_true, label_smoothing, 0.5)
    _check_same_shape(y_true, y_pred)
    if from_logits:
        # (max(x, 0) - x * y) first: it cancels exactly, so the small log1p term survives.
        x = y_pred
        per_element = b.add(b.sub(b.relu(x), b.mul(x, y_true)), b.log1p(b.exp(b.neg(b.abs(x)))))
    else:
        p = clip(b, y_pred, EPSILON, 1.0 - EPSILON)
        one = const(b, 1.0, p)
        log_likelihood = b.add(b.mul(y_true, b.log(p)), b.mul(b.sub(one, y_true), b.log(b.sub(one, p))))
        per_element = b.neg(log_likelihood)
    return b.reduce_mean(per_element, axes=[axis])


@loss_function
def categorical_crossentropy(b: Builder, y_true: Value, y_pred: Value, from_logits: bool = False,
                             label_smoothing: float = 0.0, axis: int = -1) -> Value:
    """-sum(y_true * log_softmax(y_pred), axis) from logits; from probabilities, the predictions
    are normalized to sum 1 and clipped to [eps, 1 - eps] first, as Keras does."""
    y_true = categorical_targets(b, "categorical_crossentropy", y_true, y_pred, label_smoothing, axis)
    log_prob = _log_probabilities(b, y_pred, from_logits, axis)
    return b.neg(b.reduce_sum(b.mul(y_true, log_prob), axes=[axis]))


def categorical_targets(b: Builder, loss: str, y_true: Value, y_pred: Value, label_smoothing: float,
                        axis: int) -> Value:
    """The one-hot (or soft) targets of a categorical `loss`, checked against the predictions
    as Keras checks them (a warning for one class) and smoothed toward 1 / num_classes."""
    _check_axis(axis)
    y_true = float_like(b, y_true, y_pred)
    if y_pred.type.shape[-1] == 1:
        warnings.warn(f"In loss {loss}, expected y_pred.shape to be (batch_size, "
                      f"num_classes) with num_classes > 1. Received: y_pred.shape="
                      f"{_shown(y_pred.type.shape)}. Consider using 'binary_crossentropy' if you "
                      "only have 2 classes.", SyntaxWarning, stacklevel=4)
    if label_smoothing:
        num_classes = y_true.type.shape[-1]
        if isinstance(num_classes, str):
            raise ValueError(f"{loss}: label_smoothing needs a known number of "
                             f"classes; y_true has shape {_shown(y_true.type.shape)}")
        y_true = smoothed(b, y_true, label_smoothing, 1.0 / num_classes)
    _check_same_shape(y_true, y_pred)
    return y_true


def smoothed(b: Builder, y_true: Value, label_smoothing: float, toward: float) -> Value:
    """y * (1 - label_smoothing) + label_smoothing * toward."""
    return b.add(b.mul(y_true, const(b, 1.0 - label_smoothing, y_true)),
                 const(b, label_smoothing * toward, y_true))


def _sparse_labels(y_true: Value, y_pred: Value, axis: int, b: Builder) -> Value:
    """Integer labels of the predictions' shape minus the class axis (a trailing 1 squeezed)."""
    _check_axis(axis)
    if axis not in (-1, y_pred.type.rank - 1):
        raise ValueError(f"sparse_categorical_crossentropy supports only the last axis as the class "
                         f"axis; received axis={axis} for y_pred of rank {y_pred.type.rank}")
    if y_true.type.rank == y_pred.type.rank and y_true.type.shape[-1] == 1:
        y_true = squeeze_last(b, y_true)
    if y_true.type.shape != y_pred.type.shape[:-1]:
        raise ValueError("Arguments `target` and `output` must have the same shape up until the "
                         f"last dimension: target.shape={_shown(y_true.type.shape)}, "
                         f"output.shape={_shown(y_pred.type.shape)}")
    return y_true if y_true.type.dtype.is_int else b.cast(y_true, dtype=DType.i32)


@loss_function
def sparse_categorical_crossentropy(b: Builder, y_true: Value, y_pred: Value, from_logits: bool = False,
                                    ignore_class: int | None = None, axis: int = -1) -> Value:
    """-log p[y_true] of integer labels (log_softmax from logits; normalized and clipped
    probabilities otherwise); 0 where the label is `ignore_class`."""
    labels = _sparse_labels(y_true, y_pred, axis, b)
    valid = None
    if ignore_class is not None:
        valid = b.not_equal(labels, const(b, ignore_class, labels))
        labels = b.select(valid, labels, const(b, 0, labels))
    num_classes = y_pred.type.shape[-1]
    if isinstance(num_classes, str):
        raise ValueError(f"sparse_categorical_crossentropy needs a known number of classes; "
                         f"y_pred has shape {_shown(y_pred.type.shape)}")
    log_prob = _log_probabilities(b, y_pred, from_logits, -1)
    picked = b.select(class_mask(b, labels, num_classes), log_prob, const(b, 0.0, log_prob))
    loss = b.neg(b.reduce_sum(picked, axes=[-1]))
    return loss if valid is None else b.select(valid, loss, const(b, 0.0, loss))


# --- reduction --------------------------------------------------------------------------------

def standardize_reduction(reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(f"Invalid value for argument `reduction`. Expected one of {set(REDUCTIONS)}. "
                         f"Received: reduction={reduction}")
    return reduction


def apply_mask(b: Builder, sample_weight: Value | None, mask: Value | None, like: Value,
               reduction) -> Value | None:
    """Fold a validity mask into the sample weights; for mean reductions valid entries weigh
    total/valid, so the mean runs over the valid entries only (Keras's rule)."""
    if mask is None:
        return sample_weight
    mask = cast_to(b, mask, like.type.dtype)
    if reduction in ("mean", "sum_over_batch_size"):
        mask = b.mul(mask, divide_no_nan(b, const(b, 1.0, mask), b.reduce_mean(mask, axes=all_axes(mask))))
    if sample_weight is None:
        return mask
    mask, sample_weight = squeeze_or_expand_to_same_rank(b, mask, cast_to(b, sample_weight, like.type.dtype))
    return b.mul(per_entry(b, sample_weight, mask), mask)


def per_entry(b: Builder, sample_weight: Value, values: Value) -> Value:
    """One weight per sample (batch,) spread over the entries of `values` of higher rank (a
    sequence output's steps): the training step always feeds per-sample weights, ones unless
    given, where Keras would pass none."""
    missing = values.type.rank - sample_weight.type.rank
    if missing <= 0:
        return sample_weight
    return b.reshape(sample_weight, shape=sample_weight.type.shape + (1,) * missing)


def reduce_weighted_values(b: Builder, values: Value, sample_weight: Value | None = None,
                           mask: Value | None = None, reduction="sum_over_batch_size") -> Value:
    """Keras 3's reduction: weight the per-sample losses, then sum ("sum"), average over every
    element ("sum_over_batch_size", "mean"), divide by the summed weights
    ("mean_with_sample_weight") or keep them (None, "none")."""
    reduction = standardize_reduction(reduction)
    sample_weight = apply_mask(b, sample_weight, mask, values, reduction)
    if sample_weight is not None:
        sample_weight = cast_to(b, sample_weight, values.type.dtype)
        values, sample_weight = squeeze_or_expand_to_same_rank(b, values, sample_weight)
        sample_weight = per_entry(b, sample_weight, values)
        values = b.mul(values, sample_weight)
    if reduction in (None, "none") or values.type.rank == 0 or values.type.shape == (0,):
        return values
    axes = all_axes(values)
    if reduction == "sum":
        return b.reduce_sum(values, axes=axes)
    if reduction == "mean_with_sample_weight" and sample_weight is not None:
        return divide_no_nan(b, b.reduce_sum(values, axes=axes),
                             b.reduce_sum(sample_weight, axes=all_axes(sample_weight)))
    return b.reduce_mean(values, axes=axes)


# --- Loss classes -----------------------------------------------------------------------------

class Loss(KerasObject):
    """Base class: `per_sample(b, y_true, y_pred) -> Value` adds the per-sample losses as IR ops
    (by default the trace of Keras's `call(y_true, y_pred)`, which subclasses users write define
    with keras.ops); `emit` adds the reduction, `__call__` evaluates on arrays."""

    def __init__(self, name: str | None = None, reduction="sum_over_batch_size", dtype=None):
        self.name = name or backend.to_snake_case(type(self).__name__)
        self.reduction = standardize_reduction(reduction)
        self.dtype = np.dtype(dtype or backend.floatx()).name

    def call(self, y_true, y_pred):
        raise NotImplementedError(f"{type(self).__name__} must define `call(y_true, y_pred)`, "
                                  f"the per-sample losses written with keras.ops")

    def per_sample(self, b: Builder, y_true: Value, y_pred: Value) -> Value:
        return tracing.emitter(self.call, f"Loss '{self.name}' ({type(self).__name__})")(
            b, y_true, y_pred)

    def mask(self, b: Builder, y_true: Value, y_pred: Value) -> Value | None:
        """Entries that count (bool), or None for all; a mask averages over the valid entries."""
        return None

    def emit(self, b: Builder, y_true: Value, y_pred: Value, sample_weight: Value | None = None,
             mask: Value | None = None) -> Value:
        """The reduced loss (f32[] unless reduction is None/"none") of one batch, as IR. `mask`
        (bool) is the Keras mask `y_pred` carries: its entries count, with the loss's own."""
        y_pred = cast_to(b, y_pred, DType.from_numpy(self.dtype))
        values = self.per_sample(b, y_true, y_pred)
        own = self.mask(b, y_true, y_pred)
        if mask is not None:
            own = mask if own is None else b.logical_and(mask, own)
        return reduce_weighted_values(b, values, sample_weight, own, self.reduction)

    def __call__(self, y_true, y_pred, sample_weight=None) -> np.ndarray:
        weights = None if sample_weight is None else as_array(sample_weight, integer_ok=False)
        return evaluate(self.emit, as_array(y_true), as_array(y_pred, integer_ok=False), weights)[0]

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "reduction": self.reduction}


class LossFunctionWrapper(Loss):
    """A loss function with fixed options as a `Loss`: one of this module's, or a function of
    `(y_true, y_pred)` written with keras.ops (traced). Labels and predictions whose ranks differ
    by a trailing 1 are squeezed or expanded to match first, as Keras does."""

    def __init__(self, fn: Callable, reduction="sum_over_batch_size", name: str | None = None,
                 dtype=None, **kwargs):
        if not callable(fn):
            raise ValueError(f"LossFunctionWrapper: `fn` must be a function of (y_true, y_pred). "
                             f"Received: fn={fn!r}")
        super().__init__(name=name or getattr(fn, "__name__", type(fn).__name__),
                         reduction=reduction, dtype=dtype)
        self.fn = fn
        self._emit = getattr(fn, "emit", None) or tracing.emitter(fn, f"Loss function "
                                                                       f"'{self.name}'")
        self._fn_kwargs = kwargs

    def per_sample(self, b: Builder, y_true: Value, y_pred: Value) -> Value:
        y_true, y_pred = squeeze_or_expand_to_same_rank(b, y_true, y_pred)
        return self._emit(b, y_true, y_pred, **self._fn_kwargs)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **self._fn_kwargs}


def _plain_class(class_name: str, fn: Callable, default_name: str) -> type:
    """A LossFunctionWrapper subclass for a function without options (Keras's constructor)."""
    def __init__(self, reduction="sum_over_batch_size", name: str = default_name, dtype=None):
        LossFunctionWrapper.__init__(self, fn, reduction=reduction, name=name, dtype=dtype)

    doc = f"Keras's `{class_name}`: `{fn.__name__}` reduced over the batch. {fn.__doc__}"
    return type(class_name, (LossFunctionWrapper,), {"__init__": __init__, "__doc__": doc,
                                                     "__module__": __name__})


MeanSquaredError = _plain_class("MeanSquaredError", mean_squared_error, "mean_squared_error")
MeanAbsoluteError = _plain_class("MeanAbsoluteError", mean_absolute_error, "mean_absolute_error")
MeanAbsolutePercentageError = _plain_class("MeanAbsolutePercentageError", mean_absolute_percentage_error,
                                           "mean_absolute_percentage_error")
MeanSquaredLogarithmicError = _plain_class("MeanSquaredLogarithmicError", mean_squared_logarithmic_error,
                                           "mean_squared_logarithmic_error")
LogCosh = _plain_class("LogCosh", log_cosh, "log_cosh")
Hinge = _plain_class("Hinge", hinge, "hinge")
SquaredHinge = _plain_class("SquaredHinge", squared_hinge, "squared_hinge")
CategoricalHinge = _plain_class("CategoricalHinge", categorical_hinge, "categorical_hinge")
KLDivergence = _plain_class("KLDivergence", kl_divergence, "kl_divergence")
Poisson = _plain_class("Poisson", poisson, "poisson")


class CosineSimilarity(LossFunctionWrapper):
    """Keras's `CosineSimilarity`: the reduced `cosine_similarity` along `axis`."""

    def __init__(self, axis: int = -1, reduction="sum_over_batch_size", name: str = "cosine_similarity",
                 dtype=None):
        super().__init__(cosine_similarity, reduction=reduction, name=name, dtype=dtype, axis=axis)
        self.axis = axis


class Huber(LossFunctionWrapper):
    """Keras's `Huber`: the reduced `huber` loss, quadratic within `delta`, linear beyond."""

    def __init__(self, delta: float = 1.0, reduction="sum_over_batch_size", name: str = "huber_loss",
                 dtype=None):
        super().__init__(huber, reduction=reduction, name=name, dtype=dtype, delta=delta)
        self.delta = delta


class BinaryCrossentropy(LossFunctionWrapper):
    """Keras's `BinaryCrossentropy` of 0/1 targets and probabilities (or logits)."""

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1,
                 reduction="sum_over_batch_size", name: str = "binary_crossentropy", dtype=None):
        super().__init__(binary_crossentropy, reduction=reduction, name=name, dtype=dtype,
                         from_logits=from_logits, label_smoothing=label_smoothing, axis=axis)
        self.from_logits, self.label_smoothing, self.axis = from_logits, label_smoothing, axis


class CategoricalCrossentropy(LossFunctionWrapper):
    """Keras's `CategoricalCrossentropy` of one-hot (or soft) targets."""

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1,
                 reduction="sum_over_batch_size", name: str = "categorical_crossentropy", dtype=None):
        super().__init__(categorical_crossentropy, reduction=reduction, name=name, dtype=dtype,
                         from_logits=from_logits, label_smoothing=label_smoothing, axis=axis)
        self.from_logits, self.label_smoothing, self.axis = from_logits, label_smoothing, axis


class SparseCategoricalCrossentropy(LossFunctionWrapper):
    """Keras's `SparseCategoricalCrossentropy` of integer class indices; with `ignore_class`, the
    mean runs over the other labels only."""

    def __init__(self, from_logits: bool = False, ignore_class: int | None = None,
                 reduction="sum_over_batch_size", name: str = "sparse_categorical_crossentropy", dtype=None):
        super().__init__(sparse_categorical_crossentropy, reduction=reduction, name=name, dtype=dtype,
                         from_logits=from_logits, ignore_class=ignore_class)
        self.from_logits, self.ignore_class = from_logits, ignore_class

    def mask(self, b: Builder, y_true: Value, y_pred: Value) -> Value | None:
        if self.ignore_class is None:
            return None
        labels = _sparse_labels(y_true, y_pred, -1, b)
        return b.not_equal(labels, const(b, self.ignore_class, labels))


# The focal losses live in their own module (it imports the helpers above); re-exported here.
from nncompile.keras.focal_losses import (  # noqa: E402, F401
    BinaryFocalCrossentropy, CategoricalFocalCrossentropy, binary_focal_crossentropy,
    categorical_focal_crossentropy)
from nncompile.keras.region_losses import (  # noqa: E402, F401
    REGION_LOSSES, CategoricalGeneralizedCrossEntropy, Circle, Dice, Tversky,
    categorical_generalized_cross_entropy, circle, dice, tversky)


# --- identifiers ------------------------------------------------------------------------------

LOSS_CLASSES = (MeanSquaredError, MeanAbsoluteError, MeanAbsolutePercentageError, MeanSquaredLogarithmicError,
                CosineSimilarity, Huber, LogCosh, Hinge, SquaredHinge, CategoricalHinge, KLDivergence,
                Poisson, BinaryCrossentropy, CategoricalCrossentropy, SparseCategoricalCrossentropy,
                BinaryFocalCrossentropy, CategoricalFocalCrossentropy, *REGION_LOSSES)
_CLASS_OF_FUNCTION = {cls().fn.__name__: cls for cls in LOSS_CLASSES}
_ALIASES = {"bce": "binary_crossentropy", "BCE": "binary_crossentropy", "kld": "kl_divergence",
            "KLD": "kl_divergence", "mae": "mean_absolute_error", "MAE": "mean_absolute_error",
            "mse": "mean_squared_error", "MSE": "mean_squared_error",
            "mape": "mean_absolute_percentage_error", "MAPE": "mean_absolute_percentage_error",
            "msle": "mean_squared_logarithmic_error", "MSLE": "mean_squared_logarithmic_error",
            # Keras 2 names still used by tutorials
            "logcosh": "log_cosh", "kullback_leibler_divergence": "kl_divergence", "huber_loss": "huber"}
_BY_NAME: dict[str, type] = {cls.__name__: cls for cls in LOSS_CLASSES}
_BY_NAME.update(_CLASS_OF_FUNCTION)
_BY_NAME.update({alias: _CLASS_OF_FUNCTION[name] for alias, name in _ALIASES.items()})
_CATALOG = Catalog("loss", Loss, "keras.losses", _BY_NAME, "of IR (a Loss subclass)")


def get(identifier) -> Loss | None:
    """The Loss for a name ("mse", "categorical_crossentropy", "BinaryCrossentropy", ...), a config
    dict, a Loss instance or class, one of this module's loss functions, or a function of
    `(y_true, y_pred)` written with keras.ops (as Keras wraps it); None gives None."""
    name = getattr(identifier, "__name__", None)
    if name in FUNCTIONS and FUNCTIONS[name] is identifier:
        return _CLASS_OF_FUNCTION[name]()
    loss = _CATALOG.get(identifier)
    if loss is not None and not isinstance(loss, Loss):
        return LossFunctionWrapper(loss)
    return loss


def serialize(loss: Loss) -> dict:
    """Keras 3's config dict of a Loss."""
    return _CATALOG.serialize(get(loss))


def deserialize(config) -> Loss | None:
    """The Loss of a config written by `serialize` (or any identifier `get` takes)."""
    return get(config)


# --- target checks ----------------------------------------------------------------------------

def _function_name(loss: Loss) -> str:
    return loss.fn.__name__ if isinstance(loss, LossFunctionWrapper) else loss.name


def _to_categorical_advice(name: str, y_shape: tuple, num_classes) -> str:
    return (f"You are passing a target array of shape {y_shape} while using as loss `{name}`. "
            f"`{name}` expects targets to be binary matrices (1s and 0s) of shape (samples, "
            f"{num_classes}). If your targets are integer classes, you can convert them to the "
            "expected format via:\n```\nfrom keras.utils import to_categorical\n"
            "y_binary = to_categorical(y_int)\n```\n\nAlternatively, you can use the loss function "
            "`sparse_categorical_crossentropy` instead, which does expect integer targets.")


def _check_sparse_labels(y: np.ndarray, num_classes) -> None:
    if y.dtype.kind == "f":
        fractional = y[~(np.isfinite(y) & (y == np.round(y)))]
        if fractional.size:
            raise ValueError("sparse_categorical_crossentropy expects integer class indices as "
                             f"targets; received values such as {fractional.flat[0]!r}. For one-hot or "
                             "probability targets use the loss `categorical_crossentropy`.")
    if num_classes is not None and y.size:
        bad = y[(y < 0) | (y >= num_classes)]
        if bad.size:
            raise ValueError(f"Received a label value of {bad.flat[0]:g} which is outside the valid "
                             f"range of [0, {num_classes}). Label values: {np.unique(bad)[:10]}")


def _fits(actual: tuple, expected: tuple) -> bool:
    """Same rank and equal sizes, None in `expected` matching any size."""
    return len(actual) == len(expected) and all(e is None or a == e for a, e in zip(actual, expected))


def _same_after_squeeze(target: tuple, output: tuple) -> bool:
    """Per-sample shapes equal once a trailing 1 of the longer one is dropped (Keras's rule)."""
    if len(target) == len(output) + 1 and target[-1:] == (1,):
        target = target[:-1]
    elif len(output) == len(target) + 1 and output[-1:] == (1,):
        output = output[:-1]
    return _fits(target, output)


def check_targets(loss, y_true, output_shape: Sequence) -> None:
    """Raise a ValueError that names the loss and suggests the right one when the targets `y_true`
    (all samples) do not fit a model output of `output_shape` (batch dimension first; None or a
    symbol for sizes not known)."""
    loss = get(loss)
    y = np.asarray(y_true)
    name = _function_name(loss)
    output = tuple(None if d is None or isinstance(d, str) else int(d) for d in output_shape)
    target, per_sample = y.shape[1:], output[1:]
    classes = per_sample[-1] if per_sample else None
    mismatch = (f"A target array with shape {y.shape} was passed for an output of shape {output} "
                f"while using as loss `{name}`.")
    index_shape = (y.shape[0], *per_sample[:-1])
    class_indices = classes not in (1, None) and (_fits(target, per_sample[:-1])
                                                  or _fits(target, per_sample[:-1] + (1,)))
    if isinstance(loss, Circle) and target in ((), (1,)):
        return   # one integer label a sample, whatever the embeddings' size
    if isinstance(loss, (SparseCategoricalCrossentropy, CategoricalGeneralizedCrossEntropy)):
        if _fits(target, per_sample) and classes not in (1, None):
            raise ValueError(f"{mismatch} `{name}` expects integer class indices of shape {index_shape}; "
                             "for one-hot targets use the loss `categorical_crossentropy` instead.")
        if not class_indices and not (classes == 1 and _fits(target, per_sample)):
            raise ValueError(f"{mismatch} This loss expects integer class indices of shape {index_shape}.")
        _check_sparse_labels(y, classes)
    elif class_indices and isinstance(loss, (CategoricalCrossentropy, CategoricalFocalCrossentropy)):
        raise ValueError(_to_categorical_advice(name, y.shape, classes))
    elif class_indices and isinstance(loss, (BinaryCrossentropy, BinaryFocalCrossentropy)):
        raise ValueError(f"{mismatch} For integer class indices with {classes} classes use the loss "
                         "`sparse_categorical_crossentropy` (for one-hot targets, "
                         f"`categorical_crossentropy`); `{name}` expects targets of the "
                         "output's shape.")
    elif not _same_after_squeeze(target, per_sample):
        raise ValueError(f"{mismatch} This loss expects targets to have the same shape as the output.")

"""Normalization layers: BatchNormalization, LayerNormalization, GroupNormalization,
RMSNormalization, and UnitNormalization (which has no weights).

The first two emit `(x - mean) * (gamma * rsqrt(var + epsilon)) + beta`, grouping the per-channel factor so
that, at inference, it is a function of parameters alone and folds into a constant. With
`rms_scaling`, LayerNormalization emits `x * (gamma * rsqrt(mean(x^2) + epsilon))` instead.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from nncompile.ir import Builder, DType, Value
from nncompile.keras import initializers
from nncompile.keras.layers.base import Layer, Mask, Variable
from nncompile.keras.ops import nn as nn_ops
from nncompile.keras.layers.arguments import (ArgumentError, ArgumentTypeError, boolean,
                                              legacy_args, number, option_weight, owner_of,
                                              weight_configs, weight_options)

_LEGACY_BN = {"beta_init": "beta_initializer", "gamma_init": "gamma_initializer"}


def _epsilon(value, owner: str) -> float:
    """A negative epsilon can make `var + epsilon` negative, and its rsqrt NaN."""
    return number(value, "epsilon", owner, "a float >= 0", lambda v: v >= 0)


def _axis_argument(axis, owner: str) -> int | list[int]:
    """An `axis` argument as Keras keeps it: an int, or a non-empty list of ints."""
    axes = [axis] if isinstance(axis, (int, np.integer)) else axis
    if (not isinstance(axes, (list, tuple)) or not axes
            or any(isinstance(a, bool) or not isinstance(a, (int, np.integer)) for a in axes)):
        raise ArgumentTypeError(f"{owner}: the `axis` argument must be an integer or a "
                                f"non-empty list of integers. Received: axis={axis!r}")
    return int(axis) if isinstance(axis, (int, np.integer)) else [int(a) for a in axes]


def _normalize_axes(layer: Layer, axes: Sequence[int], input_shape) -> tuple[int, ...]:
    """`axes` of `input_shape` made non-negative, in the order given; each must have a known size."""
    rank = len(input_shape)
    for a in axes:
        if not -rank <= a < rank:
            raise ValueError(f"Layer '{layer.name}' ({type(layer).__name__}): axis {a} is out of "
                             f"range for an input of rank {rank} (shape {tuple(input_shape)})")
        if input_shape[a] is None:
            raise ValueError(f"Layer '{layer.name}' ({type(layer).__name__}): axis {a} of the input "
                             f"should have a defined dimension but the layer received an input with "
                             f"shape {tuple(input_shape)}")
    normalized = [a % rank for a in axes]
    if len(set(normalized)) != len(normalized):
        raise ValueError(f"Layer '{layer.name}' ({type(layer).__name__}): duplicate axis in "
                         f"axis={list(axes)}")
    return tuple(normalized)


def _along(b: Builder, layer: Layer, var: Variable | None, axes: tuple[int, ...], rank: int) -> Value | None:
    """A per-`axes` parameter (of the sizes of `axes`, in their given order) reshaped to broadcast
    against an input of `rank` (None stays None).

    Like Keras, this reshapes and does not transpose: for axes given out of order the parameter's
    elements are laid out over the axes in increasing order.
    """
    if var is None:
        return None
    value = layer.param(b, var)
    if axes == (rank - 1,):
        return value
    sizes = dict(zip(axes, var.shape))
    return b.reshape(value, shape=tuple(sizes.get(d, 1) for d in range(min(axes), rank)))


def _normalize(b: Builder, centered: Value, var: Value, epsilon: float, gamma: Value | None,
               beta: Value | None) -> Value:
    factor = b.rsqrt(b.add(var, b.scalar(epsilon, like=var)))
    if gamma is not None:
        factor = b.mul(factor, gamma)
    y = b.mul(centered, factor)
    return y if beta is None else b.add(y, beta)


def _scale_and_offset(layer: Layer, shape: tuple[int, ...], scale: bool,
                      center: bool) -> tuple[Variable | None, Variable | None]:
    """The gamma (if `scale`) and beta (if `center`) weights of `layer`, in that order."""
    return option_weight(layer, "gamma", shape, scale), option_weight(layer, "beta", shape, center)


def _moments(b: Builder, x: Value, axes: tuple[int, ...]) -> tuple[Value, Value, Value]:
    """x minus its mean over `axes`, the (biased) variance and the mean over `axes`, kept
    broadcastable."""
    mean = b.reduce_mean(x, axes=axes, keepdims=True)
    centered = b.sub(x, mean)
    return centered, b.reduce_mean(b.square(centered), axes=axes, keepdims=True), mean


def _masked_moments(b: Builder, x: Value, mask: Mask, axes: tuple[int, ...]
                    ) -> tuple[Value, Value, Value]:
    """Keras's `_moments(inputs, mask)`: mean and variance over the kept steps only, each sum
    divided by (kept count + 1e-7); the centered value is x minus that mean everywhere."""
    keep = b.op("broadcast", b.reshape(mask.keep(b), shape=mask.value.type.shape + (1,)),
                shape=x.type.shape)
    zero = b.scalar(0.0, x)
    count = b.add(b.reduce_sum(b.cast(keep, dtype=x.type.dtype), axes=axes, keepdims=True),
                  b.scalar(1e-7, x))
    mean = b.div(b.reduce_sum(b.select(keep, x, zero), axes=axes, keepdims=True), count)
    centered = b.sub(x, mean)
    var = b.div(b.reduce_sum(b.square(b.select(keep, centered, zero)), axes=axes, keepdims=True),
                count)
    return centered, var, mean


class BatchNormalization(Layer):
    """Normalize each feature along `axis` by batch statistics (training) or moving ones.

    Weights, in order: gamma (if `scale`), beta (if `center`), moving_mean, moving_variance; the
    moving statistics are not trainable. With `training=True` (and a trainable layer) the output
    uses the mean and variance of the batch over every axis but `axis`.

    Example:

    >>> x = np.random.rand(8, 4).astype("float32")
    >>> bn = BatchNormalization()
    >>> bn(x).shape
    (8, 4)
    >>> [w.shape for w in bn.get_weights()]
    [(4,), (4,), (4,), (4,)]
    >>> bool(abs(bn(x, training=True).mean(axis=0)).max() < 1e-5)
    True
    """

    @legacy_args(_LEGACY_BN)
    def __init__(self, axis: int = -1, momentum: float = 0.99, epsilon: float = 1e-3,
                 center: bool = True, scale: bool = True, beta_initializer="zeros",
                 gamma_initializer="ones", moving_mean_initializer="zeros",
                 moving_variance_initializer="ones", beta_regularizer=None, gamma_regularizer=None,
                 beta_constraint=None, gamma_constraint=None, **kwargs):
        super().__init__(**kwargs)
        owner = owner_of(self)
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise ArgumentTypeError(f"{owner}: the `axis` argument must be an integer. "
                                    f"Received: axis={axis!r}")
        self.axis = int(axis)
        self.momentum = number(momentum, "momentum", owner, "a float between 0 and 1",
                               lambda v: 0 <= v <= 1)
        self.epsilon = _epsilon(epsilon, owner)
        self.center = boolean(center, "center", owner)
        self.scale = boolean(scale, "scale", owner)
        weight_options(self, "beta", beta_initializer, beta_regularizer, beta_constraint)
        weight_options(self, "gamma", gamma_initializer, gamma_regularizer, gamma_constraint)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer)

    def build(self, input_shape) -> None:
        (axis,) = _normalize_axes(self, (self.axis,), input_shape)
        shape = (input_shape[axis],)
        self.gamma, self.beta = _scale_and_offset(self, shape, self.scale, self.center)
        self.moving_mean = self.add_weight(shape=shape, initializer=self.moving_mean_initializer,
                                           trainable=False, name="moving_mean")
        self.moving_variance = self.add_weight(shape=shape,
                                               initializer=self.moving_variance_initializer,
                                               trainable=False, name="moving_variance")
        self.built = True

    supports_masking = True   # the mask passes on; training statistics skip masked steps

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        return self._emit(b, inputs, None, training)

    def emit_masked(self, b: Builder, inputs: Value, mask: Mask, training: bool = False) -> Value:
        return self._emit(b, inputs, mask, training)

    def _emit(self, b: Builder, inputs: Value, mask: Mask | None, training: bool) -> Value:
        rank = inputs.type.rank
        axes = (self.axis % rank,)
        if training and self.trainable:
            reduced = tuple(d for d in range(rank) if d not in axes)
            centered, var, mean = (_moments(b, inputs, reduced) if mask is None
                                   else _masked_moments(b, inputs, mask, reduced))
            self._follow(b, self.moving_mean, mean)
            self._follow(b, self.moving_variance, var)
        else:
            centered = b.sub(inputs, _along(b, self, self.moving_mean, axes, rank))
            var = _along(b, self, self.moving_variance, axes, rank)
        return _normalize(b, centered, var, self.epsilon, _along(b, self, self.gamma, axes, rank),
                          _along(b, self, self.beta, axes, rank))

    def _follow(self, b: Builder, moving: Variable, batch: Value) -> None:
        """moving <- moving * momentum + batch * (1 - momentum), after each training run."""
        old = self.param(b, moving)
        new = b.add(b.mul(old, b.scalar(self.momentum, old)),
                    b.mul(b.reshape(batch, shape=old.type.shape), b.scalar(1 - self.momentum, old)))
        b.update(old, new)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis, "momentum": self.momentum,
                "epsilon": self.epsilon, "center": self.center, "scale": self.scale,
                "moving_mean_initializer": initializers.serialize(self.moving_mean_initializer),
                "moving_variance_initializer": initializers.serialize(self.moving_variance_initializer),
                **weight_configs(self, "beta", "gamma")}


class LayerNormalization(Layer):
    """Normalize each sample over `axis` (an int or a list of ints) by its own mean and variance.

    Weights, in order: gamma (if `scale`), beta (if `center`), of the sizes of the normalized
    axes in the order `axis` gives them. With `rms_scaling`, `center` and `scale` are ignored:
    the output is `x * rsqrt(mean(x^2) + epsilon) * gamma`, not centred, with gamma only.

    Example:

    >>> x = np.random.rand(2, 3, 4).astype("float32")
    >>> ln = LayerNormalization(axis=[1, 2])
    >>> y = ln(x)
    >>> [w.shape for w in ln.get_weights()]
    [(3, 4), (3, 4)]
    >>> bool(abs(y.reshape(2, -1).mean(axis=1)).max() < 1e-5)
    True
    """

    supports_masking = True   # as in Keras: the mask passes on, unused

    def __init__(self, axis: int | Sequence[int] = -1, epsilon: float = 1e-3, center: bool = True,
                 scale: bool = True, rms_scaling: bool = False, beta_initializer="zeros",
                 gamma_initializer="ones", beta_regularizer=None, gamma_regularizer=None,
                 beta_constraint=None, gamma_constraint=None, **kwargs):
        super().__init__(**kwargs)
        owner = owner_of(self)
        self.axis = _axis_argument(axis, owner)
        self.epsilon = _epsilon(epsilon, owner)
        self.center = boolean(center, "center", owner)
        self.scale = boolean(scale, "scale", owner)
        self.rms_scaling = boolean(rms_scaling, "rms_scaling", owner)
        weight_options(self, "beta", beta_initializer, beta_regularizer, beta_constraint)
        weight_options(self, "gamma", gamma_initializer, gamma_regularizer, gamma_constraint)

    def _axes(self) -> list[int]:
        return [self.axis] if isinstance(self.axis, int) else self.axis

    def build(self, input_shape) -> None:
        axes = _normalize_axes(self, self._axes(), input_shape)
        shape = tuple(input_shape[a] for a in axes)
        self.gamma, self.beta = _scale_and_offset(self, shape, self.scale or self.rms_scaling,
                                                  self.center and not self.rms_scaling)
        self.built = True

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        rank = inputs.type.rank
        axes = tuple(a % rank for a in self._axes())
        gamma, beta = _along(b, self, self.gamma, axes, rank), _along(b, self, self.beta, axes, rank)
        reduced = tuple(sorted(axes))
        if self.rms_scaling:
            mean_square = b.reduce_mean(b.square(inputs), axes=reduced, keepdims=True)
            return _normalize(b, inputs, mean_square, self.epsilon, gamma, None)
        centered, var, _ = _moments(b, inputs, reduced)
        return _normalize(b, centered, var, self.epsilon, gamma, beta)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale, "rms_scaling": self.rms_scaling,
                **weight_configs(self, "beta", "gamma")}


class GroupNormalization(Layer):
    """Normalize each sample over groups of channels: the `axis` channels are split into `groups`
    consecutive groups, and each group is normalized by its mean and variance over the group's
    channels and every other non-batch axis (`groups=-1` is instance normalization, one channel a
    group). Weights, in order: gamma (if `scale`), beta (if `center`), one per channel.

    Example:

    >>> x = np.random.rand(2, 5, 6).astype("float32")
    >>> y = GroupNormalization(groups=3)(x)
    >>> bool(abs(y.reshape(2, 5, 3, 2).mean(axis=(1, 3))).max() < 1e-5)
    True
    """

    supports_masking = True   # as in Keras: the mask passes on, unused

    def __init__(self, groups: int = 32, axis: int = -1, epsilon: float = 1e-3,
                 center: bool = True, scale: bool = True, beta_initializer="zeros",
                 gamma_initializer="ones", beta_regularizer=None, gamma_regularizer=None,
                 beta_constraint=None, gamma_constraint=None, **kwargs):
        super().__init__(**kwargs)
        owner = owner_of(self)
        if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or (
                groups <= 0 and groups != -1):
            raise ArgumentError(f"{owner}: Received an invalid value for argument `groups`, "
                                f"expected a positive integer (or `-1` for instance "
                                f"normalization). Received: groups={groups!r}")
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise ArgumentTypeError(f"{owner}: the `axis` argument must be an integer. "
                                    f"Received: axis={axis!r}")
        self.groups, self.axis = int(groups), int(axis)
        self.epsilon = _epsilon(epsilon, owner)
        self.center = boolean(center, "center", owner)
        self.scale = boolean(scale, "scale", owner)
        weight_options(self, "beta", beta_initializer, beta_regularizer, beta_constraint)
        weight_options(self, "gamma", gamma_initializer, gamma_regularizer, gamma_constraint)

    def build(self, input_shape) -> None:
        if self.axis in (0, -len(input_shape)):
            raise ValueError(f"{owner_of(self)}: `axis` {self.axis} is the batch axis; expected "
                             f"the channels axis. Received: input_shape={tuple(input_shape)}")
        (axis,) = _normalize_axes(self, (self.axis,), input_shape)
        channels = input_shape[axis]
        if self.groups == -1:
            self.groups = channels
        if channels < self.groups:
            raise ValueError(f"{owner_of(self)}: Number of groups ({self.groups}) cannot be more "
                             f"than the number of channels ({channels}).")
        if channels % self.groups:
            raise ValueError(f"{owner_of(self)}: Number of groups ({self.groups}) must be a "
                             f"multiple of the number of channels ({channels}).")
        self.gamma, self.beta = _scale_and_offset(self, (channels,), self.scale, self.center)
        self.built = True

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        shape, rank = inputs.type.shape, inputs.type.rank
        axis = self.axis % rank
        grouped = b.reshape(inputs, shape=shape[:axis] + (self.groups, shape[axis] // self.groups)
                            + shape[axis + 1:])
        reduced = tuple(d for d in range(1, rank + 1) if d != axis)
        centered, var, _ = _moments(b, grouped, reduced)
        normalized = b.reshape(_normalize(b, centered, var, self.epsilon, None, None), shape=shape)
        gamma, beta = (_along(b, self, v, (axis,), rank) for v in (self.gamma, self.beta))
        if gamma is not None:
            normalized = b.mul(normalized, gamma)
        return normalized if beta is None else b.add(normalized, beta)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "groups": self.groups, "axis": self.axis,
                "epsilon": self.epsilon, "center": self.center, "scale": self.scale,
                **weight_configs(self, "beta", "gamma")}


class UnitNormalization(Layer):
    """Scales each input to unit L2 norm along `axis` (an int or a list of them):
    `x / sqrt(max(sum(x ** 2), 1e-12))`, as Keras 3's `ops.normalize` does.

    >>> UnitNormalization()(np.array([[3.0, 4.0]], "float32")).tolist()
    [[0.6000000238418579, 0.800000011920929]]
    """

    def __init__(self, axis: int | Sequence[int] = -1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, (list, tuple)):
            self.axis = [int(a) for a in axis]
        elif isinstance(axis, (int, np.integer)) and not isinstance(axis, bool):
            self.axis = int(axis)
        else:
            raise ArgumentTypeError(f"Layer '{self.name}' (UnitNormalization): invalid value for "
                                    f"`axis` argument: expected an int or a list/tuple of ints. "
                                    f"Received: axis={axis!r}")

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        rank = inputs.type.rank
        axes = [self.axis] if isinstance(self.axis, int) else self.axis
        if any(not -rank < a < rank or a % rank == 0 for a in axes):
            raise ValueError(f"Layer '{self.name}' (UnitNormalization): `axis` {self.axis} does not "
                             f"name a non-batch axis of its input of rank {rank}")
        x = inputs if inputs.type.dtype.is_float else b.cast(inputs, dtype=DType.from_numpy(self.dtype))
        squares = b.reduce_sum(b.square(x), axes=[a % rank for a in axes], keepdims=True)
        floor = b.maximum(squares, b.scalar(1e-12, squares))
        return b.mul(x, b.broadcast(b.rsqrt(floor), shape=list(x.type.shape)))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis}


class RMSNormalization(Layer):
    """Scales each sample by the root mean square over `axis` (an int or a list of ints), as
    Keras 3: `x * rsqrt(mean(x ** 2) + epsilon) * scale`, with one learned `scale` of the axes'
    sizes (ones at first), multiplied as numpy broadcasts it (Keras's `ops.rms_normalization`).

    >>> RMSNormalization()(np.array([[3.0, 4.0]], "float32")).round(4).tolist()
    [[0.8485000133514404, 1.1313999891281128]]
    """

    def __init__(self, axis: int | Sequence[int] = -1, epsilon: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        owner = owner_of(self)
        self.axis = _axis_argument(axis, owner)
        self.epsilon = _epsilon(epsilon, owner)

    def build(self, input_shape) -> None:
        # As Keras: the axes become a sorted list, and the scale has their sizes in that order.
        self.axis = sorted(self.axis) if isinstance(self.axis, list) else [self.axis]
        _normalize_axes(self, self.axis, input_shape)
        self.scale = self.add_weight(shape=tuple(input_shape[a] for a in self.axis), initializer="ones",
                                     name="scale")
        self.built = True

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        return nn_ops.rms_normalization.__wrapped__(b, inputs, scale=self.param(b, self.scale), axis=self.axis,
                                                    epsilon=self.epsilon)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis, "epsilon": self.epsilon}

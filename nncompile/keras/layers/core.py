"""Core layers: Dense, Activation, Dropout, Flatten, Reshape, Permute, Embedding, Masking, Identity, and
the activation layers ReLU, LeakyReLU, ELU, PReLU and Softmax."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from nncompile.ir import Builder, DType, TensorType, Value
from nncompile.keras import activations
from nncompile.keras.layers.base import Layer, Mask
from nncompile.keras.layers.arguments import (ArgumentError, boolean, check_data_format, integer,
                                              legacy_args, number, option_weight, owner_of,
                                              positive_int, shape_tuple, warn_legacy,
                                              weight_configs, weight_options)

_LEGACY_DENSE = {"output_dim": "units", "init": "kernel_initializer",
                 "W_regularizer": "kernel_regularizer", "b_regularizer": "bias_regularizer",
                 "W_constraint": "kernel_constraint", "b_constraint": "bias_constraint",
                 "bias": "use_bias"}
_LEGACY_EMBEDDING = {"init": "embeddings_initializer", "W_regularizer": "embeddings_regularizer",
                     "W_constraint": "embeddings_constraint"}


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _as_float(b: Builder, x: Value, dtype: str) -> Value:
    """Integer inputs of a float computation are cast, as Keras promotes them."""
    return x if x.type.dtype.is_float else b.cast(x, dtype=DType.from_numpy(dtype))


class Dense(Layer):
    """Densely connected layer: `activation(inputs @ kernel + bias)`, kernel (in, units).

    On inputs of rank > 2 it applies to the last axis: (batch, d0, in) -> (batch, d0, units).

    Example:

    >>> x = np.random.rand(4, 16).astype("float32")
    >>> Dense(8, activation="relu")(x).shape
    (4, 8)
    >>> Dense(3)(np.random.rand(2, 5, 16).astype("float32")).shape
    (2, 5, 3)
    """

    supports_masking = True   # as in Keras: the mask passes on
    acts_per_step = True

    @legacy_args(_LEGACY_DENSE)
    def __init__(self, units: int, activation=None, use_bias: bool = True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, kernel_constraint=None,
                 bias_constraint=None, **kwargs):
        super().__init__(**kwargs)
        owner = owner_of(self)
        self.units = positive_int(units, "units", owner)
        self.activation = activations.get(activation)
        self.use_bias = boolean(use_bias, "use_bias", owner)
        weight_options(self, "kernel", kernel_initializer, kernel_regularizer, kernel_constraint)
        weight_options(self, "bias", bias_initializer, bias_regularizer, bias_constraint)

    def build(self, input_shape) -> None:
        if len(input_shape) < 2:
            raise ValueError(f"Input 0 of layer '{self.name}' (Dense) is incompatible with the "
                             f"layer: expected min_ndim=2, found ndim={len(input_shape)}. "
                             f"Full shape received: {tuple(input_shape)}")
        if input_shape[-1] is None:
            raise ValueError(f"The last dimension of the inputs to a Dense layer should be defined. "
                             f"Found None. Full input shape received: {tuple(input_shape)}")
        self.kernel = option_weight(self, "kernel", (input_shape[-1], self.units))
        self.bias = option_weight(self, "bias", (self.units,), self.use_bias)
        self.built = True

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        y = b.matmul(_as_float(b, inputs, self.dtype), self.param(b, self.kernel))
        if self.bias is not None:
            y = b.add(y, self.param(b, self.bias))
        return self.activation(b, y)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units,
                "activation": activations.serialize(self.activation), "use_bias": self.use_bias,
                **weight_configs(self, "kernel", "bias")}


class Activation(Layer):
    """Applies an activation function (a name, None, or an emitter `(b, x) -> Value`).

    Example:

    >>> Activation("relu")(np.array([[-1.0, 2.0]], "float32")).tolist()
    [[0.0, 2.0]]
    """

    supports_masking = True   # as in Keras: the mask passes on
    acts_per_step = True

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = activations.get(activation)

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        return self.activation(b, inputs)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "activation": activations.serialize(self.activation)}


SEED_INPUT = "seed"


def stream_key(seed: int | None, spare: int = 0) -> int:
    """A random layer's stream: its seed, else a draw from numpy's generator (which
    keras.utils.set_random_seed makes reproducible); `spare` keys above it stay free for the
    layer's other streams (a recurrent cell's per-gate masks)."""
    return seed if seed is not None else int(np.random.randint(0, 2**31 - spare))


def seed_input(b: Builder) -> Value:
    """The graph's i64 scalar input that random ops draw from (added on first use)."""
    for v in b.graph.inputs:
        if v.name == SEED_INPUT:
            return v
    return b.input(SEED_INPUT, TensorType(DType.i64, ()))


class Dropout(Layer):
    """Sets a fraction `rate` of inputs to 0 during training, scaling the rest by 1 / (1 - rate).

    At inference it is the identity and emits nothing. In training the mask comes from the
    counter-based `random_uniform` op, keyed by the layer's own stream (its `seed`, or a draw made
    when it is created) and drawn from the graph's `seed` input, which the training step sets
    anew for every batch.

    Example:

    >>> x = np.ones((2, 3), "float32")
    >>> bool((Dropout(0.5)(x) == x).all())
    True
    >>> sorted(set(Dropout(0.5)(np.ones((4, 1000), "float32"), training=True).ravel().tolist()))
    [0.0, 2.0]
    """

    supports_masking = True   # as in Keras: the mask passes on

    @legacy_args({"p": "rate"})
    def __init__(self, rate: float, noise_shape: Sequence[int | None] | None = None,
                 seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        owner = owner_of(self)
        self.rate = number(rate, "rate", owner, "a float value between 0 and 1",
                           lambda v: 0 <= v <= 1)
        self.noise_shape = None if noise_shape is None else shape_tuple(noise_shape, "noise_shape", owner)
        # Elementwise draws are independent per step too; a noise_shape would span the steps.
        self.acts_per_step = self.noise_shape is None
        self.seed = None if seed is None else integer(seed, "seed", owner)
        self._key = stream_key(self.seed)

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        if not training or self.rate == 0:
            return inputs
        if self.rate == 1:
            return b.mul(inputs, b.scalar(0.0, inputs))
        return b.mul(inputs, b.mul(self.kept(b, inputs), b.scalar(1 / (1 - self.rate), inputs)))

    def kept(self, b: Builder, inputs: Value) -> Value:
        """1 where an input is kept, 0 where it is dropped (drawn in `noise_shape`, broadcast), in
        the inputs' dtype."""
        dims = inputs.type.shape
        shape = dims if self.noise_shape is None else tuple(
            d if n is None else n for d, n in zip(dims, self.noise_shape))
        draws = b.op("random_uniform", seed_input(b), shape=shape, key=self._key)
        return b.cast(b.op("greater_equal", draws, b.scalar(self.rate, draws)), dtype=inputs.type.dtype)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate": self.rate, "seed": self.seed,
                "noise_shape": self.noise_shape}


class Flatten(Layer):
    """Flattens every axis but the batch: (batch, d1, ..., dn) -> (batch, d1 * ... * dn).

    Example:

    >>> Flatten()(np.zeros((2, 3, 4), "float32")).shape
    (2, 12)
    """

    def __init__(self, data_format: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = check_data_format(data_format, owner_of(self))

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        return b.reshape(inputs, shape=(inputs.type.shape[0], -1))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "data_format": self.data_format}


class Reshape(Layer):
    """Reshapes the non-batch axes to `target_shape`; one entry may be -1 (inferred).

    Example:

    >>> Reshape((3, -1))(np.zeros((2, 12), "float32")).shape
    (2, 3, 4)
    """

    def __init__(self, target_shape: Sequence[int], **kwargs):
        super().__init__(**kwargs)
        target = tuple(target_shape) if isinstance(target_shape, (tuple, list)) else (None,)
        valid = all(_is_int(d) and (d >= 1 or d == -1) for d in target)
        if not valid or target.count(-1) > 1:
            raise ArgumentError(f"{owner_of(self)}: `target_shape` must be a tuple of positive "
                                f"integers with at most one -1. Received: target_shape={target_shape!r}")
        self.target_shape = tuple(int(d) for d in target)

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        return b.reshape(inputs, shape=(inputs.type.shape[0],) + self.target_shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "target_shape": self.target_shape}


class Permute(Layer):
    """Permutes the non-batch axes: `dims` is 1-based, e.g. (2, 1) swaps axes 1 and 2.

    Example:

    >>> Permute((2, 1))(np.zeros((2, 3, 4), "float32")).shape
    (2, 4, 3)
    """

    def __init__(self, dims: Sequence[int], **kwargs):
        super().__init__(**kwargs)
        try:
            perm = tuple(dims)
            valid = all(_is_int(d) for d in perm) and sorted(perm) == list(range(1, len(perm) + 1))
        except TypeError:  # not iterable
            valid = False
        if not valid:
            raise ArgumentError(f"{owner_of(self)}: Invalid permutation argument `dims` for "
                                f"Permute Layer. The set of indices in `dims` must be consecutive "
                                f"and start from 1. Received dims={dims!r}")
        self.dims = tuple(int(d) for d in perm)

    def build(self, input_shape) -> None:
        if len(input_shape) != len(self.dims) + 1:
            raise ValueError(f"Input 0 of layer '{self.name}' (Permute) is incompatible with the "
                             f"layer: expected ndim={len(self.dims) + 1} for dims={self.dims}, "
                             f"found ndim={len(input_shape)}. Full shape received: "
                             f"{tuple(input_shape)}")
        self.built = True

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        return b.transpose(inputs, perm=(0,) + self.dims)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "dims": self.dims}


def _embedding_input_length_to_shape(owner: str, kwargs: dict) -> None:
    """Keras 2 Embedding took the sequence length as `input_length`; Keras 3 dropped it."""
    if "input_length" in kwargs:
        warn_legacy(f"{owner}: argument `input_length` is deprecated; use "
                      f"`input_shape=(input_length,)` or keras.Input")
        length = kwargs.pop("input_length")
        if "input_shape" not in kwargs and "batch_input_shape" not in kwargs:
            kwargs["input_shape"] = (length,)


class Embedding(Layer):
    """Maps integer indices to dense vectors: (batch, ...) -> (batch, ..., output_dim).

    Float indices are cast to int32. An index outside [0, input_dim) fails at run time with an
    error naming the layer (negative indices do not wrap around). With `mask_zero=True` the
    output carries Keras's mask `inputs != 0`, which later layers apply as Keras does (masked
    GlobalAveragePooling1D, merges, BatchNormalization statistics) or refuse clearly.

    Example:

    >>> layer = Embedding(10, 4)
    >>> layer(np.array([[1, 2, 3]])).shape
    (1, 3, 4)
    """

    @legacy_args(_LEGACY_EMBEDDING, _embedding_input_length_to_shape)
    def __init__(self, input_dim: int, output_dim: int, embeddings_initializer="uniform",
                 embeddings_regularizer=None, embeddings_constraint=None, mask_zero: bool = False,
                 **kwargs):
        super().__init__(**kwargs)
        owner = owner_of(self)
        self.input_dim = positive_int(input_dim, "input_dim", owner)
        self.output_dim = positive_int(output_dim, "output_dim", owner)
        weight_options(self, "embeddings", embeddings_initializer, embeddings_regularizer, embeddings_constraint)
        self.mask_zero = boolean(mask_zero, "mask_zero", owner)
        self.supports_masking = self.mask_zero

    def build(self, input_shape) -> None:
        self.embeddings = option_weight(self, "embeddings", (self.input_dim, self.output_dim))
        self.built = True

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        indices = inputs
        if inputs.type.dtype not in (DType.i32, DType.i64):
            indices = b.cast(inputs, dtype=DType.i32)
        return b.gather(self.param(b, self.embeddings), indices, axis=0, allow_negative=False)

    def emit_mask(self, b: Builder, inputs: Value, mask: Mask | None) -> Mask | None:
        if not self.mask_zero:
            return None
        return Mask(b.not_equal(inputs, b.scalar(0, inputs)), self.name)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "input_dim": self.input_dim, "output_dim": self.output_dim,
                **weight_configs(self, "embeddings"), "mask_zero": self.mask_zero}


def any_last(b: Builder, condition: Value, keepdims: bool = False) -> Value:
    """`condition.any(axis=-1)` as f32 0 / 1 (a bool result of a fused float reduction is beyond
    the CPU code generator for now)."""
    hits = b.reduce_max(b.cast(condition, dtype=DType.f32), axes=(condition.type.rank - 1,),
                        keepdims=keepdims)
    return hits


class Masking(Layer):
    """Masks the time steps whose features all equal `mask_value`: their outputs become 0 and
    the output carries the mask `any(inputs != mask_value, axis=-1)` for later layers.

    Example:

    >>> x = np.array([[[1.0, 2.0], [0.0, 0.0]]], "float32")
    >>> Masking()(x).tolist()
    [[[1.0, 2.0], [0.0, 0.0]]]
    """

    supports_masking = True

    def __init__(self, mask_value: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.mask_value = number(mask_value, "mask_value", owner_of(self), "a finite number")

    def _kept(self, b: Builder, inputs: Value, keepdims: bool) -> Value:
        """1.0 for the steps with a feature other than `mask_value`, else 0.0."""
        x = _as_float(b, inputs, self.dtype)
        return any_last(b, b.not_equal(x, b.scalar(self.mask_value, x)), keepdims)

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        # Keras's where(kept, x, 0): a masked step holds only the finite mask_value, so x * 0 is 0.
        x = _as_float(b, inputs, self.dtype)
        return b.mul(x, self._kept(b, inputs, keepdims=True))

    def emit_mask(self, b: Builder, inputs: Value, mask: Mask | None) -> Mask:
        return Mask(self._kept(b, inputs, keepdims=False), self.name)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mask_value": self.mask_value}


# --- activation layers ----------------------------------------------------------------------------

def _non_negative(layer: Layer, value, arg: str) -> float:
    return number(value, arg, owner_of(layer), "a float >= 0", lambda v: v >= 0)


class ReLU(Layer):
    """Rectified linear unit with Keras's options: `x` above `threshold` (capped at `max_value`),
    `negative_slope * (x - threshold)` below.

    Example:

    >>> ReLU(max_value=1.0)(np.array([[-1.0, 0.5, 3.0]], "float32")).tolist()
    [[0.0, 0.5, 1.0]]
    """

    supports_masking = True   # as in Keras: the mask passes on

    def __init__(self, max_value: float | None = None, negative_slope: float = 0.0,
                 threshold: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.max_value = None if max_value is None else _non_negative(self, max_value, "max_value")
        self.negative_slope = _non_negative(self, negative_slope, "negative_slope")
        self.threshold = _non_negative(self, threshold, "threshold")

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        return activations.relu(b, inputs, negative_slope=self.negative_slope,
                                max_value=self.max_value, threshold=self.threshold)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "max_value": self.max_value,
                "negative_slope": self.negative_slope, "threshold": self.threshold}


class LeakyReLU(Layer):
    """`x` for `x > 0`, else `negative_slope * x` (default 0.3, as Keras's layer has it).

    Example:

    >>> LeakyReLU(0.5)(np.array([[-2.0, 2.0]], "float32")).tolist()
    [[-1.0, 2.0]]
    """

    supports_masking = True   # as in Keras: the mask passes on

    @legacy_args({"alpha": "negative_slope"})
    def __init__(self, negative_slope: float = 0.3, **kwargs):
        super().__init__(**kwargs)
        self.negative_slope = _non_negative(self, negative_slope, "negative_slope")

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        return activations.leaky_relu(b, inputs, negative_slope=self.negative_slope)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "negative_slope": self.negative_slope}


class ELU(Layer):
    """Exponential linear unit: `x` for `x > 0`, else `alpha * (exp(x) - 1)`.

    Example:

    >>> ELU()(np.array([[0.0, 2.0]], "float32")).tolist()
    [[0.0, 2.0]]
    """

    supports_masking = True   # as in Keras: the mask passes on

    def __init__(self, alpha: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.alpha = number(alpha, "alpha", owner_of(self))

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        return activations.elu(b, inputs, alpha=self.alpha)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "alpha": self.alpha}


class PReLU(Layer):
    """Parametric ReLU: `max(0, x) + alpha * min(0, x)` with `alpha` a trainable weight of the
    input's shape without the batch, of size 1 along `shared_axes` (an axis number or a list of
    them, counted with the batch as axis 0: `shared_axes=[1, 2]` gives one alpha per channel of
    (batch, height, width, channels) images).

    Example:

    >>> layer = PReLU(alpha_initializer="ones", shared_axes=[1])
    >>> layer(np.array([[[-2.0, 3.0]]], "float32")).tolist(), layer.alpha.shape
    ([[[-2.0, 3.0]]], (1, 2))
    """

    supports_masking = True   # as in Keras: the mask passes on
    acts_per_step = False     # alpha is per step unless the steps axis is shared

    def __init__(self, alpha_initializer="Zeros", alpha_regularizer=None, alpha_constraint=None,
                 shared_axes=None, **kwargs):
        super().__init__(**kwargs)
        weight_options(self, "alpha", alpha_initializer, alpha_regularizer, alpha_constraint)
        self.shared_axes = _shared_axes(self, shared_axes)

    def build(self, input_shape) -> None:
        rank = len(input_shape)
        shared = self.shared_axes or []
        beyond = [axis for axis in shared if axis >= rank]
        if beyond:
            raise ValueError(f"{owner_of(self)}: shared_axes={self.shared_axes} names axis "
                             f"{beyond[0]}, but the input has {rank} axes (batch included). "
                             f"Full shape received: {tuple(input_shape)}")
        shape = [1 if axis in shared else d for axis, d in enumerate(input_shape) if axis > 0]
        if any(d is None for d in shape):
            raise ValueError(f"Shapes used to initialize variables must be fully-defined (no "
                             f"`None` dimensions). Received: shape={tuple(shape)} for variable "
                             f"path='{self.name}/alpha': layer '{self.name}' (PReLU) has one "
                             f"alpha per entry of axes of unknown size; share those axes "
                             f"(shared_axes) or give the input a known shape")
        self.alpha = option_weight(self, "alpha", tuple(shape))
        self.built = True

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        x = _as_float(b, inputs, self.dtype)
        self._check_input(x)
        alpha = self.param(b, self.alpha)
        # Keras's formula, relu(x) - alpha * relu(-x): the same value, and the same gradient at 0.
        return b.sub(b.relu(x), b.mul(alpha, b.relu(b.neg(x))))

    def _check_input(self, x: Value) -> None:
        """Keras's input spec once built: the rank, and the size of every axis not shared."""
        from nncompile.ir import ShapeError

        shape = self.alpha.shape
        if x.type.rank != len(shape) + 1:
            raise ShapeError(f"expected ndim={len(shape) + 1}, found ndim={x.type.rank}")
        shared = self.shared_axes or []
        for axis, (got, want) in enumerate(zip(x.type.shape[1:], shape), start=1):
            if axis not in shared and got != want:
                raise ShapeError(f"expected axis {axis} of input shape to have value {want}, "
                                 f"but received input with shape {tuple(x.type.shape)}")

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **weight_configs(self, "alpha"),
                "shared_axes": None if self.shared_axes is None else list(self.shared_axes)}


def _shared_axes(layer: Layer, value) -> list[int] | None:
    """PReLU's `shared_axes` as a list of axes >= 1 (None: none shared). Keras 3 takes one axis
    for a list of it; it also takes 0 and negative axes, as an index into the shape without the
    batch shifted by one (`-1` shares the second-last axis of alpha, not the last): those are
    refused here rather than reproduced."""
    if value is None:
        return None
    axes = list(value) if isinstance(value, (list, tuple)) else [value]
    owner = owner_of(layer)
    for axis in axes:
        if integer(axis, "shared_axes", owner) < 1:
            raise ArgumentError(f"{owner}: the `shared_axes` argument must hold axes >= 1, "
                                f"counted with the batch as axis 0 (Keras 3 reads an axis <= 0 "
                                f"as another axis than it names). Received: "
                                f"shared_axes={value!r}")
    return [int(axis) for axis in axes]


class Softmax(Layer):
    """Softmax along `axis`.

    Example:

    >>> Softmax()(np.array([[1.0, 1.0]], "float32")).tolist()
    [[0.5, 0.5]]
    """

    supports_masking = True   # as in Keras: the mask passes on

    def __init__(self, axis: int = -1, **kwargs):
        super().__init__(**kwargs)
        self.axis = integer(axis, "axis", owner_of(self))

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        return activations.softmax(b, inputs, axis=self.axis)

    def emit_masked(self, b: Builder, inputs: Value, mask: Mask, training: bool = False) -> Value:
        raise self.refuse_mask(mask, "Keras 3 broadcasts a mask of shape (batch, steps) against "
                                     "the inputs aligned from the last axis, so it meets the "
                                     "features, not the steps, and fails or misaligns depending "
                                     "on the batch size")

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis}


class Identity(Layer):
    """Returns its input unchanged (a placeholder in a stack of layers); the mask passes on.

    >>> Identity()(np.array([[1.0, 2.0]], "float32")).tolist()
    [[1.0, 2.0]]
    """

    supports_masking = True
    acts_per_step = True

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        return inputs

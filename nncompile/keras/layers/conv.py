"""Convolution layers: Conv1D, Conv2D, and the Keras 1 classes Convolution1D, Convolution2D.

Layers work on channels-last data only (NHWC, and NLC for 1-D). A 1-D layer runs as a 2-D one of
height 1: its input is viewed as (N, 1, L, C) and its kernel (k, cin, cout) as (1, k, cin, cout),
so one IR op (conv2d, max_pool2d, avg_pool2d) serves both ranks.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from nncompile.ir import Builder, Value
from nncompile.ir.ops.linalg import same_pads
from nncompile.keras import activations, backend, constraints, initializers, regularizers
from nncompile.keras.layers.arguments import (ArgumentError, boolean, check_data_format,
                                              check_input_rank, legacy_args, normalize_padding,
                                              normalize_tuple, owner_of, positive_int, warn_legacy,
                                              weight_options)
from nncompile.keras.layers.base import Layer


def spatial_pads(sizes: Sequence, kernel: Sequence[int], strides: Sequence[int],
                 dilations: Sequence[int], padding: str) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) padding of a 2-D window for "valid", "same" or "causal"."""
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "causal":
        return (0, 0, (kernel[1] - 1) * dilations[1], 0)
    (top, bottom), (left, right) = (same_pads(s, k, st, d)
                                     for s, k, st, d in zip(sizes, kernel, strides, dilations))
    return (top, bottom, left, right)


def to_2d(b: Builder, x: Value) -> Value:
    """(N, L, C) viewed as (N, 1, L, C)."""
    n, length, channels = x.type.shape
    return b.reshape(x, shape=(n, 1, length, channels))


def from_2d(b: Builder, y: Value) -> Value:
    """(N, 1, L, C) back to (N, L, C)."""
    n, _, length, channels = y.type.shape
    return b.reshape(y, shape=(n, length, channels))


def convolve(b: Builder, layer: Layer, x: Value, kernel: Value, groups: int) -> Value:
    """The conv2d of `x` by `kernel` (shaped as a Conv layer's of `layer.rank`) with the
    layer's kernel_size, strides, dilation_rate and padding; a 1-D one runs at height 1."""
    kernel_2d, strides, dilations = layer.kernel_size, layer.strides, layer.dilation_rate
    if layer.rank == 1:
        x = to_2d(b, x)
        kernel = b.reshape(kernel, shape=(1,) + kernel.type.shape)
        kernel_2d, strides, dilations = (1,) + kernel_2d, (1,) + strides, (1,) + dilations
    pads = spatial_pads(x.type.shape[1:3], kernel_2d, strides, dilations, layer.padding)
    y = b.conv2d(x, kernel, strides=strides, pads=pads, dilations=dilations, groups=groups)
    return from_2d(b, y) if layer.rank == 1 else y


# --- convolution -------------------------------------------------------------------------------

_LEGACY_NAMES = {"nb_filter": "filters", "border_mode": "padding", "subsample": "strides",
                 "init": "kernel_initializer", "W_regularizer": "kernel_regularizer",
                 "b_regularizer": "bias_regularizer", "W_constraint": "kernel_constraint",
                 "b_constraint": "bias_constraint", "bias": "use_bias"}
_LEGACY_NAMES_1D = {**_LEGACY_NAMES, "filter_length": "kernel_size", "subsample_length": "strides"}


def _combine_nb_row_col(owner: str, kwargs: dict) -> None:
    """Keras 1 gave the kernel as `nb_row` and `nb_col`; Keras 2+ as one `kernel_size`."""
    if "nb_row" in kwargs or "nb_col" in kwargs:
        if "nb_row" not in kwargs or "nb_col" not in kwargs:
            raise TypeError(f"{owner}: the Keras 1 arguments `nb_row` and `nb_col` go together; "
                            f"better, pass `kernel_size=(rows, cols)`")
        warn_legacy(f"{owner}: arguments `nb_row`, `nb_col` are the Keras 1 form of "
                      f"`kernel_size=(nb_row, nb_col)`; use `kernel_size`")
        kwargs.setdefault("kernel_size", (kwargs.pop("nb_row"), kwargs.pop("nb_col")))


def _input_length_and_dim_to_shape(owner: str, kwargs: dict) -> None:
    """Keras 1 sequence layers took `input_dim` (channels) and `input_length` (steps)."""
    if "input_length" in kwargs or "input_dim" in kwargs:
        warn_legacy(f"{owner}: arguments `input_dim`, `input_length` are the Keras 1 form of "
                      f"`input_shape=(input_length, input_dim)`; use `input_shape`")
        kwargs.setdefault("input_shape", (kwargs.pop("input_length", None), kwargs.pop("input_dim", None)))


class BaseConv(Layer):
    """Shared by Conv1D and Conv2D: arguments, weights, config and the conv2d emission."""

    rank: int
    paddings: tuple[str, ...] = ("valid", "same")

    def __init__(self, filters: int, kernel_size, strides=1, padding: str = "valid",
                 data_format: str | None = None, dilation_rate=1, groups: int = 1, activation=None,
                 use_bias: bool = True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, kernel_constraint=None,
                 bias_constraint=None, **kwargs):
        super().__init__(**kwargs)
        owner = owner_of(self)
        self.filters = positive_int(filters, "filters", owner)
        self.groups = positive_int(groups, "groups", owner)
        if self.filters % self.groups:
            raise ArgumentError(f"{owner}: the number of filters must be evenly divisible by the number "
                                f"of groups. Received: groups={groups}, filters={filters}")
        self.kernel_size = normalize_tuple(kernel_size, self.rank, "kernel_size", owner)
        self.strides = normalize_tuple(strides, self.rank, "strides", owner)
        self.dilation_rate = normalize_tuple(dilation_rate, self.rank, "dilation_rate", owner)
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ArgumentError(f"{owner}: `strides > 1` not supported in conjunction with "
                                f"`dilation_rate > 1`. Received: strides={self.strides} and "
                                f"dilation_rate={self.dilation_rate}")
        self.padding = normalize_padding(padding, self.paddings, owner)
        self.data_format = check_data_format(data_format, owner)
        self.activation = activations.get(activation)
        self.use_bias = boolean(use_bias, "use_bias", owner)
        weight_options(self, "kernel", kernel_initializer, kernel_regularizer, kernel_constraint)
        weight_options(self, "bias", bias_initializer, bias_regularizer, bias_constraint)

    def build(self, input_shape) -> None:
        check_input_rank(self, input_shape, self.rank + 2)
        channels = input_shape[-1]
        if channels is None or channels % self.groups:
            raise ValueError(f"Layer '{self.name}' ({type(self).__name__}): the number of input "
                             f"channels must be known and evenly divisible by the number of groups. "
                             f"Received: groups={self.groups}, input_shape={tuple(input_shape)}")
        shape = self.kernel_size + (channels // self.groups, self.filters)
        self.kernel = self.add_weight(shape=shape, initializer=self.kernel_initializer,
                                      regularizer=self.kernel_regularizer,
                                      constraint=self.kernel_constraint, name="kernel")
        self.bias = (self.add_weight(shape=(self.filters,), initializer=self.bias_initializer,
                                     regularizer=self.bias_regularizer,
                                     constraint=self.bias_constraint, name="bias")
                     if self.use_bias else None)
        self.built = True

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        y = convolve(b, self, inputs, self.param(b, self.kernel), self.groups)
        if self.bias is not None:
            y = b.add(y, self.param(b, self.bias))
        return self.activation(b, y)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(),
                "filters": self.filters, "kernel_size": self.kernel_size, "strides": self.strides,
                "padding": self.padding, "data_format": self.data_format,
                "dilation_rate": self.dilation_rate, "groups": self.groups,
                "activation": activations.serialize(self.activation), "use_bias": self.use_bias,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer),
                "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": regularizers.serialize(self.bias_regularizer),
                "kernel_constraint": constraints.serialize(self.kernel_constraint),
                "bias_constraint": constraints.serialize(self.bias_constraint)}


class Conv2D(BaseConv):
    """2-D convolution over channels-last images (N, H, W, C); kernel (kh, kw, C/groups, filters).

    Example:

    >>> x = np.random.rand(4, 10, 10, 3).astype("float32")
    >>> Conv2D(2, 3, activation="relu")(x).shape
    (4, 8, 8, 2)
    >>> Conv2D(2, (3, 3), strides=2, padding="same")(x).shape
    (4, 5, 5, 2)
    """

    rank = 2

    @legacy_args(_LEGACY_NAMES, _combine_nb_row_col)
    def __init__(self, filters: int, kernel_size, strides=(1, 1), padding: str = "valid",
                 data_format: str | None = None, dilation_rate=(1, 1), groups: int = 1,
                 activation=None, use_bias: bool = True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(filters, kernel_size, strides, padding, data_format, dilation_rate, groups,
                         activation, use_bias, kernel_initializer, bias_initializer,
                         kernel_regularizer, bias_regularizer, kernel_constraint, bias_constraint,
                         **kwargs)


class Conv1D(BaseConv):
    """1-D convolution over channels-last sequences (N, L, C); kernel (k, C/groups, filters).

    `padding="causal"` pads the start only, so output step t sees input steps <= t.

    Example:

    >>> x = np.random.rand(4, 10, 3).astype("float32")
    >>> Conv1D(2, 3)(x).shape
    (4, 8, 2)
    >>> Conv1D(2, 3, padding="causal", dilation_rate=2)(x).shape
    (4, 10, 2)
    """

    rank = 1
    paddings = ("valid", "same", "causal")

    @legacy_args(_LEGACY_NAMES_1D, _input_length_and_dim_to_shape)
    def __init__(self, filters: int, kernel_size, strides=1, padding: str = "valid",
                 data_format: str | None = None, dilation_rate=1, groups: int = 1, activation=None,
                 use_bias: bool = True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, kernel_constraint=None,
                 bias_constraint=None, **kwargs):
        super().__init__(filters, kernel_size, strides, padding, data_format, dilation_rate, groups,
                         activation, use_bias, kernel_initializer, bias_initializer,
                         kernel_regularizer, bias_regularizer, kernel_constraint, bias_constraint,
                         **kwargs)


class Convolution2D(Conv2D):
    """Keras 1 form of Conv2D: `Convolution2D(nb_filter, nb_row, nb_col, border_mode=...)`.

    Example:

    >>> x = np.random.rand(4, 10, 10, 3).astype("float32")
    >>> Convolution2D(2, 3, 3, border_mode="same")(x).shape
    (4, 10, 10, 2)
    """

    def __init__(self, nb_filter: int, nb_row: int, nb_col: int, **kwargs):
        warn_legacy("Convolution2D(nb_filter, nb_row, nb_col) is the Keras 1 form of "
                      "Conv2D(filters, kernel_size=(nb_row, nb_col)); use Conv2D")
        kwargs["name"] = kwargs.get("name") or backend.unique_name("conv2d")
        super().__init__(nb_filter, (nb_row, nb_col), **kwargs)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Conv2D:
        """A config holds Keras 3 arguments, so it rebuilds as the Conv2D this layer is."""
        return Conv2D(**config)


class Convolution1D(Conv1D):
    """Keras 1 form of Conv1D: `Convolution1D(nb_filter, filter_length, border_mode=...)`.

    Example:

    >>> x = np.random.rand(4, 10, 3).astype("float32")
    >>> Convolution1D(2, 3, subsample_length=2)(x).shape
    (4, 4, 2)
    """

    def __init__(self, nb_filter: int, filter_length: int, **kwargs):
        warn_legacy("Convolution1D(nb_filter, filter_length) is the Keras 1 form of "
                      "Conv1D(filters, kernel_size=filter_length); use Conv1D")
        kwargs["name"] = kwargs.get("name") or backend.unique_name("conv1d")
        super().__init__(nb_filter, filter_length, **kwargs)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Conv1D:
        """A config holds Keras 3 arguments, so it rebuilds as the Conv1D this layer is."""
        return Conv1D(**config)

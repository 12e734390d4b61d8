"""Convolution layers: Conv1D, Conv2D, Conv3D, and the Keras 1 classes Convolution1D,
Convolution2D.

Layers work on channels-last data only (NHWC, and NLC for 1-D). A 1-D layer runs as a 2-D one of
height 1: its input is viewed as (N, 1, L, C) and its kernel (k, cin, cout) as (1, k, cin, cout),
so one IR op (conv2d, max_pool2d, avg_pool2d) serves both ranks; a 3-D one folds depth into
channels (volumes.py).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from nncompile.ir import Builder, Value
from nncompile.ir.ops.linalg import same_pads
from nncompile.keras import activations, backend
from nncompile.keras.layers.arguments import (ArgumentError, boolean, check_data_format,
                                              check_input_rank, legacy_args, normalize_padding,
                                              normalize_tuple, option_weight, owner_of,
                                              positive_int, warn_legacy, weight_configs,
                                              weight_options)
from nncompile.keras.layers.base import Layer
from nncompile.keras.layers.volumes import conv3d


def spatial_pads(sizes: Sequence, kernel: Sequence[int], strides: Sequence[int],
                 dilations: Sequence[int], padding: str) -> tuple[int, ...]:
    """(before, after) padding of each spatial axis, flattened, for "valid", "same" or "causal"
    (which pads the start of the last axis only)."""
    if padding == "valid":
        return (0,) * (2 * len(sizes))
    if padding == "causal":
        return (0,) * (2 * len(sizes) - 2) + ((kernel[-1] - 1) * dilations[-1], 0)
    return tuple(p for s, k, st, d in zip(sizes, kernel, strides, dilations)
                 for p in same_pads(s, k, st, d))


def to_2d(b: Builder, x: Value) -> Value:
    """(N, L, C) viewed as (N, 1, L, C)."""
    n, length, channels = x.type.shape
    return b.reshape(x, shape=(n, 1, length, channels))


def from_2d(b: Builder, y: Value) -> Value:
    """(N, 1, L, C) back to (N, L, C)."""
    n, _, length, channels = y.type.shape
    return b.reshape(y, shape=(n, length, channels))


def convolve(b: Builder, layer: Layer, x: Value, kernel: Value, groups: int) -> Value:
    """The convolution of `x` by `kernel` (shaped as a Conv layer's of `layer.rank`) with the
    layer's kernel_size, strides, dilation_rate and padding: conv2d, at height 1 for a 1-D one,
    with depth folded into channels for a 3-D one."""
    kernel_size, strides, dilations = layer.kernel_size, layer.strides, layer.dilation_rate
    if layer.rank == 1:
        x = to_2d(b, x)
        kernel = b.reshape(kernel, shape=(1,) + kernel.type.shape)
        kernel_size, strides, dilations = (1,) + kernel_size, (1,) + strides, (1,) + dilations
    pads = spatial_pads(x.type.shape[1:-1], kernel_size, strides, dilations, layer.padding)
    if layer.rank == 3:
        return conv3d(b, x, kernel, pads, strides, dilations, groups)
    y = b.conv2d(x, kernel, strides=strides, pads=pads, dilations=dilations, groups=groups)
    return from_2d(b, y) if layer.rank == 1 else y


def set_window(layer: Layer, kernel_size, strides, dilation_rate) -> None:
    """The layer's kernel_size, strides and dilation_rate, each an int or `layer.rank` ints."""
    owner = owner_of(layer)
    layer.kernel_size = normalize_tuple(kernel_size, layer.rank, "kernel_size", owner)
    layer.strides = normalize_tuple(strides, layer.rank, "strides", owner)
    layer.dilation_rate = normalize_tuple(dilation_rate, layer.rank, "dilation_rate", owner)


def refuse_strided_dilation(layer: Layer, owner: str) -> None:
    """Keras 3's rule for convolutions: strides and dilation, not both above 1."""
    if max(layer.strides) > 1 and max(layer.dilation_rate) > 1:
        raise ArgumentError(f"{owner}: `strides > 1` not supported in conjunction with "
                            f"`dilation_rate > 1`. Received: strides={layer.strides} and "
                            f"dilation_rate={layer.dilation_rate}")


def set_output(layer: Layer, owner: str, data_format, activation, use_bias) -> None:
    """The layer's data_format (channels-last), activation and use_bias, as convolutions take them."""
    layer.data_format = check_data_format(data_format, owner)
    layer.activation = activations.get(activation)
    layer.use_bias = boolean(use_bias, "use_bias", owner)


def bias_and_activation(b: Builder, layer: Layer, y: Value) -> Value:
    """`y` plus the layer's bias (if it has one), through its activation."""
    if layer.bias is not None:
        y = b.add(y, layer.param(b, layer.bias))
    return layer.activation(b, y)


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
        set_window(self, kernel_size, strides, dilation_rate)
        refuse_strided_dilation(self, owner)
        self.padding = normalize_padding(padding, self.paddings, owner)
        set_output(self, owner, data_format, activation, use_bias)
        weight_options(self, "kernel", kernel_initializer, kernel_regularizer, kernel_constraint)
        weight_options(self, "bias", bias_initializer, bias_regularizer, bias_constraint)

    def build(self, input_shape) -> None:
        check_input_rank(self, input_shape, self.rank + 2)
        channels = input_shape[-1]
        if channels is None or channels % self.groups:
            raise ValueError(f"Layer '{self.name}' ({type(self).__name__}): the number of input "
                             f"channels must be known and evenly divisible by the number of groups. "
                             f"Received: groups={self.groups}, input_shape={tuple(input_shape)}")
        self.kernel = option_weight(self, "kernel",
                                    self.kernel_size + (channels // self.groups, self.filters))
        self.bias = option_weight(self, "bias", (self.filters,), self.use_bias)
        self.built = True

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        return bias_and_activation(b, self, convolve(b, self, inputs, self.param(b, self.kernel),
                                                     self.groups))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(),
                "filters": self.filters, "kernel_size": self.kernel_size, "strides": self.strides,
                "padding": self.padding, "data_format": self.data_format,
                "dilation_rate": self.dilation_rate, "groups": self.groups,
                "activation": activations.serialize(self.activation), "use_bias": self.use_bias,
                **weight_configs(self, "kernel", "bias")}


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


class Conv3D(BaseConv):
    """3-D convolution over channels-last volumes (N, D, H, W, C); kernel (kd, kh, kw,
    C/groups, filters).

    Example:

    >>> x = np.random.rand(2, 5, 6, 6, 3).astype("float32")
    >>> Conv3D(4, 3, padding="same")(x).shape
    (2, 5, 6, 6, 4)
    >>> Conv3D(4, (2, 3, 3), strides=(1, 2, 2))(x).shape
    (2, 4, 2, 2, 4)
    """

    rank = 3   # BaseConv's arguments: a single int of strides or dilation_rate stands for all three


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


# Keras 3's other name of Conv3D (Keras 1's Convolution3D, with nb_filter and three kernel
# sizes, is not supported; Convolution1D and Convolution2D above keep their Keras 1 forms).
Convolution3D = Conv3D

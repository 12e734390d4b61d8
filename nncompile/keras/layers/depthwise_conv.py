"""Depthwise and separable convolutions: DepthwiseConv1D, DepthwiseConv2D, SeparableConv1D,
SeparableConv2D.

A depthwise convolution filters each input channel on its own, `depth_multiplier` times: it is
the IR's conv2d with one group per input channel. Keras keeps its kernel as (k..., channels,
depth_multiplier); seen as (k..., 1, channels * depth_multiplier), output channel
`c * depth_multiplier + m` is filter m of channel c, as in Keras. A separable convolution follows
it with a pointwise (1 x 1) convolution, a matmul over the channels.
"""
from __future__ import annotations

from typing import Any

from nncompile.ir import Builder, Value
from nncompile.keras import activations
from nncompile.keras.layers.arguments import (check_input_rank,
                                              normalize_padding, option_weight, owner_of,
                                              positive_int, weight_configs, weight_options)
from nncompile.keras.layers.base import Layer
from nncompile.keras.layers.conv import bias_and_activation, convolve, set_output, set_window


class BaseDepthwiseConv(Layer):
    """The depthwise stage shared by DepthwiseConv2D and the separable layers: arguments (Keras
    3's, in DepthwiseConv2D's order; an int stands for a tuple), weights (`kernel_name` is
    Keras's name for the depthwise kernel), config and emission."""

    rank: int
    kernel_name = "kernel"
    paddings: tuple[str, ...] = ("valid", "same")

    def __init__(self, kernel_size, strides=1, padding: str = "valid", depth_multiplier: int = 1,
                 data_format: str | None = None, dilation_rate=1, activation=None,
                 use_bias: bool = True, depthwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None, bias_regularizer=None,
                 depthwise_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(**kwargs)
        owner = owner_of(self)
        self.depth_multiplier = positive_int(depth_multiplier, "depth_multiplier", owner)
        set_window(self, kernel_size, strides, dilation_rate)
        self.padding = normalize_padding(padding, self.paddings, owner)
        set_output(self, owner, data_format, activation, use_bias)
        weight_options(self, "depthwise", depthwise_initializer, depthwise_regularizer, depthwise_constraint)
        weight_options(self, "bias", bias_initializer, bias_regularizer, bias_constraint)

    def build(self, input_shape) -> None:
        check_input_rank(self, input_shape, self.rank + 2)
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"{owner_of(self)}: the number of input channels (the last axis) "
                             f"must be known. Received: input_shape={tuple(input_shape)}")
        self.depthwise_kernel = option_weight(
            self, "depthwise", self.kernel_size + (channels, self.depth_multiplier),
            name=self.kernel_name)
        self.build_pointwise(channels * self.depth_multiplier)
        self.bias = option_weight(self, "bias", (self.output_channels(channels),), self.use_bias)
        self.built = True

    def build_pointwise(self, channels: int) -> None:
        """The weights after the depthwise kernel (none here)."""

    def output_channels(self, channels: int) -> int:
        return channels * self.depth_multiplier

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        channels = self.depthwise_kernel.shape[-2]
        kernel = b.reshape(self.param(b, self.depthwise_kernel),
                           shape=self.kernel_size + (1, channels * self.depth_multiplier))
        y = self.emit_pointwise(b, convolve(b, self, inputs, kernel, groups=channels))
        return bias_and_activation(b, self, y)

    def emit_pointwise(self, b: Builder, y: Value) -> Value:
        return y

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "depth_multiplier": self.depth_multiplier,
                "kernel_size": self.kernel_size, "strides": self.strides,
                "padding": self.padding, "data_format": self.data_format,
                "dilation_rate": self.dilation_rate,
                "activation": activations.serialize(self.activation), "use_bias": self.use_bias,
                **weight_configs(self, "depthwise", "bias")}


class DepthwiseConv2D(BaseDepthwiseConv):
    """Depthwise 2-D convolution over channels-last images (N, H, W, C): each channel filtered
    on its own by `depth_multiplier` filters, giving C * depth_multiplier channels; kernel (kh,
    kw, C, depth_multiplier), as Keras 3.

    Example:

    >>> x = np.random.rand(2, 6, 6, 3).astype("float32")
    >>> DepthwiseConv2D(3, depth_multiplier=2)(x).shape
    (2, 4, 4, 6)
    """

    rank = 2


class DepthwiseConv1D(BaseDepthwiseConv):
    """Depthwise 1-D convolution over (N, L, C), as DepthwiseConv2D at height 1; kernel (k, C,
    depth_multiplier), as Keras 3.

    Example:

    >>> x = np.random.rand(2, 8, 3).astype("float32")
    >>> DepthwiseConv1D(3, depth_multiplier=2)(x).shape
    (2, 6, 6)
    """

    rank = 1


class BaseSeparableConv(BaseDepthwiseConv):
    """A depthwise convolution followed by a pointwise one to `filters` channels (arguments in
    Keras 3's order for the separable layers)."""

    kernel_name = "depthwise_kernel"

    def __init__(self, filters: int, kernel_size, strides=1, padding: str = "valid",
                 data_format: str | None = None, dilation_rate=1, depth_multiplier: int = 1,
                 activation=None, use_bias: bool = True, depthwise_initializer="glorot_uniform",
                 pointwise_initializer="glorot_uniform", bias_initializer="zeros",
                 depthwise_regularizer=None, pointwise_regularizer=None, bias_regularizer=None,
                 depthwise_constraint=None, pointwise_constraint=None, bias_constraint=None,
                 **kwargs):
        super().__init__(kernel_size, strides, padding, depth_multiplier, data_format,
                         dilation_rate, activation, use_bias, depthwise_initializer,
                         bias_initializer, depthwise_regularizer, bias_regularizer,
                         depthwise_constraint, bias_constraint, **kwargs)
        self.filters = positive_int(filters, "filters", owner_of(self))
        weight_options(self, "pointwise", pointwise_initializer, pointwise_regularizer, pointwise_constraint)

    def build_pointwise(self, channels: int) -> None:
        self.pointwise_kernel = option_weight(self, "pointwise",
                                              (1,) * self.rank + (channels, self.filters),
                                              name="pointwise_kernel")

    def output_channels(self, channels: int) -> int:
        return self.filters

    def emit_pointwise(self, b: Builder, y: Value) -> Value:
        kernel = b.reshape(self.param(b, self.pointwise_kernel),
                           shape=self.pointwise_kernel.shape[-2:])
        return b.matmul(y, kernel)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "filters": self.filters,
                **weight_configs(self, "pointwise")}


class SeparableConv2D(BaseSeparableConv):
    """Separable 2-D convolution over (N, H, W, C): DepthwiseConv2D, then a 1 x 1 convolution to
    `filters` channels; weights `depthwise_kernel` (kh, kw, C, depth_multiplier),
    `pointwise_kernel` (1, 1, C * depth_multiplier, filters) and `bias`, as Keras 3.

    Example:

    >>> x = np.random.rand(2, 6, 6, 3).astype("float32")
    >>> SeparableConv2D(4, 3, padding="same")(x).shape
    (2, 6, 6, 4)
    """

    rank = 2


class SeparableConv1D(BaseSeparableConv):
    """Separable 1-D convolution over (N, L, C), as SeparableConv2D at height 1; weights
    `depthwise_kernel` (k, C, depth_multiplier), `pointwise_kernel` (1, C * depth_multiplier,
    filters), `bias`.

    Example:

    >>> x = np.random.rand(2, 8, 3).astype("float32")
    >>> SeparableConv1D(4, 3, depth_multiplier=2)(x).shape
    (2, 6, 4)
    """

    rank = 1


SeparableConvolution1D, SeparableConvolution2D = SeparableConv1D, SeparableConv2D     # Keras 3's other names

"""Transposed convolutions: Conv1DTranspose, Conv2DTranspose, Conv3DTranspose.

A transposed convolution is the gradient of a convolution with respect to its input, which the IR
already has as `conv2d_grad_input` (with its own VJP, so these layers train). Keras 3 keeps the
kernel as (k..., filters, input channels): that is the forward convolution's (k..., Cin, Cout)
with Cin = filters, exactly what conv2d_grad_input takes. The output size and where it starts
follow Keras 3 on JAX (`_convert_conv_transpose_padding_args_from_keras_to_jax`): the full
transposed result spans (n - 1) * stride + span positions; "valid" and "same" crop or extend it.
A 1-D layer runs at height 1; a 3-D one folds depth into channels (volumes.py).
"""
from __future__ import annotations

from typing import Any

from nncompile.ir import Builder, ShapeError, Value
from nncompile.ir.types import is_symbol
from nncompile.keras import activations
from nncompile.keras.layers.arguments import (ArgumentError, check_input_rank, normalize_padding,
                                              normalize_tuple, option_weight, owner_of,
                                              positive_int, weight_configs, weight_options)
from nncompile.keras.layers.base import Layer
from nncompile.keras.layers.conv import (bias_and_activation, from_2d, refuse_strided_dilation, set_output,
                                         set_window, to_2d)
from nncompile.keras.layers.volumes import conv3d_transpose


def transpose_geometry(size: int, kernel: int, stride: int, dilation: int, padding: str,
                       output_padding: int | None) -> tuple[int, int, int]:
    """(output size, start, end crop) of one axis: the output is positions [start, start + size)
    of the full transposed result, as conv2d_grad_input's input size and (top, bottom) pads.

    Keras pads the stride-dilated input by (left, right) before a convolution with the flipped
    kernel, so the output starts at span - 1 - left in the full result. Where right > span - 1
    the output runs past the full result by fewer than `stride` zeros, which the crop of 0 and
    the floor of the window count already give."""
    span = (kernel - 1) * dilation + 1
    if padding == "valid":
        extra = max(span, stride) - span if output_padding is None else output_padding
        left, right = span - 1, span - 1 + extra
    else:
        total = (stride + span - 2 if output_padding is None
                 else span + span % 2 - 2 + output_padding)
        left = min(total // 2 + total % 2, span - 1)
        right = total - left
    out = (size - 1) * stride + left + right - span + 2
    return out, span - 1 - left, max(span - 1 - right, 0)


def transpose_plan(layer: "BaseConvTranspose", sizes) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Output sizes and conv2d_grad_input pads (before, after per axis) of `layer` on `sizes`."""
    if any(is_symbol(s) for s in sizes):
        raise ShapeError(f"{owner_of(layer)} needs known spatial sizes; this input's are "
                         f"{tuple(None if is_symbol(s) else s for s in sizes)} (None is unknown)")
    paddings = layer.output_padding or (None,) * layer.rank
    plans = [transpose_geometry(*args, layer.padding, extra) for args, extra in
             zip(zip(sizes, layer.kernel_size, layer.strides, layer.dilation_rate), paddings)]
    return tuple(p[0] for p in plans), tuple(v for p in plans for v in p[1:])


def convolve_transpose(b: Builder, layer: "BaseConvTranspose", x: Value, kernel: Value) -> Value:
    """The transposed convolution of `x` by the Keras-shaped `kernel` with the layer's arguments."""
    sizes, pads = transpose_plan(layer, x.type.shape[1:-1])
    window = {"strides": layer.strides, "dilations": layer.dilation_rate}
    if layer.rank == 3:
        return conv3d_transpose(b, x, kernel, sizes, pads, **window)
    if layer.rank == 1:
        x, kernel = to_2d(b, x), b.reshape(kernel, shape=(1,) + kernel.type.shape)
        sizes, pads = (1,) + sizes, (0, 0) + pads
        window = {k: (1,) + v for k, v in window.items()}
    y = b.op("conv2d_grad_input", x, kernel, input_hw=sizes, pads=pads, **window)
    return from_2d(b, y) if layer.rank == 1 else y


class BaseConvTranspose(Layer):
    """Shared by the transposed convolutions: Keras 3's arguments, weights, config, emission."""

    rank: int

    def __init__(self, filters: int, kernel_size, strides=1, padding: str = "valid",
                 output_padding=None, data_format: str | None = None, dilation_rate=1,
                 activation=None, use_bias: bool = True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(**kwargs)
        owner = owner_of(self)
        self.filters = positive_int(filters, "filters", owner)
        set_window(self, kernel_size, strides, dilation_rate)
        self.padding = normalize_padding(padding, ("valid", "same"), owner)
        self.output_padding = (None if output_padding is None else
                               normalize_tuple(output_padding, self.rank, "output_padding",
                                               owner, minimum=0))
        self._check_strides(owner)
        set_output(self, owner, data_format, activation, use_bias)
        weight_options(self, "kernel", kernel_initializer, kernel_regularizer, kernel_constraint)
        weight_options(self, "bias", bias_initializer, bias_regularizer, bias_constraint)

    def _check_strides(self, owner: str) -> None:
        """Keras 3's two limits: output_padding below the stride, and no strides with dilation."""
        for i, (extra, stride) in enumerate(zip(self.output_padding or (), self.strides)):
            if extra >= stride:
                raise ArgumentError(
                    f"{owner}: `output_padding` must be strictly less than `strides` for all "
                    f"dimensions. At dimension {i}, `output_padding` is {extra} but `strides` "
                    f"is {stride}. Received: output_padding={self.output_padding}, "
                    f"strides={self.strides}")
        refuse_strided_dilation(self, owner)

    def build(self, input_shape) -> None:
        check_input_rank(self, input_shape, self.rank + 2)
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"{owner_of(self)}: the number of input channels (the last axis) "
                             f"must be known. Received: input_shape={tuple(input_shape)}")
        self.kernel = option_weight(self, "kernel", self.kernel_size + (self.filters, channels))
        self.bias = option_weight(self, "bias", (self.filters,), self.use_bias)
        self.built = True

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        return bias_and_activation(b, self, convolve_transpose(b, self, inputs,
                                                               self.param(b, self.kernel)))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(),
                "filters": self.filters, "kernel_size": self.kernel_size, "strides": self.strides,
                "padding": self.padding, "output_padding": self.output_padding,
                "data_format": self.data_format, "dilation_rate": self.dilation_rate,
                "activation": activations.serialize(self.activation), "use_bias": self.use_bias,
                **weight_configs(self, "kernel", "bias")}


class Conv2DTranspose(BaseConvTranspose):
    """Transposed 2-D convolution over (N, H, W, C): kernel (kh, kw, filters, C), as Keras 3.

    Example:

    >>> x = np.random.rand(2, 4, 4, 3).astype("float32")
    >>> Conv2DTranspose(5, 3, strides=2, padding="same")(x).shape
    (2, 8, 8, 5)
    >>> Conv2DTranspose(5, 3, strides=2)(x).shape
    (2, 9, 9, 5)
    """

    rank = 2


class Conv1DTranspose(BaseConvTranspose):
    """Transposed 1-D convolution over (N, L, C): kernel (k, filters, C), as Keras 3.

    Example:

    >>> x = np.random.rand(2, 6, 3).astype("float32")
    >>> Conv1DTranspose(4, 3, strides=2, output_padding=1)(x).shape
    (2, 14, 4)
    """

    rank = 1


class Conv3DTranspose(BaseConvTranspose):
    """Transposed 3-D convolution over (N, D, H, W, C): kernel (kd, kh, kw, filters, C).

    Example:

    >>> x = np.random.rand(2, 3, 4, 4, 2).astype("float32")
    >>> Conv3DTranspose(4, 2, strides=2)(x).shape
    (2, 6, 8, 8, 4)
    """

    rank = 3


# Keras 3's other names of the same classes.
Convolution1DTranspose = Conv1DTranspose
Convolution2DTranspose = Conv2DTranspose
Convolution3DTranspose = Conv3DTranspose

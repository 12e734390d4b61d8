"""Convolutional LSTM layers: ConvLSTM1D, ConvLSTM2D and ConvLSTM3D (Shi et al. 2015), with
Keras 3's arguments, weights, configs and semantics.

A ConvLSTM is an LSTM whose two products are convolutions: its steps are images (batch, *spatial,
channels), its states h and c are images of `filters` channels, kernel (*kernel_size, channels,
4 * filters), recurrent kernel (*kernel_size, filters, 4 * filters), bias (4 * filters), gates
i, f, c, o along the last axis. It runs as the other recurrent layers do (recurrent.py), as one
`scan` over time: the input convolution of every step is one convolution over steps x batch
images before the loop, and the loop's body is the recurrent convolution of h ("same" padding,
stride 1, no dilation, as Keras's) and the gates' elementwise math, pixel by pixel the LSTM's.

`data_format="channels_first"` runs channels-last inside: the inputs and initial states are
transposed in, the outputs and final states back. Dropout draws four masks per tensor (one per
gate), shaped as a step's inputs and as the state, once a batch, as Keras's ConvLSTMCell does.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

from nncompile.ir import Builder, Value
from nncompile.ir.dims import canonical
from nncompile.ir.ops.scan import slice_type
from nncompile.ir.types import is_symbol
from nncompile.keras import backend
from nncompile.keras.layers.arguments import (ArgumentError, normalize_padding, owner_of,
                                              positive_int)
from nncompile.keras.layers.conv import convolve, refuse_strided_dilation, set_window
from nncompile.keras.layers.recurrent import (_CELL_ARGS, StepBuilder, _CellLayer, scan_steps)
from nncompile.keras.layers.recurrent_cells import LSTMCell


class _Window(NamedTuple):
    """What `convolve` reads of a layer: the recurrent convolution's window, which keeps the
    state's size."""

    rank: int
    kernel_size: tuple[int, ...]
    strides: tuple[int, ...]
    dilation_rate: tuple[int, ...]
    padding: str


def _data_format(value, owner: str) -> str:
    data_format = backend.image_data_format() if value is None else value
    if data_format not in ("channels_last", "channels_first"):
        raise ArgumentError(f"{owner}: the `data_format` argument must be 'channels_last' or "
                            f"'channels_first'. Received: data_format={value!r}")
    return data_format


def _positions(size: int, kernel: int, stride: int, dilation: int, padding: str) -> int:
    """Output positions of a convolution along one axis of `size`."""
    if padding == "same":
        return -(-size // stride)
    return (size - (kernel - 1) * dilation - 1) // stride + 1


def _over_steps(b: Builder, x: Value, kernel: Value,
                conv: Callable[[Builder, Value, Value], Value]) -> Value:
    """`conv(b, images, kernel)` over every step of the time-major sequence `x` (steps, batch,
    *spatial, channels): one convolution over steps x batch images; or, when both counts are
    symbols (the IR multiplies a symbol by ints only), a scan over the steps whose body is that
    convolution of one batch of images."""
    steps, batch, *image = x.type.shape
    if is_symbol(steps) and is_symbol(batch):
        body = StepBuilder(b, "input_conv")
        y = conv(body, body.input("step", slice_type(x.type, 0)), body.invariant(kernel))
        return scan_steps(b, body, [], [x], [y], axis=0)[0]
    y = conv(b, b.reshape(x, shape=(canonical(f"({steps})*({batch})"), *image)), kernel)
    return b.reshape(y, shape=(steps, batch, *y.type.shape[1:]))


class ConvLSTMCell(LSTMCell):
    """One step of a ConvLSTM of `rank` spatial axes, channels-last: an LSTMCell of `filters`
    units whose products are convolutions (the layers' cell; Keras does not export it).

    Example:

    >>> cell = ConvLSTMCell(4, 3, rank=2, padding="same")
    >>> cell.build((None, 6, 6, 2))
    >>> cell.kernel.shape, cell.recurrent_kernel.shape, cell.state_size
    ((3, 3, 2, 16), (3, 3, 4, 16), [(6, 6, 4), (6, 6, 4)])
    """

    def __init__(self, filters: int, kernel_size, rank: int = 2, strides=1,
                 padding: str = "valid", data_format: str | None = None, dilation_rate=1,
                 **kwargs):
        super().__init__(filters, **kwargs)
        owner = owner_of(self)
        self.rank = rank
        set_window(self, kernel_size, strides, dilation_rate)
        refuse_strided_dilation(self, owner)
        self.padding = normalize_padding(padding, ("valid", "same"), owner)
        self.data_format = _data_format(data_format, owner)
        self._step_shape: tuple[int, ...] | None = None    # (*spatial, channels), once built
        self._state_shape: tuple[int, ...] | None = None   # (*output spatial, filters)

    @property
    def window(self) -> tuple[int, ...]:
        return self.kernel_size

    @property
    def mask_count(self) -> int:
        return self.gates   # Keras's ConvLSTMCell draws one mask per gate whatever the rates

    @property
    def state_size(self) -> list:
        return [self._state_shape, self._state_shape]

    @property
    def output_size(self):
        return self._state_shape

    def build(self, input_shape) -> None:
        """`input_shape` is one step's, channels-last: (batch, *spatial, channels)."""
        spatial, channels = tuple(input_shape[1:-1]), input_shape[-1]
        if None in spatial:
            raise ValueError(f"{owner_of(self)}: ConvLSTM layers only support static input shapes "
                             f"for the spatial dimension. Received invalid input shape: "
                             f"input_shape={tuple(input_shape)}")
        if channels is None:
            raise ValueError(f"{owner_of(self)}: The channel dimension of the inputs should be "
                             f"defined. Found None. Full input shape received: "
                             f"input_shape={tuple(input_shape)}")
        out = tuple(_positions(*window, self.padding) for window in
                    zip(spatial, self.kernel_size, self.strides, self.dilation_rate))
        if min(out) < 1:
            raise ValueError(f"{owner_of(self)}: the kernel {self.kernel_size} (dilation "
                             f"{self.dilation_rate}) is larger than the inputs' spatial size "
                             f"{spatial} with padding='valid'")
        self._step_shape, self._state_shape = (*spatial, channels), (*out, self.units)
        super().build(input_shape)

    def mask_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return self._step_shape, self._state_shape

    def input_product(self, b: Builder, x: Value, kernel: Value) -> Value:
        if x.type.rank == self.rank + 2:   # one step's images
            return convolve(b, self, x, kernel, 1)
        return _over_steps(b, x, kernel, lambda b, images, k: convolve(b, self, images, k, 1))

    def recurrent_product(self, b: Builder, h: Value, kernel: Value) -> Value:
        ones = (1,) * self.rank
        return convolve(b, _Window(self.rank, self.kernel_size, ones, ones, "same"), h, kernel, 1)

    def scan_cell(self) -> str:
        return ""   # no named cell (nor ONNX's LSTM) has convolutions for products

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        return {**{k: v for k, v in config.items() if k != "units"}, "filters": self.units,
                "kernel_size": self.kernel_size, "strides": self.strides,
                "padding": self.padding, "data_format": self.data_format,
                "dilation_rate": self.dilation_rate}


def _move_channels(b: Builder, v: Value, rank: int, to_last: bool) -> Value:
    """`v` (..., channels, *spatial) as (..., *spatial, channels), or back (not `to_last`)."""
    r = v.type.rank
    at = r - rank - 1   # where channels_first puts the channels
    perm = ([*range(at), *range(at + 1, r), at] if to_last else [*range(at), r - 1, *range(at, r - 1)])
    return b.transpose(v, perm=perm)


# The ConvLSTMs' cell arguments: the LSTM's (Keras's ConvLSTM takes no `implementation`), the
# convolution's, and the rank each layer gives its cell.
_CONV_CELL_ARGS = (*(a for a in _CELL_ARGS if a not in ("reset_after", "implementation")),
                   "rank", "kernel_size", "strides", "padding", "data_format", "dilation_rate")


class ConvLSTM(_CellLayer):
    """What ConvLSTM1D, 2D and 3D share (module docstring): an RNN over a ConvLSTMCell of
    `rank`, whose inputs are (batch, steps, *spatial, channels) (channels before the spatial
    axes with channels_first), with Keras's flat config."""

    cell_class = ConvLSTMCell
    cell_name = "conv_lstm_cell"
    cell_args = _CONV_CELL_ARGS
    rank = 2

    def __init__(self, filters: int, kernel_size, strides=1, padding: str = "valid",
                 data_format: str | None = None, dilation_rate=1, activation="tanh",
                 recurrent_activation="sigmoid", use_bias: bool = True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", unit_forget_bias: bool = True, **kwargs):
        super().__init__(positive_int(filters, "filters", type(self).__name__), rank=self.rank,
                         kernel_size=kernel_size, strides=strides, padding=padding,
                         data_format=data_format, dilation_rate=dilation_rate,
                         activation=activation, recurrent_activation=recurrent_activation,
                         use_bias=use_bias, kernel_initializer=kernel_initializer,
                         recurrent_initializer=recurrent_initializer,
                         bias_initializer=bias_initializer, unit_forget_bias=unit_forget_bias,
                         **kwargs)

    @property
    def input_rank(self) -> int:
        return self.rank + 3

    @property
    def filters(self) -> int:
        return self.cell.units

    def build(self, input_shape) -> None:
        shapes = input_shape if isinstance(input_shape, list) else [input_shape]
        sequence = tuple(shapes[0])
        if self.data_format == "channels_first" and len(sequence) == self.input_rank:
            sequence = (*sequence[:2], *sequence[3:], sequence[2])
        super().build([sequence, *shapes[1:]])

    def run(self, b: Builder, x: Value, mask, initial: list[Value], training: bool,
            reverse_output: bool = True) -> list[Value]:
        if mask is not None and mask.value.type.rank != 2:
            raise ValueError(f"{owner_of(self)}: a ConvLSTM takes a mask of whole steps (batch, "
                             f"steps); layer '{mask.source}' gives one of shape "
                             f"{mask.value.type.shape} (Masking over images masks pixels, which "
                             f"Keras's ConvLSTM cannot take either)")
        if self.data_format == "channels_last":
            return super().run(b, x, mask, initial, training, reverse_output)
        x = _move_channels(b, x, self.rank, to_last=True)
        initial = [_move_channels(b, s, self.rank, to_last=True) for s in initial]
        outputs = super().run(b, x, mask, initial, training, reverse_output)
        return [_move_channels(b, v, self.rank, to_last=False) for v in outputs]


class ConvLSTM1D(ConvLSTM):
    """1-D convolutional LSTM: inputs (batch, steps, length, channels), kernel (k, channels,
    4 * filters).

    Example:

    >>> import numpy as np
    >>> ConvLSTM1D(4, 3, padding="same")(np.ones((2, 5, 8, 3), "float32")).shape
    (2, 8, 4)
    """

    rank = 1


class ConvLSTM2D(ConvLSTM):
    """2-D convolutional LSTM: inputs (batch, steps, rows, cols, channels), kernel (kh, kw,
    channels, 4 * filters); states h and c (batch, new_rows, new_cols, filters).

    Example:

    >>> import numpy as np
    >>> layer = ConvLSTM2D(4, (3, 3), padding="same", return_sequences=True)
    >>> layer(np.ones((2, 5, 8, 8, 1), "float32")).shape
    (2, 5, 8, 8, 4)
    """

    rank = 2


class ConvLSTM3D(ConvLSTM):
    """3-D convolutional LSTM: inputs (batch, steps, depth, rows, cols, channels), kernel (kd,
    kh, kw, channels, 4 * filters).

    Example:

    >>> import numpy as np
    >>> ConvLSTM3D(2, 3)(np.ones((1, 3, 4, 5, 5, 1), "float32")).shape
    (1, 2, 3, 3, 2)
    """

    rank = 3

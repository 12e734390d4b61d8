"""Recurrent cells: SimpleRNNCell, LSTMCell, GRUCell and StackedRNNCells (Keras 3's weights,
layout, arguments and configs).

A cell is one time step; `keras.layers.RNN` runs it over a sequence as one `scan`. Its
computation comes in two parts so that the layer follows the fast CPU recipe:

- `project(b, x, masks)`: inputs (of any rank) times the kernel of all gates at once, plus the
  input bias. The layer applies it to the whole sequence before the loop: one matmul over
  batch x steps rows.
- `step(b, projected, states, masks)`: the rest of a step, inside the loop body: one matmul of
  the state by the recurrent kernel of all gates (per gate only under recurrent dropout, as
  Keras 3's `implementation=1` does), then the gates' elementwise math, which fusion joins.

`masks` are the dropout masks of one batch (`dropout_masks`), drawn once before the loop and the
same at every step, as Keras 3's cells cache them; None at inference.

A cell users write (Keras's protocol: a Layer with `state_size`, maybe `output_size`, whose
`call(inputs, states)` returns the output and the new states) runs by the same rules through
`TracedCell`: no projection, and a step that is its `call` traced into the loop's body.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple, Sequence

from nncompile.ir import Builder, Value
from nncompile.ir.cells import ACTIVATIONS, Cell, gate_block, gru_update, lstm_update
from nncompile.ir.dims import canonical
from nncompile.keras import activations, constraints, initializers, regularizers
from nncompile.keras.layers.arguments import ArgumentError, boolean, owner_of, weight_options
from nncompile.keras.layers.base import Layer
from nncompile.keras.layers.core import seed_input, stream_key

import numpy as np


def _rows(b: Builder, x: Value) -> Value:
    """`x` (batch, ..., channels) as (batch * ..., channels): one row per pixel."""
    if x.type.rank == 2:
        return x
    pixels = math.prod(x.type.shape[1:-1])
    return b.reshape(x, shape=(canonical(f"({x.type.shape[0]})*{pixels}"), x.type.shape[-1]))


class DropoutMasks(NamedTuple):
    """One cell's dropout masks for a batch: on its inputs (shaped as a step's, (batch,
    input_dim)) and on its state (batch, units); one per gate under Keras's `implementation=1`
    (and always for a ConvLSTM), else a single one."""

    inputs: list[Value]
    state: list[Value]


def _rate(value, arg: str, owner: str) -> float:
    """Keras 3 clips dropout rates into [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ArgumentError(f"{owner}: the `{arg}` argument must be a float between 0 and 1. "
                            f"Received: {arg}={value!r}")
    return min(1.0, max(0.0, float(value)))


def columns(layer: Layer, b: Builder, var, start: int, end: int) -> Value:
    """Columns start:end of weight `var` (rows, for a 1-D one: its only axis), sliced outside any
    loop: inside a scan body the slice arrives as an invariant, so steps do not repeat it."""
    outer = getattr(b, "outer", None)
    if outer is not None:
        return b.invariant(columns(layer, outer, var, start, end))
    return b.slice(layer.param(b, var), starts=[start], ends=[end], axes=[-1], steps=[1])


def _row(layer: Layer, b: Builder, var, index: int) -> Value:
    """Row `index` of a 2-D weight (a GRU's input or recurrent bias), outside any loop."""
    outer = getattr(b, "outer", None)
    if outer is not None:
        return b.invariant(_row(layer, outer, var, index))
    row = b.slice(layer.param(b, var), starts=[index], ends=[index + 1], axes=[0], steps=[1])
    return b.reshape(row, shape=(var.shape[1],))


def _dropout(b: Builder, shape, rate: float, key: int) -> Value:
    """Keras's dropout of a tensor of ones: 0 with probability `rate`, else 1 / (1 - rate)."""
    draws = b.op("random_uniform", seed_input(b), shape=shape, key=key)
    keep = b.cast(b.greater_equal(draws, b.scalar(rate, draws)), dtype=draws.type.dtype)
    return b.mul(keep, b.scalar(1 / (1 - rate), draws))


class RecurrentCell(Layer):
    """What SimpleRNNCell, LSTMCell and GRUCell share: `units`, the activation, the kernel
    (input_dim, gates * units), recurrent kernel (units, gates * units) and bias, their
    initializers, regularizers and constraints, and dropout on inputs and state.

    Its products are matmuls; a cell whose kernels slide over images (a ConvLSTM's) has their
    window first in the kernels' shapes (`window`) and overrides `input_product` and
    `recurrent_product` with its convolutions."""

    gates = 1
    window: tuple[int, ...] = ()

    def __init__(self, units: int, activation="tanh", use_bias: bool = True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, kernel_constraint=None, recurrent_constraint=None,
                 bias_constraint=None, dropout: float = 0.0, recurrent_dropout: float = 0.0,
                 seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        owner = owner_of(self)
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units <= 0:
            raise ArgumentError(f"{owner}: Received an invalid value for argument `units`, "
                                f"expected a positive integer, got {units}.")
        self.units = int(units)
        self.activation = activations.get(activation)
        self.use_bias = boolean(use_bias, "use_bias", owner)
        weight_options(self, "kernel", kernel_initializer, kernel_regularizer, kernel_constraint)
        weight_options(self, "recurrent", recurrent_initializer, recurrent_regularizer, recurrent_constraint)
        weight_options(self, "bias", bias_initializer, bias_regularizer, bias_constraint)
        self.dropout = _rate(dropout, "dropout", owner)
        self.recurrent_dropout = _rate(recurrent_dropout, "recurrent_dropout", owner)
        self.seed = seed
        self._key = stream_key(seed, spare=64)
        self.bias = None

    @property
    def state_size(self) -> list[int]:
        return [self.units]

    @property
    def output_size(self) -> int:
        return self.units

    @property
    def mask_count(self) -> int:
        """Dropout masks per tensor: one per gate under `implementation=1`, else one."""
        return 1

    def build(self, input_shape) -> None:
        width = self.gates * self.units
        self.kernel = self.add_weight(
            shape=(*self.window, input_shape[-1], width), initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer, constraint=self.kernel_constraint, name="kernel")
        self.recurrent_kernel = self.add_weight(
            shape=(*self.window, self.units, width), initializer=self.recurrent_initializer,
            regularizer=self.recurrent_regularizer, constraint=self.recurrent_constraint,
            name="recurrent_kernel")
        if self.use_bias:
            self.bias = self.add_weight(shape=self.bias_shape(), initializer=self.bias_init(),
                                        regularizer=self.bias_regularizer,
                                        constraint=self.bias_constraint, name="bias")
        self.built = True

    def bias_shape(self) -> tuple[int, ...]:
        return (self.gates * self.units,)

    def bias_init(self):
        return self.bias_initializer

    # the computation --------------------------------------------------------------------------
    def dropout_masks(self, b: Builder, batch, training: bool) -> DropoutMasks | None:
        """This batch's masks (Keras applies them only in training, for rates strictly between
        0 and 1), or None."""
        if not training:
            return None
        n = self.mask_count
        inputs_shape, state_shape = self.mask_shapes()
        inputs = ([_dropout(b, (batch, *inputs_shape), self.dropout, self._key + i)
                   for i in range(n)] if 0 < self.dropout < 1 else [])
        state = ([_dropout(b, (batch, *state_shape), self.recurrent_dropout, self._key + n + i)
                  for i in range(n)] if 0 < self.recurrent_dropout < 1 else [])
        return DropoutMasks(inputs, state) if inputs or state else None

    def mask_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The shapes, without the batch, of one step's inputs and of the state: those of the
        dropout masks (Keras draws them as ones like a step's inputs and like the state)."""
        return (self.kernel.shape[-2],), (self.units,)

    def input_product(self, b: Builder, x: Value, kernel: Value) -> Value:
        """`x` (one step, or a time-major sequence) by the kernel (or gate columns of it)."""
        return b.matmul(x, kernel)

    def recurrent_product(self, b: Builder, h: Value, kernel: Value) -> Value:
        """The state `h` by the recurrent kernel (or gate columns of it)."""
        return b.matmul(h, kernel)

    def project(self, b: Builder, x: Value, masks: DropoutMasks | None) -> Value:
        """x @ kernel (+ the input bias) for every gate; per gate under per-gate input masks.
        `x` is one step (batch, features) or a time-major sequence (steps, batch, features), so
        a (batch, features) dropout mask broadcasts over the steps as it is."""
        dropped = masks.inputs if masks is not None else []
        if len(dropped) > 1:
            u = self.units
            y = b.concat(*(self.input_product(b, b.mul(x, m),
                                               columns(self, b, self.kernel, i * u, (i + 1) * u))
                           for i, m in enumerate(dropped)), axis=-1)
        else:
            if dropped:
                x = b.mul(x, dropped[0])
            y = self.input_product(b, x, self.param(b, self.kernel))
        bias = self.input_bias(b)
        return y if bias is None else b.add(y, bias)

    def input_bias(self, b: Builder) -> Value | None:
        return None if self.bias is None else self.param(b, self.bias)

    def recurrent(self, b: Builder, h: Value, masks: DropoutMasks | None,
                  gates: Sequence[int] | None = None) -> Value:
        """h @ recurrent_kernel for `gates` (default all): one matmul, or one per gate, each on
        its own masked copy of h, under recurrent dropout with per-gate masks."""
        gates = list(range(self.gates)) if gates is None else list(gates)
        u = self.units
        dropped = masks.state if masks is not None else []
        if len(dropped) > 1:
            return b.concat(*(self.recurrent_product(b, b.mul(h, dropped[g]),
                                                     columns(self, b, self.recurrent_kernel,
                                                             g * u, (g + 1) * u))
                              for g in gates), axis=-1)
        if dropped:
            h = b.mul(h, dropped[0])
        if gates == list(range(self.gates)):
            kernel = self.param(b, self.recurrent_kernel)
        else:
            kernel = columns(self, b, self.recurrent_kernel, gates[0] * u, (gates[-1] + 1) * u)
        return self.recurrent_product(b, h, kernel)

    def step(self, b: Builder, projected: Value, states: list[Value],
             masks: DropoutMasks | None) -> tuple[Value, list[Value]]:
        raise NotImplementedError

    def scan_cell(self) -> str:
        """The `cell` attribute of a scan of this cell's `step` without dropout masks
        (nncompile.ir.cells), or "" when an activation is not one a cell can name."""
        names = []
        for fn in self.cell_activations():
            name = next((n for n in ACTIVATIONS if activations.get(n) is fn), None)
            if name is None:
                return ""
            names.append(name)
        return str(Cell(self.cell_kind(), tuple(names)))

    def cell_kind(self) -> str:
        raise NotImplementedError

    def cell_activations(self) -> list:
        """The gates' activation (gated cells), then the cell's."""
        return [self.activation]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units,
                "activation": activations.serialize(self.activation), "use_bias": self.use_bias,
                **self.object_config(),
                "dropout": self.dropout, "recurrent_dropout": self.recurrent_dropout,
                "seed": self.seed}

    def object_config(self) -> dict[str, Any]:
        """The initializers, regularizers and constraints, as Keras 3 writes them."""
        return {"kernel_initializer": initializers.serialize(self.kernel_initializer),
                "recurrent_initializer": initializers.serialize(self.recurrent_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer),
                "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
                "recurrent_regularizer": regularizers.serialize(self.recurrent_regularizer),
                "bias_regularizer": regularizers.serialize(self.bias_regularizer),
                "kernel_constraint": constraints.serialize(self.kernel_constraint),
                "recurrent_constraint": constraints.serialize(self.recurrent_constraint),
                "bias_constraint": constraints.serialize(self.bias_constraint)}


class SimpleRNNCell(RecurrentCell):
    """One step of a fully connected RNN: `h = activation(x @ kernel + bias + h @ recurrent_kernel)`.

    Example:

    >>> from nncompile.keras.layers import RNN
    >>> RNN(SimpleRNNCell(4))(np.ones((2, 3, 5), "float32")).shape
    (2, 4)
    """

    def step(self, b, projected, states, masks):
        h = self.activation(b, b.add(projected, self.recurrent(b, states[0], masks)))
        return h, [h]

    def cell_kind(self) -> str:
        return "simple_rnn"


class _GatedCell(RecurrentCell):
    """LSTMCell and GRUCell: a `recurrent_activation` for the gates and Keras's `implementation`
    (1 whenever recurrent_dropout is set: one dropout mask per gate)."""

    def __init__(self, units: int, activation="tanh", recurrent_activation="sigmoid",
                 implementation: int = 2, **kwargs):
        super().__init__(units, activation=activation, **kwargs)
        self.recurrent_activation = activations.get(recurrent_activation)
        if implementation not in (1, 2):
            raise ArgumentError(f"{owner_of(self)}: the `implementation` argument must be 1 or 2. "
                                f"Received: implementation={implementation!r}")
        self.implementation = 1 if self.recurrent_dropout != 0 else implementation

    @property
    def mask_count(self) -> int:
        return self.gates if self.implementation == 1 else 1

    def cell_activations(self) -> list:
        return [self.recurrent_activation, self.activation]

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["recurrent_activation"] = activations.serialize(self.recurrent_activation)
        return config


class LSTMCell(_GatedCell):
    """One step of a Long Short-Term Memory layer (Hochreiter 1997), gates i, f, c, o in that
    order along the kernels' columns; states [h, c].

    `unit_forget_bias=True` initializes the forget gate's bias to 1 (the others with
    `bias_initializer`), as Keras does.

    Example:

    >>> from nncompile.keras.layers import RNN
    >>> RNN(LSTMCell(4), return_state=True)(np.ones((2, 3, 5), "float32"))[2].shape
    (2, 4)
    """

    gates = 4

    def __init__(self, units: int, activation="tanh", recurrent_activation="sigmoid",
                 use_bias: bool = True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros",
                 unit_forget_bias: bool = True, **kwargs):
        super().__init__(units, activation=activation, recurrent_activation=recurrent_activation,
                         use_bias=use_bias, kernel_initializer=kernel_initializer,
                         recurrent_initializer=recurrent_initializer,
                         bias_initializer=bias_initializer, **kwargs)
        self.unit_forget_bias = boolean(unit_forget_bias, "unit_forget_bias", owner_of(self))

    @property
    def state_size(self) -> list[int]:
        return [self.units, self.units]

    def bias_init(self):
        if not self.unit_forget_bias:
            return self.bias_initializer
        init, u = self.bias_initializer, self.units

        def forget_ones(shape, dtype=None):
            return np.concatenate([init((u,), dtype), np.ones((u,), dtype),
                                   init((2 * u,), dtype)])
        return forget_ones

    def step(self, b, projected, states, masks):
        h, c = states
        z = b.add(projected, self.recurrent(b, h, masks))
        # lstm_update takes the gates as column blocks of rows; a ConvLSTM's pixels are rows too
        h, c = lstm_update(b, _rows(b, z), _rows(b, c), self.recurrent_activation, self.activation)
        h, c = (b.reshape(v, shape=states[1].type.shape) if v.type != states[1].type else v
                for v in (h, c))
        return h, [h, c]

    def cell_kind(self) -> str:
        return "lstm"

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "unit_forget_bias": self.unit_forget_bias}


class GRUCell(_GatedCell):
    """One step of a Gated Recurrent Unit (Cho et al. 2014), gates z, r, h in that order.

    `reset_after=True` (Keras's default, cuDNN's convention) applies the reset gate after the
    recurrent matmul and keeps two biases, bias (2, 3 * units): row 0 for the inputs, row 1 for
    the state; `reset_after=False` applies it before, with one bias (3 * units,).

    Example:

    >>> from nncompile.keras.layers import RNN
    >>> cell = GRUCell(4)
    >>> RNN(cell)(np.ones((2, 3, 5), "float32")).shape, cell.bias.shape
    ((2, 4), (2, 12))
    """

    gates = 3

    def __init__(self, units: int, activation="tanh", recurrent_activation="sigmoid",
                 reset_after: bool = True, **kwargs):
        super().__init__(units, activation=activation, recurrent_activation=recurrent_activation,
                         **kwargs)
        self.reset_after = boolean(reset_after, "reset_after", owner_of(self))

    def bias_shape(self) -> tuple[int, ...]:
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def input_bias(self, b: Builder) -> Value | None:
        if self.bias is None or not self.reset_after:
            return super().input_bias(b)
        return _row(self, b, self.bias, 0)

    def step(self, b, projected, states, masks):
        h = states[0]
        if self.reset_after:
            inner = self.recurrent(b, h, masks)
            if self.bias is not None:
                inner = b.add(inner, _row(self, b, self.bias, 1))
        else:
            inner = self.recurrent(b, h, masks, gates=(0, 1))

        def reset(r: Value) -> Value:
            if self.reset_after:
                return b.mul(r, gate_block(b, inner, 2, self.units))
            dropped = masks.state if masks is not None else []
            h_h = b.mul(h, dropped[-1]) if dropped else h
            return self.recurrent_product(b, b.mul(r, h_h), columns(
                self, b, self.recurrent_kernel, 2 * self.units, 3 * self.units))

        h = gru_update(b, projected, inner, h, self.recurrent_activation, self.activation, reset)
        return h, [h]

    def cell_kind(self) -> str:
        return "gru_reset_after" if self.reset_after else "gru"

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "reset_after": self.reset_after}


class TracedCell:
    """The recurrent-cell rules of a cell users wrote, as Keras 3's `RNN` takes one: a Layer with
    `state_size` (an int, or a list of ints, one per state), optionally `output_size` (else
    the first state's size), and `call(inputs, states[, training])` returning `(output,
    new_states)` written with keras.ops. Each step traces that `call` into the loop's body (the
    cell's weights become invariants of the loop). Its output need not be one of its states."""

    output_is_state = False

    def __init__(self, cell: Layer, owner: str):
        size = getattr(cell, "state_size", None)
        if size is None:
            raise ValueError(f"{owner}: state_size must be specified as property on the RNN cell "
                             f"{cell!r}.")
        sizes = [size] if isinstance(size, int) else list(size) if isinstance(size, (list, tuple)) else None
        if sizes is None or not all(isinstance(s, int) and not isinstance(s, bool) for s in sizes):
            raise ValueError(f"{owner}: state_size must be an integer, or a list/tuple of integers (one "
                             f"for each state tensor). Received: state_size={size!r}")
        output = getattr(cell, "output_size", None)
        if output is not None and (not isinstance(output, int) or isinstance(output, bool)):
            raise ValueError(f"{owner}: output_size must be an integer. Received: output_size={output!r}")
        self.cell, self.state_size = cell, sizes
        self.own_start = hasattr(cell, "get_initial_state")   # not traced: `initial_state=` must be given
        self.output_size = sizes[0] if output is None else output
        self.training = False

    @property
    def built(self) -> bool:
        return self.cell.built

    def build(self, input_shape) -> None:
        self.cell.build(input_shape)
        self.cell.built = True

    def dropout_masks(self, b: Builder, batch, training: bool) -> None:
        """No masks of its own (its `call` draws what it wants); notes the mode for `step`."""
        self.training = training
        return None

    def project(self, b: Builder, x: Value, masks) -> Value:
        return x

    def step(self, b: Builder, inputs: Value, states: list[Value], masks) -> tuple[Value, list[Value]]:
        from nncompile.keras import tracing     # tracing imports the layers
        output, new_states = tracing.trace_cell(self.cell, b, inputs, states, self.training)
        if output.type.shape[1:] != (self.output_size,):
            raise ValueError(f"Layer '{self.cell.name}' ({type(self.cell).__name__}): call() returned an output "
                             f"of shape {output.type.shape}; its output_size (by default its first state's size) "
                             f"gives ({output.type.shape[0]!r}, {self.output_size})")
        return output, new_states


def cell_rules(cell, owner: str) -> "RecurrentCell | StackedRNNCells | TracedCell":
    """What runs `cell` in a loop: keras.layers' cells themselves, a `TracedCell` for a Layer
    users wrote."""
    if isinstance(cell, (RecurrentCell, StackedRNNCells)):
        return cell
    if not isinstance(cell, Layer):
        raise ArgumentError(f"{owner}: Argument `cell` should be a Layer: a cell of keras.layers (LSTMCell, "
                            f"...) or one with `state_size` and `call(inputs, states)`, or a list of "
                            f"them. Received: cell={cell!r}")
    return TracedCell(cell, owner)


class StackedRNNCells(Layer):
    """Cells run one after another within each step, as one cell: cell i + 1 reads the output
    of cell i. Its states are all the cells' states, in order; its output the last cell's.

    Example:

    >>> from nncompile.keras.layers import RNN
    >>> RNN(StackedRNNCells([LSTMCell(4), GRUCell(3)]))(np.ones((2, 3, 5), "float32")).shape
    (2, 3)
    """

    def __init__(self, cells: Sequence[Layer], **kwargs):
        super().__init__(**kwargs)
        self.cells = list(cells)
        self._rules = [cell_rules(cell, owner_of(self)) for cell in self.cells]

    def sublayers(self):
        return [("cells", self.cells)]

    @property
    def state_size(self) -> list[int]:
        return [size for cell in self._rules for size in cell.state_size]

    @property
    def output_size(self) -> int:
        return self._rules[-1].output_size

    @property
    def output_is_state(self) -> bool:
        return getattr(self._rules[-1], "output_is_state", True)

    @property
    def output_state(self) -> int:
        """Which state holds the output: the last cell's first one."""
        return len(self.state_size) - len(self._rules[-1].state_size)

    def build(self, input_shape) -> None:
        for cell, rules in zip(self.cells, self._rules):
            self.adopt(cell)
            if not cell.built:
                rules.build(input_shape)
                cell.built = True
            input_shape = (input_shape[0], rules.output_size)
        self.built = True

    def dropout_masks(self, b: Builder, batch, training: bool) -> list | None:
        masks = [cell.dropout_masks(b, batch, training) for cell in self._rules]
        return masks if any(m is not None for m in masks) else None

    def project(self, b: Builder, x: Value, masks) -> Value:
        return self._rules[0].project(b, x, masks[0] if masks else None)

    def step(self, b, projected, states, masks):
        new_states, at = [], 0
        for i, cell in enumerate(self._rules):
            cell_masks = masks[i] if masks else None
            if i:   # the cell before's output, projected by this one
                projected = cell.project(b, projected, cell_masks)
            count = len(cell.state_size)
            projected, cell_states = cell.step(b, projected, states[at:at + count], cell_masks)
            new_states += cell_states
            at += count
        return projected, new_states

    def get_config(self) -> dict[str, Any]:
        from nncompile.keras.functional import serialize_layer

        return {**super().get_config(), "cells": [serialize_layer(c) for c in self.cells]}

    @classmethod
    def from_config(cls, config) -> "StackedRNNCells":
        from nncompile.keras.functional import deserialize_layer

        config = dict(config)
        cells = [c if isinstance(c, Layer) else deserialize_layer(c) for c in config.pop("cells", [])]
        return cls(cells, **config)

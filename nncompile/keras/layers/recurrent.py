"""Recurrent layers: the generic `RNN` (over a cell of recurrent_cells.py), and `SimpleRNN`,
`LSTM` and `GRU`, with Keras 3's arguments, defaults, weights and semantics.

A recurrent layer is one `scan` over the time axis (axis 1 of Keras's batch-major sequences):
the input projection of every step is one matmul before the loop, the loop carries the states
(h, and c for an LSTM), scans the projected inputs (and the mask), and holds the recurrent kernel
as an invariant; its body is one step of the cell. Nothing is unrolled: a sequence of 1,000
steps gives the graph of a sequence of 10.

Semantics (Keras 3.15): `go_backwards` processes the sequence from its end and returns the
output sequence in that processing order (reversed); with a mask, a masked step keeps the states
as they were and outputs the held output state, h (as the JAX and numpy backends' loops do;
with `unroll`, as TensorFlow's loop too, the previous output instead, zeros before the first
kept step, which differs from h only after non-zero initial states or for a cell users wrote
whose output is not its first state), or zeros with `zero_output_for_mask`; the output
mask is the input's, with `return_sequences`. `stateful=True` needs a fixed batch size: the
last states of a call (predict, or a training step) are the first of the next, until
`reset_states()`, as with Keras on TensorFlow.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from nncompile.ir import Builder, DType, TensorType, Value
from nncompile.ir.ops.scan import slice_type
from nncompile.ir.ops.shape import SLICE_END
from nncompile.keras import regularizers
from nncompile.keras.layers.arguments import (ArgumentError, boolean, check_input_rank,
                                              legacy_args, owner_of, warn_legacy)
from nncompile.keras.layers.base import Layer, Mask, Variable
from nncompile.keras.layers.core import SEED_INPUT, _as_float, seed_input
from nncompile.keras.layers.recurrent_cells import (GRUCell, LSTMCell, RecurrentCell,
                                                    SimpleRNNCell, StackedRNNCells, cell_rules)

TIME = 1   # the time axis of Keras's (batch, steps, features) sequences
# The loop runs over a time-major copy of the sequence (steps, batch, ...): a step's slice is then
# contiguous, so the loop reads its inputs and writes its outputs where they lie, no copies.
LOOP_AXIS = 0


class StepBuilder(Builder):
    """The builder of a scan body. A weight or an enclosing graph's value used inside becomes an
    invariant of the scan: a body input bound to an operand (`operands`) read from `outer`."""

    def __init__(self, outer: Builder, name: str):
        super().__init__(name=name)
        self.outer = outer
        self.operands: list[Value] = []
        self._lifted: dict[int, Value] = {}

    def invariant(self, value: Value) -> Value:
        """The body input that stands for `value` of the enclosing graph (one per value)."""
        if id(value) not in self._lifted:
            self._lifted[id(value)] = self.input(f"invariant_{len(self.operands)}", value.type)
            self.operands.append(value)
        return self._lifted[id(value)]

    def param(self, name: str, value: np.ndarray) -> Value:
        return self.invariant(self.outer.param(name, value))

    def input(self, name: str, type: TensorType) -> Value:
        if name == SEED_INPUT:   # random ops inside draw from the enclosing graph's seed
            return self.invariant(seed_input(self.outer))
        return super().input(name, type)


def scan_steps(b: Builder, body: StepBuilder, carries: list[Value], scanned: list[Value],
               outputs: list[Value], reverse: bool = False, axis: int = TIME,
               cell: str = "") -> list[Value]:
    """Finish `body` (new carries, then per-step `outputs`) and add its scan over `axis`: the
    final carries, then each per-step output stacked along it. `cell` names the recurrent cell
    the body is one step of (nncompile.ir.cells), if it is one."""
    graph = body.finish(outputs)
    return list(b.scan(*carries, *scanned, *body.operands, body=graph, num_carry=len(carries),
                       num_scanned=len(scanned), axis=axis, reverse=reverse, cell=cell))


def swap_time(b: Builder, x: Value) -> Value:
    """(batch, steps, ...) <-> (steps, batch, ...)."""
    return b.transpose(x, perm=[1, 0, *range(2, x.type.rank)])


def positions(b: Builder, x: Value, axis: int) -> Value:
    """0, 1, ... n - 1 (i32) along `axis` of `x`, whose length may be symbolic (the batch): a
    scan counting its steps (the IR has no iota over a symbolic length)."""
    body = StepBuilder(b, "count")
    count = body.input("count", TensorType(DType.f32, (1,)))
    body.input("slice", slice_type(x.type, axis))
    graph = body.finish([body.add(count, body.scalar(1.0, count)), count])
    zero = b.constant(np.zeros(1, np.float32))
    _, index = b.scan(zero, x, body=graph, num_carry=1, num_scanned=1, axis=axis)
    flat = b.reshape(index, shape=(x.type.shape[axis],))
    return b.cast(flat, dtype=DType.i32)


def reverse_time(b: Builder, x: Value) -> Value:
    """`x` with its time axis reversed, whatever its length."""
    return b.slice(x, starts=[-1], ends=[-SLICE_END], axes=[TIME], steps=[-1])


class StatesCall(Layer):
    """A layer called as `layer(x, initial_state=[...])` (RNN, Bidirectional): it receives
    [x, *states] as its inputs, and its functional config records the states by keyword, as
    Keras 3 does."""

    def __call__(self, inputs, initial_state=None, training: bool | None = None, **kwargs):
        if initial_state is not None:
            states = list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
            inputs = [inputs, *states]
        return super().__call__(inputs, training=training, **kwargs)

    def call_arguments(self, inputs: list, single: bool) -> tuple[list, dict]:
        return ([inputs[0]], {}) if single else ([inputs[0]], {"initial_state": inputs[1:]})


class RNN(StatesCall):
    """Runs a cell (SimpleRNNCell, LSTMCell, GRUCell, a cell users write with Keras's protocol,
    or a list of them, stacked) over the time axis of (batch, steps, features) inputs.

    Outputs (batch, output_size), or the whole sequence (batch, steps, output_size) with
    `return_sequences`; with `return_state`, then the last states too (a stack of cells gives
    all its cells' states, in order). Call it with `initial_state=[...]` to start from given
    states. `unroll` is accepted: the layer is a loop either way (it only changes what
    masked steps before the first kept one output after given initial states, as in Keras).

    Example:

    >>> from nncompile.keras.layers import LSTMCell
    >>> RNN(LSTMCell(4), return_sequences=True)(np.ones((2, 3, 5), "float32")).shape
    (2, 3, 4)
    """

    supports_masking = True
    input_rank = 3   # (batch, steps, features); a ConvLSTM's steps are images

    def __init__(self, cell, return_sequences: bool = False, return_state: bool = False,
                 go_backwards: bool = False, stateful: bool = False, unroll: bool = False,
                 zero_output_for_mask: bool = False, **kwargs):
        if isinstance(cell, (list, tuple)):
            cell = StackedRNNCells(cell)
        super().__init__(**kwargs)
        owner = owner_of(self)
        self._rules = cell_rules(cell, owner)   # what runs the cell in the loop
        self.cell = cell
        self.return_sequences = boolean(return_sequences, "return_sequences", owner)
        self.return_state = boolean(return_state, "return_state", owner)
        self.go_backwards = boolean(go_backwards, "go_backwards", owner)
        self.stateful = boolean(stateful, "stateful", owner)
        self.unroll = boolean(unroll, "unroll", owner)
        self.zero_output_for_mask = boolean(zero_output_for_mask, "zero_output_for_mask", owner)
        self.states: list[Variable] | None = None

    def sublayers(self):
        return [("cell", self.cell)]

    @property
    def state_size(self) -> list:
        """Each state's size: an int (units), or a shape without the batch (a ConvLSTM's)."""
        return list(self._rules.state_size)

    # building ---------------------------------------------------------------------------------
    def build(self, input_shape) -> None:
        shapes = input_shape if isinstance(input_shape, list) else [input_shape]
        sequence = tuple(shapes[0])
        check_input_rank(self, sequence, self.input_rank)
        if sequence[-1] is None:
            raise ValueError(f"Layer '{self.name}' ({type(self).__name__}): the last dimension "
                             f"of the inputs (features) must be defined. Full input shape "
                             f"received: {sequence}")
        if self.unroll and sequence[1] is None:
            raise ValueError(f"Layer '{self.name}' ({type(self).__name__}): Cannot unroll a RNN "
                             f"if the time dimension is undefined. Specify the time dimension "
                             f"by passing a `shape` or `batch_shape` argument to your `Input()`.")
        self.adopt(self.cell)
        if not self.cell.built:
            self._rules.build((sequence[0], *sequence[2:]))   # one step's shape
            self.cell.built = True
        if self.stateful and self.states is None:
            self._create_states(sequence)
        self.built = True

    def _create_states(self, sequence: tuple) -> None:
        if sequence[0] is None:
            raise ValueError(f"Layer '{self.name}' ({type(self).__name__}): When using "
                             f"`stateful=True` in a RNN, the batch size must be static. Found "
                             f"dynamic batch size: sequence.shape={sequence}")
        # As in Keras, not weights: neither trained, counted nor saved.
        self.states = [Variable(np.zeros((sequence[0], *_shape(size)), self.dtype), "rnn_state",
                                f"{self._scope}{self.name}/rnn_state_{i}", trainable=False)
                       for i, size in enumerate(self.state_size)]

    def reset_states(self, states=None) -> None:
        """Set the states of a stateful layer to zeros (or to `states`)."""
        self.reset_state(states)

    def reset_state(self, states=None) -> None:
        if self.states is None:
            return
        values = [None] * len(self.states) if states is None else (
            list(states) if isinstance(states, (list, tuple)) else [states])
        if len(values) != len(self.states):
            raise ValueError(f"Layer '{self.name}' expects {len(self.states)} states, "
                             f"but it received {len(values)} state values.")
        for var, value in zip(self.states, values):
            var.assign(np.zeros(var.shape, var.dtype) if value is None else value)

    # calling ----------------------------------------------------------------------------------
    def emit(self, b: Builder, inputs, training: bool = False):
        return self.emit_masked(b, inputs, None, training)

    def emit_masked(self, b: Builder, inputs, mask, training: bool = False):
        items = inputs if isinstance(inputs, list) else [inputs]
        masks = mask if isinstance(mask, list) else [mask]
        outputs = self.run(b, items[0], masks[0], items[1:], training)
        return outputs if self.return_state else outputs[0]

    def emit_mask(self, b: Builder, inputs, mask):
        sequence_mask = mask[0] if isinstance(mask, list) else mask
        output_mask = sequence_mask if self.return_sequences else None
        if self.return_state:
            return [output_mask] + [None] * len(self.state_size)
        return output_mask

    def run(self, b: Builder, x: Value, mask: Mask | None, initial: list[Value],
            training: bool, reverse_output: bool = True) -> list[Value]:
        """[output, *final states]; `reverse_output=False` leaves a go_backwards sequence in
        time order (Bidirectional wants it so)."""
        x = _as_float(b, x, self.dtype)
        masks = self._rules.dropout_masks(b, x.type.shape[0], training)
        states = self._initial_states(b, x, initial)
        ones = (1,) * len(_shape(self._rules.output_size))   # the mask broadcast over a step's output
        keep = None if mask is None else b.reshape(mask.keep(b), shape=mask.value.type.shape + ones)
        # an unrolled loop's masked step outputs the previous output (zeros before the first
        # kept step), which differs from the held h only after non-zero initial states
        previous_output = keep is not None and self.unroll and (
            bool(initial) or self.stateful or not getattr(self._rules, "output_is_state", True))
        carry_output = self._carries_output(keep is not None, previous_output)
        carries = states + ([_zeros(b, x, self._rules.output_size)] if carry_output else [])
        scanned = [self._rules.project(b, swap_time(b, x), masks)] + ([swap_time(b, keep)] if keep is not None else [])
        body, results = self._step(b, carries, scanned, len(states), masks, carry_output, previous_output)
        # A plain cell's step, unmasked and without dropout, is the cell the scan names.
        named = isinstance(self.cell, RecurrentCell) and masks is None and keep is None
        results = scan_steps(b, body, carries, scanned, results, reverse=self.go_backwards,
                             axis=LOOP_AXIS, cell=self.cell.scan_cell() if named else "")
        finals = results[:len(states)]
        self._update_states(b, finals)
        if not self.return_sequences:
            return [results[-1] if carry_output else finals[_output_state(self._rules)], *finals]
        sequence = swap_time(b, results[-1])
        reverse = self.go_backwards and reverse_output
        return [reverse_time(b, sequence) if reverse else sequence, *finals]

    def _carries_output(self, masked: bool, previous_output: bool) -> bool:
        """Whether the loop carries the last output apart from the states: where a masked step
        outputs the previous output, where zero_output_for_mask may zero the last one, and for
        a cell users wrote, whose output may be none of its states."""
        if not getattr(self._rules, "output_is_state", True):
            return True
        if not masked:
            return False
        if self.zero_output_for_mask:
            return not self.return_sequences
        return previous_output

    def _step(self, b: Builder, carries: list[Value], scanned: list[Value], count: int, masks,
              carry_output: bool, previous_output: bool) -> tuple[StepBuilder, list[Value]]:
        """The body of the loop: one step of the cell over `count` states (and the output, if
        carried), masked when a mask is scanned; and its results."""
        body = StepBuilder(b, f"{self.name}_step")
        olds = [body.input(f"state_{i}", v.type) for i, v in enumerate(carries)]
        step_in = [body.input(f"step_{i}", slice_type(v.type, LOOP_AXIS)) for i, v in enumerate(scanned)]
        with body.loc(self.name):
            output, news = self._rules.step(body, step_in[0], olds[:count], _lift(body, masks))
            if len(step_in) > 1:
                output, news = self._hold(body, step_in[1], output, news, olds, count,
                                          self.return_sequences or carry_output, previous_output)
        outputs = [output] * (int(carry_output) + int(self.return_sequences))
        return body, news + outputs

    def _hold(self, b: Builder, keep: Value, output: Value, news: list[Value], olds: list[Value],
              count: int, output_used: bool, previous_output: bool) -> tuple[Value, list[Value]]:
        """Keras's masking of one step: the states stay as they were, and the output (where it
        is used: the last output is otherwise the held h) is zeros, the previous output, or
        the output state as it was (h; Keras's loop takes a cell's first state so)."""
        held = [b.select(keep, new, old) for new, old in zip(news, olds[:count])]
        if not output_used:
            return output, held
        if self.zero_output_for_mask:
            previous = b.broadcast(b.scalar(0.0, output), shape=output.type.shape)
        elif previous_output:
            previous = olds[count]
        elif getattr(self._rules, "output_is_state", True):   # the output is its new h: held, the held h
            return held[_output_state(self._rules)], held
        else:
            previous = olds[_output_state(self._rules)]
        return b.select(keep, output, previous), held

    def _initial_states(self, b: Builder, x: Value, given: list[Value]) -> list[Value]:
        sizes = self.state_size
        if given:
            if len(given) != len(sizes):
                raise ArgumentError(f"Layer '{self.name}' ({type(self).__name__}) expects "
                                    f"{len(sizes)} initial states (sizes {sizes}), received "
                                    f"{len(given)}")
            return [_as_float(b, s, self.dtype) for s in given]
        if getattr(self._rules, "own_start", False):
            cell = self._rules.cell
            raise ValueError(f"Layer '{self.name}' ({type(self).__name__}): its cell '{cell.name}' "
                             f"({type(cell).__name__}) defines get_initial_state, which nncompile does not trace; "
                             f"pass the first states as `initial_state=[...]` when calling the layer")
        if self.stateful:
            rows = positions(b, x, 0)
            return [b.gather(self.param(b, var), rows, axis=0) for var in self.states]
        return [_zeros(b, x, size) for size in sizes]

    def _update_states(self, b: Builder, finals: list[Value]) -> None:
        if not self.stateful:
            return
        for var, final in zip(self.states, finals):
            rows = b.constant(np.arange(var.shape[0], dtype=np.int32))
            b.update(self.param(b, var), b.gather(final, rows, axis=0))

    # configuration ----------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        from nncompile.keras.functional import serialize_layer

        return {**self._loop_config(), "cell": serialize_layer(self.cell)}

    def _loop_config(self) -> dict[str, Any]:
        return {**super().get_config(), "return_sequences": self.return_sequences,
                "return_state": self.return_state, "go_backwards": self.go_backwards,
                "stateful": self.stateful, "unroll": self.unroll,
                "zero_output_for_mask": self.zero_output_for_mask}

    @classmethod
    def from_config(cls, config) -> "RNN":
        from nncompile.keras.functional import deserialize_layer

        config = dict(config)
        cell = config.pop("cell", None)
        if isinstance(cell, dict):
            cell = deserialize_layer(cell)
        return cls(cell, **config)


def _shape(size) -> tuple[int, ...]:
    """A state's or output's size as its shape without the batch: an int is (units,); a
    ConvLSTM's is already a shape (*spatial, filters)."""
    return tuple(size) if isinstance(size, (tuple, list)) else (size,)


def _zeros(b: Builder, x: Value, size) -> Value:
    """Zeros (batch, *shape of `size`) of `x`'s dtype and batch."""
    return b.broadcast(b.scalar(0.0, x), shape=(x.type.shape[0], *_shape(size)))


def _output_state(cell) -> int:
    """The index of the state that is the cell's output (h)."""
    return getattr(cell, "output_state", 0)


def _lift(body: StepBuilder, masks):
    """Dropout masks (values of the enclosing graph, nested in lists) as the body sees them."""
    if masks is None:
        return None
    if isinstance(masks, Value):
        return body.invariant(masks)
    lifted = [_lift(body, m) for m in masks]
    return type(masks)(*lifted) if hasattr(masks, "_fields") else lifted


# --- the layers of one cell -------------------------------------------------------------------

# Keras 1 argument names, renamed as Keras 2's `legacy_recurrent_support` did.
_LEGACY_RNN = {"output_dim": "units", "init": "kernel_initializer",
               "inner_init": "recurrent_initializer", "inner_activation": "recurrent_activation",
               "W_regularizer": "kernel_regularizer", "b_regularizer": "bias_regularizer",
               "U_regularizer": "recurrent_regularizer", "dropout_W": "dropout",
               "dropout_U": "recurrent_dropout"}


def _legacy_shapes(owner: str, kwargs: dict) -> None:
    """Keras 1's `input_dim` / `input_length` are `input_shape=(input_length, input_dim)`, and
    `forget_bias_init='one'` is `unit_forget_bias=True` (other values were ignored)."""
    if "input_dim" in kwargs:
        warn_legacy(f"{owner}: the `input_dim` and `input_length` arguments of recurrent layers "
                    f"are deprecated; use `input_shape=(input_length, input_dim)`")
        kwargs["input_shape"] = (kwargs.pop("input_length", None), kwargs.pop("input_dim"))
    if "forget_bias_init" in kwargs:
        value = kwargs.pop("forget_bias_init")
        warn_legacy(f"{owner}: the `forget_bias_init` argument is deprecated"
                    + ("; use `unit_forget_bias=True`" if value == "one" else " and ignored"))
        if value == "one":
            kwargs["unit_forget_bias"] = True


# The arguments each layer passes on to its cell (the rest are the RNN's).
_CELL_ARGS = ("activation", "recurrent_activation", "use_bias", "kernel_initializer",
              "recurrent_initializer", "bias_initializer", "unit_forget_bias",
              "kernel_regularizer", "recurrent_regularizer", "bias_regularizer",
              "kernel_constraint", "recurrent_constraint", "bias_constraint", "dropout",
              "recurrent_dropout", "seed", "reset_after", "implementation")
_LOOP_ARGS = ("return_sequences", "return_state", "go_backwards", "stateful", "unroll",
              "zero_output_for_mask")


class _CellLayer(RNN):
    """SimpleRNN, LSTM, GRU and the ConvLSTMs: an RNN over a cell of `cell_class` named
    `cell_name`, with the cell's arguments (`cell_args`) as its own and a flat config (no `cell`
    key), as in Keras 3."""

    cell_class: type = RecurrentCell
    cell_name = "cell"
    cell_args: tuple[str, ...] = _CELL_ARGS

    def __init__(self, units: int, activity_regularizer=None, **kwargs):
        cell_kwargs = {k: kwargs.pop(k) for k in self.cell_args if k in kwargs}
        loop_kwargs = {k: kwargs.pop(k) for k in _LOOP_ARGS if k in kwargs}
        cell = self.cell_class(units, name=self.cell_name, dtype=kwargs.get("dtype"),
                               trainable=kwargs.get("trainable", True), **cell_kwargs)
        super().__init__(cell, activity_regularizer=activity_regularizer, **loop_kwargs, **kwargs)

    @classmethod
    def _accepted_args(cls) -> list[str]:
        return super()._accepted_args() + list(cls.cell_args) + list(_LOOP_ARGS)

    def __getattr__(self, name: str):
        # units, activation, dropout, kernel_initializer ... are the cell's, as in Keras.
        if name != "cell" and "cell" in self.__dict__ and (
                name == "units" or name in type(self).cell_args or name.endswith(("_initializer",))):
            return getattr(self.__dict__["cell"], name)
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def get_config(self) -> dict[str, Any]:
        cell = self.cell.get_config()
        for key in ("name", "trainable", "dtype"):
            cell.pop(key)
        return {**self._loop_config(), **cell,
                "activity_regularizer": regularizers.serialize(self.activity_regularizer)}

    @classmethod
    def from_config(cls, config) -> "RNN":
        return Layer.from_config.__func__(cls, config)


class _DenseCellLayer(_CellLayer):
    """SimpleRNN, LSTM and GRU, which also take Keras's `use_cudnn` (a choice of kernel that
    nncompile has no use for)."""

    def __init__(self, units: int, use_cudnn="auto", **kwargs):
        super().__init__(units, **kwargs)
        if use_cudnn not in ("auto", True, False):
            raise ArgumentError(f"{owner_of(self)}: Invalid valid received for argument "
                                f"`use_cudnn`. Expected one of {{'auto', True, False}}. "
                                f"Received: use_cudnn={use_cudnn}")
        self.use_cudnn = use_cudnn


class SimpleRNN(_DenseCellLayer):
    """Fully connected RNN: `h_t = activation(x_t @ kernel + bias + h_{t-1} @ recurrent_kernel)`.

    Example:

    >>> SimpleRNN(4)(np.ones((2, 3, 5), "float32")).shape
    (2, 4)
    """

    cell_class = SimpleRNNCell
    cell_name = "simple_rnn_cell"

    @legacy_args(_LEGACY_RNN, _legacy_shapes)
    def __init__(self, units: int, activation="tanh", use_bias: bool = True, **kwargs):
        super().__init__(units, activation=activation, use_bias=use_bias, **kwargs)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.pop("seed")   # Keras 3's SimpleRNN does not write its seed
        return config


class LSTM(_DenseCellLayer):
    """Long Short-Term Memory layer (Hochreiter 1997): kernel (input_dim, 4 * units), recurrent
    kernel (units, 4 * units), bias (4 * units), gates i, f, c, o; states [h, c].

    Example:

    >>> output, h, c = LSTM(4, return_state=True)(np.ones((2, 3, 5), "float32"))
    >>> output.shape, c.shape
    ((2, 4), (2, 4))
    """

    cell_class = LSTMCell
    cell_name = "lstm_cell"

    @legacy_args(_LEGACY_RNN, _legacy_shapes)
    def __init__(self, units: int, activation="tanh", recurrent_activation="sigmoid",
                 use_bias: bool = True, unit_forget_bias: bool = True, **kwargs):
        super().__init__(units, activation=activation, recurrent_activation=recurrent_activation,
                         use_bias=use_bias, unit_forget_bias=unit_forget_bias, **kwargs)


class GRU(_DenseCellLayer):
    """Gated Recurrent Unit (Cho et al. 2014): kernel (input_dim, 3 * units), recurrent kernel
    (units, 3 * units), gates z, r, h. `reset_after=True` (the default) has bias (2, 3 * units);
    `reset_after=False` has bias (3 * units,).

    Example:

    >>> GRU(4, return_sequences=True)(np.ones((2, 3, 5), "float32")).shape
    (2, 3, 4)
    """

    cell_class = GRUCell
    cell_name = "gru_cell"

    @legacy_args(_LEGACY_RNN, _legacy_shapes)
    def __init__(self, units: int, activation="tanh", recurrent_activation="sigmoid",
                 use_bias: bool = True, reset_after: bool = True, **kwargs):
        super().__init__(units, activation=activation, recurrent_activation=recurrent_activation,
                         use_bias=use_bias, reset_after=reset_after, **kwargs)


def stateful_rows(layers) -> tuple[Layer, int] | None:
    """The first stateful recurrent layer among `layers` and the layers they hold (a wrapper's,
    a nested model's), with the rows of its states: the batch size every call must have."""
    for layer in layers:
        if isinstance(layer, RNN) and layer.stateful and layer.states:
            return layer, layer.states[0].shape[0]
        held = [child for _, item in layer.sublayers() for child in (item if isinstance(item, list) else [item])]
        found = stateful_rows([*held, *getattr(layer, "layers", [])])
        if found is not None:
            return found
    return None


def check_stateful_batch(found: tuple[Layer, int] | None, batch: int) -> None:
    """Refuse a batch of another size than a stateful layer's states (`stateful_rows`), naming
    the layer, before the compiled code would fail on the states' rows."""
    if found is not None and batch != found[1]:
        layer, rows = found
        raise ValueError(f"Layer '{layer.name}' ({type(layer).__name__}) is stateful with batch size "
                         f"{rows}: every batch it runs on must have {rows} samples, received a batch "
                         f"of {batch}. Pass batch_size={rows} and a number of samples divisible by it.")

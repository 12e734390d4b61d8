"""Layer wrappers: `Wrapper` (the base class of a layer that holds another, as users subclass it),
`Bidirectional` (a recurrent layer run both ways) and `TimeDistributed` (a layer applied to every
time step), with Keras 3's arguments, weights and configs."""
from __future__ import annotations

from typing import Any

from nncompile.ir import Builder, Value
from nncompile.ir.ops.scan import slice_type
from nncompile.keras.layers.arguments import ArgumentError, owner_of
from nncompile.keras.layers.base import Layer
from nncompile.keras.layers.recurrent import (RNN, TIME, StatesCall, StepBuilder, reverse_time,
                                              scan_steps)

_MERGE_MODES = ("sum", "mul", "ave", "concat", None)


def _without_prefix(name: str, prefix: str) -> str:
    return name[len(prefix):] if name.startswith(prefix) else name


def _copy(layer: Layer, name: str, **changes) -> Layer:
    """A new layer of `layer`'s config (no weights, no state), renamed and changed."""
    from nncompile.keras.functional import deserialize_layer, serialize_layer

    config = serialize_layer(layer)
    config["config"] = {**config["config"], "name": name, **changes}
    return deserialize_layer(config)


class Wrapper(Layer):
    """Keras's base class of a layer that wraps `layer` (it builds it and saves it in its config);
    a subclass says in `call` what it does with it.

    Example:

    >>> from nncompile.keras.layers import Dense
    >>> class Doubled(Wrapper):
    ...     def call(self, inputs):
    ...         return self.layer(inputs) * 2.0
    >>> Doubled(Dense(3))(np.ones((2, 4), "float32")).shape
    (2, 3)
    """

    def __init__(self, layer, **kwargs):
        if not isinstance(layer, Layer):
            raise ArgumentError(f"Layer {layer} supplied to Wrapper isn't a supported layer type. Please "
                                f"ensure wrapped layer is a valid Keras layer.")
        super().__init__(**kwargs)
        self.layer = layer

    def sublayers(self):
        return [("layer", self.layer)]

    def build(self, input_shape=None) -> None:
        self.adopt(self.layer)
        self.layer._maybe_build(input_shape)
        self.built = True

    def get_config(self) -> dict[str, Any]:
        from nncompile.keras.functional import serialize_layer

        return {**super().get_config(), "layer": serialize_layer(self.layer)}

    @classmethod
    def from_config(cls, config, custom_objects=None) -> "Wrapper":
        from nncompile.keras.functional import deserialize_layer

        config = dict(config)
        layer = config.pop("layer")
        return cls(deserialize_layer(layer, custom_objects) if isinstance(layer, dict) else layer, **config)


class Bidirectional(StatesCall):
    """Runs a recurrent layer forwards and a copy of it backwards over the same inputs and merges
    their outputs (`merge_mode`: "concat" (default), "sum", "mul", "ave", or None for the list
    [forward, backward]). The backward outputs are put back in time order before merging. With
    `return_state`, the forward layer's states follow the merged output, then the backward one's.

    Example:

    >>> from nncompile.keras.layers import LSTM
    >>> Bidirectional(LSTM(4, return_sequences=True))(np.ones((2, 3, 5), "float32")).shape
    (2, 3, 8)
    """

    supports_masking = True

    def __init__(self, layer, merge_mode="concat", weights=None, backward_layer=None, **kwargs):
        if not isinstance(layer, Layer):
            raise ArgumentError(f"Please initialize `Bidirectional` layer with a "
                                f"`keras.layers.Layer` instance. Received: {layer}")
        if backward_layer is not None and not isinstance(backward_layer, Layer):
            raise ArgumentError(f"`backward_layer` need to be a `keras.layers.Layer` instance. "
                                f"Received: {backward_layer}")
        if merge_mode not in _MERGE_MODES:
            raise ArgumentError(f'Invalid merge mode. Received: {merge_mode}. Merge mode should '
                                f'be one of {{"sum", "mul", "ave", "concat", None}}')
        super().__init__(**kwargs)
        for which in (layer, backward_layer):
            if which is not None and not isinstance(which, RNN):
                raise ArgumentError(f"{owner_of(self)}: nncompile's Bidirectional wraps recurrent "
                                    f"layers (LSTM, GRU, SimpleRNN, RNN). Received: {which!r}")
        # Fresh copies, as Keras makes them: the wrapped layer's weights and state stay its own.
        self.forward_layer = _copy(layer, f"forward_{_without_prefix(layer.name, 'forward_')}")
        self.backward_layer = backward_layer if backward_layer is not None else _copy(
            layer, f"backward_{_without_prefix(layer.name, 'backward_')}", go_backwards=True)
        self._verify()
        for rnn in (self.forward_layer, self.backward_layer):
            rnn.zero_output_for_mask = rnn.return_sequences
        self.merge_mode = merge_mode
        self._initial_weights = weights
        self.stateful = layer.stateful
        self.return_sequences = layer.return_sequences
        self.return_state = layer.return_state

    def _verify(self) -> None:
        forward, backward = self.forward_layer, self.backward_layer
        if forward.go_backwards == backward.go_backwards:
            raise ArgumentError(f"Forward layer and backward layer should have different "
                                f"`go_backwards` value. Received: forward_layer.go_backwards "
                                f"{forward.go_backwards}, backward_layer.go_backwards="
                                f"{backward.go_backwards}")
        for attr in ("stateful", "return_sequences", "return_state"):
            if getattr(forward, attr) != getattr(backward, attr):
                raise ArgumentError(f'Forward layer and backward layer are expected to have the '
                                    f'same value for attribute "{attr}", got '
                                    f'"{getattr(forward, attr)}" for forward layer and '
                                    f'"{getattr(backward, attr)}" for backward layer')

    def sublayers(self):
        return [("forward_layer", self.forward_layer), ("backward_layer", self.backward_layer)]

    def build(self, input_shape) -> None:
        for rnn in (self.forward_layer, self.backward_layer):
            self.adopt(rnn)
            rnn._maybe_build(input_shape)
        self.built = True
        if self._initial_weights:
            self.set_weights(self._initial_weights)
            self._initial_weights = None

    def reset_states(self, states=None) -> None:
        self.reset_state(states)

    def reset_state(self, states=None) -> None:
        if not self.stateful:
            raise AttributeError("Layer must be stateful.")
        half = None if states is None else len(states) // 2
        self.forward_layer.reset_state(None if states is None else states[:half])
        self.backward_layer.reset_state(None if states is None else states[half:])

    def emit(self, b: Builder, inputs, training: bool = False):
        return self.emit_masked(b, inputs, None, training)

    def emit_masked(self, b: Builder, inputs, mask, training: bool = False):
        items = inputs if isinstance(inputs, list) else [inputs]
        mask = mask[0] if isinstance(mask, list) else mask
        x, states = items[0], items[1:]
        half = len(states) // 2
        forward = self.forward_layer.run(b, x, mask, states[:half], training)
        backward = self.backward_layer.run(b, x, mask, states[half:], training,
                                           reverse_output=False)
        y, y_rev = forward[0], backward[0]
        if self.return_sequences and not self.backward_layer.go_backwards:
            y_rev = reverse_time(b, y_rev)   # Keras flips the backward sequence either way
        merged = self._merge(b, y, y_rev)
        if self.return_state:
            return merged + forward[1:] + backward[1:]
        return merged if len(merged) > 1 else merged[0]

    def _merge(self, b: Builder, y: Value, y_rev: Value) -> list[Value]:
        mode = self.merge_mode
        if mode == "concat":
            return [b.concat(y, y_rev, axis=-1)]
        if mode == "sum":
            return [b.add(y, y_rev)]
        if mode == "ave":
            return [b.mul(b.add(y, y_rev), b.scalar(0.5, y))]
        if mode == "mul":
            return [b.mul(y, y_rev)]
        return [y, y_rev]

    def emit_mask(self, b: Builder, inputs, mask):
        mask = mask[0] if isinstance(mask, list) else mask
        output = mask if self.return_sequences else None
        masks = [output, output] if self.merge_mode is None else [output]
        if self.return_state:
            masks += [None] * (len(self.forward_layer.state_size) * 2)
        return masks

    def get_config(self) -> dict[str, Any]:
        from nncompile.keras.functional import serialize_layer

        return {**super().get_config(), "merge_mode": self.merge_mode,
                "layer": serialize_layer(self.forward_layer),
                "backward_layer": serialize_layer(self.backward_layer)}

    @classmethod
    def from_config(cls, config) -> "Bidirectional":
        from nncompile.keras.functional import deserialize_layer

        config = dict(config)
        for key in ("layer", "backward_layer"):
            if isinstance(config.get(key), dict):
                config[key] = deserialize_layer(config[key])
        return cls(**config)


class TimeDistributed(Wrapper):
    """Applies `layer` to every time step (axis 1) of its input, with the same weights:
    (batch, steps, ...) -> (batch, steps, ...layer's output). It is a scan whose body is the
    layer, or the layer on the whole sequence at once when that is the same (Dense,
    Activation); a mask passes through.

    Example:

    >>> from nncompile.keras.layers import Dense
    >>> TimeDistributed(Dense(2))(np.ones((4, 3, 5), "float32")).shape
    (4, 3, 2)
    """

    supports_masking = True

    def __init__(self, layer, **kwargs):
        if not isinstance(layer, Layer):
            raise ArgumentError(f"Please initialize `TimeDistributed` layer with a "
                                f"`keras.layers.Layer` instance. Received: {layer}")
        super().__init__(layer, **kwargs)

    def build(self, input_shape) -> None:
        if not isinstance(input_shape, (tuple, list)) or len(input_shape) < 3:
            raise ValueError(f"`TimeDistributed` Layer should be passed an `input_shape` with at "
                             f"least 3 dimensions, received: {input_shape}")
        self.adopt(self.layer)
        self.layer._maybe_build((input_shape[0], *input_shape[2:]))
        self.built = True

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        if self.layer.acts_per_step:   # one op over batch x steps rows, not a loop
            return self.layer.emit(b, inputs, training=training)
        body = StepBuilder(b, f"{self.name}_step")
        step = body.input("step", slice_type(inputs.type, TIME))
        with body.loc(self.layer.name):
            y = self.layer.emit(body, step, training=training)
        return scan_steps(b, body, [], [inputs], [y])[0]

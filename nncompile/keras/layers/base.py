"""The Layer base class, weights (`Variable`) and symbolic tensors (`KerasTensor`).

A layer describes its computation once, as IR: `emit(b, inputs, training)` adds ops to a
`Builder`. Built-in layers write `emit` with the Builder; a layer written as in Keras, with a
`call` using keras.ops, gets the `emit` that traces `call` (nncompile/keras/tracing.py).
Everything else derives from `emit`: output shapes and build-time shape errors come from the IR's
shape rules, `layer(x)` on arrays traces and runs a small graph, and models trace whole graphs by
calling `emit` layer after layer.
"""
from __future__ import annotations

import contextlib
import contextvars
import inspect
import re
import warnings
from typing import Any, Iterator, Mapping, NamedTuple, Sequence

import numpy as np

from nncompile.ir import BATCH, Builder, DType, Graph, ShapeError, TensorType, Value
from nncompile.keras import activations, backend, constraints, initializers, regularizers, tracing
from nncompile.keras.layers import auto_config
from nncompile.keras.layers.input_spec import check_inputs
from nncompile.keras.layers.arguments import (ArgumentError, boolean, owner_of, shape_tuple,
                                              warn_legacy)
from nncompile.keras.ops.core import active_builder, leaves, register_symbolic
from nncompile.keras.tracing import ArithmeticOperators, TensorOperators
from nncompile.runtime import weights


class Variable(ArithmeticOperators):
    """A layer weight: a named numpy array updated in place, so traced graphs see new values.

    Read inside traced code (`ops.matmul(x, self.kernel)`, `x * self.scale`) it is the graph's
    parameter bound to the array; elsewhere, the array."""

    def __init__(self, value: np.ndarray, name: str, path: str, trainable: bool = True,
                 regularizer=None, constraint=None):
        self._value = np.asarray(value, order="C")   # (ascontiguousarray makes scalars 1-d)
        self.name = name
        self.path = path
        self.trainable = trainable
        self.regularizer = regularizer
        self.constraint = constraint

    @property
    def value(self) -> np.ndarray:
        """The live array, which compiled code reads (write it with `assign`: an array compiled
        code keeps packed is read-only, see `nncompile.runtime.weights`)."""
        return self._value

    @property
    def shape(self) -> tuple[int, ...]:
        return self._value.shape

    @property
    def dtype(self) -> str:
        return str(self._value.dtype)

    def numpy(self) -> np.ndarray:
        return self._value.copy()

    def bind(self, b: Builder) -> Value:
        """The parameter of `b`'s graph bound to this array (one however often it is read).

        Layers of two nested models may share a name; the later weight gets a `_1` suffix."""
        name, count = self.path, 0
        while b.graph.params.get(name, self._value) is not self._value:
            count += 1
            name = f"{self.path}_{count}"
        return b.param(name, self._value)

    def _traced_value(self, b: Builder | None):
        return self._value if b is None else self.bind(b)

    def assign_add(self, value) -> None:
        """Add `value`; inside a metric's traced `update_state`, the increment is recorded."""
        if tracing.is_traced(value):
            tracing.record_increment(self, value)
        else:
            with weights.writing(self._value) as array:
                array += np.asarray(value, array.dtype)

    def assign_sub(self, value) -> None:
        """Subtract `value` (inside a metric's traced `update_state`, a recorded increment too)."""
        if tracing.is_traced(value):
            tracing.record_increment(self, -value)
        else:
            with weights.writing(self._value) as array:
                array -= np.asarray(value, array.dtype)

    def assign(self, value) -> None:
        if tracing.is_traced(value):
            raise tracing.refuse_assign(self)
        value = np.asarray(value)
        if value.shape != self._value.shape:
            raise ValueError(f"Cannot assign to variable '{self.path}': expected shape "
                             f"{self._value.shape}, received shape {value.shape}")
        with weights.writing(self._value) as array:
            array[...] = value

    def __array__(self, dtype=None, copy=None):
        return self._value if dtype is None else self._value.astype(dtype)

    def __float__(self) -> float:
        return float(self._value)

    def __repr__(self) -> str:
        return f"<Variable path={self.path}, shape={self.shape}, dtype={self.dtype}>"


class Mask(NamedTuple):
    """A Keras mask riding beside a layer output while a graph is traced: a bool (or f32 0 / 1)
    IR value, true for the steps to keep, and the name of the layer that made it, for messages."""

    value: Value
    source: str

    def keep(self, b: Builder) -> Value:
        """The mask as bool (a mask may be made as f32 0 / 1, see core.Masking)."""
        v = self.value
        return v if v.type.dtype is DType.bool else b.greater(v, b.scalar(0.0, v))


class KerasTensor(TensorOperators):
    """A symbolic tensor of the functional API: a shape (None for the batch) and where it came from.
    keras.ops and Python operators on it (`x + y`) record an op call in the graph, as in Keras 3.

    `_keras_mask` is the symbolic bool mask Keras would attach (named by the layer that made it),
    or None."""

    def __init__(self, shape: Sequence[int | None], dtype: str = "float32", name: str | None = None,
                 history: "CallNode | None" = None, index: int = 0):
        self.shape = tuple(shape)
        self.dtype = dtype
        self.name = name
        self.history = history
        self.index = index
        self._keras_mask: KerasTensor | None = None

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:
        return f"<KerasTensor shape={self.shape}, dtype={self.dtype}, name={self.name}>"


class CallNode:
    """One call of a layer in a functional graph: the tensors it read and those it made."""

    def __init__(self, layer: "Layer", inputs: list[KerasTensor], outputs: list[KerasTensor],
                 single_input: bool, training: bool | None = None):
        self.layer = layer
        self.inputs = inputs
        self.outputs = outputs
        self.single_input = single_input
        self.training = training   # fixed at call time (`base(x, training=False)`), else None


class _FirstCallTensors:
    """`layer.input` / `layer.output` as in Keras 3 (`Operation.input` / `output`): the tensor(s)
    of the layer's first call on symbolic tensors (its `_inbound_nodes[0]`), one tensor or a
    flat list. Keras 3 has no error for a layer called several times (`get_output_at` is gone):
    the first call answers.

    A non-data descriptor: a value assigned to the attribute is kept by the instance and read
    instead (an InputLayer assigns its tensor, which is also its node's output)."""

    def __init__(self, attr: str):
        self.attr = attr   # the CallNode attribute: "inputs" or "outputs"

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, layer: "Layer | None", owner: type | None = None):
        if layer is None:
            return self
        return layer._get_node_attribute_at_index(0, self.attr, self.name)


def ir_type(shape: Sequence[int | None], dtype: str, name: str = "input") -> TensorType:
    """The IR type of a Keras shape. The batch (axis 0) is BATCH; other unknown dimensions get
    symbols of their own, named by input and axis, so a variable sequence length is not tied to
    the batch size."""
    stem = re.sub(r"[^A-Za-z0-9_]", "_", name)
    stem = stem if stem[:1].isalpha() else f"d{stem}"
    dims = [BATCH if axis == 0 else f"{stem}_{axis}" if d is None else d for axis, d in enumerate(shape)]
    return TensorType(DType.from_numpy(dtype), tuple(dims))


def keras_shape(t: TensorType, batch: int | None = None) -> tuple[int | None, ...]:
    """The Keras shape of an IR type: symbols are None, but the batch's when `batch` is known."""
    return tuple(batch if d == BATCH and batch is not None else None if isinstance(d, str) else d
                 for d in t.shape)


def _static_batch(inputs: Sequence["KerasTensor"]) -> int | None:
    """The batch size every input has (`Input(batch_size=...)`), if they agree on one."""
    sizes = {x.shape[0] for x in inputs if len(x.shape)}
    return next(iter(sizes)) if len(sizes) == 1 else None


_BASE_ARGS = ("name", "trainable", "dtype", "input_shape", "batch_input_shape", "batch_size",
              "input_dim", "activity_regularizer")


class Layer:
    """Base class of every layer. Subclasses define `build` (weights, made with `add_weight`) and
    either `emit` (the IR, through a Builder: the built-in layers) or Keras's `call` written with
    keras.ops (traced into the same IR). Layers assigned to attributes are tracked as sublayers:
    their weights are this layer's too.

    Masks follow Keras 3: a layer with `supports_masking` passes on `compute_mask(...)` (by
    default the incoming mask); any other layer drops an incoming mask, with Keras's warning.
    A layer whose Keras `call` reads the mask overrides `emit_masked`."""

    _kind = "layer"   # how messages name it ("model" for models)
    supports_masking = False
    # Whether `emit` on (batch, steps, ...) inputs is `emit` on each (batch, ...) step (a Dense
    # acts on the last axis): TimeDistributed then emits it once for the whole sequence.
    acts_per_step = False
    # Whether `__call__` takes and checks its own keyword arguments (attention layers' `key`,
    # `attention_mask`, flags): a model config's recorded call is then handed on as it is.
    checks_call_arguments = False
    # Whether the tensors this layer is called on lose their Keras masks (Keras's
    # MultiHeadAttention removes them: later layers given the same tensors see none).
    clears_input_masks = False

    def __new__(cls, *args, **kwargs):
        layer = super().__new__(cls)
        if getattr(cls.get_config, "is_default", False):   # only such classes read the record
            layer.__dict__["_auto_config"] = auto_config.record(cls, args, kwargs, _BASE_ARGS)
        return layer

    def __init__(self, *, name: str | None = None, trainable: bool = True, dtype: str | None = None,
                 input_shape: Sequence[int | None] | None = None,
                 batch_input_shape: Sequence[int | None] | None = None, batch_size: int | None = None,
                 activity_regularizer=None, **kwargs):
        if "input_dim" in kwargs:
            warn_legacy(f"{type(self).__name__}: argument `input_dim` is the Keras 1 form of "
                          f"`input_shape=(input_dim,)`; use `input_shape` or keras.Input")
            input_shape = (kwargs.pop("input_dim"),)
        if kwargs:
            valid = sorted(set(self._accepted_args()) | set(_BASE_ARGS))
            raise ValueError(f"Unrecognized keyword arguments passed to {type(self).__name__}: "
                            f"{kwargs}; valid arguments: {', '.join(valid)}")
        if name is not None and not isinstance(name, str):
            raise ArgumentError(f"{type(self).__name__}: the `name` argument must be a string. "
                                f"Received: name={name!r} (of type {type(name).__name__})")
        self.name = name or backend.unique_name(backend.to_snake_case(type(self).__name__))
        owner = owner_of(self)
        self._trainable = boolean(trainable, "trainable", owner)   # (its layers are not made yet)
        self.dtype = dtype or backend.floatx()
        # Kept for the training step, which adds its penalty on this layer's output to the loss.
        self.activity_regularizer = regularizers.get(activity_regularizer)
        # The dimensions themselves are checked by the InputLayer these shapes become.
        if batch_input_shape is not None:
            self.batch_input_shape = shape_tuple(batch_input_shape, "batch_input_shape", owner)
        elif input_shape is not None:
            self.batch_input_shape = (batch_size,) + shape_tuple(input_shape, "input_shape", owner)
        else:
            self.batch_input_shape = None
        self.built = False
        # What Keras puts before the name in a weight's path: the layers holding this one
        # ("bidirectional/forward_lstm/" for the cell of a Bidirectional's forward LSTM).
        self._scope = ""
        self._variables: list[Variable] = []
        self._inbound_nodes: list[CallNode] = []

    @classmethod
    def _accepted_args(cls) -> list[str]:
        plain = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        return [p.name for k in cls.__mro__ if "__init__" in k.__dict__
                for p in inspect.signature(k.__init__).parameters.values()
                if p.kind in plain and p.name != "self"]

    # weights ------------------------------------------------------------------------------
    def add_weight(self, shape: Sequence[int] = (), initializer=None, dtype: str | None = None,
                   trainable: bool = True, regularizer=None, constraint=None,
                   name: str | None = None) -> Variable:
        """A new weight of this layer, with Keras 3's arguments; `initializer` defaults to
        glorot_uniform for floats and zeros otherwise. The regularizer and constraint ride on the
        Variable for the training step."""
        from nncompile.keras import initializers

        dtype = dtype or self.dtype
        if initializer is None:
            initializer = "glorot_uniform" if np.issubdtype(np.dtype(dtype), np.floating) else "zeros"
        name = name or backend.numbered("variable", len(self._variables))
        value = np.asarray(initializers.get(initializer)(tuple(shape), dtype), dtype=dtype)
        var = Variable(value, name, f"{self._scope}{self.name}/{name}", trainable=trainable,
                       regularizer=regularizer, constraint=constraint)
        self._variables.append(var)
        return var

    def __setattr__(self, name: str, value) -> None:
        if not name.startswith("_") and (isinstance(value, Layer) or (
                isinstance(value, (list, tuple)) and value
                and all(isinstance(v, Layer) for v in value))):
            tracked = self.__dict__.setdefault("_tracked", {})
            # A list is kept itself, so layers appended later are tracked too.
            tracked[name] = value if isinstance(value, (Layer, list)) else list(value)
        super().__setattr__(name, value)

    @property
    def trainable(self) -> bool:
        """Whether a training step updates this layer's weights (and a BatchNormalization runs
        in training mode). Setting it sets it on every layer this one holds too, as Keras 3's
        setter does: a frozen base model's BatchNormalization keeps its moving statistics."""
        return self._trainable

    @trainable.setter
    def trainable(self, value) -> None:
        self._trainable = bool(value)
        for layer in self._held_layers():
            layer.trainable = value

    def _held_layers(self) -> list["Layer"]:
        """The layers this one holds (`sublayers`), flat."""
        return [layer for _, item in self.sublayers() for layer in (item if isinstance(item, list) else [item])]

    def sublayers(self) -> list[tuple[str, "Layer | list[Layer]"]]:
        """The layers this one holds (a recurrent layer's cell, a wrapper's layer, the layers a
        custom layer assigned to its attributes), each under the attribute Keras 3 saves it by
        (`cell`, `forward_layer`, `cells`): their weights are this layer's too, after its own."""
        return list(self.__dict__.get("_tracked", {}).items())

    def adopt(self, child: "Layer") -> None:
        """Make `child` part of this layer: its weights' paths start with this layer's."""
        child._scope = f"{self._scope}{self.name}/"

    @property
    def own_weights(self) -> list[Variable]:
        """The weights this layer made itself (not those of its sublayers)."""
        return list(self._variables)

    @property
    def weights(self) -> list[Variable]:
        return self.own_weights + [w for layer in self._held_layers() for w in layer.weights]

    def _weights_trained(self) -> list[tuple[Variable, bool]]:
        """Each weight (in `weights` order) and whether a training step updates it: its own flag
        and that of every layer from this one down to the one that made it, as Keras 3's
        setter leaves each variable's flag."""
        own = [(v, v.trainable and self.trainable) for v in self.own_weights]
        held = [(v, trained and self.trainable) for layer in self._held_layers() for v, trained in layer._weights_trained()]
        return own + held

    @property
    def trainable_weights(self) -> list[Variable]:
        return [v for v, trained in self._weights_trained() if trained]

    @property
    def non_trainable_weights(self) -> list[Variable]:
        return [v for v, trained in self._weights_trained() if not trained]

    def get_weights(self) -> list[np.ndarray]:
        return [v.numpy() for v in self.weights]

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        """Assign all weights, in the order of `self.weights`; nothing changes unless all fit."""
        kind = self._kind
        mine = self.weights
        if len(weights) != len(mine):
            raise ValueError(f"You called `set_weights(weights)` on {kind} '{self.name}' with a "
                             f"weight list of length {len(weights)}, but the {kind} was expecting "
                             f"{len(mine)} weights ({', '.join(v.path for v in mine)}).")
        for var, value in zip(mine, weights):
            if np.shape(value) != var.shape:
                raise ValueError(f"The {kind} '{self.name}': weight '{var.path}' has shape "
                                 f"{var.shape}, but the received value has shape {np.shape(value)}")
        for var, value in zip(mine, weights):
            var.assign(value)

    def count_params(self) -> int:
        if not self.built:
            raise ValueError(f"You tried to call `count_params` on layer '{self.name}', "
                             f"but the layer isn't built. Call it on an input first.")
        return int(sum(np.prod(v.shape) for v in self.weights))

    # configuration ------------------------------------------------------------------------
    @auto_config.default
    def get_config(self) -> dict[str, Any]:
        """The arguments that make this layer again (`from_config`): name, trainable, dtype and,
        for a class that does not define its own `get_config`, the constructor's arguments
        (`auto_config`)."""
        config = {"name": self.name, "trainable": self.trainable, "dtype": self.dtype}
        if self.batch_input_shape is not None:
            config["batch_input_shape"] = list(self.batch_input_shape)
        if self.activity_regularizer is not None:
            config["activity_regularizer"] = regularizers.serialize(self.activity_regularizer)
        if getattr(type(self).get_config, "is_default", False):
            return auto_config.complete(self, config)
        return config

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "Layer":
        """The layer `config` describes; any error is an ArgumentError naming the layer."""
        owner = f"Layer '{config.get('name', '?')}' ({cls.__name__})"
        required = [p.name for p in inspect.signature(cls.__init__).parameters.values()
                    if p.default is p.empty and p.name != "self"
                    and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        missing = [arg for arg in required if arg not in config]
        if missing:
            raise ArgumentError(f"{owner}: the config has no `{missing[0]}`, which {cls.__name__} "
                                f"requires (required: {', '.join(required)})")
        _check_objects(config, owner)
        try:
            return cls(**config)
        except ArgumentError:
            raise
        except (TypeError, ValueError) as e:
            # Initializer and activation lookups, and custom layers' own checks, say what is
            # wrong but not where: the message gains the layer.
            raise ArgumentError(f"{owner}: {e}") from None

    # building and lowering ----------------------------------------------------------------
    def build(self, input_shape) -> None:
        """Create the weights for inputs of `input_shape` (None for the batch)."""
        self.built = True

    def call(self, inputs, *args, **kwargs):
        """Keras's forward pass, written with keras.ops by layers that do not define `emit`."""
        raise NotImplementedError(f"Layer {type(self).__name__} does not define `call` (or `emit`)")

    def add_loss(self, loss) -> None:
        raise NotImplementedError(
            f"Layer '{self.name}' ({type(self).__name__}) calls add_loss(), which nncompile does "
            f"not support yet: the training step's loss is the compiled loss (and the weights' "
            f"regularizers); add the term to a loss function instead")

    def has_call(self) -> bool:
        """Whether the computation is Keras's `call` (traced) rather than a built-in `emit`."""
        return type(self).call is not Layer.call

    def emit(self, b: Builder, inputs: Value | list[Value], training: bool = False) -> Value | list[Value]:
        """Add this layer's computation to `b`; return its output value(s). By default, the
        trace of `call`."""
        return self.emit_masked(b, inputs, None, training=training)

    def emit_masked(self, b: Builder, inputs: Value | list[Value], mask: Mask | list[Mask | None],
                    training: bool = False) -> Value | list[Value]:
        """`emit` for inputs that carry a mask (a list of them for a list of inputs). Layers
        whose Keras `call` does not read the mask compute exactly what they do without one."""
        if self.has_call():
            return tracing.trace_call(self, b, inputs, mask, training)
        if mask is None:
            raise TypeError(f"Layer {type(self).__name__} defines neither `call` nor `emit`")
        return self.emit(b, inputs, training=training)

    def emit_mask(self, b: Builder, inputs: Value | list[Value],
                  mask: Mask | list[Mask | None] | None) -> Mask | None:
        """The mask of the output as IR (called only if `supports_masking`): the incoming one."""
        return mask

    def compute_mask(self, inputs, mask=None):
        """Keras's `compute_mask(inputs, mask)`, for code users write: the bool mask this layer
        gives its output for `inputs` (and the incoming `mask`), or None; of traced tensors inside
        a call (`self.lstm(x, mask=self.embedding.compute_mask(tokens))`), or of arrays.

        >>> from nncompile.keras.layers import Embedding
        >>> Embedding(5, 2, mask_zero=True).compute_mask(np.array([[3, 0]])).tolist()
        [[True, False]]
        """
        if not self.supports_masking:
            return mask
        flat = inputs if isinstance(inputs, (list, tuple)) else [inputs]
        if tracing.in_trace() or any(tracing.is_traced(x) for x in flat):
            b = active_builder()
            keep = self._mask_of(b, [tracing.as_value(b, x, owner_of(self)) for x in flat], inputs, mask)
            return None if keep is None else tracing.TracedTensor(keep)
        arrays = [np.asarray(x) for x in flat]
        b = Builder(name=f"{self.name}_mask")
        values = [b.input(f"input_{i}", ir_type((None,) + a.shape[1:], str(a.dtype), f"input_{i}"))
                  for i, a in enumerate(arrays)]
        out = self._mask_of(b, values, inputs, None if mask is None else b.input("mask", ir_type(
            (None,) + np.shape(mask)[1:], "bool", "mask")))
        if out is None:
            return None
        given = arrays + ([] if mask is None else [np.asarray(mask, bool)])
        return run_graph(b.finish([out], ["mask"]), given)[0]

    def _mask_of(self, b: Builder, values: list[Value], inputs, mask) -> Value | None:
        """`emit_mask` of one call of `compute_mask`: the mask's bool value (or None)."""
        incoming = None if mask is None else Mask(tracing.as_value(b, mask, owner_of(self)), "the mask argument")
        single = not isinstance(inputs, (list, tuple))
        out = self.emit_mask(b, values[0] if single else values, incoming)
        return None if out is None else out.keep(b)

    def emit_call(self, b: Builder, inputs: list[Value], masks: list[Mask | None], single: bool,
                  training: bool = False) -> tuple[list[Value], list[Mask | None]]:
        """One call as Keras's `__call__` makes it: `emit` (or `emit_masked` when an input
        carries a mask), then the outputs' masks."""
        args = inputs[0] if single else list(inputs)
        previous = (masks[0] if single else list(masks)) if any(masks) else None
        out = (self.emit(b, args, training=training) if previous is None
               else self.emit_masked(b, args, previous, training=training))
        outs = list(out) if isinstance(out, (list, tuple)) else [out]
        out_mask = None
        if self.has_call() and type(self).compute_mask is not Layer.compute_mask:
            # Keras's compute_mask(inputs, mask) of a layer users wrote: traced as its call
            out_mask = tracing.map_leaves(lambda v: None if v is None else Mask(v, self.name),
                                          tracing.trace_mask(self, b, args, previous))
        elif self.supports_masking:
            out_mask = self.emit_mask(b, args, previous)
        elif previous is not None:
            warnings.warn(f"Layer '{self.name}' (of type {type(self).__name__}) was passed an "
                          f"input with a mask attached to it. However, this layer does not "
                          f"support masking and will therefore destroy the mask information. "
                          f"Downstream layers will not see the mask.", stacklevel=2)
        out_masks = out_mask if isinstance(out_mask, list) else [out_mask] * len(outs)
        penalties = _ACTIVITY_PENALTIES.get()
        if penalties is not None and self.activity_regularizer is not None:
            penalties += [activity_penalty(b, self, out) for out in outs]
        return outs, out_masks

    def call_arguments(self, inputs: list, single: bool) -> tuple[list, dict]:
        """How Keras 3 records a call on `inputs` in a functional config: (args, kwargs)."""
        return (inputs if single else [inputs]), {}

    def refuse_mask(self, mask: Mask | list[Mask | None], why: str) -> ValueError:
        """The error of a layer that would consume `mask` in a way nncompile does not implement."""
        sources = sorted({m.source for m in (mask if isinstance(mask, list) else [mask]) if m})
        made = " and ".join(f"'{s}'" for s in sources)
        return ValueError(f"Layer '{self.name}' ({type(self).__name__}) receives the mask made by "
                          f"layer {made}, and Keras would apply it here: {why}. nncompile does "
                          f"not implement this; remove the mask (e.g. mask_zero=False).")

    def param(self, b: Builder, var: Variable) -> Value:
        """The graph input bound to `var` (one per graph, however often the layer is called)."""
        return var.bind(b)

    def _maybe_build(self, input_shape) -> None:
        if not self.built:
            self.build(input_shape)
            self.built = True

    def compute_output_shape(self, input_shape):
        """Output shape(s) for `input_shape`, derived from the IR shape rules."""
        shapes = input_shape if _is_shape_list(input_shape) else [input_shape]
        specs = [KerasTensor(s) for s in shapes]
        outputs = self._symbolic(specs, single=not _is_shape_list(input_shape))
        return [o.shape for o in outputs] if len(outputs) > 1 else outputs[0].shape

    # the functional graph ---------------------------------------------------------------
    input = _FirstCallTensors("inputs")
    output = _FirstCallTensors("outputs")

    def _get_node_attribute_at_index(self, node_index: int, attr: str, attr_name: str):
        """`attr` of call `node_index` on symbolic tensors, with Keras 3's errors: one tensor
        is returned bare, several (or none, an InputLayer's inputs) as a list. Only calls on
        KerasTensors count: a layer called on arrays, or inside a subclassed model's `call`,
        has none (as in Keras, whose eager calls make no node)."""
        if not self._inbound_nodes:
            raise AttributeError(f"The layer {self.name} has never been called "
                                 f"and thus has no defined {attr_name}.")
        if not len(self._inbound_nodes) > node_index:
            raise ValueError(f"Asked to get {attr_name} at node {node_index}, but the operation "
                             f"has only {len(self._inbound_nodes)} inbound nodes.")
        values = list(getattr(self._inbound_nodes[node_index], attr))
        return values[0] if len(values) == 1 else values

    # calling ------------------------------------------------------------------------------
    # The mode of a call given none, by its caller or its model: Keras's `call(..., training=...)`
    # default (True for the image augmentation layers).
    default_training = False
    input_spec = None     # an InputSpec (or a list of them) a layer may set: checked at every call

    def __call__(self, inputs, training: bool | None = None, mask=None, **kwargs):
        if kwargs:
            raise TypeError(f"Layer '{self.name}' got unexpected call arguments: {sorted(kwargs)}")
        if mask is not None and not self.reads_masks():
            raise TypeError(f"Layer '{self.name}' ({type(self).__name__}) got an unexpected keyword argument "
                            f"'mask': its call does not read a mask")
        if training is not None and not isinstance(training, (bool, np.bool_)):
            raise TypeError(f"Layer '{self.name}' was given a second positional argument "
                            f"({type(training).__name__}), taken as `training`: several input "
                            f"tensors go in one list, `layer([x, y])`, read by "
                            f"`call(self, inputs)` as `x, y = inputs`")
        single = not isinstance(inputs, (list, tuple))
        flat = [inputs] if single else list(inputs)
        if self.input_spec is not None:
            check_inputs(self.input_spec, flat, self.name)
        symbolic = all(isinstance(x, KerasTensor) for x in flat)
        # A Sequential built inside traced code (a custom layer's `self.ffn`) calls its layers
        # on KerasTensors: those calls stay symbolic; the model's own call is inlined.
        if not symbolic and (tracing.in_trace() or any(tracing.is_traced(x) for x in flat)):
            return tracing.call_inline(self, flat, single, training, mask)
        if symbolic and mask is not None:
            raise NotImplementedError(f"Layer '{self.name}': a `mask=` argument in a functional model is not "
                                      f"supported by nncompile; let a Masking or Embedding(mask_zero=True) "
                                      f"layer make the mask, or call the layer inside a custom layer's call")
        if symbolic:
            outputs = self._symbolic(flat, single)
            node = CallNode(self, flat, outputs, single, training)
            for i, out in enumerate(outputs):
                out.history, out.index = node, i
            self._inbound_nodes.append(node)
            return outputs[0] if len(outputs) == 1 else outputs
        if any(isinstance(x, KerasTensor) for x in flat):
            raise ValueError(f"Layer '{self.name}' was called on a mix of symbolic tensors and arrays")
        results = self._eager(flat, single, bool(training), mask)
        return results[0] if len(results) == 1 else results

    def reads_masks(self) -> bool:
        """Whether this layer's call reads a mask (and so takes `mask=`, as in Keras): a layer of
        keras.layers with a masked computation of its own, or a call users wrote with `mask`."""
        if self.has_call():
            return "mask" in inspect.signature(self.call).parameters
        return type(self).emit_masked is not Layer.emit_masked

    def _symbolic(self, inputs: list[KerasTensor], single: bool) -> list[KerasTensor]:
        shapes = [x.shape for x in inputs]
        try:
            self._maybe_build(shapes[0] if single else shapes)
            b = Builder(name=self.name)
            # An unknown size is one symbol per axis across the inputs: as in Keras, two None
            # lengths are taken to agree (a sum of two branches of one sequence or image).
            values = [b.input(f"input_{i}", ir_type(x.shape, x.dtype, "input")) for i, x in enumerate(inputs)]
            masks = [_mask_input(b, i, x, v) for i, (x, v) in enumerate(zip(inputs, values))]
            with b.loc(self.name):
                outs, out_masks = self.emit_call(b, values, masks, single)
        except ShapeError as e:
            raise ValueError(f"{self._describe_call(inputs)}: {e}") from None
        except (tracing.TracingError, NotImplementedError) as e:
            raise e.with_traceback(None) from None   # the message names the user's line
        # As in Keras, a batch size fixed by the inputs is kept in the outputs' shapes (the IR's
        # batch stays a symbol: the compiled model takes any batch but a stateful layer's).
        batch = _static_batch(inputs)
        tensors = [KerasTensor(keras_shape(v.type, batch), str(v.type.dtype.numpy), name=self.name) for v in outs]
        given = {id(m.value): x._keras_mask for x, m in zip(inputs, masks) if m is not None}
        for tensor, mask in zip(tensors, out_masks):
            if mask is not None:
                tensor._keras_mask = given.get(id(mask.value)) or KerasTensor(
                    keras_shape(mask.value.type, batch), "bool", name=mask.source)
        return tensors

    def _describe_call(self, inputs: list[KerasTensor]) -> str:
        sources = []
        for x in inputs:
            origin = f"the output of layer '{x.history.layer.name}'" if x.history else "an input"
            sources.append(f"{origin} (shape {x.shape})")
        return (f"Layer '{self.name}' ({type(self).__name__}) cannot be applied to "
                f"{' and '.join(sources)}")

    def _eager(self, arrays: list, single: bool, training: bool, mask=None) -> list[np.ndarray]:
        arrays = [_as_input_array(a, self.dtype) for a in arrays]
        specs = [KerasTensor((None,) + a.shape[1:], str(a.dtype)) for a in arrays]
        self._symbolic(specs, single)
        b = Builder(name=self.name)
        values = [b.input(f"input_{i}", ir_type(s.shape, s.dtype, f"input_{i}")) for i, s in enumerate(specs)]
        args = values[0] if single else values
        with b.loc(self.name):
            if mask is None:
                out = self.emit(b, args, training=training)
            else:   # `layer(x, mask=m)`: the mask an input of the graph too
                keep = np.asarray(mask, bool)
                arrays.append(keep)
                value = b.input("mask", ir_type((None,) + keep.shape[1:], "bool", "mask"))
                out = self.emit_masked(b, args, Mask(value, "the mask argument"), training=training)
        outs = out if isinstance(out, (list, tuple)) else [out]
        return run_graph(b.finish(outs, [f"output_{i}" for i in range(len(outs))]), arrays,
                         seed=self._eager_seed())

    def _eager_seed(self) -> int | None:
        """The seed input of this layer's next eager call, for a layer given a `seed`: its call
        count, so that its k-th call draws the same values whatever numpy's global generator did
        (Keras 3 gives such a layer a SeedGenerator of its own). None: from that generator."""
        if getattr(self, "seed", None) is None:
            return None
        self._eager_calls = getattr(self, "_eager_calls", 0) + 1
        return self._eager_calls


# The penalties of `activity_regularizer`s, collected while a training or test step is built.
_ACTIVITY_PENALTIES: contextvars.ContextVar[list | None] = contextvars.ContextVar(
    "nncompile_activity_penalties", default=None)


@contextlib.contextmanager
def collect_activity_penalties() -> Iterator[list[Value]]:
    """Inside, every layer call whose layer has an `activity_regularizer` adds the penalty of
    its outputs (`activity_penalty`) to the list yielded, as Keras 3's `Layer.__call__` adds
    them to the model's losses."""
    penalties: list[Value] = []
    token = _ACTIVITY_PENALTIES.set(penalties)
    try:
        yield penalties
    finally:
        _ACTIVITY_PENALTIES.reset(token)


def activity_penalty(b: Builder, layer: Layer, output: Value) -> Value:
    """Keras 3's activity penalty of one output: `activity_regularizer(output)` divided by the
    batch size (so that its strength does not depend on the batch size; Keras 3.14 on, as
    tf.keras 2), as an f32 scalar."""
    x = output if output.type.dtype is DType.f32 else b.cast(output, dtype=DType.f32)
    penalty = regularizers.emit_penalty(layer.activity_regularizer, b, x,
                                        f"{owner_of(layer)}: activity_regularizer")
    if x.type.rank == 0:
        return penalty
    # The batch size is symbolic, and the IR has no shape op: count the rows (sum of ones).
    ones = b.add(b.mul(x, b.scalar(0.0, x)), b.scalar(1.0, x))
    rows = ones if x.type.rank == 1 else b.reduce_mean(ones, axes=tuple(range(1, x.type.rank)))
    return b.div(penalty, b.reduce_sum(rows, axes=(0,)))


# Keras names the arguments that hold activations, initializers, regularizers and constraints
# alike in every layer, so a config's objects are resolved by key, before the constructor runs.
_OBJECT_KEYS = {"activation": activations.get, "_initializer": initializers.get,
                "_regularizer": regularizers.get, "_constraint": constraints.get}


def _check_objects(config: Mapping[str, Any], owner: str) -> None:
    """An error naming the key of the first object in `config` that does not resolve."""
    for key, value in config.items():
        get = next((g for suffix, g in _OBJECT_KEYS.items() if key.endswith(suffix)), None)
        try:
            if get is not None:
                get(value)
        except (TypeError, ValueError) as e:
            raise ArgumentError(f"{owner}: the `{key}` argument: {e}") from None


def _mask_input(b: Builder, index: int, tensor: KerasTensor, value: Value) -> Mask | None:
    """A graph input for the mask `tensor` carries; it shares the leading (sequence) dimension
    symbols of the tensor's own input, as a real mask does."""
    mask = tensor._keras_mask
    if mask is None:
        return None
    shape = value.type.shape[:mask.ndim]
    if keras_shape(TensorType(DType.bool, shape)) != mask.shape:
        shape = ir_type(mask.shape, "bool", f"mask_{index}").shape
    return Mask(b.input(f"mask_{index}", TensorType(DType.bool, shape)), mask.name)


def _as_input_array(array, float_dtype: str) -> np.ndarray:
    """Integer arrays (indices) keep their dtype; everything else becomes `float_dtype`."""
    array = np.asarray(array)
    return array if np.issubdtype(array.dtype, np.integer) else array.astype(float_dtype, copy=False)


def _is_shape_list(shape) -> bool:
    return isinstance(shape, list) and bool(shape) and isinstance(shape[0], (tuple, list))


def run_graph(graph: Graph, arrays: Sequence[np.ndarray], seed: int | None = None) -> list[np.ndarray]:
    """Execute a traced graph on arrays with the backend NNCOMPILE_BACKEND names: compiled native
    code ("cpu", the default) or the numpy reference interpreter ("reference"). A graph that
    draws random numbers (Dropout in training) gets `seed`, or a fresh one from numpy's generator."""
    from nncompile.keras.layers.core import SEED_INPUT
    from nncompile.runtime import cpu

    names = [v.name for v in graph.data_inputs]
    if len(arrays) == len(names) - 1 and names[-1] == SEED_INPUT:
        drawn = np.random.randint(0, 2**62) if seed is None else seed
        arrays = [*arrays, np.asarray(drawn, np.int64)]
    return cpu.run_graph(graph, arrays)


def _op_on_keras_tensors(op, args: tuple, kwargs: dict):
    """keras.ops (and operators) on KerasTensors: the op recorded as a call in the functional
    graph (a shape question is answered at once)."""
    from nncompile.keras.layers.op_layer import op_layer

    tensors = [x for x in leaves((args, kwargs)) if isinstance(x, KerasTensor)]
    if op.__name__ in ("shape", "ndim"):
        return getattr(tensors[0], op.__name__)
    return op_layer(op, args, kwargs)(tensors[0] if len(tensors) == 1 else tensors)


register_symbolic(KerasTensor, _op_on_keras_tensors)
register_symbolic(Variable, tracing.traced_op)

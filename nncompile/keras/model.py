"""The functional `Model` (and `Functional`, what `Model(inputs, outputs)` makes), and `trace`
(model -> IR graph).

A model is a Layer whose computation is the graph of layer calls recorded on KerasTensors
(`base.CallNode`). `emit` replays those calls on a Builder, so nesting a model in another one,
tracing it into one `ir.Graph`, and predicting all go through the same walk. A subclassed model
(one that defines `call`, see subclassed.py) is traced through its `call` instead.
"""
from __future__ import annotations

import inspect
import itertools
from typing import Any, Mapping, Sequence

import numpy as np

from nncompile import phases
from nncompile.ir import Builder, DType, Graph, ShapeError, Value
from nncompile.keras import data, saving, streaming, subclassed, tracing
from nncompile.keras.functional import functional_config, functional_from_config, map_graph
from nncompile.keras.layers import auto_config
from nncompile.keras.layers.base import (CallNode, KerasTensor, Layer, Mask, ir_type, keras_shape,
                                         run_graph)
from nncompile.keras.layers.op_layer import OpLayer
from nncompile.keras.layers.recurrent import check_stateful_batch, stateful_rows

__all__ = ["Functional", "Model", "trace"]


class Model(Layer):
    """A graph of layer calls from `inputs` to `outputs`, usable as a layer.

    `Model(inputs, outputs)` builds a functional model (of class `Functional`, as in Keras 3).
    Inputs and outputs are a KerasTensor, a list of them, or a dict (outputs named by the keys).

    Example:

    >>> from nncompile.keras import Input, layers
    >>> x = Input(shape=(4,))
    >>> model = Model(x, layers.Dense(2)(x))
    >>> model.predict(np.ones((3, 4), "float32"), verbose=0).shape
    (3, 2)
    """

    def __new__(cls, *args, **kwargs):
        return super().__new__(Functional if cls is Model else cls, *args, **kwargs)

    def __init__(self, *, name: str | None = None, trainable: bool = True, **kwargs):
        super().__init__(name=name, trainable=trainable, **kwargs)
        self._inputs: list[KerasTensor] = []
        self._outputs: list[KerasTensor] = []
        self._inputs_struct: Any = None
        self._outputs_struct: Any = None
        self._calls: list[CallNode] = []
        self._nodes_by_depth: dict[int, list[CallNode]] = {}
        self._operations: list[Layer] = []
        self._graphs: dict[bool, Graph] = {}
        self._stateful = None   # a stateful layer and its batch size, found when a graph is traced
        self._pending_compile: dict | None = None   # compile() of a model not built yet
        self.output_names: list[str] = []

    def _set_graph(self, inputs, outputs) -> None:
        """Record the layer calls from `inputs` to `outputs` (each a tensor, list or dict)."""
        self._inputs = _flatten(self.name, inputs, "inputs")
        self._outputs = _flatten(self.name, outputs, "outputs")
        self._inputs_struct, self._outputs_struct = inputs, outputs
        self._calls, self._nodes_by_depth, self._operations = map_graph(
            self.name, self._inputs, self._outputs)
        self.output_names = (sorted(outputs) if isinstance(outputs, Mapping)
                             else [t.history.layer.name for t in self._outputs])
        self._graphs.clear()
        self.built = True

    # structure ----------------------------------------------------------------------------
    @property
    def layers(self) -> list[Layer]:
        """The layers, as Keras 3 lists them: without the op calls (`x + y`) of `operations`."""
        if self.has_call():
            return [layer for _, item in self.sublayers()
                    for layer in (item if isinstance(item, list) else [item])]
        return [layer for layer in self._operations if not isinstance(layer, OpLayer)]

    @property
    def operations(self) -> list[Layer]:
        """The layers and the op calls of the graph, in `layers` order."""
        return self.layers if self.has_call() else list(self._operations)

    @property
    def inputs(self) -> list[KerasTensor]:
        self._require_built("inputs")
        return list(self._inputs)

    @property
    def outputs(self) -> list[KerasTensor]:
        self._require_built("outputs")
        return list(self._outputs)

    @property
    def input(self):
        self._require_built("input")
        return self._inputs_struct

    @property
    def output(self):
        self._require_built("output")
        return self._outputs_struct

    @property
    def input_shape(self):
        shapes = [t.shape for t in self.inputs]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def output_shape(self):
        shapes = [t.shape for t in self.outputs]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def input_names(self) -> list[str]:
        return [t.history.layer.name for t in self.inputs]

    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        """The layer called `name`, or the one at `index` in `layers`."""
        layers = self.layers
        if name is not None and index is not None:
            raise ValueError(f"Provide only a layer name or a layer index. Received: "
                             f"index={index}, name={name}.")
        if index is not None:
            if not -len(layers) <= index < len(layers):
                raise ValueError(f"Was asked to retrieve layer at index {index} but model "
                                 f"'{self.name}' only has {len(layers)} layers.")
            return layers[index]
        if name is not None:
            for layer in layers:
                if layer.name == name:
                    return layer
            raise ValueError(f"No such layer: {name}. Existing layers are: "
                             f"{[layer.name for layer in layers]}.")
        raise ValueError("Provide either a layer name or layer index at `get_layer`.")

    def _require_built(self, what: str) -> None:
        if not self.built:
            raise ValueError(f"Model '{self.name}' has no defined {what} yet: it is not built. "
                             f"Build it by calling `build()` or by calling it on a batch of data.")

    # weights ------------------------------------------------------------------------------
    def _weight_layers(self) -> list[Layer]:
        return self.layers

    def _held_layers(self) -> list[Layer]:
        return list(dict.fromkeys([*self._weight_layers(), *super()._held_layers()]))

    def _unique(self, attr: str) -> list:
        seen: set[int] = set()
        out = []
        for layer in self._weight_layers():
            for w in getattr(layer, attr):
                if id(w) not in seen:
                    seen.add(id(w))
                    out.append(w)
        return out

    @property
    def weights(self) -> list:
        return self._unique("weights")

    @property
    def trainable_weights(self) -> list:
        return self._unique("trainable_weights") if self.trainable else []

    @property
    def non_trainable_weights(self) -> list:
        trainable = {id(w) for w in self.trainable_weights}
        return [w for w in self.weights if id(w) not in trainable]

    # lowering -----------------------------------------------------------------------------
    def emit(self, b: Builder, inputs: Value | list[Value], training: bool = False):
        values = [inputs] if isinstance(inputs, Value) else list(inputs)
        outs = self._emit_calls(b, self._conform_all(b, values), training)
        return outs[0] if len(outs) == 1 else outs

    def _conform_all(self, b: Builder, values: list[Value]) -> list[Value]:
        if len(values) != len(self._inputs):
            raise ShapeError(f"model '{self.name}' expects {len(self._inputs)} input(s) "
                             f"({', '.join(self.input_names)}), but received {len(values)}")
        return [self._conform(b, t, v) for t, v in zip(self._inputs, values)]

    def _conform(self, b: Builder, tensor: KerasTensor, value: Value) -> Value:
        """Check a value fed to a nested model's input; cast it to the input's dtype."""
        got = keras_shape(value.type)
        if len(got) != len(tensor.shape) or any(
                e is not None and g is not None and e != g for e, g in zip(tensor.shape, got)):
            raise ShapeError(f"input '{tensor.name}' of model '{self.name}' is incompatible: "
                             f"expected shape {tensor.shape}, received shape {got}")
        dtype = DType.from_numpy(tensor.dtype)
        return value if value.type.dtype == dtype else b.cast(value, dtype=dtype)

    def _emit_calls(self, b: Builder, values: list[Value], training: bool) -> list[Value]:
        return self._emit_masked_calls(b, values, [None] * len(values), training)[0]

    def _emit_masked_calls(self, b: Builder, values: list[Value], masks: list[Mask | None],
                           training: bool) -> tuple[list[Value], list[Mask | None]]:
        """The outputs and their Keras masks; masks travel beside the values, call by call."""
        if self.has_call():
            outs = subclassed.emit(self, b, values, training)
            return outs, [None] * len(outs)
        env = {id(t): v for t, v in zip(self._inputs, values)}
        mask_env = {id(t): m for t, m in zip(self._inputs, masks)}
        for node in self._calls:
            args = [env[id(t)] for t in node.inputs]
            with b.loc(node.layer.name):
                # As Keras 3's functional call: the model's mode, when it is given, over the
                # one recorded with the call (a Keras file records an augmentation layer's
                # `training=True` default); neither: the layer's default
                mode = training if training is not None else node.training
                outs, out_masks = node.layer.emit_call(
                    b, args, [mask_env.get(id(t)) for t in node.inputs], node.single_input, mode)
            env.update((id(t), v) for t, v in zip(node.outputs, outs))
            if node.layer.clears_input_masks:
                mask_env.update((id(t), None) for t in node.inputs)
            mask_env.update((id(t), m) for t, m in zip(node.outputs, out_masks))
        return [env[id(t)] for t in self._outputs], [mask_env.get(id(t)) for t in self._outputs]

    def emit_call(self, b: Builder, inputs: list[Value], masks: list[Mask | None], single: bool,
                  training: bool = False) -> tuple[list[Value], list[Mask | None]]:
        """A nested model hands its inputs' masks to its layers and gives back the masks of its
        outputs, as Keras's Functional does when it runs."""
        return self._emit_masked_calls(b, self._conform_all(b, inputs), masks, training)

    def _graph(self, training: bool | None) -> Graph:
        """The traced graph, cached: weights are bound by reference, so it never goes stale.
        `training` None: no mode given, each call in its recorded mode (see `_emit_masked_calls`)."""
        if training not in self._graphs:
            self._graphs[training] = trace(self, training=training)
            self._stateful = stateful_rows(self.layers)
        return self._graphs[training]

    def build(self, input_shape=None) -> None:
        """A subclassed model is built by tracing its `call` on inputs of `input_shape`."""
        if self.has_call():
            subclassed.build(self, input_shape)
        else:
            super().build(input_shape)

    def _builds_from_data(self) -> bool:
        """Whether the model, not built yet, is built by its first data (`_build_for`)."""
        return self.has_call()

    def _build_for(self, x) -> None:
        """Build a subclassed model from its first data, as Keras does on the first batch."""
        if not self.built and self.has_call() and x is not None:
            subclassed.build_from_data(self, x)

    def _compile_pending(self) -> None:
        """The `compile()` that waited for the model to be built, now that it is."""
        pending, self._pending_compile = self._pending_compile, None
        if pending is not None:
            self.compile(**pending)

    # running ------------------------------------------------------------------------------
    def __call__(self, inputs, training: bool | None = None, **kwargs):
        if _is_symbolic(inputs):
            if isinstance(inputs, Mapping):
                inputs = self._by_key(inputs)
            return super().__call__(inputs, training=training, **kwargs)
        if kwargs:
            raise TypeError(f"Model '{self.name}' got unexpected call arguments: {sorted(kwargs)}")
        arrays = self._standardize(inputs)   # (it may build the model)
        return self._pack(self._run(self._graph(None if training is None else bool(training)), arrays))

    def _run(self, graph: Graph, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """One batch through a traced graph of the model (`_graph`, which finds `_stateful`)."""
        check_stateful_batch(self._stateful, len(arrays[0]))
        return run_graph(graph, arrays)

    def predict(self, x, batch_size: int | None = None, verbose="auto", steps: int | None = None):
        """Outputs for the samples of `x` (an array, a list of arrays, or a dict by input name),
        computed `batch_size` samples at a time, or for the batches of a PyDataset, generator or
        iterable; at most `steps` batches. One array, a list, or a dict for dict outputs.

        `verbose` is accepted as Keras takes it; prediction prints nothing.
        """
        owner = f"predict() of model '{self.name}'"
        batch_size = data.batch_size(batch_size, owner)
        steps = data.optional_count(steps, "steps", owner)
        if streaming.is_stream(x):
            feeds = (self._standardize(streaming.unpack(batch)[0])
                     for batch in streaming.Stream(x, steps=steps).epoch())
        else:
            arrays = self._standardize(x)
            # An empty input still runs one (empty) batch, so outputs keep their shapes.
            feeds = ([a[i:i + batch_size] for a in arrays]
                     for i in range(0, max(arrays[0].shape[0], 1), batch_size))
        graph = self._graph(False)
        batches = [self._run(graph, feed) for feed in itertools.islice(feeds, steps)]
        if not batches:
            raise ValueError(f"{owner}: the {streaming.kind(x)} gave no batch to predict on")
        outs = [np.concatenate([batch[k] for batch in batches]) for k in range(len(batches[0]))]
        return self._pack(outs)

    def predict_on_batch(self, x):
        """Outputs for `x` as one batch."""
        arrays = self._standardize(x)
        return self._pack(self._run(self._graph(False), arrays))

    # training (nncompile/keras/training.py) ------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, metrics=None,
                weighted_metrics=None, run_eagerly=False, steps_per_execution=1, jit_compile="auto",
                auto_scale_loss=True) -> None:
        """Configure training: the optimizer, the loss (per output) and the metrics.

        >>> from nncompile.keras import Input, Sequential
        >>> from nncompile.keras.layers import Dense
        >>> model = Sequential([Input(shape=(3,)), Dense(1)])
        >>> model.compile(optimizer="adam", loss="mse", metrics=["mae"])
        >>> history = model.fit(np.ones((8, 3)), np.zeros(8), epochs=2, verbose=0)
        >>> sorted(history.history)
        ['loss', 'mae']
        """
        from nncompile.keras import optimizers, training

        subclassed.refuse_custom_steps(self)
        if not self.built and self._builds_from_data():
            # Outputs (and so losses and metrics per output) are known once it is built; a loss
            # that can never work is refused now, not by the call that builds it.
            if loss is None:
                raise training.no_loss(self)
            if isinstance(loss, str):
                training.losses_module.get(loss)
            self.optimizer = optimizers.get(optimizer)
            self._compile_args = {"loss": loss, "loss_weights": loss_weights, "metrics": metrics,
                                  "weighted_metrics": weighted_metrics}
            self._pending_compile = dict(optimizer=self.optimizer, **self._compile_args)
            return
        training.compile_model(self, optimizer, loss, loss_weights, metrics, weighted_metrics)

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
            sample_weight=None, initial_epoch=0, steps_per_epoch=None, validation_steps=None,
            validation_batch_size=None, validation_freq=1, **kwargs):
        """Train for `epochs` passes over the data; returns the History (also `model.history`).
        Each batch is one call of the compiled training step."""
        from nncompile.keras import training

        self._build_for(x)
        return training.fit(self, x, y, batch_size, epochs, verbose, callbacks, validation_split,
                            validation_data, shuffle, class_weight, sample_weight, initial_epoch,
                            steps_per_epoch, validation_steps, validation_batch_size,
                            validation_freq, **kwargs)

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None,
                 steps=None, callbacks=None, return_dict=False):
        """The loss (a float) without metrics, else [loss, *metrics] (or a dict)."""
        from nncompile.keras import training

        self._build_for(x)
        return training.evaluate(self, x, y, batch_size, verbose, sample_weight, steps, callbacks,
                                 return_dict)

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict=False):
        """One training step on `x`, `y`; the running loss (and metrics)."""
        from nncompile.keras import training

        self._build_for(x)
        return training.train_on_batch(self, x, y, sample_weight, class_weight, return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        """The loss (and metrics) on one batch, without training."""
        from nncompile.keras import training

        self._build_for(x)
        return training.test_on_batch(self, x, y, sample_weight, return_dict)

    def reset_metrics(self) -> None:
        from nncompile.keras import training

        training.reset(training.require_compiled(self, "reset_metrics"))

    @property
    def metrics_names(self) -> list[str]:
        compiled = getattr(self, "_compiled", None)
        return [m.name for m in compiled.all_metrics()] if compiled else []

    def _input_keys(self) -> list[str]:
        if isinstance(self._inputs_struct, Mapping):
            return sorted(self._inputs_struct)
        return self.input_names

    def _by_key(self, x: Mapping) -> list:
        keys = self._input_keys()
        missing = [k for k in keys if k not in x]
        if missing:
            raise ValueError(f'Missing data for input "{missing[0]}" of model "{self.name}". '
                             f"Expected the following keys: {keys}. Received keys: "
                             f"{sorted(map(str, x))}")
        return [x[k] for k in keys]

    def _standardize(self, x) -> list[np.ndarray]:
        """The arrays of `x` in input order, checked against the inputs and cast to their dtypes."""
        self._build_for(x)
        self._require_built("inputs")
        count = len(self._inputs)
        if type(x) is np.ndarray:   # what predict gets most: one array, never a list of inputs
            items = [x]
        elif isinstance(x, Mapping):
            items = self._by_key(x)
        elif isinstance(x, (list, tuple)) and x and all(isinstance(a, np.ndarray) for a in x):
            items = list(x)
        elif count == 1 or not isinstance(x, (list, tuple)):
            # One input: nested lists are the data itself, not a list of inputs.
            items = [x]
        else:
            items = list(x)
        if len(items) != count:
            raise ValueError(f'Model "{self.name}" expects {count} input(s) '
                             f'({", ".join(self._input_keys())}), '
                             f"but it received {len(items)} input array(s)")
        arrays = [self._input_array(i, t, item)
                  for i, (t, item) in enumerate(zip(self._inputs, items))]
        if count > 1:   # (one array always agrees with itself)
            data.check_cardinality(self.name, [(f'input "{k}"', a.shape[0])
                                               for k, a in zip(self.input_names, arrays)])
        return arrays

    def _input_array(self, index: int, tensor: KerasTensor, value) -> np.ndarray:
        where = f'Input {index} of model "{self.name}" (input "{tensor.name}")'
        if value is None:
            raise ValueError(f"The input '{tensor.name}' of model '{self.name}' is not optional, "
                             f"but None was passed. Please provide a valid array.")
        array = data.numeric_array(value, where)
        expected = tensor.shape
        # Keras squeezes or adds a trailing axis of size 1 when that is all that differs.
        if array.ndim == len(expected) + 1 and array.shape[-1] == 1:
            array = array[..., 0]
        elif array.ndim == len(expected) - 1 and expected[-1] == 1:
            array = array[..., None]
        # The first axis counts the samples, which fit and predict split into batches (a fixed
        # batch size, `Input(batch_shape=...)`, is that of each batch).
        if array.ndim != len(expected) or any(
                e is not None and e != a for e, a in zip(expected[1:], array.shape[1:])):
            raise ValueError(f"{where} is incompatible: expected shape {expected}, "
                             f"received shape {array.shape}")
        return data.cast(array, tensor.dtype, where)

    def _pack(self, outs: list[np.ndarray]):
        if isinstance(self._outputs_struct, Mapping):
            return dict(zip(sorted(self._outputs_struct), outs))
        return outs[0] if len(outs) == 1 else list(outs)

    # reporting and configuration ----------------------------------------------------------
    def summary(self, line_length: int | None = None, positions: Sequence[float] | None = None,
                print_fn=None, expand_nested: bool = False, show_trainable: bool = False) -> None:
        """Print Keras 3's table of the layers, their output shapes and parameter counts."""
        from nncompile.keras.summary import print_summary

        print_summary(self, line_length=line_length, positions=positions, print_fn=print_fn,
                      expand_nested=expand_nested, show_trainable=show_trainable)

    @auto_config.default
    def get_config(self) -> dict[str, Any]:
        """A subclassed model's config, as Keras 3 makes it: name, trainable, dtype and the
        arguments its constructor was called with, when they are plain values (`auto_config`;
        otherwise the class defines get_config)."""
        return super().get_config()

    @classmethod
    def from_config(cls, config: Mapping[str, Any],
                    custom_objects: Mapping[str, type] | None = None) -> "Model":
        """Keras 3's revival: a functional config as a functional model (of `cls` when it is a
        Functional or its constructor takes Functional's arguments), any other config passed to
        `cls(**config)`."""
        functional = all(key in config for key in ("name", "layers", "input_layers", "output_layers"))
        if cls in (Model, Functional) or (functional and (
                issubclass(cls, Functional) or functional_like_constructor(cls))):
            return functional_from_config(cls, config, custom_objects)
        try:
            return cls(**config)
        except TypeError as e:
            raise TypeError(
                f"Unable to revive model from config. When overriding the `get_config()` method, "
                f"make sure that the returned config contains all items used as arguments in the  "
                f"constructor to {cls}, which is the default behavior. You can override this "
                f"default behavior by defining a `from_config(cls, config)` class method to specify "
                f"how to create an instance of {cls.__name__} from its config.\n\nReceived "
                f"config={config}\n\nError encountered during deserialization: {e}") from None

    # saving (nncompile/keras/saving/) -------------------------------------------------------
    def save(self, filepath, overwrite: bool = True, zipped: bool | None = None, **kwargs) -> None:
        """Save as a `.keras` zip or a legacy `.h5` file (atomically)."""
        saving.save_model(self, filepath, overwrite=overwrite, zipped=zipped, **kwargs)

    def save_weights(self, filepath, overwrite: bool = True) -> None:
        """Save the weights (and optimizer state) to a `.weights.h5` file."""
        saving.save_weights(self, filepath, overwrite=overwrite)

    def load_weights(self, filepath, skip_mismatch: bool = False, **kwargs) -> None:
        """Load weights from `.weights.h5`, `.keras` or legacy `.h5` (`by_name=True` for .h5)."""
        saving.load_weights(self, filepath, skip_mismatch=skip_mismatch, **kwargs)

    def to_json(self, **kwargs) -> str:
        """The model's config as JSON; `model_from_json` makes the model again."""
        return saving.model_to_json(self, **kwargs)


class Functional(Model):
    """A model defined by `Model(inputs, outputs)` (see `Model`).

    Example:

    >>> from nncompile.keras import Input, Model, layers
    >>> a, b = Input(shape=(3,), name="a"), Input(shape=(3,), name="b")
    >>> model = Model([a, b], layers.Add()([a, b]))
    >>> type(model).__name__, [layer.name for layer in model.layers]
    ('Functional', ['a', 'b', 'add'])
    """

    def __init__(self, inputs, outputs, name: str | None = None, trainable: bool = True):
        super().__init__(name=name, trainable=trainable)
        self._set_graph(inputs, outputs)

    def get_config(self) -> dict[str, Any]:
        return functional_config(self)


def functional_like_constructor(cls: type) -> bool:
    """Whether `cls(inputs, outputs, name=...)` makes a model of `cls` (Keras's test: the
    constructor takes Functional's arguments, or *args and **kwargs)."""
    spec = inspect.getfullargspec(cls.__init__)
    functional = inspect.getfullargspec(Functional.__init__).args[1:]
    return (spec.args[1:] in (functional, ["inputs", "outputs", "name"])
            or (spec.varargs is not None and spec.varkw is not None))


def _flatten(model: str, struct, what: str) -> list[KerasTensor]:
    """The tensors of a tensor, list/tuple or dict (dicts in sorted key order, as Keras does)."""
    if isinstance(struct, Mapping):
        flat = [struct[k] for k in sorted(struct)]
    elif isinstance(struct, (list, tuple)):
        flat = list(struct)
    else:
        flat = [struct]
    if not flat:
        raise ValueError(f"Model '{model}': `{what}` argument cannot be empty.")
    for x in flat:
        if not isinstance(x, KerasTensor):
            raise ValueError(f"Model '{model}': all `{what}` values must be KerasTensors. "
                             f"Received: {what}={struct!r} including invalid value {x!r} of "
                             f"type {type(x)}")
    return flat


def _is_symbolic(inputs) -> bool:
    items = inputs.values() if isinstance(inputs, Mapping) else (
        inputs if isinstance(inputs, (list, tuple)) else [inputs])
    return any(isinstance(x, KerasTensor) or tracing.is_traced(x) for x in items)


# --- tracing ----------------------------------------------------------------------------------

@phases.timed("trace")
def trace(model: Model, training: bool = False) -> Graph:
    """Trace `model` into one IR graph named "main".

    Data inputs are named by the model's Input layers, with the batch dimension symbolic ("?");
    parameters are named by weight path ("dense/kernel") and bound to the live weight arrays;
    every node carries the name of the layer that emitted it as its loc.

    Example:

    >>> from nncompile.keras import Input, Sequential, layers
    >>> model = Sequential([Input(shape=(4,), name="x"), layers.Dense(2, name="dense")])
    >>> print(trace(model))  # doctest: +ELLIPSIS
    func @main(%x: f32[?,4], %dense/kernel: f32[4,2] {param}, ...
    """
    if not isinstance(model, Model):
        raise TypeError(f"trace() takes a keras Model; received {type(model).__name__}")
    if not model.built:
        raise ValueError(f"Model '{model.name}' has not yet been built, so it cannot be traced. "
                         f"Build the model first by calling `build()` or by calling the model "
                         f"on a batch of data.")
    b = Builder(name="main")
    values = [b.input(t.history.layer.name, ir_type(t.shape, t.dtype, t.history.layer.name))
              for t in model.inputs]
    outputs = model._emit_calls(b, values, training)
    return b.finish(outputs, _unique_names(model.output_names))


def _unique_names(names: list[str]) -> list[str]:
    """Output names, with `_1`, `_2` ... after repeats (one layer giving several outputs)."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        out.append(name if count == 0 else f"{name}_{count}")
    return out

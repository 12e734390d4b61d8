"""`keras.models.clone_model`: a model like another one, with new layers (so new, freshly
initialized weights), as Keras 3's `keras/src/models/cloning.py` makes it.

- A Sequential model: `clone_function` applied to each of its layers (not its InputLayer), the
  results stacked on a new Input of the same batch shape, dtype and name (or on `input_tensors`).
- A functional model: its layer calls replayed, in Keras's order, on new Inputs (or on
  `input_tensors`), each layer replaced by `clone_function(layer)` (called once per layer, so a
  shared layer stays shared) and called through `call_function` when one is given. A nested
  model is a layer like any other (cloned from its config), or cloned by `clone_model` itself
  with `recursive=True`.
- Any other model (a subclassed one, with a `call`): re-created from its config
  (`from_config(get_config())`) and built for the same inputs, as Keras's serialization round
  trip does; `clone_function`, `input_tensors` and `call_function` are refused, as in Keras.

The default `clone_function` is Keras's `lambda layer: layer.__class__.from_config(
layer.get_config())`: new weights, not copies (`clone.set_weights(model.get_weights())` copies
them). A compiled model gives a clone compiled the same way, with a new optimizer (fresh
state) and new metric objects.
"""
from __future__ import annotations

import copy
from typing import Callable, Mapping

from nncompile.keras.input_layer import Input, InputLayer
from nncompile.keras.layers.base import KerasTensor, Layer
from nncompile.keras.layers.op_layer import OpLayer
from nncompile.keras.model import Functional, Model, functional_like_constructor
from nncompile.keras.sequential import Sequential

__all__ = ["clone_model"]


def clone_model(model, input_tensors=None, clone_function: Callable | None = None,
                call_function: Callable | None = None, recursive: bool = False, **kwargs):
    """A new model computing what `model` computes, with new layers and weights.

    Args:
        model: a Sequential or functional model (a subclassed model is re-created from its
            config; see the module docstring).
        input_tensors: the input(s) to build the clone on, in the structure of `model.input`
            (one tensor for a Sequential model); by default new `Input`s like the model's.
        clone_function: `fn(layer) -> layer`, applied once to each layer (not to the inputs);
            by default `layer.__class__.from_config(layer.get_config())`. Returning the layer
            itself shares it (and its weights) with `model`.
        call_function: `fn(layer, *args, **kwargs) -> outputs`, which calls each cloned layer of
            a functional model (by default `layer(*args, **kwargs)`); it may add layers around
            the call.
        recursive: clone nested Sequential and functional models with `clone_model` (so with
            `clone_function` applied to their layers) rather than with `clone_function`.

    Example:

    >>> from nncompile import keras
    >>> model = keras.Sequential([keras.Input(shape=(4,)), keras.layers.Dense(2)])
    >>> clone = keras.models.clone_model(model)
    >>> clone.set_weights(model.get_weights())
    >>> x = np.ones((3, 4), "float32")
    >>> bool((clone.predict(x, verbose=0) == model.predict(x, verbose=0)).all())
    True
    """
    cache = kwargs.pop("cache", None)
    if kwargs:
        raise ValueError(f"Unexpected keyword argument(s): {tuple(kwargs.keys())}")
    if clone_function is not None and not callable(clone_function):
        raise ValueError(f"Expected `clone_function` argument to be a callable. "
                         f"Received: clone_function={clone_function}")
    if call_function is not None and not callable(call_function):
        raise ValueError(f"Expected `call_function` argument to be a callable. "
                         f"Received: call_function={call_function}")
    if isinstance(model, Sequential):
        if call_function is not None:
            raise ValueError(
                f"`call_function` argument is not supported with Sequential models.  In a "
                f"Sequential model, layers aren't called at model-construction time (they're "
                f"merely listed). Use `call_function` with Functional models only. Received "
                f"model of type '{type(model).__name__}', with call_function={call_function}")
        wrapped = _wrap_clone_function(clone_function, call_function, recursive, cache)
        return _clone_sequential_model(model, wrapped, input_tensors)
    if _is_functional(model):
        wrapped = _wrap_clone_function(clone_function, call_function, recursive, cache)
        return _clone_functional_model(model, wrapped, input_tensors, call_function)
    if clone_function is not None or input_tensors is not None:
        raise ValueError(
            f"Arguments `clone_function` and `input_tensors` are only supported for Sequential "
            f"models or Functional models. Received model of type '{type(model).__name__}', "
            f"with clone_function={clone_function} and input_tensors={input_tensors}")
    if call_function is not None:
        raise ValueError(
            f"Argument `call_function` is only supported for Functional models. Received model "
            f"of type '{type(model).__name__}', with call_function={call_function}")
    return _clone_from_config(model)


def _is_functional(model) -> bool:
    """A model whose computation is its graph of layer calls (not a `call` method)."""
    return isinstance(model, Functional) and not model.has_call()


def _default_clone(layer: Layer) -> Layer:
    from nncompile.keras.layers.lambda_layer import Lambda

    if isinstance(layer, Lambda):
        # Keras fails here too: its config holds the function as code, which deserializing
        # refuses by default (a lambda) or cannot find (a function of the user's).
        raise ValueError(
            f"clone_model cannot re-create layer '{layer.name}' (Lambda) from its config: the "
            f"config holds its Python function as code, which is not run back (Keras refuses "
            f"it too). Pass a clone_function that reuses or re-creates Lambda layers, e.g. "
            f"`lambda layer: layer if isinstance(layer, keras.layers.Lambda) else "
            f"layer.__class__.from_config(layer.get_config())`")
    return layer.__class__.from_config(layer.get_config())


def _wrap_clone_function(clone_function: Callable | None, call_function: Callable | None,
                         recursive: bool, cache: dict | None) -> Callable:
    """`clone_function` (Keras's default when None) called at most once per layer, the same clone
    answering every later call; with `recursive`, nested models cloned by `clone_model`."""
    clone_function = clone_function or _default_clone
    cache = {} if cache is None else cache

    def wrapped(layer: Layer) -> Layer:
        if id(layer) in cache:
            return cache[id(layer)]
        if recursive and isinstance(layer, Sequential):
            # A Sequential model takes no call_function.
            clone = clone_model(layer, clone_function=clone_function, recursive=True, cache=cache)
        elif recursive and _is_functional(layer):
            clone = clone_model(layer, clone_function=clone_function, call_function=call_function,
                                recursive=True, cache=cache)
        else:
            clone = clone_function(layer)
        cache[id(layer)] = clone
        return clone

    return wrapped


# --- Sequential --------------------------------------------------------------------------------

def _clone_sequential_model(model: Sequential, clone_function: Callable, input_tensors=None):
    new_layers = [clone_function(layer) for layer in model.layers]
    first = model._layers[0] if model._layers else None
    reference = first if isinstance(first, InputLayer) else None
    if input_tensors is not None:
        if isinstance(input_tensors, (list, tuple)):
            if len(input_tensors) != 1:
                raise ValueError("Argument `input_tensors` must contain a single tensor.")
            input_tensors = input_tensors[0]
        if not isinstance(input_tensors, KerasTensor):
            raise ValueError(f"Argument `input_tensors` must be a KerasTensor. Received invalid "
                             f"value: input_tensors={input_tensors}")
        name = reference.name if reference is not None else None
        new_layers = [_input_layer_of(input_tensors, name)] + new_layers
    elif reference is not None:
        new_layers = [InputLayer(batch_shape=reference.batch_shape, dtype=reference.dtype,
                                 name=reference.name)] + new_layers
    clone = Sequential(new_layers, name=model.name, trainable=model.trainable)
    _compile_like(clone, model)
    return clone


def _input_layer_of(tensor: KerasTensor, name: str | None) -> InputLayer:
    """The InputLayer a Sequential clone starts from: that of an `Input` tensor (so the clone's
    input is the tensor given, as in Keras); for a tensor some layer made, a new Input of its
    shape and dtype, named as the model's input (Keras too makes a new input in its place: the
    clone does not continue the graph of that tensor)."""
    node = tensor.history
    if node is not None and not node.inputs and isinstance(node.layer, InputLayer):
        return node.layer
    return InputLayer(batch_shape=tensor.shape, dtype=tensor.dtype, name=name)


# --- functional --------------------------------------------------------------------------------

def _clone_functional_model(model: Functional, clone_function: Callable, input_tensors=None,
                            call_function: Callable | None = None):
    if input_tensors is not None:
        given = _flatten(input_tensors)
        if not all(isinstance(x, KerasTensor) for x in given):
            raise ValueError(f"All entries in `input_tensors` must be KerasTensors. Received "
                             f"invalid values: inputs_tensors={input_tensors}")
        if not _same_structure(input_tensors, model.input):
            raise ValueError(f"`input_tensors` must have the same structure as model.input\n"
                             f"Reference structure: {model.input}\n"
                             f"Received structure: {input_tensors}")
        # Keras's Functional takes a tensor some layer made as a new input of its shape.
        input_tensors = _map_structure(_as_input, input_tensors)
    else:
        input_tensors = _map_structure(
            lambda x: Input(batch_shape=x.shape, dtype=x.dtype, name=x.name), model.input)
    tensors = {id(old): new for old, new in zip(model._inputs, _flatten(input_tensors))}
    for node in _nodes_in_keras_order(model):
        layer = clone_function(node.layer)
        if isinstance(layer, OpLayer) and layer._template is not None:
            # An op's call already recorded (clone_function returned the model's own): a new
            # one, as a config makes it, takes the call's arguments in Keras's form.
            layer = type(layer).from_config(layer.get_config())
        args, kwargs = node.layer.call_arguments([tensors[id(t)] for t in node.inputs],
                                                 node.single_input)
        if node.training is not None:
            kwargs = {**kwargs, "training": node.training}
        outputs = (layer(*args, **kwargs) if call_function is None
                   else call_function(layer, *args, **kwargs))
        produced = _flatten(outputs)
        if len(produced) != len(node.outputs):
            raise ValueError(f"Cloning model '{model.name}': the clone of layer "
                             f"'{node.layer.name}' ({type(node.layer).__name__}) gives "
                             f"{len(produced)} output(s) where the layer gives "
                             f"{len(node.outputs)}")
        tensors.update((id(old), new) for old, new in zip(node.outputs, produced))
    output_tensors = _map_structure(lambda t: tensors[id(t)], model.output)
    cls = type(model) if functional_like_constructor(type(model)) else Functional
    # As Keras 3, the clone's own flag is left at True: its layers are clones of the model's,
    # each with its own flag (setting the model's set theirs when it was set).
    clone = cls(input_tensors, output_tensors, name=model.name)
    _compile_like(clone, model)
    return clone


def _nodes_in_keras_order(model: Functional) -> list:
    """The model's layer calls (not its inputs) by decreasing depth, the order in which Keras's
    `_run_through_graph` clones and calls them (every call's inputs come before it)."""
    by_depth = model._nodes_by_depth
    ordered = [node for depth in sorted(by_depth, reverse=True) for node in by_depth[depth]
               if node.inputs]
    mine = {id(node) for node in model._calls}
    return [node for node in ordered if id(node) in mine]


def _as_input(tensor: KerasTensor) -> KerasTensor:
    node = tensor.history
    if node is not None and not node.inputs and isinstance(node.layer, InputLayer):
        return tensor
    return Input(batch_shape=tensor.shape, dtype=tensor.dtype)


# --- structures (tensors, lists, tuples, dicts) --------------------------------------------------

def _flatten(struct) -> list:
    """The leaves of `struct`, dicts in sorted key order (as Keras's tree.flatten)."""
    if isinstance(struct, Mapping):
        return [leaf for key in sorted(struct) for leaf in _flatten(struct[key])]
    if isinstance(struct, (list, tuple)):
        return [leaf for item in struct for leaf in _flatten(item)]
    return [struct]


def _map_structure(fn: Callable, struct):
    if isinstance(struct, Mapping):
        return {key: _map_structure(fn, value) for key, value in struct.items()}
    if isinstance(struct, (list, tuple)):
        return type(struct)(_map_structure(fn, item) for item in struct)
    return fn(struct)


def _same_structure(a, b) -> bool:
    """Keras's `tree.assert_same_structure`: the same containers (a list is not a tuple) with the
    same keys and lengths, whatever the leaves."""
    if isinstance(a, Mapping) or isinstance(b, Mapping):
        return (isinstance(a, Mapping) and isinstance(b, Mapping) and set(a) == set(b)
                and all(_same_structure(a[k], b[k]) for k in a))
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return (type(a) is type(b) and len(a) == len(b)
                and all(_same_structure(x, y) for x, y in zip(a, b)))
    return True


# --- subclassed models ---------------------------------------------------------------------------

def _clone_from_config(model):
    """Keras's clone of a model that is neither Sequential nor functional (and of a lone layer):
    `serialize_keras_object` then `deserialize_keras_object`, which re-creates it from its
    config, builds it as the original was built and compiles it as it was compiled."""
    if not isinstance(model, Layer):
        raise ValueError(f"Expected `model` argument to be a `Model` instance. "
                         f"Received: model={model!r}")
    cls = type(model)
    config = model.get_config()
    if isinstance(model, Model):
        clone = cls.from_config(config)
        if model.built and not clone.built:
            _build_like(clone, model)
        _compile_like(clone, model)
        return clone
    clone = cls.from_config(config)
    if model.built and model._inbound_nodes and not clone.built:
        node = model._inbound_nodes[0]
        shapes = [t.shape for t in node.inputs]
        clone._maybe_build(shapes[0] if node.single_input else shapes)
    return clone


def _build_like(clone, model) -> None:
    """Build a subclassed clone for inputs like the original's (shapes and dtypes)."""
    from nncompile.keras import subclassed

    inputs = [Input(batch_shape=t.shape, dtype=t.dtype) for t in model._inputs]
    subclassed._build(clone, inputs, single=not isinstance(model._inputs_struct, list))


# --- compiling -----------------------------------------------------------------------------------

def _compile_like(clone, model) -> None:
    """Compile `clone` as `model` was compiled (Keras: `compile_from_config(
    model.get_compile_config())`): the optimizer re-created from its config (so with fresh
    state), the losses and loss weights as given, Metric objects re-created (their state is
    their own). Names, functions and Loss objects are taken as they are, so a custom loss
    function needs no registration (Keras's round trip through a config needs it)."""
    args = getattr(model, "_compile_args", None)
    if getattr(model, "_compiled", None) is None or args is None:
        args = getattr(model, "_pending_compile", None)   # a subclassed model not built yet
    if args is None:
        return
    # compile() names the Metric objects of a model with several outputs after their output
    # ("a_mae"), in place: the new ones get back the name they were given.
    names = list(model.output_names) if len(model.output_names) > 1 else []
    prefixes = sorted((f"{name}_" for name in names), key=len, reverse=True)
    clone.compile(optimizer=_new_object(model.optimizer), loss=args["loss"],
                  loss_weights=copy.deepcopy(args["loss_weights"]),
                  metrics=_renewed(args["metrics"], prefixes),
                  weighted_metrics=_renewed(args["weighted_metrics"], prefixes))


def _renewed(value, prefixes: list[str]):
    """Compile arguments with every Metric object replaced by a new one of the same config,
    without the first of `prefixes` its name starts with."""
    from nncompile.keras.metrics import Metric

    if isinstance(value, Metric):
        metric = _new_object(value)
        prefix = next((p for p in prefixes if metric.name.startswith(p)), "")
        metric.name = metric.name[len(prefix):]
        return metric
    if isinstance(value, Mapping):
        return {key: _renewed(item, prefixes) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_renewed(item, prefixes) for item in value)
    return value


def _new_object(obj):
    """An optimizer or metric like `obj`, made from its config (or a copy with its state reset,
    for a class its config cannot re-create)."""
    if obj is None:
        return None
    try:
        return type(obj).from_config(obj.get_config())
    except (TypeError, ValueError, KeyError):
        fresh = copy.deepcopy(obj)
        reset = getattr(fresh, "reset_state", None)
        if callable(reset):
            reset()
        return fresh

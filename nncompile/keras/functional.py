"""The graph behind a functional model: walking its layer calls, and its Keras 3 config.

`map_graph` orders the calls between a model's inputs and outputs the way Keras does (depths
counted from the outputs, layers listed from the inputs); `functional_config` and
`functional_from_config` write and read Keras 3's structure ("layers" with "inbound_nodes",
"input_layers", "output_layers"), and read Keras 2's list-form inbound nodes too.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Mapping

from nncompile.keras.layers.base import CallNode, KerasTensor, Layer
from nncompile.keras.layers.op_layer import OpLayer, op_class
from nncompile.keras.serialization import module_of


# --- the call graph -------------------------------------------------------------------------

def map_graph(model: str, inputs: list[KerasTensor], outputs: list[KerasTensor]
              ) -> tuple[list[CallNode], dict[int, list[CallNode]], list[Layer]]:
    """(calls in topological order, nodes by depth, layers by decreasing depth) of a model.

    Raises ValueError when an output needs an input the model was not given, when a model input
    is not a `keras.Input` tensor, or when two layers share a name.
    """
    input_ids = {id(t) for t in inputs}
    if len(input_ids) != len(inputs):
        raise ValueError(f"Model '{model}': the same input tensor is given twice in `inputs` "
                         f"({', '.join(t.name for t in inputs)})")
    for i, t in enumerate(inputs):
        if t.history is None or t.history.inputs:
            origin = f"the output of layer '{t.history.layer.name}'" if t.history else "unconnected"
            raise ValueError(f"Model '{model}': every input must be a tensor made by "
                             f"keras.Input(); input {i} ({t.name}) is {origin}")
    order, first_seen = _topological(model, input_ids, outputs)
    for node in order:
        if not node.inputs and id(node.outputs[0]) not in input_ids:
            names = ", ".join(t.name for t in inputs)
            raise ValueError(f"Graph disconnected: model '{model}' needs input '{node.layer.name}' "
                             f"(shape {node.outputs[0].shape}) to compute its outputs, but it is "
                             f"not among the model inputs ({names})")
    node_depth, layer_depth = _depths(order)
    for t in inputs:
        # Inputs that no output uses still belong to the model (listed first), as in Keras.
        layer = t.history.layer
        if id(layer) not in layer_depth:
            layer_depth[id(layer)] = 0
            first_seen[id(layer)] = (-1, layer)
            node_depth[id(t.history)] = (0, t.history)
    by_depth: dict[int, list[CallNode]] = defaultdict(list)
    for depth, node in node_depth.values():
        by_depth[depth].append(node)
    layers = [layer for _, layer in sorted(first_seen.values(), key=lambda item: (
        -layer_depth[id(item[1])], item[0]))]
    _check_unique_names(layers)
    return [node for node in order if node.inputs], dict(by_depth), layers


def _topological(model: str, input_ids: set[int], outputs: list[KerasTensor]
                 ) -> tuple[list[CallNode], dict[int, tuple[int, Layer]]]:
    """Calls from the inputs to `outputs` (depth-first, iterative so deep stacks do not recurse),
    and each layer's position in the traversal."""
    order: list[CallNode] = []
    first_seen: dict[int, tuple[int, Layer]] = {}
    visited: set[int] = set()
    for out in outputs:
        stack: list[tuple[KerasTensor, bool]] = [(out, False)]
        while stack:
            tensor, expanded = stack.pop()
            node = tensor.history
            if node is None:
                raise ValueError(f"Model '{model}': tensor {tensor!r} was not made by a layer call "
                                 f"or keras.Input(), so the model cannot find where it comes from")
            if expanded:
                order.append(node)
                continue
            if id(node) in visited:
                continue
            visited.add(id(node))
            first_seen.setdefault(id(node.layer), (len(first_seen), node.layer))
            stack.append((tensor, True))
            if id(tensor) not in input_ids:
                stack.extend((x, False) for x in reversed(node.inputs))
    return order, first_seen


def _depths(order: list[CallNode]) -> tuple[dict[int, tuple[int, CallNode]], dict[int, int]]:
    """Keras's depths: 0 at the outputs, one more than the deepest consumer; a shared layer
    takes the greatest depth of its calls."""
    node_depth: dict[int, tuple[int, CallNode]] = {}
    layer_depth: dict[int, int] = {}
    for node in reversed(order):
        depth = max(node_depth.get(id(node), (0, node))[0], layer_depth.get(id(node.layer), 0))
        layer_depth[id(node.layer)] = depth
        node_depth[id(node)] = (depth, node)
        for x in node.inputs:
            parent = x.history
            previous = node_depth.get(id(parent), (0, parent))[0]
            node_depth[id(parent)] = (max(depth + 1, previous), parent)
    return node_depth, layer_depth


def _check_unique_names(layers: list[Layer]) -> None:
    names = [layer.name for layer in layers]
    for name in names:
        if names.count(name) != 1:
            raise ValueError(f'The name "{name}" is used {names.count(name)} times in the model. '
                             f"All layer names should be unique.")


# --- configs ----------------------------------------------------------------------------------

def serialize_layer(layer: Layer) -> dict[str, Any]:
    """Keras 3's `serialize_keras_object` form of a layer (or a nested model)."""
    from nncompile.keras.saving.registry import get_registered_name

    module = {"Sequential": "keras", "Functional": "keras.src.models.functional"}
    # a class's own `config_class_name`: the name Keras exports it under, where that is not its
    # class's (GroupQueryAttention), while its weights sit under the class's name
    name = type(layer).__dict__.get("config_class_name", type(layer).__name__)
    if isinstance(layer, OpLayer):   # Keras 3 names its op classes as their registered names
        return {"module": layer.keras_module, "class_name": name, "config": layer.get_config(),
                "registered_name": name}
    registered = get_registered_name(type(layer))
    if not type(layer).__module__.startswith("nncompile."):   # a user's class: Keras 3's form
        return {"module": module_of(type(layer)), "class_name": name, "config": layer.get_config(),
                "registered_name": registered}
    return {"module": module.get(name, "keras.layers"), "class_name": name,
            "config": layer.get_config(),
            "registered_name": None if registered in (name, type(layer).__name__) else registered}


def serialize_model_layer(layer: Layer) -> dict[str, Any]:
    """A layer's entry in a model's config. The model's InputLayer holds the input shape: the
    layer's own `batch_input_shape` (from `input_shape=`) is left out, as Keras 3 writes it (with
    it, Keras 3 builds a second input and fails: "could not be deserialized properly")."""
    entry = serialize_layer(layer)
    entry["config"].pop("batch_input_shape", None)
    return entry


def layer_classes(custom_objects: Mapping[str, type] | None = None) -> dict[str, type]:
    """Every class a config may name: nncompile.keras.layers, the models, the registered
    classes (`register_keras_serializable`) and `custom_objects`."""
    from nncompile.keras import layers
    from nncompile.keras.saving.registry import registered_objects

    models = _models()
    found = {name: obj for name, obj in vars(layers).items()
             if isinstance(obj, type) and issubclass(obj, Layer)}
    found.update(InputLayer=models.InputLayer, Sequential=models.Sequential,
                 Functional=models.Functional, Model=models.Functional)
    found.update((name, cls) for name, cls in registered_objects().items()
                 if isinstance(cls, type) and issubclass(cls, Layer))
    found.update(custom_objects or {})
    return found


def layer_entry(config: Any) -> tuple[str, Any, str]:
    """(class name, inner config, layer name or '?') of a `{"class_name", "config"}` entry;
    ValueError when it does not have that form."""
    inner = config.get("config") if isinstance(config, Mapping) else None
    name = inner.get("name") if isinstance(inner, Mapping) else None
    name = name if isinstance(name, str) else "?"
    class_name = config.get("class_name") if isinstance(config, Mapping) else None
    keras1_sequential = isinstance(inner, list) and class_name == "Sequential"
    if not isinstance(class_name, str) or not (isinstance(inner, Mapping) or keras1_sequential):
        raise ValueError(f"Layer '{name}': a layer config must be a dict with a string "
                         f"'class_name' and a dict 'config'. Received: {_shown(config)}")
    return class_name, inner, name


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def deserialize_layer(config: Mapping[str, Any], custom_objects: Mapping[str, type] | None = None
                      ) -> Layer:
    """A new layer from `{"class_name": ..., "config": {...}}`; every error is a ValueError
    naming the layer."""
    name, inner, _ = layer_entry(config)
    if is_op_entry(config):
        cls = op_class(name)
        if cls is None:
            raise ValueError(f"Op '{inner.get('name', '?')}' of the config is Keras's {name}, "
                             f"which nncompile.keras.ops does not have")
        return cls.from_config(dict(inner))
    known = layer_classes(custom_objects)
    if name not in known:
        raise ValueError(f"Unknown layer class '{name}': it is neither a layer of "
                         f"nncompile.keras.layers nor in `custom_objects`. Known layer classes: "
                         f"{', '.join(sorted(known))}")
    cls = known[name]
    if issubclass(cls, _models().Model):   # its errors name the model and the layer in it
        return cls.from_config(inner if isinstance(inner, list) else dict(inner), custom_objects)
    return cls.from_config(dict(inner))


def is_op_entry(config: Mapping[str, Any]) -> bool:
    """Whether a config entry is a keras.op called on tensors (module `keras.src.ops.*`)."""
    return str(config.get("module") or "").startswith("keras.src.ops.")


def _models():
    # models imports this module; the reverse import waits until it is needed.
    from nncompile.keras import models

    return models


def functional_config(model) -> dict[str, Any]:
    """Keras 3's config of a functional model."""
    mine = {id(node) for nodes in model._nodes_by_depth.values() for node in nodes}

    def node_index(node: CallNode) -> int:
        # Indices count only the calls that belong to this model.
        own = [n for n in node.layer._inbound_nodes if id(n) in mine]
        return own.index(node)

    def tensor_config(t: KerasTensor) -> dict[str, Any]:
        history = [t.history.layer.name, node_index(t.history), t.index]
        return {"class_name": "__keras_tensor__",
                "config": {"shape": list(t.shape), "dtype": t.dtype, "keras_history": history}}

    def node_config(node: CallNode) -> dict[str, Any]:
        args, kwargs = node.layer.call_arguments([tensor_config(t) for t in node.inputs],
                                                 node.single_input)
        if node.training is not None:   # given at the call (or an augmentation layer's default)
            kwargs = {**kwargs, "training": node.training}
        return {"args": args, "kwargs": kwargs}

    def endpoint(t: KerasTensor) -> list:
        # Keras counts a nested functional model's own construction as its node 0 here.
        shift = 1 if isinstance(t.history.layer, _models().Functional) else 0
        return [t.history.layer.name, node_index(t.history) + shift, t.index]

    layers = []
    for layer in model.operations:
        nodes = [node_config(n) for n in layer._inbound_nodes if id(n) in mine and n.inputs]
        layers.append({**serialize_model_layer(layer), "name": layer.name, "inbound_nodes": nodes})
    return {"name": model.name, "trainable": model.trainable, "layers": layers,
            "input_layers": _map_struct(model._inputs_struct, endpoint),
            "output_layers": _map_struct(model._outputs_struct, endpoint)}


def _map_struct(struct, fn):
    if isinstance(struct, Mapping):
        return {k: _map_struct(v, fn) for k, v in struct.items()}
    if isinstance(struct, (list, tuple)):
        return [_map_struct(v, fn) for v in struct]
    return fn(struct)


class _NotYet(Exception):
    """A node's input is made by a call that has not been replayed yet."""


def functional_from_config(cls: type, config: Mapping[str, Any],
                           custom_objects: Mapping[str, type] | None = None):
    """Rebuild a functional model: create its layers, then replay their calls in an order that
    has every input ready."""
    name = config.get("name")
    created: dict[str, Layer] = {}
    pending: list[tuple[Layer, Any]] = []
    for layer_config in config_list(config, "layers", f"Model '{name}' (Functional)"):
        layer = deserialize_layer(layer_config, custom_objects)
        if layer.name in created:
            raise ValueError(f"Model '{name}': the config defines layer '{layer.name}' twice")
        created[layer.name] = layer
        owner = f"Model '{name}': layer '{layer.name}'"
        pending += [(layer, data) for data in config_list(layer_config, "inbound_nodes", owner, [])]
    while pending:
        waiting: list[tuple[Layer, Any]] = []
        blocked: set[int] = set()
        for layer, data in pending:
            # A layer's calls replay in order: once one waits, the later ones wait too.
            if id(layer) not in blocked:
                try:
                    args, kwargs = _call_args(data, created, name, layer)
                    layer(*args, **kwargs)
                    continue
                except _NotYet:
                    blocked.add(id(layer))
            waiting.append((layer, data))
        if len(waiting) == len(pending):
            raise ValueError(f"Cannot rebuild model '{name}' from its config: the inputs of layer "
                             f"'{waiting[0][0].name}' are never produced by the other layers")
        pending = waiting

    def endpoint(entry) -> KerasTensor:
        layer_name, index, tensor_index = _history(entry, name)
        layer = _created(created, layer_name, name)
        index -= 1 if isinstance(layer, _models().Functional) else 0
        return _output(layer, index, tensor_index, name)

    inputs = _endpoints(_required(config, "input_layers", name), endpoint)
    outputs = _endpoints(_required(config, "output_layers", name), endpoint)
    return cls(inputs, outputs, name=name, trainable=config.get("trainable", True))


def config_list(config: Mapping[str, Any], key: str, owner: str, default: list | None = None
                ) -> list:
    """`config[key]`, which must be a list (`default` when absent, if given)."""
    value = config.get(key, default)
    if not isinstance(value, list):
        raise ValueError(f"{owner}: the config's `{key}` must be a list. "
                         f"Received: {key}={_shown(value)}")
    return value


def _required(config: Mapping[str, Any], key: str, model: str | None) -> Any:
    if key not in config:
        raise ValueError(f"Model '{model}' (Functional): the config has no `{key}`")
    return config[key]


def _history(entry: Any, model: str | None) -> tuple[str, int, int]:
    """A `[layer name, node index, tensor index]` reference of a functional config."""
    if (not isinstance(entry, (list, tuple)) or len(entry) < 3 or not isinstance(entry[0], str)
            or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0
                       for i in entry[1:3])):
        raise ValueError(f"Model '{model}': a tensor reference in the config must be [layer name, "
                         f"node index, tensor index]. Received: {_shown(entry)}")
    return entry[0], entry[1], entry[2]


def _output(layer: Layer, index: int, tensor_index: int, model: str | None) -> KerasTensor:
    """Output `tensor_index` of call `index` of `layer`, which the config says exists."""
    nodes = layer._inbound_nodes
    if index >= len(nodes) or tensor_index >= len(nodes[index].outputs):
        raise ValueError(f"Model '{model}': the config refers to output {tensor_index} of call "
                         f"{index} of layer '{layer.name}', which the layer does not have")
    return nodes[index].outputs[tensor_index]


def _endpoints(struct, fn):
    """`[name, node, tensor]` leaves (Keras 3 writes a single one bare) inside lists or dicts."""
    if isinstance(struct, Mapping):
        return {k: _endpoints(v, fn) for k, v in struct.items()}
    if isinstance(struct, (list, tuple)) and len(struct) == 3 and isinstance(struct[0], str):
        return fn(struct)
    if not isinstance(struct, (list, tuple)):
        return fn(struct)   # not a reference: fn names it
    return [_endpoints(v, fn) for v in struct]


def _created(created: Mapping[str, Layer], layer_name: str, model: str | None) -> Layer:
    if layer_name not in created:
        raise ValueError(f"The config of model '{model}' refers to layer '{layer_name}', which it "
                         f"does not define. Defined layers: {', '.join(created)}")
    return created[layer_name]


def _call_args(data, created: Mapping[str, Layer], model: str | None,
               layer: Layer) -> tuple[list, dict]:
    """The positional and keyword arguments of one recorded call of `layer`."""
    owner = f"Model '{model}': a call of layer '{layer.name}'"

    def tensor(entry) -> KerasTensor:
        layer_name, index, tensor_index = _history(entry, model)
        source = _created(created, layer_name, model)
        if index >= len(source._inbound_nodes):
            raise _NotYet
        return _output(source, index, tensor_index, model)

    def revive(obj):
        if isinstance(obj, Mapping) and obj.get("class_name") == "__keras_tensor__":
            inner = obj.get("config")
            return tensor(inner.get("keras_history") if isinstance(inner, Mapping) else inner)
        if isinstance(obj, (list, tuple)):
            return [revive(v) for v in obj]
        return obj

    if isinstance(data, list):
        # Keras 2: a list of [layer name, node index, tensor index(, kwargs)].
        tensors = [tensor(entry) for entry in data]
        kwargs = data[0][3] if data and len(data[0]) > 3 else {}
        args = [tensors[0] if len(tensors) == 1 else tensors]
    elif isinstance(data, Mapping):
        kwargs = data.get("kwargs", {})
        args = revive(config_list(data, "args", owner, []))
        kwargs = {k: revive(v) for k, v in kwargs.items()} if isinstance(kwargs, Mapping) else kwargs
    else:
        raise ValueError(f"{owner} must be recorded as a dict with 'args' and 'kwargs' (or a "
                         f"Keras 2 list). Received: {_shown(data)}")
    if isinstance(layer, OpLayer) or layer.checks_call_arguments:   # its own arguments
        return args, dict(kwargs) if isinstance(kwargs, Mapping) else {}
    return args, _call_kwargs(args, kwargs, owner)


def _call_kwargs(args: list, kwargs: Any, owner: str) -> dict:
    """The keyword arguments of a recorded call: `training`, a bool (None ones are unset), and
    a recurrent layer's `initial_state`, a list of tensors."""
    if isinstance(kwargs, Mapping):
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
    states = kwargs.get("initial_state", []) if isinstance(kwargs, Mapping) else []
    if (len(args) != 1 or not isinstance(kwargs, Mapping)
            or set(kwargs) - {"training", "initial_state"}
            or not isinstance(kwargs.get("training", False), bool)
            or not (isinstance(states, list) and all(isinstance(t, KerasTensor) for t in states))):
        raise ValueError(f"{owner} must have one positional argument (its inputs) and at most "
                         f"`training` (True or False) and `initial_state` (a list of tensors) as "
                         f"keywords. Received: args={_shown(args)}, kwargs={_shown(kwargs)}")
    return dict(kwargs)

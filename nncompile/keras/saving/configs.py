"""Model configs as files carry them: real Keras 3 (and tf.keras 2) configs adapted to the layers
of nncompile, the safety checks on them, and the compile configuration.

Keras 3 configs hold keys nncompile's layers do not take (`quantization_config`, `synchronized`,
dtype policies as dicts, initializer `input_axes` ...). Each such key is dropped only when it holds
Keras's default, so a config that asks for something nncompile cannot do is refused by name.
"""
from __future__ import annotations

import json
from typing import Any, Mapping

from nncompile.ir.dtypes import DType
from nncompile.keras.functional import deserialize_layer, is_op_entry, layer_classes, layer_entry
from nncompile.keras.layers.base import _BASE_ARGS

# Keys Keras 3 / tf.keras write that nncompile's layers and objects lack, with the values that
# mean "off": dropping them changes nothing.
_KERAS_ONLY_DEFAULTS: dict[str, tuple] = {
    "quantization_config": (None,), "synchronized": (False,), "renorm": (False,),
    "renorm_clipping": (None,), "renorm_momentum": (0.99,), "input_axes": (None,),
    "output_axes": (None,), "lora_rank": (None,), "lora_alpha": (None,), "sparse": (False, None),
    "ragged": (False, None), "optional": (False, None), "fused": (None, False, True),
    "virtual_batch_size": (None,), "adjustment": (None,), "noise_shape": (None,),
    "rms_scaling": (False,), "time_major": (False,),
}
# Keras names that are one class here (or a Keras class under another name).
KERAS_CLASS_NAMES = {"Convolution1D": "Conv1D", "Convolution2D": "Conv2D", "Model": "Functional"}
# Only randomness of initialization or dropout: the weights come from the file anyway.
_IGNORED = {"seed"}
# Config keys that hold layers (RNN's `cell`, StackedRNNCells' `cells`, the wrappers' `layer`).
_LAYER_KEYS = ("cell", "cells", "layer", "backward_layer")
_CODE_CLASSES = ("Lambda", "__lambda__", "TFOpLambda", "SlicingOpLambda")
# Keras's own configs nest about 10 levels per model (a model in a model adds as many); the bound
# keeps the walks over a config far from Python's recursion limit.
MAX_DEPTH = 200


def keras_class_name(obj) -> str:
    """The class name Keras gives `obj` (nncompile's Keras 1 classes map to Keras 3 ones)."""
    name = type(obj).__name__
    return KERAS_CLASS_NAMES.get(name, name)


def parse_json(text: str | bytes, what: str) -> Any:
    """The JSON `text` (`what` names it in errors), nested at most MAX_DEPTH levels."""
    too_deep = ValueError(f"{what} nests lists and dicts deeper than {MAX_DEPTH} levels; a model "
                          f"config is much flatter")
    try:
        config = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{what} is not valid JSON ({e})") from None
    except RecursionError:   # the decoder recurses once per level
        raise too_deep from None
    if _depth(config) > MAX_DEPTH:
        raise too_deep
    return config


def _depth(node: Any) -> int:
    """How deeply lists and dicts nest in `node` (iteratively: the point is to bound recursion)."""
    deepest, stack = 0, [(node, 1)]
    while stack:
        value, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(value, (Mapping, list)):
            children = value.values() if isinstance(value, Mapping) else value
            stack.extend((child, depth + 1) for child in children)
    return deepest


def model_from_config(config: Any, custom_objects: Mapping[str, Any] | None, safe_mode: bool):
    """The (untrained) model of a Keras model config as files and `to_json` hold it."""
    return deserialize_layer(adapt_model_config(config, custom_objects, safe_mode), custom_objects)


def adapt_model_config(config: Any, custom_objects: Mapping[str, Any] | None, safe_mode: bool) -> Any:
    """A copy of a model config that nncompile's `deserialize_layer` takes; raises ValueError
    naming the layer for code in the file (under `safe_mode`) and for unknown classes."""
    custom = dict(custom_objects or {})
    _refuse_code(config, safe_mode, custom)
    return _adapt_layer(config, layer_classes(custom))


def _refuse_code(node: Any, safe_mode: bool, custom: Mapping[str, Any]) -> None:
    """Lambda layers and `__lambda__` objects carry Python code: never run, named when met."""
    if isinstance(node, Mapping):
        name = node.get("class_name")
        if isinstance(name, str) and name in _CODE_CLASSES and name not in custom:
            inner = node.get("config")
            layer = inner.get("name", "?") if isinstance(inner, Mapping) else "?"
            if safe_mode:
                raise ValueError(f"Layer '{layer}' is a {name} layer: its Python code is stored in "
                                 f"the file and is not executed with safe_mode=True. Pass the layer "
                                 f"class in `custom_objects` (e.g. custom_objects={{'{name}': ...}}) "
                                 f"or rebuild the model in code.")
            raise ValueError(f"Layer '{layer}' is a {name} layer, which nncompile cannot run "
                             f"(it never executes code from a file); pass a replacement class in "
                             f"`custom_objects={{'{name}': ...}}`.")
        for value in node.values():
            _refuse_code(value, safe_mode, custom)
    elif isinstance(node, list):
        for value in node:
            _refuse_code(value, safe_mode, custom)


def _adapt_layer(config: Any, classes: Mapping[str, type]) -> Any:
    class_name, inner, layer = layer_entry(config)
    if is_op_entry(config):   # an op called on tensors: no layer class, its attributes as written
        return dict(config)
    name = KERAS_CLASS_NAMES.get(class_name, class_name)
    registered = config.get("registered_name")
    if name not in classes and isinstance(registered, str) and registered in classes:
        name = registered
    if name not in classes:
        raise ValueError(f"Unknown layer class '{class_name}' (layer '{layer}'): it is "
                         f"not a layer of nncompile.keras.layers; pass it in `custom_objects`, "
                         f"e.g. custom_objects={{'{class_name}': MyLayer}}")
    out = {k: v for k, v in config.items() if k != "class_name"}
    out["class_name"] = name
    if isinstance(inner, list):   # Keras 1 Sequential: the bare list of layers
        out["config"] = [_adapt_layer(c, classes) for c in inner]
    else:
        out["config"] = _adapt_layer_args(classes[name], dict(inner), classes)
    return out


def _adapt_layer_args(cls: type, config: dict, classes: Mapping[str, type]) -> dict:
    from nncompile.keras.input_layer import InputLayer
    from nncompile.keras.models import Model

    if isinstance(config.get("dtype"), Mapping):   # a Keras 3 DTypePolicy
        policy = config["dtype"].get("config")
        config["dtype"] = policy.get("name", "float32") if isinstance(policy, Mapping) else policy
    _check_dtype(cls, config)
    if issubclass(cls, Model):
        if isinstance(config.get("layers"), list):
            config["layers"] = [_adapt_layer(c, classes) for c in _without_mask_ops(config["layers"])]
        return config
    accepted = set(cls._accepted_args()) | set(_BASE_ARGS)
    for key in [k for k in config if k not in accepted]:
        if key in _IGNORED or (key in _KERAS_ONLY_DEFAULTS and config[key] in _KERAS_ONLY_DEFAULTS[key]):
            del config[key]
        elif not issubclass(cls, InputLayer):   # InputLayer reads Keras 2 and 3 spellings itself
            raise ValueError(f"layer '{config.get('name', '?')}' ({cls.__name__}): the config sets "
                             f"`{key}`={config[key]!r}, which nncompile's {cls.__name__} does not "
                             f"support")
    axis = config.get("axis")
    if cls.__name__ == "BatchNormalization" and isinstance(axis, list) and len(axis) == 1:
        config["axis"] = axis[0]   # tf.keras 2 writes BatchNormalization's axis as [3]
    for key, value in config.items():
        if key in _LAYER_KEYS and isinstance(value, (Mapping, list)):   # cells, wrapped layers
            config[key] = ([_adapt_layer(c, classes) for c in value] if isinstance(value, list)
                           else _adapt_layer(value, classes))
        elif isinstance(value, Mapping) and "class_name" in value:
            config[key] = _adapt_object(value)
    return config


def _without_mask_ops(layers: list) -> list:
    """A functional model's layers without those that only compute masks for `mask=` call
    arguments (the `NotEqual` op of an Embedding's mask), and without those arguments: Keras 3
    writes the masks it propagates that way, and nncompile propagates the same masks itself."""
    refs: dict[str, list[bool]] = {}
    for entry in layers:
        for name, is_mask in _tensor_refs(entry):
            refs.setdefault(name, []).append(is_mask)
    masks_only = {name for name, kinds in refs.items() if all(kinds)}
    if not masks_only:
        return layers
    kept = []
    for entry in layers:
        inner = entry.get("config") if isinstance(entry, Mapping) else None
        if isinstance(inner, Mapping) and inner.get("name") in masks_only:
            continue
        nodes = [{**node, "kwargs": {k: v for k, v in node["kwargs"].items() if k != "mask"}}
                 if isinstance(node, Mapping) and isinstance(node.get("kwargs"), Mapping) else node
                 for node in entry.get("inbound_nodes", [])] if isinstance(entry, Mapping) else None
        kept.append(entry if nodes is None else {**entry, "inbound_nodes": nodes})
    return kept


def _tensor_refs(entry: Any) -> list[tuple[str, bool]]:
    """(source layer, whether it is a `mask=` argument) of each tensor a layer's calls read."""
    found: list[tuple[str, bool]] = []

    def walk(node: Any, is_mask: bool) -> None:
        if isinstance(node, Mapping):
            if node.get("class_name") == "__keras_tensor__":
                history = (node.get("config") or {}).get("keras_history") or [None]
                found.append((history[0], is_mask))
                return
            for key, value in node.items():
                walk(value, is_mask or key == "mask")
        elif isinstance(node, list):
            for value in node:
                walk(value, is_mask)

    walk(entry.get("inbound_nodes", []) if isinstance(entry, Mapping) else [], False)
    return found


def _check_dtype(cls: type, config: dict) -> None:
    """Mixed-precision policies ('mixed_float16') and bfloat16 have no IR dtype. (numpy itself
    knows bfloat16 once ml_dtypes is imported, as the onnx package does.)"""
    dtype = config.get("dtype")
    try:
        DType.from_numpy(dtype)
    except (TypeError, ValueError):
        raise ValueError(f"layer '{config.get('name', '?')}' ({cls.__name__}): dtype policy "
                         f"{dtype!r} is not supported; nncompile layers compute in one numpy dtype "
                         f"such as 'float32'") from None


def _adapt_object(config: Mapping) -> dict:
    """An initializer / regularizer / constraint config without Keras-only keys at their defaults."""
    inner = config.get("config")
    if not isinstance(inner, Mapping):
        return dict(config)
    kept = {k: v for k, v in inner.items()
            if not (k in ("input_axes", "output_axes") and v is None)}
    return {**config, "config": kept}


# --- compile configuration ------------------------------------------------------------------------

def compile_config(model) -> dict[str, Any] | None:
    """Keras 3's `compile_config` of a compiled model (None when it was not compiled); a model
    compiled before it was built keeps the compile that waits for its build."""
    from nncompile.keras import optimizers

    args = getattr(model, "_compile_args", None)
    compiled = getattr(model, "_compiled", None) or getattr(model, "_pending_compile", None)
    if compiled is None or args is None:
        return None
    return {"optimizer": optimizers.serialize(model.optimizer),
            "loss": _plain(args["loss"], "loss"), "loss_weights": _plain(args["loss_weights"], "loss"),
            "metrics": _plain(args["metrics"], "metric"),
            "weighted_metrics": _plain(args["weighted_metrics"], "metric"),
            "run_eagerly": False, "steps_per_execution": 1, "jit_compile": True}


def _plain(value: Any, kind: str) -> Any:
    """Compile arguments as JSON: names stay names, objects become their config dicts."""
    from nncompile.keras import losses, metrics

    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, Mapping):
        return {k: _plain(v, kind) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, kind) for v in value]
    if isinstance(value, losses.Loss):
        return losses.serialize(value)
    if isinstance(value, metrics.Metric):
        return metrics.serialize(value)
    name = getattr(value, "__name__", None)
    if callable(value) and isinstance(name, str):
        if getattr(value, "__module__", "").startswith("nncompile.keras."):   # one of Keras's, by name
            return name
        from nncompile.keras.saving.objects import serialize_keras_object
        return serialize_keras_object(value)    # a user's function, as Keras writes it
    raise ValueError(f"Cannot save the {kind} {value!r} in the compile config: expected a name, a "
                     f"Loss/Metric object or a function of nncompile.keras.{kind}es")


def compile_from_config(model, config: Mapping[str, Any]) -> None:
    """`model.compile(...)` with the arguments of a Keras 3 `compile_config` or a legacy
    `training_config` (whose optimizer is under 'optimizer_config')."""
    from nncompile.keras import losses as losses_module
    from nncompile.keras import metrics as metrics_module
    from nncompile.keras import optimizers

    optimizer = config.get("optimizer", config.get("optimizer_config"))
    if isinstance(optimizer, Mapping):
        # tf.keras 2 registers its optimizers as "Custom>Adam".
        name = str(optimizer.get("class_name", "")).rsplit(">", 1)[-1]
        optimizer = optimizers.deserialize({**optimizer, "class_name": name})
    metrics, weighted = (_objects(_one_output(model, _tf_keras_metrics(config.get(key))),
                                  metrics_module.deserialize)
                         for key in ("metrics", "weighted_metrics"))
    model.compile(optimizer=optimizer or "rmsprop",
                  loss=_objects(config.get("loss"), losses_module.deserialize),
                  loss_weights=config.get("loss_weights"), metrics=metrics, weighted_metrics=weighted)


def _objects(value: Any, deserialize) -> Any:
    """Compile arguments with every serialized Loss or Metric (a dict naming its `class_name`)
    made an object, so that such a dict is not taken for one keyed by output name."""
    if isinstance(value, Mapping):
        if "class_name" in value:
            return deserialize(value)
        return {k: _objects(v, deserialize) for k, v in value.items()}
    if isinstance(value, list):
        return [_objects(v, deserialize) for v in value]
    return value


def _one_output(model, metrics: Any) -> Any:
    """tf.keras 2 nests the metrics of a single-output model in a list per output."""
    if (model.built and len(model.outputs) == 1 and isinstance(metrics, list) and len(metrics) == 1
            and isinstance(metrics[0], list)):
        return metrics[0]
    return metrics


def _tf_keras_metrics(value: Any) -> Any:
    """tf.keras 2 writes compiled metrics as MeanMetricWrapper dicts around a function name;
    the metric's own name ('accuracy') resolves as Keras would resolve it."""
    from nncompile.keras import metrics

    if isinstance(value, Mapping) and value.get("class_name") == "MeanMetricWrapper":
        inner = value.get("config") or {}
        name = inner.get("name")
        try:
            metrics.get(name)
            return name
        except (ValueError, TypeError):
            return inner.get("fn")
    if isinstance(value, Mapping) and "class_name" not in value:
        return {k: _tf_keras_metrics(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_tf_keras_metrics(v) for v in value]
    return value

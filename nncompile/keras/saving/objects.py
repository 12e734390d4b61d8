"""`keras.saving.serialize_keras_object` / `deserialize_keras_object`: any object of the Keras
API as Keras 3's config (`{"module", "class_name", "config", "registered_name"}`) and back. Each
kind (layers and models, losses, metrics, optimizers, learning rate schedules, initializers,
regularizers, constraints) keeps its own serializer; this module dispatches to them, and writes
plain values, lists, dicts, numpy arrays and functions as Keras does.

>>> from nncompile import keras
>>> config = serialize_keras_object(keras.losses.MeanSquaredError())
>>> config["module"], config["class_name"]
('keras.losses', 'MeanSquaredError')
>>> type(deserialize_keras_object(config)).__name__
'MeanSquaredError'
>>> serialize_keras_object(keras.activations.relu)["config"]
'relu'
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping, NamedTuple

import numpy as np

from nncompile.keras.saving.registry import get_registered_name, get_registered_object, scope_adding


class _Kind(NamedTuple):
    base: type
    serialize: Callable[[Any], Any]
    deserialize: Callable[[Mapping[str, Any]], Any]


def _kinds() -> dict[str, _Kind]:
    """Keras's module name of each kind -> its base class and its own (de)serializers."""
    from nncompile.keras import constraints, initializers, losses, metrics, optimizers, regularizers
    from nncompile.keras.functional import serialize_layer
    from nncompile.keras.layers.base import Layer
    from nncompile.keras.optimizers import schedules
    from nncompile.keras.saving.configs import model_from_config
    return {
        "keras.layers": _Kind(Layer, serialize_layer, lambda config: model_from_config(config, None, True)),
        "keras.losses": _Kind(losses.Loss, losses.serialize, losses.deserialize),
        "keras.metrics": _Kind(metrics.Metric, metrics.serialize, metrics.deserialize),
        "keras.optimizers": _Kind(optimizers.Optimizer, optimizers.serialize, optimizers.deserialize),
        "keras.optimizers.schedules": _Kind(schedules.LearningRateSchedule, schedules.serialize,
                                            schedules.deserialize),
        "keras.initializers": _Kind(initializers.Initializer, initializers.serialize, initializers.deserialize),
        "keras.regularizers": _Kind(regularizers.Regularizer, regularizers.serialize, regularizers.deserialize),
        "keras.constraints": _Kind(constraints.Constraint, constraints.serialize, constraints.deserialize),
    }


def serialize_keras_object(obj: Any) -> Any:
    """Keras 3's config of `obj`: plain values as they are, lists and tuples as lists, dicts
    entry by entry, numpy arrays as `__numpy__` entries, functions by their registered name, and
    objects of the Keras API as `{"module", "class_name", "config", "registered_name"}`."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, np.ndarray):
        return {"class_name": "__numpy__", "config": {"value": obj.tolist(), "dtype": str(obj.dtype)}}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (list, tuple)):
        return [serialize_keras_object(value) for value in obj]
    if isinstance(obj, Mapping):
        return {key: serialize_keras_object(value) for key, value in obj.items()}
    for kind in _kinds().values():
        if isinstance(obj, kind.base):
            return kind.serialize(obj)
    if inspect.isfunction(obj) or inspect.isbuiltin(obj):
        return {"module": "builtins", "class_name": "function", "config": get_registered_name(obj),
                "registered_name": "function"}
    if hasattr(obj, "get_config"):
        return {"module": type(obj).__module__, "class_name": type(obj).__name__, "config": obj.get_config(),
                "registered_name": get_registered_name(type(obj))}
    raise TypeError(f"Cannot serialize object {obj!r} of type {type(obj)}. To be serializable, a class "
                    f"must implement the `get_config()` method.")


def deserialize_keras_object(config: Any, custom_objects: Mapping[str, Any] | None = None,
                             safe_mode: bool = True, **kwargs) -> Any:
    """The object a config of `serialize_keras_object` (or of Keras) describes. Names resolve
    through `custom_objects`, the current `custom_object_scope` and the registered objects; a
    string that names none of them comes back as it is, as in Keras. `safe_mode` is accepted for
    Keras's signature: nncompile never runs code from a config."""
    if kwargs:
        raise TypeError(f"deserialize_keras_object() got unexpected keyword arguments: {sorted(kwargs)}")
    with scope_adding(custom_objects):
        return _deserialize(config, custom_objects)


def _deserialize(config: Any, custom_objects: Mapping[str, Any] | None) -> Any:
    if isinstance(config, str):
        found = get_registered_object(config)
        return config if found is None else found
    if isinstance(config, list):
        return [_deserialize(value, custom_objects) for value in config]
    if not isinstance(config, Mapping):
        return config
    if "class_name" not in config or "config" not in config:   # a plain dict of values
        return {key: _deserialize(value, custom_objects) for key, value in config.items()}
    class_name, inner = config["class_name"], config["config"]
    if class_name == "__numpy__":
        return np.array(inner["value"], dtype=inner["dtype"])
    if class_name == "__tuple__":
        return tuple(_deserialize(value, custom_objects) for value in inner["value"])
    if class_name == "function":
        return _function(inner, config)
    return _object(config, custom_objects)


def _function(name: Any, config: Mapping[str, Any]) -> Callable:
    """A function by its registered name, or one of Keras's activations, losses or metrics."""
    from nncompile.keras import activations, losses, metrics
    found = get_registered_object(name) if isinstance(name, str) else None
    if found is None and isinstance(name, str):
        found = losses.FUNCTIONS.get(name)
        if found is None and name in metrics.__all__ and inspect.isfunction(getattr(metrics, name)):
            found = getattr(metrics, name)
        if found is None and name in activations.names():
            found = activations.get(name)
    if found is None:
        raise TypeError(f"Could not locate function '{name}'. Make sure custom classes and functions are "
                        f"decorated with `@keras.saving.register_keras_serializable()`. If they are already "
                        f"decorated, make sure they are all imported so that the decorator is run before "
                        f"trying to load them. Full object config: {dict(config)}")
    return found


def _object(config: Mapping[str, Any], custom_objects: Mapping[str, Any] | None) -> Any:
    """An object of one of the Keras API's kinds, or a custom class's `from_config`."""
    module, class_name = config.get("module"), config["class_name"]
    kinds = _kinds()
    custom = get_registered_object(config.get("registered_name") or class_name)
    if module in ("keras", "keras.src.models.functional") or \
            (isinstance(custom, type) and issubclass(custom, kinds["keras.layers"].base)):
        module = "keras.layers"    # models and custom layers go the way of layers
    if module in kinds:
        return kinds[module].deserialize(dict(config))
    if isinstance(custom, type) and hasattr(custom, "from_config"):
        return custom.from_config(dict(config["config"]))
    raise ValueError(f"Could not deserialize '{module}.{class_name}': it is neither an object of the Keras "
                     f"API nor a registered class or one in `custom_objects` "
                     f"(`@keras.saving.register_keras_serializable()`).")

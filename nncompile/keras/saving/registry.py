"""Keras 3's registry of custom classes: `@keras.saving.register_keras_serializable()` lets a
config name a class users wrote ("Custom>Linear") without `custom_objects` when it is loaded.

>>> from nncompile.keras import layers
>>> @register_keras_serializable(package="Docs")
... class Scale(layers.Layer):
...     def call(self, x):
...         return x * 2.0
>>> get_registered_name(Scale), get_registered_object("Docs>Scale") is Scale
('Docs>Scale', True)
"""
from __future__ import annotations

from typing import Any, Mapping

_REGISTERED: dict[str, Any] = {}
_NAMES: dict[int, str] = {}   # id(class) -> its registered name


def register_keras_serializable(package: str = "Custom", name: str | None = None):
    """A decorator registering a class (or function) as `"<package>><name>"`."""
    if not isinstance(package, str) or ">" in package:
        raise ValueError(f"register_keras_serializable: `package` must be a string without '>'. "
                         f"Received: package={package!r}")

    def decorator(obj):
        registered = f"{package}>{name or obj.__name__}"
        if registered in _REGISTERED and _REGISTERED[registered] is not obj:
            raise ValueError(f"{registered} has already been registered to "
                             f"{_REGISTERED[registered]!r}")
        _REGISTERED[registered] = obj
        _NAMES[id(obj)] = registered
        return obj
    return decorator


def get_registered_name(obj) -> str:
    """The name `obj` is registered under, else its own name (as Keras)."""
    return _NAMES.get(id(obj), getattr(obj, "__name__", type(obj).__name__))


def get_registered_object(name: str, custom_objects: Mapping[str, Any] | None = None):
    """The object registered (or given in `custom_objects`) as `name`, or None."""
    if custom_objects and name in custom_objects:
        return custom_objects[name]
    return _REGISTERED.get(name)


def registered_objects() -> dict[str, Any]:
    """Every registered object under its registered name and its plain name."""
    plain = {obj.__name__: obj for obj in _REGISTERED.values() if hasattr(obj, "__name__")}
    return {**plain, **_REGISTERED}

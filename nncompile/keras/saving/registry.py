"""Keras 3's custom objects: what a config may name besides Keras's own classes and functions.

`@keras.saving.register_keras_serializable()` lets a config name a class users wrote
("Custom>Linear") without `custom_objects` when it is loaded; `get_custom_objects()` is the
live dictionary of those (users also add to it by hand); `custom_object_scope({...})` makes
more names known for the length of a `with` block, in this thread.

>>> from nncompile.keras import layers
>>> @register_keras_serializable(package="Docs")
... class Scale(layers.Layer):
...     def call(self, x):
...         return x * 2.0
>>> get_registered_name(Scale), get_registered_object("Docs>Scale") is Scale
('Docs>Scale', True)
>>> with custom_object_scope({"Doubling": Scale}):
...     get_registered_object("Doubling") is Scale
True
>>> get_registered_object("Doubling") is None
True
"""
from __future__ import annotations

import inspect
import threading
from typing import Any, Mapping

_CUSTOM: dict[str, Any] = {}   # `get_custom_objects()`: registered names and what users put there
_NAMES: dict[Any, str] = {}    # a registered object -> its registered name
_SCOPE = threading.local()     # .objects: the innermost `custom_object_scope`'s, in this thread


def get_custom_objects() -> dict[str, Any]:
    """The live global dictionary of custom objects: registered ones under their registered names,
    and whatever users add (`get_custom_objects()["MyLayer"] = MyLayer`). A `custom_object_scope`'s
    objects are not in it."""
    return _CUSTOM


def _scope_objects() -> dict[str, Any]:
    return getattr(_SCOPE, "objects", {})


class CustomObjectScope:
    """`with custom_object_scope({"MyLayer": MyLayer}):` makes the names known to loading and
    deserialization inside the block (in this thread). As in Keras, an inner scope replaces the
    outer one's objects until it ends; the global `get_custom_objects()` stay known throughout.

    >>> with CustomObjectScope({"twice": abs}) as scope:
    ...     get_registered_object("twice") is abs
    True
    """

    def __init__(self, custom_objects: Mapping[str, Any] | None):
        self.custom_objects = dict(custom_objects or {})
        self.backup: dict[str, Any] | None = None

    def __enter__(self) -> "CustomObjectScope":
        self.backup = dict(_scope_objects())
        _SCOPE.objects = dict(self.custom_objects)
        return self

    def __exit__(self, *exc_info) -> None:
        _SCOPE.objects = dict(self.backup or {})


custom_object_scope = CustomObjectScope


def scope_adding(custom_objects: Mapping[str, Any] | None) -> CustomObjectScope:
    """A scope with `custom_objects` added to the current scope's: what loading and
    deserialization run in, so that the objects a caller passes reach every lookup inside."""
    return CustomObjectScope({**_scope_objects(), **dict(custom_objects or {})})


def register_keras_serializable(package: str = "Custom", name: str | None = None):
    """A decorator registering a class (which needs `get_config`) or a function as
    `"<package>><name>"` (name: the object's own by default). Registering the name again, as a
    re-run notebook cell does, replaces the earlier object, as in Keras."""
    if not isinstance(package, str) or ">" in package:
        raise ValueError(f"register_keras_serializable: `package` must be a string without '>'. "
                         f"Received: package={package!r}")

    def decorator(obj):
        if inspect.isclass(obj) and not hasattr(obj, "get_config"):
            raise ValueError("Cannot register a class that does not have a get_config() method.")
        registered = f"{package}>{name if name is not None else obj.__name__}"
        _CUSTOM[registered] = obj
        _NAMES[obj] = registered
        return obj
    return decorator


def get_registered_name(obj) -> str:
    """The name `obj` is registered under, else its own name (as Keras)."""
    try:
        return _NAMES[obj]
    except (KeyError, TypeError):    # TypeError: an unhashable object is never registered
        return getattr(obj, "__name__", type(obj).__name__)


def get_registered_object(name: str, custom_objects: Mapping[str, Any] | None = None,
                          module_objects: Mapping[str, Any] | None = None):
    """The object known as `name`, or None; looked up as Keras does: the current
    `custom_object_scope`, the global custom objects, then `custom_objects`, then
    `module_objects`."""
    for found in (_scope_objects(), _CUSTOM, custom_objects or {}, module_objects or {}):
        if name in found:
            return found[name]
    return None


def registered_objects() -> dict[str, Any]:
    """Every custom object a config may name: registered objects also under their plain names,
    then the global custom objects, then the current scope's (the later wins)."""
    plain = {obj.__name__: obj for obj in _NAMES if hasattr(obj, "__name__")}
    return {**plain, **_CUSTOM, **_scope_objects()}

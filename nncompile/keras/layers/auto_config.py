"""Keras 3's automatic config: a layer or model whose class does not define `get_config` is
described by the arguments its constructor was called with, defaults filled in, when they are
plain values (str, int, float, bool, None, and lists, tuples and dicts of them). Keras records
them in `Operation.__new__`; `Layer.__new__` does here. Without them, saving, `clone_model` and
`from_config` would make the layer again from its defaults: a different layer, silently.

Example:

>>> from nncompile import keras
>>> class Scale(keras.layers.Layer):
...     def __init__(self, factor=2.0, **kwargs):
...         super().__init__(**kwargs)
...         self.factor = factor
>>> Scale(3.0, name="s").get_config()["factor"]
3.0
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

PLAIN = (str, int, float, bool, type(None))
_POSITIONAL, _VALUES = "positional", "values"

_EXAMPLE = """
    class CustomLayer(keras.layers.Layer):
        def __init__(self, arg1, arg2, **kwargs):
            super().__init__(**kwargs)
            self.arg1 = arg1
            self.arg2 = arg2

        def get_config(self):
            config = super().get_config()
            config.update({"arg1": self.arg1, "arg2": self.arg2})
            return config"""


def default(method: Callable) -> Callable:
    """Mark a framework class's `get_config` as the default one: an instance whose class keeps
    it is described by its recorded constructor arguments."""
    method.is_default = True
    return method


def record(cls: type, args: tuple, kwargs: dict, framework: tuple[str, ...]) -> tuple[dict | None, str]:
    """(the plain constructor arguments of `cls(*args, **kwargs)`, '') or (None, why not:
    'positional' for positional-only or variadic arguments, 'values' for others). The
    `framework` arguments (name, trainable, dtype, input_shape, ...) are left out, the base
    config holding them as the layer has them now, unless the class's own `__init__` names
    them (a `Linear(units, input_dim)` of keras.io's guide: its input_dim is its own).
    Raises nothing: every layer's construction passes here."""
    try:
        signature = _signature(cls)
        bound = signature.bind(None, *args, **kwargs)
    except (TypeError, ValueError):   # __init__ itself says what is wrong
        return None, _VALUES
    params = list(signature.parameters.values())
    if any(p.kind is p.POSITIONAL_ONLY for p in params[1:]):
        return None, _POSITIONAL
    bound.apply_defaults()
    arguments = dict(bound.arguments)
    arguments.pop(params[0].name)
    for p in params[1:]:
        if p.kind is p.VAR_KEYWORD:
            arguments.update(arguments.pop(p.name))
        elif p.kind is p.VAR_POSITIONAL and arguments.pop(p.name):
            return None, _POSITIONAL
    own = not (getattr(cls.__init__, "__module__", None) or "").startswith("nncompile.")
    named = {p.name for p in params} if own else set()
    for key in framework:
        if key == "name" or key not in named:   # not an argument the class's own __init__ takes
            arguments.pop(key, None)
    try:
        if not all(_is_plain(value) for value in arguments.values()):
            return None, _VALUES
    except RecursionError:   # a list that holds itself
        return None, _VALUES
    return {key: _copy(value) for key, value in arguments.items()}, ""


@functools.lru_cache(maxsize=None)
def _signature(cls: type) -> inspect.Signature:
    """The signature of `cls.__init__`, once per class (reading it costs ~40 us a layer)."""
    return inspect.signature(cls.__init__)


def _is_plain(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, PLAIN) and _is_plain(v) for k, v in value.items())
    return isinstance(value, PLAIN)


def _copy(value: Any) -> Any:
    """A copy of the recorded value: a list the caller changes later does not change it."""
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, tuple):   # a namedtuple too (its class takes its fields one by one)
        return tuple(_copy(v) for v in value)
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    return value


def complete(obj, base: dict[str, Any]) -> dict[str, Any]:
    """`base` (the framework's keys: name, trainable, dtype, ...) with the recorded constructor
    arguments of `obj`, whose class keeps the default `get_config`; the framework's keys that
    its `__init__` cannot take (no such argument, no **kwargs) are left out."""
    recorded, why = obj.__dict__.get("_auto_config", (None, _VALUES))
    if recorded is None:
        raise NotImplementedError(_refusal(type(obj).__name__, why))
    params = _signature(type(obj)).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    config = {key: value for key, value in base.items() if takes_any or key in params}
    rest = {key: value for key, value in config.items() if key != "name"}   # the layer's state now
    return {**{key: config[key] for key in ("name",) if key in config}, **_copy(recorded), **rest}


def _refusal(name: str, why: str) -> str:
    if why == _POSITIONAL:
        return (f"Object {name} was created by passing positional only or variadic positional "
                f"arguments (e.g., `*args`) to `__init__()`, which is not supported by the "
                f"automatic config generation. Please remove all positional only and variadic "
                f"arguments from `__init__()` or override `get_config()` and `from_config()` to "
                f"make the object serializable.\n\nExample:\n{_EXAMPLE}")
    return (f"Object {name} was created by passing non-serializable argument values in "
            f"`__init__()`, and therefore the object must override `get_config()` in order to be "
            f"serializable. Please implement `get_config()`.\n\nExample:\n{_EXAMPLE}")

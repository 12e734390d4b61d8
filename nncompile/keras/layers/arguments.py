"""Argument checks shared by the layer families, and Keras 1/2 argument names.

Old tutorials pass `init=`, `nb_filter=`, `border_mode=`, `subsample=`, `dim_ordering=`...; the
`legacy_args` decorator renames them to the Keras 3 arguments with a DeprecationWarning that names
the new argument, so those programs run unchanged.
"""
from __future__ import annotations

import functools
import math
import sys
import warnings
from typing import Callable, Mapping, Sequence

import numpy as np

from nncompile.keras import backend, constraints, initializers, regularizers

_DIM_ORDERING = {"tf": "channels_last", "th": "channels_first", "default": None}


class ArgumentError(ValueError):
    """A layer argument of the wrong kind or out of range. The message names the layer (its
    `owner`), the argument, what was received and what was expected, so a config loader passes it
    on as it is."""


class ArgumentTypeError(ArgumentError, TypeError):
    """An ArgumentError where Keras raises a TypeError (a normalization layer's `axis`)."""


def owner_of(layer) -> str:
    """How argument errors name a layer: "Layer 'dense' (Dense)"."""
    return f"Layer '{layer.name}' ({type(layer).__name__})"


def _received(arg: str, value) -> str:
    return f"Received: {arg}={value!r} (of type {type(value).__name__})"


def boolean(value, arg: str, owner: str) -> bool:
    """`value` if it is True or False: a string such as "no" is refused, not taken as true."""
    if not isinstance(value, (bool, np.bool_)):
        raise ArgumentError(f"{owner}: the `{arg}` argument must be True or False. "
                            f"{_received(arg, value)}")
    return bool(value)


def number(value, arg: str, owner: str, expected: str = "a finite float",
           valid: Callable[[float], bool] = lambda v: True) -> float:
    """`value` as a float: a finite real number (not a bool) for which `valid` holds."""
    real = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    as_float = _as_float(value) if real else math.nan
    if not (math.isfinite(as_float) and valid(as_float)):
        raise ArgumentError(f"{owner}: the `{arg}` argument must be {expected}. "
                            f"{_received(arg, value)}")
    return as_float


def _as_float(value) -> float:
    try:
        return float(value)
    except OverflowError:   # an int beyond the float range
        return math.inf


def integer(value, arg: str, owner: str) -> int:
    """`value` as an int: an integer (not a bool, not a float)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ArgumentError(f"{owner}: the `{arg}` argument must be an integer. "
                            f"{_received(arg, value)}")
    return int(value)


def shape_tuple(value, arg: str, owner: str) -> tuple:
    """A shape given as a list or tuple, as a tuple (its entries are checked where it is used)."""
    if not isinstance(value, (list, tuple)):
        raise ArgumentError(f"{owner}: the `{arg}` argument must be a tuple of dimensions. "
                            f"{_received(arg, value)}")
    return tuple(value)


def normalize_tuple(value, n: int, arg: str, owner: str, minimum: int = 1) -> tuple[int, ...]:
    """An int, or `n` ints, as a tuple of `n` ints >= `minimum` (ArgumentError naming `owner` and
    `arg`)."""
    values = (value,) * n if isinstance(value, (int, np.integer)) else value
    try:
        values = tuple(values)
    except TypeError:
        values = ()
    if (len(values) != n or any(isinstance(v, bool) or not isinstance(v, (int, np.integer))
                                or v < minimum for v in values)):
        raise ArgumentError(f"{owner}: the `{arg}` argument must be a tuple of {n} integers "
                            f">= {minimum} (or one such integer). Received: {arg}={value!r}")
    return tuple(int(v) for v in values)


def positive_int(value, arg: str, owner: str) -> int:
    return int_at_least(value, 1, arg, owner)


def int_at_least(value, minimum: int, arg: str, owner: str) -> int:
    """`value` as an int >= `minimum` (0 or 1); a float, even 2.0, is refused, as Keras's layers
    refuse it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        kind = "a positive integer" if minimum == 1 else "a non-negative integer"
        raise ArgumentError(f"{owner}: the `{arg}` argument must be {kind}. {_received(arg, value)}")
    return int(value)


def normalize_padding(value, allowed: Sequence[str], owner: str) -> str:
    padding = value.lower() if isinstance(value, str) else value
    if padding not in allowed:
        choices = ", ".join(f'"{a}"' for a in allowed)
        raise ArgumentError(f"{owner}: the `padding` argument must be one of {choices}. "
                            f"Received: padding={value!r}")
    return padding


def check_data_format(value, owner: str) -> str:
    """Only channels-last layouts are supported; say so by name for channels_first."""
    data_format = backend.image_data_format() if value is None else value
    if data_format == "channels_first":
        raise ArgumentError(f"{owner}: data_format='channels_first' is not supported; nncompile layers "
                            f"take data_format='channels_last' (the default) only")
    if data_format != "channels_last":
        raise ArgumentError(f"{owner}: the `data_format` argument must be 'channels_last' (or None). "
                            f"Received: data_format={value!r}")
    return data_format


def weight_options(layer, weight: str, initializer, regularizer, constraint) -> None:
    """Set `<weight>_initializer`, `_regularizer` and `_constraint` on `layer` from Keras's
    identifiers (a name, a config dict, an object or None), as every layer with weights takes them."""
    setattr(layer, f"{weight}_initializer", initializers.get(initializer))
    setattr(layer, f"{weight}_regularizer", regularizers.get(regularizer))
    setattr(layer, f"{weight}_constraint", constraints.get(constraint))


def option_weight(layer, weight: str, shape, enabled: bool = True, name: str | None = None):
    """The weight `name` (default `weight`) of `shape` made with the layer's
    `<weight>_initializer`, `_regularizer` and `_constraint` (None when not `enabled`, as a bias
    without use_bias)."""
    if not enabled:
        return None
    return layer.add_weight(shape=shape, initializer=getattr(layer, f"{weight}_initializer"),
                            regularizer=getattr(layer, f"{weight}_regularizer"),
                            constraint=getattr(layer, f"{weight}_constraint"), name=name or weight)


def weight_configs(layer, *weights: str) -> dict:
    """The config entries of weight_options for each of `weights`, serialized as Keras does."""
    config = {}
    for kind, module in (("initializer", initializers), ("regularizer", regularizers),
                         ("constraint", constraints)):
        config.update({f"{w}_{kind}": module.serialize(getattr(layer, f"{w}_{kind}"))
                       for w in weights})
    return config


def check_input_rank(layer, input_shape, ndim: int) -> None:
    if len(input_shape) != ndim:
        raise ValueError(f"Input 0 of layer '{layer.name}' ({type(layer).__name__}) is incompatible "
                         f"with the layer: expected ndim={ndim}, found ndim={len(input_shape)}. "
                         f"Full shape received: {tuple(input_shape)}")


def warn_legacy(message: str) -> None:
    """A DeprecationWarning pointing at the user's line: the first caller outside nncompile."""
    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_globals.get("__name__", "").startswith("nncompile."):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, DeprecationWarning, stacklevel=level)


def legacy_args(table: Mapping[str, str], combine: Callable[[str, dict], None] | None = None):
    """Decorate `__init__` to accept Keras 1/2 argument names (and `dim_ordering`) with warnings."""
    def decorate(init):
        @functools.wraps(init)
        def wrapper(self, *args, **kwargs):
            init(self, *args, **_modern_kwargs(type(self).__name__, kwargs, table, combine))
        return wrapper
    return decorate


def _modern_kwargs(owner: str, kwargs: dict, table: Mapping[str, str],
                   combine: Callable[[str, dict], None] | None) -> dict:
    if combine is not None:
        combine(owner, kwargs)
    if "dim_ordering" in kwargs:
        _rename_dim_ordering(owner, kwargs)
    return rename_legacy_args(owner, kwargs, table)


def _rename_dim_ordering(owner: str, kwargs: dict) -> None:
    value = kwargs.pop("dim_ordering")
    if value not in _DIM_ORDERING:
        raise ValueError(f"{owner}: the `dim_ordering` argument must be one of 'tf', 'th', "
                         f"'default'. Received: dim_ordering={value!r}")
    warn_legacy(f"{owner}: argument `dim_ordering` is the Keras 1 name of `data_format` "
                  f"('tf' is 'channels_last'); use `data_format`")
    kwargs.setdefault("data_format", _DIM_ORDERING[value])


def rename_legacy_args(owner: str, kwargs: dict, table: Mapping[str, str]) -> dict:
    """Accept Keras 1/2 argument names (`init`, `nb_filter`, ...) with a DeprecationWarning."""
    for old, new in table.items():
        if old in kwargs:
            warn_legacy(f"{owner}: argument `{old}` is the Keras 1 name of `{new}`; use `{new}`")
            kwargs.setdefault(new, kwargs.pop(old))
    return kwargs

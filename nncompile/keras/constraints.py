"""Weight constraints: projections applied to a weight after each training update, as Keras 3 has them.

A constraint is a callable `constraint(w: np.ndarray) -> np.ndarray` returning the projected
weight; layers keep it on the weight's `Variable` as `var.constraint`.

>>> import numpy as np
>>> from nncompile.keras import constraints
>>> constraints.NonNeg()(np.array([-1.0, 2.0]))
array([0., 2.])
>>> constraints.get("max_norm").get_config()
{'max_value': 2, 'axis': 0}
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from nncompile.keras import backend
from nncompile.keras.serialization import Catalog, KerasObject

Axis = int | Sequence[int]


def _as_float(w) -> np.ndarray:
    w = np.asarray(w)
    return w if np.issubdtype(w.dtype, np.floating) else w.astype(backend.floatx())


def _norms(w: np.ndarray, axis: Axis) -> np.ndarray:
    """The L2 norms of `w` over `axis`, kept broadcastable against `w`."""
    axes = axis if isinstance(axis, int) else tuple(axis)
    return np.sqrt(np.sum(np.square(w), axis=axes, keepdims=True))


class Constraint(KerasObject):
    """Base class: subclasses define `__call__(w) -> w` and `get_config`; the base is the identity."""

    def __call__(self, w: np.ndarray) -> np.ndarray:
        return w


class MaxNorm(Constraint):
    """Rescales the slices of `w` along `axis` whose L2 norm exceeds `max_value` down to it:
    `w * clip(norm, 0, max_value) / (epsilon + norm)`.

    For a Dense kernel (in, units), `axis=0` bounds the incoming weights of each unit; for a
    Conv2D kernel (kh, kw, in, out), use `axis=[0, 1, 2]`.

    >>> MaxNorm(1.0)(np.array([[3.0], [4.0]])).round(4).tolist()
    [[0.6], [0.8]]
    """

    def __init__(self, max_value: float = 2, axis: Axis = 0):
        self.max_value = max_value
        self.axis = axis

    def __call__(self, w: np.ndarray) -> np.ndarray:
        w = _as_float(w)
        norms = _norms(w, self.axis)
        desired = np.clip(norms, 0, self.max_value)
        return w * (desired / (backend.epsilon() + norms))

    def get_config(self) -> dict[str, Any]:
        return {"max_value": self.max_value, "axis": self.axis}


class MinMaxNorm(Constraint):
    """Moves the L2 norm of each slice along `axis` towards [min_value, max_value]:
    `w * desired / (epsilon + norm)`, `desired = rate * clip(norm, min_value, max_value)
    + (1 - rate) * norm` (rate 1 enforces the bounds strictly).

    >>> MinMaxNorm(1.0, 2.0)(np.array([[0.3], [0.4]])).round(4).tolist()
    [[0.6], [0.8]]
    """

    def __init__(self, min_value: float = 0.0, max_value: float = 1.0, rate: float = 1.0,
                 axis: Axis = 0):
        self.min_value = min_value
        self.max_value = max_value
        self.rate = rate
        self.axis = axis

    def __call__(self, w: np.ndarray) -> np.ndarray:
        w = _as_float(w)
        norms = _norms(w, self.axis)
        desired = (self.rate * np.clip(norms, self.min_value, self.max_value)
                   + (1 - self.rate) * norms)
        return w * (desired / (backend.epsilon() + norms))

    def get_config(self) -> dict[str, Any]:
        return {"min_value": self.min_value, "max_value": self.max_value, "rate": self.rate,
                "axis": self.axis}


class NonNeg(Constraint):
    """Negative weights become 0: `max(w, 0)`.

    >>> NonNeg()(np.array([-0.5, 0.5])).tolist()
    [0.0, 0.5]
    """

    def __call__(self, w: np.ndarray) -> np.ndarray:
        return np.maximum(_as_float(w), 0)


class UnitNorm(Constraint):
    """Scales each slice along `axis` to L2 norm 1: `w / (epsilon + norm)`.

    >>> UnitNorm()(np.array([[3.0], [4.0]])).round(4).tolist()
    [[0.6], [0.8]]
    """

    def __init__(self, axis: Axis = 0):
        self.axis = axis

    def __call__(self, w: np.ndarray) -> np.ndarray:
        w = _as_float(w)
        return w / (backend.epsilon() + _norms(w, self.axis))

    def get_config(self) -> dict[str, Any]:
        return {"axis": self.axis}


# Lowercase aliases, as `keras.constraints.max_norm(3)` is commonly written.
max_norm, min_max_norm, non_neg, unit_norm = MaxNorm, MinMaxNorm, NonNeg, UnitNorm

_CLASSES = (MaxNorm, MinMaxNorm, NonNeg, UnitNorm)
_BY_NAME: dict[str, type] = {cls.__name__: cls for cls in _CLASSES}
_BY_NAME.update({backend.to_snake_case(cls.__name__): cls for cls in _CLASSES})


_CATALOG = Catalog("constraint", Constraint, "keras.constraints", _BY_NAME, "w -> w")


def get(identifier) -> Callable[[np.ndarray], np.ndarray] | None:
    """The constraint for a name, a config dict `{"class_name", "config"}`, an instance, a class or a
    callable w -> w; None gives None."""
    return _CATALOG.get(identifier)


def serialize(constraint):
    """Keras 3's config dict of a Constraint; None and plain callables as they are."""
    return _CATALOG.serialize(constraint)


def deserialize(config) -> Callable[[np.ndarray], np.ndarray] | None:
    """The constraint of a config written by `serialize`."""
    return _CATALOG.get(config)

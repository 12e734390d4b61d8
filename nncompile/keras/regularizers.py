"""Weight regularizers: penalties added to the loss, as Keras 3 has them.

A regularizer is a callable `reg(weights) -> float` giving the penalty of one weight array.

>>> import numpy as np
>>> from nncompile.keras import regularizers
>>> regularizers.L2(0.1)(np.array([1.0, -2.0]))
0.5
>>> regularizers.get("l1").get_config()
{'l1': 0.01}
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import numpy as np


def _checked(value, name: str, owner: str) -> float:
    if value is None:
        return 0.0
    is_number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not is_number or not math.isfinite(value) or value < 0:
        raise ValueError(f"{owner}: invalid value for argument {name}: expected a non-negative "
                         f"float. Received: {name}={value!r}")
    return float(value)


class Regularizer:
    """Base class: subclasses define `__call__(weights) -> float` and `get_config`."""

    def __call__(self, weights: np.ndarray) -> float:
        raise NotImplementedError(f"{type(self).__name__} does not define __call__")

    def get_config(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "Regularizer":
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class L1L2(Regularizer):
    """`l1 * sum(|w|) + l2 * sum(w^2)`.

    >>> L1L2(l1=1.0, l2=1.0)(np.array([1.0, -2.0]))
    8.0
    """

    def __init__(self, l1: float = 0.0, l2: float = 0.0):
        self.l1 = _checked(l1, "l1", type(self).__name__)
        self.l2 = _checked(l2, "l2", type(self).__name__)

    def __call__(self, weights: np.ndarray) -> float:
        w = np.asarray(weights, dtype=np.float64)
        return float(self.l1 * np.abs(w).sum() + self.l2 * np.square(w).sum())

    def get_config(self) -> dict[str, Any]:
        return {"l1": self.l1, "l2": self.l2}


class L1(L1L2):
    """`l1 * sum(|w|)`.

    >>> L1(0.5)(np.array([1.0, -2.0]))
    1.5
    """

    def __init__(self, l1: float = 0.01):
        super().__init__(l1=l1)

    def get_config(self) -> dict[str, Any]:
        return {"l1": self.l1}


class L2(L1L2):
    """`l2 * sum(w^2)`.

    >>> L2(0.5)(np.array([1.0, -2.0]))
    2.5
    """

    def __init__(self, l2: float = 0.01):
        super().__init__(l2=l2)

    def get_config(self) -> dict[str, Any]:
        return {"l2": self.l2}


# Lowercase aliases, as `keras.regularizers.l2(0.01)` is commonly written.
l1, l2, l1_l2 = L1, L2, L1L2

_BY_NAME: dict[str, type] = {"L1": L1, "L2": L2, "L1L2": L1L2, "l1": L1, "l2": L2, "l1_l2": L1L2}


def _lookup(name: str) -> type:
    if name not in _BY_NAME:
        raise ValueError(f"Could not interpret regularizer identifier: {name!r}; valid names: "
                         f"{', '.join(sorted(_BY_NAME))}")
    return _BY_NAME[name]


def get(identifier) -> Callable[[np.ndarray], float] | None:
    """The regularizer for a name ("l1", "l2", "l1_l2"), a config dict, an instance or a callable;
    None gives None."""
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Regularizer):
        return identifier()
    if isinstance(identifier, str):
        return _lookup(identifier)()
    if isinstance(identifier, Mapping):
        if "class_name" not in identifier:
            raise ValueError(f"Could not interpret regularizer identifier: {identifier!r}; a config "
                             f"dict needs the keys 'class_name' and 'config'")
        return _lookup(identifier["class_name"]).from_config(identifier.get("config") or {})
    if callable(identifier):
        return identifier
    raise ValueError(f"Could not interpret regularizer identifier: {identifier!r}; expected a "
                     f"name, a config dict, a Regularizer or a callable weights -> float")


def serialize(regularizer):
    """The config dict of a Regularizer (Keras 3's form); None and other callables as they are."""
    if not isinstance(regularizer, Regularizer):
        return regularizer
    return {"module": "keras.regularizers", "class_name": type(regularizer).__name__,
            "config": regularizer.get_config(), "registered_name": None}


def deserialize(config) -> Callable[[np.ndarray], float] | None:
    """The regularizer of a config written by `serialize`."""
    return get(config)

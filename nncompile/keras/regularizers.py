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
from typing import Any, Callable

import numpy as np

from nncompile.keras.serialization import Catalog, KerasObject


def _checked(value, name: str, owner: str) -> float:
    if value is None:
        return 0.0
    is_number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not is_number or not math.isfinite(value) or value < 0:
        raise ValueError(f"{owner}: invalid value for argument {name}: expected a non-negative "
                         f"float. Received: {name}={value!r}")
    return float(value)


class Regularizer(KerasObject):
    """Base class: subclasses define `__call__(weights) -> float` and `get_config`."""


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

    def emit(self, b, weights):
        """The penalty as IR: a scalar of the weights' dtype, added to the loss by the training step."""
        axes = tuple(range(weights.type.rank))
        total = b.scalar(0.0, weights)
        if self.l1:
            total = b.add(total, b.mul(b.scalar(self.l1, weights), b.reduce_sum(b.abs(weights), axes=axes)))
        if self.l2:
            total = b.add(total, b.mul(b.scalar(self.l2, weights), b.reduce_sum(b.square(weights), axes=axes)))
        return total

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


class OrthogonalRegularizer(Regularizer):
    """`factor` times the mean absolute cosine between each pair of rows (`mode="rows"`) or of
    columns (`"columns"`) of a rank-2 weight, as Keras 3 computes it (the rows normalized by
    `keras.ops.normalize`): it pushes a Dense kernel's feature vectors towards orthogonality.

    >>> float(OrthogonalRegularizer(factor=1.0)(np.array([[1.0, 0.0], [1.0, 1.0]])))
    0.7071067...
    """

    def __init__(self, factor: float = 0.01, mode: str = "rows"):
        self.factor = _checked(factor, "factor", type(self).__name__)
        if mode not in ("rows", "columns"):
            raise ValueError(f'Invalid value for argument `mode`. Expected one of {{"rows", "columns"}}. '
                             f"Received: mode={mode}")
        self.mode = mode

    def __call__(self, inputs):
        """The penalty, with keras.ops: of an array eagerly, of a weight inside the training step."""
        from nncompile.keras import ops    # ops' layers import this module
        if len(inputs.shape) != 2:
            raise ValueError(f"Inputs to OrthogonalRegularizer must have rank 2. Received: "
                             f"inputs.shape={tuple(inputs.shape)}")
        rows = self.mode == "rows"
        unit = ops.normalize(inputs, axis=1 if rows else 0)
        product = ops.matmul(unit, ops.transpose(unit)) if rows else ops.matmul(ops.transpose(unit), unit)
        size = inputs.shape[0 if rows else 1]
        off_diagonal = product * (1.0 - ops.eye(size, dtype=inputs.dtype))
        return self.factor * 0.5 * ops.sum(ops.absolute(off_diagonal)) / (size * (size - 1.0) / 2.0)

    def get_config(self) -> dict[str, Any]:
        return {"factor": self.factor, "mode": self.mode}


# Lowercase aliases, as `keras.regularizers.l2(0.01)` is commonly written.
l1, l2, l1_l2, orthogonal_regularizer = L1, L2, L1L2, OrthogonalRegularizer

_BY_NAME: dict[str, type] = {"L1": L1, "L2": L2, "L1L2": L1L2, "l1": L1, "l2": L2, "l1_l2": L1L2,
                             "OrthogonalRegularizer": OrthogonalRegularizer,
                             "orthogonal_regularizer": OrthogonalRegularizer}


_CATALOG = Catalog("regularizer", Regularizer, "keras.regularizers", _BY_NAME, "weights -> float")


def emit_penalty(regularizer, b, x, owner: str):
    """The penalty of `x` as IR: a built-in regularizer's `emit`, else the trace of the
    callable (keras.ops on tensors), summed to a scalar as Keras sums every loss it adds."""
    if hasattr(regularizer, "emit"):
        return regularizer.emit(b, x)
    from nncompile.keras import tracing

    return tracing.trace_penalty(regularizer, b, x, owner)


def get(identifier) -> Callable[[np.ndarray], float] | None:
    """The regularizer for a name, a config dict `{"class_name", "config"}`, an instance, a class or a
    callable weights -> float; None gives None."""
    return _CATALOG.get(identifier)


def serialize(regularizer):
    """Keras 3's config dict of a Regularizer; None and plain callables as they are."""
    return _CATALOG.serialize(regularizer)


def deserialize(config) -> Callable[[np.ndarray], float] | None:
    """The regularizer of a config written by `serialize`."""
    return _CATALOG.get(config)

"""Preprocessing layers that are plain arithmetic: Rescaling."""
from __future__ import annotations

from typing import Any

import numpy as np

from nncompile.ir import Builder, DType, Value
from nncompile.keras.layers.arguments import ArgumentError, owner_of
from nncompile.keras.layers.base import Layer


def _factor(value, name: str, owner: str) -> float | np.ndarray:
    """A number, or numbers (per channel) that broadcast against the input's last axes."""
    try:
        array = None if isinstance(value, bool) else np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        array = None
    if array is None or not np.isfinite(array).all():
        raise ArgumentError(f"{owner}: `{name}` must be a finite number or a list of them. "
                            f"Received: {name}={value!r}")
    return float(array) if array.ndim == 0 else array


class Rescaling(Layer):
    """`inputs * scale + offset`, e.g. `Rescaling(1. / 255)` to bring pixels into [0, 1] or
    `Rescaling(1. / 127.5, offset=-1)` into [-1, 1]. Integer inputs are cast to the layer's dtype.

    >>> Rescaling(0.5, offset=1.0)(np.array([[2, 4]], "uint8")).tolist()
    [[2.0, 3.0]]
    """

    acts_per_step = True

    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        owner = owner_of(self)
        self.scale, self.offset = _factor(scale, "scale", owner), _factor(offset, "offset", owner)

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        dtype = DType.from_numpy(self.dtype)
        x = inputs if inputs.type.dtype == dtype else b.cast(inputs, dtype=dtype)
        return b.add(b.mul(x, self._constant(b, self.scale, x)), self._constant(b, self.offset, x))

    @staticmethod
    def _constant(b: Builder, value, like: Value) -> Value:
        if isinstance(value, float):
            return b.scalar(value, like)
        return b.constant(value.astype(like.type.dtype.numpy))

    def get_config(self) -> dict[str, Any]:
        plain = [v if isinstance(v, float) else v.tolist() for v in (self.scale, self.offset)]
        return {**super().get_config(), "scale": plain[0], "offset": plain[1]}

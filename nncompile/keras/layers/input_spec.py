"""`keras.layers.InputSpec`: what a layer expects of its inputs (rank, dtype, sizes of some
axes), checked at every call as Keras 3 checks it, with Keras's messages.

    >>> from nncompile.keras import layers
    >>> spec = layers.InputSpec(ndim=3, axes={-1: 4})
    >>> spec.ndim, spec.axes
    (3, {-1: 4})
"""
from __future__ import annotations

from typing import Any

from nncompile.keras.ops.core import standardize_dtype


class InputSpec:
    """The expected rank (`ndim`, or bounds `min_ndim` / `max_ndim`), `dtype`, `shape` (None for
    any size) and sizes of some `axes` ({axis: size}) of one input of a layer."""

    def __init__(self, dtype=None, shape=None, ndim=None, max_ndim=None, min_ndim=None, axes=None,
                 allow_last_axis_squeeze=False, name=None, optional=False):
        self.dtype = None if dtype is None else standardize_dtype(dtype)
        self.shape = None if shape is None else tuple(None if d is None else int(d) for d in shape)
        self.ndim = len(self.shape) if self.shape is not None else ndim
        self.max_ndim, self.min_ndim = max_ndim, min_ndim
        self.name, self.optional = name, optional
        self.allow_last_axis_squeeze = allow_last_axis_squeeze
        try:
            self.axes = {int(k): v for k, v in (axes or {}).items()}
        except (ValueError, TypeError):
            raise TypeError(f"Argument `axes` must be a dict with integer keys. Received: axes={axes}") from None
        if self.ndim is not None and any(k >= self.ndim or k < -self.ndim for k in self.axes):
            raise ValueError(f"Axis {max(self.axes)} is greater than the maximum allowed value: {self.ndim - 1}")

    def __repr__(self) -> str:
        shown = {k: v for k, v in (("dtype", self.dtype), ("shape", self.shape), ("ndim", self.ndim),
                                   ("max_ndim", self.max_ndim), ("min_ndim", self.min_ndim),
                                   ("axes", self.axes or None)) if v is not None}
        return f"InputSpec({', '.join(f'{k}={v}' for k, v in shown.items())})"

    def get_config(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "shape": self.shape, "ndim": self.ndim, "max_ndim": self.max_ndim,
                "min_ndim": self.min_ndim, "axes": self.axes}

    @classmethod
    def from_config(cls, config: dict) -> "InputSpec":
        return cls(**config)


def _dims(x) -> tuple:
    """x's shape with unknown sizes (the batch of a symbolic tensor) as None."""
    return tuple(d if isinstance(d, int) else None for d in x.shape)


def check_inputs(specs, inputs: list, layer_name: str) -> None:
    """Keras 3's `assert_input_compatibility`: each input against its spec (one spec or a list)."""
    specs = list(specs) if isinstance(specs, (list, tuple)) else [specs]
    if len(inputs) != len(specs):
        raise ValueError(f'Layer "{layer_name}" expects {len(specs)} input(s), but it received '
                         f"{len(inputs)} input tensors.")
    for index, (x, spec) in enumerate(zip(inputs, specs)):
        if spec is None or (x is None and spec.optional):
            continue
        if not hasattr(x, "shape"):
            raise ValueError(f"Inputs to a layer should be tensors. Got '{x}' (of type {type(x)}) as "
                             f"input for layer '{layer_name}'.")
        shape = _dims(x)
        where = f"Input {index} with name '{spec.name}' of layer '{layer_name}' is incompatible with the layer"
        if spec.ndim is not None and not spec.allow_last_axis_squeeze and len(shape) != spec.ndim:
            raise ValueError(f"{where}: expected ndim={spec.ndim}, found ndim={len(shape)}. Full shape "
                             f"received: {shape}")
        if spec.max_ndim is not None and len(shape) > spec.max_ndim:
            raise ValueError(f"{where}: expected max_ndim={spec.max_ndim}, found ndim={len(shape)}")
        if spec.min_ndim is not None and len(shape) < spec.min_ndim:
            raise ValueError(f"{where}: expected min_ndim={spec.min_ndim}, found ndim={len(shape)}. Full "
                             f"shape received: {shape}")
        if spec.dtype is not None and hasattr(x, "dtype") and standardize_dtype(x.dtype) != spec.dtype:
            raise ValueError(f"{where}: expected dtype={spec.dtype}, found dtype={standardize_dtype(x.dtype)}")
        for axis, value in spec.axes.items():
            if value is not None and shape[axis] not in (value, None):
                raise ValueError(f"{where}: expected axis {axis} of input shape to have value {value}, but "
                                 f"received input with shape {shape}")
        if spec.shape is not None:
            spec_shape, got = spec.shape, shape
            if spec.allow_last_axis_squeeze:
                got = got[:-1] if got and got[-1] == 1 else got
                spec_shape = spec_shape[:-1] if spec_shape and spec_shape[-1] == 1 else spec_shape
            if any(s is not None and d is not None and s != d for s, d in zip(spec_shape, got)):
                raise ValueError(f"{where}: expected shape={spec.shape}, found shape={shape}")

"""Spatial reshaping layers on channels-last data: ZeroPadding1D/2D, Cropping1D/2D,
UpSampling1D/2D (nearest neighbour), and RepeatVector.

The layers that take `data_format` also accept Keras 1's `dim_ordering` ('tf' is channels_last).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from nncompile.ir import Builder, ShapeError, Value
from nncompile.keras.layers.base import Layer
from nncompile.keras.layers.arguments import (ArgumentError, check_data_format, check_input_rank,
                                              legacy_args, normalize_tuple, owner_of, positive_int)


def _is_count(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0


def _pair(value, owner: str, arg: str) -> tuple[int, int]:
    """An int n (as (n, n)) or a pair of ints >= 0, for the two ends of one axis."""
    pair = (value, value) if _is_count(value) else value
    if not isinstance(pair, (tuple, list)) or len(pair) != 2 or not all(_is_count(v) for v in pair):
        raise ArgumentError(f"{owner}: `{arg}` should be an int or a tuple of 2 ints "
                            f"(before, after) >= 0. Received: {arg}={value!r}")
    return int(pair[0]), int(pair[1])


def _pairs_2d(value, owner: str, arg: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """An int, (height, width) ints, or ((top, bottom), (left, right)), as the last form."""
    if _is_count(value):
        return (int(value),) * 2, (int(value),) * 2
    if isinstance(value, (tuple, list)) and len(value) == 2:
        if all(_is_count(v) for v in value):
            return (int(value[0]),) * 2, (int(value[1]),) * 2
        if all(isinstance(v, (tuple, list)) and len(v) == 2 and all(_is_count(u) for u in v)
               for v in value):
            return (int(value[0][0]), int(value[0][1])), (int(value[1][0]), int(value[1][1]))
    raise ArgumentError(f"{owner}: `{arg}` should be either an int, a tuple of 2 ints (symmetric_height"
                        f"_{arg}, symmetric_width_{arg}), or a tuple of 2 tuples of 2 ints ((top_{arg}, "
                        f"bottom_{arg}), (left_{arg}, right_{arg})). Received: {arg}={value!r}")


def _pad(b: Builder, x: Value, pairs: dict[int, tuple[int, int]]) -> Value:
    """Zero padding of the axes in `pairs` (axis -> (before, after))."""
    pads = [p for axis in range(x.type.rank) for p in pairs.get(axis, (0, 0))]
    return b.pad(x, pads=pads, value=0.0)


def _crop(b: Builder, x: Value, pairs: dict[int, tuple[int, int]]) -> Value:
    """Drop `before` and `after` elements at the ends of the axes in `pairs`."""
    shape = x.type.shape
    for axis, (before, after) in pairs.items():
        if not isinstance(shape[axis], int) or before + after >= shape[axis]:
            raise ShapeError(f"Values in `cropping` argument should be smaller than the "
                             f"corresponding spatial dimension of the input. Received: input_shape="
                             f"{shape}, cropping of axis {axis}: {(before, after)}")
    axes = sorted(pairs)
    return b.slice(x, starts=[pairs[a][0] for a in axes],
                   ends=[shape[a] - pairs[a][1] for a in axes], axes=axes, steps=[1] * len(axes))


def _repeat(b: Builder, x: Value, times: dict[int, int]) -> Value:
    """Repeat each element `times[axis]` times along each axis in `times` (np.repeat)."""
    shape = x.type.shape
    for axis in times:
        if not isinstance(shape[axis], int):
            raise ShapeError(f"axis {axis} of the input has no static size (shape {shape}); "
                             f"upsampling needs it")
    expanded, target, merged = [], [], []
    for axis, d in enumerate(shape):
        expanded.append(d)
        target.append(d)
        if axis in times:
            expanded.append(1)
            target.append(times[axis])
        merged.append(d * times[axis] if axis in times else d)
    y = b.broadcast(b.reshape(x, shape=expanded), shape=target)
    return b.reshape(y, shape=merged)


class ZeroPadding1D(Layer):
    """Pads the steps axis of (batch, steps, channels) with zeros: `padding` is n or (left, right).

    Example:

    >>> ZeroPadding1D((1, 2))(np.ones((1, 3, 2), "float32")).shape
    (1, 6, 2)
    """

    @legacy_args({})
    def __init__(self, padding=1, data_format: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.padding = _pair(padding, owner_of(self), "padding")
        self.data_format = check_data_format(data_format, owner_of(self))

    def build(self, input_shape) -> None:
        check_input_rank(self, input_shape, 3)
        self.built = True

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        return _pad(b, inputs, {1: self.padding})

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "padding": self.padding, "data_format": self.data_format}


class ZeroPadding2D(Layer):
    """Pads height and width of (batch, h, w, channels) images with zeros.

    `padding` is an int, (symmetric_height, symmetric_width), or ((top, bottom), (left, right)).

    Example:

    >>> ZeroPadding2D(((1, 0), (2, 3)))(np.ones((1, 4, 4, 3), "float32")).shape
    (1, 5, 9, 3)
    """

    @legacy_args({})
    def __init__(self, padding=(1, 1), data_format: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.padding = _pairs_2d(padding, owner_of(self), "padding")
        self.data_format = check_data_format(data_format, owner_of(self))

    def build(self, input_shape) -> None:
        check_input_rank(self, input_shape, 4)
        self.built = True

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        return _pad(b, inputs, {1: self.padding[0], 2: self.padding[1]})

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "padding": self.padding, "data_format": self.data_format}


class Cropping1D(Layer):
    """Crops the steps axis of (batch, steps, channels): `cropping` is n or (start, end).

    Example:

    >>> Cropping1D((1, 2))(np.ones((1, 6, 2), "float32")).shape
    (1, 3, 2)
    """

    def __init__(self, cropping=(1, 1), **kwargs):
        super().__init__(**kwargs)
        self.cropping = _pair(cropping, owner_of(self), "cropping")

    def build(self, input_shape) -> None:
        check_input_rank(self, input_shape, 3)
        self.built = True

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        return _crop(b, inputs, {1: self.cropping})

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "cropping": self.cropping}


class Cropping2D(Layer):
    """Crops height and width of (batch, h, w, channels) images.

    `cropping` is an int, (symmetric_height, symmetric_width), or ((top, bottom), (left, right)).

    Example:

    >>> Cropping2D(((1, 0), (2, 1)))(np.ones((1, 5, 6, 3), "float32")).shape
    (1, 4, 3, 3)
    """

    @legacy_args({})
    def __init__(self, cropping=((0, 0), (0, 0)), data_format: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.cropping = _pairs_2d(cropping, owner_of(self), "cropping")
        self.data_format = check_data_format(data_format, owner_of(self))

    def build(self, input_shape) -> None:
        check_input_rank(self, input_shape, 4)
        self.built = True

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        return _crop(b, inputs, {1: self.cropping[0], 2: self.cropping[1]})

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "cropping": self.cropping, "data_format": self.data_format}


class UpSampling1D(Layer):
    """Repeats each step of (batch, steps, channels) `size` times.

    Example:

    >>> UpSampling1D(3)(np.ones((1, 2, 4), "float32")).shape
    (1, 6, 4)
    """

    def __init__(self, size: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.size = positive_int(size, "size", owner_of(self))

    def build(self, input_shape) -> None:
        check_input_rank(self, input_shape, 3)
        self.built = True

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        return _repeat(b, inputs, {1: self.size})

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "size": self.size}


class UpSampling2D(Layer):
    """Repeats rows and columns of (batch, h, w, channels) images `size` = (rows, cols) times.

    Only `interpolation="nearest"` is supported.

    Example:

    >>> UpSampling2D((2, 3))(np.ones((1, 2, 2, 1), "float32")).shape
    (1, 4, 6, 1)
    """

    @legacy_args({})
    def __init__(self, size=(2, 2), data_format: str | None = None, interpolation: str = "nearest",
                 **kwargs):
        super().__init__(**kwargs)
        self.size = normalize_tuple(size, 2, "size", owner_of(self))
        self.data_format = check_data_format(data_format, owner_of(self))
        if interpolation != "nearest":
            raise ArgumentError(f"{owner_of(self)}: interpolation={interpolation!r} is not "
                                f"supported; the supported choice is 'nearest'")
        self.interpolation = interpolation

    def build(self, input_shape) -> None:
        check_input_rank(self, input_shape, 4)
        self.built = True

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        return _repeat(b, inputs, {1: self.size[0], 2: self.size[1]})

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "size": self.size, "data_format": self.data_format,
                "interpolation": self.interpolation}


class RepeatVector(Layer):
    """Repeats a (batch, features) input `n` times: (batch, n, features).

    Example:

    >>> RepeatVector(3)(np.ones((2, 4), "float32")).shape
    (2, 3, 4)
    """

    def __init__(self, n: int, **kwargs):
        super().__init__(**kwargs)
        self.n = positive_int(n, "n", owner_of(self))

    def build(self, input_shape) -> None:
        check_input_rank(self, input_shape, 2)
        self.built = True

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        batch, features = inputs.type.shape
        expanded = b.reshape(inputs, shape=(batch, 1, features))
        return b.broadcast(expanded, shape=(batch, self.n, features))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "n": self.n}

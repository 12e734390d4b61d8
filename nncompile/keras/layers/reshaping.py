"""Spatial reshaping layers on channels-last data: ZeroPadding1D/2D/3D, Cropping1D/2D/3D,
UpSampling1D/2D/3D (nearest neighbour), and RepeatVector.

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


_PAIR_FORMS = {
    2: ("a tuple of 2 ints (symmetric_height_{a}, symmetric_width_{a}), or a tuple of 2 tuples "
        "of 2 ints ((top_{a}, bottom_{a}), (left_{a}, right_{a}))"),
    3: ("a tuple of 3 ints (symmetric_dim1_{a}, symmetric_dim2_{a}, symmetric_dim3_{a}), or a "
        "tuple of 3 tuples of 2 ints ((left_dim1_{a}, right_dim1_{a}), (left_dim2_{a}, "
        "right_dim2_{a}), (left_dim3_{a}, right_dim3_{a}))"),
}


def _pairs(value, rank: int, owner: str, arg: str) -> tuple[tuple[int, int], ...]:
    """An int, `rank` ints, or `rank` (before, after) pairs (an int entry meaning (n, n)), as
    `rank` pairs."""
    if _is_count(value):
        return ((int(value),) * 2,) * rank
    if isinstance(value, (tuple, list)) and len(value) == rank:
        pairs = [(v, v) if _is_count(v) else v for v in value]
        if all(isinstance(p, (tuple, list)) and len(p) == 2 and all(_is_count(u) for u in p)
               for p in pairs):
            return tuple((int(p[0]), int(p[1])) for p in pairs)
    raise ArgumentError(f"{owner}: `{arg}` should be either an int, "
                        f"{_PAIR_FORMS[rank].format(a=arg)}. Received: {arg}={value!r}")


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

    rank = 2

    @legacy_args({})
    def __init__(self, padding=(1, 1), data_format: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.padding = _pairs(padding, self.rank, owner_of(self), "padding")
        self.data_format = check_data_format(data_format, owner_of(self))

    def build(self, input_shape) -> None:
        check_input_rank(self, input_shape, self.rank + 2)
        self.built = True

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        return _pad(b, inputs, dict(enumerate(self.padding, start=1)))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "padding": self.padding, "data_format": self.data_format}


class ZeroPadding3D(ZeroPadding2D):
    """Pads depth, height and width of (batch, d, h, w, channels) volumes with zeros.

    `padding` is an int, 3 ints (symmetric), or 3 (before, after) pairs.

    Example:

    >>> ZeroPadding3D((1, (0, 2), 0))(np.ones((1, 2, 3, 4, 2), "float32")).shape
    (1, 4, 5, 4, 2)
    """

    rank = 3

    def __init__(self, padding=((1, 1), (1, 1), (1, 1)), data_format: str | None = None, **kwargs):
        super().__init__(padding, data_format, **kwargs)


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

    rank = 2

    @legacy_args({})
    def __init__(self, cropping=((0, 0), (0, 0)), data_format: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.cropping = _pairs(cropping, self.rank, owner_of(self), "cropping")
        self.data_format = check_data_format(data_format, owner_of(self))

    def build(self, input_shape) -> None:
        check_input_rank(self, input_shape, self.rank + 2)
        self.built = True

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        return _crop(b, inputs, dict(enumerate(self.cropping, start=1)))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "cropping": self.cropping, "data_format": self.data_format}


class Cropping3D(Cropping2D):
    """Crops depth, height and width of (batch, d, h, w, channels) volumes.

    `cropping` is an int, 3 ints (symmetric), or 3 (before, after) pairs.

    Example:

    >>> Cropping3D(((1, 0), 1, (0, 2)))(np.ones((1, 4, 5, 6, 2), "float32")).shape
    (1, 3, 3, 4, 2)
    """

    rank = 3

    def __init__(self, cropping=((1, 1), (1, 1), (1, 1)), data_format: str | None = None,
                 **kwargs):
        super().__init__(cropping, data_format, **kwargs)


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


class UpSampling3D(Layer):
    """Repeats each element of (batch, d, h, w, channels) volumes `size` = (d, h, w) times
    along depth, height and width (nearest neighbour).

    Example:

    >>> UpSampling3D((1, 2, 3))(np.ones((1, 2, 2, 2, 1), "float32")).shape
    (1, 2, 4, 6, 1)
    """

    def __init__(self, size=(2, 2, 2), data_format: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.size = normalize_tuple(size, 3, "size", owner_of(self))
        self.data_format = check_data_format(data_format, owner_of(self))

    def build(self, input_shape) -> None:
        check_input_rank(self, input_shape, 5)
        self.built = True

    def emit(self, b: Builder, inputs: Value, training: bool = False) -> Value:
        return _repeat(b, inputs, dict(enumerate(self.size, start=1)))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "size": self.size, "data_format": self.data_format}


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

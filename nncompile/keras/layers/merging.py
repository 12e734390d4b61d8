"""Merge layers: Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate, Dot, and
their functional forms `add`, `subtract`, ... `concatenate`, `dot`.

Elementwise merges broadcast like Keras: inputs of lower rank get axes of size 1 inserted after
the batch axis, then the non-batch dimensions must be equal or 1.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from nncompile.ir import Builder, ShapeError, Value, broadcast_shapes
from nncompile.keras.layers.arguments import ArgumentError, boolean, integer, owner_of
from nncompile.keras.layers.base import Layer, Mask, keras_shape
from nncompile.keras.layers.core import any_last


def _shapes(values: Sequence[Value]) -> list[tuple]:
    return [keras_shape(v.type) for v in values]


class Merge(Layer):
    """Base of the elementwise merges: checks the inputs, aligns ranks, folds `combine`."""

    min_inputs = 1
    max_inputs: int | None = None
    supports_masking = True

    def emit_mask(self, b: Builder, inputs, mask) -> Mask | None:
        """Keras's merge mask: the OR of the inputs' masks when every input has one."""
        if mask is None or any(m is None for m in mask):
            return None
        merged = mask[0].keep(b)
        for m in mask[1:]:
            merged = b.logical_or(merged, m.keep(b))
        return Mask(merged, self.name)

    def combine(self, b: Builder, x: Value, y: Value) -> Value:
        raise NotImplementedError(f"{type(self).__name__} does not define combine")

    def finish(self, b: Builder, merged: Value, count: int) -> Value:
        return merged

    def emit(self, b: Builder, inputs, training: bool = False) -> Value:
        values = self._check_inputs(inputs)
        rank = max(v.type.rank for v in values)
        aligned = [self._expand(b, v, rank) for v in values]
        merged = aligned[0]
        for v in aligned[1:]:
            merged = self.combine(b, merged, v)
        return self.finish(b, merged, len(values))

    def _check_inputs(self, inputs) -> list[Value]:
        name = type(self).__name__
        if not isinstance(inputs, (list, tuple)):
            raise ShapeError(f"A merge layer should be called on a list of inputs. Received: "
                             f"input_shape={keras_shape(inputs.type)} (not a list of shapes)")
        values = list(inputs)
        too_few = len(values) < self.min_inputs
        too_many = self.max_inputs is not None and len(values) > self.max_inputs
        if too_few or too_many:
            count = (f"exactly {self.min_inputs}" if self.min_inputs == self.max_inputs
                     else f"at least {self.min_inputs}")
            raise ShapeError(f"A `{name}` layer should be called on {count} inputs. "
                             f"Received: input_shape={_shapes(values)}")
        self._check_broadcast(values)
        return values

    def _check_broadcast(self, values: list[Value]) -> None:
        """Keras's rule: non-batch dims aligned from the right must be equal or 1 (the IR's)."""
        try:
            broadcast_shapes(*(v.type.shape[1:] for v in values))
        except ShapeError:
            shown = " and ".join(str(s) for s in _shapes(values))
            raise ShapeError(f"Inputs have incompatible shapes. Received shapes {shown}") from None

    @staticmethod
    def _expand(b: Builder, x: Value, rank: int) -> Value:
        """Insert axes of size 1 after the batch axis until `x` has `rank` axes."""
        shape = x.type.shape
        if len(shape) == rank:
            return x
        return b.reshape(x, shape=shape[:1] + (1,) * (rank - len(shape)) + shape[1:])


class Add(Merge):
    """Elementwise sum of its inputs.

    Example:

    >>> a, b = np.ones((2, 3), "float32"), np.full((2, 3), 2.0, "float32")
    >>> Add()([a, b]).tolist()
    [[3.0, 3.0, 3.0], [3.0, 3.0, 3.0]]
    """

    def combine(self, b: Builder, x: Value, y: Value) -> Value:
        return b.add(x, y)


class Subtract(Merge):
    """The first input minus the second (exactly two inputs).

    Example:

    >>> a, b = np.ones((1, 2), "float32"), np.full((1, 2), 3.0, "float32")
    >>> Subtract()([a, b]).tolist()
    [[-2.0, -2.0]]
    """

    min_inputs = max_inputs = 2

    def combine(self, b: Builder, x: Value, y: Value) -> Value:
        return b.sub(x, y)


class Multiply(Merge):
    """Elementwise product of its inputs.

    Example:

    >>> a, b = np.full((1, 2), 2.0, "float32"), np.full((1, 2), 3.0, "float32")
    >>> Multiply()([a, b]).tolist()
    [[6.0, 6.0]]
    """

    def combine(self, b: Builder, x: Value, y: Value) -> Value:
        return b.mul(x, y)

    def emit_masked(self, b: Builder, inputs, mask, training: bool = False) -> Value:
        """Keras multiplies masked entries as 1, then zeroes the entries no input keeps when
        every input has a mask."""
        values = self._check_inputs(inputs)
        spread = [_broadcast_mask(b, m, x) for x, m in zip(values, mask)]
        output = None
        for x, m in zip(values, spread):
            x = x if m is None else b.select(m, x, b.scalar(1, x))
            output = x if output is None else b.mul(output, x)
        if all(m is not None for m in spread):
            kept = spread[0]
            for m in spread[1:]:
                kept = b.logical_or(kept, m)
            output = b.select(kept, output, b.scalar(0, output))
        return output


class Average(Merge):
    """Elementwise mean of its inputs.

    Example:

    >>> a, b = np.zeros((1, 2), "float32"), np.full((1, 2), 3.0, "float32")
    >>> Average()([a, b]).tolist()
    [[1.5, 1.5]]
    """

    def combine(self, b: Builder, x: Value, y: Value) -> Value:
        return b.add(x, y)

    def finish(self, b: Builder, merged: Value, count: int) -> Value:
        return b.div(merged, b.scalar(float(count), like=merged))


def _broadcast_mask(b: Builder, mask: Mask | None, like: Value) -> Value | None:
    """A (batch, steps) mask spread over the feature axis of `like`, as Keras's merges do."""
    if mask is None:
        return None
    expanded = b.reshape(mask.keep(b), shape=mask.value.type.shape + (1,))
    return b.op("broadcast", expanded, shape=like.type.shape)


class _MaskedExtremum(Merge):
    """Maximum and Minimum: Keras fills each input's masked entries from the running result
    before combining, since the op has no identity element."""

    def emit_masked(self, b: Builder, inputs, mask, training: bool = False) -> Value:
        values = self._check_inputs(inputs)
        output, output_mask = values[0], _broadcast_mask(b, mask[0], values[0])
        for x, m in zip(values[1:], mask[1:]):
            m = _broadcast_mask(b, m, x)
            if m is not None:
                x = b.select(m, x, output)
            if output_mask is not None:
                output = b.select(output_mask, output, x)
            output_mask = None if m is None or output_mask is None else b.logical_or(output_mask, m)
            output = self.combine(b, output, x)
        return output


class Maximum(_MaskedExtremum):
    """Elementwise maximum of its inputs.

    Example:

    >>> a, b = np.array([[1.0, 5.0]], "float32"), np.array([[3.0, 2.0]], "float32")
    >>> Maximum()([a, b]).tolist()
    [[3.0, 5.0]]
    """

    def combine(self, b: Builder, x: Value, y: Value) -> Value:
        return b.maximum(x, y)


class Minimum(_MaskedExtremum):
    """Elementwise minimum of its inputs.

    Example:

    >>> a, b = np.array([[1.0, 5.0]], "float32"), np.array([[3.0, 2.0]], "float32")
    >>> Minimum()([a, b]).tolist()
    [[1.0, 2.0]]
    """

    def combine(self, b: Builder, x: Value, y: Value) -> Value:
        return b.minimum(x, y)


class Concatenate(Layer):
    """Joins its inputs along `axis`; all other dimensions must match.

    Example:

    >>> a, b = np.zeros((2, 3), "float32"), np.ones((2, 4), "float32")
    >>> Concatenate()([a, b]).shape
    (2, 7)
    """

    supports_masking = True

    def __init__(self, axis: int = -1, **kwargs):
        super().__init__(**kwargs)
        self.axis = integer(axis, "axis", owner_of(self))

    def emit(self, b: Builder, inputs, training: bool = False) -> Value:
        if not isinstance(inputs, (list, tuple)) or not inputs:
            received = keras_shape(inputs.type) if isinstance(inputs, Value) else inputs
            raise ShapeError(f"A `Concatenate` layer should be called on a list of at least 1 "
                             f"input. Received: input_shape={received}")
        shapes = _shapes(inputs)
        rank = len(shapes[0])
        if not -rank <= self.axis < rank:
            raise ShapeError(f"Concatenate: axis {self.axis} is out of range for inputs of rank "
                             f"{rank}. Received: input_shape={shapes}")
        axis = self.axis % rank
        kept = {tuple(d for i, d in enumerate(s) if i != axis) if len(s) == rank else None
                for s in shapes}
        if len(kept) != 1 or None in kept:
            raise ShapeError(f"A `Concatenate` layer requires inputs with matching shapes except "
                             f"for the concatenation axis. Received: input_shape={shapes}")
        return b.concat(*inputs, axis=axis)

    def emit_mask(self, b: Builder, inputs, mask) -> Mask | None:
        """Keras's rule: every input's mask spread over its shape (all True when it has none),
        concatenated along `axis`, then any() over the last axis."""
        if mask is None or all(m is None for m in mask):
            return None
        full = [b.op("broadcast", b.constant(True), shape=x.type.shape) if m is None
                else m.keep(b) if m.value.type.rank == x.type.rank else _broadcast_mask(b, m, x)
                for x, m in zip(inputs, mask)]
        joined = b.concat(*full, axis=self.axis % inputs[0].type.rank)
        return Mask(any_last(b, joined), self.name)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis}


class Dot(Layer):
    """The dot product of two inputs' samples along `axes` (one axis for both, or one each;
    never the batch axis), as Keras 3's `batch_dot`: the output has the first input's other axes,
    then the second's, and shape (batch, 1) when none is left. `normalize=True` L2-normalizes
    both along those axes first (the cosine similarity). The output carries no mask.

    >>> x, y = np.ones((2, 3), "float32"), np.full((2, 3), 2.0, "float32")
    >>> Dot(axes=1)([x, y]).tolist()
    [[6.0], [6.0]]
    """

    def __init__(self, axes, normalize=False, **kwargs):
        super().__init__(**kwargs)
        owner = owner_of(self)
        if isinstance(axes, (list, tuple)):
            if len(axes) != 2:
                raise ArgumentError(f"{owner}: invalid format for argument `axes`: it should "
                                    f"contain two elements. Received: axes={axes!r}")
            self.axes = [integer(a, "axes", owner) for a in axes]
        else:
            self.axes = integer(axes, "axes", owner)
        self.normalize = boolean(normalize, "normalize", owner)

    def emit(self, b: Builder, inputs, training: bool = False) -> Value:
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            received = _shapes(inputs) if isinstance(inputs, (list, tuple)) else keras_shape(inputs.type)
            raise ShapeError(f"A `Dot` layer should be called on a list of 2 inputs. Received: "
                             f"input_shape={received}")
        x, y = inputs
        ax, ay = self._axes(x, y)
        if self.normalize:
            x, y = _l2_normalize(b, x, ax), _l2_normalize(b, y, ay)
        # batch_dot as one batched matmul: x to (batch, m, k), y to (batch, k, n)
        x = b.transpose(x, perm=[i for i in range(x.type.rank) if i != ax] + [ax])
        y = b.transpose(y, perm=[0, ay] + [i for i in range(1, y.type.rank) if i != ay])
        x_rest, y_rest = x.type.shape[1:-1], y.type.shape[2:]
        batch, depth = x.type.shape[0], x.type.shape[-1]
        x = b.reshape(x, shape=[batch, self._flat(x_rest), depth])
        y = b.reshape(y, shape=[batch, depth, self._flat(y_rest)])
        out = b.matmul(x, y)
        return b.reshape(out, shape=[batch, *(x_rest + y_rest or (1,))])

    def _axes(self, x: Value, y: Value) -> tuple[int, int]:
        """The contracted axes (non-negative), checked against the inputs' shapes."""
        shapes = _shapes([x, y])
        if min(len(s) for s in shapes) < 2:
            raise ShapeError(f"Cannot do batch_dot on inputs with rank < 2. Received inputs with "
                             f"shapes {shapes[0]} and {shapes[1]}.")
        wanted = self.axes if isinstance(self.axes, list) else [self.axes] * 2
        axes = []
        for axis, shape in zip(wanted, shapes):
            if not -len(shape) <= axis < len(shape) or axis % len(shape) == 0:
                raise ShapeError(f"Dot: `axes` {self.axes} must name a non-batch axis of each "
                                 f"input. Received: input_shape={shapes}")
            axes.append(axis % len(shape))
        if x.type.shape[axes[0]] != y.type.shape[axes[1]]:
            raise ShapeError(f"Incompatible input shapes: axis values {shapes[0][axes[0]]} (at "
                             f"axis {axes[0]}) != {shapes[1][axes[1]]} (at axis {axes[1]}). "
                             f"Full input shapes: {shapes[0]}, {shapes[1]}")
        return axes[0], axes[1]

    def _flat(self, dims: tuple) -> int | str:
        """The size of `dims` as one dimension: a product, or the one symbol among them."""
        if len(dims) == 1:
            return dims[0]
        if any(isinstance(d, str) for d in dims):
            raise ShapeError(f"Dot: the axes {dims} of an input, kept in the output, include an "
                             f"unknown size next to others; nncompile needs them known")
        return int(np.prod(dims, dtype=np.int64))

    def emit_mask(self, b: Builder, inputs, mask) -> Mask | None:
        return None

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axes": self.axes, "normalize": self.normalize}


def _l2_normalize(b: Builder, x: Value, axis: int) -> Value:
    """Keras 3's `ops.normalize`: x * min(rsqrt(sum(x^2)), 1 / epsilon), epsilon 1e-7."""
    squares = b.reduce_sum(b.square(x), axes=[axis], keepdims=True)
    floor = b.maximum(squares, b.scalar(1e-14, squares))
    return b.mul(x, b.broadcast(b.rsqrt(floor), shape=list(x.type.shape)))


def _apply(layer: Layer, inputs: Sequence):
    return layer(list(inputs))


def add(inputs: Sequence, **kwargs):
    """Functional form of `Add`: `add([x1, x2])`."""
    return _apply(Add(**kwargs), inputs)


def subtract(inputs: Sequence, **kwargs):
    """Functional form of `Subtract`: `subtract([x1, x2])`."""
    return _apply(Subtract(**kwargs), inputs)


def multiply(inputs: Sequence, **kwargs):
    """Functional form of `Multiply`: `multiply([x1, x2])`."""
    return _apply(Multiply(**kwargs), inputs)


def average(inputs: Sequence, **kwargs):
    """Functional form of `Average`: `average([x1, x2])`."""
    return _apply(Average(**kwargs), inputs)


def maximum(inputs: Sequence, **kwargs):
    """Functional form of `Maximum`: `maximum([x1, x2])`."""
    return _apply(Maximum(**kwargs), inputs)


def minimum(inputs: Sequence, **kwargs):
    """Functional form of `Minimum`: `minimum([x1, x2])`."""
    return _apply(Minimum(**kwargs), inputs)


def dot(inputs: Sequence, axes=-1, **kwargs):
    """Functional form of `Dot`: `dot([x1, x2], axes=1)`."""
    return _apply(Dot(axes=axes, **kwargs), inputs)


def concatenate(inputs: Sequence, axis: int = -1, **kwargs):
    """Functional form of `Concatenate`: `concatenate([x1, x2], axis=-1)`."""
    return _apply(Concatenate(axis=axis, **kwargs), inputs)


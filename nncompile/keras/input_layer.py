"""`Input` and `InputLayer`: where the tensors of a functional model start.

An InputLayer makes one KerasTensor at construction, recorded as the output of a CallNode with
no inputs; models find their inputs by walking back to such nodes.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from nncompile.ir import DType
from nncompile.keras import backend
from nncompile.keras.layers.arguments import ArgumentError, owner_of
from nncompile.keras.layers.base import CallNode, KerasTensor, Layer


class InputLayer(Layer):
    """The source of one model input: its shape (None for the batch) and dtype.

    Example:

    >>> layer = InputLayer(shape=(8,), name="features")
    >>> layer.batch_shape, layer.output.shape
    ((None, 8), (None, 8))
    """

    def __init__(self, shape: Sequence[int | None] | int | None = None,
                 batch_size: int | None = None, dtype: str | None = None,
                 sparse: bool | None = None, batch_shape: Sequence[int | None] | None = None,
                 name: str | None = None, **kwargs):
        # Keras 2 configs spell the shape `batch_input_shape` and carry `ragged`; Keras 3 ones
        # carry `optional`.
        batch_shape = kwargs.pop("batch_input_shape", batch_shape)
        shape = kwargs.pop("input_shape", shape)
        unsupported = [k for k in ("ragged", "optional") if kwargs.pop(k, False)]
        super().__init__(name=name, dtype=dtype or backend.floatx(), **kwargs)
        owner = owner_of(self)
        if sparse or unsupported:
            raise ArgumentError(f"{owner}: sparse, ragged and optional inputs are not supported")
        self.dtype = _dtype_name(owner, self.dtype)
        self.batch_shape = _batch_shape(owner, shape, batch_size, batch_shape)
        self.built = True
        self.output = KerasTensor(self.batch_shape, self.dtype, name=self.name)
        node = CallNode(self, [], [self.output], single_input=True)
        self.output.history, self.output.index = node, 0
        self._inbound_nodes.append(node)

    def get_config(self) -> dict[str, Any]:
        return {"batch_shape": list(self.batch_shape), "dtype": self.dtype, "sparse": False,
                "name": self.name}


def Input(shape: Sequence[int | None] | int | None = None, batch_size: int | None = None,
          dtype: str | None = None, name: str | None = None,
          batch_shape: Sequence[int | None] | None = None,
          sparse: bool | None = None) -> KerasTensor:
    """A symbolic model input of `shape` (without the batch), dtype "float32" unless given.

    Example:

    >>> x = Input(shape=(28, 28, 1))
    >>> x.shape
    (None, 28, 28, 1)
    >>> Input(shape=(10,), dtype="int32").dtype
    'int32'
    """
    return InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, sparse=sparse,
                      batch_shape=batch_shape, name=name).output


def _dtype_name(owner: str, dtype) -> str:
    """`dtype` as its numpy name ("float32"), checked to have an IR dtype."""
    try:
        name = str(np.dtype(dtype))
        DType.from_numpy(name)
    except (TypeError, ValueError) as e:
        raise ArgumentError(f"{owner}: unsupported dtype {dtype!r} ({e})") from None
    return name


def _batch_shape(owner: str, shape, batch_size, batch_shape) -> tuple[int | None, ...]:
    """The shape with its batch dimension, from `batch_shape` or `shape` and `batch_size`."""
    if batch_shape is not None:
        return _dims(owner, "batch_shape", batch_shape)
    if shape is None:
        raise ArgumentError(f"{owner}: you must pass a `shape` argument (or `batch_shape`)")
    shape = (shape,) if isinstance(shape, (int, np.integer)) else shape
    return _dims(owner, "batch_size", (batch_size,))[:1] + _dims(owner, "shape", shape)


def _dims(owner: str, arg: str, dims) -> tuple[int | None, ...]:
    if not isinstance(dims, (tuple, list)):
        raise ArgumentError(f"{owner}: cannot convert `{arg}`={dims!r} to a shape")
    for d in dims:
        if d is not None and (isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 0):
            raise ArgumentError(f"{owner}: `{arg}` {tuple(dims)} has the dimension {d!r}; "
                                f"expected ints >= 0 or None")
    return tuple(None if d is None else int(d) for d in dims)

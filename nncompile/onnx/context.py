"""What a converter sees while one ONNX node is imported: its inputs, attributes and the Builder.

An ONNX tensor is held as one of
  - a constant numpy array, known at import time (initializers, folded subgraphs); shape
    arithmetic may hold symbols, as an object array such as ['batch', 3, 224, 224];
  - an IR value in a layout: `perm` says which ONNX axis each IR axis is (IR = transpose(ONNX,
    perm)). Convolutions and pooling produce NHWC (perm 0,2,3,1) from NCHW models; elementwise
    ops keep whatever layout their inputs have, so a CNN is transposed once at its input and
    once where a layout-sensitive op (Flatten, Reshape) needs ONNX's order back.
"""
from __future__ import annotations

import math

import numpy as np
import onnx

from nncompile.ir import Builder, DType, Value
from nncompile.ir.types import is_symbol
from nncompile.onnx.errors import NeedsConstantError, UnsupportedError

# Arrays this small become `constant` ops; larger ones bound parameters named after their tensor.
SMALL = 16


class Entry:
    __slots__ = ("value", "perm", "const", "name")

    def __init__(self, value: Value | None = None, perm: tuple[int, ...] | None = None,
                 const: np.ndarray | None = None, name: str = ""):
        self.value, self.const, self.name = value, const, name
        rank = const.ndim if const is not None else value.type.rank
        self.perm = tuple(perm) if perm is not None else tuple(range(rank))

    @property
    def shape(self) -> tuple:
        """The ONNX (logical) shape."""
        if self.const is not None:
            return self.const.shape
        ir = self.value.type.shape
        out = [None] * len(ir)
        for i, axis in enumerate(self.perm):
            out[axis] = ir[i]
        return tuple(out)


def is_symbolic(array: np.ndarray) -> bool:
    return array.dtype == object and any(is_symbol(x) for x in array.flat)


def move_perm(have: tuple[int, ...], want: tuple[int, ...]) -> list[int]:
    """The IR transpose taking a value held in layout `have` to layout `want`."""
    return [have.index(a) for a in want]


class Context:
    def __init__(self, builder: Builder, opset: int, model: onnx.ModelProto):
        self.b = builder
        self.opset = opset
        self.model = model
        self.env: dict[str, Entry] = {}
        self.node: onnx.NodeProto | None = None
        self._attrs: dict = {}
        self._layouts: dict[tuple[str, tuple], Value] = {}
        self._param_names: set[str] = set()

    # --- the current node ----------------------------------------------------------------------
    def start(self, node: onnx.NodeProto) -> None:
        self.node = node
        self._attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}

    def where(self) -> str:
        node = self.node
        return f"ONNX node {node.name or '(unnamed)'!r} ({node.op_type}, opset {self.opset})"

    def fail(self, message: str) -> UnsupportedError:
        return UnsupportedError(f"{self.where()}: {message}")

    def attr(self, name: str, default=None):
        value = self._attrs.get(name, default)
        return value.decode() if isinstance(value, bytes) else value

    def has(self, i: int) -> bool:
        return i < len(self.node.input) and bool(self.node.input[i])

    @property
    def count(self) -> int:
        return len(self.node.input)

    def entry(self, i: int) -> Entry:
        return self.env[self.node.input[i]]

    # --- inputs as constants ---------------------------------------------------------------------
    def maybe_const(self, i: int) -> np.ndarray | None:
        return self.entry(i).const if self.has(i) else None

    def const(self, i: int, what: str) -> np.ndarray:
        array = self.maybe_const(i)
        if array is None:
            raise NeedsConstantError(f"{self.where()}: input {i} ({what}) must be known when the model "
                                     f"is imported (a constant or computed from shapes), but it is "
                                     f"computed at run time", self.node.input[i])
        return array

    def ints(self, i: int, what: str) -> list:
        """A constant integer vector (shape, axes, pads); entries may be symbols."""
        return [x if is_symbol(x) else int(x) for x in np.asarray(self.const(i, what)).reshape(-1)]

    # --- inputs as IR values --------------------------------------------------------------------
    def shape(self, i: int) -> tuple:
        return self.entry(i).shape

    def rank(self, i: int) -> int:
        return len(self.shape(i))

    def dtype(self, i: int):
        e = self.entry(i)
        return e.value.type.dtype if e.const is None else DType.from_numpy(e.const.dtype)

    def held(self, i: int) -> tuple[Value, tuple[int, ...]]:
        """The input as IR holds it, and its layout."""
        e = self.entry(i)
        return self.materialize(e), e.perm

    def plain(self, i: int) -> Value:
        return self.in_layout(i, tuple(range(self.rank(i))))

    def in_layout(self, i: int, perm: tuple[int, ...]) -> Value:
        e = self.entry(i)
        key = (self.node.input[i], tuple(perm))
        if key not in self._layouts:
            moves = move_perm(e.perm, tuple(perm))
            if e.const is not None and moves != sorted(moves):   # permuted once, when imported
                self._layouts[key] = self.array_value(np.transpose(e.const, moves), self.node.input[i])
            else:
                self._layouts[key] = self.transpose(self.materialize(e), moves)
        return self._layouts[key]

    def transpose(self, value: Value, perm: list[int]) -> Value:
        """transpose(value, perm); a reshape when only axes of size 1 move (no data moves)."""
        if perm == sorted(perm):
            return value
        shape = value.type.shape
        moved = [p for p in perm if shape[p] != 1]
        if moved == sorted(moved):
            return self.b.reshape(value, shape=[shape[p] for p in perm])
        return self.b.transpose(value, perm=perm)

    def materialize(self, e: Entry) -> Value:
        if e.value is None:
            e.value = self.array_value(e.const, e.name)
        return e.value

    def array_value(self, array: np.ndarray, name: str = "") -> Value:
        """An IR value of a constant array: a constant op, or a parameter if it is large."""
        if is_symbolic(array):
            raise self.fail(f"the shape value {list(array)} holds symbolic dimensions and cannot be "
                            f"used as a tensor; only shape arithmetic (Gather, Concat, Slice, "
                            f"Unsqueeze...) on it is supported")
        if array.dtype == object:
            array = array.astype(np.int64)
        if array.size < SMALL or not name:
            return self.b.constant(np.array(array, order="C"))   # ascontiguousarray makes rank 0 rank 1
        unique, k = name, 1
        while unique in self._param_names:
            unique, k = f"{name}.{k}", k + 1
        self._param_names.add(unique)
        return self.b.param(unique, np.ascontiguousarray(array))   # a transposed view is copied

    def vector_along(self, value: Value, axis: int, rank: int) -> Value:
        """A 1-D value reshaped to broadcast along `axis` of a rank-`rank` tensor."""
        shape = [1] * rank
        shape[axis] = value.type.shape[0]
        return self.b.reshape(value, shape=shape)


def static_size(dims) -> int | None:
    return None if any(is_symbol(d) for d in dims) else math.prod(dims)

"""Tensor types: a dtype and a shape whose dimensions are ints or symbolic (strs).

A symbolic dimension is a symbol name or an expression over symbols in its canonical text
(`nncompile.ir.dims`: `(T+2)//3-2`, the positions of a strided window). `BATCH` ("?") is the
conventional symbol of the batch dimension; every input of a traced model shares it. Symbols are
bound to sizes when a graph runs, and expressions are evaluated from them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

from nncompile.ir.dims import canonical, dim_value, is_expression
from nncompile.ir.dtypes import DType
from nncompile.ir.errors import ShapeError, SizeError

Dim = int | str
Shape = tuple[Dim, ...]

BATCH = "?"
# The largest byte size of a tensor: an int64 counts it, as numpy's sizes and the generated code's
# (i64) indices and byte offsets do; beyond it they would wrap around.
MAX_BYTES = 2**63 - 1


def is_symbol(dim: Dim) -> bool:
    return isinstance(dim, str)


def check_dim(dim) -> Dim:
    """Return `dim` as a valid dimension (non-negative int, symbol name or expression in its
    canonical text) or raise ShapeError."""
    if isinstance(dim, bool):
        raise ShapeError(f"dimension {dim!r} is a bool; expected an int >= 0 or a symbol")
    if isinstance(dim, str):
        dim = canonical(dim)
        if isinstance(dim, str):
            return dim
    try:
        value = int(dim)
    except (TypeError, ValueError):
        raise ShapeError(f"dimension {dim!r} is not an int or a symbol") from None
    if value != dim or value < 0:
        raise ShapeError(f"dimension {dim!r} must be an int >= 0 or a symbol")
    if value > MAX_BYTES:
        raise SizeError(f"dimension {value} does not fit an int64 (at most 2**63 - 1)")
    return value


def check_static_size(t: "TensorType") -> None:
    """Refuse a type whose static dimensions alone make more bytes than an int64 counts: at any
    nonzero size of its symbols, its size would overflow."""
    elements = math.prod(d for d in t.shape if not is_symbol(d))
    if elements * t.dtype.itemsize > MAX_BYTES:
        static = " (its static dimensions alone)" if not t.is_static else ""
        raise SizeError(f"type {t} has {elements} elements of {t.dtype.itemsize} bytes{static}, "
                        f"more bytes than an int64 counts (2**63 - 1): no machine holds it")


def _dim_text(dim: Dim) -> str:
    """An expression is quoted: the IR text's names may hold '-' and '/', and '//' starts a comment."""
    return f'"{dim}"' if is_expression(dim) else str(dim)


@dataclass(frozen=True)
class TensorType:
    dtype: DType
    shape: Shape

    def __post_init__(self):
        if not isinstance(self.dtype, DType):
            object.__setattr__(self, "dtype", DType.parse(str(self.dtype)))
        object.__setattr__(self, "shape", tuple(check_dim(d) for d in self.shape))
        check_static_size(self)

    def __str__(self) -> str:
        return f"{self.dtype}[{','.join(_dim_text(d) for d in self.shape)}]"

    __repr__ = __str__

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_static(self) -> bool:
        return not any(is_symbol(d) for d in self.shape)

    def with_shape(self, shape: Sequence[Dim]) -> "TensorType":
        return TensorType(self.dtype, tuple(shape))

    def with_dtype(self, dtype: DType) -> "TensorType":
        return TensorType(dtype, self.shape)


def resolve_shape(shape: Sequence[Dim], env: Mapping[str, int]) -> tuple[int, ...]:
    return tuple(dim_value(d, env) for d in shape)


def bind_shape(declared: Sequence[Dim], actual: Sequence[int], env: dict[str, int], what: str) -> None:
    """Check a concrete shape against a declared one, binding symbols into `env`; a declared
    expression is checked against the sizes its symbols get (here or before).

    Raises ShapeError naming `what` with the expected and received shapes.
    """
    def fail():
        shown = tuple(None if is_symbol(d) else d for d in declared)
        raise ShapeError(f"{what}: expected shape {shown}, received shape {tuple(actual)}")

    if len(declared) != len(actual):
        fail()
    for d, a in zip(declared, actual):
        if is_symbol(d) and not is_expression(d):
            if env.setdefault(d, int(a)) != a:
                raise ShapeError(
                    f"{what}: dimension {d!r} is {a} here but {env[d]} in another input "
                    f"(received shape {tuple(actual)})")
        elif not is_symbol(d) and d != a:
            fail()
    for d, a in zip(declared, actual):
        if is_expression(d) and dim_value(d, env) != a:
            raise ShapeError(f"{what}: dimension {d!r} is {dim_value(d, env)} at sizes {env}, "
                             f"received shape {tuple(actual)}")


def broadcast_shapes(*shapes: Sequence[Dim]) -> Shape:
    """numpy broadcasting over ints and symbols; a symbol broadcasts only with 1 or itself."""
    rank = max((len(s) for s in shapes), default=0)
    out: list[Dim] = []
    for axis in range(rank):
        dims = {s[axis - rank + len(s)] for s in shapes if axis - rank + len(s) >= 0}
        dims.discard(1)
        if len(dims) > 1:
            shown = " and ".join(str(tuple(s)) for s in shapes)
            raise ShapeError(f"shapes {shown} do not broadcast (axis {axis - rank})")
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def normalize_axis(axis: int, rank: int, what: str = "axis") -> int:
    if not -rank <= axis < max(rank, 1):
        raise ShapeError(f"{what} {axis} is out of range for rank {rank}")
    return axis % rank if rank else 0

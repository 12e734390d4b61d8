"""`Expr`: an IR value with Python arithmetic, so optimizer update rules read like Keras's formulas.

    >>> m = m + (g - m) * (1 - beta_1)        # emits sub, mul, add into the builder

Python numbers become rank-0 constants of the other operand's dtype, one node per distinct value
(an `Emission` keeps them); rank-0 operands broadcast against whole variables, so per-step scalars
(bias corrections) are computed once, outside the per-element loops the fusion pass makes of the rest.
"""
from __future__ import annotations

from nncompile.ir.builder import Builder
from nncompile.ir.dtypes import DType
from nncompile.ir.graph import Value


class Emission:
    """One emission into a builder: wraps values as `Expr`s and shares their constants."""

    def __init__(self, b: Builder):
        self.b = b
        self._constants: dict[tuple[float, DType], Value] = {}

    def __call__(self, value: Value) -> "Expr":
        return Expr(self, value)

    def constant(self, x: float, dtype: DType) -> "Expr":
        key = (float(x), dtype)
        if key not in self._constants:
            self._constants[key] = self.b.constant(float(x), dtype)
        return Expr(self, self._constants[key])


class Expr:
    __slots__ = ("em", "value")

    def __init__(self, em: Emission, value: Value):
        self.em = em
        self.value = value

    @property
    def b(self) -> Builder:
        return self.em.b

    @property
    def dtype(self) -> DType:
        return self.value.type.dtype

    def _operand(self, other) -> Value:
        if isinstance(other, Expr):
            return other.value
        if isinstance(other, Value):
            return other
        return self.em.constant(other, self.dtype).value

    def _binary(self, op: str, other, swap: bool = False) -> "Expr":
        x, y = self.value, self._operand(other)
        return Expr(self.em, self.b.op(op, *((y, x) if swap else (x, y))))

    def _unary(self, op: str) -> "Expr":
        return Expr(self.em, self.b.op(op, self.value))

    def __add__(self, other) -> "Expr":
        return self._binary("add", other)

    def __radd__(self, other) -> "Expr":
        return self._binary("add", other, swap=True)

    def __sub__(self, other) -> "Expr":
        return self._binary("sub", other)

    def __rsub__(self, other) -> "Expr":
        return self._binary("sub", other, swap=True)

    def __mul__(self, other) -> "Expr":
        return self._binary("mul", other)

    def __rmul__(self, other) -> "Expr":
        return self._binary("mul", other, swap=True)

    def __truediv__(self, other) -> "Expr":
        return self._binary("div", other)

    def __rtruediv__(self, other) -> "Expr":
        return self._binary("div", other, swap=True)

    def __pow__(self, other) -> "Expr":
        return self._binary("pow", other)

    def __rpow__(self, other) -> "Expr":
        return self._binary("pow", other, swap=True)

    def __neg__(self) -> "Expr":
        return self._unary("neg")

    def sqrt(self) -> "Expr":
        return self._unary("sqrt")

    def square(self) -> "Expr":
        return self._unary("square")

    def abs(self) -> "Expr":
        return self._unary("abs")

    def sign(self) -> "Expr":
        return self._unary("sign")

    def maximum(self, other) -> "Expr":
        return self._binary("maximum", other)

    def minimum(self, other) -> "Expr":
        return self._binary("minimum", other)

    def sum(self) -> "Expr":
        """The sum of all elements, as a rank-0 value."""
        if self.value.type.rank == 0:
            return self
        return Expr(self.em, self.b.op("reduce_sum", self.value, axes=tuple(range(self.value.type.rank))))

    def mean(self, axis: int | None = None, keepdims: bool = False) -> "Expr":
        """The mean over `axis` (over all elements when None, as a rank-0 value).

            >>> rms = g.square().mean().sqrt()
        """
        rank = self.value.type.rank
        if rank == 0:
            return self
        axes = tuple(range(rank)) if axis is None else (axis % rank,)
        return Expr(self.em, self.b.op("reduce_mean", self.value, axes=axes, keepdims=keepdims))

    def expand_dims(self, axis: int) -> "Expr":
        """This value with a new axis of length 1 at `axis` (negative counts from the new end)."""
        shape = list(self.value.type.shape)
        shape.insert(axis % (len(shape) + 1), 1)
        return Expr(self.em, self.b.op("reshape", self.value, shape=tuple(shape)))

    def greater(self, other) -> "Expr":
        """The bool value self > other (a method, not `>`: Python would take an Expr as true)."""
        return self._binary("greater", other)

    def select(self, x: "Expr", y) -> "Expr":
        """`x` where this bool value holds, else `y` (a number becomes a constant of x's dtype).

            >>> ratio = g_norm.greater(0).select(w_norm / g_norm, 1.0)
        """
        return Expr(self.em, self.b.op("select", self.value, x.value, x._operand(y)))

    def to(self, dtype: DType) -> "Expr":
        """This value in `dtype` (itself when it already is)."""
        return self if self.dtype is dtype else Expr(self.em, self.b.op("cast", self.value, dtype=dtype))

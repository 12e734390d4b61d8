"""What a kernel emitter sees: the builder inside the entry function, and the buffers of values.

Every op's lowering (the op table's `lower` slot) is one of two shapes, told apart by its fusion
kind:
- ELEMENTWISE ops: an element rule `rule(b, args, node) -> ir.Value`, mapping LLVM values of the
  inputs' element types (scalars or vectors alike) to the result; the loop emitters call it.
- every other op: a kernel emitter `emit(k: Kernel, node) -> None` that writes the node's outputs
  from its inputs through `k`. Ops of fusion kind EPILOGUE (matmul, conv2d, pooling) take two
  more arguments, `emit(k, node, epilogue=(), output=None)`: the elementwise nodes applied to
  each result before it is stored, and the value whose buffer receives the final result.

Buffers are dense row-major arrays. Dimensions come back as Python ints where they are static and
as i64 `ir.Value`s where they are symbolic (bound when the entry function is called), so emitters
fold static arithmetic and pay only for what is really dynamic.
"""
from __future__ import annotations

from typing import Mapping, Sequence

from llvmlite import ir

from nncompile.codegen.loops import as_i64
from nncompile.ir.dtypes import DType
from nncompile.ir.graph import Value
from nncompile.ir.types import is_symbol

Dim = int | ir.Value

_SCALAR = {
    DType.f16: ir.HalfType(), DType.f32: ir.FloatType(), DType.f64: ir.DoubleType(),
    DType.i8: ir.IntType(8), DType.u8: ir.IntType(8), DType.i32: ir.IntType(32),
    DType.i64: ir.IntType(64), DType.bool: ir.IntType(1),
}


def scalar_type(dtype: DType) -> ir.Type:
    """The LLVM type of one element in registers (bool is i1)."""
    return _SCALAR[dtype]


def storage_type(dtype: DType) -> ir.Type:
    """The LLVM type of one element in memory (bool is one byte, as in numpy)."""
    return ir.IntType(8) if dtype is DType.bool else _SCALAR[dtype]


def load(b: ir.IRBuilder, ptr: ir.Value, dtype: DType) -> ir.Value:
    """Load one element (or a vector, when `ptr` points to one) as its register type."""
    value = b.load(ptr)
    return b.trunc(value, _widen(ir.IntType(1), value.type)) if dtype is DType.bool else value


def store(b: ir.IRBuilder, value: ir.Value, ptr: ir.Value, dtype: DType) -> None:
    """Store a register value (scalar or vector) to memory, bools as bytes of 0 or 1."""
    if dtype is DType.bool:
        value = b.zext(value, _widen(ir.IntType(8), value.type))
    b.store(value, ptr)


def _widen(element: ir.Type, like: ir.Type) -> ir.Type:
    return ir.VectorType(element, like.count) if isinstance(like, ir.VectorType) else element


def mul(b: ir.IRBuilder, x: Dim, y: Dim) -> Dim:
    """x * y, folded when both are ints."""
    if isinstance(x, int) and isinstance(y, int):
        return x * y
    if isinstance(x, int) and x == 1:
        return y
    if isinstance(y, int) and y == 1:
        return x
    return b.mul(as_i64(x), as_i64(y), flags=["nsw"])


def product(b: ir.IRBuilder, dims: Sequence[Dim]) -> Dim:
    total: Dim = 1
    for d in dims:
        total = mul(b, total, d)
    return total


class Kernel:
    """The emission context of one kernel inside the entry function.

    pointers: every value's buffer, as a pointer to its storage type.
    symbols: the i64 size of each symbolic dimension (such as the batch '?').
    packed: values already packed as a GEMM's B operand (a loop's weights, packed once before
        it), each with the packed buffer.
    """

    def __init__(self, b: ir.IRBuilder, module: ir.Module, pointers: Mapping[Value, ir.Value],
                 symbols: Mapping[str, ir.Value], packed: Mapping[Value, ir.Value] | None = None):
        self.b = b
        self.module = module
        self._pointers = pointers
        self._symbols = symbols
        self.packed = dict(packed or {})

    def ptr(self, value: Value) -> ir.Value:
        return self._pointers[value]

    def bind(self, values: Sequence[Value], like: Sequence[Value]) -> None:
        """Let each of `values` (a fused body's inputs or outputs) use the buffer of its `like`."""
        self._pointers = {**self._pointers, **{v: self._pointers[w] for v, w in zip(values, like)}}
        self.packed.update({v: self.packed[w] for v, w in zip(values, like) if w in self.packed})

    def dim(self, d) -> Dim:
        """A size as the IR writes it (in a type or an attribute such as pads): an int stays an
        int, a symbol or expression is its i64 size in this call."""
        return self._symbols[d] if is_symbol(d) else d

    def dims(self, value: Value) -> list[Dim]:
        return [self.dim(d) for d in value.type.shape]

    def strides(self, value: Value) -> list[Dim]:
        """Row-major strides in elements."""
        dims = self.dims(value)
        out: list[Dim] = []
        stride: Dim = 1
        for d in reversed(dims):
            out.append(stride)
            stride = mul(self.b, stride, d)
        return out[::-1]

    def size(self, value: Value) -> Dim:
        return product(self.b, self.dims(value))


def picked_index(b: ir.IRBuilder, indices: ir.Value, j: ir.Value, size: ir.Value, allow_negative: bool) -> ir.Value:
    """Index `j` of an index array (i32 or i64) as an i64, a negative one counted from the end
    of an axis of `size` where the op allows (gather, scatter_add, a recurrent step's tokens)."""
    index = b.load(b.gep(indices, [j]))
    index = b.sext(index, ir.IntType(64)) if index.type != ir.IntType(64) else index
    if allow_negative:
        index = b.select(b.icmp_signed("<", index, as_i64(0)), b.add(index, size), index)
    return index

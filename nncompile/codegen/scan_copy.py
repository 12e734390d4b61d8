"""Helpers of the recurrent loop's emitters (`scan.py`, `scan_team_emit.py`): copies and views."""
from __future__ import annotations

from llvmlite import ir

from nncompile.codegen.cpu import Program
from nncompile.codegen.kernel import mul, product
from nncompile.codegen.loops import as_i64
from nncompile.codegen.simd import intrinsic
from nncompile.ir.graph import Value

i1 = ir.IntType(1)
i8p = ir.IntType(8).as_pointer()
i64 = ir.IntType(64)


def memcpy(p: Program, dst: ir.Value, src: ir.Value, nbytes) -> None:
    fn = intrinsic(p.module, "llvm.memcpy.p0.p0.i64", ir.VoidType(), [i8p, i8p, i64, i1])
    p.b.call(fn, [dst, src, as_i64(nbytes), ir.Constant(i1, 0)])


def at_step(full: Program, stacked: Value, t: ir.Value, first_row: ir.Value | None) -> ir.Value:
    """The address of slice t along axis 0 of `stacked` (of its row `first_row` on, when a block
    of rows runs); `full` gives the dimensions as the whole loop sees them."""
    b, dims, size = full.b, full.dims(stacked), stacked.type.dtype.itemsize
    offset = b.mul(t, as_i64(mul(b, product(b, dims[1:]), size)))
    if first_row is not None:
        offset = b.add(offset, b.mul(first_row, as_i64(mul(b, product(b, dims[2:]), size))))
    return b.gep(full.ptr(stacked), [offset])


def with_(p: Program, **changes) -> Program:
    return Program(**{**p.__dict__, **changes})

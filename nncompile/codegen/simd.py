"""Vector helpers for hand-written kernels: LLVM intrinsics (fma, masked load/store) and lane masks.

Each helper declares the intrinsic it needs in the builder's module on first use. Scalars pass
through the same helpers, so edge code can share the element rules of vector code.
"""
from __future__ import annotations

import contextlib
import functools
from typing import Iterator

from llvmlite import ir

from nncompile.codegen import host
from nncompile.codegen.loops import as_i64, entry_alloca, for_range

i32 = ir.IntType(32)
i64 = ir.IntType(64)
_BYTES = {ir.HalfType: 2, ir.FloatType: 4, ir.DoubleType: 8}


def _suffix(ty: ir.Type) -> str:
    """The overload suffix LLVM mangles into intrinsic names: f32, v16f32, ..."""
    if isinstance(ty, ir.VectorType):
        return f"v{ty.count}{_suffix(ty.element)}"
    if isinstance(ty, ir.FloatType):
        return "f32"
    if isinstance(ty, ir.DoubleType):
        return "f64"
    return f"i{ty.width}"


def intrinsic(module: ir.Module, name: str, ret: ir.Type, args: list[ir.Type]) -> ir.Function:
    """Get or declare `name` in `module`."""
    existing = module.globals.get(name)
    return existing if existing is not None else ir.Function(module, ir.FunctionType(ret, args), name)


# MXCSR bits: denormal results flushed to zero (FTZ) and denormal operands read as zero (DAZ)
FLUSH_DENORMALS = 0x8040


def float_mode(b: ir.IRBuilder) -> ir.Value:
    """The calling thread's SSE/AVX control word (MXCSR: rounding, denormal flushing), an i32."""
    slot = entry_alloca(b, i32)     # in the entry block: these run in loops (the pool's workers)
    i8p = ir.IntType(8).as_pointer()
    b.call(intrinsic(b.module, "llvm.x86.sse.stmxcsr", ir.VoidType(), [i8p]), [b.bitcast(slot, i8p)])
    return b.load(slot)


def set_float_mode(b: ir.IRBuilder, mode: ir.Value) -> None:
    """Make `mode` (as `float_mode` reads it) the calling thread's control word."""
    slot = entry_alloca(b, i32)
    b.store(mode, slot)
    i8p = ir.IntType(8).as_pointer()
    b.call(intrinsic(b.module, "llvm.x86.sse.ldmxcsr", ir.VoidType(), [i8p]), [b.bitcast(slot, i8p)])


def fma(b: ir.IRBuilder, x: ir.Value, y: ir.Value, z: ir.Value) -> ir.Value:
    """x * y + z for float scalars or vectors: fused where the host has FMA; without it (the
    generic x86-64 level) a multiply and an add, since llvm.fma would be a libm call per lane."""
    name = "llvm.fma" if host.has_fma() else "llvm.fmuladd"
    fn = intrinsic(b.module, f"{name}.{_suffix(x.type)}", x.type, [x.type] * 3)
    return b.call(fn, [x, y, z])


@functools.lru_cache(maxsize=1 << 12)
def constant(ty: ir.Type, values: tuple | None) -> ir.Constant:
    """The constant of type `ty` with `values` (a vector's lanes, or None for zero), made once per
    process: llvmlite builds and prints a vector constant lane by lane, and keeps the text on
    the object, so a kernel's thousands of uses of a few constants pay for it once. (Constants
    belong to no module; sharing one between modules gives the same IR text.)"""
    return ir.Constant(ty, values)


def splat(b: ir.IRBuilder, scalar: ir.Value, lanes: int) -> ir.Value:
    """A vector with `scalar` in every lane (a constant one for a constant integer, which LLVM
    would otherwise fold for us, at some cost, thousands of times in a GEMM's masks)."""
    vec_type = ir.VectorType(scalar.type, lanes)
    if isinstance(scalar, ir.Constant) and isinstance(scalar.type, ir.IntType):
        return constant(vec_type, (scalar.constant,) * lanes)
    one = b.insert_element(constant(vec_type, None), scalar, ir.Constant(i32, 0))
    everywhere = constant(ir.VectorType(i32, lanes), (0,) * lanes)
    return b.shuffle_vector(one, constant(vec_type, None), everywhere)


def lane_mask(b: ir.IRBuilder, valid: ir.Value | int, lanes: int, first_lane: int = 0) -> ir.Value:
    """<lanes x i1>: lane j is on when first_lane + j < valid."""
    index = constant(ir.VectorType(i64, lanes), tuple(range(first_lane, first_lane + lanes)))
    return b.icmp_signed("<", index, splat(b, as_i64(valid), lanes))


def vector_ptr(b: ir.IRBuilder, ptr: ir.Value, lanes: int) -> ir.Value:
    return b.bitcast(ptr, ir.VectorType(ptr.type.pointee, lanes).as_pointer())


def load_vector(b: ir.IRBuilder, ptr: ir.Value, lanes: int, align: int = 1) -> ir.Value:
    return b.load(vector_ptr(b, ptr, lanes), align=align)


def store_vector(b: ir.IRBuilder, value: ir.Value, ptr: ir.Value, align: int = 1) -> None:
    b.store(value, vector_ptr(b, ptr, value.type.count), align=align)


def masked_load(b: ir.IRBuilder, ptr: ir.Value, mask: ir.Value, passthru: ir.Value | None = None) -> ir.Value:
    """Load the lanes of the vector at `ptr` where `mask` is on; the others are `passthru` (zero)."""
    vec_type = ir.VectorType(ptr.type.pointee, mask.type.count)
    fn = intrinsic(b.module, f"llvm.masked.load.{_suffix(vec_type)}.p0", vec_type,
                   [vec_type.as_pointer(), i32, mask.type, vec_type])
    fill = passthru if passthru is not None else constant(vec_type, None)
    return b.call(fn, [vector_ptr(b, ptr, mask.type.count), ir.Constant(i32, 1), mask, fill])


def masked_store(b: ir.IRBuilder, value: ir.Value, ptr: ir.Value, mask: ir.Value) -> None:
    """Store the lanes of `value` where `mask` is on."""
    fn = intrinsic(b.module, f"llvm.masked.store.{_suffix(value.type)}.p0", ir.VoidType(),
                   [value.type, value.type.as_pointer(), i32, mask.type])
    b.call(fn, [value, vector_ptr(b, ptr, value.type.count), ir.Constant(i32, 1), mask])


def masked_gather(b: ir.IRBuilder, ptr: ir.Value, stride: int | ir.Value, mask: ir.Value) -> ir.Value:
    """Lanes ptr[j * stride] where `mask` is on, zero elsewhere (`stride` static or an i64)."""
    lanes = mask.type.count
    element = ptr.type.pointee
    vec_type = ir.VectorType(element, lanes)
    ptrs_type = ir.VectorType(element.as_pointer(), lanes)
    itemsize = _BYTES.get(type(element)) or element.width // 8
    if isinstance(stride, int):
        offsets = ir.Constant(ir.VectorType(i64, lanes), [j * stride * itemsize for j in range(lanes)])
    else:
        steps = ir.Constant(ir.VectorType(i64, lanes), [j * itemsize for j in range(lanes)])
        offsets = b.mul(splat(b, stride, lanes), steps)
    addresses = b.add(splat(b, b.ptrtoint(ptr, i64), lanes), offsets)
    fn = intrinsic(b.module, f"llvm.masked.gather.{_suffix(vec_type)}.v{lanes}p0", vec_type,
                   [ptrs_type, i32, mask.type, vec_type])
    zeros = ir.Constant(vec_type, None)
    return b.call(fn, [b.inttoptr(addresses, ptrs_type), ir.Constant(i32, 1), mask, zeros])


def masked_scatter(b: ir.IRBuilder, value: ir.Value, ptr: ir.Value, stride: ir.Value | int,
                   mask: ir.Value) -> None:
    """Store lane j of `value` to ptr[j * stride] where `mask` is on; `stride` (elements) may be
    a run-time i64."""
    lanes = value.type.count
    ptrs_type = ir.VectorType(ptr.type, lanes)
    element = ptr.type.pointee
    itemsize = _BYTES.get(type(element)) or element.width // 8
    step = splat(b, b.mul(as_i64(stride), ir.Constant(i64, itemsize)), lanes)
    offsets = b.mul(ir.Constant(ir.VectorType(i64, lanes), list(range(lanes))), step)
    addresses = b.inttoptr(b.add(splat(b, b.ptrtoint(ptr, i64), lanes), offsets), ptrs_type)
    fn = intrinsic(b.module, f"llvm.masked.scatter.{_suffix(value.type)}.v{lanes}p0", ir.VoidType(),
                   [value.type, ptrs_type, i32, mask.type])
    b.call(fn, [value, addresses, ir.Constant(i32, 1), mask])


def prefetch(b: ir.IRBuilder, ptr: ir.Value, write: bool = False) -> None:
    """Hint the cache line at `ptr` into L1 (never faults, even past the end of a buffer)."""
    fn = intrinsic(b.module, "llvm.prefetch.p0", ir.VoidType(), [ir.IntType(8).as_pointer(), i32, i32, i32])
    b.call(fn, [b.bitcast(ptr, ir.IntType(8).as_pointer()), ir.Constant(i32, int(write)),
                ir.Constant(i32, 3), ir.Constant(i32, 1)])


@contextlib.contextmanager
def copy_loop(b: ir.IRBuilder, stop: int | ir.Value, start: int | ir.Value = 0,
              name: str = "i") -> Iterator[ir.Value]:
    """`for_range` that LLVM must neither vectorize nor unroll.

    For strided copy loops (packing): their vector forms (interleaved shuffles) cost a third of a
    second of compile time per kernel and buy little at run time."""
    with for_range(b, stop, start, name=name, scalar=True) as index:
        yield index


def sum_lanes(b: ir.IRBuilder, vectors: list[ir.Value]) -> ir.Value:
    """One vector whose lane j is the sum of all lanes of vectors[j] (lanes past len(vectors): 0).

    A transpose-and-add tree: each step merges two vectors holding s segments of partial sums
    each into one holding 2s half-size segments (two shuffles and an add), so reducing W vectors
    costs about W steps rather than W separate horizontal sums of log2(lanes) steps each."""
    vec_type = vectors[0].type
    lanes = vec_type.count
    if len(vectors) > lanes:
        raise ValueError(f"sum_lanes: {len(vectors)} vectors do not fit in {lanes} lanes")
    zeros = ir.Constant(vec_type, None)
    level, segment = list(vectors), lanes      # every vector: lanes // segment columns of `segment` sums
    while segment > 1:
        if len(level) % 2:
            level.append(zeros)
        half = segment // 2
        starts = range(0, lanes, segment)     # segment starts within one vector
        low = [s + j for s in starts for j in range(half)]
        low = low + [lanes + i for i in low]  # the same lanes of the second vector
        high = [i + half for i in low]
        merged = []
        for x, y in zip(level[::2], level[1::2]):
            pick = [b.shuffle_vector(x, y, ir.Constant(ir.VectorType(i32, lanes), sel)) for sel in (low, high)]
            merged.append(b.fadd(pick[0], pick[1]))
        level, segment = merged, half
    return level[0]

"""Element rules of the elementwise ops: what one element (or one vector of elements) of each op
computes, as LLVM IR. Importing this module fills the op table's `lower` slot of every
ELEMENTWISE op but `constant` (which the loop emitter reads itself).

A rule is `rule(b, args, node) -> ir.Value`. `args` are LLVM values of the inputs' register
types (`kernel.scalar_type`: bools are i1), all scalars or all vectors of one width; a scalar
among vectors is splatted. The same rule serves the scalar loop, the vector loop and the GEMM
epilogue. Semantics are numpy's: NaN propagates through maximum/minimum/relu/sign, comparisons
with NaN are false (not_equal true), round is half to even, integers wrap (abs and neg of the
minimum too), u8 compares and extends unsigned, float -> int truncates toward zero and gives
the minimum integer out of range and for NaN (as numpy on x86 does), x -> bool is x != 0.

Rules are looked up in tables keyed by op name and the inputs' dtype class (float, int, bool);
each entry is `impl(b, args, dtype) -> ir.Value` with `dtype` the first input's dtype.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
from llvmlite import ir

from nncompile.codegen import mathlib
from nncompile.codegen.kernel import scalar_type
from nncompile.codegen.mathlib import fabs, intrinsic
from nncompile.ir.dtypes import DType
from nncompile.ir.errors import IRError
from nncompile.ir.graph import Node
from nncompile.ir.optable import OPS, Fusion

Impl = Callable[[ir.IRBuilder, list[ir.Value], DType], ir.Value]
Rule = Callable[[ir.IRBuilder, list[ir.Value], Node], ir.Value]


# --- helpers for the loop emitters ------------------------------------------------------------

def constant(dtype: DType, value: float | int | bool, like: ir.Value | ir.Type | None = None) -> ir.Constant:
    """`value` as a constant of `dtype`'s register type; a vector constant when `like` (a value or
    a type) is a vector. Integers wrap to the dtype's width, like numpy's astype."""
    like_type = like.type if isinstance(like, ir.Value) else like
    if dtype.is_float:
        with np.errstate(over="ignore"):   # out of the type's range rounds to +-inf, as in numpy
            value = float(dtype.numpy.type(value))
    elif dtype is DType.bool:
        value = bool(value)
    elif isinstance(value, (float, np.floating)) and not math.isfinite(value):
        raise IRError(f"constant {value} has no {dtype} value; expected a finite number")
    else:
        value = int(value)
    return mathlib.const(value, scalar_type(dtype), like_type)


def splat(b: ir.IRBuilder, value: ir.Value, like: ir.Value | ir.Type) -> ir.Value:
    """Broadcast scalar `value` to every lane of vector `like` (a value or a vector type)."""
    vector = like.type if isinstance(like, ir.Value) else like
    if not isinstance(vector, ir.VectorType):
        raise IRError(f"splat: expected a vector to broadcast to, got {vector}")
    if isinstance(value, ir.Constant) and not isinstance(value.type, ir.VectorType):
        return ir.Constant(ir.VectorType(value.type, vector.count), [value] * vector.count)
    single = b.insert_element(ir.Constant(ir.VectorType(value.type, 1), ir.Undefined), value,
                              mathlib.const(0, mathlib.I32))
    mask = ir.Constant(ir.VectorType(mathlib.I32, vector.count), [0] * vector.count)
    return b.shuffle_vector(single, ir.Constant(single.type, ir.Undefined), mask)


def _same_width(b: ir.IRBuilder, args: list[ir.Value]) -> list[ir.Value]:
    vector = next((a for a in args if isinstance(a.type, ir.VectorType)), None)
    if vector is None:
        return args
    return [a if isinstance(a.type, ir.VectorType) else splat(b, a, vector) for a in args]


def _c(x: ir.Value, value: float | int) -> ir.Constant:
    return mathlib.const(value, mathlib.element_type(x.type), x.type)


def _unsigned(dtype: DType) -> bool:
    return dtype in (DType.u8, DType.bool)


# --- floats -----------------------------------------------------------------------------------

def _fsign(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    # numpy: 1, -1, +0 for +-0, NaN for NaN
    out = b.select(b.fcmp_ordered("==", x, _c(x, 0.0)), _c(x, 0.0), x)
    out = b.select(b.fcmp_ordered("<", x, _c(x, 0.0)), _c(x, -1.0), out)
    return b.select(b.fcmp_ordered(">", x, _c(x, 0.0)), _c(x, 1.0), out)


def _fmax(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    # numpy's maximum: y unless x > y, NaN if either is (so max(-0, 0) = 0, max(0, -0) = -0)
    out = b.select(b.fcmp_ordered(">", x, y), x, y)
    return b.select(b.fcmp_unordered("uno", x, x), x, out)


def _fmin(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    out = b.select(b.fcmp_ordered("<", x, y), x, y)
    return b.select(b.fcmp_unordered("uno", x, x), x, out)


def _unary(fn: Callable[[ir.IRBuilder, ir.Value], ir.Value]) -> Impl:
    return lambda b, a, dt: fn(b, a[0])


def _binary(fn: Callable[[ir.IRBuilder, ir.Value, ir.Value], ir.Value]) -> Impl:
    return lambda b, a, dt: fn(b, a[0], a[1])


def _int_fmod(b: ir.IRBuilder, x: ir.Value, y: ir.Value, unsigned: bool) -> ir.Value:
    """srem (urem), 0 where it is undefined: by 0 (numpy's 0) and, signed, by -1 (always 0;
    MIN / -1 overflows)."""
    zero = ir.Constant(y.type, 0)
    trivial = b.icmp_unsigned("==", y, zero)
    if not unsigned:
        trivial = b.or_(trivial, b.icmp_signed("==", y, ir.Constant(y.type, -1)))
    divisor = b.select(trivial, ir.Constant(y.type, 1), y)
    return b.select(trivial, zero, b.urem(x, divisor) if unsigned else b.srem(x, divisor))


def _llvm(name: str) -> Impl:
    return lambda b, a, dt: intrinsic(b, name, a)


FLOAT_RULES: dict[str, Impl] = {
    "neg": _unary(lambda b, x: b.fneg(x)),
    "stop_gradient": _unary(lambda b, x: x),
    "abs": _unary(fabs),
    "sign": _unary(_fsign),
    "exp": _unary(mathlib.exp),
    "expm1": _unary(mathlib.expm1),
    "log": _unary(mathlib.log),
    "log1p": _unary(mathlib.log1p),
    "sqrt": _llvm("llvm.sqrt"),
    "rsqrt": _unary(lambda b, x: b.fdiv(_c(x, 1.0), intrinsic(b, "llvm.sqrt", [x]))),
    "reciprocal": _unary(lambda b, x: b.fdiv(_c(x, 1.0), x)),
    "square": _unary(lambda b, x: b.fmul(x, x)),
    "tanh": _unary(mathlib.tanh),
    "sigmoid": _unary(mathlib.sigmoid),
    "relu": _unary(lambda b, x: _fmax(b, x, _c(x, 0.0))),
    "erf": _unary(mathlib.erf),
    "atan": _unary(mathlib.atan),
    "sin": _unary(mathlib.sin),
    "cos": _unary(mathlib.cos),
    "floor": _llvm("llvm.floor"),
    "ceil": _llvm("llvm.ceil"),
    "round": _llvm("llvm.roundeven"),
    "add": _binary(lambda b, x, y: b.fadd(x, y)),
    "sub": _binary(lambda b, x, y: b.fsub(x, y)),
    "mul": _binary(lambda b, x, y: b.fmul(x, y)),
    "div": _binary(lambda b, x, y: b.fdiv(x, y)),
    "pow": _binary(mathlib.pow),
    "fmod": _binary(lambda b, x, y: b.frem(x, y)),     # LLVM's frem is C's fmod
    "maximum": _binary(_fmax),
    "minimum": _binary(_fmin),
    "equal": _binary(lambda b, x, y: b.fcmp_ordered("==", x, y)),
    "not_equal": _binary(lambda b, x, y: b.fcmp_unordered("!=", x, y)),
    "less": _binary(lambda b, x, y: b.fcmp_ordered("<", x, y)),
    "less_equal": _binary(lambda b, x, y: b.fcmp_ordered("<=", x, y)),
    "greater": _binary(lambda b, x, y: b.fcmp_ordered(">", x, y)),
    "greater_equal": _binary(lambda b, x, y: b.fcmp_ordered(">=", x, y)),
}


# --- integers and bools -----------------------------------------------------------------------

def _isign(b: ir.IRBuilder, x: ir.Value, dtype: DType) -> ir.Value:
    positive = b.zext(b.icmp_unsigned("!=", x, _c(x, 0)), x.type)
    if _unsigned(dtype):
        return positive
    return b.select(b.icmp_signed("<", x, _c(x, 0)), _c(x, -1), positive)


def _iabs(b: ir.IRBuilder, x: ir.Value, dtype: DType) -> ir.Value:
    if _unsigned(dtype):
        return x
    return intrinsic(b, "llvm.abs", [x, mathlib.const(0, mathlib.I1)])   # abs(min) = min: wraps


def _extremum(signed: str, unsigned: str) -> Impl:
    return lambda b, a, dt: intrinsic(b, unsigned if _unsigned(dt) else signed, a)


def _icmp(op: str) -> Impl:
    def impl(b, a, dt):
        compare = b.icmp_unsigned if _unsigned(dt) else b.icmp_signed
        return compare(op, a[0], a[1])
    return impl


INT_RULES: dict[str, Impl] = {
    "neg": _unary(lambda b, x: b.neg(x)),
    "stop_gradient": _unary(lambda b, x: x),
    "abs": lambda b, a, dt: _iabs(b, a[0], dt),
    "sign": lambda b, a, dt: _isign(b, a[0], dt),
    "square": _unary(lambda b, x: b.mul(x, x)),
    "relu": lambda b, a, dt: a[0] if _unsigned(dt) else intrinsic(b, "llvm.smax", [a[0], _c(a[0], 0)]),
    "add": _binary(lambda b, x, y: b.add(x, y)),
    "sub": _binary(lambda b, x, y: b.sub(x, y)),
    "fmod": lambda b, a, dt: _int_fmod(b, a[0], a[1], _unsigned(dt)),
    "mul": _binary(lambda b, x, y: b.mul(x, y)),
    "maximum": _extremum("llvm.smax", "llvm.umax"),
    "minimum": _extremum("llvm.smin", "llvm.umin"),
    **{name: _icmp(op) for name, op in (("equal", "=="), ("not_equal", "!="), ("less", "<"),
                                          ("less_equal", "<="), ("greater", ">"), ("greater_equal", ">="))},
}

BOOL_RULES: dict[str, Impl] = {
    "logical_not": _unary(lambda b, x: b.not_(x)),
    "logical_and": _binary(lambda b, x, y: b.and_(x, y)),
    "logical_or": _binary(lambda b, x, y: b.or_(x, y)),
}

_RULES_BY_CLASS = {"float": FLOAT_RULES, "int": INT_RULES, "bool": BOOL_RULES}


def _dtype_class(dtype: DType) -> str:
    return "float" if dtype.is_float else "int" if dtype.is_int else "bool"


# --- select and cast --------------------------------------------------------------------------

def _select(b: ir.IRBuilder, args: list[ir.Value], node: Node) -> ir.Value:
    cond, x, y = _same_width(b, args)
    return b.select(cond, x, y)


def cast_value(b: ir.IRBuilder, x: ir.Value, src: DType, dst: DType) -> ir.Value:
    """Convert `x` (a register value of dtype `src`, scalar or vector) to dtype `dst`."""
    target = mathlib.shaped_like(scalar_type(dst), x.type)
    if src is dst:
        return x
    if dst is DType.bool:
        zero = _c(x, 0.0 if src.is_float else 0)
        return b.fcmp_unordered("!=", x, zero) if src.is_float else b.icmp_unsigned("!=", x, zero)
    if src is DType.f64 and dst is DType.f16:
        return b.fptrunc(_f64_to_f32_round_to_odd(b, x), target)
    if src.is_float and dst.is_float:
        wider = dst.itemsize > src.itemsize
        return b.fpext(x, target) if wider else b.fptrunc(x, target)
    if src.is_float:
        return _float_to_int(b, x, dst)
    if dst.is_float:
        return b.uitofp(x, target) if _unsigned(src) else b.sitofp(x, target)
    src_bits, dst_bits = scalar_type(src).width, scalar_type(dst).width
    if dst_bits == src_bits:
        return x   # i8 <-> u8: the same bits
    if dst_bits < src_bits:
        return b.trunc(x, target)
    return b.zext(x, target) if _unsigned(src) else b.sext(x, target)


def _f64_to_f32_round_to_odd(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """x rounded toward zero to f32, with the last bit set when inexact. x86 has no f64 -> f16
    instruction and LLVM's libcall for it is missing in the JIT; rounding to odd first keeps the
    second rounding (to f16) correct, as numpy's direct conversion is."""
    f32 = mathlib.shaped_like(mathlib.F32, x.type)
    bits_type = mathlib.shaped_like(mathlib.I32, x.type)
    nearest = b.fptrunc(x, f32)
    back = b.fpext(nearest, x.type)
    bits = b.bitcast(nearest, bits_type)
    away = b.fcmp_ordered(">", fabs(b, back), fabs(b, x))   # rounded up in magnitude: step back
    bits = b.select(away, b.sub(bits, mathlib.const(1, mathlib.I32, x.type)), bits)
    inexact = b.zext(b.fcmp_unordered("!=", back, x), bits_type)
    return b.bitcast(b.or_(bits, inexact), f32)


def _float_to_int(b: ir.IRBuilder, x: ir.Value, dst: DType) -> ir.Value:
    # Truncate toward zero through i32 (i64 for i64), as C and numpy do on x86; out of range and
    # NaN give the minimum integer (x86's answer) instead of LLVM's poison, then narrow types wrap.
    if mathlib.element_type(x.type) == mathlib.F16:
        x = b.fpext(x, mathlib.shaped_like(mathlib.F32, x.type))   # 2**31 has no f16 value
    width = 64 if dst is DType.i64 else 32
    wide = ir.IntType(width)
    in_range = b.fcmp_ordered("<", fabs(b, x), _c(x, 2.0 ** (width - 1)))
    converted = b.select(in_range, b.fptosi(x, mathlib.shaped_like(wide, x.type)),
                         mathlib.const(-(1 << (width - 1)), wide, x.type))
    narrow = scalar_type(dst)
    return converted if narrow == wide else b.trunc(converted, mathlib.shaped_like(narrow, x.type))


def _cast(b: ir.IRBuilder, args: list[ir.Value], node: Node) -> ir.Value:
    return cast_value(b, args[0], node.inputs[0].type.dtype, node.outputs[0].type.dtype)


# --- the rules --------------------------------------------------------------------------------

def _table_rule(name: str) -> Rule:
    def rule(b: ir.IRBuilder, args: list[ir.Value], node: Node) -> ir.Value:
        dtype = node.inputs[0].type.dtype
        impl = _RULES_BY_CLASS[_dtype_class(dtype)].get(name)
        if impl is None:
            raise IRError(f"{node.describe()}: op {name!r} has no element rule for {dtype} inputs")
        return impl(b, _same_width(b, list(args)), dtype)
    rule.__name__ = f"{name}_rule"
    return rule


def rules() -> dict[str, Rule]:
    """The element rule of every elementwise op, by op name (`constant` excepted)."""
    names = sorted(set(FLOAT_RULES) | set(INT_RULES) | set(BOOL_RULES))
    return {**{name: _table_rule(name) for name in names}, "select": _select, "cast": _cast}


def _register() -> None:
    table = rules()
    expected = {name for name, op in OPS.items() if op.fusion is Fusion.ELEMENTWISE} - {"constant"}
    missing = sorted(expected - set(table))
    if missing:
        raise IRError(f"elementwise ops without an element rule: {', '.join(missing)}")
    for name, rule in table.items():
        OPS[name].lower = rule


_register()

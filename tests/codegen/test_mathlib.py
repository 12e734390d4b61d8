"""mathlib against numpy: f32 within a few ulp of numpy's float64 result rounded to float32,
special values exact, f64 within 2 ulp of numpy, f16 within 1 ulp; scalar and vector code alike."""
from __future__ import annotations

import ctypes
import functools
import math

import numpy as np
import pytest
from llvmlite import ir

import nncompile
from nncompile.codegen import mathlib, target
from nncompile.codegen.loops import for_range
from nncompile.ir import Builder, f32
from nncompile.ir.errors import IRError

# the float64 references overflow, divide by zero and meet NaN on purpose
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

LLVM_TYPE = {np.float16: ir.HalfType(), np.float32: ir.FloatType(), np.float64: ir.DoubleType()}
I64 = ir.IntType(64)


@functools.cache
def compiled(name: str, dtype: type, nargs: int = 1):
    """out[i] = mathlib.name(x0[i], ...), built as a scalar loop and a loop over full vectors."""
    element = LLVM_TYPE[dtype]
    module = target.new_module(name)
    lanes = target.vector_lanes(np.dtype(dtype).itemsize)
    for fname, width in (("scalar", 1), ("vector", lanes)):
        value_type = ir.VectorType(element, width) if width > 1 else element
        fn = target.tune(ir.Function(module, ir.FunctionType(
            ir.VoidType(), [I64] + [element.as_pointer()] * (nargs + 1)), fname))
        b = ir.IRBuilder(fn.append_basic_block())
        count, *ptrs = fn.args
        with for_range(b, b.udiv(count, ir.Constant(I64, width))) as i:
            at = [b.bitcast(b.gep(p, [b.mul(i, ir.Constant(I64, width))]), value_type.as_pointer())
                  for p in ptrs]
            result = getattr(mathlib, name)(b, *[b.load(p, align=2) for p in at[:-1]])
            b.store(result, at[-1], align=2)
        b.ret_void()
    jit = target.JitModule(module)
    signature = ctypes.CFUNCTYPE(None, ctypes.c_int64, *[ctypes.c_void_p] * (nargs + 1))
    functions = {fname: signature(jit.address(fname)) for fname in ("scalar", "vector")}

    def run(*arrays: np.ndarray) -> dict[str, np.ndarray]:
        size = len(arrays[0])
        padded = [np.concatenate([np.asarray(a, dtype), np.zeros((-size) % lanes, dtype)]) for a in arrays]
        outs = {}
        for fname, fn in functions.items():
            out = np.empty_like(padded[0])
            fn(len(out), *[a.ctypes.data for a in padded], out.ctypes.data)
            outs[fname] = out[:size]
        run.jit = jit   # keep the code alive as long as the runner
        return outs

    return run


def ulp_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """How many floats of a's type lie between a and b (0 for two NaNs, huge for NaN vs number)."""
    ints = {2: np.int16, 4: np.int32, 8: np.int64}[a.dtype.itemsize]
    def ordered(x):
        i = x.view(ints).astype(np.int64)
        return np.where(i < 0, -(i & np.iinfo(ints).max), i)
    d = np.abs(ordered(a) - ordered(np.asarray(b, a.dtype)))
    nan_a, nan_b = np.isnan(a), np.isnan(np.asarray(b, a.dtype))
    return np.where(nan_a & nan_b, 0, np.where(nan_a | nan_b, 1 << 60, d))


def assert_exact(got: np.ndarray, want: np.ndarray) -> None:
    """Equal values, NaN where NaN, and the same sign of every non-NaN (so of zeros)."""
    assert np.all(ulp_distance(got, want) == 0), (got, want)
    number = ~np.isnan(got)
    assert np.array_equal(np.signbit(got[number]), np.signbit(want[number])), (got, want)


def _sigmoid64(x):
    z = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + z), z / (1 + z))


REFERENCE = {
    "exp": np.exp, "expm1": np.expm1, "log": np.log, "log1p": np.log1p, "tanh": np.tanh,
    "sigmoid": _sigmoid64, "erf": np.vectorize(math.erf, otypes=[np.float64]), "sin": np.sin,
    "cos": np.cos, "atan": np.arctan,
}
# max ulp distance from numpy's float64 result rounded to float32 (measured: sigmoid 2, rest 1)
F32_BOUND = {"exp": 1, "expm1": 2, "log": 1, "log1p": 2, "tanh": 2, "sigmoid": 3, "erf": 2,
             "sin": 1, "cos": 1, "atan": 2}

SPECIAL = [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0]
EXACT = 5   # the results at the first EXACT special values are exact, sign of zero included
EDGES_F32 = [1e-45, -1e-45, 3e-39, -3e-39, 1.2e-38, 3.4e38, -3.4e38, 88.72283, 88.72284, -87.33,
             -103.97, -103.98, 0.625, -0.625, 0.9999999, 1.0000001, 3.92, 4.0, -17.5, 1e-7, -1e-7]


def _inputs_f32(rng: np.random.Generator, name: str) -> np.ndarray:
    bits = rng.integers(0, 2 ** 32, 20000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    wide = rng.uniform(-110, 110, 20000)
    near = rng.uniform(-5, 5, 20000)
    small = rng.standard_normal(5000) * 1e-4
    x = np.concatenate([np.array(SPECIAL + EDGES_F32, np.float32), bits, wide, near, small]).astype(np.float32)
    if name in ("sin", "cos"):   # numpy's float64 sin is libm's; keep away from huge arguments
        x = x[~(np.abs(x) > 1e4)]
    return x


def _reference(name: str, x: np.ndarray) -> np.ndarray:
    return REFERENCE[name](x.astype(np.float64))


@pytest.mark.parametrize("name", sorted(F32_BOUND))
def test_f32_within_bound_and_specials_exact(name):
    x = _inputs_f32(np.random.default_rng(7), name)
    want = _reference(name, x).astype(np.float32)
    for kind, got in compiled(name, np.float32)(x).items():
        d = ulp_distance(got, want)
        worst = int(np.argmax(d))
        assert d.max() <= F32_BOUND[name], (kind, name, x[worst], got[worst], want[worst])
        assert_exact(got[:EXACT], want[:EXACT])


def test_exp_overflow_underflow_and_denormal_results():
    x = np.array([88.72283, 88.72284, 89.0, 1000.0, -87.3, -100.0, -103.97, -103.98, -104.0, -1e9],
                 np.float32)
    want = np.array([np.exp(np.float64(v)) for v in x]).astype(np.float32)
    for got in compiled("exp", np.float32)(x).values():
        assert np.all(ulp_distance(got, want) <= 1), (got, want)
        assert got[1] == np.inf and got[-1] == 0.0 and 0 < got[5] < 1.2e-38


def test_log_of_denormals_and_negatives():
    x = np.array([1e-45, 2e-45, 1e-40, 1.1754942e-38, -1e-45, -1.0, -np.inf], np.float32)
    want = np.log(x.astype(np.float64), where=x > 0, out=np.full(len(x), np.nan)).astype(np.float32)
    for got in compiled("log", np.float32)(x).values():
        assert np.all(ulp_distance(got, want) <= 1), (got, want)


def test_sigmoid_tails_and_tanh_saturation():
    x = np.array([-200.0, -104.0, -90.0, -20.0, 20.0, 200.0], np.float32)
    for got in compiled("sigmoid", np.float32)(x).values():
        assert np.all(ulp_distance(got, _reference("sigmoid", x).astype(np.float32)) <= 3)
        assert got[0] == 0.0 and got[-1] == 1.0
    for got in compiled("tanh", np.float32)(np.array([-50.0, 10.0, 1e30], np.float32)).values():
        assert np.array_equal(got, [-1.0, 1.0, 1.0])


@pytest.mark.parametrize("op", ["sigmoid", "tanh", "exp", "expm1", "log", "erf"])
def test_a_nan_that_llvm_can_see_comes_back_nan(op):
    """x + NaN is NaN at compile time to LLVM: nothing on the way may be poison (fptosi of a NaN
    is), or LLVM folds the result away and the output holds whatever the memory held."""
    b = Builder()
    x = b.input("x", f32[37])
    exe = nncompile.compile(b.finish([b.op(op, b.add(x, b.scalar(float("nan"), x)))], ["y"]))
    for _ in range(3):
        assert np.isnan(exe(np.ones(37, np.float32))).all()


def _pow_inputs(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    special = np.array([0.0, -0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 3.0, -3.0, np.inf, -np.inf,
                        np.nan, 1e-45, -1e-45, 1e38, 0.3, 2.5], np.float32)
    sx, sy = (a.ravel() for a in np.meshgrid(special, special))
    x = np.exp(rng.uniform(-30, 30, 30000))
    x = np.where(rng.random(len(x)) < 0.3, -x, x)
    y = rng.uniform(-150, 150, len(x)) / np.maximum(np.abs(np.log2(x * x) / 2), 0.01)
    y = np.where(x < 0, np.round(y), y)
    return np.concatenate([sx, x]).astype(np.float32), np.concatenate([sy, y]).astype(np.float32)


def test_pow_f32():
    x, y = _pow_inputs(np.random.default_rng(3))
    want = np.power(x.astype(np.float64), y.astype(np.float64)).astype(np.float32)
    for kind, got in compiled("pow", np.float32, 2)(x, y).items():
        d = ulp_distance(got, want)
        worst = int(np.argmax(d))
        assert d.max() <= 1, (kind, x[worst], y[worst], got[worst], want[worst])
        assert_exact(got[:18 * 18], want[:18 * 18])


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_f64_matches_numpy(name):
    rng = np.random.default_rng(11)
    x = np.concatenate([SPECIAL, [5e-324, -5e-324, 1e-310, 709.78, 709.79, -745.2],
                        rng.uniform(-40, 40, 3000), rng.standard_normal(1000) * 1e-5])
    if name == "log":
        x = np.abs(x)
    want = _reference(name, x)
    for kind, got in compiled(name, np.float64)(x).items():
        d = ulp_distance(got, want)
        assert d.max() <= 2, (kind, x[int(np.argmax(d))])


def test_pow_f64():
    x, y = (a.astype(np.float64) for a in _pow_inputs(np.random.default_rng(5)))
    want = np.power(x, y)
    for got in compiled("pow", np.float64, 2)(x, y).values():
        assert ulp_distance(got, want).max() <= 1


@pytest.mark.parametrize("name", ["exp", "expm1", "log", "log1p", "tanh", "sigmoid", "erf"])
def test_f16_rounds_the_f32_result(name):
    x = np.concatenate([SPECIAL, np.random.default_rng(2).uniform(-12, 12, 2000)]).astype(np.float16)
    want = _reference(name, x.astype(np.float32)).astype(np.float16)
    for got in compiled(name, np.float16)(x).values():
        assert ulp_distance(got, want).max() <= 1


def test_rejects_integer_values():
    module = target.new_module("bad")
    fn = ir.Function(module, ir.FunctionType(ir.IntType(32), [ir.IntType(32)]), "f")
    b = ir.IRBuilder(fn.append_basic_block())
    with pytest.raises(IRError, match=r"mathlib\.exp: expected f16, f32 or f64 values, got i32"):
        mathlib.exp(b, fn.args[0])

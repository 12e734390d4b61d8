"""Element rules against numpy: every elementwise op and dtype, compiled once as a scalar loop
and once over full host vectors, on random inputs and the special values."""
from __future__ import annotations

import ctypes
import functools
import math
import platform

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from llvmlite import ir

from nncompile.codegen import elementwise, target
from nncompile.codegen.kernel import load, scalar_type, storage_type, store
from nncompile.codegen.loops import for_range
from nncompile.ir import OPS, Builder, DType, Fusion, TensorType
from nncompile.ir.errors import IRError

# numpy's own results overflow, wrap and meet NaN on purpose
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

I64 = ir.IntType(64)
FLOATS = [DType.f32, DType.f64]
INTS = [DType.i8, DType.u8, DType.i32, DType.i64]


def _node(op: str, dtypes: tuple[DType, ...], attrs: tuple):
    builder = Builder()
    inputs = [builder.input(f"x{i}", TensorType(dt, (4,))) for i, dt in enumerate(dtypes)]
    return builder.op(op, *inputs, **dict(attrs)).producer


@functools.cache
def compiled(op: str, dtypes: tuple[DType, ...], attrs: tuple = ()):
    """out[i] = op(x0[i], ...) through the op's element rule: a scalar loop and a vector loop."""
    node = _node(op, dtypes, attrs)
    out_dtype = node.outputs[0].type.dtype
    all_dtypes = [*dtypes, out_dtype]
    lanes = target.vector_lanes(max(dt.itemsize for dt in all_dtypes))
    module = target.new_module(op)
    for name, width in (("scalar", 1), ("vector", lanes)):
        fn = target.tune(ir.Function(module, ir.FunctionType(
            ir.VoidType(), [I64] + [storage_type(dt).as_pointer() for dt in all_dtypes]), name))
        b = ir.IRBuilder(fn.append_basic_block())
        count, *ptrs = fn.args

        def at(ptr, dt, i, width=width):
            element = b.gep(ptr, [b.mul(i, ir.Constant(I64, width))])
            vector = ir.VectorType(storage_type(dt), width) if width > 1 else storage_type(dt)
            return b.bitcast(element, vector.as_pointer())

        with for_range(b, b.udiv(count, ir.Constant(I64, width))) as i:
            args = [load(b, at(p, dt, i), dt) for p, dt in zip(ptrs, dtypes)]
            store(b, OPS[op].lower(b, args, node), at(ptrs[-1], out_dtype, i), out_dtype)
        b.ret_void()
    jit = target.JitModule(module)
    signature = ctypes.CFUNCTYPE(None, ctypes.c_int64, *[ctypes.c_void_p] * len(all_dtypes))
    functions = {name: signature(jit.address(name)) for name in ("scalar", "vector")}

    def run(*arrays: np.ndarray) -> dict[str, np.ndarray]:
        size = len(arrays[0])
        padded = [aligned(np.concatenate([np.asarray(a, dt.numpy), np.zeros((-size) % lanes, dt.numpy)]))
                  for a, dt in zip(arrays, dtypes)]
        outs = {}
        for name, fn in functions.items():
            out = aligned(np.empty(len(padded[0]), out_dtype.numpy))
            fn(len(out), *[a.ctypes.data for a in padded], out.ctypes.data)
            outs[name] = out[:size]
        run.jit = jit   # the code lives as long as the runner
        return outs

    return run


def aligned(array: np.ndarray, alignment: int = 64) -> np.ndarray:
    """A copy of `array` starting on an `alignment`-byte boundary (vector loads assume it)."""
    raw = np.empty(array.nbytes + alignment, np.uint8)
    start = -raw.ctypes.data % alignment
    out = raw[start:start + array.nbytes].view(array.dtype)
    out[...] = array
    return out


def ulp_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Floats of a's type between a and b (0 for two NaNs, huge for NaN against a number)."""
    b = np.asarray(b, a.dtype)
    ints = {2: np.int16, 4: np.int32, 8: np.int64}[a.dtype.itemsize]

    def ordered(x):
        i = x.view(ints).astype(np.int64)
        return np.where(i < 0, -(i & np.iinfo(ints).max), i)
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    return np.where(nan_a & nan_b, 0, np.where(nan_a | nan_b, 1 << 60, np.abs(ordered(a) - ordered(b))))


def assert_same(got: np.ndarray, want: np.ndarray, context) -> None:
    """Bit for bit up to NaN payloads: equal values, NaN where NaN, zeros of the same sign."""
    want = np.asarray(want)
    assert got.dtype == want.dtype, (context, got.dtype, want.dtype)
    if got.dtype.kind != "f":
        bad = np.nonzero(got != want)[0]
        assert len(bad) == 0, (context, bad[:5], got[bad[:5]], want[bad[:5]])
        return
    d = ulp_distance(got, want)
    number = ~np.isnan(want)
    bad = np.nonzero((d != 0) | (number & (np.signbit(got) != np.signbit(want))))[0]
    assert len(bad) == 0, (context, bad[:5], got[bad[:5]], want[bad[:5]])


# --- inputs ---------------------------------------------------------------------------------

def float_values(dtype: DType, rng: np.random.Generator, count: int = 3000) -> np.ndarray:
    info = np.finfo(dtype.numpy)
    special = [0.0, -0.0, np.inf, -np.inf, np.nan, info.max, -info.max, info.smallest_subnormal,
               -info.smallest_subnormal, info.tiny, -info.tiny, 1.0, -1.0, 0.5, -0.5, 1.5, 2.5, -2.5,
               0.49999997, 3.0, -7.0]
    randoms = [rng.standard_normal(count), rng.uniform(-30, 30, count),
               np.exp(rng.uniform(-80, 80, count)) * rng.choice([-1, 1], count),
               np.round(rng.uniform(-5, 5, count) * 2) / 2]
    return np.concatenate([np.array(special, dtype.numpy), *[r.astype(dtype.numpy) for r in randoms]])


def int_values(dtype: DType, rng: np.random.Generator, count: int = 3000) -> np.ndarray:
    info = np.iinfo(dtype.numpy)
    edges = [0, 1, -1, 2, -2, 7, info.min, info.max, info.min + 1, info.max - 1]
    edges = [v for v in edges if info.min <= v <= info.max]
    randoms = [rng.integers(info.min, info.max, count, endpoint=True, dtype=dtype.numpy),
               rng.integers(max(info.min, -20), 20, count, dtype=dtype.numpy)]
    return np.concatenate([np.array(edges, dtype.numpy), *randoms])


def values(dtype: DType, rng: np.random.Generator) -> np.ndarray:
    if dtype is DType.bool:
        return rng.random(2000) < 0.5
    return float_values(dtype, rng) if dtype.is_float else int_values(dtype, rng)


def pairs(dtype: DType, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of a few specials, then random pairs with many equal ones."""
    x = values(dtype, rng)
    head = x[:21] if dtype.is_float else x[:10]
    a, b = (g.ravel() for g in np.meshgrid(head, head))
    y = np.where(rng.random(len(x)) < 0.2, x, rng.permutation(x))
    return np.concatenate([a, x]), np.concatenate([b, y])


# --- numpy oracles --------------------------------------------------------------------------

EXACT_UNARY = {
    "neg": np.negative, "abs": np.abs, "sign": np.sign, "sqrt": np.sqrt,
    "rsqrt": lambda x: np.ones_like(x) / np.sqrt(x), "reciprocal": lambda x: np.ones_like(x) / x,
    "square": np.square, "relu": lambda x: np.maximum(x, np.zeros_like(x)), "floor": np.floor,
    "ceil": np.ceil, "round": np.round,
}
EXACT_BINARY = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide, "maximum": np.maximum,
    "minimum": np.minimum, "equal": np.equal, "not_equal": np.not_equal, "less": np.less,
    "less_equal": np.less_equal, "greater": np.greater, "greater_equal": np.greater_equal,
}


def _sigmoid(x):
    z = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + z), z / (1 + z))


TRANSCENDENTAL = {   # float64 references, and the allowed ulp distance of (f32, f64) results
    "exp": (np.exp, 1, 2), "expm1": (np.expm1, 2, 2), "log": (np.log, 1, 2),
    "log1p": (np.log1p, 2, 2), "tanh": (np.tanh, 2, 2), "sigmoid": (_sigmoid, 3, 4),
    "erf": (np.vectorize(math.erf, otypes=[np.float64]), 2, 2), "sin": (np.sin, 1, 2),
    "cos": (np.cos, 1, 2),
}
INT_UNARY = ["neg", "abs", "sign", "square", "relu"]
INT_BINARY = ["add", "sub", "mul", "maximum", "minimum", "equal", "not_equal", "less",
              "less_equal", "greater", "greater_equal"]


def test_every_elementwise_op_has_a_rule():
    ops = {name for name, op in OPS.items() if op.fusion is Fusion.ELEMENTWISE} - {"constant"}
    assert ops == set(elementwise.rules())
    assert all(OPS[name].lower is not None for name in ops)


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("op", sorted(EXACT_UNARY))
def test_float_unary_exact(op, dtype):
    x = values(dtype, np.random.default_rng(1))
    for kind, got in compiled(op, (dtype,))(x).items():
        assert_same(got, EXACT_UNARY[op](x), (op, dtype, kind))


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("op", sorted(TRANSCENDENTAL))
def test_float_transcendental(op, dtype):
    x = values(dtype, np.random.default_rng(2))
    if op in ("sin", "cos"):
        x = x[~(np.abs(x) > 1e4)]   # libm and numpy reduce huge arguments differently
    reference, f32_ulps, f64_ulps = TRANSCENDENTAL[op]
    want = reference(x.astype(np.float64)).astype(dtype.numpy)
    bound = f32_ulps if dtype is DType.f32 else f64_ulps
    for kind, got in compiled(op, (dtype,))(x).items():
        d = ulp_distance(got, want)
        worst = int(np.argmax(d))
        assert d.max() <= bound, (op, dtype, kind, x[worst], got[worst], want[worst])
        assert_same(got[:5], want[:5], (op, dtype, kind, "0, -0, inf, -inf, nan"))


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("op", sorted(EXACT_BINARY))
def test_float_binary_exact(op, dtype):
    x, y = pairs(dtype, np.random.default_rng(3))
    for kind, got in compiled(op, (dtype, dtype))(x, y).items():
        assert_same(got, EXACT_BINARY[op](x, y), (op, dtype, kind))


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_pow(dtype):
    x, y = pairs(dtype, np.random.default_rng(4))
    y = np.where(np.abs(y) > 50, y / 1e3, y).astype(dtype.numpy)
    want = np.power(x.astype(np.float64), y.astype(np.float64)).astype(dtype.numpy)
    for kind, got in compiled("pow", (dtype, dtype))(x, y).items():
        assert ulp_distance(got, want).max() <= 1, (dtype, kind)
        special = slice(0, 21 * 21)
        exact = np.isin(x[special], [0, 1, -1, np.inf, -np.inf]) | np.isin(y[special], [0, np.inf, -np.inf]) \
            | np.isnan(x[special]) | np.isnan(y[special])
        assert_same(got[special][exact], want[special][exact], (dtype, kind))


@pytest.mark.parametrize("dtype", INTS, ids=str)
@pytest.mark.parametrize("op", INT_UNARY)
def test_int_unary(op, dtype):
    x = values(dtype, np.random.default_rng(5))
    want = np.maximum(x, np.zeros_like(x)) if op == "relu" else EXACT_UNARY[op](x)
    for kind, got in compiled(op, (dtype,))(x).items():
        assert_same(got, want, (op, dtype, kind))


@pytest.mark.parametrize("dtype", INTS, ids=str)
@pytest.mark.parametrize("op", INT_BINARY)
def test_int_binary(op, dtype):
    x, y = pairs(dtype, np.random.default_rng(6))
    for kind, got in compiled(op, (dtype, dtype))(x, y).items():
        assert_same(got, EXACT_BINARY[op](x, y), (op, dtype, kind))


@pytest.mark.parametrize("op, reference", [("logical_and", np.logical_and), ("logical_or", np.logical_or)])
def test_bool_binary(op, reference):
    rng = np.random.default_rng(7)
    x, y = rng.random(500) < 0.5, rng.random(500) < 0.5
    for kind, got in compiled(op, (DType.bool, DType.bool))(x, y).items():
        assert_same(got, reference(x, y), (op, kind))


def test_logical_not():
    x = np.random.default_rng(8).random(500) < 0.5
    for got in compiled("logical_not", (DType.bool,))(x).values():
        assert_same(got, np.logical_not(x), "logical_not")


@pytest.mark.parametrize("dtype", [*FLOATS, *INTS, DType.bool], ids=str)
def test_select(dtype):
    rng = np.random.default_rng(9)
    x, y = values(dtype, rng), values(dtype, rng)
    y = y[: len(x)] if len(y) >= len(x) else np.resize(y, len(x))
    cond = rng.random(len(x)) < 0.5
    for kind, got in compiled("select", (DType.bool, dtype, dtype))(cond, x, y).items():
        assert_same(got, np.where(cond, x, y), (dtype, kind))


ALL_DTYPES = [DType.f16, DType.f32, DType.f64, DType.i8, DType.u8, DType.i32, DType.i64, DType.bool]


def _cast_inputs(src: DType, dst: DType, rng: np.random.Generator) -> np.ndarray:
    """Values whose conversion numpy defines: in range of dst when it is an integer type."""
    if not src.is_float:
        x = values(src, rng)
        if dst is DType.f16 and src.is_int:
            x = np.clip(x, -2048, 2048).astype(src.numpy)   # exact in f16: no double rounding doubt
        return x
    x = float_values(src, rng)
    if src is DType.f64 and dst is DType.f16:   # next to f16 ties, where rounding twice fails
        tie = 1 + 2.0 ** -11
        x = np.concatenate([x, [tie, tie + 2.0 ** -40, tie - 2.0 ** -40, -tie - 2.0 ** -40, 65520.0,
                                65519.99, 2.0 ** -25, 2.0 ** -25 + 2.0 ** -60]])
    if dst.is_int:
        info = np.iinfo(dst.numpy)
        lo, hi = max(info.min, -1e6), min(info.max, 1e6)
        x = np.clip(np.nan_to_num(x), lo, hi)
        x = np.concatenate([x, rng.uniform(lo, hi, 500)]).astype(src.numpy)
        x = x[(x >= info.min) & (x <= info.max)]   # f16/f32 rounding may leave the range
    return x


@pytest.mark.parametrize("dst", ALL_DTYPES, ids=str)
@pytest.mark.parametrize("src", ALL_DTYPES, ids=str)
def test_cast(src, dst):
    x = _cast_inputs(src, dst, np.random.default_rng(10))
    for kind, got in compiled("cast", (src,), (("dtype", dst),))(x).items():
        assert_same(got, x.astype(dst.numpy), (src, dst, kind))


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="numpy's out-of-range casts are x86's")
@pytest.mark.parametrize("dst", INTS, ids=str)
@pytest.mark.parametrize("src", FLOATS, ids=str)
def test_cast_out_of_range_like_numpy_on_x86(src, dst):
    x = np.array([np.nan, np.inf, -np.inf, 1e10, -1e10, 3e9, -3e9, 300.0, -1.0, -2.7, 1e30, -1e19],
                 src.numpy)
    for kind, got in compiled("cast", (src,), (("dtype", dst),))(x).items():
        assert_same(got, x.astype(dst.numpy), (src, dst, kind))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(width=32), st.floats(width=32)), min_size=1, max_size=40),
       st.sampled_from(["add", "sub", "mul", "div", "maximum", "minimum", "less", "not_equal"]))
def test_f32_binary_on_arbitrary_floats(pairs_, op):
    x = np.array([p[0] for p in pairs_], np.float32)
    y = np.array([p[1] for p in pairs_], np.float32)
    for kind, got in compiled(op, (DType.f32, DType.f32))(x, y).items():
        assert_same(got, EXACT_BINARY[op](x, y), (op, kind))


# --- helpers and errors ---------------------------------------------------------------------

def _function(module: ir.Module, ret: ir.Type, args: list[ir.Type], name: str = "f"):
    fn = ir.Function(module, ir.FunctionType(ret, args), name)
    return fn, ir.IRBuilder(fn.append_basic_block())


def test_constant_and_splat_build_vectors():
    module = target.new_module("helpers")
    f32x4 = ir.VectorType(ir.FloatType(), 4)
    fn, b = _function(module, ir.VoidType(), [ir.FloatType(), f32x4.as_pointer(), f32x4.as_pointer()])
    x, out_splat, out_const = fn.args
    b.store(elementwise.splat(b, x, f32x4), out_splat)
    b.store(elementwise.constant(DType.f32, 2.5, f32x4), out_const)
    b.ret_void()
    jit = target.JitModule(module)
    call = ctypes.CFUNCTYPE(None, ctypes.c_float, ctypes.c_void_p, ctypes.c_void_p)(jit.address("f"))
    a, c = aligned(np.zeros(4, np.float32)), aligned(np.zeros(4, np.float32))
    call(-1.25, a.ctypes.data, c.ctypes.data)
    assert np.array_equal(a, [-1.25] * 4) and np.array_equal(c, [2.5] * 4)
    assert elementwise.constant(DType.i8, 255, None).constant == 255   # wrapped to the i8 bits
    assert elementwise.constant(DType.bool, 1, None).type == ir.IntType(1)


def test_rule_splats_a_scalar_among_vectors():
    module = target.new_module("mixed")
    f32x8 = ir.VectorType(ir.FloatType(), 8)
    fn, b = _function(module, ir.VoidType(), [f32x8.as_pointer(), ir.FloatType(), f32x8.as_pointer()])
    x, y, out = fn.args
    b.store(OPS["sub"].lower(b, [b.load(x), y], _node("sub", (DType.f32, DType.f32), ())), out)
    b.ret_void()
    jit = target.JitModule(module)
    call = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_float, ctypes.c_void_p)(jit.address("f"))
    xs, res = aligned(np.arange(8, dtype=np.float32)), aligned(np.zeros(8, np.float32))
    call(xs.ctypes.data, 0.5, res.ctypes.data)
    assert np.array_equal(res, xs - np.float32(0.5))


def test_rule_for_a_dtype_the_op_does_not_take_names_node_and_dtype():
    builder = Builder()
    node = builder.exp(builder.input("x", TensorType(DType.f32, (2,)))).producer
    node.inputs[0].type = TensorType(DType.i32, (2,))   # as a broken pass might leave it
    module = target.new_module("bad")
    fn, b = _function(module, scalar_type(DType.i32), [scalar_type(DType.i32)])
    with pytest.raises(IRError, match=r"node 'exp'.*no element rule for i32"):
        OPS["exp"].lower(b, [fn.args[0]], node)


def test_constant_rejects_non_finite_integers():
    with pytest.raises(IRError, match="constant inf has no i32 value"):
        elementwise.constant(DType.i32, math.inf)

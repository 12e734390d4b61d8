"""The composed numpy-like math of keras.ops (ops/numpy_math.py) against numpy: values with NaN,
infinities and signed zeros, eagerly, traced (reference interpreter) and compiled, in float32
and float64; dtypes; gradients are in test_ops_grad.py."""
from __future__ import annotations

import numpy as np
import pytest

import nncompile
from nncompile.keras import ops
from tests.keras.ops_harness import all_ways, both, trace_graph

SPECIALS = [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 0.5, -0.5, 2.0, -3.0, 1e-30, -1e-30, 1e20,
            -1e20, 0.999, -0.999, 1.5, 7.25]


def _values(dtype, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([SPECIALS, rng.standard_normal(40) * 3, rng.uniform(-1, 1, 20)]).astype(dtype)


def _pairs(dtype) -> tuple[np.ndarray, np.ndarray]:
    """Every special against every special, then random pairs."""
    s = np.array(SPECIALS, dtype)
    x, y = np.meshgrid(s, s)
    return (np.concatenate([x.ravel(), _values(dtype, 1)]), np.concatenate([y.ravel(), _values(dtype, 2)]))


def _nan_to_num_set(x):
    return np.nan_to_num(x, nan=1.5, posinf=5.0, neginf=-5.0)


# name -> (the op on inputs, numpy's result on them, how many inputs)
UNARY = {name: (getattr(ops, name), getattr(np, name)) for name in
         ["arctan", "arcsin", "arccos", "arcsinh", "arccosh", "arctanh", "deg2rad", "rad2deg", "fabs", "cbrt",
          "sinc", "isposinf", "isneginf", "nan_to_num", "copy"]}
UNARY["nan_to_num_set"] = (lambda x: ops.nan_to_num(x, nan=1.5, posinf=5.0, neginf=-5.0), _nan_to_num_set)
BINARY = {name: (getattr(ops, name), getattr(np, name)) for name in
          ["arctan2", "hypot", "logaddexp", "logaddexp2", "isclose"]}
BINARY["isclose_nan"] = (lambda x, y: ops.isclose(x, y, rtol=1e-3, atol=0.1, equal_nan=True),
                         lambda x, y: np.isclose(x, y, rtol=1e-3, atol=0.1, equal_nan=True))
BINARY["divide_no_nan"] = (ops.divide_no_nan, lambda x, y: np.where(y == 0, 0, x / np.where(y == 0, 1, y)))


def _assert_same(got, want, dtype, what: str) -> None:
    """Values within a few ulp of numpy's in `dtype`, NaN where NaN, and the sign of every zero."""
    got, want = np.asarray(got), np.asarray(want)
    want = want.astype(dtype) if want.dtype.kind == "f" else want
    assert (got.dtype, got.shape) == (want.dtype, want.shape), what
    if got.dtype.kind == "b":
        np.testing.assert_array_equal(got, want, err_msg=what)
        return
    tol = 4 * np.finfo(dtype).eps
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol, err_msg=what)
    zeros = want == 0
    np.testing.assert_array_equal(np.signbit(got[zeros]), np.signbit(want[zeros]), err_msg=f"{what}: sign of 0")



@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(UNARY) + sorted(BINARY))
def test_values_and_specials_match_numpy_eager_traced_and_compiled(name, dtype):
    fn, numpy_fn = UNARY.get(name) or BINARY[name]
    arrays = [_values(dtype, 0)] if name in UNARY else list(_pairs(dtype))
    # in float64, rounded to the dtype; nan_to_num's default bounds are the dtype's own
    want = numpy_fn(*[a if name.startswith("nan_to_num") else a.astype(np.float64) for a in arrays])
    for kind, got in zip(("eager", "traced", "compiled"), all_ways(fn, *arrays)):
        _assert_same(got, want, dtype, f"{name} {kind}")


def test_allclose_is_one_bool_over_every_element():
    x = np.random.default_rng(3).standard_normal(50).astype(np.float32)
    for got in both(ops.allclose, x, x * (1 + 1e-7)):
        assert got.dtype == bool and got.shape == () and bool(got)
    for got in both(ops.allclose, x, np.where(np.arange(x.size) == 7, x + 1, x)):
        assert not bool(got)
    with_nan = np.where(np.arange(x.size) == 3, np.nan, x)
    for got in both(lambda a, c: ops.allclose(a, c, equal_nan=True), with_nan, with_nan):
        assert bool(got)
    assert not ops.allclose(with_nan, with_nan)


@pytest.mark.parametrize("axis, keepdims", [(None, False), (0, True), (1, False), ((0, 2), False)])
def test_ptp_is_the_range_along_axes(axis, keepdims):
    x = np.random.default_rng(4).standard_normal((3, 4, 5)).astype(np.float32)
    for got in [*both(lambda v: ops.ptp(v, axis=axis, keepdims=keepdims), x)]:
        np.testing.assert_array_equal(got, np.ptp(x, axis=axis, keepdims=keepdims))


@pytest.mark.parametrize("axis", [None, 0, 1, -1])
@pytest.mark.parametrize("dtype", ["float32", "int32", "bool"])
def test_cumprod_along_any_axis(axis, dtype):
    x = (np.random.default_rng(5).integers(-3, 4, (3, 4)) if dtype != "bool"
         else np.random.default_rng(5).random((3, 4)) < 0.7).astype(dtype)
    want = np.cumprod(x, axis=axis)
    for got in both(lambda v: ops.cumprod(v, axis=axis), x):
        assert got.dtype == ("int32" if dtype == "bool" else dtype)
        np.testing.assert_array_equal(got, want)
    graph, _ = trace_graph(lambda v: ops.cumprod(v, axis=0), [x.astype(np.float32)], batched=True)
    np.testing.assert_array_equal(nncompile.compile(graph)(x.astype(np.float32)),
                                  np.cumprod(x.astype(np.float32), axis=0))


def test_dtypes_as_keras():
    ints = np.array([1, -2, 3], np.int32)
    assert ops.arctan(ints).dtype == np.float32 and ops.arctan2(ints, 2).dtype == np.float32
    assert ops.hypot(np.array([3.0]), ints).dtype == np.float64     # 64-bit kept, as on TensorFlow
    assert ops.nan_to_num(ints).dtype == np.int32 and ops.isposinf(ints).dtype == bool
    assert ops.copy(np.array([True])).dtype == bool and ops.divide_no_nan(ints, 0).dtype == np.float32
    np.testing.assert_array_equal(ops.isneginf(ints), [False] * 3)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_heaviside_fmod_ldexp_and_saturate_cast_match_numpy():
    x, y = _pairs(np.float32)
    for got in all_ways(ops.heaviside, x, y):
        _assert_same(got, np.heaviside(x, y), np.float32, "heaviside")
    finite = np.isfinite(x) & np.isfinite(y) & (y != 0) & (np.abs(x / np.where(y == 0, 1, y)) < 1e6)
    for got in both(ops.fmod, x[finite], y[finite]):
        np.testing.assert_allclose(got, np.fmod(x[finite], y[finite]), rtol=1e-5, atol=1e-5)
    ints, divisors = np.array([-7, 7, -7, 7, 5, 0], np.int32), np.array([2, 2, -3, -3, 0, 4], np.int32)
    with np.errstate(divide="ignore", invalid="ignore"):
        want = np.fmod(ints, divisors)
    for got in both(ops.fmod, ints, divisors):
        np.testing.assert_array_equal(got, want)
    exponents = np.array([-3, 0, 2, 10, -1, 5], np.int32)
    for got in both(ops.ldexp, ints[:6].astype(np.float32), exponents):
        np.testing.assert_array_equal(got, np.ldexp(ints.astype(np.float32), exponents))
    values = np.array([1e10, -1e10, 3.7, -3.7, np.inf, -np.inf, np.nan, 255.5], np.float32)
    for dtype, want in [("int32", [2**31 - 1, -2**31, 3, -3, 2**31 - 1, -2**31, 0, 255]),
                        ("uint8", [255, 0, 3, 0, 255, 0, 0, 255]), ("int8", [127, -128, 3, -3, 127, -128, 0, 127])]:
        for got in both(lambda v: ops.saturate_cast(v, dtype), values):
            assert got.dtype == np.dtype(dtype)
            np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(ops.saturate_cast(np.array([70000, -5], np.int32), "uint8"), [255, 0])
    np.testing.assert_array_equal(ops.saturate_cast(np.array([1e300, -1e300]), "float32"),
                                  np.array([np.finfo(np.float32).max, np.finfo(np.float32).min]))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_running_totals_keep_infinities_and_nan_in_place():
    x = np.array([1.0, 2.0, np.inf, np.nan, 3.0, -np.inf], np.float32)
    for got in both(ops.cumsum, x):
        np.testing.assert_array_equal(got, np.cumsum(x))
    for got in both(ops.nancumsum, x):
        np.testing.assert_array_equal(got, np.nancumsum(x))
    for got in both(ops.cumprod, x):
        np.testing.assert_array_equal(got, np.cumprod(x))
    assert ops.cumprod(np.zeros((2, 0), np.float32), axis=1).shape == (2, 0)
    assert ops.nancumsum(np.array([1, 2], np.int8)).dtype == np.int8
    assert ops.cumsum(np.array([True, False]), dtype="bool").dtype == bool
    assert ops.cumprod(np.array([True, False])).dtype == np.int32


GRADIENTS_AT = {   # name -> (fn, the point, d fn / d each input there, worked out by hand)
    "logaddexp_tie": (ops.logaddexp, [0.3, 0.3], [0.5, 0.5]),
    "logaddexp2_tie": (ops.logaddexp2, [-1.0, -1.0], [0.5, 0.5]),
    "hypot_tie": (ops.hypot, [3.0, 3.0], [2 ** -0.5, 2 ** -0.5]),
    "arctan2_on_the_y_axis": (ops.arctan2, [2.0, 0.0], [0.0, -0.5]),
    "arccos_at_0": (ops.arccos, [0.0], [-1.0]),
    "arcsinh_at_0": (ops.arcsinh, [0.0], [1.0]),
}


@pytest.mark.parametrize("name", sorted(GRADIENTS_AT))
def test_gradients_at_ties_and_zeros(name):
    from nncompile.ir import Builder, f64
    from nncompile.passes.autodiff import gradients
    from nncompile.runtime.reference import run
    fn, point, want = GRADIENTS_AT[name]
    b = Builder()
    inputs = [b.input(f"x{i}", f64[()]) for i in range(len(point))]
    with ops.tracing(b):
        y = fn(*inputs)
    graph = b.finish(gradients(b.graph, y, inputs))
    got = run(graph, [np.float64(p) for p in point])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_inverse_hyperbolics_in_float16_and_for_large_values():
    x = np.array([0.5, 300.0, 60000.0, np.inf], np.float16)
    np.testing.assert_allclose(ops.arcsinh(x).astype(np.float64), np.arcsinh(x.astype(np.float64)), rtol=2e-3)
    np.testing.assert_allclose(ops.arccosh(x[1:]).astype(np.float64), np.arccosh(x[1:].astype(np.float64)),
                               rtol=2e-3)
    big = np.array([-1e20, 1e200, -1e200], np.float64)
    with np.errstate(invalid="ignore"):
        np.testing.assert_allclose(ops.arccosh(big), np.arccosh(big), rtol=1e-15)
    np.testing.assert_allclose(ops.arcsinh(big), np.arcsinh(big), rtol=1e-15)


def test_bools_ints_and_empty_inputs_as_keras():
    flags = np.array([True, False])
    np.testing.assert_array_equal(ops.isposinf(flags), [False, False])
    np.testing.assert_array_equal(ops.isneginf(np.array([3], np.int32)), [False])
    assert bool(ops.allclose(np.zeros(0, np.float32), np.zeros(0, np.float32)))
    np.testing.assert_array_equal(ops.isin(flags, np.array([True])), [True, False])
    np.testing.assert_array_equal(ops.isin(np.array([1, 2]), np.zeros(0, np.int32)), [False, False])
    assert ops.inner(flags, flags).dtype == bool and bool(ops.inner(flags, flags))


def test_fmod_is_cs_fmod_exactly():
    """The IR's fmod (LLVM's frem, integer srem): exact for large quotients, -0.0 and infinite
    divisors as C's; integers by 0 and by -1 give 0."""
    x = np.array([5.0, 1e7 + 1, 1.0, -0.0, -7.5, 3.0], np.float32)
    y = np.array([0.1, 0.1, np.inf, 2.0, 2.0, -0.7], np.float32)
    for got in all_ways(ops.fmod, x, y):
        _assert_same(got, np.fmod(x, y), np.float32, "fmod")
    big = np.array([2 ** 62 + 1, -7, 7, -9], np.int64)
    divisors = np.array([3, 2, 0, -1], np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        want = np.fmod(big, divisors)
    for got in all_ways(ops.fmod, big, divisors):
        np.testing.assert_array_equal(got, want)


def test_ldexp_does_not_overflow_on_the_way():
    x = np.array([1e-30, 2.0 ** 100, 3.0], np.float32)
    e = np.array([200, -150, 4], np.int32)
    for got in all_ways(ops.ldexp, x, e):
        np.testing.assert_allclose(got, np.ldexp(x.astype(np.float64), e), rtol=1e-6)
    with pytest.raises(TypeError, match=r"ops\.ldexp: the exponents must be integers"):
        ops.ldexp(x, e.astype(np.float32))


def test_saturate_cast_clips_to_the_narrower_range():
    halves = np.array([1.0, np.inf, -np.inf, np.nan], np.float16)
    np.testing.assert_array_equal(ops.saturate_cast(halves, "int32"), [1, 65504, -65504, 0])
    np.testing.assert_array_equal(ops.saturate_cast(halves[:3], "float32"), [1.0, 65504.0, -65504.0])
    np.testing.assert_array_equal(ops.saturate_cast(np.array([-1.0, 0.0, 0.5, 3.0]), "bool"),
                                  [False, False, True, True])

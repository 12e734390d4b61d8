"""More of `keras.ops`' numpy-like math, each op composed from the op table: the inverse
trigonometric and hyperbolic functions (on the IR's `atan`), angles, NaN and infinity handling,
closeness tests and running products.

    >>> from nncompile.keras import ops
    >>> ops.arctan2(np.array([1.0, -1.0], "float32"), -1.0).round(4)
    array([ 2.3562, -2.3562], dtype=float32)
"""
from __future__ import annotations

import math

import numpy as np

from nncompile.keras.ops.core import (canonical_axes, float_dtype, float_op, keras_op, result_type, tensor,
                                      tensors)
from nncompile.keras.ops.numpy import running


def _floats(b, x1, x2):
    """x1 and x2 in the float dtype Keras gives a binary float op on them."""
    return tensors(b, x1, x2, dtype=result_type(x1, x2, float))


def _atan2(b, y, x):
    """numpy's arctan2 on two values of one float dtype. Where |x| >= |y|, atan(y / x), moved by
    half a turn towards y's side when x < 0; elsewhere sign(y) pi/2 - atan(x / y), whose
    gradient holds at x = 0 too. Both zero: +-0 or +-pi by the signs of the zeros; both
    infinite: the odd multiples of pi/4, as numpy's."""
    zero = b.scalar(0.0, y)
    one = b.scalar(1.0, y)
    steep = b.less(b.abs(x), b.abs(y))
    # y's side is that of its sign bit (-0 included)
    y_negative = b.logical_or(b.less(y, zero), b.less(b.div(one, y), zero))
    turn = b.select(y_negative, b.scalar(-math.pi, y), b.scalar(math.pi, y))
    x_negative = b.logical_or(b.less(x, zero), b.less(b.div(one, x), zero))
    flat = b.op("atan", b.div(y, b.select(steep, one, x)))
    flat = b.select(x_negative, b.add(flat, turn), flat)
    upright = b.sub(b.mul(b.sign(y), b.scalar(math.pi / 2, y)), b.op("atan", b.div(x, b.select(steep, y, one))))
    out = b.select(steep, upright, flat)
    both_zero = b.logical_and(b.equal(x, zero), b.equal(y, zero))
    out = b.select(both_zero, b.select(x_negative, b.add(y, turn), y), out)
    both_infinite = b.logical_and(_is_infinite(b, x), _is_infinite(b, y))
    quarter = b.select(x_negative, b.scalar(3 * math.pi / 4, y), b.scalar(math.pi / 4, y))
    return b.select(both_infinite, b.mul(b.sign(y), quarter), out)


def _is_infinite(b, v):
    return b.equal(b.abs(v), b.scalar(np.inf, v))


@keras_op
def arctan2(b, x1, x2):
    """The angle of the point (x2, x1) from the x axis, in [-pi, pi] (numpy's arctan2).

    >>> float(arctan2(1.0, 0.0))
    1.5707963705062866
    """
    return _atan2(b, *_floats(b, x1, x2))


arctan = float_op("arctan", lambda b, v: b.op("atan", v), "Elementwise arctangent, in (-pi/2, pi/2).")


def _sqrt_one_minus_square(b, v):
    return b.sqrt(b.mul(b.sub(b.scalar(1.0, v), v), b.add(b.scalar(1.0, v), v)))


arcsin = float_op("arcsin", lambda b, v: _atan2(b, v, _sqrt_one_minus_square(b, v)),
                  "Elementwise arcsine, in [-pi/2, pi/2]; NaN outside [-1, 1].")
arccos = float_op("arccos", lambda b, v: _atan2(b, _sqrt_one_minus_square(b, v), v),
                  "Elementwise arccosine, in [0, pi]; NaN outside [-1, 1].")


def _arcsinh(b, v):
    """sign(x) log(|x| + sqrt(x**2 + 1)), without the cancellation of x + sqrt(x**2 + 1) for
    negative x; |x| past `_square_limit` as log(2|x|), where x**2 would overflow."""
    a, one = b.abs(v), b.scalar(1.0, v)
    far_off = b.greater(a, b.scalar(_square_limit(v), v))
    # each branch fed only its own inputs, so that neither's gradient is NaN where it is not taken
    small, large = b.select(far_off, one, a), b.select(far_off, a, one)
    # log(a + sqrt(a**2 + 1)) = log1p(a + a**2 / (1 + sqrt(a**2 + 1))): exact for small a
    near = b.log1p(b.add(small, b.div(b.square(small), b.add(one, b.sqrt(b.add(b.square(small), one))))))
    far = b.add(b.log(large), b.scalar(math.log(2.0), v))
    return _with_sign(b, v, b.select(far_off, far, near))


def _square_limit(v) -> float:
    """Where x**2 would overflow v's dtype (with room to add to it), and log(2x) is exact."""
    return float(np.sqrt(np.finfo(v.type.dtype.numpy).max)) / 4


def _with_sign(b, v, magnitude):
    """`magnitude` with the sign of `v` (zeros and NaN kept: sign(0) * 0 would lose -0)."""
    zero = b.scalar(0.0, v)
    return b.select(b.less(v, zero), b.neg(magnitude), b.select(b.equal(v, zero), v, magnitude))


arcsinh = float_op("arcsinh", _arcsinh, "Elementwise inverse hyperbolic sine.")


def _arccosh(b, v):
    """log(x + sqrt((x - 1)(x + 1))); x past `_square_limit` as log(2x), where the product
    would overflow; NaN below 1."""
    one = b.scalar(1.0, v)
    far_off = b.greater(b.abs(v), b.scalar(_square_limit(v), v))
    small, large = b.select(far_off, one, v), b.select(far_off, v, one)
    near = b.log(b.add(small, b.sqrt(b.mul(b.sub(small, one), b.add(small, one)))))
    far = b.add(b.log(large), b.scalar(math.log(2.0), v))
    return b.select(b.less(v, one), b.scalar(np.nan, v), b.select(far_off, far, near))


arccosh = float_op("arccosh", _arccosh, "Elementwise inverse hyperbolic cosine; NaN below 1.")
arctanh = float_op("arctanh", lambda b, v: b.mul(b.sub(b.log1p(v), b.log1p(b.neg(v))), b.scalar(0.5, v)),
                   "Elementwise inverse hyperbolic tangent; +-inf at +-1, NaN outside [-1, 1].")
deg2rad = float_op("deg2rad", lambda b, v: b.mul(v, b.scalar(math.pi / 180, v)), "Degrees to radians.")
rad2deg = float_op("rad2deg", lambda b, v: b.mul(v, b.scalar(180 / math.pi, v)), "Radians to degrees.")
fabs = float_op("fabs", lambda b, v: b.abs(v), "Elementwise `|x|` as a float.")


def _cbrt(b, v):
    """|x| ** (1/3) with the sign of x, refined by a Newton step (1/3 is not exact: the power
    alone is off by |log x| ulp); 0 and inf as they are."""
    a = b.abs(v)
    r = b.pow(a, b.scalar(1 / 3, v))
    square = b.square(r)
    refined = b.sub(r, b.div(b.sub(b.mul(square, r), a), b.mul(b.scalar(3.0, v), square)))
    exact = b.logical_or(b.equal(r, b.scalar(0.0, v)), _is_infinite(b, r))
    return _with_sign(b, v, b.select(exact, r, refined))


cbrt = float_op("cbrt", _cbrt, "Elementwise cube root (of negative numbers too).")
sinc = float_op("sinc", lambda b, v: _sinc(b, v), "Elementwise `sin(pi x) / (pi x)`, 1 at 0.")


def _sinc(b, v):
    zero = b.equal(v, b.scalar(0.0, v))
    angle = b.mul(b.select(zero, b.scalar(1.0, v), v), b.scalar(math.pi, v))
    return b.select(zero, b.scalar(1.0, v), b.div(b.sin(angle), angle))


@keras_op
def hypot(b, x1, x2):
    """Elementwise `sqrt(x1**2 + x2**2)`, scaled by the larger so that it does not overflow."""
    u, v = _floats(b, x1, x2)
    a, c = b.abs(u), b.abs(v)
    # scaled by the larger magnitude, which is held constant for the gradient: it cancels, and
    # h = s sqrt((x1/s)**2 + (x2/s)**2) then gives d h / d x1 = x1 / h even where |x1| = |x2|
    s = b.op("stop_gradient", b.maximum(a, c))
    s = b.select(b.equal(s, b.scalar(0.0, s)), b.scalar(1.0, s), s)
    out = b.mul(s, b.sqrt(b.add(b.square(b.div(u, s)), b.square(b.div(v, s)))))
    # an infinity wins even over NaN (C99's hypot, numpy's)
    infinite = b.logical_or(_is_infinite(b, a), _is_infinite(b, c))
    return b.select(infinite, b.scalar(np.inf, out), out)


def _logaddexp(b, x1, x2, base: float):
    """log_base(base**x1 + base**x2), shifted by the larger argument so that it does not
    overflow; two equal infinities give themselves."""
    u, v = _floats(b, x1, x2)
    first = b.greater_equal(u, v)
    top, other = b.select(first, u, v), b.select(first, v, u)
    scale = b.scalar(math.log(base), u)
    # top + log_base(1 + base**(other - top)): at a tie each argument gets half the gradient
    out = b.add(top, b.div(b.log1p(b.exp(b.mul(b.sub(other, top), scale))), scale))
    same_infinity = b.logical_and(b.equal(u, v), _is_infinite(b, u))     # inf - inf would be NaN
    return b.select(same_infinity, u, out)


@keras_op
def logaddexp(b, x1, x2):
    """Elementwise `log(exp(x1) + exp(x2))`, without overflow."""
    return _logaddexp(b, x1, x2, math.e)


@keras_op
def logaddexp2(b, x1, x2):
    """Elementwise `log2(2**x1 + 2**x2)`, without overflow."""
    return _logaddexp(b, x1, x2, 2.0)


@keras_op
def divide_no_nan(b, x1, x2):
    """Elementwise `x1 / x2`, and 0 where `x2` is 0.

    >>> divide_no_nan(np.array([1.0, 2.0], "float32"), np.array([0.0, 4.0], "float32"))
    array([0. , 0.5], dtype=float32)
    """
    u, v = _floats(b, x1, x2)
    zero = b.equal(v, b.scalar(0.0, v))
    return b.select(zero, b.scalar(0.0, u), b.div(u, b.select(zero, b.scalar(1.0, v), v)))


@keras_op
def nan_to_num(b, x, nan=0.0, posinf=None, neginf=None):
    """`x` with NaN replaced by `nan` and +-inf by `posinf` / `neginf` (default: the dtype's
    largest and lowest finite values); integers come back as they are."""
    v = tensor(b, x)
    if not v.type.dtype.is_float:
        return v
    info = np.finfo(v.type.dtype.numpy)
    posinf = info.max if posinf is None else posinf
    neginf = info.min if neginf is None else neginf
    v = b.select(b.not_equal(v, v), b.scalar(nan, v), v)
    v = b.select(b.equal(v, b.scalar(np.inf, v)), b.scalar(posinf, v), v)
    return b.select(b.equal(v, b.scalar(-np.inf, v)), b.scalar(neginf, v), v)


@keras_op
def isposinf(b, x):
    """Elementwise `x == +inf`, as bools."""
    v = tensor(b, x)
    return b.equal(v, b.scalar(np.inf, v)) if v.type.dtype.is_float else _falses(b, v)


@keras_op
def isneginf(b, x):
    """Elementwise `x == -inf`, as bools."""
    v = tensor(b, x)
    return b.equal(v, b.scalar(-np.inf, v)) if v.type.dtype.is_float else _falses(b, v)


def _falses(b, v):
    """False in v's shape: integers and bools are never infinite."""
    return b.broadcast(b.constant(np.array(False)), shape=list(v.type.shape))


@keras_op
def isclose(b, x1, x2, rtol=1e-5, atol=1e-8, equal_nan=False):
    """Elementwise `|x1 - x2| <= atol + rtol * |x2|` (equal infinities are close; NaN is close
    to NaN only with `equal_nan`), as numpy's isclose."""
    u, v = tensors(b, x1, x2, dtype=result_type(x1, x2, float))
    bound = b.add(b.scalar(atol, v), b.mul(b.scalar(rtol, v), b.abs(v)))
    finite = b.logical_and(b.less(b.abs(u), b.scalar(np.inf, u)), b.less(b.abs(v), b.scalar(np.inf, v)))
    close = b.logical_or(b.equal(u, v), b.logical_and(finite, b.less_equal(b.abs(b.sub(u, v)), bound)))
    if equal_nan:
        close = b.logical_or(close, b.logical_and(b.not_equal(u, u), b.not_equal(v, v)))
    return close


@keras_op
def allclose(b, x1, x2, rtol=1e-5, atol=1e-8, equal_nan=False):
    """Whether every element of `x1` is close to `x2`'s (`isclose`), as a bool scalar."""
    close = isclose.__wrapped__(b, x1, x2, rtol, atol, equal_nan)
    if 0 in close.type.shape:     # nothing to compare: all close, as numpy's
        return b.constant(np.array(True))
    return tensor(b, b.reduce_min(tensor(b, close, "int32"), axes=list(range(close.type.rank))), "bool")


@keras_op
def ptp(b, x, axis=None, keepdims=False):
    """The range (maximum - minimum) of `x` along `axis` (None: all)."""
    v = tensor(b, x)
    axes = canonical_axes(axis, v.type.rank, "ptp")
    return b.sub(b.reduce_max(v, axes=axes, keepdims=keepdims), b.reduce_min(v, axes=axes, keepdims=keepdims))


@keras_op
def copy(b, x):
    """A copy of `x`."""
    v = tensor(b, x)
    return b.mul(v, b.scalar(1, v)) if v.type.dtype.name != "bool" else b.logical_or(v, v)   # -0 stays


@keras_op
def cumprod(b, x, axis=None, dtype=None):
    """Running product along `axis` (None: of the flattened tensor), by a scan.

    >>> cumprod(np.array([1, 2, 3], "int32"))
    array([1, 2, 6], dtype=int32)
    """
    out = dtype or ("int32" if result_type(x) == "bool" else result_type(x))
    v = tensor(b, x, "int32" if out == "bool" else out)
    return tensor(b, running(b, v, axis, "cumprod", product=True), out)



@keras_op
def heaviside(b, x1, x2):
    """The step function: 0 where `x1` < 0, `x2` where it is 0, 1 where it is > 0 (NaN stays)."""
    u, v = _floats(b, x1, x2)
    zero = b.scalar(0.0, u)
    step = b.select(b.less(u, zero), zero, b.select(b.greater(u, zero), b.scalar(1.0, u), v))
    return b.select(b.not_equal(u, u), u, step)


@keras_op
def fmod(b, x1, x2):
    """The remainder of `x1 / x2` with the sign of `x1` (C's fmod, the IR's; numpy's `%` takes
    x2's); an integer remainder by 0 is 0, as numpy's."""
    dtype = result_type(x1, x2)
    return b.op("fmod", *tensors(b, x1, x2, dtype="int32" if dtype == "bool" else dtype))


@keras_op
def ldexp(b, x1, x2):
    """Elementwise `x1 * 2**x2` (x2 integers), in floatx for integer x1.

    >>> f"{float(ldexp(np.float32(1e-30), 200)):.4g}"     # 2**200 alone would overflow float32
    '1.607e+30'
    """
    from nncompile.keras.ops.numpy import floor_divide

    if "int" not in result_type(x2):
        raise TypeError(f"ops.ldexp: the exponents must be integers; received {result_type(x2)}")
    u = tensor(b, x1, float_dtype(x1))
    exponent = tensor(b, x2, "int32")
    # by 2**(e // 2) and then 2**(e - e // 2): each power stays in range where 2**e alone would
    # overflow or underflow before the product is taken
    half = floor_divide.__wrapped__(b, exponent, 2)
    rest = b.sub(exponent, half)
    two = b.scalar(2.0, u)
    return b.mul(b.mul(u, b.pow(two, tensor(b, half, u.type.dtype))), b.pow(two, tensor(b, rest, u.type.dtype)))


def _nan_ignoring(op: str, name: str, doc: str):
    def fn(b, x1, x2):
        if result_type(x1, x2) == "bool":     # as numbers, then bools again (or / and)
            return tensor(b, fn(b, *tensors(b, x1, x2, dtype="int32")), "bool")
        u, v = tensors(b, x1, x2)
        out = b.op(op, u, v)
        if not u.type.dtype.is_float:
            return out
        return b.select(b.not_equal(u, u), v, b.select(b.not_equal(v, v), u, out))
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc
    return keras_op(fn)


fmax = _nan_ignoring("maximum", "fmax", "Elementwise maximum, a NaN ignored unless both are NaN (numpy's fmax).")
fmin = _nan_ignoring("minimum", "fmin", "Elementwise minimum, a NaN ignored unless both are NaN (numpy's fmin).")


def _euclid(b, u, v):
    """The greatest common divisors of |u| and |v| (integers), by Euclid's algorithm: a fixed
    number of steps (enough for the dtype's worst case, consecutive Fibonacci numbers), each
    pair left as it is once its remainder is 0. One scan, eager or traced."""
    from nncompile.keras.ops.arrays import where
    from nncompile.keras.ops.loops import scan_values
    from nncompile.keras.ops.numpy import equal, mod

    steps = 96 if u.type.dtype.itemsize > 4 else 48

    def step(pair, _):
        x, y = pair
        done = equal(y, 0)
        return (where(done, x, y), where(done, y, mod(x, where(done, 1, y)))), None
    return scan_values(b, step, (b.abs(u), b.abs(v)), length=steps)[0][0]


def _integers(b, x1, x2, op: str):
    dtype = result_type(x1, x2)
    if "int" not in dtype:
        raise ValueError(f"ops.{op}: the inputs must be integers; received {dtype}")
    return tensors(b, x1, x2, dtype=dtype)


@keras_op
def gcd(b, x1, x2):
    """The greatest common divisor of |x1| and |x2|, elementwise (0 with 0)."""
    return _euclid(b, *_integers(b, x1, x2, "gcd"))


@keras_op
def lcm(b, x1, x2):
    """The least common multiple of |x1| and |x2|, elementwise (0 if either is 0)."""
    from nncompile.keras.ops.numpy import floor_divide

    u, v = _integers(b, x1, x2, "lcm")
    divisor = _euclid(b, u, v)
    safe = b.select(b.equal(divisor, b.scalar(0, divisor)), b.scalar(1, divisor), divisor)
    return b.abs(b.mul(floor_divide.__wrapped__(b, u, safe), v))

"""The numpy-like ops of `keras.ops`: arithmetic, comparisons, math functions and reductions.

    >>> from nncompile.keras import ops
    >>> ops.mean(np.array([[1, 2], [3, 4]]), axis=0)
    array([2., 3.], dtype=float32)
"""
from __future__ import annotations

import numpy as np

from nncompile.keras.ops.core import (canonical_axes, float_dtype, float_op, keras_op, namespace_fallback,
                                      keras_op_named, result_type, tensor, tensors)
from nncompile.keras.ops.loops import scan_values


def _binary(b, op: str, x1, x2, dtype=None):
    """`op` on x1 and x2 promoted to one dtype (Keras's rules unless `dtype` is given).

    Two bools give a bool (add is or, multiply is and), computed as int32: the IR's arithmetic
    takes numbers only."""
    dtype = dtype or result_type(x1, x2)
    if dtype == "bool":
        return tensor(b, b.op(op, *tensors(b, x1, x2, dtype="int32")), "bool")
    return b.op(op, *tensors(b, x1, x2, dtype=dtype))


def _numeric(dtype: str) -> str:
    """The dtype the IR computes `dtype` in: bools as int32 (its arithmetic, comparisons and
    reductions take numbers only)."""
    return "int32" if dtype == "bool" else dtype


def _number(b, x):
    """x as a number: bools become int32."""
    return tensor(b, x, _numeric(result_type(x)))


def _arithmetic(op: str, name: str, doc: str):
    return keras_op_named(lambda b, x1, x2: _binary(b, op, x1, x2), name, doc)


add = _arithmetic("add", "add", """Elementwise `x1 + x2`, broadcasting.

    >>> add(np.array([1, 2]), 0.5)
    array([1.5, 2.5], dtype=float32)
    """)
subtract = _arithmetic("sub", "subtract", "Elementwise `x1 - x2`, broadcasting.")
multiply = _arithmetic("mul", "multiply", "Elementwise `x1 * x2`, broadcasting.")
maximum = _arithmetic("maximum", "maximum", "Elementwise maximum, broadcasting.")
minimum = _arithmetic("minimum", "minimum", "Elementwise minimum, broadcasting.")


@keras_op
def divide(b, x1, x2):
    """Elementwise true division; integers divide in floatx.

    >>> divide(np.array([1, 2]), 2)
    array([0.5, 1. ], dtype=float32)
    """
    return _binary(b, "div", x1, x2, dtype=result_type(x1, x2, float))


true_divide = divide


def _floor_div(b, x1, x2, dtype: str):
    """floor(x1 / x2) in `dtype`; integers divide in float64, exact for |values| < 2**53."""
    wide = "float64" if "int" in dtype else dtype
    q = b.floor(b.div(*tensors(b, x1, x2, dtype=wide)))
    return tensor(b, q, dtype)


@keras_op
def floor_divide(b, x1, x2):
    """Elementwise `x1 // x2` (rounded towards minus infinity, as numpy).

    >>> floor_divide(np.array([7, -7], "int32"), 2)
    array([ 3, -4], dtype=int32)
    """
    dtype = result_type(x1, x2)
    if dtype == "bool":
        dtype = "int32"
    return _floor_div(b, x1, x2, dtype)


@keras_op
def mod(b, x1, x2):
    """Elementwise remainder with the sign of `x2`, as numpy's `%`.

    >>> mod(np.array([7, -7], "int32"), 3)
    array([1, 2], dtype=int32)
    """
    dtype = result_type(x1, x2)
    if dtype == "bool":
        dtype = "int32"
    a, d = tensors(b, x1, x2, dtype=dtype)
    return b.sub(a, b.mul(_floor_div(b, a, d, dtype), d))


@keras_op
def power(b, x1, x2):
    """Elementwise `x1 ** x2`; integer powers are computed in float64 and rounded back.

    >>> power(np.array([2, 3], "int32"), 2)
    array([4, 9], dtype=int32)
    """
    dtype = result_type(x1, x2)
    if "float" in dtype:
        return _binary(b, "pow", x1, x2, dtype=dtype)
    return tensor(b, b.round(_binary(b, "pow", x1, x2, dtype="float64")), dtype)


def _compare(op: str):
    def compare(b, x1, x2):
        dtype = result_type(x1, x2)
        # bool operands compare as integers: the IR compares numbers only.
        return b.op(op, *tensors(b, x1, x2, dtype=_numeric(dtype)))
    return keras_op_named(compare, op, f"Elementwise `{op}` of x1 and x2 (bool result), "
                                       f"broadcasting.")


equal = _compare("equal")
not_equal = _compare("not_equal")
less = _compare("less")
less_equal = _compare("less_equal")
greater = _compare("greater")
greater_equal = _compare("greater_equal")


def _logical(op: str):
    def logical(b, x1, x2):
        return b.op(op, *tensors(b, x1, x2, dtype="bool"))
    return keras_op_named(logical, op, f"Elementwise `{op}` of x1 and x2 taken as bools.")


logical_and = _logical("logical_and")
logical_or = _logical("logical_or")


@keras_op
def logical_not(b, x):
    """Elementwise not of `x` taken as bool."""
    return b.logical_not(tensor(b, x, "bool"))


@keras_op
def clip(b, x, x_min, x_max):
    """`x` limited to [x_min, x_max]; bools clip as int32.

    >>> clip(np.array([-1.0, 0.5, 3.0]), 0, 1)
    array([0. , 0.5, 1. ])
    """
    dtype = _numeric(result_type(x))
    lo, hi = tensor(b, x_min, dtype), tensor(b, x_max, dtype)
    return b.minimum(b.maximum(tensor(b, x, dtype), lo), hi)


# --- unary -------------------------------------------------------------------------------------

def _same_dtype(op: str, name: str, doc: str):
    """A unary op keeping the dtype (bools compute as int32, as Keras's)."""
    def fn(b, x):
        return b.op(op, _number(b, x))
    return keras_op_named(fn, name, doc)


def _float(op: str, doc: str):
    """A unary float op of the IR under its own name (floor and ceil too: their float result
    on integers is Keras's)."""
    return float_op(op, lambda b, v: b.op(op, v), doc)


negative = _same_dtype("neg", "negative", "Elementwise `-x`.")
absolute = _same_dtype("abs", "absolute", "Elementwise `|x|`.")
abs = absolute  # noqa: A001  (Keras's name)
square = _same_dtype("square", "square", "Elementwise `x * x`.")
sign = _same_dtype("sign", "sign", "Elementwise -1, 0 or 1 by the sign of `x`.")
exp = _float("exp", "Elementwise `e ** x`.")
expm1 = _float("expm1", "Elementwise `exp(x) - 1`, exact near 0.")
log = _float("log", "Elementwise natural logarithm.")
log1p = _float("log1p", "Elementwise `log(1 + x)`, exact near 0.")
sqrt = _float("sqrt", "Elementwise square root.")
rsqrt = _float("rsqrt", "Elementwise `1 / sqrt(x)`.")
reciprocal = _float("reciprocal", "Elementwise `1 / x`.")
sin = _float("sin", "Elementwise sine.")
cos = _float("cos", "Elementwise cosine.")
tanh = _float("tanh", "Elementwise hyperbolic tangent.")
erf = _float("erf", "Elementwise error function.")
floor = _float("floor", "Elementwise largest whole number <= x.")
ceil = _float("ceil", "Elementwise smallest whole number >= x.")
tan = float_op("tan", lambda b, v: b.div(b.sin(v), b.cos(v)), "Elementwise tangent.")
log2 = float_op("log2", lambda b, v: b.div(b.log(v), b.scalar(np.log(2.0), v)),
                "Elementwise base-2 logarithm.")
log10 = float_op("log10", lambda b, v: b.div(b.log(v), b.scalar(np.log(10.0), v)),
                 "Elementwise base-10 logarithm.")
exp2 = float_op("exp2", lambda b, v: b.exp(b.mul(v, b.scalar(np.log(2.0), v))),
                "Elementwise `2 ** x`.")
sinh = float_op("sinh", lambda b, v: b.mul(b.sub(b.exp(v), b.exp(b.neg(v))), b.scalar(0.5, v)),
                "Elementwise hyperbolic sine.")
cosh = float_op("cosh", lambda b, v: b.mul(b.add(b.exp(v), b.exp(b.neg(v))), b.scalar(0.5, v)),
                "Elementwise hyperbolic cosine.")


@keras_op
def stop_gradient(b, variable):
    """`variable` itself, through which no gradient flows: what is computed from it trains as
    if it were a constant (a target network's output, a straight-through estimator).

    >>> stop_gradient(np.array([1.0, 2.0], "float32"))
    array([1., 2.], dtype=float32)
    """
    v = tensor(b, variable)
    return v if v.type.dtype.name == "bool" else b.op("stop_gradient", v)


@keras_op
def trunc(b, x):
    """Elementwise rounding towards zero; integers stay integers."""
    dtype = result_type(x)
    if dtype == "bool" or "int" in dtype:
        return tensor(b, x, dtype)
    v = tensor(b, x, dtype)
    return b.mul(b.sign(v), b.floor(b.abs(v)))


@keras_op
def isnan(b, x):
    """Elementwise whether x is NaN (the one value unequal to itself)."""
    v = _number(b, x)
    return b.not_equal(v, v)


@keras_op
def isfinite(b, x):
    """Elementwise whether x is neither infinite nor NaN (x - x is 0 exactly then)."""
    v = _number(b, x)
    return b.equal(b.sub(v, v), b.scalar(0, v))


@keras_op
def isinf(b, x):
    """Elementwise whether x is +inf or -inf."""
    v = _number(b, x)
    if not v.type.dtype.is_float:
        return b.not_equal(v, v)       # integers are never infinite
    return b.equal(b.abs(v), b.scalar(np.inf, v))


@keras_op
def logical_xor(b, x1, x2):
    """Elementwise exclusive or of x1 and x2 taken as bools."""
    ints = [tensor(b, tensor(b, x, "bool"), "int32") for x in (x1, x2)]
    return b.not_equal(*ints)


@keras_op
def round(b, x, decimals=0):  # noqa: A001  (Keras's name)
    """Elementwise rounding half to even at `decimals` digits; integers stay integers.

    >>> round(np.array([0.5, 1.5, 0.26]), 1)
    array([0.5, 1.5, 0.3])
    """
    dtype = result_type(x)
    if "int" in dtype and decimals >= 0:
        return tensor(b, x, dtype)
    v = tensor(b, x, float_dtype(x))
    if decimals == 0:
        return b.round(v)
    scale = b.scalar(10.0 ** decimals, v)
    return tensor(b, b.div(b.round(b.mul(v, scale)), scale), dtype if "int" in dtype else None)


# --- reductions -----------------------------------------------------------------------------

def _reduce(b, op: str, v, axis, keepdims: bool, name: str):
    axes = canonical_axes(axis, v.type.rank, name)
    if not axes:
        return v
    return b.op(op, v, axes=axes, keepdims=keepdims)


def _accumulating_dtype(x) -> str:
    """sum/prod's result dtype: bool and narrow integers accumulate in int32, as Keras's."""
    dtype = result_type(x)
    return "int32" if dtype in ("bool", "int8", "uint8", "int16", "uint16") else dtype


@keras_op
def sum(b, x, axis=None, keepdims=False):  # noqa: A001  (Keras's name)
    """Sum over `axis` (None: all axes).

    >>> sum(np.array([[1, 2], [3, 4]], "int32"), axis=1)
    array([3, 7], dtype=int32)
    """
    return _reduce(b, "reduce_sum", tensor(b, x, _accumulating_dtype(x)), axis, keepdims, "sum")


@keras_op
def prod(b, x, axis=None, keepdims=False, dtype=None):
    """Product over `axis` (None: all axes)."""
    v = tensor(b, x, dtype or _accumulating_dtype(x))
    return _reduce(b, "reduce_prod", v, axis, keepdims, "prod")


def _mean_parts(b, x, axis, keepdims):
    """mean in the compute dtype (at least float32) and the dtype to return it in."""
    compute = result_type(x, "float32")
    original = result_type(x)
    out = compute if "int" in original or original == "bool" else original
    return _reduce(b, "reduce_mean", tensor(b, x, compute), axis, keepdims, "mean"), out


@keras_op
def mean(b, x, axis=None, keepdims=False):
    """Mean over `axis` (None: all axes); integers average in floatx, float16 in float32."""
    m, out = _mean_parts(b, x, axis, keepdims)
    return tensor(b, m, out)


def _extremum(op: str, name: str, doc: str):
    def fn(b, x, axis=None, keepdims=False, initial=None):
        dtype = result_type(x)
        # The IR reduces numbers: bools reduce as int32 and come back as bools.
        v = tensor(b, x, _numeric(dtype))
        out = _reduce(b, op, v, axis, keepdims, name)
        if initial is not None:
            out = b.op("maximum" if op == "reduce_max" else "minimum", out,
                       tensor(b, initial, out.type.dtype))
        return tensor(b, out, dtype)
    return keras_op_named(fn, name, doc)


max = _extremum("reduce_max", "max",  # noqa: A001  (Keras's name)
                "Maximum over `axis` (None: all), at least `initial`.")
min = _extremum("reduce_min", "min",  # noqa: A001  (Keras's name)
                "Minimum over `axis` (None: all), at most `initial`.")
amax, amin = max, min


def _variance(b, x, axis, keepdims):
    compute = result_type(x, "float32")
    v = tensor(b, x, compute)
    axes = canonical_axes(axis, v.type.rank, "var")
    centred = b.sub(v, b.reduce_mean(v, axes=axes, keepdims=True)) if axes else b.sub(v, v)
    return _reduce(b, "reduce_mean", b.square(centred), axes, keepdims, "var")


@keras_op
def var(b, x, axis=None, keepdims=False):
    """Variance (population, ddof=0) over `axis`; integers in floatx."""
    return tensor(b, _variance(b, x, axis, keepdims), result_type(x, float))


@keras_op
def std(b, x, axis=None, keepdims=False):
    """Standard deviation (population, ddof=0) over `axis`; integers in floatx.

    >>> std(np.array([1.0, 3.0]))
    array(1.)
    """
    return tensor(b, b.sqrt(_variance(b, x, axis, keepdims)), result_type(x, float))


def _arg(op: str, name: str):
    def fn(b, x, axis=None, keepdims=False):
        v = tensor(b, x)
        v = tensor(b, v, "int32") if v.type.dtype.name == "bool" else v
        if axis is None:
            flat = b.reshape(v, shape=[-1])
            out = b.op(op, flat, axis=0)
            out = b.reshape(out, shape=[1] * v.type.rank) if keepdims else out
        else:
            out = b.op(op, v, axis=canonical_axes(axis, v.type.rank, name)[0], keepdims=keepdims)
        return tensor(b, out, "int32")
    return keras_op_named(fn, name, f"Index (int32) of the first {name[3:]}imum along `axis` "
                                    f"(None: of the flattened tensor).")


argmax = _arg("argmax", "argmax")
argmin = _arg("argmin", "argmin")


@keras_op
def all(b, x, axis=None, keepdims=False):  # noqa: A001  (Keras's name)
    """Whether every element along `axis` is nonzero."""
    ones = tensor(b, tensor(b, x, "bool"), "int32")
    return b.greater(_reduce(b, "reduce_min", ones, axis, keepdims, "all"), b.scalar(0, ones))


@keras_op
def any(b, x, axis=None, keepdims=False):  # noqa: A001  (Keras's name)
    """Whether some element along `axis` is nonzero."""
    ones = tensor(b, tensor(b, x, "bool"), "int32")
    return b.greater(_reduce(b, "reduce_max", ones, axis, keepdims, "any"), b.scalar(0, ones))


@keras_op
def count_nonzero(b, x, axis=None):
    """How many elements along `axis` (None: all) are nonzero, as int32."""
    v = _number(b, x)
    nonzero = tensor(b, b.not_equal(v, b.scalar(0, v)), "int32")
    return _reduce(b, "reduce_sum", nonzero, axis, False, "count_nonzero")


@keras_op
def logsumexp(b, x, axis=None, keepdims=False):
    """log(sum(exp(x))) over `axis`, shifted by the maximum so that it does not overflow.

    >>> float(logsumexp(np.array([1000.0, 1000.0])))
    1000.6931471805599
    """
    v = tensor(b, x, float_dtype(x))
    axes = canonical_axes(axis, v.type.rank, "logsumexp")
    top = b.reduce_max(v, axes=axes, keepdims=True)
    # An all -inf (or inf) slice would give inf - inf = NaN: shift by 0 there.
    shift = b.select(b.equal(b.sub(top, top), b.scalar(0.0, top)), top, b.scalar(0.0, top))
    summed = b.reduce_sum(b.exp(b.sub(v, shift)), axes=axes, keepdims=True)
    out = b.add(b.log(summed), shift)
    return out if keepdims else b.reshape(out, shape=[d for a, d in enumerate(v.type.shape)
                                                      if a not in axes])


@keras_op
def cumsum(b, x, axis=None, dtype=None):
    """Running sum along `axis` (None: of the flattened tensor).

    >>> cumsum(np.array([1, 2, 3], "int32"))
    array([1, 3, 6], dtype=int32)
    """
    out = dtype or _numeric(result_type(x))      # bools count in int32 unless asked for bools
    return tensor(b, running(b, tensor(b, x, _numeric(out)), axis, "cumsum"), out)


def running(b, v, axis, name: str, product: bool = False):
    """The running sum (or product) of `v` along `axis` (None: of the flattened `v`) for the op
    `name`: an integer sum over a static axis is a product with a triangular matrix of ones,
    anything else a scan along the axis that carries the total (a float's product with the
    matrix would spread an inf or NaN to every total, as inf * 0)."""
    if axis is None:
        v, axis = b.reshape(v, shape=[-1]), 0
    rank = v.type.rank
    axis = canonical_axes(axis, rank, name)[0]
    n = v.type.shape[axis]
    if n == 0:
        return v
    perm = [a for a in range(rank) if a != axis] + [axis]
    moved = b.transpose(v, perm=perm)
    if isinstance(n, int) and not product and not v.type.dtype.is_float:
        upper = b.constant(np.triu(np.ones((n, n))).astype(moved.type.dtype.numpy))
        totals = b.matmul(b.reshape(moved, shape=[*moved.type.shape[:-1], 1, n]), upper)
        totals = b.reshape(totals, shape=moved.type.shape)
    else:
        totals = _running_scan(b, moved, product)
    return b.transpose(totals, perm=list(np.argsort(perm)))


def _running_scan(b, v, product: bool):
    """The running sum or product of `v` along its last axis, by a scan over that axis."""
    rank = v.type.rank
    steps = b.transpose(v, perm=[rank - 1, *range(rank - 1)])
    start = b.broadcast(b.scalar(1 if product else 0, v), shape=list(steps.type.shape[1:]))

    def step(total, x):
        total = multiply(total, x) if product else add(total, x)
        return total, total

    totals = scan_values(b, step, start, steps)[1]
    return b.transpose(totals, perm=[*range(1, rank), 0])


__getattr__ = namespace_fallback("numpy")

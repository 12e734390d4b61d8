"""Elementwise ops: unary math, binary arithmetic with numpy broadcasting, comparisons, select.

Binary ops take inputs of one dtype (no implicit promotion, as in XLA); the front end casts.
"""
from __future__ import annotations

import numpy as np

from nncompile.ir.dtypes import DType
from nncompile.ir.errors import ShapeError
from nncompile.ir.optable import OPS, Attr, AttrKind, Fusion, defop
from nncompile.ir.types import TensorType, broadcast_shapes

_FLOAT = "float"
_NUMBER = "number"
_BOOL = "bool"


def _check_dtype(t: TensorType, allowed: str, what: str) -> None:
    ok = {_FLOAT: t.dtype.is_float,
          _NUMBER: t.dtype.is_float or t.dtype.is_int,
          _BOOL: t.dtype is DType.bool}[allowed]
    if not ok:
        raise ShapeError(f"{what} has dtype {t.dtype}; expected a {allowed} dtype")


def _unary_rule(allowed: str):
    def infer(ts, attrs):
        _check_dtype(ts[0], allowed, "input")
        return ts[0]
    return infer


def _binary_rule(allowed: str, result: DType | None = None):
    def infer(ts, attrs):
        a, b = ts
        if a.dtype != b.dtype:
            raise ShapeError(f"input dtypes {a.dtype} and {b.dtype} differ; cast one first")
        _check_dtype(a, allowed, "input")
        return TensorType(result or a.dtype, broadcast_shapes(a.shape, b.shape))
    return infer


def _stable_sigmoid(x):
    z = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + z), z / (1 + z))


def _fmod(x, y):
    """C's fmod (the dividend's sign); an integer remainder by 0 is 0, as numpy's."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.fmod(x, y)


def _erf(x):
    from math import erf

    return np.vectorize(erf, otypes=[np.float64])(x)


UNARY = {
    "neg": (np.negative, _NUMBER),
    "abs": (np.abs, _NUMBER),
    "sign": (np.sign, _NUMBER),
    "exp": (np.exp, _FLOAT),
    "expm1": (np.expm1, _FLOAT),
    "log": (np.log, _FLOAT),
    "log1p": (np.log1p, _FLOAT),
    "sqrt": (np.sqrt, _FLOAT),
    "rsqrt": (lambda x: 1 / np.sqrt(x), _FLOAT),
    "reciprocal": (lambda x: 1 / x, _FLOAT),
    "square": (np.square, _NUMBER),
    "tanh": (np.tanh, _FLOAT),
    "sigmoid": (_stable_sigmoid, _FLOAT),
    "relu": (lambda x: np.maximum(x, 0), _NUMBER),
    "erf": (_erf, _FLOAT),
    "sin": (np.sin, _FLOAT),
    "cos": (np.cos, _FLOAT),
    "atan": (np.arctan, _FLOAT),
    "floor": (np.floor, _FLOAT),
    "ceil": (np.ceil, _FLOAT),
    "round": (np.round, _FLOAT),   # half to even, like numpy and ONNX Round
    "logical_not": (np.logical_not, _BOOL),
    # x itself, through which no gradient flows (JAX's stop_gradient): what a model computes
    # from it is differentiated as if it were a constant.
    "stop_gradient": (np.copy, _NUMBER),
}

BINARY = {
    "add": (np.add, _NUMBER),
    "sub": (np.subtract, _NUMBER),
    "mul": (np.multiply, _NUMBER),
    "div": (np.divide, _FLOAT),
    "pow": (np.power, _FLOAT),
    "fmod": (_fmod, _NUMBER),
    "maximum": (np.maximum, _NUMBER),
    "minimum": (np.minimum, _NUMBER),
    "logical_and": (np.logical_and, _BOOL),
    "logical_or": (np.logical_or, _BOOL),
}

COMPARE = {
    "equal": np.equal,
    "not_equal": np.not_equal,
    "less": np.less,
    "less_equal": np.less_equal,
    "greater": np.greater,
    "greater_equal": np.greater_equal,
}

for _name, (_fn, _allowed) in UNARY.items():
    defop(_name, inputs=("x",), fusion=Fusion.ELEMENTWISE, infer=_unary_rule(_allowed),
          reference=lambda xs, attrs, fn=_fn: fn(xs[0]))

for _name, (_fn, _allowed) in BINARY.items():
    defop(_name, inputs=("x", "y"), fusion=Fusion.ELEMENTWISE, infer=_binary_rule(_allowed),
          reference=lambda xs, attrs, fn=_fn: fn(xs[0], xs[1]))

for _name, _fn in COMPARE.items():
    defop(_name, inputs=("x", "y"), fusion=Fusion.ELEMENTWISE,
          infer=_binary_rule(_NUMBER, result=DType.bool),
          reference=lambda xs, attrs, fn=_fn: fn(xs[0], xs[1]))


def _select_rule(ts, attrs):
    cond, a, b = ts
    if cond.dtype is not DType.bool:
        raise ShapeError(f"condition has dtype {cond.dtype}; expected bool")
    if a.dtype != b.dtype:
        raise ShapeError(f"branch dtypes {a.dtype} and {b.dtype} differ; cast one first")
    return TensorType(a.dtype, broadcast_shapes(cond.shape, a.shape, b.shape))


defop("select", inputs=("cond", "x", "y"), fusion=Fusion.ELEMENTWISE, infer=_select_rule,
      reference=lambda xs, attrs: np.where(xs[0], xs[1], xs[2]),
      doc="x where cond else y, with numpy broadcasting of all three")


def _cast_rule(ts, attrs):
    return ts[0].with_dtype(attrs["dtype"])


defop("cast", inputs=("x",), fusion=Fusion.ELEMENTWISE, attrs={"dtype": Attr(AttrKind.DTYPE)},
      infer=_cast_rule, reference=lambda xs, attrs: xs[0].astype(attrs["dtype"].numpy))


def _constant_rule(ts, attrs):
    value = attrs["value"]
    try:
        dtype = DType.from_numpy(value.dtype)
    except ValueError as e:
        raise ShapeError(f"constant value: {e}") from None
    return TensorType(dtype, value.shape)


defop("constant", inputs=(), fusion=Fusion.ELEMENTWISE, attrs={"value": Attr(AttrKind.TENSOR)},
      infer=_constant_rule, reference=lambda xs, attrs: attrs["value"])


# --- VJPs (autodiff) ------------------------------------------------------------------------
# A rule gives the cotangent of each input from the output's, at the output's (broadcast) shape:
# autodiff sums broadcast axes away. None means no gradient: piecewise-constant ops (sign,
# floor, ceil, round) have derivative zero almost everywhere. maximum/minimum give a tie wholly
# to x (TensorFlow's choice; JAX splits it), relu gives 0 at 0, abs gives 0 at 0 (sign(0)).

def _pow_vjp(b, g, x, y, z):
    dx = b.mul(g, b.mul(y, b.pow(x, b.sub(y, b.scalar(1.0, y)))))
    # log(0) would make 0 * -inf = NaN where the base is 0; the term is 0 there (JAX does the same).
    safe = b.select(b.equal(x, b.scalar(0.0, x)), b.scalar(1.0, x), x)
    return [dx, b.mul(g, b.mul(z, b.log(safe)))]


def _truncated(b, q):
    """q rounded towards 0."""
    return b.select(b.less(q, b.scalar(0.0, q)), b.ceil(q), b.floor(q))


def _extremum_vjp(compare: str):
    def vjp(b, g, x, y, z):
        x_wins = b.op(compare, x, y)
        zero = b.scalar(0.0, g)
        return [b.select(x_wins, g, zero), b.select(x_wins, zero, g)]
    return vjp


_UNARY_VJPS = {
    "neg": lambda b, g, x, y: b.neg(g),
    "abs": lambda b, g, x, y: b.mul(g, b.sign(x)),
    "exp": lambda b, g, x, y: b.mul(g, y),
    "expm1": lambda b, g, x, y: b.mul(g, b.add(y, b.scalar(1.0, y))),
    "log": lambda b, g, x, y: b.div(g, x),
    "log1p": lambda b, g, x, y: b.div(g, b.add(x, b.scalar(1.0, x))),
    "sqrt": lambda b, g, x, y: b.div(b.mul(g, b.scalar(0.5, g)), y),
    "rsqrt": lambda b, g, x, y: b.mul(g, b.mul(b.scalar(-0.5, y), b.mul(y, b.square(y)))),
    "reciprocal": lambda b, g, x, y: b.neg(b.mul(g, b.square(y))),
    "square": lambda b, g, x, y: b.mul(g, b.mul(x, b.scalar(2.0, x))),
    "tanh": lambda b, g, x, y: b.mul(g, b.sub(b.scalar(1.0, y), b.square(y))),
    "sigmoid": lambda b, g, x, y: b.mul(g, b.mul(y, b.sub(b.scalar(1.0, y), y))),
    # From the output (y > 0 exactly where x > 0): the forward kernel's result is what the backward
    # pass reads, so the relu itself can stay fused into its matmul/conv epilogue.
    "relu": lambda b, g, x, y: b.select(b.greater(y, b.scalar(0.0, y)), g, b.scalar(0.0, g)),
    "erf": lambda b, g, x, y: b.mul(g, b.mul(b.scalar(2 / np.sqrt(np.pi), x), b.exp(b.neg(b.square(x))))),
    "sin": lambda b, g, x, y: b.mul(g, b.cos(x)),
    "cos": lambda b, g, x, y: b.neg(b.mul(g, b.sin(x))),
    "atan": lambda b, g, x, y: b.div(g, b.add(b.scalar(1.0, x), b.square(x))),
    "sign": None, "floor": None, "ceil": None, "round": None, "stop_gradient": None,
}

_BINARY_VJPS = {
    "add": lambda b, g, x, y, z: [g, g],
    "sub": lambda b, g, x, y, z: [g, b.neg(g)],
    "mul": lambda b, g, x, y, z: [b.mul(g, y), b.mul(g, x)],
    "div": lambda b, g, x, y, z: [b.div(g, y), b.neg(b.div(b.mul(g, z), y))],
    "pow": _pow_vjp,
    "fmod": lambda b, g, x, y, z: [g, b.neg(b.mul(g, _truncated(b, b.div(x, y))))],
    "maximum": _extremum_vjp("greater_equal"),
    "minimum": _extremum_vjp("less_equal"),
}


def _unary_vjp(rule):
    def vjp(b, node, cts):
        return [None if rule is None else rule(b, cts[0], node.inputs[0], node.outputs[0])]
    return vjp


def _binary_vjp(rule):
    return lambda b, node, cts: rule(b, cts[0], *node.inputs, node.outputs[0])


def _select_vjp(b, node, cts):
    cond, g = node.inputs[0], cts[0]
    zero = b.scalar(0.0, g)
    return [None, b.select(cond, g, zero), b.select(cond, zero, g)]


def _cast_vjp(b, node, cts):
    x = node.inputs[0]
    return [b.cast(cts[0], dtype=x.type.dtype) if x.type.dtype.is_float else None]


for _name, _rule in _UNARY_VJPS.items():
    OPS[_name].vjp = _unary_vjp(_rule)
for _name, _rule in _BINARY_VJPS.items():
    OPS[_name].vjp = _binary_vjp(_rule)
OPS["select"].vjp = _select_vjp
OPS["cast"].vjp = _cast_vjp

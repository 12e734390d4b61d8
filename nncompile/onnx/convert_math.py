"""Converters of elementwise math, activations, products, reductions and selections."""
from __future__ import annotations

import math

import numpy as np

from nncompile.ir import DType
from nncompile.onnx.context import Context, Entry
from nncompile.onnx.dtypes import ir_dtype
from nncompile.onnx.importer import converter
from nncompile.onnx.layout import aligned, drop_axes, elementwise, ir_axes, normalize

UNARY = {"Relu": "relu", "Sqrt": "sqrt", "Reciprocal": "reciprocal", "Exp": "exp", "Log": "log",
         "Neg": "neg", "Abs": "abs", "Tanh": "tanh", "Sigmoid": "sigmoid", "Erf": "erf",
         "Floor": "floor", "Ceil": "ceil", "Sin": "sin", "Cos": "cos", "Sign": "sign",
         "Round": "round", "Not": "logical_not", "Atan": "atan"}
BINARY = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div", "Equal": "equal", "Less": "less",
          "Greater": "greater", "LessOrEqual": "less_equal", "GreaterOrEqual": "greater_equal",
          "And": "logical_and", "Or": "logical_or"}
VARIADIC = {"Max": "maximum", "Min": "minimum", "Sum": "add"}


@converter(*UNARY)
def _unary(ctx: Context) -> list:
    return elementwise(ctx, UNARY[ctx.node.op_type])


@converter(*BINARY)
def _binary(ctx: Context) -> list:
    op = BINARY[ctx.node.op_type]
    if op == "div" and not ctx.dtype(0).is_float:
        return _via_f64(ctx, "div")
    if op == "equal" and ctx.dtype(0) is DType.bool:
        differ = _xor(ctx)[0]
        return [Entry(ctx.b.logical_not(differ.value), differ.perm)]
    return elementwise(ctx, op)


@converter("Xor")
def _xor(ctx: Context) -> list:
    (x, y), perm = aligned(ctx, [0, 1])
    b = ctx.b
    return [Entry(b.logical_and(b.logical_or(x, y), b.logical_not(b.logical_and(x, y))), perm)]


def _via_f64(ctx: Context, op: str) -> list:
    """An integer Div or Pow computed in f64 and truncated toward zero, as ONNX's integer
    results are; exact while operands and results stay below 2**53."""
    (x, y), perm = aligned(ctx, [0, 1])
    b, dtype = ctx.b, x.type.dtype
    wide = [v if v.type.dtype == DType.f64 else b.cast(v, dtype=DType.f64) for v in (x, y)]
    return [Entry(b.cast(b.op(op, *wide), dtype=dtype), perm)]


@converter("Pow")
def _pow(ctx: Context) -> list:
    if not ctx.dtype(0).is_float:
        return _via_f64(ctx, "pow")
    (x, y), perm = aligned(ctx, [0, 1])
    if y.type.dtype != x.type.dtype:
        y = ctx.b.cast(y, dtype=x.type.dtype)
    return [Entry(ctx.b.pow(x, y), perm)]


@converter(*VARIADIC, "Mean")
def _variadic(ctx: Context) -> list:
    values, perm = aligned(ctx, list(range(ctx.count)))
    op = VARIADIC.get(ctx.node.op_type, "add")
    out = values[0]
    for v in values[1:]:
        out = ctx.b.op(op, out, v)
    if ctx.node.op_type == "Mean":
        out = ctx.b.div(out, ctx.b.scalar(len(values), out))
    return [Entry(out, perm)]


@converter("Where")
def _where(ctx: Context) -> list:
    return elementwise(ctx, "select")


@converter("Cast", "CastLike")
def _cast(ctx: Context) -> list:
    x, perm = ctx.held(0)
    dtype = ir_dtype(ctx.attr("to"), ctx.where()) if ctx.node.op_type == "Cast" else ctx.dtype(1)
    return [Entry(x if x.type.dtype == dtype else ctx.b.cast(x, dtype=dtype), perm)]


# --- activations with parameters ----------------------------------------------------------------

def _activation(ctx: Context, build) -> list:
    x, perm = ctx.held(0)
    return [Entry(build(ctx.b, x, lambda v: ctx.b.scalar(v, x)), perm)]


@converter("LeakyRelu")
def _leaky_relu(ctx: Context) -> list:
    alpha = ctx.attr("alpha", 0.01)
    return _activation(ctx, lambda b, x, s: b.select(b.greater_equal(x, s(0)), x, b.mul(x, s(alpha))))


@converter("Elu", "Selu")
def _elu(ctx: Context) -> list:
    selu = ctx.node.op_type == "Selu"
    alpha = ctx.attr("alpha", 1.6732632423543772 if selu else 1.0)
    gamma = ctx.attr("gamma", 1.0507009873554805) if selu else 1.0

    def build(b, x, s):
        y = b.select(b.greater(x, s(0)), x, b.mul(b.expm1(x), s(alpha)))
        return b.mul(y, s(gamma)) if selu else y
    return _activation(ctx, build)


def _hard_sigmoid(b, x, s, alpha, beta):
    return b.minimum(b.maximum(b.add(b.mul(x, s(alpha)), s(beta)), s(0)), s(1))


@converter("HardSigmoid")
def _hardsigmoid(ctx: Context) -> list:
    alpha, beta = ctx.attr("alpha", 0.2), ctx.attr("beta", 0.5)
    return _activation(ctx, lambda b, x, s: _hard_sigmoid(b, x, s, alpha, beta))


@converter("HardSwish")
def _hardswish(ctx: Context) -> list:
    return _activation(ctx, lambda b, x, s: b.mul(x, _hard_sigmoid(b, x, s, 1 / 6, 0.5)))


@converter("Gelu")
def _gelu(ctx: Context) -> list:
    tanh = ctx.attr("approximate", "none") == "tanh"

    def build(b, x, s):
        if tanh:   # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
            inner = b.mul(b.add(x, b.mul(b.mul(b.mul(x, x), x), s(0.044715))), s(math.sqrt(2 / math.pi)))
            return b.mul(b.mul(x, s(0.5)), b.add(b.tanh(inner), s(1)))
        return b.mul(b.mul(x, s(0.5)), b.add(b.erf(b.mul(x, s(1 / math.sqrt(2)))), s(1)))
    return _activation(ctx, build)


@converter("Softplus", "Softsign", "ThresholdedRelu", "Celu")
def _more_activations(ctx: Context) -> list:
    op, alpha = ctx.node.op_type, ctx.attr("alpha", 1.0)

    def build(b, x, s):
        if op == "Softplus":   # log(1 + exp(x)) without overflow: max(x, 0) + log1p(exp(-|x|))
            return b.add(b.relu(x), b.log1p(b.exp(b.neg(b.abs(x)))))
        if op == "Softsign":
            return b.div(x, b.add(b.abs(x), s(1)))
        if op == "ThresholdedRelu":
            return b.select(b.greater(x, s(alpha)), x, s(0))
        return b.add(b.relu(x), b.minimum(s(0), b.mul(b.expm1(b.div(x, s(alpha))), s(alpha))))
    return _activation(ctx, build)


@converter("Clip")
def _clip(ctx: Context) -> list:
    x, perm = ctx.held(0)
    b = ctx.b
    if ctx.opset < 11:
        bounds = [ctx.attr("min"), ctx.attr("max")]
        bounds = [None if v is None else b.scalar(v, x) for v in bounds]
    else:
        bounds = [ctx.plain(i) if ctx.has(i) else None for i in (1, 2)]
    if bounds[0] is not None:
        x = b.maximum(x, bounds[0])
    if bounds[1] is not None:
        x = b.minimum(x, bounds[1])
    return [Entry(x, perm)]


# --- products --------------------------------------------------------------------------------

def matmul(ctx: Context, a, b_):
    """numpy matmul, vectors included (the IR's matmul takes rank >= 2)."""
    b = ctx.b
    va, vb = a.type.rank == 1, b_.type.rank == 1
    if va:
        a = b.reshape(a, shape=(1,) + a.type.shape)
    if vb:
        b_ = b.reshape(b_, shape=b_.type.shape + (1,))
    out = b.matmul(a, b_)
    shape = out.type.shape
    if va or vb:
        shape = shape[:-2] + ((shape[-2],) if not va else ()) + ((shape[-1],) if not vb else ())
        out = b.reshape(out, shape=shape)
    return out


@converter("MatMul")
def _matmul(ctx: Context) -> list:
    return [matmul(ctx, ctx.plain(0), ctx.plain(1))]


@converter("Gemm")
def _gemm(ctx: Context) -> list:
    b = ctx.b
    transpose_b = bool(ctx.attr("transB", 0))
    if transpose_b and ctx.maybe_const(1) is not None:
        # A weight (PyTorch's Linear writes (out, in) with transB=1): transposed once, when
        # imported, as the GEMM packs a plain (in, out) operand faster for a few rows (batch 1).
        weight, transpose_b = ctx.in_layout(1, (1, 0)), False
    else:
        weight = ctx.plain(1)
    y = b.matmul(ctx.plain(0), weight, transpose_a=bool(ctx.attr("transA", 0)), transpose_b=transpose_b)
    alpha, beta = ctx.attr("alpha", 1.0), ctx.attr("beta", 1.0)
    if alpha != 1.0:
        y = b.mul(y, b.scalar(alpha, y))
    if ctx.has(2) and beta != 0.0:
        c = ctx.plain(2)
        y = b.add(y, c if beta == 1.0 else b.mul(c, b.scalar(beta, c)))
    return [y]


# --- reductions --------------------------------------------------------------------------------

REDUCE = {"ReduceMean": "reduce_mean", "ReduceSum": "reduce_sum", "ReduceMax": "reduce_max",
          "ReduceMin": "reduce_min", "ReduceProd": "reduce_prod", "ReduceL2": "reduce_sum",
          "ReduceL1": "reduce_sum", "ReduceSumSquare": "reduce_sum", "ReduceLogSum": "reduce_sum",
          "ReduceLogSumExp": "reduce_sum"}
# The opset since which a reduction takes its axes as an input instead of an attribute.
_AXES_INPUT = {"ReduceSum": 13}


def reduce_axes(ctx: Context, rank: int) -> list[int] | None:
    """The ONNX axes to reduce (all when none are given), or None for a no-op."""
    if ctx.opset >= _AXES_INPUT.get(ctx.node.op_type, 18):
        axes = ctx.ints(1, "axes") if ctx.has(1) else []
    else:
        axes = list(ctx.attr("axes", []))
    if not axes:
        return None if ctx.attr("noop_with_empty_axes", 0) else list(range(rank))
    return sorted({normalize(a, rank, ctx) for a in axes})


@converter(*REDUCE)
def _reduce(ctx: Context) -> list:
    x, perm = ctx.held(0)
    b, op = ctx.b, ctx.node.op_type
    axes = reduce_axes(ctx, ctx.rank(0))
    if axes is None:
        return [Entry(x, perm)]
    keep = bool(ctx.attr("keepdims", 1))
    kw = dict(axes=ir_axes(perm, axes), keepdims=keep)
    if op in ("ReduceL2", "ReduceSumSquare"):
        x = b.mul(x, x)
    elif op == "ReduceL1":
        x = b.abs(x)
    if op == "ReduceLogSumExp":
        top = b.reduce_max(x, axes=kw["axes"], keepdims=True)
        y = b.log(b.reduce_sum(b.exp(b.sub(x, top)), **kw))
        y = b.add(y, top if keep else b.reshape(top, shape=y.type.shape))
    elif x.type.dtype == DType.bool:   # max is any, min is all
        y = b.cast(b.op(REDUCE[op], b.cast(x, dtype=DType.u8), **kw), dtype=DType.bool)
    else:
        y = b.op(REDUCE[op], x, **kw)
    if op == "ReduceL2":
        y = b.sqrt(y)
    elif op == "ReduceLogSum":
        y = b.log(y)
    return [Entry(y, perm if keep else drop_axes(perm, axes))]


@converter("ArgMax", "ArgMin")
def _arg(ctx: Context) -> list:
    b = ctx.b
    x, rank = ctx.plain(0), ctx.rank(0)
    axis = normalize(ctx.attr("axis", 0), rank, ctx)
    keep = bool(ctx.attr("keepdims", 1))
    op = "argmax" if ctx.node.op_type == "ArgMax" else "argmin"
    if not ctx.attr("select_last_index", 0):
        return [b.op(op, x, axis=axis, keepdims=keep)]
    # The last extreme is the first one of the reversed axis, counted from the end.
    n = x.type.shape[axis]
    flipped = b.slice(x, starts=[-1], ends=[-(2**63)], axes=[axis], steps=[-1])
    index = b.op(op, flipped, axis=axis, keepdims=keep)
    return [b.sub(b.constant(np.asarray(n - 1, np.int64)), index)]


@converter("CumSum")
def _cumsum(ctx: Context) -> list:
    """A product with a triangular matrix of ones along the summed axis."""
    b = ctx.b
    x, rank = ctx.plain(0), ctx.rank(0)
    axis = normalize(int(ctx.ints(1, "axis")[0]), rank, ctx)
    n = x.type.shape[axis]
    if isinstance(n, str):
        raise ctx.fail(f"the summed axis {axis} is symbolic ({n!r})")
    i, j = np.indices((n, n))
    exclusive, reverse = ctx.attr("exclusive", 0), ctx.attr("reverse", 0)
    mask = (i >= j if reverse else i <= j) if not exclusive else (i > j if reverse else i < j)
    last = list(range(rank))
    last.append(last.pop(axis))
    moved = ctx.transpose(x, last)
    total = matmul(ctx, moved, b.constant(mask.astype(x.type.dtype.numpy)))
    return [ctx.transpose(total, [last.index(k) for k in range(rank)])]


@converter("Det")
def _det(ctx: Context) -> list:
    """The determinants of the matrices in the last two axes; float16 ones in float32."""
    b, x = ctx.b, ctx.plain(0)
    if x.type.dtype is DType.f16:
        return [b.cast(b.det(b.cast(x, dtype=DType.f32)), dtype=DType.f16)]
    return [b.det(x)]


@converter("TopK")
def _topk(ctx: Context) -> list:
    """k rounds of (extreme, its first index, mask it out): ties keep the lower index first."""
    b = ctx.b
    x, rank = ctx.plain(0), ctx.rank(0)
    k = int(ctx.ints(1, "K")[0]) if ctx.opset >= 10 else ctx.attr("k")
    axis = normalize(ctx.attr("axis", -1), rank, ctx)
    largest = bool(ctx.attr("largest", 1))
    dtype = x.type.dtype.numpy
    fill = (-np.inf if largest else np.inf) if dtype.kind == "f" else (
        np.iinfo(dtype).min if largest else np.iinfo(dtype).max)
    n = x.type.shape[axis]
    shape = [1] * rank
    shape[axis] = n
    iota = b.constant(np.arange(n, dtype=np.int64).reshape(shape))
    values, indices = [], []
    for _ in range(k):
        values.append(b.op("reduce_max" if largest else "reduce_min", x, axes=[axis], keepdims=True))
        indices.append(b.op("argmax" if largest else "argmin", x, axis=axis, keepdims=True))
        x = b.select(b.equal(iota, indices[-1]), b.constant(np.asarray(fill, dtype)), x)
    if k == 0:
        raise ctx.fail("K = 0 gives empty outputs, which are not supported")
    return [b.concat(*values, axis=axis), b.concat(*indices, axis=axis)]


# --- Einsum: products of two operands over named axes, as one batched matmul -----------------

@converter("Einsum")
def _einsum(ctx: Context) -> list:
    equation = ctx.attr("equation").replace(" ", "")
    inputs, _, output = equation.partition("->")
    terms = inputs.split(",")
    if "." in equation or len(terms) != ctx.count or len(terms) > 2 or any(len(set(t)) != len(t) for t in terms):
        raise ctx.fail(f"equation {equation!r}: only one or two operands without ellipsis or "
                       f"repeated letters (matmul-shaped) are supported")
    if not _:
        output = "".join(sorted(c for c in set(inputs) - {","} if inputs.count(c) == 1))
    values = [ctx.plain(i) for i in range(ctx.count)]
    if len(terms) == 1:
        x, term = _sum_unused(ctx, values[0], terms[0], output)
        return [ctx.transpose(x, [term.index(c) for c in output])]
    (a, ta), (b_, tb) = (_sum_unused(ctx, v, t, output + terms[1 - k]) for k, (v, t) in enumerate(zip(values, terms)))
    batch = [c for c in ta if c in tb and c in output]
    contract = [c for c in ta if c in tb and c not in output]
    left, right = [c for c in ta if c not in tb], [c for c in tb if c not in ta]
    dims = {c: d for t, v in ((ta, a), (tb, b_)) for c, d in zip(t, v.type.shape)}
    a = _grouped(ctx, a, ta, [batch, left, contract], dims)
    b_ = _grouped(ctx, b_, tb, [batch, contract, right], dims)
    y = ctx.b.matmul(a, b_)
    order = batch + left + right
    y = ctx.b.reshape(y, shape=[dims[c] for c in order])
    return [ctx.transpose(y, [order.index(c) for c in output])]


def _sum_unused(ctx: Context, x, term: str, used: str):
    """Sum away the axes no other operand or the output names."""
    gone = [i for i, c in enumerate(term) if c not in used]
    if gone:
        x = ctx.b.reduce_sum(x, axes=gone, keepdims=False)
    return x, "".join(c for c in term if c in used)


def _grouped(ctx: Context, x, term: str, groups: list[list[str]], dims: dict):
    """x transposed to the order of `groups` and each group merged into one axis."""
    order = [c for g in groups for c in g]
    x = ctx.transpose(x, [term.index(c) for c in order])
    shape = []
    for g in groups:
        sizes = [dims[c] for c in g]
        static = math.prod(d for d in sizes if not isinstance(d, str))
        symbols = [d for d in sizes if isinstance(d, str)]
        if len(symbols) > 1 or (symbols and static != 1):
            raise ctx.fail(f"merging the axes {g} of sizes {sizes} is not expressible")
        shape.append(symbols[0] if symbols else static)
    return ctx.b.reshape(x, shape=shape)


@converter("PRelu")
def _prelu(ctx: Context) -> list:
    (x, slope), perm = aligned(ctx, [0, 1])
    b = ctx.b
    return [Entry(b.select(b.less(x, b.scalar(0, x)), b.mul(x, slope), x), perm)]


@converter("Mish", "Swish", "Shrink", "Tan")
def _more_unary(ctx: Context) -> list:
    op = ctx.node.op_type
    alpha, bias, lambd = ctx.attr("alpha", 1.0), ctx.attr("bias", 0.0), ctx.attr("lambd", 0.5)

    def build(b, x, s):
        if op == "Mish":   # x tanh(softplus(x))
            return b.mul(x, b.tanh(b.add(b.relu(x), b.log1p(b.exp(b.neg(b.abs(x)))))))
        if op == "Swish":
            return b.mul(x, b.sigmoid(b.mul(x, s(alpha))))
        if op == "Tan":
            return b.div(b.sin(x), b.cos(x))
        shrunk = b.select(b.less(x, s(-lambd)), b.add(x, s(bias)), s(0))
        return b.select(b.greater(x, s(lambd)), b.sub(x, s(bias)), shrunk)
    return _activation(ctx, build)


@converter("IsNaN", "IsInf")
def _is_special(ctx: Context) -> list:
    x, perm = ctx.held(0)
    b = ctx.b
    if ctx.node.op_type == "IsNaN":
        return [Entry(b.not_equal(x, x), perm)]
    hits = [b.equal(x, b.scalar(sign * np.inf, x)) for sign, flag in ((1, "detect_positive"), (-1, "detect_negative"))
            if ctx.attr(flag, 1)]
    out = hits[0] if len(hits) == 1 else b.logical_or(*hits) if hits else b.not_equal(x, x)
    return [Entry(out, perm)]


@converter("Mod")
def _mod(ctx: Context) -> list:
    """fmod=1: the IR's fmod (C's, the dividend's sign); else a - b * floor(a / b) (the divisor's
    sign), computed in f64."""
    (x, y), perm = aligned(ctx, [0, 1])
    b, dtype = ctx.b, x.type.dtype
    if ctx.attr("fmod", 0):
        return [Entry(b.op("fmod", x, y), perm)]
    a, d = (v if v.type.dtype == DType.f64 else b.cast(v, dtype=DType.f64) for v in (x, y))
    return [Entry(b.cast(b.sub(a, b.mul(d, b.floor(b.div(a, d)))), dtype=dtype), perm)]

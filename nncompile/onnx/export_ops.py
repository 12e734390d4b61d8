"""How each IR op is written in ONNX (see exporter.py)."""
from __future__ import annotations

import numpy as np

from nncompile.ir.ops.linalg import same_pads
from nncompile.ir.types import is_symbol
from nncompile.onnx.dtypes import TO_ONNX
from nncompile.onnx.errors import UnsupportedError
from nncompile.onnx.exporter import Writer, dims_for_reshape, exporter

UNARY = {"neg": "Neg", "abs": "Abs", "sign": "Sign", "exp": "Exp", "log": "Log", "sqrt": "Sqrt",
         "reciprocal": "Reciprocal", "tanh": "Tanh", "sigmoid": "Sigmoid", "relu": "Relu",
         "erf": "Erf", "sin": "Sin", "cos": "Cos", "atan": "Atan", "floor": "Floor", "ceil": "Ceil", "round": "Round",
         "logical_not": "Not", "stop_gradient": "Identity"}
BINARY = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "pow": "Pow", "maximum": "Max",
          "minimum": "Min", "logical_and": "And", "logical_or": "Or", "equal": "Equal", "less": "Less",
          "less_equal": "LessOrEqual", "greater": "Greater", "greater_equal": "GreaterOrEqual"}
NCHW, NHWC = [0, 3, 1, 2], [0, 2, 3, 1]


@exporter(*UNARY)
def _unary(w: Writer, names, attrs, values) -> str:
    return w.one(UNARY[_op(w)], names)


@exporter(*BINARY)
def _binary(w: Writer, names, attrs, values) -> str:
    return w.one(BINARY[_op(w)], names)


def _op(w: Writer) -> str:
    return w.current.op


def _scalar(w: Writer, value, like) -> str:
    return w.const(np.asarray(value, like.type.dtype.numpy), "scalar")


@exporter("fmod")
def _fmod(w: Writer, names, attrs, values) -> str:
    return w.one("Mod", names, fmod=1)


@exporter("expm1", "log1p", "rsqrt", "square", "not_equal")
def _composite(w: Writer, names, attrs, values) -> str:
    op, x = _op(w), names[0]
    if op == "expm1":
        return w.one("Sub", [w.one("Exp", [x]), _scalar(w, 1, values[0])])
    if op == "log1p":
        return w.one("Log", [w.one("Add", [x, _scalar(w, 1, values[0])])])
    if op == "rsqrt":
        return w.one("Reciprocal", [w.one("Sqrt", [x])])
    if op == "square":
        return w.one("Mul", [x, x])
    return w.one("Not", [w.one("Equal", names)])


@exporter("select")
def _select(w, names, attrs, values) -> str:
    return w.one("Where", names)


@exporter("cast")
def _cast(w, names, attrs, values) -> str:
    return w.one("Cast", names, to=TO_ONNX[attrs["dtype"]])


@exporter("constant")
def _constant(w, names, attrs, values) -> str:
    return w.const(attrs["value"])


@exporter("matmul")
def _matmul(w, names, attrs, values) -> str:
    operands = []
    for name, v, flag in zip(names, values, ("transpose_a", "transpose_b")):
        if attrs[flag]:
            rank = v.type.rank
            name = w.one("Transpose", [name], perm=[*range(rank - 2), rank - 1, rank - 2])
        operands.append(name)
    return w.one("MatMul", operands)


def _pads(attrs, values, kernel_hw, dilations=(1, 1)) -> dict:
    """ONNX's pads (begin, begin, end, end), or auto_pad SAME_UPPER where the pads are symbolic:
    TensorFlow's 'same' over a size known only when run is what ONNX's SAME_UPPER computes."""
    top, bottom, left, right = pads = attrs["pads"]
    if not any(is_symbol(p) for p in pads):
        return {"pads": [top, left, bottom, right]}
    in_hw = values[0].type.shape[1:3]
    same = tuple(p for k in range(2) for p in same_pads(in_hw[k], kernel_hw[k], attrs["strides"][k], dilations[k]))
    if same != tuple(pads):
        raise UnsupportedError(f"pads {pads} depend on a size known only when run but are not 'same' "
                               f"{same}; ONNX has no such padding")
    return {"auto_pad": "SAME_UPPER"}


def _oihw(w: Writer, name: str, filt) -> str:
    """The (KH, KW, I, O) filter `filt` as (O, I, KH, KW): once, in the initializer, for a
    parameter."""
    if filt.is_param:
        return w.const(np.ascontiguousarray(w.graph.params[filt.name].transpose(3, 2, 0, 1)),
                       f"{filt.name}_oihw", scoped=False)
    return w.one("Transpose", [name], perm=[3, 2, 0, 1])


@exporter("conv2d")
def _conv2d(w, names, attrs, values) -> str:
    x = w.one("Transpose", [names[0]], perm=NCHW)
    filt = values[1]
    y = w.one("Conv", [x, _oihw(w, names[1], filt)], strides=list(attrs["strides"]),
              dilations=list(attrs["dilations"]), group=attrs["groups"], kernel_shape=list(filt.type.shape[:2]),
              **_pads(attrs, values, filt.type.shape[:2], attrs["dilations"]))
    return w.one("Transpose", [y], perm=NHWC)


@exporter("conv2d_grad_input")
def _conv_transpose(w, names, attrs, values) -> str:
    """ConvTranspose: ONNX's (C_in, C_out / group, KH, KW) filter is conv2d's HWIO filter
    transposed as for Conv, and the input size comes back as output_padding past the last
    window (less than the stride, by conv2d_grad_input's shape rule)."""
    dy, filt = values
    kernel = _oihw(w, names[1], filt)
    (sh, sw), (dh, dw), (top, bottom, left, right) = attrs["strides"], attrs["dilations"], attrs["pads"]
    (kh, kw), (h, wd) = filt.type.shape[:2], attrs["input_hw"]
    extra = [h + top + bottom - ((dy.type.shape[1] - 1) * sh + (kh - 1) * dh + 1),
             wd + left + right - ((dy.type.shape[2] - 1) * sw + (kw - 1) * dw + 1)]
    y = w.one("ConvTranspose", [w.one("Transpose", [names[0]], perm=NCHW), kernel],
              strides=[sh, sw], dilations=[dh, dw], pads=[top, left, bottom, right],
              output_padding=extra, group=attrs["groups"], kernel_shape=[kh, kw])
    return w.one("Transpose", [y], perm=NHWC)


@exporter("max_pool2d", "avg_pool2d")
def _pool(w, names, attrs, values) -> str:
    x = w.one("Transpose", [names[0]], perm=NCHW)
    kw = dict(kernel_shape=list(attrs["window"]), strides=list(attrs["strides"]),
              **_pads(attrs, values, attrs["window"]))
    y = w.one("MaxPool", [x], **kw) if _op(w) == "max_pool2d" else w.one("AveragePool", [x], count_include_pad=0, **kw)
    return w.one("Transpose", [y], perm=NHWC)


@exporter("softmax", "log_softmax")
def _softmax(w, names, attrs, values) -> str:
    return w.one("Softmax" if _op(w) == "softmax" else "LogSoftmax", names, axis=attrs["axis"])


REDUCE = {"reduce_sum": "ReduceSum", "reduce_mean": "ReduceMean", "reduce_max": "ReduceMax",
          "reduce_min": "ReduceMin", "reduce_prod": "ReduceProd"}


@exporter(*REDUCE)
def _reduce(w, names, attrs, values) -> str:
    op, keep = REDUCE[_op(w)], int(attrs["keepdims"])
    axes = list(attrs["axes"])
    if not axes:
        return w.one("Identity", names)
    if w.opset >= 18 or op == "ReduceSum":
        return w.one(op, [names[0], w.ints(axes, "axes")], keepdims=keep)
    return w.one(op, names, axes=axes, keepdims=keep)


@exporter("det")
def _det(w, names, attrs, values) -> str:
    return w.one("Det", names)


@exporter("argmax", "argmin")
def _arg(w, names, attrs, values) -> str:
    return w.one("ArgMax" if _op(w) == "argmax" else "ArgMin", names, axis=attrs["axis"],
                 keepdims=int(attrs["keepdims"]))


@exporter("reshape")
def _reshape(w, names, attrs, values) -> str:
    target = attrs["shape"]
    if 0 in target:   # a literal empty axis, not "copy the input's"
        return w.one("Reshape", [names[0], w.ints(target, "shape")], allowzero=1)
    return w.one("Reshape", [names[0], w.ints(dims_for_reshape(values[0].type.shape, target), "shape")])


@exporter("transpose")
def _transpose(w, names, attrs, values) -> str:
    return w.one("Transpose", names, perm=list(attrs["perm"]))


@exporter("broadcast")
def _broadcast(w, names, attrs, values) -> str:
    source, target = values[0].type.shape, attrs["shape"]
    offset = len(target) - len(source)
    dims, runtime = [], []
    for i, d in enumerate(target):
        if isinstance(d, str) and (i < offset or source[i - offset] != d):
            runtime.append((i, _symbol_size(w, d, target)))   # read off an input that has it
            d = 1
        elif isinstance(d, str):
            d = 1   # Expand keeps the input's own dimension
        dims.append(d)
    if not runtime:
        return w.one("Expand", [names[0], w.ints(dims, "shape")])
    parts = [w.ints(dims[:runtime[0][0]], "dims")] if runtime[0][0] else []
    for k, (i, size) in enumerate(runtime):
        end = runtime[k + 1][0] if k + 1 < len(runtime) else len(dims)
        parts += [size] + ([w.ints(dims[i + 1:end], "dims")] if end > i + 1 else [])
    return w.one("Expand", [names[0], w.one("Concat", parts, axis=0)])


def _symbol_size(w: Writer, symbol: str, target) -> str:
    """A 1-element int64 tensor holding the size of `symbol` at run time: that axis of the first
    graph input whose type has it (the zeros a recurrent layer starts from take the batch so)."""
    for v in w.graph.inputs:
        if symbol in v.type.shape and v in w.names:
            shape = w.one("Shape", [w.names[v]])
            return w.one("Gather", [shape, w.ints([v.type.shape.index(symbol)], "axis")], axis=0)
    raise _unsupported(w, f"broadcasting to the symbolic dimension {symbol!r} of {target} (no input has it)")


@exporter("concat")
def _concat(w, names, attrs, values) -> str:
    return w.one("Concat", names, axis=attrs["axis"])


@exporter("slice")
def _slice(w, names, attrs, values) -> str:
    parts = [w.ints(attrs[k], k) for k in ("starts", "ends", "axes", "steps")]
    return w.one("Slice", [names[0], *parts])


@exporter("gather")
def _gather(w, names, attrs, values) -> str:
    return w.one("Gather", names, axis=attrs["axis"])


@exporter("pad")
def _pad(w, names, attrs, values) -> str:
    pads = attrs["pads"]
    onnx_pads = list(pads[0::2]) + list(pads[1::2])
    value = _scalar(w, attrs["value"], values[0])
    return w.one("Pad", [names[0], w.ints(onnx_pads, "pads"), value], mode="constant")


def _unsupported(w: Writer, what: str):
    from nncompile.onnx.errors import UnsupportedError

    return UnsupportedError(f"export: {w.current.describe()}: {what} has no ONNX form")

"""ONNX -> IR: `load(path_or_model)` gives a Graph whose inputs and outputs keep the ONNX names.

Nodes are imported in order by the converters registered with `converter` (convert_*.py).
A node whose inputs are all known at import time is folded instead: shape arithmetic on symbolic
dimensions by numpy, anything else by ONNX's own reference implementation of that node, so that
Shape -> Gather -> Concat -> Reshape chains become the constant shape Reshape needs.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import onnx
from onnx import numpy_helper

from nncompile.ir import Builder, Graph, TensorType, Value
from nncompile.ir.errors import IRError
from nncompile.onnx.context import Context, Entry, is_symbolic
from nncompile.onnx.dtypes import ir_dtype, symbol
from nncompile.onnx.errors import NeedsConstantError, OnnxError, UnsupportedError
from nncompile.onnx.reader import check_model, opset_of, read_model

Converter = Callable[[Context], list]
CONVERTERS: dict[str, Converter] = {}
# Folding on object arrays that hold symbolic dimensions (the shape arithmetic of dynamic models).
SYMBOLIC: dict[str, Converter] = {}
# Never folded: a run must draw new numbers.
_RANDOM = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
           "Bernoulli"}
OLDEST_OPSET = 1


def converter(*op_types: str, symbolic: bool = False):
    def register(fn: Converter) -> Converter:
        for op in op_types:
            (SYMBOLIC if symbolic else CONVERTERS)[op] = fn
        return fn
    return register


def load(source, *, check: bool = True, dims: dict | None = None) -> Graph:
    """Import an ONNX model (a path, bytes or a ModelProto) as an IR Graph named after its graph.

    `dims` renames or fixes symbolic input dimensions: {"batch_size": "?", "seq": 128}."""
    model, what = read_model(source)
    if check:
        check_model(model, what)
    opset = opset_of(model)
    newest = onnx.defs.onnx_opset_version()
    if not OLDEST_OPSET <= opset <= newest:
        raise UnsupportedError(f"{what} uses opset {opset}; supported: {OLDEST_OPSET} to {newest}")
    from nncompile.onnx import (convert_attention, convert_loss, convert_math, convert_nn,  # noqa: F401
                                convert_recurrent, convert_shape, convert_tensor)

    try:
        return _import_graph(model, opset, dims or {})
    except NeedsConstantError as e:
        raise NeedsConstantError(f"{what}: {e}", e.tensor) from None
    except OnnxError as e:
        raise type(e)(f"{what}: {e}") from None


def _import_graph(model: onnx.ModelProto, opset: int, dims: dict) -> Graph:
    g = model.graph
    b = Builder(name=_graph_name(g.name))
    ctx = Context(b, opset, model)
    for init in g.initializer:
        ctx.env[init.name] = Entry(const=_array(init), name=init.name)
    for vi in g.input:
        if vi.name not in ctx.env:
            ctx.env[vi.name] = Entry(value=b.input(vi.name, _input_type(vi, dims)))
    for node in g.node:
        ctx.start(node)
        _import_node(ctx, node)
    outputs = []
    for vi in g.output:
        if vi.name not in ctx.env:
            raise OnnxError(f"graph output {vi.name!r} is produced by no node")
        e = ctx.env[vi.name]
        value = ctx.materialize(e)
        outputs.append(ctx.transpose(value, [e.perm.index(a) for a in range(len(e.perm))]))
    return b.finish(outputs, [vi.name for vi in g.output])


def _graph_name(name: str) -> str:
    return name if name and all(c.isalnum() or c in "_.-" for c in name) else "main"


def _array(init: onnx.TensorProto) -> np.ndarray:
    ir_dtype(init.data_type, f"initializer {init.name!r}")
    try:
        return numpy_helper.to_array(init)
    except (ValueError, TypeError) as e:
        raise OnnxError(f"initializer {init.name!r} cannot be read: {e}") from None


def _input_type(vi: onnx.ValueInfoProto, rename: dict) -> TensorType:
    t = vi.type
    if t.WhichOneof("value") != "tensor_type":
        raise UnsupportedError(f"graph input {vi.name!r} is a {t.WhichOneof('value')}; only tensors "
                               f"are supported")
    dtype = ir_dtype(t.tensor_type.elem_type, f"graph input {vi.name!r}")
    if not t.tensor_type.HasField("shape"):
        raise UnsupportedError(f"graph input {vi.name!r} has no shape (unknown rank)")
    dims = []
    for axis, d in enumerate(t.tensor_type.shape.dim):
        if d.HasField("dim_value"):
            dims.append(d.dim_value)
        else:
            name = symbol(d.dim_param or f"{vi.name}_{axis}")
            dims.append(rename.get(d.dim_param, rename.get(name, name)))
    return TensorType(dtype, tuple(dims))


def _import_node(ctx: Context, node: onnx.NodeProto) -> None:
    for name in node.input:
        if name and name not in ctx.env:
            raise OnnxError(f"{ctx.where()}: input {name!r} is produced by no earlier node")
    if node.domain not in ("", "ai.onnx"):
        raise UnsupportedError(f"{ctx.where()}: operators of domain {node.domain!r} are not supported")
    present = [ctx.env[n] for n in node.input if n]
    try:
        if present and all(e.const is not None for e in present) and node.op_type not in _RANDOM:
            symbolic = any(is_symbolic(e.const) for e in present)
            results = SYMBOLIC[node.op_type](ctx) if symbolic and node.op_type in SYMBOLIC else (
                None if symbolic else _fold(ctx, node, present))
            if results is None:
                results = _convert(ctx, node)
        else:
            results = _convert(ctx, node)
    except OnnxError:
        raise
    except (IRError, ValueError, TypeError, IndexError, KeyError) as e:
        raise OnnxError(f"{ctx.where()}: {e}") from None
    if len(results) < len([o for o in node.output if o]):
        raise OnnxError(f"{ctx.where()}: output {node.output[len(results)]!r} is not supported")
    for name, result in zip(node.output, results):
        if name:
            ctx.env[name] = _entry(result)


def _convert(ctx: Context, node: onnx.NodeProto) -> list:
    fn = CONVERTERS.get(node.op_type)
    if fn is None:
        raise UnsupportedError(f"{ctx.where()}: operator {node.op_type} is not supported")
    with ctx.b.loc(node.name or node.op_type):
        return fn(ctx)


def _entry(result) -> Entry:
    if isinstance(result, Entry):
        return result
    if isinstance(result, Value):
        return Entry(value=result)
    array = np.asarray(result)
    if array.dtype == object and not is_symbolic(array):
        array = array.astype(np.int64)
    return Entry(const=array)


def _fold(ctx: Context, node: onnx.NodeProto, present: list[Entry]) -> list | None:
    """Run the node on its constant inputs with ONNX's reference implementation."""
    from onnx.reference import ReferenceEvaluator

    names = [n for n in node.input if n]
    graph = onnx.helper.make_graph(
        [node], "fold", [onnx.helper.make_empty_tensor_value_info(n) for n in dict.fromkeys(names)],
        [onnx.helper.make_empty_tensor_value_info(o) for o in node.output if o])
    model = onnx.helper.make_model(graph, opset_imports=ctx.model.opset_import)
    try:
        outs = ReferenceEvaluator(model).run(None, {n: ctx.env[n].const for n in names})
    except Exception:  # noqa: BLE001 - not foldable here: the converter imports it (and says why not)
        return None
    return [np.asarray(o) for o in outs]

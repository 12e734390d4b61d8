"""IR -> ONNX: `save(model_or_graph, path, opset=None)` writes a model ONNX Runtime can run.

Each IR op becomes one ONNX node or a few (EXPORTERS below). Parameters become initializers
named as in the IR ("dense/kernel"), nodes are named after the layer they came from, the
symbolic batch dimension becomes dim_param "batch". The IR's NHWC convolutions and pooling are
written as ONNX's NCHW ops between two Transposes (ONNX Runtime's transpose optimizer removes
the pairs that meet). The result passes onnx.checker and strict shape inference.
"""
from __future__ import annotations

import os
from typing import Callable

import numpy as np
import onnx
from onnx import helper, numpy_helper

from nncompile.ir import Graph, Value
from nncompile.ir.types import is_symbol
from nncompile.onnx.dtypes import TO_ONNX
from nncompile.onnx.errors import OnnxError, UnsupportedError

DEFAULT_OPSET = 17
OLDEST_EXPORT_OPSET = 13
BATCH_NAME = "batch"


class Writer:
    """The ONNX graph being written: tensor names of IR values, nodes, initializers."""

    def __init__(self, graph: Graph, opset: int):
        self.graph, self.opset = graph, opset
        self.names: dict[Value, str] = {}
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._taken: set[str] = set()
        self.loc = ""
        self.current = None   # the IR node being written
        # Nodes already written by an earlier node's exporter (two scans as one bidirectional LSTM).
        self.written: set = set()

    def unique(self, base: str) -> str:
        name, k = base, 1
        while name in self._taken:
            name, k = f"{base}_{k}", k + 1
        self._taken.add(name)
        return name

    def node(self, op_type: str, inputs: list[str], outputs: int | list[str] = 1, **attrs) -> list[str]:
        prefix = f"{self.loc}/" if self.loc else ""
        name = self.unique(f"{prefix}{op_type}")
        outs = outputs if isinstance(outputs, list) else [self.unique(f"{name}_output_{i}")
                                                         for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=name, **attrs))
        return outs

    def one(self, op_type: str, inputs: list[str], **attrs) -> str:
        return self.node(op_type, inputs, **attrs)[0]

    def const(self, array, base: str = "const", scoped: bool = True) -> str:
        name = self.unique(f"{self.loc}/{base}" if self.loc and scoped else base)
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def ints(self, values, base: str) -> str:
        return self.const(np.asarray(list(values), np.int64), base)


Exporter = Callable[[Writer, list[str], dict, list[Value]], str]
EXPORTERS: dict[str, Exporter] = {}


def exporter(*ops: str):
    def register(fn: Exporter) -> Exporter:
        for op in ops:
            EXPORTERS[op] = fn
        return fn
    return register


def to_model(graph: Graph, opset: int | None = None) -> onnx.ModelProto:
    """The ONNX model of an IR graph (inference graphs: no parameter updates)."""
    from nncompile.onnx import export_ops, export_scan  # noqa: F401 (registers the exporters)

    opset = DEFAULT_OPSET if opset is None else opset
    newest = onnx.defs.onnx_opset_version()
    if not OLDEST_EXPORT_OPSET <= opset <= newest:
        raise OnnxError(f"export: opset {opset} is not supported; choose {OLDEST_EXPORT_OPSET} to {newest}")
    if graph.updates:
        raise OnnxError(f"export: graph {graph.name!r} updates parameters (a training step); export "
                        f"an inference graph")
    w = Writer(graph, opset)
    inputs = []
    for v in graph.inputs:
        w.names[v] = w.unique(v.name)
        if not v.is_param:
            inputs.append(value_info(w.names[v], v))
    for node in graph.nodes:
        fn = EXPORTERS.get(node.op)
        if fn is None:
            raise UnsupportedError(f"export: {node.describe()}: op {node.op!r} has no ONNX form")
        w.loc, w.current = node.loc, node
        out = fn(w, [w.names[v] for v in node.inputs], node.attrs, node.inputs)
        w.names[node.outputs[0]] = out
    w.loc = ""
    outputs = []
    for name, v in zip(graph.output_names, graph.outputs):
        w.node("Identity", [w.names[v]], [w.unique(name)])
        outputs.append(value_info(w.nodes[-1].output[0], v))
    nodes = _live(w.nodes, [o.name for o in outputs])
    used = _names_read(nodes)
    initializers = [t for t in w.initializers if t.name in used]
    initializers += [numpy_helper.from_array(np.asarray(graph.params[v.name]), w.names[v])
                     for v in graph.param_inputs if w.names[v] in used]
    onnx_graph = helper.make_graph(nodes, graph.name, inputs, outputs, initializers)
    model = helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="nncompile")
    return _checked(model)


def _live(nodes: list, outputs: list[str]) -> list:
    """The nodes the outputs depend on, in order: an exporter that writes a node whole may leave
    what it replaced unread (a recurrent layer's input projection, taken into ONNX's LSTM)."""
    needed, kept = set(outputs), []
    for node in reversed(nodes):
        if any(name in needed for name in node.output):
            kept.append(node)
            needed |= _names_read([node])
    return kept[::-1]


def _names_read(nodes) -> set[str]:
    """The tensor names the nodes read, those their subgraphs (a Scan's body) read included."""
    names = set()
    for node in nodes:
        names.update(node.input)
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                names |= _names_read(attr.g.node)
    return names


def value_info(name: str, v: Value) -> onnx.ValueInfoProto:
    dims = [BATCH_NAME if d == "?" else d for d in v.type.shape]
    return helper.make_tensor_value_info(name, TO_ONNX[v.type.dtype], dims)


def _checked(model: onnx.ModelProto) -> onnx.ModelProto:
    try:
        onnx.checker.check_model(model, full_check=True)
        return onnx.shape_inference.infer_shapes(model, strict_mode=True, check_type=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        first = str(e).strip().splitlines()[0]
        raise OnnxError(f"export: the written model fails ONNX's checks: {first}") from None


def save(model_or_graph, path, opset: int | None = None) -> onnx.ModelProto:
    """Write a Keras model (traced first) or an IR Graph to `path` as ONNX; returns the model."""
    graph = model_or_graph
    if not isinstance(graph, Graph):
        from nncompile.keras.models import trace

        graph = trace(model_or_graph)
    model = to_model(graph, opset)
    path = os.fspath(path)
    try:
        onnx.save(model, path)
    except OSError as e:
        raise OnnxError(f"export: cannot write {path!r}: {e.strerror or e}") from None
    return model


def dims_for_reshape(source: tuple, target: tuple) -> list[int]:
    """An ONNX Reshape shape for an IR target shape: symbols become 0 (copy the input's
    dimension) where the input has the same symbol at that axis, else the one -1."""
    out = []
    for i, d in enumerate(target):
        if not is_symbol(d):
            out.append(d)
        elif i < len(source) and source[i] == d:
            out.append(0)
        else:
            out.append(-1)
    if out.count(-1) > 1:
        raise UnsupportedError(f"export: reshape to {target} has more than one symbolic dimension "
                               f"that moves")
    return out


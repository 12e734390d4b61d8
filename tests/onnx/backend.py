"""An `onnx.backend.base.Backend` that imports with nncompile and runs the reference interpreter
(`Backend`) or compiled native code (`CompiledBackend`).

Inputs that fix a shape (Reshape's shape, Slice's starts, TopK's K...) are graph inputs in ONNX's
node tests, while nncompile needs them when it imports (its shapes are static or symbolic, never
data-dependent). The backend therefore imports at each run, with the graph inputs that the
tensor named by the importer's NeedsConstantError is computed from bound as initializers; at
least one input stays an input, so the operator itself is imported, never folded away.
"""
from __future__ import annotations

import warnings

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.backend.base import Backend as BaseBackend
from onnx.backend.base import BackendRep

import nncompile
from nncompile.onnx import NeedsConstantError
from nncompile.runtime import reference


class Rep(BackendRep):
    def __init__(self, model: onnx.ModelProto, compiled: bool):
        self.model = model
        self.compiled = compiled
        initialized = {t.name for t in model.graph.initializer}
        self.inputs = [vi.name for vi in model.graph.input if vi.name not in initialized]

    def run(self, inputs, **kwargs):
        if isinstance(inputs, dict):
            feeds = dict(inputs)
        else:
            arrays = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
            feeds = dict(zip(self.inputs, arrays))
        graph = _import(self.model, feeds)
        data = {v.name: np.asarray(feeds[v.name]) for v in graph.data_inputs}
        if self.compiled:
            out = nncompile.compile(graph).run(data)
            return [out[name] for name in graph.output_names]
        return reference.run(graph, data)


def _import(model: onnx.ModelProto, feeds: dict) -> nncompile.ir.Graph:
    frozen = onnx.ModelProto()
    frozen.CopyFrom(model)
    while True:
        try:
            return nncompile.onnx.load(frozen, check=False)
        except NeedsConstantError as e:
            names = [vi.name for vi in frozen.graph.input]
            sources = [n for n in _sources(frozen.graph, e.tensor) if n in names and n in feeds]
            if not sources or len(sources) == len(names):
                raise
            for name in sources:
                frozen.graph.initializer.append(numpy_helper.from_array(np.asarray(feeds[name]), name))
            keep = [vi for vi in frozen.graph.input if vi.name not in sources]
            del frozen.graph.input[:]
            frozen.graph.input.extend(keep)


def _sources(graph: onnx.GraphProto, tensor: str) -> set[str]:
    """The tensor and every tensor whose values it is computed from (Shape and Size read shapes)."""
    producer = {out: node for node in graph.node for out in node.output}
    seen, todo = set(), [tensor]
    while todo:
        name = todo.pop()
        if name and name not in seen:
            seen.add(name)
            node = producer.get(name)
            if node is not None and node.op_type not in ("Shape", "Size"):
                todo.extend(node.input)
    return seen


class Backend(BaseBackend):
    compiled = False

    @classmethod
    def prepare(cls, model, device="CPU", **kwargs):
        super().prepare(model, device, **kwargs)
        return Rep(model, cls.compiled)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device == "CPU"


class CompiledBackend(Backend):
    compiled = True


def node_cases():
    """ONNX's node test cases (models with inputs and outputs), made in memory by onnx."""
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # some cases divide by zero on purpose
        return [c for c in collect_testcases(None) if c.model is not None and c.data_sets]

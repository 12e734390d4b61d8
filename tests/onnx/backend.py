"""An `onnx.backend.base.Backend` that imports with nncompile and runs the reference interpreter
(`Backend`) or compiled native code (`CompiledBackend`).

Inputs that fix a shape (Reshape's shape, Slice's starts, TopK's K...) are graph inputs in ONNX's
node tests, while nncompile needs them when it imports (its shapes are static or symbolic, never
data-dependent). The backend therefore imports at the first run, with those inputs (named by the
importer's NeedsConstantError) bound as initializers; data inputs stay inputs, so the operator
itself is always imported, never folded away.
"""
from __future__ import annotations

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
            if e.tensor not in names or e.tensor not in feeds or len(names) == 1:
                raise
            tensor = numpy_helper.from_array(np.asarray(feeds[e.tensor]), e.tensor)
            frozen.graph.initializer.append(tensor)
            del frozen.graph.input[names.index(e.tensor)]


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

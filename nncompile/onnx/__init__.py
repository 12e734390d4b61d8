"""ONNX import and export.

    graph = nncompile.onnx.load("net.onnx")          # -> nncompile.ir.Graph, ONNX names kept
    nncompile.onnx.save(model_or_graph, "net.onnx")  # opset 17 unless asked otherwise
"""
import importlib

from nncompile.onnx.errors import NeedsConstantError, OnnxError, UnsupportedError

# Importing the onnx package takes over a second; `import nncompile` should not pay for it, so
# load, save and to_model are imported on first use (PEP 562).
_LAZY = {"load": "nncompile.onnx.importer", "save": "nncompile.onnx.exporter",
         "to_model": "nncompile.onnx.exporter"}

__all__ = ["NeedsConstantError", "OnnxError", "UnsupportedError", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nncompile.onnx' has no attribute {name!r}")

"""ONNX import and export.

    graph = nncompile.onnx.load("net.onnx")          # -> nncompile.ir.Graph, ONNX names kept
    nncompile.onnx.save(model_or_graph, "net.onnx")  # opset 17 unless asked otherwise
"""
from nncompile.onnx.errors import NeedsConstantError, OnnxError, UnsupportedError
from nncompile.onnx.exporter import save, to_model
from nncompile.onnx.importer import load

__all__ = ["NeedsConstantError", "OnnxError", "UnsupportedError", "load", "save", "to_model"]

"""Errors of the ONNX importer and exporter: one line each, naming the file, node and opset."""
from nncompile.ir.errors import IRError


class OnnxError(IRError):
    """A model that cannot be read, imported or exported (a ValueError, as every IRError is)."""


class UnsupportedError(OnnxError):
    """An operator, attribute value or dtype the importer or exporter does not handle."""


class NeedsConstantError(UnsupportedError):
    """An input that fixes a shape (Reshape's shape, Slice's starts...) is only known at run time."""

    def __init__(self, message: str, tensor: str = ""):
        super().__init__(message)
        self.tensor = tensor   # the ONNX name of that input

"""The IR: typed SSA graphs, the op table, the text form, and the verifier."""
from nncompile.ir import ops  # noqa: F401  (registers the op table)
from nncompile.ir.builder import Builder
from nncompile.ir.dtypes import DType, bool_, f16, f32, f64, i8, i32, i64, u8
from nncompile.ir.errors import IRError, ParseError, ShapeError, SizeError, VerifyError
from nncompile.ir.graph import Graph, Node, Value, structurally_equal
from nncompile.ir.optable import OPS, Attr, AttrKind, Fusion, OpDef, defop, get_op
from nncompile.ir.parser import parse
from nncompile.ir.printer import print_graph
from nncompile.ir.types import BATCH, TensorType, broadcast_shapes
from nncompile.ir.verifier import verify

__all__ = [
    "BATCH", "Attr", "AttrKind", "Builder", "DType", "Fusion", "Graph", "IRError", "Node", "OPS",
    "OpDef", "ParseError", "ShapeError", "SizeError", "TensorType", "Value", "VerifyError", "bool_",
    "broadcast_shapes", "defop", "f16", "f32", "f64", "get_op", "i8", "i32", "i64", "parse",
    "print_graph", "structurally_equal", "u8", "verify",
]

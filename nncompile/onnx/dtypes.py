"""ONNX element types <-> IR dtypes, and symbolic dimensions of value infos."""
from __future__ import annotations

import re

from onnx import TensorProto

from nncompile.ir.dtypes import DType
from nncompile.onnx.errors import UnsupportedError

TO_IR = {
    TensorProto.FLOAT: DType.f32, TensorProto.DOUBLE: DType.f64, TensorProto.FLOAT16: DType.f16,
    TensorProto.INT8: DType.i8, TensorProto.UINT8: DType.u8, TensorProto.INT32: DType.i32,
    TensorProto.INT64: DType.i64, TensorProto.BOOL: DType.bool,
}
TO_ONNX = {v: k for k, v in TO_IR.items()}
_NOT_SYMBOL = re.compile(r"[^A-Za-z0-9_]")


def ir_dtype(elem_type: int, what: str) -> DType:
    try:
        return TO_IR[elem_type]
    except KeyError:
        name = TensorProto.DataType.Name(elem_type) if elem_type in TensorProto.DataType.values() else elem_type
        valid = ", ".join(TensorProto.DataType.Name(t) for t in TO_IR)
        raise UnsupportedError(f"{what} has element type {name}; supported: {valid}") from None


def symbol(dim_param: str) -> str:
    """An IR symbol for an ONNX dim_param ('batch_size', 's0', 'batch size' -> 'batch_size')."""
    name = _NOT_SYMBOL.sub("_", dim_param)
    return name if name and not name[0].isdigit() else f"d_{name}"

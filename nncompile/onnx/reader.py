"""Reading an ONNX model: a path, bytes or a ModelProto, with its external data, checked."""
from __future__ import annotations

import os

import onnx
from google.protobuf.message import DecodeError

from nncompile.onnx.errors import OnnxError


def read_model(source) -> tuple[onnx.ModelProto, str]:
    """The model and a short name for messages; external data is loaded from beside the file."""
    if isinstance(source, onnx.ModelProto):
        return source, f"model {source.graph.name!r}"
    if isinstance(source, (bytes, bytearray)):
        return _parse(bytes(source), "ONNX bytes"), "ONNX bytes"
    path = os.fspath(source)
    what = f"ONNX file {path!r}"
    if not os.path.isfile(path):
        raise OnnxError(f"{what} does not exist" if not os.path.exists(path) else f"{what} is not a file")
    with open(path, "rb") as f:
        model = _parse(f.read(), what)
    try:
        onnx.external_data_helper.load_external_data_for_model(model, os.path.dirname(os.path.abspath(path)))
    except (OSError, ValueError, onnx.checker.ValidationError) as e:
        reason = getattr(e, "strerror", None) or str(e).strip().splitlines()[0]
        raise OnnxError(f"{what}: cannot read its external data: {reason}"
                        f"{f' ({e.filename})' if getattr(e, 'filename', None) else ''}") from None
    return model, what


def _parse(data: bytes, what: str) -> onnx.ModelProto:
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as e:
        raise OnnxError(f"{what} is not a valid ONNX model (truncated or not a protobuf): {e}") from None
    if not model.HasField("graph") or not model.graph.node and not model.graph.output:
        raise OnnxError(f"{what} holds no ONNX graph (empty, truncated or not an ONNX file)")
    return model


def check_model(model: onnx.ModelProto, what: str) -> None:
    """onnx.checker on the in-memory model; a failure is one OnnxError naming the file."""
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "invalid model"
        raise OnnxError(f"{what} fails the ONNX checker: {first}") from None


def opset_of(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return entry.version
    raise OnnxError(f"model {model.graph.name!r} imports no version of the default ONNX opset")

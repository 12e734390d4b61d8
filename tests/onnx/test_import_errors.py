"""One clear error for what cannot be imported: it names the file, the node, the op and the opset."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import nncompile.onnx
import nncompile.runtime.reference
from nncompile.onnx import OnnxError, UnsupportedError


def _model(nodes, inputs, outputs, initializers=(), opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _vi(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def test_unsupported_operator_names_op_node_and_opset(tmp_path):
    model = _model([helper.make_node("Unique", ["x"], ["y"], name="my_unique")],
                   [_vi("x", [2, 3])], [_vi("y", [2, 3])])
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    with pytest.raises(UnsupportedError) as e:
        nncompile.onnx.load(str(path))
    message = str(e.value)
    assert "Unique" in message and "my_unique" in message and "opset 17" in message
    assert str(path) in message and "\n" not in message


def test_unsupported_attribute_value_is_named():
    node = helper.make_node("Resize", ["x", "", "s"], ["y"], name="up", mode="cubic")
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "s")
    model = _model([node], [_vi("x", [1, 1, 2, 2])], [_vi("y", [1, 1, 4, 4])], [scales], opset=19)
    with pytest.raises(UnsupportedError, match=r"'up' \(Resize, opset 19\): mode 'cubic'"):
        nncompile.onnx.load(model)


@pytest.mark.parametrize("data", [b"", b"not a protobuf at all \xff\xff", b"\x08\x07\x12"])
def test_malformed_file(tmp_path, data):
    path = tmp_path / "bad.onnx"
    path.write_bytes(data)
    with pytest.raises(OnnxError, match="bad.onnx"):
        nncompile.onnx.load(str(path))


def _matmul(w: np.ndarray) -> onnx.ModelProto:
    return _model([helper.make_node("MatMul", ["x", "w"], ["y"])], [_vi("x", [1, w.shape[0]])],
                  [_vi("y", [1, w.shape[1]])], [numpy_helper.from_array(w, "w")])


def test_truncated_file(tmp_path):
    model = _matmul(np.ones((64, 64), np.float32))
    path = tmp_path / "cut.onnx"
    path.write_bytes(model.SerializeToString()[:-100])
    with pytest.raises(OnnxError, match="cut.onnx"):
        nncompile.onnx.load(str(path))


def test_missing_external_data_file(tmp_path):
    model = _matmul(np.ones((64, 64), np.float32))
    path = tmp_path / "ext.onnx"
    onnx.save(model, path, save_as_external_data=True, location="ext.bin", size_threshold=0)
    (tmp_path / "ext.bin").unlink()
    with pytest.raises(OnnxError, match="external data"):
        nncompile.onnx.load(str(path))


def test_external_data_is_read(tmp_path):
    w = np.arange(64 * 4, dtype=np.float32).reshape(64, 4)
    model = _matmul(w)
    path = tmp_path / "ext.onnx"
    onnx.save(model, path, save_as_external_data=True, location="ext.bin", size_threshold=0)
    graph = nncompile.onnx.load(str(path))
    x = np.ones((1, 64), np.float32)
    np.testing.assert_allclose(nncompile.runtime.reference.run(graph, [x])[0], x @ w)


def test_checker_failure_is_one_error():
    # An input used by no declared producer: the checker refuses the graph.
    model = _model([helper.make_node("Relu", ["nowhere"], ["y"])], [_vi("x", [2])], [_vi("y", [2])])
    with pytest.raises(OnnxError, match="fails the ONNX checker"):
        nncompile.onnx.load(model)


def test_missing_file():
    with pytest.raises(OnnxError, match="does not exist"):
        nncompile.onnx.load("/nonexistent/model.onnx")


def test_unsupported_dtype_names_the_input():
    model = _model([helper.make_node("Identity", ["x"], ["y"])], [_vi("x", [2], TensorProto.STRING)],
                   [_vi("y", [2], TensorProto.STRING)])
    with pytest.raises(UnsupportedError, match="graph input 'x' has element type STRING"):
        nncompile.onnx.load(model)

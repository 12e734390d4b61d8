"""NCHW models run in the IR's NHWC layout with one transpose at the input, not one per op."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

import nncompile
import nncompile.onnx
from nncompile.runtime.reference import run


def _cnn():
    rng = np.random.default_rng(0)
    inits = {"w1": rng.standard_normal((4, 3, 3, 3)), "b1": rng.standard_normal(4),
             "pos": rng.standard_normal((1, 4, 8, 8)), "w2": rng.standard_normal((6, 4, 3, 3)),
             "scale": rng.standard_normal((6, 1, 1)), "fc": rng.standard_normal((6, 2)),
             "crop_starts": np.array([1, 1]), "crop_ends": np.array([3, 3]), "crop_axes": np.array([2, 3])}
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Add", ["r1", "pos"], ["p1"]),            # a full-rank NCHW constant
        helper.make_node("MaxPool", ["p1"], ["m1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["m1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["c2", "scale"], ["s2"]),          # a per-channel constant
        helper.make_node("Slice", ["s2", "crop_starts", "crop_ends", "crop_axes"], ["k2"]),
        helper.make_node("ReduceMean", ["k2"], ["g2"], axes=[2, 3], keepdims=1),
        helper.make_node("Flatten", ["g2"], ["f"]),
        helper.make_node("MatMul", ["f", "fc"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2])],
        [numpy_helper.from_array(v.astype(np.float32 if v.dtype.kind == "f" else np.int64), k)
         for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_cnn_is_transposed_once_and_matches_onnxruntime():
    model = _cnn()
    graph = nncompile.onnx.load(model)
    assert [n.op for n in graph.nodes].count("transpose") == 1
    x = np.random.default_rng(1).standard_normal((3, 3, 8, 8)).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(nncompile.compile(graph).run({"x": x})["y"], want, rtol=1e-4, atol=1e-4)


def test_a_scalar_gather_is_taken_where_the_data_lies():
    """Gather with a scalar index on a transposed value reads it in its layout: no transpose is
    materialized for it (attention's q, k, v taken from a transposed projection so)."""
    rng = np.random.default_rng(2)
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[2, 0, 1]),
             helper.make_node("Gather", ["t", "one"], ["g"], axis=0),
             helper.make_node("Gather", ["t", "pair"], ["h"], axis=1)]
    graph = helper.make_graph(
        nodes, "gathers", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])],
        [helper.make_tensor_value_info("g", TensorProto.FLOAT, [2, 3]),
         helper.make_tensor_value_info("h", TensorProto.FLOAT, [4, 2, 3])],
        [numpy_helper.from_array(np.array(1, np.int64), "one"),
         numpy_helper.from_array(np.array([1, 0], np.int64), "pair")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    imported = nncompile.onnx.load(model)
    gathers = [n for n in imported.nodes if n.op == "gather"]
    assert gathers[0].inputs[0] is imported.inputs[0] and gathers[0].attrs["axis"] == 2
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    np.testing.assert_array_equal(run(imported, [x])[0], x.transpose(2, 0, 1)[1])
    np.testing.assert_array_equal(run(imported, [x])[1], x.transpose(2, 0, 1)[:, [1, 0]])

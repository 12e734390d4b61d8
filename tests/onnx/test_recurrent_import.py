"""ONNX's LSTM, GRU and RNN imported as scans: PyTorch-exported recurrent models (fixtures made by
make_recurrent_fixtures.py) against onnxruntime at several batch sizes, compiled, and one scan
per direction and layer whatever the sequence length (ONNX's own node cases: test_backend.py).
The IR's scan exported as ONNX's Scan, run by onnxruntime, and imported back (Keras recurrent
layers export as ONNX's LSTM, GRU and RNN: test_recurrent_export.py)."""
from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
import pytest

import nncompile
import nncompile.onnx

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "onnx")


@pytest.mark.parametrize("name, scans", [("lstm_tokens_dynamo", 1), ("lstm_tokens_torchscript", 1),
                                         ("gru_bidirectional_dynamo", 4), ("gru_bidirectional_torchscript", 4)])
def test_exported_recurrent_model_matches_onnxruntime_at_any_batch(name, scans):
    path = os.path.join(FIXTURES, name + ".onnx")
    graph = nncompile.onnx.load(path)
    assert sum(n.op == "scan" for n in graph.nodes) == scans
    exe = nncompile.compile(graph)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    (input_name, x), = ((k, v) for k, v in np.load(os.path.join(FIXTURES, name + ".npz")).items()
                        if not k.startswith("out:"))
    rng = np.random.default_rng(0)
    for batch in (1, 3, 7):
        if x.dtype.kind == "i":
            xb = rng.integers(0, 50, (batch,) + x.shape[1:]).astype(x.dtype)
        else:
            xb = rng.standard_normal((batch,) + x.shape[1:]).astype(x.dtype)
        want = session.run(None, {input_name: xb})[0]
        got = exe.run({input_name: xb})
        np.testing.assert_allclose(next(iter(got.values())), want, rtol=1e-4, atol=1e-5)


def _elman(reverse: bool):
    """An Elman RNN over axis 1 as the IR's scan: the state carried, per step its double."""
    from nncompile.ir import BATCH, Builder, f32

    body = Builder(name="body")
    h, x = body.input("h", f32[BATCH, 3]), body.input("x", f32[BATCH, 2])
    w, u = body.input("w", f32[2, 3]), body.input("u", f32[3, 3])
    h2 = body.tanh(body.add(body.matmul(x, w), body.matmul(h, u)))
    step = body.finish([h2, body.mul(h2, body.constant(np.float32(2)))])
    b = Builder()
    xs, h0 = b.input("xs", f32[BATCH, 5, 2]), b.input("h0", f32[BATCH, 3])
    rng = np.random.default_rng(0)
    w = b.param("w", rng.standard_normal((2, 3)).astype(np.float32))
    u = b.param("u", (rng.standard_normal((3, 3)) * 0.5).astype(np.float32))
    h_last, ys = b.scan(h0, xs, w, u, body=step, num_carry=1, num_scanned=1, axis=1, reverse=reverse)
    return b.finish([h_last, ys], ["h", "ys"])


@pytest.mark.parametrize("reverse", [False, True])
def test_scan_exports_as_one_onnx_scan_that_onnxruntime_runs(reverse, tmp_path):
    """Exported as ONNX's Scan (the weights read by the body from the enclosing graph), the loop
    runs in onnxruntime as the numpy loop written here computes it."""
    graph = _elman(reverse)
    path = str(tmp_path / "elman.onnx")
    model = nncompile.onnx.save(graph, path)
    assert [n.op_type for n in model.graph.node].count("Scan") == 1
    rng = np.random.default_rng(1)
    xs, h0 = rng.standard_normal((4, 5, 2)).astype(np.float32), rng.standard_normal((4, 3)).astype(np.float32)
    h_last, ys = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"xs": xs, "h0": h0})
    w, u = graph.params["w"], graph.params["u"]
    h, want = h0, np.zeros((4, 5, 3), np.float32)
    for t in (range(4, -1, -1) if reverse else range(5)):
        h = np.tanh(xs[:, t] @ w + h @ u)
        want[:, t] = 2 * h
    np.testing.assert_allclose(h_last, h, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ys, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reverse", [False, True])
def test_scan_round_trips_through_onnx(reverse, tmp_path):
    """load(save(graph)): ONNX's Scan imports as the IR's scan (time-major, between two
    transposes) and computes what the original computes."""
    from nncompile.runtime.reference import run

    graph = _elman(reverse)
    path = str(tmp_path / "elman.onnx")
    nncompile.onnx.save(graph, path)
    again = nncompile.onnx.load(path)
    assert [n.op for n in again.nodes].count("scan") == 1
    rng = np.random.default_rng(2)
    xs, h0 = rng.standard_normal((3, 5, 2)).astype(np.float32), rng.standard_normal((3, 3)).astype(np.float32)
    got = nncompile.compile(again).run({"xs": xs, "h0": h0})
    for value, want in zip(got.values(), run(graph, [xs, h0])):
        np.testing.assert_allclose(value, want, rtol=1e-5, atol=1e-6)


def test_a_scan_starting_from_zeros_of_the_symbolic_batch_exports():
    """The zeros a recurrent layer starts from are broadcast to (batch, units): exported, the
    batch is read off the input at run time (Shape, Gather, Concat, Expand)."""
    from nncompile.runtime.reference import run
    from tests.op_examples import EXAMPLES

    graph, inputs = EXAMPLES["scan"](np.random.default_rng(3))
    model = nncompile.onnx.to_model(graph)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for batch in (1, 4):
        feeds = {i.name: np.resize(x, (batch,) + x.shape[1:]) for i, x in zip(session.get_inputs(), inputs)}
        for got, want in zip(session.run(None, feeds), run(graph, list(feeds.values()))):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def _tanh_scan_body(tag: str):
    """s' = tanh(x + s @ W), W an initializer of the enclosing graph; the step's output is s'."""
    nodes = [helper.make_node("MatMul", ["s", "W"], ["m"]), helper.make_node("Add", ["x", "m"], ["a"]),
             helper.make_node("Tanh", ["a"], ["s2"]), helper.make_node("Identity", ["s2"], ["y"])]
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 4]) for n in ("s", "x", "s2", "y")]
    return helper.make_graph(nodes, f"body{tag}", io[:2], io[2:])


@pytest.mark.parametrize("case", ["read before", "read after", "two scans"])
def test_an_initializer_read_by_a_scan_body_and_by_the_enclosing_graph(case):
    """The body's use of W is its own (an invariant operand): the enclosing graph reading W too,
    before or after, or a second Scan reading it, sees W and not the body's value."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 4)).astype(np.float32)
    s0, xs = rng.standard_normal((2, 4)).astype(np.float32), rng.standard_normal((2, 3, 4)).astype(np.float32)

    def scan(state, final, tag):
        return helper.make_node("Scan", [state, "xs"], [final, f"ys{tag}"], body=_tanh_scan_body(tag),
                                num_scan_inputs=1, scan_input_axes=[1], scan_output_axes=[1])

    def numpy_scan(s):
        for t in range(xs.shape[1]):
            s = np.tanh(xs[:, t] + s @ w)
        return s

    nodes, want = {
        "read before": ([helper.make_node("MatMul", ["s0", "W"], ["s1"]), scan("s1", "out", "1")], numpy_scan(s0 @ w)),
        "read after": ([scan("s0", "sf", "1"), helper.make_node("MatMul", ["sf", "W"], ["out"])], numpy_scan(s0) @ w),
        "two scans": ([scan("s0", "sf", "1"), scan("sf", "out", "2")], numpy_scan(numpy_scan(s0))),
    }[case]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("s0", TensorProto.FLOAT, [2, 4]),
                                           helper.make_tensor_value_info("xs", TensorProto.FLOAT, [2, 3, 4])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [2, 4])],
                              [numpy_helper.from_array(w, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    got = nncompile.compile(nncompile.onnx.load(model))(s0, xs)
    np.testing.assert_allclose(got[0] if isinstance(got, list) else got, want, rtol=1e-5, atol=1e-5)


def test_a_scan_body_with_two_batch_norms_sharing_their_scale():
    """Both fold their own mean and variance into the shared scale `g`: two arrays under one
    initializer's name, which must stay two operands."""
    rng = np.random.default_rng(1)
    c = 16
    g, b = rng.uniform(0.5, 1.5, c).astype(np.float32), rng.standard_normal(c).astype(np.float32)
    m1, m2 = rng.standard_normal((2, c)).astype(np.float32)
    v1, v2 = rng.uniform(0.5, 2, (2, c)).astype(np.float32)

    def info(name, shape):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)

    body = helper.make_graph([helper.make_node("BatchNormalization", ["x", "g", "b", "m1", "v1"], ["n1"]),
                              helper.make_node("BatchNormalization", ["s", "g", "b", "m2", "v2"], ["n2"]),
                              helper.make_node("Add", ["n1", "n2"], ["s2"]), helper.make_node("Identity", ["s2"], ["y"])],
                             "body", [info("s", [2, c]), info("x", [2, c])], [info("s2", [2, c]), info("y", [2, c])])
    scan = helper.make_node("Scan", ["s0", "xs"], ["sf", "ys"], body=body, num_scan_inputs=1,
                            scan_input_axes=[1], scan_output_axes=[1])
    arrays = {"g": g, "b": b, "m1": m1, "m2": m2, "v1": v1, "v2": v2}
    graph = helper.make_graph([scan], "bn", [info("s0", [2, c]), info("xs", [2, 3, c])],
                              [info("sf", [2, c]), info("ys", [2, 3, c])],
                              [numpy_helper.from_array(a, n) for n, a in arrays.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    s0, xs = rng.standard_normal((2, c)).astype(np.float32), rng.standard_normal((2, 3, c)).astype(np.float32)

    def norm(x, mean, var):
        return g * (x - mean) / np.sqrt(var + 1e-5) + b

    s = s0
    for t in range(3):
        s = norm(xs[:, t], m1, v1) + norm(s, m2, v2)
    got = nncompile.compile(nncompile.onnx.load(model))(s0, xs)
    np.testing.assert_allclose(got[0], s, rtol=1e-4, atol=1e-4)

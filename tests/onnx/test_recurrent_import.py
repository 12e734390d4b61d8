"""ONNX's LSTM, GRU and RNN imported as scans: PyTorch-exported recurrent models (fixtures made by
make_recurrent_fixtures.py) against onnxruntime at several batch sizes, compiled, and one scan
per direction and layer whatever the sequence length (ONNX's own node cases: test_backend.py).
The IR's scan exported as ONNX's Scan, run by onnxruntime, and imported back (Keras recurrent
layers export as ONNX's LSTM, GRU and RNN: test_recurrent_export.py)."""
from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort
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

"""ONNX's LSTM, GRU and RNN imported as scans: PyTorch-exported recurrent models (fixtures made by
make_recurrent_fixtures.py) against onnxruntime at several batch sizes, compiled, and one scan
per direction and layer whatever the sequence length (ONNX's own node cases: test_onnx_backend.py)."""
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

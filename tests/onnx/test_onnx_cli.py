"""The command line on ONNX files: the commands read them (one loader), export writes them.
A malformed .onnx file is among tests/cli's bad inputs."""
from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort

from nncompile import keras
from tests.cli.conftest import nnc

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "onnx")


def test_run_an_onnx_file_at_another_batch(tmp_path):
    model = os.path.join(FIXTURES, "dynamic_torchscript.onnx")
    x = np.random.default_rng(0).standard_normal((5, 1, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    result = nnc("run", model, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy")
    assert result.returncode == 0, result.stderr
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), want, rtol=1e-4, atol=1e-5)


def test_export_a_keras_file(tmp_path):
    model = keras.Sequential([keras.Input(shape=(6,)), keras.layers.Dense(3, activation="relu")])
    model.save(tmp_path / "m.keras")
    result = nnc("export", tmp_path / "m.keras", "-o", tmp_path / "m.onnx")
    assert result.returncode == 0, result.stderr
    x = np.random.default_rng(1).standard_normal((4, 6)).astype(np.float32)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


"""Models exported by real PyTorch (tests/fixtures/onnx, made by make_fixtures.py) imported and
run, against the outputs onnxruntime computed for them."""
from __future__ import annotations

import glob
import os

import numpy as np
import onnxruntime as ort
import pytest

import nncompile
import nncompile.onnx
from nncompile.runtime import reference

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "onnx")
NAMES = sorted(os.path.basename(p)[:-len(".onnx")] for p in glob.glob(os.path.join(FIXTURES, "*.onnx")))
# Compiling takes seconds a model: one of each kind runs compiled, all run on the reference.
COMPILED = ["cnn_bn_torchscript", "residual_dynamo", "encoder_torchscript", "mlp_dynamo"]


def _fixture(name: str):
    data = np.load(os.path.join(FIXTURES, name + ".npz"))
    inputs = {k: data[k] for k in data.files if not k.startswith("out:")}
    outputs = {k[len("out:"):]: data[k] for k in data.files if k.startswith("out:")}
    return nncompile.onnx.load(os.path.join(FIXTURES, name + ".onnx")), inputs, outputs


def test_every_model_has_both_exporters():
    assert {"mlp_dynamo", "mlp_torchscript", "cnn_bn_dynamo", "cnn_bn_torchscript", "cnn_bn_folded_torchscript",
            "residual_dynamo", "residual_torchscript", "dynamic_dynamo", "dynamic_torchscript",
            "encoder_dynamo", "encoder_torchscript", "encoder_layer_dynamo", "encoder_dynamic_dynamo",
            "encoder_dynamic_torchscript", "encoder_layer_dynamic_dynamo"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_reference_matches_onnxruntime(name):
    graph, inputs, outputs = _fixture(name)
    assert [v.name for v in graph.data_inputs] == list(inputs)
    assert graph.output_names == list(outputs)
    for got, want in zip(reference.run(graph, inputs), outputs.values()):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", COMPILED)
def test_compiled_matches_onnxruntime(name):
    graph, inputs, outputs = _fixture(name)
    got = nncompile.compile(graph).run(inputs)
    for key, want in outputs.items():
        np.testing.assert_allclose(got[key], want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["cnn_bn_torchscript", "residual_dynamo", "residual_torchscript"])
def test_nchw_model_is_transposed_at_its_edges_only(name):
    """Convolutions, batch norms, activations and the residual add all stay NHWC: the only
    transposes are the input's (NCHW -> NHWC) and, where the output is 4-D, the output's."""
    graph, _, _ = _fixture(name)
    transposes = [n for n in graph.nodes if n.op == "transpose"]
    convs = [n for n in graph.nodes if n.op == "conv2d"]
    assert len(convs) >= 2 and len(transposes) <= 2
    assert transposes[0].inputs[0] is graph.data_inputs[0]


@pytest.mark.parametrize("name", ["dynamic_dynamo",    # the TorchScript one: tests/onnx/test_onnx_cli.py
                                  # the attention's heads folded into the batch by a Reshape
                                  "encoder_dynamic_torchscript", "encoder_layer_dynamic_dynamo"])
def test_dynamic_batch_runs_at_several_sizes_with_one_executable(name):
    graph, inputs, _ = _fixture(name)
    (input_name, x), = inputs.items()
    assert isinstance(graph.data_inputs[0].type.shape[0], str)   # the batch stays symbolic
    exe = nncompile.compile(graph)
    session = ort.InferenceSession(os.path.join(FIXTURES, name + ".onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for batch in (1, 3, 7):
        xb = rng.standard_normal((batch,) + x.shape[1:]).astype(np.float32)
        want = session.run(None, {input_name: xb})[0]
        got = exe.run({input_name: xb})
        np.testing.assert_allclose(got[graph.output_names[0]], want, rtol=1e-4, atol=1e-5)

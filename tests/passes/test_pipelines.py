"""Named pipelines: their passes exist, describe() lists everything, and compiling with them
gives the reference results with no more kernels than the bare codegen pipeline."""
from __future__ import annotations

import numpy as np
import pytest

import nncompile
from nncompile.ir import IRError
from nncompile.keras import Input, Sequential, layers
from nncompile.passes import PASSES
from nncompile.passes.pipelines import PIPELINES, describe, pipeline
from nncompile.runtime.cpu import compile as compile_graph
from nncompile.runtime.reference import run


def test_every_pipeline_names_registered_passes_and_ends_in_codegen():
    for name, p in PIPELINES.items():
        assert pipeline(name) == p.passes
        assert all(step in PASSES for step in p.passes)
        assert p.passes[-2:] == ("fuse", "schedule")
    assert "fold-batchnorm" not in pipeline("training")


def test_unknown_pipeline_lists_the_valid_ones():
    with pytest.raises(IRError, match="unknown pipeline 'fast'.*inference, training, codegen"):
        pipeline("fast")


def test_describe_has_one_line_per_pipeline_and_pass():
    lines = describe().splitlines()
    for name in PIPELINES:
        assert sum(line.split()[0] == name for line in lines if line.startswith("  ")) >= 1
    for name, info in PASSES.items():
        assert any(line.split()[0] == name and info.doc in line for line in lines)
    assert len(lines) == 2 + len(PIPELINES) + len(PASSES)


def _kernels(graph) -> int:
    return sum(node.op != "constant" for node in graph.nodes)


def _randomized(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        layer.set_weights([rng.uniform(0.2, 1.0, w.shape).astype(np.float32) for w in layer.get_weights()])
    return model


@pytest.mark.parametrize("model", ["mlp", "cnn_bn"])
def test_inference_pipeline_keeps_results_and_does_not_add_kernels(model):
    if model == "mlp":
        m = Sequential([Input((6,)), layers.Dense(5, activation="relu"), layers.Dropout(0.3),
                        layers.Dense(3, activation="softmax")])
    else:
        m = Sequential([Input((6, 6, 2)), layers.Conv2D(4, 3), layers.BatchNormalization(),
                        layers.Activation("relu"), layers.Flatten(), layers.Dense(2)])
    g = nncompile.trace(_randomized(m))
    x = np.random.default_rng(1).standard_normal((3, *g.data_inputs[0].type.shape[1:])).astype(np.float32)
    expected = run(g, [x])[0]
    inference = compile_graph(g, pipeline="inference")
    np.testing.assert_allclose(inference(x), expected, rtol=1e-4, atol=1e-5)
    assert _kernels(inference.graph) <= _kernels(compile_graph(g, pipeline="codegen").graph)


def test_training_step_pipeline_is_exact_and_removes_kernels():
    m = Sequential([Input((4,)), layers.Dense(6, activation="relu"), layers.Dense(1, activation="sigmoid")])
    m.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((8, 4)).astype(np.float32), (rng.uniform(size=(8, 1)) > 0.5).astype(np.float32)
    m.fit(x, y, epochs=1, batch_size=8, verbose=0)
    (step,) = [s.graph for s in m._compiled.steps.values() if s.graph.updates]
    graph = step.copy()
    graph.params = {k: v.copy() for k, v in step.params.items()}
    feeds = {"sample_weight": np.ones(8, np.float32), "learning_rate": np.float32(0.01),
             "iteration": np.float32(1), "seed": np.int64(5)}
    for v in graph.data_inputs:
        feeds.setdefault(v.name, y if v.name.startswith("target/") else x)
    arrays = [feeds[v.name] for v in graph.data_inputs]
    arrays = [np.asarray(a, v.type.dtype.numpy) for a, v in zip(arrays, graph.data_inputs)]
    expected = dict(zip(graph.output_names, run(graph, arrays)))
    exe = compile_graph(graph, pipeline="training")
    outs = exe(*arrays)
    returned = [n for n in graph.output_names if n not in graph.updates]
    for name, out in zip(returned, outs):
        np.testing.assert_allclose(out, expected[name], rtol=1e-4, atol=1e-6)
    for name, param in graph.updates.items():
        np.testing.assert_allclose(graph.params[param], expected[name], rtol=1e-4, atol=1e-6)
    assert _kernels(exe.graph) < _kernels(compile_graph(step, pipeline="codegen").graph)

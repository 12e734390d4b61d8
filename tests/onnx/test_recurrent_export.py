"""Keras recurrent layers exported as ONNX's own LSTM, GRU and RNN operators (the scan names its
cell: nncompile.ir.cells), forward, reverse and bidirectional: checked by onnx.checker and
strict shape inference (save runs both), run by onnxruntime with nncompile's outputs, and
imported back to the same. What the operators cannot say (a masked sequence, stacked cells)
stays one ONNX Scan. nncompile's side is the reference interpreter on the traced graph (the
oracle compiled code is tested against), so that these tests compile nothing."""
from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort
import pytest
from onnx import numpy_helper

import nncompile
import nncompile.onnx
from nncompile import keras
from nncompile.ir import BATCH, Builder, ShapeError, f32, parse, verify
from nncompile.runtime import reference

layers = keras.layers
STEPS, FEATURES = 6, 4


def _functional(rnn, states: int = 0, units: int = 3):
    """x (and `states` initial states as inputs) -> every output of `rnn`."""
    x = keras.Input((STEPS, FEATURES), name="x")
    initial = [keras.Input((units,), name=f"s{i}") for i in range(states)]
    outputs = rnn(x, initial_state=initial) if initial else rnn(x)
    return keras.Model([x, *initial] if initial else x, outputs)


def _sequential(*stack):
    return keras.Sequential([keras.Input((STEPS, FEATURES)), *stack])


# name -> (model, the ONNX operators it must be written with)
MODELS = {
    "lstm_sequences": (lambda: _sequential(layers.LSTM(5, return_sequences=True,
                                                       recurrent_activation="hard_sigmoid")), ["LSTM"]),
    "lstm_backwards_states": (lambda: _functional(layers.LSTM(3, go_backwards=True, return_state=True),
                                                  states=2), ["LSTM"]),
    "gru_reset_after": (lambda: _sequential(layers.GRU(5)), ["GRU"]),
    "gru_reset_before": (lambda: _sequential(layers.GRU(4, reset_after=False, use_bias=False,
                                                       return_sequences=True, go_backwards=True)), ["GRU"]),
    "simple_rnn_relu": (lambda: _sequential(layers.SimpleRNN(4, activation="relu", return_sequences=True),
                                            layers.SimpleRNN(3)), ["RNN", "RNN"]),
    "bidirectional_lstm": (lambda: _sequential(layers.Bidirectional(layers.LSTM(3, return_sequences=True))),
                           ["LSTM"]),
    "bidirectional_gru_states": (lambda: _functional(layers.Bidirectional(
        layers.GRU(3, return_state=True), merge_mode="sum"), states=2), ["GRU"]),
}


def _run_both(model, path, rng):
    graph = nncompile.trace(model)
    feeds = {v.name: rng.standard_normal((3,) + tuple(v.type.shape[1:])).astype(np.float32)
             for v in graph.inputs if not v.is_param}
    want = reference.run(graph, list(feeds.values()))
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = session.run(None, {i.name: x for i, x in zip(session.get_inputs(), feeds.values())})
    return feeds, want, got


@pytest.mark.parametrize("name", sorted(MODELS))
def test_recurrent_layers_export_as_onnx_recurrent_operators(name, tmp_path):
    make, operators = MODELS[name]
    rng = np.random.default_rng(0)
    model = make()
    model.set_weights([rng.standard_normal(w.shape).astype(w.dtype) * 0.5 for w in model.get_weights()])
    path = str(tmp_path / f"{name}.onnx")
    proto = nncompile.onnx.save(model, path)
    ops = [n.op_type for n in proto.graph.node]
    assert [op for op in ops if op in ("LSTM", "GRU", "RNN", "Scan", "Loop")] == operators, ops
    assert not any(op == "MatMul" for op in ops), "the input projection is the operator's W"
    feeds, want, got = _run_both(model, path, rng)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    back = reference.run(nncompile.onnx.load(path), list(feeds.values()))
    for g, w in zip(back, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def test_direction_attributes_and_weight_layout(tmp_path):
    """A Bidirectional LSTM is one node, direction "bidirectional", W (2, 4 * units, input) in
    ONNX's gate order i, o, f, c: Keras's i, f, c, o columns, transposed."""
    model = MODELS["bidirectional_lstm"][0]()
    proto = nncompile.onnx.save(model, str(tmp_path / "b.onnx"))
    (node,) = [n for n in proto.graph.node if n.op_type == "LSTM"]
    attrs = {a.name: a for a in node.attribute}
    assert attrs["direction"].s == b"bidirectional" and attrs["hidden_size"].i == 3
    weights = {t.name: t for t in proto.graph.initializer}
    onnx_w = numpy_helper.to_array(weights[node.input[1]])
    kernel = model.layers[0].forward_layer.cell.kernel.numpy()
    i, f, c, o = np.split(kernel, 4, axis=1)
    np.testing.assert_array_equal(onnx_w[0], np.concatenate([i, o, f, c], axis=1).T)


@pytest.mark.parametrize("name", ["masked", "stacked"])
def test_what_the_operators_cannot_say_stays_a_scan(name, tmp_path):
    if name == "masked":   # Keras holds the state at masked steps anywhere: no sequence_lens
        model = keras.Sequential([keras.Input((STEPS,)), layers.Embedding(20, 4, mask_zero=True), layers.GRU(3)])
    else:
        model = _sequential(layers.RNN([layers.LSTMCell(3), layers.GRUCell(2)]))
    path = str(tmp_path / f"{name}.onnx")
    ops = [n.op_type for n in nncompile.onnx.save(model, path).graph.node]
    assert "Scan" in ops and not {"LSTM", "GRU", "RNN"} & set(ops)
    graph = nncompile.trace(model)
    rng = np.random.default_rng(1)
    x = (rng.integers(0, 20, (3, STEPS)) * (rng.random((3, STEPS)) < 0.7) if name == "masked"
         else rng.standard_normal((3, STEPS, FEATURES))).astype(np.float32)
    want = reference.run(graph, [x])[0]
    got = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {graph.inputs[0].name: x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # and back: the Scan's body reads the recurrent kernels from the enclosing graph's initializers
    back = nncompile.compile(nncompile.onnx.load(path))(x)
    np.testing.assert_allclose(back[0] if isinstance(back, list) else back, want, rtol=1e-5, atol=1e-5)


def test_compiled_model_matches_onnxruntime(tmp_path):
    """One compiled run: the Keras model's predict (native code) against onnxruntime."""
    model = MODELS["bidirectional_gru_states"][0]()
    path = str(tmp_path / "g.onnx")
    nncompile.onnx.save(model, path)
    rng = np.random.default_rng(2)
    xs = [rng.standard_normal((2, STEPS, FEATURES)).astype(np.float32),
          *(rng.standard_normal((2, 3)).astype(np.float32) for _ in range(2))]
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = session.run(None, {i.name: x for i, x in zip(session.get_inputs(), xs)})
    for g, w in zip(got, model.predict(xs, verbose=0), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def test_the_cell_attribute_prints_parses_and_is_verified():
    graph = nncompile.trace(MODELS["gru_reset_after"][0]())
    (scan,) = [n for n in graph.nodes if n.op == "scan"]
    assert scan.attrs["cell"] == "gru_reset_after:sigmoid,tanh"
    text = str(graph)
    assert 'cell="gru_reset_after:sigmoid,tanh"' in text
    again = parse(text)
    verify(again)
    assert [n.attrs["cell"] for n in again.nodes if n.op == "scan"] == ["gru_reset_after:sigmoid,tanh"]
    body = Builder(name="body")
    h, xw = body.input("h", f32[BATCH, 2]), body.input("xw", f32[BATCH, 2])
    r = body.input("r", f32[2, 2])
    step = body.finish([body.tanh(body.add(xw, body.matmul(h, r)))])
    b = Builder()
    operands = [b.input("h0", f32[BATCH, 2]), b.input("xs", f32[5, BATCH, 2]), b.input("u", f32[2, 2])]
    with pytest.raises(ShapeError, match=r"cell lstm:sigmoid,tanh: a scan of this cell has 2 carries"):
        b.scan(*operands, body=step, num_carry=1, num_scanned=1, cell="lstm:sigmoid,tanh")
    with pytest.raises(ShapeError, match="names no cell"):
        b.scan(*operands, body=step, num_carry=1, num_scanned=1, cell="elman:tanh")
    with pytest.raises(ShapeError, match="takes 1 activation"):
        b.scan(*operands, body=step, num_carry=1, num_scanned=1, cell="simple_rnn:swish")
    b.scan(*operands, body=step, num_carry=1, num_scanned=1, cell="simple_rnn:tanh")


@pytest.mark.parametrize("name, operator", [("gru_bidirectional_torchscript", "GRU"), ("lstm_tokens_dynamo", "LSTM")])
def test_pytorch_recurrent_model_imports_as_named_cells_and_exports_back(name, operator, tmp_path):
    """ONNX -> IR -> ONNX: PyTorch's recurrent operators import as the cells Keras's layers build
    (the scan names its cell), so they export as the same operators, which onnxruntime runs to
    the original's outputs."""
    original = os.path.join(os.path.dirname(__file__), "..", "fixtures", "onnx", name + ".onnx")
    graph = nncompile.onnx.load(original)
    assert all(n.attrs["cell"] for n in graph.nodes if n.op == "scan")
    path = str(tmp_path / "again.onnx")
    proto = nncompile.onnx.save(graph, path)
    assert "Scan" not in {n.op_type for n in proto.graph.node}
    assert operator in {n.op_type for n in proto.graph.node}
    (input_name, x), = ((k, v) for k, v in np.load(original[:-len(".onnx")] + ".npz").items()
                        if not k.startswith("out:"))
    runs = [ort.InferenceSession(p, providers=["CPUExecutionProvider"]).run(None, {input_name: x})
            for p in (original, path)]
    for again, want in zip(*runs[::-1], strict=True):
        np.testing.assert_allclose(again, want, rtol=1e-5, atol=1e-5)


def test_an_onnx_lstm_with_clip_imports_as_a_general_scan(tmp_path):
    """What Keras's cells do not have (clip here) imports as a scan that names no cell, and
    exports as a Scan that onnxruntime runs to the LSTM's outputs."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(3)
    weights = [rng.standard_normal(s).astype(np.float32) for s in ((1, 8, 3), (1, 8, 2), (1, 16))]
    node = helper.make_node("LSTM", ["x", "w", "r", "b"], ["y"], hidden_size=2, clip=0.5)
    model = helper.make_model(helper.make_graph(
        [node], "clipped", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, "batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 1, "batch", 2])],
        [numpy_helper.from_array(a, n) for a, n in zip(weights, "wrb")]),
        opset_imports=[helper.make_opsetid("", 17)])
    graph = nncompile.onnx.load(model)
    assert [n.attrs["cell"] for n in graph.nodes if n.op == "scan"] == [""]
    path = str(tmp_path / "clipped.onnx")
    assert "Scan" in {n.op_type for n in nncompile.onnx.save(graph, path).graph.node}
    x = rng.standard_normal((4, 2, 3)).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)

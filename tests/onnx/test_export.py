"""Export: Keras models written as ONNX pass onnx.checker and strict shape inference (save runs
both), run in ONNX Runtime with nncompile's own outputs, and import back to the same results."""
from __future__ import annotations

import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import nncompile
import nncompile.onnx
from nncompile import keras
from nncompile.keras import layers
from nncompile.onnx import OnnxError, UnsupportedError
from nncompile.runtime import reference


def _sequential(input_shape, *stack):
    return keras.Sequential([keras.Input(shape=input_shape), *stack])


def _merging():
    a, b = keras.Input(shape=(6,), name="a"), keras.Input(shape=(6,), name="b")
    da, db = layers.Dense(6, name="left")(a), layers.Dense(6, name="right")(b)
    merged = [layers.Add()([da, db]), layers.Subtract()([da, db]), layers.Multiply()([da, db]),
              layers.Average()([da, db]), layers.Maximum()([da, db]), layers.Minimum()([da, db])]
    return keras.Model([a, b], layers.Dense(3)(layers.Concatenate()(merged)))


MODELS = {
    "dense": lambda: _sequential((12,), layers.Dense(16, activation="relu"), layers.Dropout(0.5),
                                 layers.Dense(8, activation="tanh"), layers.Dense(4, activation="softmax")),
    "activations": lambda: _sequential((10,), layers.Dense(10, activation="elu"), layers.LeakyReLU(),
                                       layers.Dense(10, activation="sigmoid"), layers.ELU(), layers.ReLU(),
                                       layers.Dense(10, activation="gelu"), layers.Softmax()),
    "conv": lambda: _sequential((12, 12, 3), layers.Conv2D(8, 3, padding="same", activation="relu"),
                                layers.BatchNormalization(), layers.MaxPooling2D(),
                                layers.Conv2D(6, 3, strides=2), layers.Flatten(), layers.Dense(5)),
    "pooling": lambda: _sequential((9, 9, 4), layers.AveragePooling2D(3, strides=2, padding="same"),
                                   layers.MaxPooling2D(2, padding="same"), layers.GlobalAveragePooling2D()),
    "conv1d": lambda: _sequential((20, 3), layers.Conv1D(5, 3, activation="relu"), layers.MaxPooling1D(),
                                  layers.AveragePooling1D(), layers.GlobalMaxPooling1D(), layers.Dense(2)),
    "normalization": lambda: _sequential((7, 8), layers.LayerNormalization(), layers.Dense(8),
                                         layers.BatchNormalization(), layers.GlobalAveragePooling1D()),
    "merging": _merging,
    "reshaping": lambda: _sequential((4, 6, 2), layers.ZeroPadding2D(1), layers.Cropping2D(((1, 0), (0, 2))),
                                     layers.UpSampling2D(2), layers.Permute((3, 1, 2)), layers.Reshape((-1,)),
                                     layers.RepeatVector(2), layers.Flatten()),
    "conv_transpose": lambda: _sequential((5, 4, 3), layers.Conv2DTranspose(4, 3, strides=2, padding="same"),
                                          layers.Conv2DTranspose(2, (2, 3), strides=(3, 1), output_padding=(1, 0)),
                                          layers.Reshape((-1, 2)), layers.Conv1DTranspose(3, 2, dilation_rate=2)),
    "volumes": lambda: _sequential((4, 5, 6, 2), layers.Conv3D(4, 3, padding="same", groups=2),
                                   layers.GroupNormalization(2), layers.MaxPooling3D((1, 2, 2)),
                                   layers.Conv3DTranspose(2, 2, strides=(2, 1, 1)),
                                   layers.AveragePooling3D(2, padding="same"), layers.GlobalMaxPooling3D()),
    "embedding_masked": lambda: _sequential((7,), layers.Embedding(20, 6, mask_zero=True),
                                            layers.GlobalAveragePooling1D(), layers.Dense(3)),
}


def _inputs(model, batch: int, rng) -> list[np.ndarray]:
    """Random inputs; token ids (0 is the mask) where the model starts with an Embedding."""
    tokens = isinstance(model.layers[0], layers.Embedding)
    shapes = [(batch,) + tuple(t.shape[1:]) for t in model.inputs]
    return [rng.integers(0, 20, s).astype(np.float32) if tokens else rng.standard_normal(s).astype(np.float32)
            for s in shapes]


def _randomized(model, rng):
    """Weights drawn at random (variances positive), so that no layer is an identity."""
    weights = [np.abs(w) + 0.5 if "variance" in p.path else rng.standard_normal(w.shape).astype(w.dtype) * 0.5
               for p, w in zip(model.weights, model.get_weights())]
    model.set_weights(weights)
    return model


@pytest.mark.parametrize("name", sorted(MODELS))
def test_onnxruntime_matches_nncompile(name, tmp_path):
    rng = np.random.default_rng(0)
    model = _randomized(MODELS[name](), rng)
    path = tmp_path / f"{name}.onnx"
    nncompile.onnx.save(model, str(path))
    xs = _inputs(model, 3, rng)
    want = model.predict(xs if len(xs) > 1 else xs[0], verbose=0)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {i.name: x for i, x in zip(session.get_inputs(), xs)})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    back = nncompile.onnx.load(str(path))
    np.testing.assert_allclose(reference.run(back, xs)[0], want, rtol=1e-5, atol=1e-5)


def test_model_is_checked_named_and_has_a_dynamic_batch(tmp_path):
    model = _randomized(MODELS["conv"](), np.random.default_rng(1))
    proto = nncompile.onnx.save(model, str(tmp_path / "m.onnx"))
    onnx.checker.check_model(onnx.load(str(tmp_path / "m.onnx")), full_check=True)
    assert proto.opset_import[0].version == 17
    (x,) = proto.graph.input
    assert x.type.tensor_type.shape.dim[0].dim_param == "batch"
    # names come from the layers ("dense_3/kernel", "conv2d_5/kernel_oihw": counters are global)
    initializers = {t.name for t in proto.graph.initializer}
    assert any(re.fullmatch(r"dense(_\d+)?/kernel", n) for n in initializers)
    assert any(re.fullmatch(r"conv2d(_\d+)?/kernel_oihw", n) for n in initializers)
    assert any(n.name.startswith("batch_normalization") for n in proto.graph.node)
    # the batch stays dynamic: ONNX Runtime runs the file at another batch size
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert session.run(None, {x.name: np.zeros((5, 12, 12, 3), np.float32)})[0].shape == (5, 5)


def test_newer_opset_on_request(tmp_path):
    model = _randomized(MODELS["normalization"](), np.random.default_rng(2))
    proto = nncompile.onnx.save(model, str(tmp_path / "m.onnx"), opset=21)
    assert proto.opset_import[0].version == 21
    xs = _inputs(model, 2, np.random.default_rng(3))
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {session.get_inputs()[0].name: xs[0]})[0],
                               model.predict(xs[0], verbose=0), rtol=1e-5, atol=1e-5)


def test_graph_export_round_trips_through_import(tmp_path):
    b = nncompile.ir.Builder()
    x = b.input("x", nncompile.ir.f32["?", 4])
    kernel = np.arange(8, dtype=np.float32).reshape(4, 2) / 8
    y = b.log_softmax(b.matmul(b.rsqrt(b.add(b.square(x), b.scalar(1.0, x))), b.param("w", kernel)))
    nncompile.onnx.save(b.finish([y], ["y"]), str(tmp_path / "g.onnx"))
    back = nncompile.onnx.load(str(tmp_path / "g.onnx"))
    data = np.random.default_rng(4).standard_normal((3, 4)).astype(np.float32)
    z = (1 / np.sqrt(data ** 2 + 1)) @ kernel
    expected = z - np.log(np.exp(z).sum(-1, keepdims=True))
    np.testing.assert_allclose(reference.run(back, [data])[0], expected, rtol=1e-5, atol=1e-6)


def test_errors_are_one_line(tmp_path):
    b = nncompile.ir.Builder()
    graph = b.finish([b.relu(b.input("x", nncompile.ir.f32[4]))], ["y"])
    with pytest.raises(OnnxError, match="opset 3 is not supported"):
        nncompile.onnx.save(graph, str(tmp_path / "m.onnx"), opset=3)
    with pytest.raises(OnnxError, match="cannot write"):
        nncompile.onnx.save(graph, str(tmp_path / "missing" / "m.onnx"))
    b = nncompile.ir.Builder()
    noise = b.random_uniform(b.input("seed", nncompile.ir.i64[()]), shape=[4])
    with pytest.raises(UnsupportedError, match="op 'random_uniform' has no ONNX form"):
        nncompile.onnx.save(b.finish([noise], ["y"]), str(tmp_path / "m.onnx"))


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_strided_windows_over_a_sequence_of_any_length_export(padding, tmp_path):
    """'same' over a length known only when run is ONNX's auto_pad SAME_UPPER, both ways."""
    model = _randomized(keras.Sequential([
        keras.Input((None, 3)), layers.Conv1D(4, 7, strides=3, padding=padding),
        layers.MaxPooling1D(3, strides=2, padding=padding), layers.GlobalAveragePooling1D()]),
        np.random.default_rng(5))
    path = str(tmp_path / "m.onnx")
    nncompile.onnx.save(model, path)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    back = nncompile.onnx.load(path)
    for length in (13, 40):
        x = np.random.default_rng(length).standard_normal((2, length, 3)).astype(np.float32)
        want = model.predict(x, verbose=0)
        np.testing.assert_allclose(session.run(None, {session.get_inputs()[0].name: x})[0], want,
                                   rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(reference.run(back, [x])[0], want, rtol=1e-5, atol=1e-5)

"""Convolutions and pooling over sequences and images whose length is known only when run
(`Input((None,))`): one executable for every length, against numpy written here, trained by fit
and checked by finite differences, compiled against the reference interpreter."""
from __future__ import annotations

import math

import numpy as np
import pytest

from nncompile import keras
from nncompile.ir import ShapeError
from nncompile.runtime import cpu
from tests.keras.finite_differences import gradients

LENGTHS = (7, 20, 101)
LR = 0.05


def same(x, axis, extent, stride, value=0.0):
    """`x` padded along `axis` as TensorFlow's 'same' does: ceil(size / stride) positions, the
    odd pad element after."""
    size = x.shape[axis]
    total = max((math.ceil(size / stride) - 1) * stride + extent - size, 0)
    widths = [(0, 0)] * x.ndim
    widths[axis] = (total // 2, total - total // 2)
    return np.pad(x, widths, constant_values=value)


def conv(x, kernel, bias, stride=1, padding="valid", dilation=1):
    """1-D convolution (N, L, C) by (K, C, F)."""
    k = kernel.shape[0]
    extent = (k - 1) * dilation + 1
    if padding == "same":
        x = same(x, 1, extent, stride)
    positions = (x.shape[1] - extent) // stride + 1
    y = np.stack([sum(x[:, p * stride + t * dilation] @ kernel[t] for t in range(k))
                  for p in range(positions)], axis=1)
    return y + bias


def separable(x, depthwise, pointwise, bias):
    """SeparableConv1D(strides=2, padding="same"): the depthwise step is a convolution by a
    block-diagonal kernel (channel c feeds outputs c*dm ... c*dm + dm - 1 only)."""
    k, cin, multiplier = depthwise.shape
    blocks = np.zeros((k, cin, cin * multiplier))
    for c in range(cin):
        blocks[:, c, c * multiplier:(c + 1) * multiplier] = depthwise[:, c]
    return conv(x, blocks, 0.0, stride=2, padding="same") @ pointwise[0] + bias


def pool(x, size, stride, reduce, padding="valid"):
    """1-D pooling; 'same' pads with NaN, which `reduce` (nanmax, nanmean) skips."""
    if padding == "same":
        x = same(x, 1, size, stride, np.nan)
    positions = (x.shape[1] - size) // stride + 1
    return np.stack([reduce(x[:, p * stride:p * stride + size], axis=1) for p in range(positions)], axis=1)


def conv2d(x, kernel, bias, stride, padding):
    """2-D convolution (N, H, W, C) by (KH, KW, C, F)."""
    kh, kw = kernel.shape[:2]
    if padding == "same":
        x = same(same(x, 1, kh, stride), 2, kw, stride)
    oh, ow = (x.shape[1] - kh) // stride + 1, (x.shape[2] - kw) // stride + 1
    y = np.zeros((x.shape[0], oh, ow, kernel.shape[3]))
    for i in range(oh):
        for j in range(ow):
            patch = x[:, i * stride:i * stride + kh, j * stride:j * stride + kw]
            y[:, i, j] = np.tensordot(patch, kernel, axes=([1, 2, 3], [0, 1, 2]))
    return y + bias


def _embedding_model():
    return keras.Sequential([keras.Input((None,), dtype="int32", name="tokens"),
                             keras.layers.Embedding(100, 8), keras.layers.Conv1D(4, 7, strides=3, name="conv"),
                             keras.layers.GlobalMaxPooling1D(), keras.layers.Dense(1)])


def _counting_compiles(monkeypatch) -> list:
    made = []
    compile_graph = cpu.compile

    def counted(graph, *args, **kwargs):
        made.append(graph.name)
        return compile_graph(graph, *args, **kwargs)

    monkeypatch.setattr(cpu, "compile", counted)
    return made


def test_strided_conv1d_after_an_embedding_runs_every_length_with_one_executable(monkeypatch):
    made = _counting_compiles(monkeypatch)
    model = _embedding_model()
    table, kernel, bias, dense, dense_bias = model.get_weights()
    rng = np.random.default_rng(0)
    for length in LENGTHS:
        tokens = rng.integers(0, 100, (3, length)).astype(np.int32)
        y = conv(table[tokens].astype(np.float64), kernel, bias, stride=3)
        expected = y.max(axis=1) @ dense + dense_bias
        np.testing.assert_allclose(model.predict(tokens, verbose=0), expected, rtol=1e-5, atol=1e-5)
    assert len(made) == 1


def test_output_shapes_are_unknown_lengths_as_in_keras():
    model = _embedding_model()
    assert model.layers[1].compute_output_shape((None, None, 8)) == (None, None, 4)
    assert model.output_shape == (None, 1)
    lines = []
    model.summary(print_fn=lines.append)
    conv_line = next(line for line in "\n".join(lines).splitlines() if "conv (Conv1D)" in line)
    assert "(None, None, 4)" in conv_line


def test_a_sequence_shorter_than_the_window_is_refused_naming_the_layer_and_input():
    model = _embedding_model()
    with pytest.raises(ShapeError, match=r"op 'conv2d' of 'conv': window of width spans 7 .*"
                                         r"axis 1 of input 'tokens' is 5"):
        model.predict(np.zeros((2, 5), np.int32), verbose=0)


STACKS = {   # layers after Input((None, 2)), and the same computation in numpy from their weights
    "same": (lambda: [keras.layers.Conv1D(3, 5, padding="same")],
             lambda x, w: conv(x, *w[:2], padding="same")),
    "dilated, strided max pooling": (
        lambda: [keras.layers.Conv1D(3, 3, dilation_rate=2), keras.layers.MaxPooling1D(3, strides=2)],
        lambda x, w: pool(conv(x, *w[:2], dilation=2), 3, 2, np.max)),
    "strided average pooling": (lambda: [keras.layers.AveragePooling1D(4, strides=3)],
                                lambda x, w: pool(x, 4, 3, np.mean)),
    "same, strided": (lambda: [keras.layers.Conv1D(3, 7, strides=3, padding="same")],
                      lambda x, w: conv(x, *w[:2], stride=3, padding="same")),
    "separable, grouped": (lambda: [keras.layers.SeparableConv1D(4, 3, strides=2, padding="same", depth_multiplier=2)],
                           lambda x, w: separable(x, *w)),
    "zero padding": (lambda: [keras.layers.ZeroPadding1D((2, 1)), keras.layers.Conv1D(3, 3, strides=2)],
                     lambda x, w: conv(np.pad(x, ((0, 0), (2, 1), (0, 0))), *w[:2], stride=2)),
    "same, strided pooling": (
        lambda: [keras.layers.MaxPooling1D(3, strides=2, padding="same"),
                 keras.layers.AveragePooling1D(4, strides=3, padding="same")],
        lambda x, w: pool(pool(x, 3, 2, np.nanmax, "same"), 4, 3, np.nanmean, "same")),
}


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("case", sorted(STACKS))
def test_conv_and_pooling_stacks_match_numpy_at_every_length(case, backend, monkeypatch):
    monkeypatch.setenv("NNCOMPILE_BACKEND", backend)
    layers, numpy_forward = STACKS[case]
    model = keras.Sequential([keras.Input((None, 2)), *layers()])
    assert model.output_shape[:2] == (None, None)
    rng = np.random.default_rng(1)
    for length in LENGTHS:
        x = rng.standard_normal((2, length, 2)).astype(np.float32)
        expected = numpy_forward(x.astype(np.float64), model.get_weights())
        np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-5)


def test_flatten_of_an_unknown_length_is_unknown_and_dense_after_it_refused_as_in_keras():
    model = keras.Sequential([keras.Input((None, 3)), keras.layers.Conv1D(4, 3, strides=2), keras.layers.Flatten()])
    assert model.output_shape == (None, None)
    kernel, bias = model.get_weights()
    for length in LENGTHS:
        x = np.random.default_rng(length).standard_normal((2, length, 3)).astype(np.float32)
        expected = conv(x.astype(np.float64), kernel, bias, stride=2).reshape(2, -1)
        np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"last dimension of the inputs to a Dense layer should be defined"):
        keras.Sequential([keras.Input((None, 3)), keras.layers.Conv1D(4, 3), keras.layers.Flatten(),
                          keras.layers.Dense(2)])


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_conv2d_over_a_symbolic_height_and_width(padding, monkeypatch):
    made = _counting_compiles(monkeypatch)
    model = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(4, 3, strides=2, padding=padding),
                              keras.layers.MaxPooling2D(2), keras.layers.GlobalAveragePooling2D()])
    assert model.layers[0].compute_output_shape((None, None, None, 3)) == (None, None, None, 4)
    kernel, bias = model.get_weights()
    rng = np.random.default_rng(2)
    for h, w in [(7, 9), (20, 11), (31, 40)]:
        x = rng.standard_normal((2, h, w, 3)).astype(np.float32)
        y = conv2d(x.astype(np.float64), kernel, bias, 2, padding)
        oh, ow = y.shape[1] // 2, y.shape[2] // 2
        pooled = y[:, :oh * 2, :ow * 2].reshape(2, oh, 2, ow, 2, 4).max(axis=(2, 4))
        np.testing.assert_allclose(model.predict(x, verbose=0), pooled.mean(axis=(1, 2)), rtol=1e-5, atol=1e-5)
    assert len(made) == 1


def _trained_model(padding="valid"):
    model = keras.Sequential([keras.Input((None, 3)), keras.layers.Conv1D(2, 3, strides=2, padding=padding),
                              keras.layers.ZeroPadding1D((1, 2)), keras.layers.MaxPooling1D(2), keras.layers.GlobalAveragePooling1D(),
                              keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=LR), loss="mse")
    return model


def _loss(weights, x, t, padding):
    kernel, bias, dense, dense_bias = weights
    y = conv(x, kernel, bias, stride=2, padding=padding)
    y = pool(np.pad(y, ((0, 0), (1, 2), (0, 0))), 2, 2, np.max).mean(axis=1)
    return np.mean((y @ dense + dense_bias - t) ** 2)


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_a_training_step_follows_finite_differences_at_two_lengths(backend, padding, monkeypatch):
    monkeypatch.setenv("NNCOMPILE_BACKEND", backend)
    made = _counting_compiles(monkeypatch)
    keras.utils.set_random_seed(4)
    model = _trained_model(padding)
    rng = np.random.default_rng(3)
    for length in (9, 24):
        x, t = rng.standard_normal((4, length, 3)), rng.standard_normal((4, 1))
        weights = [w.astype(np.float64) for w in model.get_weights()]
        grads = gradients(lambda: _loss(weights, x, t, padding), weights, eps=1e-6)
        loss = model.train_on_batch(x.astype(np.float32), t.astype(np.float32))
        assert loss == pytest.approx(_loss(weights, x, t, padding), rel=1e-4)
        for got, weight, grad in zip(model.get_weights(), weights, grads):
            np.testing.assert_allclose(got, weight - LR * grad, rtol=1e-4, atol=1e-5)
    assert made == (["train_step"] if backend == "cpu" else [])     # one step for both lengths


def test_fit_lowers_the_loss_and_compiled_steps_match_the_reference(monkeypatch):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((32, 30, 3)).astype(np.float32)
    t = x[:, :, 0].max(axis=1, keepdims=True)
    histories, weights = {}, {}
    for backend in ("cpu", "reference"):
        monkeypatch.setenv("NNCOMPILE_BACKEND", backend)
        keras.utils.set_random_seed(6)
        model = _trained_model()
        histories[backend] = model.fit(x, t, epochs=5, batch_size=8, verbose=0).history["loss"]
        weights[backend] = model.get_weights()
    assert histories["cpu"][-1] < 0.7 * histories["cpu"][0]
    np.testing.assert_allclose(histories["cpu"], histories["reference"], rtol=1e-4)
    for got, want in zip(weights["cpu"], weights["reference"]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_a_recurrent_layer_after_a_strided_conv_loops_over_the_expression(monkeypatch):
    """The LSTM's trip count is the conv's and the pooling's positions, (T-5)//2+1 halved."""
    results = {}
    for backend in ("cpu", "reference"):
        monkeypatch.setenv("NNCOMPILE_BACKEND", backend)
        keras.utils.set_random_seed(7)
        model = keras.Sequential([keras.Input((None,), dtype="int32"), keras.layers.Embedding(50, 8),
                                  keras.layers.Conv1D(6, 5, strides=2, activation="relu"),
                                  keras.layers.MaxPooling1D(2), keras.layers.LSTM(4), keras.layers.Dense(1)])
        model.compile(optimizer="adam", loss="mse")
        rng = np.random.default_rng(8)
        results[backend] = []
        for length in (12, 40):
            x, t = rng.integers(0, 50, (3, length)).astype(np.int32), rng.random((3, 1)).astype(np.float32)
            results[backend] += [model.predict(x, verbose=0), model.train_on_batch(x, t)]
    for got, want in zip(results["cpu"], results["reference"]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_fit_on_batches_of_different_lengths_compiles_one_step(monkeypatch):
    made = _counting_compiles(monkeypatch)
    keras.utils.set_random_seed(0)
    model = _embedding_model()
    model.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng(9)

    def batches():
        while True:
            tokens = rng.integers(0, 100, (8, int(rng.integers(7, 60)))).astype(np.int32)
            yield tokens, (tokens[:, :5] > 50).mean(axis=1, keepdims=True).astype(np.float32)

    losses = model.fit(batches(), steps_per_epoch=20, epochs=4, verbose=0).history["loss"]
    assert losses[-1] < 0.6 * losses[0]
    assert made == ["train_step"]


def test_a_residual_block_over_any_image_size_adds_branches_of_equal_symbolic_size():
    """ceil(W / 2) comes out as one text on both branches ('same' 3x3 and 'valid' 1x1 at stride
    2), so the sum's operands have equal types, as they have equal sizes."""
    inputs = keras.Input((None, None, 3))
    main = keras.layers.Conv2D(4, 3, strides=2, padding="same")(inputs)
    main = keras.layers.Conv2D(4, 3, padding="same")(main)
    shortcut = keras.layers.Conv2D(4, 1, strides=2)(inputs)
    model = keras.Model(inputs, keras.layers.Add()([main, shortcut]))
    k1, b1, k2, b2, k3, b3 = model.get_weights()
    for h, w in [(5, 8), (12, 17)]:
        x = np.random.default_rng(h).standard_normal((2, h, w, 3)).astype(np.float32)
        expected = conv2d(conv2d(x, k1, b1, 2, "same"), k2, b2, 1, "same") + conv2d(x, k3, b3, 2, "valid")
        np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-5)

"""crop-borders: convolutions, poolings and the elementwise ops between them remade on the rows
and columns their readers read; bitwise the same results on the reference interpreter and
compiled, for strides, dilations, windows, several readers and the cases left alone."""
from __future__ import annotations

import numpy as np
import pytest

import nncompile
from nncompile.ir import BATCH, Builder, f32
from nncompile.passes.crop_borders import crop_borders, demanded_extents
from nncompile.runtime.reference import run
from rewrite_harness import check_rewrite, random_inputs

RNG = np.random.default_rng(0)


def _w(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def test_cnn_computes_only_what_its_poolings_read():
    b = Builder()
    x = b.input("x", f32[BATCH, 32, 32, 3])
    y = b.relu(b.add(b.conv2d(x, b.param("w1", _w(3, 3, 3, 8))), b.param("b1", _w(8))))
    y = b.max_pool2d(y, window=[2, 2], strides=[2, 2])
    y = b.relu(b.add(b.conv2d(y, b.param("w2", _w(3, 3, 8, 4))), b.param("b2", _w(4))))
    y = b.max_pool2d(y, window=[2, 2], strides=[2, 2])
    check_rewrite(b.finish([b.reshape(y, shape=[BATCH, -1])], ["y"]), crop_borders, """
        %0 = slice(%x) {axes=[1, 2], ends=[30, 30], starts=[0, 0], steps=[1, 1]} : f32[?,30,30,3]
        %1 = conv2d(%0, %w1) : f32[?,28,28,8]
        %2 = add(%1, %b1) : f32[?,28,28,8]
        %3 = relu(%2) : f32[?,28,28,8]
        %4 = max_pool2d(%3) {strides=[2, 2], window=[2, 2]} : f32[?,14,14,8]
        %5 = conv2d(%4, %w2) : f32[?,12,12,4]
        %6 = add(%5, %b2) : f32[?,12,12,4]
        %7 = relu(%6) : f32[?,12,12,4]
        %8 = max_pool2d(%7) {strides=[2, 2], window=[2, 2]} : f32[?,6,6,4]
        %9 = reshape(%8) {shape=[?, -1]} : f32[?,144]
        return %9
    """)


@pytest.mark.parametrize("size", [(17, 20), (16, 16), (23, 9)])
@pytest.mark.parametrize("conv", [dict(strides=[1, 1], dilations=[1, 1]), dict(strides=[2, 2], dilations=[1, 1]),
                                  dict(strides=[1, 2], dilations=[2, 1]), dict(strides=[3, 1], dilations=[1, 3])])
@pytest.mark.parametrize("pool", [("max_pool2d", [2, 2], [2, 2]), ("avg_pool2d", [3, 3], [2, 2]),
                                  ("max_pool2d", [2, 3], [1, 2]), ("avg_pool2d", [1, 1], [3, 2])])
def test_geometries_give_the_same_results(size, conv, pool):
    """A convolution, an elementwise op with a second image and a bias, a pooling: bitwise the
    results of the graph as built, on the reference interpreter; what the pooling reads bounds
    what is computed."""
    op, window, strides = pool
    b = Builder()
    x = b.input("x", f32[(BATCH, *size, 3)])
    c = b.conv2d(x, b.param("w", _w(3, 2, 3, 5)), **conv)
    other = b.input("other", f32[(BATCH, *c.type.shape[1:3], 5)])
    y = getattr(b, op)(b.mul(b.add(c, b.param("bias", _w(5))), other), window=window, strides=strides)
    graph = b.finish([y], ["y"])
    inputs = random_inputs(graph)
    before = run(graph, inputs)
    demand = demanded_extents(graph)
    read = tuple((o - 1) * s + w for o, s, w in zip(y.type.shape[1:3], strides, window))
    assert demand[c] == read
    after = crop_borders(graph)
    np.testing.assert_array_equal(run(after, inputs)[0], before[0])
    convs = [n for n in after.nodes if n.op == "conv2d"]
    assert [tuple(n.outputs[0].type.shape[1:3]) for n in convs] == [read]


def test_a_value_read_by_two_takes_the_larger():
    """relu makes the 8 x 8 the average reads; the maximum, which reads 6 x 6, makes its same
    2 x 2 from those; an elementwise reader of less (7 x 7) is given its cut."""
    b = Builder()
    x = b.input("x", f32[BATCH, 9, 9, 2])
    r = b.relu(x)
    small = b.max_pool2d(r, window=[2, 2], strides=[4, 4])      # reads 6 x 6
    large = b.avg_pool2d(r, window=[2, 2], strides=[2, 2])      # reads 8 x 8
    negated = b.max_pool2d(b.neg(r), window=[2, 2], strides=[5, 5])   # reads 7 x 7
    check_rewrite(b.finish([small, large, negated], ["small", "large", "negated"]), crop_borders, """
        %0 = slice(%x) {axes=[1, 2], ends=[8, 8], starts=[0, 0], steps=[1, 1]} : f32[?,8,8,2]
        %1 = relu(%0) : f32[?,8,8,2]
        %2 = max_pool2d(%1) {strides=[4, 4], window=[2, 2]} : f32[?,2,2,2]
        %3 = avg_pool2d(%1) {strides=[2, 2], window=[2, 2]} : f32[?,4,4,2]
        %4 = slice(%1) {axes=[1, 2], ends=[7, 7], starts=[0, 0], steps=[1, 1]} : f32[?,7,7,2]
        %5 = neg(%4) : f32[?,7,7,2]
        %6 = max_pool2d(%5) {strides=[5, 5], window=[2, 2]} : f32[?,2,2,2]
        return %2, %3, %6
    """)


def test_whole_readers_padding_and_outputs_keep_values_whole():
    """A value that is also an output, read by a reshape, or made by a padded convolution is not
    cut; a graph with nothing to cut comes back as it was."""
    b = Builder()
    x = b.input("x", f32[BATCH, 9, 9, 2])
    r = b.relu(x)
    pooled = b.max_pool2d(r, window=[2, 2], strides=[2, 2])
    graph = b.finish([pooled, r], ["pooled", "r"])
    assert str(crop_borders(graph)) == str(graph)
    b = Builder()
    x = b.input("x", f32[BATCH, 9, 9, 2])
    same = b.conv2d(x, b.param("w", _w(3, 3, 2, 2)), pads=[1, 1, 1, 1])
    flat = b.reshape(b.relu(x), shape=[BATCH, -1])
    graph = b.finish([b.max_pool2d(same, window=[2, 2], strides=[2, 2]), flat], ["p", "flat"])
    text = str(graph)
    after = crop_borders(graph)
    assert not any(n.op == "slice" for n in after.nodes) and str(after) == text


def test_compiled_model_is_bitwise_the_uncropped_one():
    """Keras's MNIST convnet: 26 x 26 -> 24 x 24 and 11 x 11 -> 10 x 10 computed; the compiled
    inference pipeline against the same model compiled without the pass."""
    from nncompile import keras
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(8, 3, activation="relu"),
                              keras.layers.MaxPooling2D(2), keras.layers.Conv2D(16, 3, activation="relu"),
                              keras.layers.MaxPooling2D(2), keras.layers.Flatten(), keras.layers.Dense(10)])
    x = np.random.default_rng(1).random((5, 28, 28, 1), dtype=np.float32)
    cropped = nncompile.compile(nncompile.trace(model))
    shapes = [tuple(n.outputs[0].type.shape) for n in cropped.graph.nodes
              if n.op == "fused" and n.attrs["kind"] == "conv2d"]
    assert [s[1:3] for s in shapes] == [(24, 24), (10, 10)]
    plain = nncompile.compile(nncompile.trace(model), pipeline="codegen")
    np.testing.assert_array_equal(cropped(x), plain(x))
    np.testing.assert_allclose(cropped(x), model.predict(x, verbose=0), rtol=1e-5, atol=1e-5)


def test_training_step_is_cropped_before_its_gradients(monkeypatch):
    """fit crops the forward pass before autodiff, so the backward pass skips the borders too;
    the weights after two SGD steps agree with those of the step built whole, to rounding."""
    from nncompile import keras
    from nncompile.keras import training

    def fitted():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((13, 13, 2)), keras.layers.Conv2D(4, 3, activation="relu"),
                                  keras.layers.MaxPooling2D(2), keras.layers.Conv2D(3, 2, strides=2),
                                  keras.layers.Flatten(), keras.layers.Dense(2)])
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        rng = np.random.default_rng(4)
        model.fit(rng.random((16, 13, 13, 2), dtype=np.float32), rng.random((16, 2), dtype=np.float32),
                  batch_size=8, epochs=1, shuffle=False, verbose=0)
        step = next(iter(model._compiled.steps.values()))
        convs = [tuple(n.outputs[0].type.shape[1:3]) for n in step.graph.nodes if n.op == "conv2d"]
        return model.get_weights(), convs

    cropped, convs = fitted()
    # the strided convolution reads 4 of the 5 pooled rows, so the pooling reads 8 of 11
    assert convs == [(8, 8), (2, 2)]
    monkeypatch.setattr(training.crop_borders, "crop", lambda graph, roots: None)
    whole, convs = fitted()
    assert convs == [(11, 11), (2, 2)]
    for got, want in zip(cropped, whole):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)

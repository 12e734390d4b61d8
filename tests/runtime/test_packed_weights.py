"""Weights kept packed between calls (`codegen.cpu.Layout.packed`, `runtime/weights.py`): packed
before the first call, packed again after any write to any weight, never read stale. Weights
of at least `KEPT_PACKED_BYTES` are kept packed; smaller ones are packed at each call.

Expected values are numpy products written here on the weights as they are at each call."""
from __future__ import annotations

import numpy as np
import pytest

import nncompile
from nncompile import keras
from nncompile.ir import BATCH, Builder, f32
from nncompile.runtime import weights


def _dense_model(seed: int = 0):
    model = keras.Sequential([keras.Input((128,)), keras.layers.Dense(256, activation="relu"),
                              keras.layers.Dense(80)])
    rng = np.random.default_rng(seed)
    model.set_weights([rng.standard_normal(w.shape).astype(np.float32) / 4 for w in model.get_weights()])
    return model


def _numpy_dense(model, x: np.ndarray) -> np.ndarray:
    w0, b0, w1, b1 = (w.astype(np.float64) for w in model.get_weights())
    return np.maximum(x @ w0 + b0, 0) @ w1 + b1


@pytest.mark.parametrize("batch", [1, 3, 70])
def test_a_compiled_model_keeps_its_kernels_packed_and_sees_every_assign(batch):
    model = _dense_model()
    exe = nncompile.compile(nncompile.trace(model))
    assert sorted(v.name for v in exe.layout.packed) == sorted(layer.kernel.path for layer in model.layers)
    x = np.random.default_rng(1).standard_normal((batch, 128)).astype(np.float32)
    np.testing.assert_allclose(exe(x), _numpy_dense(model, x), rtol=1e-4, atol=2e-4)
    kernel = model.layers[0].kernel
    kernel.assign(kernel.numpy() * -2)
    np.testing.assert_allclose(exe(x), _numpy_dense(model, x), rtol=1e-4, atol=2e-4)
    model.set_weights([w + 0.5 for w in model.get_weights()])
    np.testing.assert_allclose(exe(x), _numpy_dense(model, x), rtol=1e-4, atol=2e-4)


def test_training_after_predict_updates_the_packed_weights_of_the_predicting_code():
    """fit writes the weights in place from compiled code: the inference code packs them again."""
    model = _dense_model()
    exe = nncompile.compile(nncompile.trace(model))
    rng = np.random.default_rng(2)
    x = rng.standard_normal((32, 128)).astype(np.float32)
    before = exe(x).copy()
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    model.fit(x, rng.standard_normal((32, 80)).astype(np.float32), batch_size=8, epochs=1, verbose=0)
    after = exe(x)
    assert np.abs(after - before).max() > 1e-3          # the step changed the weights
    np.testing.assert_allclose(after, _numpy_dense(model, x), rtol=1e-4, atol=2e-4)
    np.testing.assert_allclose(model.predict(x, verbose=0), _numpy_dense(model, x), rtol=1e-4, atol=2e-4)


def test_a_write_around_the_weights_api_is_refused_not_read_stale():
    model = _dense_model()
    exe = nncompile.compile(nncompile.trace(model))
    x = np.ones((2, 128), np.float32)
    exe(x)
    with pytest.raises(ValueError, match="read-only"):
        model.layers[0].kernel.value[...] = 0
    with weights.writing(model.layers[0].kernel.value) as array:
        array[...] = 0
    assert not model.layers[0].kernel.value.flags.writeable    # still kept
    np.testing.assert_allclose(exe(x), _numpy_dense(model, x), rtol=1e-4, atol=2e-4)


@pytest.mark.parametrize("transpose_b", [False, True])
def test_a_parameter_read_as_b_either_way_is_packed_the_way_its_product_reads_it(transpose_b):
    rng = np.random.default_rng(3)
    w = rng.standard_normal((300, 64) if transpose_b else (64, 300)).astype(np.float32)
    b = Builder()
    x = b.input("x", f32[BATCH, 64])
    y = b.op("matmul", x, b.param("w", w), transpose_b=transpose_b)
    exe = nncompile.compile(b.finish([y], ["y"]))
    assert [(v.name, p.transposed) for v, p in exe.layout.packed.items()] == [("w", transpose_b)]
    for batch in (1, 2, 9, 300):
        data = rng.standard_normal((batch, 64)).astype(np.float32)
        want = data.astype(np.float64) @ (w.T if transpose_b else w).astype(np.float64)
        np.testing.assert_allclose(exe(data), want, rtol=1e-5, atol=1e-4)


def test_small_weights_are_packed_at_each_call_and_still_bound_by_reference():
    w = np.ones((20, 32), np.float32)        # 2.5 KB
    b = Builder()
    x = b.input("x", f32[BATCH, 20])
    exe = nncompile.compile(b.finish([b.op("matmul", x, b.param("w", w))], ["y"]))
    assert not exe.layout.packed and w.flags.writeable
    data = np.ones((3, 20), np.float32)
    np.testing.assert_array_equal(exe(data), np.full((3, 32), 20.0))
    w[...] = 2
    np.testing.assert_array_equal(exe(data), np.full((3, 32), 40.0))


def test_a_parameter_read_as_b_both_ways_is_not_packed_and_one_also_added_is_read_right():
    rng = np.random.default_rng(4)
    w = rng.standard_normal((128, 128)).astype(np.float32)
    data = rng.standard_normal((128, 128)).astype(np.float32)
    b = Builder()
    x = b.input("x", f32[128, 128])
    wp = b.param("w", w)
    both = nncompile.compile(b.finish([b.op("matmul", b.op("matmul", x, wp), wp, transpose_b=True)], ["y"]))
    assert not both.layout.packed
    np.testing.assert_allclose(both(data), data.astype(np.float64) @ w @ w.T, rtol=1e-5, atol=1e-4)
    b = Builder()
    x = b.input("x", f32[128, 128])
    wp = b.param("w", w)
    added = nncompile.compile(b.finish([b.add(b.op("matmul", x, wp), wp)], ["y"]))   # the epilogue reads w as it is
    np.testing.assert_allclose(added(data), data.astype(np.float64) @ w + w, rtol=1e-5, atol=1e-4)


def test_graphs_that_update_parameters_pack_nothing():
    b = Builder()
    x = b.input("x", f32[BATCH, 4])
    w = b.param("w", np.ones((4, 4), np.float32))
    b.graph.updates["w_next"] = "w"
    graph = b.finish([b.op("matmul", x, w), b.mul(w, b.scalar(2.0, w))], ["y", "w_next"])
    exe = nncompile.compile(graph)
    assert not exe.layout.packed
    exe(np.ones((1, 4), np.float32))
    np.testing.assert_array_equal(exe.params["w"], np.full((4, 4), 2, np.float32))


def test_a_recurrent_kernel_packed_for_every_call_follows_set_weights():
    model = keras.Sequential([keras.Input((9, 6)), keras.layers.LSTM(64)])
    exe = nncompile.compile(nncompile.trace(model))
    cell = model.layers[0].cell
    assert [v.name for v in exe.layout.packed] == [cell.recurrent_kernel.path]   # 64 KB; the kernel is 6 KB
    rng = np.random.default_rng(5)
    x = rng.standard_normal((5, 9, 6)).astype(np.float32)
    for _ in range(2):
        model.set_weights([rng.standard_normal(w.shape).astype(np.float32) / 3 for w in model.get_weights()])
        np.testing.assert_allclose(exe(x), _numpy_lstm(model.get_weights(), x), rtol=1e-4, atol=1e-5)


def _numpy_lstm(params: list[np.ndarray], x: np.ndarray) -> np.ndarray:
    kernel, recurrent, bias = (p.astype(np.float64) for p in params)
    units = recurrent.shape[0]
    h = c = np.zeros((x.shape[0], units))
    sigmoid = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    for t in range(x.shape[1]):
        i, f, g, o = np.split(x[:, t] @ kernel + h @ recurrent + bias, 4, axis=1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
    return h


def test_stepped_runs_see_changed_weights_too():
    model = _dense_model()
    exe = nncompile.compile(nncompile.trace(model))
    xs = np.random.default_rng(6).standard_normal((3, 4, 128)).astype(np.float32)
    exe(xs[0])
    model.layers[1].kernel.assign(np.ones((256, 80), np.float32))
    (got,) = exe.run_steps(xs)
    np.testing.assert_allclose(got, np.stack([_numpy_dense(model, x) for x in xs]), rtol=1e-4, atol=2e-4)


def test_a_graph_updating_a_weight_in_place_makes_other_code_pack_it_again():
    w = np.ones((128, 128), np.float32)
    b = Builder()
    x = b.input("x", f32[BATCH, 128])
    reader = nncompile.compile(b.finish([b.op("matmul", x, b.param("w", w))], ["y"]))
    b = Builder()
    x = b.input("x", f32[BATCH, 128])
    wp = b.param("w", w)
    b.graph.updates["w_next"] = "w"
    total = b.op("reduce_sum", x, axes=[0, 1], keepdims=False)
    writer = nncompile.compile(b.finish([b.add(wp, total), b.op("relu", x)], ["w_next", "y"]))
    assert writer.in_place_slots, "the update is written by the native code itself"
    assert [v.name for v in reader.layout.packed] == ["w"]
    data = np.full((4, 128), 0.5, np.float32)
    np.testing.assert_allclose(reader(data), np.full((4, 128), 64.0))
    writer(data)                                   # w = 1 + 256 everywhere
    np.testing.assert_allclose(reader(data), np.full((4, 128), 64.0 * 257))
    writer.run_steps(data[None])                   # w = 257 + 256
    np.testing.assert_allclose(reader(data), np.full((4, 128), 64.0 * 513))


def _numpy_conv(x: np.ndarray, w: np.ndarray, groups: int, pad: int) -> np.ndarray:
    """NHWC convolution, stride 1, `pad` zeros on every side, written as a loop over taps."""
    kh, kw, cg, cout = w.shape
    og = cout // groups
    x = np.pad(x.astype(np.float64), ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    n, h, wd, _ = x.shape
    y = np.zeros((n, h - kh + 1, wd - kw + 1, cout))
    for i in range(kh):
        for j in range(kw):
            patch = x[:, i:i + y.shape[1], j:j + y.shape[2], :]
            for g in range(groups):
                y[..., g * og:(g + 1) * og] += patch[..., g * cg:(g + 1) * cg] @ w[i, j, :, g * og:(g + 1) * og]
    return y


@pytest.mark.parametrize("groups", [1, 4])
def test_convolution_weights_are_kept_packed_per_group_and_follow_assign(groups):
    model = keras.Sequential([keras.Input((9, 11, 64)), keras.layers.Conv2D(128, 3, padding="same", groups=groups,
                                                                             use_bias=False)])
    exe = nncompile.compile(nncompile.trace(model))
    kernel = model.layers[0].kernel
    assert [(v.name, p.groups) for v, p in exe.layout.packed.items()] == [(kernel.path, groups)]
    rng = np.random.default_rng(groups)
    for batch in (1, 3):
        x = rng.standard_normal((batch, 9, 11, 64)).astype(np.float32)
        np.testing.assert_allclose(exe(x), _numpy_conv(x, kernel.numpy(), groups, 1), rtol=1e-4, atol=1e-4)
        kernel.assign(rng.standard_normal(kernel.shape).astype(np.float32))
        np.testing.assert_allclose(exe(x), _numpy_conv(x, kernel.numpy(), groups, 1), rtol=1e-4, atol=1e-4)

"""keras.ops traced into graphs: gradients of every differentiable op against central finite
differences in float64 (through nncompile.passes.autodiff), and compiled graphs of many ops
against the reference interpreter."""
from __future__ import annotations

import numpy as np
import pytest

import nncompile
from nncompile.ir import BATCH, Builder, f32, f64, i32, verify
from nncompile.keras import ops, random
from nncompile.passes.autodiff import gradients
from nncompile.runtime.reference import run
from tests.passes.test_autodiff import check_gradients

RNG = np.random.default_rng(2)


def _normal(*shape):
    return RNG.standard_normal(shape)


def _positive(*shape):
    return RNG.random(shape) + 0.5


LABELS = np.array([2, 0, 1])

# name -> (fn of the traced inputs, the float64 inputs)
CASES = {
    "add": (ops.add, [_normal(2, 3), _normal(3)]),
    "subtract": (ops.subtract, [_normal(2, 3), _normal(2, 1)]),
    "multiply": (ops.multiply, [_normal(2, 3), _normal(3)]),
    "divide": (ops.divide, [_normal(2, 3), _positive(3)]),
    "power": (ops.power, [_positive(2, 3), _normal(3)]),
    "maximum": (ops.maximum, [_normal(2, 3), _normal(2, 3)]),
    "where": (lambda x, y: ops.where(ops.greater(x, 0), x, y), [_normal(2, 3), _normal(3)]),
    "clip": (lambda x: ops.clip(x, -0.5, 0.5), [_normal(3, 4)]),
    "abs": (ops.abs, [_normal(3, 4)]),
    "exp": (ops.exp, [_normal(3, 4)]),
    "log": (ops.log, [_positive(3, 4)]),
    "sqrt": (ops.sqrt, [_positive(3, 4)]),
    "rsqrt": (ops.rsqrt, [_positive(3, 4)]),
    "square": (ops.square, [_normal(3, 4)]),
    "sin_cos": (lambda x: ops.multiply(ops.sin(x), ops.cos(x)), [_normal(3, 4)]),
    "erf": (ops.erf, [_normal(3, 4)]),
    "log1p_expm1": (lambda x: ops.log1p(ops.expm1(x)), [_positive(3, 4)]),
    "sum": (lambda x: ops.sum(x, axis=1), [_normal(2, 3, 4)]),
    "mean": (lambda x: ops.mean(x, axis=(0, 2), keepdims=True), [_normal(2, 3, 4)]),
    "max": (lambda x: ops.max(x, axis=-1), [_normal(2, 3, 4)]),
    "min": (lambda x: ops.min(x, axis=0), [_normal(2, 3, 4)]),
    "prod": (lambda x: ops.prod(x, axis=1), [_positive(2, 3, 4)]),
    "std": (lambda x: ops.std(x, axis=-1), [_normal(2, 3, 4)]),
    "var": (lambda x: ops.var(x, axis=0), [_normal(2, 3, 4)]),
    "cumsum": (lambda x: ops.cumsum(x, axis=1), [_normal(2, 3, 4)]),
    "reshape_transpose": (lambda x: ops.transpose(ops.reshape(x, (4, 6)), (1, 0)),
                          [_normal(2, 3, 4)]),
    "expand_squeeze": (lambda x: ops.squeeze(ops.expand_dims(x, 1), 1), [_normal(2, 3)]),
    "concatenate_stack": (lambda x, y: ops.concatenate([
        ops.stack([x, y]), ops.get_item(ops.stack([y, x], 2), (None, Ellipsis, 0))]),
                          [_normal(2, 3), _normal(2, 3)]),
    "split": (lambda x: ops.multiply(*ops.split(x, 2, axis=1)), [_normal(2, 4)]),
    "take": (lambda x: ops.take(x, np.array([2, 0, 2]), axis=1), [_normal(2, 3)]),
    "take_along_axis": (lambda x: ops.take_along_axis(x, np.array([[2, 2], [0, 1]]), axis=1),
                        [_normal(2, 3)]),
    "get_item": (lambda x: ops.get_item(x, (slice(None, None, -1), None, 1)), [_normal(3, 4)]),
    "flip_pad": (lambda x: ops.pad(ops.flip(x, 0), ((1, 0), (0, 2))), [_normal(3, 4)]),
    "broadcast_to": (lambda x: ops.broadcast_to(x, (2, 3)), [_normal(3)]),
    "matmul": (ops.matmul, [_normal(2, 2, 3), _normal(3, 4)]),
    "dot": (ops.dot, [_normal(2, 3), _normal(3)]),
    "tensordot": (lambda x, y: ops.tensordot(x, y, axes=([0], [1])), [_normal(3, 2), _normal(4, 3)]),
    "einsum": (lambda x, y: ops.einsum("bqd,bkd->bqk", x, y), [_normal(2, 3, 4), _normal(2, 5, 4)]),
    "logsumexp": (lambda x: ops.logsumexp(x, axis=1), [_normal(2, 3, 4)]),
    "tile_repeat": (lambda x: ops.add(ops.tile(x, (2, 1)), ops.repeat(x, 2, axis=0)),
                    [_normal(2, 3)]),
    "tril_outer": (lambda x, y: ops.tril(ops.outer(x, y)), [_normal(3), _normal(4)]),
    "relu": (ops.relu, [_normal(3, 4)]),
    "sigmoid_tanh": (lambda x: ops.add(ops.sigmoid(x), ops.tanh(x)), [_normal(3, 4)]),
    "softplus": (ops.softplus, [_normal(3, 4)]),
    "silu": (ops.silu, [_normal(3, 4)]),
    "gelu": (ops.gelu, [_normal(3, 4)]),
    "gelu_exact": (lambda x: ops.gelu(x, approximate=False), [_normal(3, 4)]),
    "elu_selu": (lambda x: ops.add(ops.elu(x), ops.selu(x)), [_normal(3, 4)]),
    "leaky_relu": (ops.leaky_relu, [_normal(3, 4)]),
    "celu_glu": (lambda x: ops.add(ops.glu(x), ops.celu(ops.get_item(x, (Ellipsis, slice(2))))),
                 [_normal(3, 4)]),
    "normalize": (ops.normalize, [_normal(3, 4)]),
    "rms_normalization": (lambda x, s: ops.rms_normalization(x, s), [_normal(3, 4), _normal(4)]),
    "dot_product_attention": (
        lambda q, k, v: ops.dot_product_attention(q, k, v, is_causal=True),
        [_normal(1, 3, 2, 4), _normal(1, 3, 2, 4), _normal(1, 3, 2, 4)]),
    "softmax": (ops.softmax, [_normal(3, 4)]),
    "log_softmax": (lambda x: ops.log_softmax(x, axis=0), [_normal(3, 4)]),
    "conv": (lambda x, w: ops.conv(x, w, strides=2, padding="same"),
             [_normal(1, 5, 5, 2), _normal(3, 3, 2, 3)]),
    "conv1d": (lambda x, w: ops.conv(x, w), [_normal(2, 6, 2), _normal(3, 2, 3)]),
    "max_pool": (lambda x: ops.max_pool(x, 2), [_normal(1, 4, 4, 2)]),
    "average_pool": (lambda x: ops.average_pool(x, 3, strides=1, padding="same"),
                     [_normal(1, 4, 4, 2)]),
    "layer_normalization": (lambda x, g, c: ops.layer_normalization(x, g, c),
                            [_normal(3, 5), _normal(5), _normal(5)]),
    "moments": (lambda x: ops.add(*ops.moments(x, axes=[0])), [_normal(4, 3)]),
    "batch_normalization": (lambda x, m, v: ops.batch_normalization(x, m, v, axis=1),
                            [_normal(4, 3), _normal(3), _positive(3)]),
    "binary_crossentropy": (lambda t, o: ops.binary_crossentropy(t, o, from_logits=True),
                            [RNG.random((3, 4)), _normal(3, 4)]),
    "binary_crossentropy_probs": (ops.binary_crossentropy,
                                  [RNG.random((3, 4)), RNG.random((3, 4)) * 0.8 + 0.1]),
    "categorical_crossentropy": (
        lambda t, o: ops.categorical_crossentropy(t, o, from_logits=True),
        [np.eye(4)[LABELS], _normal(3, 4)]),
    "categorical_crossentropy_probs": (ops.categorical_crossentropy,
                                       [np.eye(4)[LABELS], _positive(3, 4)]),
    "arctan2_hypot": (lambda y, x: ops.add(ops.arctan2(y, x), ops.hypot(y, x)), [_normal(3, 4), _normal(3, 4)]),
    "inverse_trigonometric": (lambda x: ops.add(ops.add(ops.arcsin(x), ops.arccos(x)), ops.arctan(x)),
                              [RNG.uniform(-0.9, 0.9, (3, 4))]),
    "inverse_hyperbolic": (lambda x, y: ops.add(ops.arcsinh(x), ops.add(ops.arccosh(ops.add(y, 1.0)),
                                                                         ops.arctanh(ops.multiply(x, 0.1)))),
                           [_normal(3, 4), _positive(3, 4)]),
    "logaddexp": (lambda x, y: ops.add(ops.logaddexp(x, y), ops.logaddexp2(y, x)), [_normal(3, 4), _normal(3, 4)]),
    "cbrt_sinc": (lambda x: ops.add(ops.cbrt(x), ops.sinc(x)), [_normal(3, 4)]),
    "divide_no_nan": (ops.divide_no_nan, [_normal(3, 4), _positive(3, 4)]),
    "cumprod": (lambda x: ops.cumprod(x, axis=1), [_normal(2, 3, 4)]),
    "ptp_copy": (lambda x: ops.ptp(ops.copy(x), axis=-1), [_normal(2, 3, 4)]),
    "diag_trace": (lambda x, v: ops.add(ops.trace(x), ops.sum(ops.diag(v, -1))), [_normal(3, 4), _normal(3)]),
    "roll_rot90_flips": (lambda x: ops.fliplr(ops.rot90(ops.roll(x, (1, 2), (0, 1)))), [_normal(3, 4)]),
    "kron_inner": (lambda x, y: ops.add(ops.sum(ops.kron(x, y)), ops.sum(ops.inner(x, y))),
                   [_normal(2, 3), _normal(4, 3)]),
    "linspace_vander": (lambda a, c: ops.vander(ops.linspace(a, c, 4)), [_normal(), _normal()]),
    "average_diff_trapezoid": (lambda x, w: ops.add(ops.average(ops.diff(x), 1, w), ops.trapezoid(x)),
                               [_normal(3, 4), _positive(3)]),
    "nan_reductions": (lambda x: ops.add(ops.nanmean(x, 0), ops.nanstd(x, 0)), [_normal(3, 4)]),
    "sparse_categorical_crossentropy": (
        lambda o: ops.sparse_categorical_crossentropy(LABELS, o, from_logits=True),
        [_normal(3, 4)]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradients_match_finite_differences(name):
    fn, arrays = CASES[name]
    named = {f"x{i}": a for i, a in enumerate(arrays)}

    def build(b, values):
        with ops.tracing(b):
            return fn(*values.values())

    check_gradients(build, named, samples=8)


def test_gradients_through_a_symbolic_batch():
    def build(b, values):
        with ops.tracing(b):
            h = ops.gelu(ops.einsum("bi,ij->bj", values["x"], values["w"]))
            return ops.mean(ops.layer_normalization(h), axis=0)

    check_gradients(build, {"x": _normal(3, 4), "w": _normal(4, 5)}, batched={"x"}, samples=8)


def _many_ops(x, w, labels):
    """One graph of many ops, as a custom layer and loss would write them."""
    h = ops.gelu(ops.matmul(x, w))
    h = ops.layer_normalization(h, epsilon=1e-3)
    parts = ops.split(h, 2, axis=-1)
    joined = ops.concatenate([ops.silu(parts[1]), ops.softplus(parts[0])], axis=-1)
    scores = ops.einsum("bi,ij->bj", joined, ops.transpose(w))
    loss = ops.sparse_categorical_crossentropy(labels, ops.get_item(scores, (Ellipsis, slice(0, 4))),
                                               from_logits=True)
    return [loss, ops.argmax(scores, axis=-1), ops.cumsum(scores, axis=1),
            ops.where(ops.greater(scores, 0), ops.sqrt(ops.abs(scores)), ops.exp(scores)),
            ops.take_along_axis(scores, ops.expand_dims(labels, -1), axis=1),
            ops.one_hot(labels, 4), ops.std(scores, axis=0), ops.max(scores, axis=1)]


def test_compiled_ops_match_the_reference():
    b = Builder()
    x = b.input("x", f32[BATCH, 6])
    labels = b.input("labels", i32[BATCH])
    w = b.param("w", RNG.standard_normal((6, 8)).astype(np.float32))
    with ops.tracing(b):
        outs = _many_ops(x, w, labels)
        loss = ops.mean(outs[0])
    grad = gradients(b.graph, loss, [w])[0]
    graph = b.finish([*outs, grad])
    verify(graph)
    exe = nncompile.compile(graph)
    for n in (1, 5):
        feed = [RNG.standard_normal((n, 6)).astype(np.float32),
                RNG.integers(0, 4, n).astype(np.int32)]
        for got, want in zip(exe(*feed), run(graph, feed)):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_compiled_conv_pool_and_random():
    b = Builder()
    x = b.input("x", f32[BATCH, 8, 8, 3])
    k = b.param("k", RNG.standard_normal((3, 3, 3, 4)).astype(np.float32))
    with ops.tracing(b):
        h = ops.relu(ops.conv(x, k, padding="same"))
        pooled = ops.average_pool(ops.max_pool(h, 2), 2, strides=1, padding="same")
        dropped = random.dropout(pooled, 0.5, seed=3)
    graph = b.finish([pooled, dropped])
    exe = nncompile.compile(graph)
    feed = [RNG.standard_normal((2, 8, 8, 3)).astype(np.float32), np.int64(9)]
    for got, want in zip(exe(*feed), run(graph, feed)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_stop_gradient_passes_no_gradient_reference_and_compiled():
    """d/dx sum(r * x * stop_gradient(x)) is r * x: the stopped factor is a constant (2 r x
    without it), on the reference interpreter and compiled."""
    x, r = _normal(3, 4), _normal(3, 4)
    b = Builder()
    xs, rs = b.input("x", f64[3, 4]), b.input("r", f64[3, 4])
    with ops.tracing(b):
        y = ops.multiply(xs, ops.stop_gradient(xs))
    loss = b.reduce_sum(b.mul(rs, y), axes=[0, 1])
    graph = b.finish([y, *gradients(b.graph, loss, [xs])])
    verify(graph)
    want = [x * x, r * x]
    for got in (run(graph, [x, r]), nncompile.compile(graph)(x, r)):
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-12)


def test_a_straight_through_estimator_trains_as_the_identity():
    """y = x + stop_gradient(round(x) - x) rounds forwards and passes the gradient unchanged
    backwards: one SGD step of a Dense layer under it against numpy."""
    from nncompile import keras

    x = RNG.standard_normal((8, 3)).astype(np.float32)
    y = RNG.standard_normal((8, 1)).astype(np.float32)
    w = RNG.standard_normal((3, 1)).astype(np.float32)
    inputs = keras.Input((3,))
    dense = keras.layers.Dense(1, use_bias=False)
    rounded = keras.layers.Lambda(lambda t: t + ops.stop_gradient(ops.round(t) - t))(dense(inputs))
    model = keras.Model(inputs, rounded)
    dense.set_weights([w])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    np.testing.assert_array_equal(model.predict(x, verbose=0), np.round(x @ w))
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    grad = x.astype(np.float64).T @ (2 * (np.round(x @ w) - y) / 8)
    np.testing.assert_allclose(dense.get_weights()[0], w - 0.1 * grad, rtol=1e-5, atol=1e-6)

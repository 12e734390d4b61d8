"""keras.ops nn ops against numpy written here (activations, one_hot, conv and pooling,
normalization, crossentropies), eager and traced; keras.random and keras.config."""
from __future__ import annotations

import doctest
import math

import numpy as np
import pytest

from nncompile.ir import Builder, f32
from nncompile.keras import config, ops, random
from nncompile.runtime.reference import run
from tests.keras.ops_harness import assert_matches, check, trace_graph

RNG = np.random.default_rng(1)
X = (RNG.standard_normal((3, 5)) * 3).astype(np.float32)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x.astype(np.float64)))


def _phi(x):
    return 0.5 * (1 + np.vectorize(math.erf)(x / np.sqrt(2)))


def _softmax(x, axis=-1):
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


ACTIVATIONS = [
    ("relu", lambda x: np.maximum(x, 0)),
    ("relu6", lambda x: np.clip(x, 0, 6)),
    ("sigmoid", _sigmoid),
    ("tanh", np.tanh),
    ("softplus", lambda x: np.log1p(np.exp(x))),
    ("softsign", lambda x: x / (1 + np.abs(x))),
    ("silu", lambda x: x * _sigmoid(x)),
    ("swish", lambda x: x * _sigmoid(x)),
    ("log_sigmoid", lambda x: np.log(_sigmoid(x))),
    ("hard_sigmoid", lambda x: np.clip(x / 6 + 0.5, 0, 1)),
    ("elu", lambda x: np.where(x > 0, x, np.expm1(x))),
    ("selu", lambda x: 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * np.expm1(x))),
    ("leaky_relu", lambda x: np.where(x >= 0, x, 0.2 * x)),
    ("gelu", lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))),
    ("hard_tanh", lambda x: np.clip(x, -1, 1)),
    ("hard_silu", lambda x: x * np.clip(x / 6 + 0.5, 0, 1)),
    ("softmax", _softmax),
    ("log_softmax", lambda x: np.log(_softmax(x.astype(np.float64)))),
]


@pytest.mark.parametrize("name, want", ACTIVATIONS)
def test_activations(name, want):
    check(getattr(ops, name), [X], want(X).astype(np.float32), rtol=1e-5, atol=1e-6)


def test_exact_gelu_softmax_axis_and_int_inputs():
    check(lambda x: ops.gelu(x, approximate=False), [X], (X * _phi(X)).astype(np.float32),
          rtol=1e-5, atol=1e-6)
    check(lambda x: ops.softmax(x, axis=0), [X], _softmax(X, 0), rtol=1e-5)
    ints = np.array([-2, 0, 3], np.int32)
    check(ops.relu, [ints], np.maximum(ints, 0).astype(np.float32))
    with pytest.raises(NotImplementedError, match=r"ops.softmax: axis=\(0, 1\) \(several "
                                                  r"axes\) is not supported by nncompile"):
        ops.softmax(X, axis=(0, 1))


def test_celu_and_glu():
    check(lambda x: ops.celu(x, alpha=2.0), [X], np.maximum(X, 0) + np.minimum(
        2.0 * np.expm1(X / 2.0), 0), rtol=1e-5, atol=1e-6)
    halves = RNG.standard_normal((3, 4)).astype(np.float32)
    check(ops.glu, [halves], (halves[:, :2] * _sigmoid(halves[:, 2:])).astype(np.float32),
          rtol=1e-5)
    with pytest.raises(ValueError, match="axis 1 should have an even size"):
        ops.glu(X)


def test_one_hot():
    labels = np.array([[2, 0], [-1, 3]], np.int32)
    want = (labels[..., None] == np.arange(3)).astype(np.float32)
    check(lambda x: ops.one_hot(x, 3), [labels], want)
    check(lambda x: ops.one_hot(x, 3, axis=0, dtype="int32"), [labels],
          np.moveaxis(want, -1, 0).astype(np.int32))
    check(lambda x: ops.one_hot(x, 3), [labels], want, batched=True)


# --- convolution and pooling ------------------------------------------------------------------

def _conv_nhwc(x, w, stride, pads, dilation=1, groups=1):
    """Direct convolution: x (N,H,W,C), w (KH,KW,C/groups,O), pads ((top, bottom), (left, right))."""
    x = np.pad(x.astype(np.float64), ((0, 0), *pads, (0, 0)))
    kh, kw, cin, cout = w.shape
    oh = (x.shape[1] - (kh - 1) * dilation - 1) // stride + 1
    ow = (x.shape[2] - (kw - 1) * dilation - 1) // stride + 1
    out = np.zeros((x.shape[0], oh, ow, cout))
    per = cout // groups
    for i in range(oh):
        for j in range(ow):
            patch = x[:, i * stride:i * stride + (kh - 1) * dilation + 1:dilation,
                      j * stride:j * stride + (kw - 1) * dilation + 1:dilation]
            for g in range(groups):
                part = patch[..., g * cin:(g + 1) * cin]
                out[:, i, j, g * per:(g + 1) * per] = np.tensordot(
                    part, w[..., g * per:(g + 1) * per], axes=3)
    return out.astype(np.float32)


IMG = RNG.standard_normal((2, 6, 5, 4)).astype(np.float32)
KERNEL = RNG.standard_normal((3, 3, 4, 6)).astype(np.float32)


def test_conv_valid_same_strides_dilation_groups():
    check(ops.conv, [IMG, KERNEL], _conv_nhwc(IMG, KERNEL, 1, ((0, 0), (0, 0))), rtol=1e-4,
          atol=1e-4)
    check(lambda x, w: ops.conv(x, w, strides=2, padding="same"), [IMG, KERNEL],
          _conv_nhwc(IMG, KERNEL, 2, ((0, 1), (1, 1))), rtol=1e-4, atol=1e-4)
    check(lambda x, w: ops.conv(x, w, padding="same", dilation_rate=2), [IMG, KERNEL],
          _conv_nhwc(IMG, KERNEL, 1, ((2, 2), (2, 2)), dilation=2), rtol=1e-4, atol=1e-4)
    grouped = KERNEL[:, :, :2]
    check(ops.conv, [IMG, grouped], _conv_nhwc(IMG, grouped, 1, ((0, 0), (0, 0)), groups=2),
          rtol=1e-4, atol=1e-4)


def test_conv_1d_and_channels_first():
    seq, k = IMG[:, 0], KERNEL[0]
    want = _conv_nhwc(seq[:, None], k[None], 1, ((0, 0), (1, 1)))[:, 0]
    check(lambda x, w: ops.conv(x, w, padding="same"), [seq, k], want, rtol=1e-4, atol=1e-4)
    first = IMG.transpose(0, 3, 1, 2)
    want = _conv_nhwc(IMG, KERNEL, 1, ((0, 0), (0, 0))).transpose(0, 3, 1, 2)
    check(lambda x, w: ops.conv(x, w, data_format="channels_first"), [first, KERNEL], want,
          rtol=1e-4, atol=1e-4)


def _pool(x, size, stride, reduce):
    n, h, w, c = x.shape
    oh, ow = (h - size) // stride + 1, (w - size) // stride + 1
    return np.stack([np.stack([reduce(x[:, i * stride:i * stride + size,
                                        j * stride:j * stride + size], axis=(1, 2))
                               for j in range(ow)], 1) for i in range(oh)], 1)


def test_pooling():
    check(lambda x: ops.max_pool(x, 2), [IMG], _pool(IMG, 2, 2, np.max))
    check(lambda x: ops.average_pool(x, 3, strides=1), [IMG], _pool(IMG, 3, 1, np.mean),
          rtol=1e-5)
    check(lambda x: ops.max_pool(x, 3, strides=1), [IMG], _pool(IMG, 3, 1, np.max),
          batched=True)
    # 'same': the border windows average only the real elements (Keras's, read off Keras 3.15).
    grid = np.arange(16.0, dtype=np.float32).reshape(1, 4, 4, 1)
    check(lambda x: ops.average_pool(x, 3, strides=2, padding="same"), [grid],
          np.array([[5.0, 6.5], [11.0, 12.5]], np.float32).reshape(1, 2, 2, 1))
    seq = IMG[:, 0]   # 1-D: (N, W, C)
    check(lambda x: ops.max_pool(x, 2), [seq], np.maximum(seq[:, 0:4:2], seq[:, 1:4:2]))


def test_conv_errors():
    with pytest.raises(NotImplementedError, match="ops.conv: an input of rank 5"):
        ops.conv(np.ones((1, 2, 2, 2, 1)), np.ones((1, 1, 1, 1, 1)))
    with pytest.raises(ValueError, match="ops.conv: padding must be 'valid' or 'same'"):
        ops.conv(IMG, KERNEL, padding="causal")


# --- normalization -----------------------------------------------------------------------------

def test_moments_and_batch_normalization():
    cube = RNG.standard_normal((4, 3, 2)).astype(np.float32)
    check(lambda x: ops.moments(x, axes=[0, 1]), [cube], [cube.mean((0, 1)), cube.var((0, 1))],
          rtol=1e-5, atol=1e-6)
    check(lambda x: ops.moments(x, axes=[0], keepdims=True), [cube],
          [cube.mean(0, keepdims=True), cube.var(0, keepdims=True)], rtol=1e-5, atol=1e-6,
          batched=True)
    mean, var, gamma, beta = (RNG.random(2).astype(np.float32) + 0.5 for _ in range(4))
    check(lambda x: ops.batch_normalization(x, mean, var, axis=-1, offset=beta, scale=gamma),
          [cube], (cube - mean) / np.sqrt(var + 1e-3) * gamma + beta, rtol=1e-5, atol=1e-6)
    half = cube.astype(np.float16)
    assert [m.dtype for m in ops.moments(half, axes=[0])] == [np.float16, np.float16]


def test_layer_normalization():
    gamma, beta = RNG.standard_normal(5).astype(np.float32), RNG.standard_normal(5).astype(np.float32)
    centred = X - X.mean(-1, keepdims=True)
    want = centred / np.sqrt(X.var(-1, keepdims=True) + 1e-3) * gamma + beta
    check(lambda x: ops.layer_normalization(x, gamma, beta, epsilon=1e-3), [X], want, rtol=1e-5,
          atol=1e-5)
    check(ops.layer_normalization, [X], centred / np.sqrt(X.var(-1, keepdims=True) + 1e-7),
          rtol=1e-4, atol=1e-5, batched=True)
    # Keras's (deprecated) rms_scaling divides by the standard deviation, uncentred, no beta:
    # these values were read off Keras 3.15.
    row = np.array([[1.0, 2.0, 4.0]])
    check(lambda x: ops.layer_normalization(x, np.array([1.0, 2.0, 3.0]), rms_scaling=True),
          [row], np.array([[0.80178368, 3.20713472, 9.62140465]]), rtol=1e-6)


def test_rms_normalization_and_normalize():
    scale = RNG.standard_normal(5).astype(np.float32)
    check(lambda x: ops.rms_normalization(x, scale, epsilon=1e-3), [X],
          X / np.sqrt((X ** 2).mean(-1, keepdims=True) + 1e-3) * scale, rtol=1e-5)
    check(lambda x: ops.normalize(x, axis=0), [X], X / np.linalg.norm(X, axis=0), rtol=1e-5)
    check(ops.normalize, [np.zeros((1, 3), np.float32)], np.zeros((1, 3), np.float32))
    with pytest.raises(NotImplementedError, match=r"ops.normalize: order=1 \(only the L2 norm"):
        ops.normalize(X, order=1)


def _attention(q, k, v, keep):
    """softmax(q k^T / sqrt(H)) v per batch and head, masked positions left out of the softmax."""
    out = np.zeros(q.shape)
    for b in range(q.shape[0]):
        for n in range(q.shape[2]):
            logits = q[b, :, n] @ k[b, :, n].T / np.sqrt(q.shape[-1])
            logits = np.where(keep[b, n], logits, -np.inf)
            out[b, :, n] = _softmax(logits) @ v[b, :, n]
    return out.astype(np.float32)


def test_dot_product_attention():
    q, k, v = (RNG.standard_normal((2, s, 3, 4)).astype(np.float32) for s in (5, 6, 6))
    everywhere = np.ones((2, 3, 5, 6), bool)
    check(ops.dot_product_attention, [q, k, v], _attention(q, k, v, everywhere), rtol=1e-5,
          atol=1e-6)
    mask = RNG.random((2, 1, 5, 6)) > 0.3
    mask[..., 0] = True
    causal = np.tri(5, 6, dtype=bool)
    check(lambda a, c, d, m: ops.dot_product_attention(a, c, d, mask=m, is_causal=True),
          [q, k, v, mask], _attention(q, k, v, np.broadcast_to(mask & causal, everywhere.shape)),
          rtol=1e-5, atol=1e-6, batched=True)


# --- crossentropies ----------------------------------------------------------------------------

EPS = 1e-7


def test_binary_crossentropy():
    target = (RNG.random((3, 5)) > 0.5).astype(np.float32)
    p = np.clip(_sigmoid(X), EPS, 1 - EPS)
    want = -(target * np.log(p) + (1 - target) * np.log(1 - p))
    check(lambda t, o: ops.binary_crossentropy(t, o, from_logits=True), [target, X],
          want.astype(np.float32), rtol=1e-4, atol=1e-5)
    probs = _sigmoid(X).astype(np.float32)
    check(ops.binary_crossentropy, [target, probs], want.astype(np.float32), rtol=1e-4,
          atol=1e-5)
    with pytest.raises(ValueError, match=r"Arguments `target` and `output` must have the same "
                                         r"shape. Received: target.shape=\(3,\), "
                                         r"output.shape=\(3, 5\)"):
        ops.binary_crossentropy(target[:, 0], X)


def test_categorical_crossentropies():
    labels = np.array([1, 4, 0], np.int32)
    target = np.eye(5, dtype=np.float32)[labels]
    logp = np.log(_softmax(X.astype(np.float64)))
    want = -logp[np.arange(3), labels]
    check(lambda t, o: ops.categorical_crossentropy(t, o, from_logits=True), [target, X],
          want.astype(np.float32), rtol=1e-5, atol=1e-6)
    check(lambda t, o: ops.sparse_categorical_crossentropy(t, o, from_logits=True),
          [labels, X], want.astype(np.float32), rtol=1e-5, atol=1e-6)
    check(lambda t, o: ops.sparse_categorical_crossentropy(t, o, from_logits=True),
          [labels[:, None], X], want.astype(np.float32), rtol=1e-5, atol=1e-6, batched=True)
    unnormalized = (_softmax(X) * 2).astype(np.float32)   # normalized to sum 1 first
    check(ops.categorical_crossentropy, [target, unnormalized], want.astype(np.float32),
          rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="must have the same shape up until the last dimension"):
        ops.sparse_categorical_crossentropy(labels[:2], X)


# --- keras.random ------------------------------------------------------------------------------

def test_random_seeding_semantics():
    assert np.array_equal(random.normal((4,), seed=3), random.normal((4,), seed=3))
    assert not np.array_equal(random.normal((4,), seed=3), random.normal((4,), seed=4))
    gen_a, gen_b = random.SeedGenerator(7), random.SeedGenerator(7)
    first = random.uniform((4,), seed=gen_a)
    assert not np.array_equal(first, random.uniform((4,), seed=gen_a))
    assert np.array_equal(first, random.uniform((4,), seed=gen_b))
    np.random.seed(5)
    again = random.uniform((3,))
    np.random.seed(5)
    assert np.array_equal(again, random.uniform((3,)))


def test_random_distributions():
    u = random.uniform((20000,), minval=-2.0, maxval=3.0, seed=1)
    assert u.dtype == np.float32 and u.min() >= -2.0 and u.max() < 3.0
    assert abs(u.mean() - 0.5) < 0.05
    z = random.normal((20000,), mean=1.0, stddev=2.0, dtype="float64", seed=2)
    assert z.dtype == np.float64
    assert abs(z.mean() - 1.0) < 0.05 and abs(z.std() - 2.0) < 0.05
    kept = random.dropout(np.ones((200, 100), np.float32), 0.25, seed=3)
    assert set(np.unique(kept)) == {0.0, np.float32(1 / 0.75)}
    assert abs((kept == 0).mean() - 0.25) < 0.02
    shared = random.dropout(np.ones((4, 50), np.float32), 0.5, noise_shape=(1, None), seed=4)
    assert (shared == shared[0]).all()
    with pytest.raises(ValueError, match="Expected a float value between 0 and 1. Received: "
                                         "rate=1"):
        random.dropout(np.ones(2), 1)


def test_randint():
    ints = random.randint((10000,), -2, 3, seed=5)
    assert ints.dtype == np.int32 and set(np.unique(ints)) == {-2, -1, 0, 1, 2}


def test_traced_random_draws_from_the_graph_seed():
    b = Builder()
    x = b.input("x", f32["?", 8])
    with ops.tracing(b):
        noisy = ops.add(random.dropout(x, 0.5, seed=random.SeedGenerator(1)),
                        random.normal((8,)))
    graph = b.finish([noisy])
    assert [v.name for v in graph.inputs] == ["x", "seed"]
    ones = np.ones((64, 8), np.float32)
    one, same, other = (run(graph, [ones, np.int64(s)])[0] for s in (1, 1, 2))
    assert np.array_equal(one, same) and not np.array_equal(one, other)


# --- keras.config ------------------------------------------------------------------------------

def test_config_settings_reach_the_ops():
    assert (config.floatx(), config.epsilon(), config.image_data_format()) == (
        "float32", 1e-7, "channels_last")
    try:
        config.set_floatx("float64")
        assert ops.exp(np.ones(2, np.int32)).dtype == np.float64
        assert ops.add(np.ones(2, np.int32), 0.5).dtype == np.float64
        config.set_epsilon(0.5)
        probs = np.array([0.0], np.float32)
        assert np.allclose(ops.binary_crossentropy(np.array([1.0], np.float32), probs),
                           -np.log(0.5))
        config.set_image_data_format("channels_first")
        assert ops.max_pool(np.ones((1, 2, 4, 4)), 2).shape == (1, 2, 2, 2)
    finally:
        config.set_floatx("float32")
        config.set_epsilon(1e-7)
        config.set_image_data_format("channels_last")
    with pytest.raises(ValueError, match="Unknown `floatx` value: float8"):
        config.set_floatx("float8")
    with pytest.raises(ValueError, match="The `data_format` argument must be one of"):
        config.set_image_data_format("nchw")
    config.disable_traceback_filtering()
    assert not config.is_traceback_filtering_enabled()
    config.enable_traceback_filtering()


def test_eager_and_traced_share_one_definition():
    graph, _ = trace_graph(lambda x: ops.gelu(x), [X])
    assert "tanh" in [n.op for n in graph.nodes]
    assert_matches(run(graph, [X])[0], ops.gelu(X))


@pytest.mark.parametrize("module", [random, config])
def test_docstring_examples_hold(module):
    result = doctest.testmod(module, extraglobs={"np": np})
    assert result.failed == 0 and result.attempted > 0

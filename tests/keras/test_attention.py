"""MultiHeadAttention and Attention: against numpy written here (forward, and the gradients of a
training step by finite differences), compiled vs the reference interpreter, and against models
made by real Keras 3 (tests/fixtures/keras/attention/make_attention.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from finite_differences import gradients
from nncompile import keras
from nncompile.keras import layers

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "keras" / "attention"
LR = 0.1


def _softmax(s):
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _mha_numpy(weights, query, value, key, keep):
    """Keras 3's multi-head attention in float64: weights in its order (query, key, value,
    output projection; kernel then bias), `keep` (batch, T, S) bool."""
    qk, qb, kk, kb, vk, vb, ok, ob = [np.asarray(w, np.float64) for w in weights]
    q = np.einsum("btd,dnh->btnh", query, qk) + qb
    k = np.einsum("bsd,dnh->bsnh", key, kk) + kb
    v = np.einsum("bsd,dnh->bsnh", value, vk) + vb
    scores = np.einsum("btnh,bsnh->bnts", q, k) / np.sqrt(qk.shape[-1])
    probs = _softmax(np.where(keep[:, None], scores, -1e9))
    heads = np.einsum("bnts,bsnh->btnh", probs, v)
    return np.einsum("btnh,nho->bto", heads, ok) + ob, probs


def _inputs(rng):
    query = rng.standard_normal((3, 4, 5))
    value, key = rng.standard_normal((3, 3, 6)), rng.standard_normal((3, 3, 2))
    allowed = rng.random((3, 4, 3)) < 0.7
    allowed[:, :, 0] = True
    return query, value, key, allowed


def _cross_attention_model():
    query, value = keras.Input((4, 5)), keras.Input((3, 6))
    key, allowed = keras.Input((3, 2)), keras.Input((4, 3), dtype="bool")
    mha = layers.MultiHeadAttention(2, 3, value_dim=4, output_shape=7,
                                    bias_initializer="random_normal")
    out, scores = mha(query, value, key=key, attention_mask=allowed, use_causal_mask=True,
                      return_attention_scores=True)
    return keras.Model([query, value, key, allowed], [out, scores])


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_multi_head_attention_matches_numpy(backend, monkeypatch):
    monkeypatch.setenv("NNCOMPILE_BACKEND", backend)
    rng = np.random.default_rng(0)
    model = _cross_attention_model()
    query, value, key, allowed = _inputs(rng)
    out, scores = model.predict([x.astype("float32") for x in (query, value, key)] + [allowed],
                                verbose=0)
    causal = np.tril(np.ones((4, 3), bool))
    want_out, want_scores = _mha_numpy(model.get_weights(), query, value, key, allowed & causal)
    np.testing.assert_allclose(out, want_out, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-6)


def test_multi_head_attention_weights_are_keras_3s():
    model = _cross_attention_model()
    mha = model.layers[-1]
    assert [(w.path, w.shape) for w in mha.weights] == [
        (f"{mha.name}/query/kernel", (5, 2, 3)), (f"{mha.name}/query/bias", (2, 3)),
        (f"{mha.name}/key/kernel", (2, 2, 3)), (f"{mha.name}/key/bias", (2, 3)),
        (f"{mha.name}/value/kernel", (6, 2, 4)), (f"{mha.name}/value/bias", (2, 4)),
        (f"{mha.name}/attention_output/kernel", (2, 4, 7)),
        (f"{mha.name}/attention_output/bias", (7,))]


def test_self_attention_step_follows_finite_differences(monkeypatch):
    monkeypatch.setenv("NNCOMPILE_BACKEND", "reference")
    rng = np.random.default_rng(1)
    inputs = keras.Input((3, 4))
    mha = layers.MultiHeadAttention(2, 2, bias_initializer="random_normal")
    model = keras.Model(inputs, layers.Flatten()(mha(inputs, inputs, use_causal_mask=True)))
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=LR), loss="mse")
    weights = [w.astype(np.float64) for w in model.get_weights()]
    x, y = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 12))
    keep = np.broadcast_to(np.tril(np.ones((3, 3), bool)), (2, 3, 3))

    def loss():
        return np.mean((_mha_numpy(weights, x, x, x, keep)[0].reshape(2, 12) - y) ** 2)

    grads = gradients(loss, weights, 1e-6)
    model.train_on_batch(x.astype(np.float32), y.astype(np.float32))
    for got, weight, grad in zip(model.get_weights(), weights, grads):
        np.testing.assert_allclose(got, weight - LR * grad, rtol=1e-4, atol=1e-5)


def _attention_numpy(query, value, key, scale, concat_weight, keep, query_mask):
    if concat_weight is None:
        scores = scale * query @ key.swapaxes(-1, -2)
    else:
        scores = concat_weight * np.tanh(scale * (query[:, :, None] + key[:, None])).sum(-1)
    probs = _softmax(np.where(keep, scores, scores - 1e9))
    return np.where(query_mask[..., None], probs @ value, 0.0), probs


@pytest.mark.parametrize("score_mode", ["dot", "concat"])
@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_attention_matches_numpy(score_mode, backend, monkeypatch):
    monkeypatch.setenv("NNCOMPILE_BACKEND", backend)
    rng = np.random.default_rng(2)
    query, value, key = (rng.standard_normal((2, n, 3)) for n in (4, 5, 5))
    query_mask, value_mask = np.ones((2, 4), bool), np.ones((2, 5), bool)
    query_mask[1, 3], value_mask[0, 4] = False, False
    layer = layers.Attention(use_scale=True, score_mode=score_mode)
    out, probs = layer([query, value, key], mask=[query_mask, value_mask], use_causal_mask=True,
                       return_attention_scores=True)
    layer.set_weights([np.asarray(1.5 + i, np.float32) for i in range(len(layer.weights))])
    out, probs = layer([query, value, key], mask=[query_mask, value_mask], use_causal_mask=True,
                       return_attention_scores=True)
    keep = value_mask[:, None] & np.tril(np.ones((4, 5), bool))
    want_out, want_probs = _attention_numpy(query, value, key, 1.5,
                                            2.5 if score_mode == "concat" else None, keep,
                                            query_mask)
    np.testing.assert_allclose(out, want_out, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(probs, want_probs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name, outputs", [("multi_head_attention", 3), ("attention", 3)])
def test_real_keras_files_load_and_predict(name, outputs, tmp_path):
    data = np.load(FIXTURES / f"{name}.npz")
    inputs = [data[f"in_{i}"] for i in range(sum(k.startswith("in_") for k in data))]
    model = keras.models.load_model(FIXTURES / f"{name}.keras")
    got = model.predict(inputs, verbose=0)
    assert len(got) == outputs
    for i, array in enumerate(got):
        np.testing.assert_allclose(array, data[f"out_{i}"], rtol=1e-5, atol=1e-5)
    model.save(tmp_path / "again.keras")
    again = keras.models.load_model(tmp_path / "again.keras").predict(inputs, verbose=0)
    for first, second in zip(got, again):
        np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("layer", [
    layers.MultiHeadAttention(4, 8, value_dim=2, dropout=0.1, use_bias=False, output_shape=(3,),
                              kernel_initializer="he_normal", name="mha"),
    layers.Attention(use_scale=True, score_mode="concat", dropout=0.2, seed=3)])
def test_configs_round_trip(layer):
    again = type(layer).from_config(layer.get_config())
    assert again.get_config() == layer.get_config()


@pytest.mark.parametrize("make, message", [
    (lambda: layers.MultiHeadAttention(0, 4), "`num_heads`"),
    (lambda: layers.MultiHeadAttention(2, 4, attention_axes=(1, 2)), "attention_axes"),
    (lambda: layers.MultiHeadAttention(2, 4, use_gate=True), "`use_gate`"),
    (lambda: layers.MultiHeadAttention(2, 4, sliding_window=3), "`sliding_window`"),
    (lambda: layers.Attention(score_mode="additive"), "score_mode"),
    (lambda: layers.Attention(use_scale="yes"), "`use_scale`"),
])
def test_bad_arguments_name_the_argument(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_bad_calls_say_what_was_expected():
    x = np.zeros((1, 2, 3), "float32")
    with pytest.raises(ValueError, match=r"\[query, value\]"):
        layers.Attention()(x)
    with pytest.raises(ValueError, match="steps, features"):
        layers.MultiHeadAttention(1, 2)(np.zeros((1, 2, 2, 3), "float32"),
                                        np.zeros((1, 2, 2, 3), "float32"))
    query = keras.Input((2, 3))
    mha = layers.MultiHeadAttention(1, 2)
    mha(query, query)
    with pytest.raises(ValueError, match="use_causal_mask=True"):
        mha(query, query, use_causal_mask=True)


class TransformerBlock(layers.Layer):
    """keras.io's "Text classification with Transformer" block, as the tutorial writes it."""

    def __init__(self, embed_dim, num_heads, ff_dim, rate=0.1, **kwargs):
        super().__init__(**kwargs)
        self.att = layers.MultiHeadAttention(num_heads=num_heads, key_dim=embed_dim)
        self.ffn = keras.Sequential([layers.Dense(ff_dim, activation="relu"),
                                     layers.Dense(embed_dim)])
        self.layernorm1 = layers.LayerNormalization(epsilon=1e-6)
        self.layernorm2 = layers.LayerNormalization(epsilon=1e-6)
        self.dropout1, self.dropout2 = layers.Dropout(rate), layers.Dropout(rate)

    def call(self, inputs, training=False):
        attn_output = self.dropout1(self.att(inputs, inputs), training=training)
        out1 = self.layernorm1(inputs + attn_output)
        return self.layernorm2(out1 + self.dropout2(self.ffn(out1), training=training))


def test_tutorial_transformer_block_trains_every_weight():
    inputs = keras.Input((5,))
    x = TransformerBlock(8, 2, 16)(layers.Embedding(30, 8)(inputs))
    model = keras.Model(inputs, layers.Dense(2, activation="softmax")(
        layers.GlobalAveragePooling1D()(x)))
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(5)
    before = model.get_weights()
    assert len(before) == 1 + 8 + 4 + 4 + 2   # embedding, attention, ffn, norms, head
    model.fit(rng.integers(0, 30, (16, 5)), rng.integers(0, 2, 16), epochs=1, verbose=0)
    assert all(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))

"""Keras 3 masks (Embedding(mask_zero=True), Masking) against numpy written here.

Each expectation is Keras 3.15's documented arithmetic redone by hand in numpy: the masked mean of
GlobalAveragePooling1D, Masking's zeroed steps, the merges' mask rules, BatchNormalization's
masked batch statistics. Layers that would consume a mask in a way nncompile does not implement
must refuse with an error naming both layers.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nncompile import keras
from nncompile.keras import layers
from tests.keras.recurrent_reference import lstm_step, run

IDS = np.array([[1, 2, 0, 0], [3, 0, 4, 0], [5, 6, 7, 8], [0, 9, 0, 1]], "int32")


def _masked_mean(x: np.ndarray, keep: np.ndarray) -> np.ndarray:
    return (x * keep[..., None]).sum(1) / keep.sum(1, keepdims=True)


def _embedding_gap_dense(units: int = 2) -> keras.Model:
    return keras.Sequential([keras.Input((None,), dtype="int32"),
                             layers.Embedding(10, 3, mask_zero=True, name="emb"),
                             layers.GlobalAveragePooling1D(), layers.Dense(units, name="out")])


def test_embedding_mask_zero_then_average_pooling_averages_unmasked_steps():
    model = _embedding_gap_dense()
    table = model.get_layer("emb").get_weights()[0]
    kernel, bias = model.get_layer("out").get_weights()
    want = _masked_mean(table[IDS], IDS != 0) @ kernel + bias
    np.testing.assert_allclose(model.predict(IDS, verbose=0), want, rtol=1e-5, atol=1e-6)


@settings(max_examples=8, deadline=None)
@given(st.integers(1, 5), st.integers(1, 7), st.integers(0, 2**31 - 1))
def test_masked_average_of_random_sequences(batch, steps, seed):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 4, size=(batch, steps)).astype("int32")
    ids[:, 0] = rng.integers(1, 4, size=batch)   # keep one step per row: no 0 / 0
    model = keras.Sequential([keras.Input((steps,), dtype="int32"),
                              layers.Embedding(4, 5, mask_zero=True, name="emb"),
                              layers.Dense(3, activation="relu", name="dense"),
                              layers.GlobalAveragePooling1D(keepdims=True)])
    table = model.get_layer("emb").get_weights()[0]
    kernel, bias = model.get_layer("dense").get_weights()
    hidden = np.maximum(table[ids] @ kernel + bias, 0)
    want = _masked_mean(hidden, ids != 0)[:, None, :]
    np.testing.assert_allclose(model.predict(ids, verbose=0), want, rtol=1e-5, atol=1e-6)


def test_symbolic_tensors_carry_the_mask_until_a_layer_drops_or_consumes_it():
    ids = keras.Input((4,), dtype="int32")
    embedded = layers.Embedding(10, 3, mask_zero=True, name="emb")(ids)
    dense = layers.Dense(2)(embedded)
    assert embedded._keras_mask.shape == (None, 4) and dense._keras_mask is embedded._keras_mask
    assert layers.GlobalAveragePooling1D()(dense)._keras_mask is None
    with pytest.warns(UserWarning, match="does not support masking"):
        assert layers.Flatten()(dense)._keras_mask is None
    assert layers.Embedding(10, 3)(ids)._keras_mask is None


def test_dropping_layer_gives_the_unmasked_result():
    """Keras's Flatten does not support masking: the mask is gone and Dense sees every step."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = keras.Sequential([keras.Input((4,), dtype="int32"),
                                  layers.Embedding(10, 3, mask_zero=True, name="emb"),
                                  layers.Flatten(), layers.Dense(2, name="out")])
        got = model.predict(IDS, verbose=0)
    table = model.get_layer("emb").get_weights()[0]
    kernel, bias = model.get_layer("out").get_weights()
    np.testing.assert_allclose(got, table[IDS].reshape(4, -1) @ kernel + bias, rtol=1e-5, atol=1e-6)


def test_masking_layer_zeroes_masked_steps_and_masks_the_average():
    x = np.random.default_rng(1).normal(size=(3, 5, 2)).astype("float32")
    x[0, 1] = x[1, 3:] = 7.0
    x[2, 0] = [7.0, 1.0]                     # only one feature equals mask_value: kept
    keep = (x != 7.0).any(-1)
    masking = keras.Sequential([keras.Input((5, 2)), layers.Masking(mask_value=7.0)])
    np.testing.assert_array_equal(masking.predict(x, verbose=0), np.where(keep[..., None], x, 0))
    pooled = keras.Sequential([keras.Input((5, 2)), layers.Masking(7.0),
                               layers.GlobalAveragePooling1D()])
    np.testing.assert_allclose(pooled.predict(x, verbose=0), _masked_mean(x, keep), rtol=1e-6)
    assert layers.Masking(2.5).get_config()["mask_value"] == 2.5


def _two_branches(merge: layers.Layer, second_masked: bool = True):
    """emb_a(ids) and emb_b(ids) (masked or not) merged, then a masked average."""
    ids = keras.Input((4,), dtype="int32")
    a = layers.Embedding(10, 3, mask_zero=True, name="emb_a")(ids)
    b = layers.Embedding(10, 3, mask_zero=second_masked, name="emb_b")(ids)
    model = keras.Model(ids, layers.GlobalAveragePooling1D()(merge([a, b])))
    return model, model.get_layer("emb_a").get_weights()[0][IDS], model.get_layer("emb_b").get_weights()[0][IDS]


@pytest.mark.parametrize("merge, fn", [(layers.Add, np.add), (layers.Subtract, np.subtract),
                                       (layers.Average, lambda a, b: (a + b) / 2),
                                       (layers.Maximum, np.maximum), (layers.Minimum, np.minimum),
                                       (layers.Multiply, np.multiply)])
def test_merging_masked_inputs_keeps_the_or_of_their_masks(merge, fn):
    model, a, b = _two_branches(merge())
    want = _masked_mean(fn(a, b), IDS != 0)
    np.testing.assert_allclose(model.predict(IDS, verbose=0), want, rtol=1e-5, atol=1e-6)


def test_merge_with_one_unmasked_input_has_no_mask():
    """Keras: the merged mask needs a mask on every input; otherwise the average is plain."""
    model, a, b = _two_branches(layers.Add(), second_masked=False)
    np.testing.assert_allclose(model.predict(IDS, verbose=0), (a + b).mean(1), rtol=1e-5, atol=1e-6)


def test_maximum_with_one_masked_input_follows_keras_fill_rule():
    """Keras's Maximum takes the other input where one is masked, and then the mask is gone."""
    model, a, b = _two_branches(layers.Maximum(), second_masked=False)
    keep = (IDS != 0)[..., None]
    np.testing.assert_allclose(model.predict(IDS, verbose=0),
                               np.where(keep, np.maximum(a, b), b).mean(1), rtol=1e-5, atol=1e-6)


def test_concatenate_along_steps_concatenates_the_masks():
    ids = keras.Input((4,), dtype="int32")
    a = layers.Embedding(10, 3, mask_zero=True, name="emb_a")(ids)
    b = layers.Embedding(10, 3, name="emb_b")(ids)
    joined = layers.Concatenate(axis=1)([a, b])
    model = keras.Model(ids, layers.GlobalAveragePooling1D()(joined))
    ta, tb = (model.get_layer(n).get_weights()[0][IDS] for n in ("emb_a", "emb_b"))
    keep = np.concatenate([IDS != 0, np.ones_like(IDS, bool)], axis=1)
    want = _masked_mean(np.concatenate([ta, tb], axis=1), keep)
    np.testing.assert_allclose(model.predict(IDS, verbose=0), want, rtol=1e-5, atol=1e-6)


def test_mask_crosses_nested_models_both_ways():
    inner = keras.Sequential([keras.Input((4,), dtype="int32"),
                              layers.Embedding(10, 3, mask_zero=True, name="emb")], name="inner")
    ids = keras.Input((4,), dtype="int32")
    outer = keras.Model(ids, layers.GlobalAveragePooling1D()(inner(ids)))
    table = inner.get_layer("emb").get_weights()[0]
    np.testing.assert_allclose(outer.predict(IDS, verbose=0), _masked_mean(table[IDS], IDS != 0),
                               rtol=1e-5, atol=1e-6)
    pool = keras.Sequential([keras.Input((4, 3)), layers.GlobalAveragePooling1D()], name="pool")
    embedded = layers.Embedding(10, 3, mask_zero=True, name="emb2")
    model = keras.Model(ids, pool(embedded(ids)))
    np.testing.assert_allclose(model.predict(IDS, verbose=0),
                               _masked_mean(embedded.get_weights()[0][IDS], IDS != 0), rtol=1e-5,
                               atol=1e-6)


def test_softmax_on_a_masked_input_is_refused_naming_both_layers():
    ids = keras.Input((4,), dtype="int32")
    embedded = layers.Embedding(10, 3, mask_zero=True, name="tokens")(ids)
    with pytest.raises(ValueError, match=r"'probs' \(Softmax\).*'tokens'"):
        layers.Softmax(name="probs")(embedded)


def _tagger() -> keras.Model:
    return keras.Sequential([keras.Input((4,), dtype="int32"),
                             layers.Embedding(10, 3, mask_zero=True, name="tokens"),
                             layers.Dense(1, name="tagger")])


def test_loss_of_an_output_that_carries_a_mask_averages_the_kept_entries():
    """Keras 3's masked loss: the mean squared error over the steps the mask keeps."""
    model = _tagger()
    model.compile(optimizer="sgd", loss="mse")
    target = np.arange(16, dtype="float32").reshape(4, 4, 1) / 16
    pred = model.predict(IDS, verbose=0)
    keep = IDS != 0
    want = np.mean(((pred - target)[..., 0] ** 2)[keep])
    assert model.evaluate(IDS, target, verbose=0) == pytest.approx(want, rel=1e-5)


def test_a_metric_of_an_output_that_carries_a_mask_averages_the_kept_entries():
    """As the loss does (Keras 3's MeanMetricWrapper weights by the mask); was refused."""
    model = _tagger()
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    target = np.arange(16, dtype="float32").reshape(4, 4, 1) / 16
    pred = model.predict(IDS, verbose=0)
    want = np.mean(np.abs(pred - target)[..., 0][IDS != 0])
    assert model.evaluate(IDS, target, verbose=0, return_dict=True)["mae"] == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_training_step_of_a_masked_model_matches_numpy_gradients(backend, monkeypatch):
    """One SGD step on mean squared error: the embedding rows of padding tokens never change
    (they are masked out), and every weight moves by lr * the numpy gradient."""
    monkeypatch.setenv("NNCOMPILE_BACKEND", backend)
    model = _embedding_gap_dense(units=1)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse")
    table = model.get_layer("emb").get_weights()[0]
    kernel, bias = model.get_layer("out").get_weights()
    target = np.arange(4, dtype="float32")[:, None] / 4
    keep = (IDS != 0).astype("float32")
    pooled = _masked_mean(table[IDS], keep)
    d_out = 2 * (pooled @ kernel + bias - target) / len(IDS)
    d_pooled = d_out @ kernel.T
    d_table = np.zeros_like(table)
    np.add.at(d_table, IDS, (keep / keep.sum(1, keepdims=True))[..., None] * d_pooled[:, None, :])
    model.train_on_batch(IDS, target)
    np.testing.assert_allclose(model.get_layer("out").get_weights()[0],
                               kernel - 0.1 * pooled.T @ d_out, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.get_layer("emb").get_weights()[0], table - 0.1 * d_table,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(model.get_layer("emb").get_weights()[0][0], table[0])


def test_batch_normalization_training_statistics_skip_masked_steps():
    model = keras.Sequential([keras.Input((4,), dtype="int32"),
                              layers.Embedding(10, 3, mask_zero=True, name="emb"),
                              layers.BatchNormalization(momentum=0.0, name="bn"),
                              layers.GlobalAveragePooling1D()])
    x = model.get_layer("emb").get_weights()[0][IDS]
    keep = (IDS != 0)[..., None]
    count = keep.sum() + 1e-7
    mean = np.where(keep, x, 0).sum((0, 1)) / count
    var = np.where(keep, (x - mean) ** 2, 0).sum((0, 1)) / count
    normalized = (x - mean) / np.sqrt(var + 1e-3)
    got = model(IDS, training=True)
    np.testing.assert_allclose(got, _masked_mean(normalized, IDS != 0), rtol=1e-4, atol=1e-5)


def test_metrics_of_a_masked_output_count_the_kept_steps_as_keras_does():
    """Keras 3's mean metrics (accuracy, a loss as a metric) weight each entry by the output's
    mask, times the sample weights for `weighted_metrics`; checked against numpy on the
    model's own predictions (real Keras 3 gave accuracy 0.33333 and loss 1.09864 on this model
    with the same weights)."""
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, 20, (16, 7))
    tokens[:, 5:] = 0
    tokens[:4, 3:] = 0
    labels = rng.integers(0, 3, (16, 7))
    weights = rng.random(16).astype(np.float32)
    keras.utils.set_random_seed(0)
    inp = keras.Input((7,), dtype="int32")
    h = keras.layers.LSTM(5, return_sequences=True)(keras.layers.Embedding(20, 4, mask_zero=True)(inp))
    model = keras.Model(inp, keras.layers.TimeDistributed(keras.layers.Dense(3, activation="softmax"))(h))
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"], weighted_metrics=["accuracy"])
    got = model.evaluate(tokens, labels, sample_weight=weights, verbose=0, return_dict=True)
    keep = tokens != 0
    right = model.predict(tokens, verbose=0).argmax(-1) == labels
    np.testing.assert_allclose(got["accuracy"], right[keep].mean(), rtol=1e-6)
    kept_weights = keep * weights[:, None]
    np.testing.assert_allclose(got["weighted_accuracy"], (right * kept_weights).sum() / kept_weights.sum(), rtol=1e-6)
    history = model.fit(tokens, labels, epochs=1, verbose=0)
    assert set(history.history) == {"loss", "accuracy", "weighted_accuracy"}


def _lstm_reference(layer, x, keep):
    """The LSTM over x with Keras's masking, in numpy (tests/keras/recurrent_reference.py)."""
    weights = [w.astype(np.float64) for w in layer.get_weights()]
    units = weights[1].shape[0]
    zeros = [np.zeros((len(x), units))] * 2
    return run(lstm_step(weights), x, zeros, mask=keep)[1]


def test_a_mask_given_to_a_recurrent_layer_s_call_is_honoured():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 2)).astype(np.float32)
    keep = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 1, 0, 1]], bool)
    lstm = layers.LSTM(4)
    np.testing.assert_allclose(lstm(x, mask=keep), _lstm_reference(lstm, x, keep), rtol=2e-5, atol=2e-5)
    with pytest.raises(TypeError, match="got an unexpected keyword argument 'mask'"):
        layers.Dense(2)(x, mask=keep)
    with pytest.raises(NotImplementedError, match="`mask=` argument in a functional model"):
        layers.LSTM(4)(keras.Input((5, 2)), mask=keras.Input((5,), dtype="bool"))


class _GuideBlock(layers.Layer):
    """The masking guide's layer: the embedding's mask handed to the LSTM by hand."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.embedding = layers.Embedding(10, 3, mask_zero=True)
        self.lstm = layers.LSTM(4)

    def call(self, tokens):
        return self.lstm(self.embedding(tokens), mask=self.embedding.compute_mask(tokens))


def test_compute_mask_and_a_mask_argument_inside_a_layer_s_call():
    np.testing.assert_array_equal(layers.Embedding(10, 3, mask_zero=True).compute_mask(IDS), IDS != 0)
    block = _GuideBlock()
    model = keras.Sequential([keras.Input((4,), dtype="int32"), block])
    vectors = block.embedding.get_weights()[0][IDS]
    want = _lstm_reference(block.lstm, vectors, IDS != 0)
    np.testing.assert_allclose(model.predict(IDS, verbose=0), want, rtol=2e-5, atol=2e-5)


class _HandMadeMask(layers.Layer):
    """A mask made by hand (the embedding makes none): only the argument can carry it."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.embedding = layers.Embedding(10, 3)
        self.lstm = layers.LSTM(4)

    def call(self, tokens):
        return self.lstm(self.embedding(tokens), mask=keras.ops.not_equal(tokens, 0))


def test_a_hand_made_mask_argument_inside_a_layer_s_call():
    block = _HandMadeMask()
    model = keras.Sequential([keras.Input((4,), dtype="int32"), block])
    vectors = block.embedding.get_weights()[0][IDS]
    want = _lstm_reference(block.lstm, vectors, IDS != 0)
    np.testing.assert_allclose(model.predict(IDS, verbose=0), want, rtol=2e-5, atol=2e-5)

"""keras.random's truncated_normal, categorical and shuffle: their distributions against their
definitions (bounds and moments, softmax frequencies, uniform permutations), eagerly and traced
into a model."""
from __future__ import annotations

import numpy as np
import pytest

from nncompile import keras
from nncompile.keras import ops, random


def test_truncated_normal_stays_within_two_deviations_with_its_moments():
    """Mean 0 and variance 1 - 4 phi(2) / (Phi(2) - Phi(-2)) = 0.7737 for the standard case."""
    import math
    x = random.truncated_normal((200000,), mean=1.0, stddev=0.5, seed=1)
    assert x.dtype == np.float32 and x.min() >= 0.0 and x.max() <= 2.0
    phi = math.exp(-2.0) / math.sqrt(2 * math.pi)
    mass = math.erf(2 / math.sqrt(2))
    assert abs(x.mean() - 1.0) < 0.005 and abs(x.var() / 0.25 - (1 - 4 * phi / mass)) < 0.01
    np.testing.assert_array_equal(random.truncated_normal((5,), seed=3), random.truncated_normal((5,), seed=3))


def test_categorical_draws_with_the_softmax_probabilities():
    p = np.array([[0.1, 0.6, 0.3], [0.5, 0.0, 0.5]], np.float32)
    draws = random.categorical(np.log(np.maximum(p, 1e-30)), 40000, seed=2)
    assert draws.shape == (2, 40000) and draws.dtype == np.int32
    for row, probs in zip(draws, p):
        np.testing.assert_allclose(np.bincount(row, minlength=3) / 40000, probs, atol=0.01)
    with pytest.raises(ValueError, match="`logits` should be a 2-D tensor"):
        random.categorical(np.zeros(3, np.float32), 2)


def test_shuffle_permutes_along_an_axis_uniformly():
    x = np.arange(12).reshape(3, 4)
    shuffled = random.shuffle(x, axis=1, seed=4)
    offsets = shuffled - x[:, :1]     # each row's permutation of 0 .. 3: one for every row
    assert (np.sort(shuffled, axis=1) == x).all() and (offsets == offsets[0]).all()
    firsts = [int(random.shuffle(np.arange(4), seed=s)[0]) for s in range(2000)]
    np.testing.assert_allclose(np.bincount(firsts, minlength=4) / 2000, 0.25, atol=0.04)


def test_the_new_draws_inside_a_model():
    """Traced in a layer's call, each a random op of the compiled graph."""
    class Noisy(keras.layers.Layer):
        def call(self, x):
            shifted = random.shuffle(x, axis=1, seed=7) + random.truncated_normal((4,), seed=5)
            return shifted + ops.cast(ops.sum(random.categorical(ops.zeros((1, 4)), 3, seed=6)), "float32") * 0
    model = keras.Sequential([keras.Input((4,)), Noisy()])
    out = model.predict(np.arange(8, dtype=np.float32).reshape(2, 4), verbose=0)
    assert out.shape == (2, 4) and np.isfinite(out).all()

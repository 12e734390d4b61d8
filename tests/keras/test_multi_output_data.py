"""Targets and sample weights of a model with several outputs, as Keras 3 takes them: a list in
output order or a dict by output name, for fit, evaluate and validation data."""
from __future__ import annotations

import numpy as np
import pytest

from nncompile import keras


def _two_outputs():
    keras.utils.set_random_seed(0)
    inp = keras.Input((4,))
    model = keras.Model(inp, [keras.layers.Dense(1, name="a")(inp), keras.layers.Dense(1, name="b")(inp)])
    model.compile("sgd", "mse")
    return model


def _data():
    rng = np.random.default_rng(0)
    return rng.random((8, 4), dtype=np.float32), rng.random((8, 1), dtype=np.float32), rng.random(8).astype(np.float32)


def _numpy_losses(model, x, targets, weights=None):
    """[total, per output...] of the mean squared errors, weighted per sample, from numpy."""
    weights = np.ones(len(x)) if weights is None else weights
    outs = []
    for name, y in zip(("a", "b"), targets):
        kernel, bias = model.get_layer(name).get_weights()
        err = ((x.astype(np.float64) @ kernel + bias - y) ** 2).mean(axis=1)
        outs.append((err * weights).mean())
    return [sum(outs), *outs]


def test_dict_targets_by_output_name_in_fit_evaluate_and_validation():
    model, (x, y, _) = _two_outputs(), _data()
    history = model.fit(x, {"b": 2 * y, "a": y}, epochs=2, verbose=0, validation_data=(x, {"a": y, "b": 2 * y}))
    assert sorted(history.history) == ["a_loss", "b_loss", "loss", "val_a_loss", "val_b_loss", "val_loss"]
    got = model.evaluate(x, {"a": y, "b": 2 * y}, verbose=0)
    np.testing.assert_allclose(got, _numpy_losses(model, x, [y, 2 * y]), rtol=1e-5)
    assert got == model.evaluate(x, [y, 2 * y], verbose=0)


def test_a_dict_target_naming_no_output_is_refused():
    model, (x, y, _) = _two_outputs(), _data()
    with pytest.raises(ValueError, match="`y` names output 'c', which the model does not have"):
        model.evaluate(x, {"a": y, "c": y}, verbose=0)


@pytest.mark.parametrize("given", ["list", "dict"])
def test_the_same_sample_weights_per_output_weigh_every_loss(given):
    model, (x, y, w) = _two_outputs(), _data()
    weights = [w, w] if given == "list" else {"a": w, "b": w}
    got = model.evaluate(x, [y, 2 * y], sample_weight=weights, verbose=0)
    np.testing.assert_allclose(got, _numpy_losses(model, x, [y, 2 * y], w), rtol=1e-5)


def test_different_sample_weights_per_output_are_refused_not_merged():
    model, (x, y, w) = _two_outputs(), _data()
    with pytest.raises(ValueError, match="received a `sample_weight` per output \\(a, b\\) and they differ"):
        model.fit(x, [y, y], sample_weight=[w, 2 * w], verbose=0)

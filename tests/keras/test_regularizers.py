"""Regularizers: penalties against numpy sums and real Keras's (tests/fixtures/keras/orthogonal), names, configs."""
import os

import numpy as np
import pytest

from nncompile.keras import regularizers

W = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)


def test_defaults_and_penalties():
    assert regularizers.L1()(W) == pytest.approx(0.01 * np.abs(W).sum(), rel=1e-6)
    assert regularizers.L2()(W) == pytest.approx(0.01 * (W.astype(np.float64) ** 2).sum(), rel=1e-6)
    assert regularizers.L1L2()(W) == 0.0
    both = regularizers.L1L2(l1=0.3, l2=0.2)(W)
    expected = 0.3 * np.abs(W).sum() + 0.2 * (W.astype(np.float64) ** 2).sum()
    assert both == pytest.approx(expected, rel=1e-6)
    assert isinstance(both, float)


@pytest.mark.parametrize("name, cls, config", [
    ("l1", regularizers.L1, {"l1": 0.01}), ("l2", regularizers.L2, {"l2": 0.01}),
    ("l1_l2", regularizers.L1L2, {"l1": 0.0, "l2": 0.0}),
])
def test_names(name, cls, config):
    reg = regularizers.get(name)
    assert type(reg) is cls and reg.get_config() == config


def test_lowercase_aliases_take_arguments():
    assert regularizers.l2(0.5)(np.array([2.0])) == 2.0
    assert regularizers.l1_l2(l1=1.0, l2=1.0)(np.array([-2.0])) == 6.0


@pytest.mark.parametrize("reg", [regularizers.L1(0.2), regularizers.L2(0.3),
                                 regularizers.L1L2(0.1, 0.4)])
def test_config_round_trip(reg):
    again = regularizers.get(regularizers.serialize(reg))
    assert type(again) is type(reg) and again.get_config() == reg.get_config()
    assert again(W) == reg(W)


def test_get_passes_through_none_instances_and_callables():
    reg = regularizers.L2(0.1)
    assert regularizers.get(reg) is reg and regularizers.get(None) is None
    assert regularizers.get(np.sum) is np.sum
    assert regularizers.get(regularizers.L1).get_config() == {"l1": 0.01}


def test_errors():
    with pytest.raises(ValueError, match="l1, l1_l2, l2") as info:
        regularizers.get("l3")
    assert "Could not interpret regularizer identifier" in str(info.value)
    with pytest.raises(ValueError, match="non-negative float"):
        regularizers.L2(-1.0)
    with pytest.raises(ValueError, match="non-negative float"):
        regularizers.L1("big")


ORTHOGONAL = np.load(os.path.join(os.path.dirname(__file__), "..", "fixtures", "keras", "orthogonal",
                                  "orthogonal.npz"))


@pytest.mark.parametrize("index", [0, 1])
@pytest.mark.parametrize("mode", ["rows", "columns"])
def test_orthogonal_penalties_are_keras_s(index, mode):
    penalty = regularizers.OrthogonalRegularizer(factor=0.5, mode=mode)(ORTHOGONAL[f"kernel_{index}"])
    np.testing.assert_allclose(penalty, ORTHOGONAL[f"penalty_{index}_{mode}"], rtol=1e-5)


def test_orthogonal_regularizer_trains_a_dense_layer_as_keras_does():
    from nncompile import keras
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(
        4, kernel_regularizer=regularizers.OrthogonalRegularizer(0.2, "columns"))])
    model.set_weights([ORTHOGONAL["w0"], ORTHOGONAL["b0"]])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    loss = model.train_on_batch(ORTHOGONAL["x"], ORTHOGONAL["y"])
    assert loss == pytest.approx(float(ORTHOGONAL["loss"]), rel=1e-5)
    np.testing.assert_allclose(model.get_weights()[0], ORTHOGONAL["w1"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.get_weights()[1], ORTHOGONAL["b1"], rtol=1e-5, atol=1e-6)


def test_orthogonal_regularizer_names_config_and_errors():
    reg = regularizers.get("orthogonal_regularizer")
    assert type(reg) is regularizers.OrthogonalRegularizer and reg.get_config() == {"factor": 0.01, "mode": "rows"}
    again = regularizers.get(regularizers.serialize(regularizers.OrthogonalRegularizer(0.3, "columns")))
    assert again.get_config() == {"factor": 0.3, "mode": "columns"}
    with pytest.raises(ValueError, match='Expected one of {"rows", "columns"}. Received: mode=diagonal'):
        regularizers.OrthogonalRegularizer(mode="diagonal")
    with pytest.raises(ValueError, match="must have rank 2"):
        regularizers.OrthogonalRegularizer()(np.ones(3))

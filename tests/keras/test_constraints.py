"""Constraints: Keras 3's formulas against numpy, names, configs."""
import numpy as np
import pytest

from nncompile.keras import backend, constraints

W = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32) * 2
EPS = backend.epsilon()


def norms(w, axis):
    return np.sqrt((w.astype(np.float64) ** 2).sum(axis=axis, keepdims=True))


@pytest.mark.parametrize("axis", [0, 1, [0, 1]])
def test_max_norm(axis):
    n = norms(W, tuple(axis) if isinstance(axis, list) else axis)
    got = constraints.MaxNorm(max_value=1.5, axis=axis)(W)
    np.testing.assert_allclose(got, W * (np.clip(n, 0, 1.5) / (EPS + n)), rtol=1e-6)
    assert got.dtype == np.float32
    assert norms(got, tuple(axis) if isinstance(axis, list) else axis).max() <= 1.5 + 1e-5


def test_max_norm_leaves_small_weights_alone():
    small = np.array([[0.3], [0.4]], np.float32)
    np.testing.assert_allclose(constraints.MaxNorm()(small), small, rtol=1e-6)


@pytest.mark.parametrize("rate", [1.0, 0.5])
def test_min_max_norm(rate):
    n = norms(W, 0)
    desired = rate * np.clip(n, 0.5, 2.0) + (1 - rate) * n
    got = constraints.MinMaxNorm(min_value=0.5, max_value=2.0, rate=rate)(W)
    np.testing.assert_allclose(got, W * (desired / (EPS + n)), rtol=1e-6)


def test_non_neg_and_unit_norm():
    np.testing.assert_array_equal(constraints.NonNeg()(W), np.maximum(W, 0))
    np.testing.assert_allclose(constraints.UnitNorm(axis=1)(W), W / (EPS + norms(W, 1)), rtol=1e-6)
    np.testing.assert_allclose(norms(constraints.UnitNorm()(W), 0), 1.0, rtol=1e-5)
    assert constraints.NonNeg()(np.array([-1, 2])).dtype == np.float32


@pytest.mark.parametrize("name, cls, config", [
    ("max_norm", constraints.MaxNorm, {"max_value": 2, "axis": 0}),
    ("min_max_norm", constraints.MinMaxNorm,
     {"min_value": 0.0, "max_value": 1.0, "rate": 1.0, "axis": 0}),
    ("non_neg", constraints.NonNeg, {}), ("unit_norm", constraints.UnitNorm, {"axis": 0}),
    ("MaxNorm", constraints.MaxNorm, {"max_value": 2, "axis": 0}),
])
def test_names_and_defaults(name, cls, config):
    c = constraints.get(name)
    assert type(c) is cls and c.get_config() == config


@pytest.mark.parametrize("c", [constraints.MaxNorm(3, axis=[0, 1]), constraints.NonNeg(),
                               constraints.MinMaxNorm(0.1, 0.9, rate=0.5, axis=1),
                               constraints.UnitNorm(axis=1)])
def test_config_round_trip(c):
    config = constraints.serialize(c)
    assert config == {"module": "keras.constraints", "class_name": type(c).__name__,
                      "config": c.get_config(), "registered_name": None}
    again = constraints.get(config)
    assert type(again) is type(c) and again.get_config() == c.get_config()
    assert type(c).from_config(c.get_config()).get_config() == c.get_config()
    np.testing.assert_array_equal(again(W), c(W))
    assert constraints.deserialize(config).get_config() == c.get_config()


def test_get_passes_through_none_instances_classes_and_callables():
    c = constraints.UnitNorm()
    assert constraints.get(c) is c and constraints.get(None) is None
    assert constraints.serialize(None) is None
    assert type(constraints.get(constraints.NonNeg)) is constraints.NonNeg
    assert constraints.get(np.abs) is np.abs
    assert constraints.max_norm is constraints.MaxNorm


def test_errors():
    with pytest.raises(ValueError, match="Could not interpret constraint identifier: 'maxnorm'") as info:
        constraints.get("maxnorm")
    assert "max_norm, min_max_norm, non_neg, unit_norm" in str(info.value)
    with pytest.raises(ValueError, match="'class_name' and 'config'"):
        constraints.get({"config": {}})
    with pytest.raises(ValueError, match="Could not interpret constraint identifier: 3"):
        constraints.get(3)

"""Regularizers: penalties against numpy sums, names, configs."""
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

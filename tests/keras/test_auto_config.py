"""Keras 3's automatic config (`nncompile/keras/layers/auto_config.py`): a class that defines no
`get_config` is described by the arguments its constructor was called with. The expected configs
are what real Keras 3.15 records for the same classes (its `Operation.__new__` / `get_config`),
and every round trip is checked by predicting with the layer's own arithmetic written in numpy."""
from __future__ import annotations

from collections import namedtuple

import numpy as np
import pytest

from nncompile import keras
from nncompile.keras.models import Functional

Size = namedtuple("Size", "h w")


class Window(keras.layers.Layer):
    """Takes an argument named like a framework one (batch_size) for itself."""

    def __init__(self, batch_size=1, **kwargs):
        super().__init__(**kwargs)
        self.factor = batch_size

    def call(self, x):
        return x * self.factor


class GuideLinear(keras.layers.Layer):
    """keras.io's "making new layers" example: its `input_dim` is its own argument."""

    def __init__(self, units=32, input_dim=32):
        super().__init__()
        self.w = self.add_weight(shape=(input_dim, units), initializer="random_normal")

    def call(self, x):
        return keras.ops.matmul(x, self.w)


class Lookup(keras.layers.Layer):
    def __init__(self, table=None, shape=(1, 1), **kwargs):
        super().__init__(**kwargs)
        self.table, self.shape = table, shape

    def call(self, x):
        return x * float(self.table[1])


def test_an_argument_named_like_a_framework_one_is_kept():
    x = np.ones((1, 2), "float32")
    model = keras.Sequential([keras.Input((2,)), Window(batch_size=5)])
    np.testing.assert_array_equal(model.predict(x, verbose=0), 5 * x)
    np.testing.assert_array_equal(keras.models.clone_model(model).predict(x, verbose=0), 5 * x)
    assert GuideLinear(4, input_dim=8).get_config() == {"units": 4, "input_dim": 8}   # no **kwargs: no name
    assert GuideLinear.from_config(GuideLinear(4, input_dim=8).get_config()).w.shape == (8, 4)


def test_a_saved_layer_keeps_its_arguments(tmp_path):
    x = np.ones((1, 2), "float32")
    model = keras.Sequential([keras.Input((2,)), Window(batch_size=5)])
    model.save(tmp_path / "w.keras")
    again = keras.models.load_model(tmp_path / "w.keras", custom_objects={"Window": Window})
    np.testing.assert_array_equal(again.predict(x, verbose=0), 5 * x)


def test_namedtuples_dicts_and_lists_are_recorded():
    assert keras.layers.Reshape(Size(2, 3)).target_shape == (2, 3)   # built-in layers take them too
    assert keras.Input(shape=Size(2, 3)).shape == (None, 2, 3)
    sizes = [1.0, 2.0]
    layer = Lookup(table={0: 1.0, 1: 3.0}, shape=Size(4, 5))
    listed = Window(batch_size=sizes)
    sizes.append(3.0)   # a list changed later does not change the config
    assert listed.get_config()["batch_size"] == [1.0, 2.0]
    config = layer.get_config()
    assert config["table"] == {0: 1.0, 1: 3.0} and tuple(config["shape"]) == (4, 5)
    x = np.ones((2, 3), "float32")
    inputs = keras.Input((3,))
    model = keras.Model(inputs, layer(inputs))
    np.testing.assert_array_equal(keras.models.clone_model(model).predict(x, verbose=0), 3 * x)


def test_a_functional_subclass_with_its_own_arguments_revives_as_functional():
    class Tagged(Functional):
        def __init__(self, inputs, outputs, name=None, tag=3, **kwargs):
            super().__init__(inputs, outputs, name=name, **kwargs)
            self.tag = tag

    inputs = keras.Input((4,))
    model = Tagged(inputs, keras.layers.Dense(2)(inputs))
    again = Tagged.from_config(model.get_config())
    assert type(again) is Tagged and [type(layer).__name__ for layer in again.layers] == ["InputLayer", "Dense"]
    x = np.random.default_rng(0).normal(size=(3, 4)).astype("float32")
    again.set_weights(model.get_weights())
    kernel, bias = model.get_weights()
    np.testing.assert_allclose(again.predict(x, verbose=0), x @ kernel + bias, rtol=1e-5, atol=1e-6)


def test_positional_only_and_variadic_arguments_are_refused_as_keras_does():
    class Star(keras.layers.Layer):
        def __init__(self, *sizes, **kwargs):
            super().__init__(**kwargs)

    Star().get_config()   # no varargs given: nothing is lost
    with pytest.raises(NotImplementedError, match=r"Object Star was created by passing positional only "
                                                  r"or variadic positional arguments"):
        Star(1, 2).get_config()

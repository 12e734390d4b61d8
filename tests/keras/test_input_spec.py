"""keras.layers.InputSpec: a custom layer's spec is checked at every call (on arrays, on
symbolic tensors while a model is defined, inside traced code), with Keras 3's messages."""
from __future__ import annotations

import numpy as np
import pytest

from nncompile import keras
from nncompile.keras import layers, ops


class Summed(layers.Layer):
    def __init__(self, spec, **kwargs):
        super().__init__(**kwargs)
        self.input_spec = spec

    def call(self, x):
        return ops.sum(x, axis=-1)


@pytest.mark.parametrize("spec, shape, message", [
    (layers.InputSpec(ndim=3), (2, 4), "expected ndim=3, found ndim=2. Full shape received: (2, 4)"),
    (layers.InputSpec(min_ndim=3), (2, 4), "expected min_ndim=3, found ndim=2"),
    (layers.InputSpec(max_ndim=2), (1, 2, 4), "expected max_ndim=2, found ndim=3"),
    (layers.InputSpec(axes={-1: 5}), (2, 4), "expected axis -1 of input shape to have value 5"),
    (layers.InputSpec(shape=(None, 3)), (2, 4), "expected shape=(None, 3), found shape=(2, 4)"),
    (layers.InputSpec(dtype="float64"), (2, 4), "expected dtype=float64, found dtype=float32"),
])
def test_a_spec_refuses_what_it_does_not_allow(spec, shape, message):
    layer = Summed(spec, name="summed")
    with pytest.raises(ValueError, match=r"Input 0 with name 'None' of layer 'summed' is incompatible with the "
                                         r"layer: " + message.replace("(", r"\(").replace(")", r"\)")):
        layer(np.ones(shape, np.float32))


def test_a_spec_that_holds_lets_every_kind_of_call_through():
    spec = layers.InputSpec(ndim=3, axes={-1: 4}, shape=(None, None, 4))
    x = np.random.default_rng(0).random((2, 3, 4)).astype(np.float32)
    np.testing.assert_allclose(Summed(spec)(x), x.sum(-1), rtol=1e-6)
    model = keras.Sequential([keras.Input((3, 4)), Summed(spec)])      # symbolic: the batch is None
    np.testing.assert_allclose(model.predict(x, verbose=0), x.sum(-1), rtol=1e-6)
    with pytest.raises(ValueError, match="expected axis -1 of input shape to have value 4"):
        keras.Sequential([keras.Input((3, 5)), Summed(spec)])


def test_spec_arguments_and_config():
    spec = layers.InputSpec(shape=(None, 3), axes={"1": 3})
    assert spec.ndim == 2 and spec.axes == {1: 3}
    assert layers.InputSpec.from_config(spec.get_config()).shape == (None, 3)
    with pytest.raises(ValueError, match="Axis 2 is greater than the maximum allowed value: 1"):
        layers.InputSpec(ndim=2, axes={2: 1})
    with pytest.raises(ValueError, match=r"expects 2 input\(s\), but it received 1"):
        Summed([layers.InputSpec(ndim=2), layers.InputSpec(ndim=2)])(np.ones((1, 2), np.float32))

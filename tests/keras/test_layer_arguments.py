"""Layer arguments are checked by kind where the layer is made, so a call in Python and a config
read from a file are refused alike: a bool must be True or False, numbers must be finite and in
range, integers must be ints. The error is one ArgumentError (a ValueError) naming the layer, the
argument, what was received and what was expected."""
import numpy as np
import pytest

from nncompile.keras import layers as L
from nncompile.keras.layers.arguments import ArgumentError

CASES = [
    (lambda: L.Dense(3, use_bias="yes", name="d"), "Dense", "use_bias", "True or False", "'yes'"),
    (lambda: L.Dense(3, trainable="no", name="d"), "Dense", "trainable", "True or False", "'no'"),
    (lambda: L.Dense(3, input_shape=4, name="d"), "Dense", "input_shape", "tuple of dimensions", "4"),
    (lambda: L.Conv2D(2, 3, use_bias=None, name="d"), "Conv2D", "use_bias", "True or False", "None"),
    (lambda: L.BatchNormalization(center="no", name="d"), "BatchNormalization", "center",
     "True or False", "'no'"),
    (lambda: L.BatchNormalization(epsilon=-1e-3, name="d"), "BatchNormalization", "epsilon",
     "a float >= 0", "-0.001"),
    (lambda: L.BatchNormalization(momentum="0.9", name="d"), "BatchNormalization", "momentum",
     "between 0 and 1", "'0.9'"),
    (lambda: L.LayerNormalization(rms_scaling=1, name="d"), "LayerNormalization", "rms_scaling",
     "True or False", "1"),
    (lambda: L.LayerNormalization(epsilon=float("nan"), name="d"), "LayerNormalization",
     "epsilon", "a float >= 0", "nan"),
    (lambda: L.Embedding(10, 4, mask_zero="false", name="d"), "Embedding", "mask_zero",
     "True or False", "'false'"),
    (lambda: L.Dropout(0.5, seed="abc", name="d"), "Dropout", "seed", "an integer", "'abc'"),
    (lambda: L.Dropout(0.5, noise_shape=3, name="d"), "Dropout", "noise_shape",
     "tuple of dimensions", "3"),
    (lambda: L.ELU(alpha="1", name="d"), "ELU", "alpha", "a finite float", "'1'"),
    (lambda: L.ReLU(max_value=10**400, name="d"), "ReLU", "max_value", "a float >= 0", "1000"),
    (lambda: L.Softmax(axis="last", name="d"), "Softmax", "axis", "an integer", "'last'"),
    (lambda: L.Concatenate(axis=1.0, name="d"), "Concatenate", "axis", "an integer", "1.0"),
    (lambda: L.GlobalAveragePooling2D(keepdims="yes", name="d"), "GlobalAveragePooling2D",
     "keepdims", "True or False", "'yes'"),
]


@pytest.mark.parametrize("make, cls, arg, expected, received", CASES,
                         ids=[f"{c[1]}-{c[2]}" for c in CASES])
def test_an_argument_of_the_wrong_kind_is_refused_naming_layer_and_argument(make, cls, arg,
                                                                             expected, received):
    with pytest.raises(ArgumentError) as info:
        make()
    message = str(info.value)
    assert message.startswith(f"Layer 'd' ({cls}): the `{arg}` argument must be ")
    assert expected in message and f"Received: {arg}={received}" in message


def test_argument_errors_are_value_errors_with_keras_wording():
    assert issubclass(ArgumentError, ValueError)
    with pytest.raises(ValueError, match=r"Layer 'd' \(Dense\): the `units` argument must be a "
                                         r"positive integer\. Received: units='3' \(of type str\)"):
        L.Dense("3", name="d")


def test_a_layer_name_must_be_a_string():
    with pytest.raises(ArgumentError, match=r"Dense: the `name` argument must be a string\. "
                                            r"Received: name=\['d'\]"):
        L.Dense(3, name=["d"])


def test_numpy_scalars_and_zero_epsilon_are_valid():
    layer = L.BatchNormalization(epsilon=0.0, momentum=np.float32(0.5), center=np.bool_(False))
    assert (layer.epsilon, layer.momentum, layer.center) == (0.0, 0.5, False)

"""Merge layers and their functional forms against numpy."""
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nncompile.keras.layers.base import KerasTensor
from nncompile.keras.layers.core import Dense
from nncompile.keras.layers.merging import (Add, Average, Concatenate, Maximum, Minimum, Multiply,
                                            Subtract, add, average, concatenate, maximum, minimum,
                                            multiply, subtract)
from nncompile.keras.models import Input, Model

RNG = np.random.default_rng(0)


def rand(*shape):
    return RNG.normal(size=shape).astype(np.float32)


NUMPY = {
    Add: lambda xs: sum(xs),
    Multiply: lambda xs: np.prod(np.stack(np.broadcast_arrays(*xs)), axis=0),
    Average: lambda xs: sum(xs) / len(xs),
    Maximum: lambda xs: np.maximum.reduce(np.broadcast_arrays(*xs)),
    Minimum: lambda xs: np.minimum.reduce(np.broadcast_arrays(*xs)),
}


@pytest.mark.parametrize("cls", list(NUMPY))
@pytest.mark.parametrize("count", [1, 2, 3])
def test_elementwise_merges(cls, count):
    xs = [rand(4, 3, 5) for _ in range(count)]
    np.testing.assert_allclose(cls()(xs), NUMPY[cls](xs), rtol=1e-6)


def test_subtract_takes_exactly_two():
    a, b = rand(2, 3), rand(2, 3)
    np.testing.assert_array_equal(Subtract()([a, b]), a - b)
    with pytest.raises(ValueError, match="exactly 2 inputs"):
        Subtract()([KerasTensor((None, 3))] * 3)


@pytest.mark.parametrize("cls", list(NUMPY))
def test_broadcasting_over_size_one_dims(cls):
    xs = [rand(2, 1, 4), rand(2, 3, 4), rand(2, 3, 1)]
    np.testing.assert_allclose(cls()(xs), NUMPY[cls](xs), rtol=1e-6)


def test_lower_rank_inputs_gain_axes_after_the_batch():
    a, b = rand(2, 4), rand(2, 3, 4)
    np.testing.assert_allclose(Add()([a, b]), a[:, None, :] + b, rtol=1e-6)
    assert Add()([KerasTensor((None, 4)), KerasTensor((None, 3, 4))]).shape == (None, 3, 4)


def test_incompatible_shapes_name_layer_and_shapes():
    layer = Multiply(name="mul_branch")
    with pytest.raises(ValueError, match="Inputs have incompatible shapes") as info:
        layer([KerasTensor((None, 3)), KerasTensor((None, 4))])
    message = str(info.value)
    assert "mul_branch" in message and "(None, 3)" in message and "(None, 4)" in message


def test_broadcast_check_aligns_non_batch_dims_from_the_right():
    assert Add()([KerasTensor((None, 3, 1)), KerasTensor((None, 4)), KerasTensor((None, 1, 1))]).shape \
        == (None, 3, 4)
    with pytest.raises(ValueError, match=re.escape(
            "Inputs have incompatible shapes. Received shapes (None, 2, 3) and (None, 1, 1) and "
            "(None, 4)")):
        Maximum()([KerasTensor((None, 2, 3)), KerasTensor((None, 1, 1)), KerasTensor((None, 4))])


def test_merge_needs_a_list():
    with pytest.raises(ValueError, match="list of inputs"):
        Add()(KerasTensor((None, 3)))


@settings(max_examples=20, deadline=None)
@given(widths=st.lists(st.integers(1, 4), min_size=1, max_size=4), axis=st.sampled_from([1, 2, -1, -2]))
def test_concatenate(widths, axis):
    def shape(w):
        dims = [2, 3, 3]
        dims[axis] = w
        return dims

    xs = [rand(*shape(w)) for w in widths]
    layer = Concatenate(axis=axis)
    np.testing.assert_array_equal(layer(xs), np.concatenate(xs, axis=axis))
    assert Concatenate.from_config(layer.get_config()).axis == axis


def test_concatenate_mismatch():
    with pytest.raises(ValueError, match="matching shapes except for the concatenation axis") as info:
        Concatenate()([KerasTensor((None, 2, 3)), KerasTensor((None, 4, 5))])
    assert "(None, 2, 3)" in str(info.value) and "(None, 4, 5)" in str(info.value)
    with pytest.raises(ValueError, match="matching shapes"):
        Concatenate()([KerasTensor((None, 2, 3)), KerasTensor((None, 3))])


def test_concatenate_along_the_batch_axis_is_refused_clearly():
    with pytest.raises(ValueError, match="symbolic axis 0"):
        Concatenate(axis=0)([KerasTensor((None, 3)), KerasTensor((None, 3))])


def test_functional_forms():
    a, b, c = rand(2, 3), rand(2, 3), rand(2, 3)
    np.testing.assert_allclose(add([a, b, c]), a + b + c, rtol=1e-6)
    np.testing.assert_allclose(subtract([a, b]), a - b, rtol=1e-6)
    np.testing.assert_allclose(multiply([a, b]), a * b, rtol=1e-6)
    np.testing.assert_allclose(average([a, b]), (a + b) / 2, rtol=1e-6)
    np.testing.assert_array_equal(maximum([a, b]), np.maximum(a, b))
    np.testing.assert_array_equal(minimum([a, b]), np.minimum(a, b))
    np.testing.assert_array_equal(concatenate([a, b], axis=1), np.concatenate([a, b], axis=1))
    assert concatenate([KerasTensor((None, 3)), KerasTensor((None, 2))], name="cat").shape == (None, 5)


def test_config_round_trip():
    for layer in (Add(name="a"), Subtract(), Average(), Concatenate(axis=1, name="c")):
        assert type(layer).from_config(layer.get_config()).get_config() == layer.get_config()


def test_functional_model_with_merges_matches_numpy():
    a_in, b_in = Input(shape=(4,), name="a"), Input(shape=(4,), name="b")
    dense = Dense(4, name="shared")
    left, right = dense(a_in), dense(b_in)
    summed = add([left, right, a_in])
    joined = concatenate([summed, Subtract()([left, right]), Maximum()([a_in, b_in])], name="join")
    model = Model([a_in, b_in], Average()([joined, joined]))
    a, b = rand(3, 4), rand(3, 4)
    kernel, bias = (w.astype(np.float64) for w in dense.get_weights())
    la, lb = a @ kernel + bias, b @ kernel + bias
    expected = np.concatenate([la + lb + a, la - lb, np.maximum(a, b)], axis=-1)
    np.testing.assert_allclose(model.predict([a, b], verbose=0), expected, rtol=1e-5, atol=1e-6)
    again = Model.from_config(model.get_config())
    again.set_weights(model.get_weights())
    np.testing.assert_array_equal(again.predict([a, b], verbose=0), model.predict([a, b], verbose=0))

"""Padding, cropping, upsampling and RepeatVector against np.pad, slicing and np.repeat."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nncompile.keras.layers.base import KerasTensor
from nncompile.keras.layers.reshaping import (Cropping1D, Cropping2D, RepeatVector, UpSampling1D,
                                              UpSampling2D, ZeroPadding1D, ZeroPadding2D)
from nncompile.keras.models import Input, Sequential

RNG = np.random.default_rng(0)
small = st.integers(0, 3)


def rand(*shape):
    return RNG.normal(size=shape).astype(np.float32)


def round_trip(layer):
    config = layer.get_config()
    again = type(layer).from_config(config)
    assert again.get_config() == config
    return again


@pytest.mark.parametrize("padding, pairs", [
    (2, ((2, 2), (2, 2))), ((1, 3), ((1, 1), (3, 3))), (((0, 2), (1, 0)), ((0, 2), (1, 0))),
])
def test_zero_padding2d_forms(padding, pairs):
    x = rand(2, 3, 4, 2)
    layer = ZeroPadding2D(padding)
    expected = np.pad(x, ((0, 0), pairs[0], pairs[1], (0, 0)))
    np.testing.assert_array_equal(layer(x), expected)
    np.testing.assert_array_equal(round_trip(layer)(x), expected)


@settings(max_examples=20, deadline=None)
@given(top=small, bottom=small, left=small, right=small)
def test_zero_padding2d_any_pads(top, bottom, left, right):
    x = rand(1, 2, 3, 2)
    np.testing.assert_array_equal(ZeroPadding2D(((top, bottom), (left, right)))(x),
                                  np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0))))


def test_zero_padding1d():
    x = rand(2, 4, 3)
    np.testing.assert_array_equal(ZeroPadding1D()(x), np.pad(x, ((0, 0), (1, 1), (0, 0))))
    np.testing.assert_array_equal(ZeroPadding1D((0, 2))(x), np.pad(x, ((0, 0), (0, 2), (0, 0))))
    assert round_trip(ZeroPadding1D(3)).padding == (3, 3)


@pytest.mark.parametrize("bad", [-1, (1, 2, 3), "same", ((1, -2), (0, 0))])
def test_zero_padding2d_rejects_bad_padding(bad):
    with pytest.raises(ValueError, match="`padding` should be"):
        ZeroPadding2D(bad)


def test_zero_padding2d_takes_an_int_entry_as_a_symmetric_pair():
    """As Keras 3, which standardizes each entry on its own."""
    assert ZeroPadding2D(((1, 2), 3)).padding == ((1, 2), (3, 3))


def test_padding_layers_check_the_rank():
    with pytest.raises(ValueError, match="expected ndim=4, found ndim=3"):
        ZeroPadding2D()(KerasTensor((None, 3, 4)))
    with pytest.raises(ValueError, match="expected ndim=3, found ndim=4"):
        ZeroPadding1D()(KerasTensor((None, 3, 4, 2)))


@settings(max_examples=20, deadline=None)
@given(rows=st.integers(1, 3), cols=st.integers(1, 3), h=st.integers(1, 4), w=st.integers(1, 4))
def test_upsampling2d_repeats_rows_and_columns(rows, cols, h, w):
    x = rand(2, h, w, 3)
    expected = np.repeat(np.repeat(x, rows, axis=1), cols, axis=2)
    np.testing.assert_array_equal(UpSampling2D((rows, cols))(x), expected)


def test_upsampling2d_defaults_config_and_interpolation():
    x = rand(1, 2, 3, 1)
    layer = UpSampling2D()
    np.testing.assert_array_equal(layer(x), x.repeat(2, axis=1).repeat(2, axis=2))
    assert round_trip(layer).get_config()["interpolation"] == "nearest"
    with pytest.raises(ValueError, match="'nearest'") as info:
        UpSampling2D(interpolation="bilinear")
    assert "bilinear" in str(info.value)


def test_upsampling1d():
    x = rand(2, 3, 4)
    np.testing.assert_array_equal(UpSampling1D(3)(x), np.repeat(x, 3, axis=1))
    assert round_trip(UpSampling1D(4)).size == 4


@settings(max_examples=20, deadline=None)
@given(top=small, bottom=small, left=small, right=small)
def test_cropping2d(top, bottom, left, right):
    x = rand(2, 7, 8, 3)
    layer = Cropping2D(((top, bottom), (left, right)))
    np.testing.assert_array_equal(layer(x), x[:, top:7 - bottom, left:8 - right])


def test_cropping1d_and_errors():
    x = rand(2, 6, 3)
    np.testing.assert_array_equal(Cropping1D((2, 1))(x), x[:, 2:5])
    np.testing.assert_array_equal(round_trip(Cropping1D(1))(x), x[:, 1:5])
    with pytest.raises(ValueError, match="smaller than the corresponding spatial dimension"):
        Cropping2D(((2, 2), (0, 0)))(KerasTensor((None, 4, 5, 1)))


@pytest.mark.parametrize("make, shape", [
    (lambda **kw: ZeroPadding1D(2, **kw), (1, 3, 2)),
    (lambda **kw: ZeroPadding2D((1, 2), **kw), (1, 3, 3, 2)),
    (lambda **kw: Cropping2D(((1, 0), (0, 1)), **kw), (1, 3, 3, 2)),
    (lambda **kw: UpSampling2D((2, 1), **kw), (1, 3, 3, 2)),
])
def test_keras1_dim_ordering_is_data_format(make, shape):
    x = rand(*shape)
    with pytest.warns(DeprecationWarning, match="`dim_ordering` is the Keras 1 name of `data_format`"):
        old = make(dim_ordering="tf")
    assert old.data_format == "channels_last"
    np.testing.assert_array_equal(old(x), make()(x))
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="channels_first"):
        make(dim_ordering="th")


def test_repeat_vector():
    x = rand(3, 5)
    np.testing.assert_array_equal(RepeatVector(4)(x), np.repeat(x[:, None, :], 4, axis=1))
    assert RepeatVector(2)(KerasTensor((None, 7))).shape == (None, 2, 7)
    assert round_trip(RepeatVector(3)).n == 3
    with pytest.raises(ValueError, match="expected ndim=2"):
        RepeatVector(2)(KerasTensor((None, 3, 4)))


def test_sequential_of_reshaping_layers_matches_numpy_and_round_trips():
    model = Sequential([Input(shape=(3, 4, 2)), ZeroPadding2D(((1, 0), (0, 2))),
                        UpSampling2D((2, 1)), Cropping2D(((1, 2), (1, 1)))])
    x = rand(2, 3, 4, 2)
    y = np.pad(x, ((0, 0), (1, 0), (0, 2), (0, 0))).repeat(2, axis=1)[:, 1:-2, 1:-1]
    np.testing.assert_array_equal(model.predict(x, verbose=0), y)
    again = Sequential.from_config(model.get_config())
    assert again.get_config() == model.get_config()
    np.testing.assert_array_equal(again.predict(x, verbose=0), y)


def test_sequence_model_with_repeat_vector():
    model = Sequential([Input(shape=(3,)), RepeatVector(4), ZeroPadding1D(1), UpSampling1D(2),
                        Cropping1D((0, 3))])
    x = rand(2, 3)
    y = np.pad(np.repeat(x[:, None, :], 4, axis=1), ((0, 0), (1, 1), (0, 0))).repeat(2, axis=1)
    np.testing.assert_array_equal(model.predict(x, verbose=0), y[:, :-3])

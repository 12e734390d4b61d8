"""Pooling layers against numpy window loops written here (Keras 'same': padding never counts)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from nncompile.keras.layers import pooling
from nncompile.keras.layers.pooling import (AveragePooling1D, AveragePooling2D, GlobalAveragePooling1D,
                                            GlobalAveragePooling2D, GlobalMaxPooling1D,
                                            GlobalMaxPooling2D, MaxPooling1D, MaxPooling2D)
from nncompile.keras.models import Sequential


def window_starts(size: int, pool: int, stride: int, padding: str) -> list[tuple[int, int]]:
    """[start, stop) of each window in input coordinates, clipped to the real elements."""
    if padding == "same":
        out = math.ceil(size / stride)
        before = max((out - 1) * stride + pool - size, 0) // 2
    else:
        out, before = (size - pool) // stride + 1, 0
    return [(max(i * stride - before, 0), min(i * stride - before + pool, size)) for i in range(out)]


def numpy_pool2d(x, pool, strides, padding, reduce):
    rows = window_starts(x.shape[1], pool[0], strides[0], padding)
    cols = window_starts(x.shape[2], pool[1], strides[1], padding)
    out = np.zeros((x.shape[0], len(rows), len(cols), x.shape[3]))
    for i, (r0, r1) in enumerate(rows):
        for j, (c0, c1) in enumerate(cols):
            out[:, i, j] = reduce(x[:, r0:r1, c0:c1].reshape(x.shape[0], -1, x.shape[3]), axis=1)
    return out


def _data(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# A "valid" window must fit in the input; "same" always has at least one real element.
POOL2D_CASES = [(size, pool, strides, padding)
                for size in [(1, 1), (3, 3), (17, 4), (5, 17)]
                for pool, strides in [((2, 2), None), ((3, 3), (2, 2)), ((1, 3), (1, 1)),
                                      ((2, 3), (3, 2)), ((3, 2), (1, 2))]
                for padding in ["valid", "same"]
                if padding == "same" or all(p <= s for p, s in zip(pool, size))]
POOL1D_CASES = [(length, pool, stride, padding)
                for length in [1, 3, 17]
                for pool, stride, padding in [(2, None, "valid"), (3, 1, "same"), (2, 3, "same"),
                                              (1, 2, "valid"), (4, 2, "same")]
                if padding == "same" or pool <= length]


@pytest.mark.parametrize("size, pool, strides, padding", POOL2D_CASES)
@pytest.mark.parametrize("layer_cls, reduce", [(MaxPooling2D, np.max), (AveragePooling2D, np.mean)])
def test_pool2d_matches_numpy(size, pool, strides, padding, layer_cls, reduce):
    x = _data((2,) + size + (3,), seed=sum(size))
    expected = numpy_pool2d(x, pool, strides or pool, padding, reduce)
    np.testing.assert_allclose(layer_cls(pool, strides, padding)(x), expected, rtol=1e-6, atol=1e-6)


def test_average_pooling_same_divides_by_the_real_elements():
    x = np.ones((1, 3, 3, 1), np.float32)
    x[0, 2, 2, 0] = 4.0
    # 'same' 2x2 windows with stride 2 on 3x3: the last row and column windows are cut by padding.
    y = AveragePooling2D(padding="same")(x)[0, :, :, 0]
    np.testing.assert_allclose(y, [[1.0, 1.0], [1.0, 4.0]])
    assert MaxPooling2D(padding="same")(-x)[0, 1, 1, 0] == -4.0


@pytest.mark.parametrize("length, pool, stride, padding", POOL1D_CASES)
@pytest.mark.parametrize("layer_cls, reduce", [(MaxPooling1D, np.max), (AveragePooling1D, np.mean)])
def test_pool1d_matches_numpy(length, pool, stride, padding, layer_cls, reduce):
    x = _data((3, length, 2), seed=length)
    expected = numpy_pool2d(x[:, None], (1, pool), (1, stride or pool), padding, reduce)[:, 0]
    np.testing.assert_allclose(layer_cls(pool, stride, padding)(x), expected, rtol=1e-6, atol=1e-6)


def test_strides_default_to_pool_size():
    assert MaxPooling2D((3, 2)).strides == (3, 2)
    assert AveragePooling1D(4).strides == (4,)
    assert MaxPooling2D(2, strides=1).strides == (1, 1)
    assert MaxPooling2D()(np.zeros((1, 9, 8, 1), np.float32)).shape == (1, 4, 4, 1)


@pytest.mark.parametrize("layer_cls, reduce, axes", [
    (GlobalAveragePooling2D, np.mean, (1, 2)), (GlobalMaxPooling2D, np.max, (1, 2)),
    (GlobalAveragePooling1D, np.mean, (1,)), (GlobalMaxPooling1D, np.max, (1,))])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pooling(layer_cls, reduce, axes, keepdims):
    x = _data((3, 5, 4, 2)[:len(axes) + 2])
    y = layer_cls(keepdims=keepdims)(x)
    expected = reduce(x.astype(np.float64), axis=axes, keepdims=keepdims)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    assert layer_cls().get_config()["keepdims"] is False


def test_aliases_are_the_same_classes():
    assert pooling.MaxPool2D is MaxPooling2D and pooling.AvgPool2D is AveragePooling2D
    assert pooling.MaxPool1D is MaxPooling1D and pooling.AvgPool1D is AveragePooling1D
    assert pooling.GlobalAvgPool2D is GlobalAveragePooling2D
    assert pooling.GlobalMaxPool2D is GlobalMaxPooling2D
    assert pooling.GlobalAvgPool1D is GlobalAveragePooling1D
    assert pooling.GlobalMaxPool1D is GlobalMaxPooling1D
    assert pooling.MaxPool2D().name.startswith("max_pooling2d")


def test_keras1_pool1d_arguments_warn_and_match_new_names():
    x = _data((2, 7, 3))
    with pytest.warns(DeprecationWarning) as record:
        old = MaxPooling1D(pool_length=3, stride=2, border_mode="same")
    assert sorted(str(w.message).split("`")[3] for w in record) == ["padding", "pool_size", "strides"]
    assert record[0].filename == __file__
    np.testing.assert_array_equal(old(x), MaxPooling1D(3, 2, "same")(x))


def test_keras1_pool2d_arguments_warn_and_match_new_names():
    x = _data((2, 5, 5, 3))
    with pytest.warns(DeprecationWarning) as record:
        old = AveragePooling2D((2, 2), border_mode="same", dim_ordering="tf")
    assert sorted(str(w.message).split("`")[3] for w in record) == ["data_format", "padding"]
    np.testing.assert_array_equal(old(x), AveragePooling2D((2, 2), padding="same")(x))


@pytest.mark.parametrize("make, match", [
    (lambda: MaxPooling2D(data_format="channels_first"), "MaxPooling2D.*channels_last"),
    (lambda: GlobalAveragePooling2D(data_format="channels_first"), "channels_last"),
    (lambda: AveragePooling1D(padding="causal"), "padding"),
    (lambda: MaxPooling2D((2, 2, 2)), "pool_size"),
    (lambda: MaxPooling1D(2, strides=0), "strides"),
])
def test_bad_arguments_raise_value_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_wrong_rank_and_too_small_inputs_name_the_layer():
    with pytest.raises(ValueError, match="'pool'.*expected ndim=4"):
        MaxPooling2D(name="pool")(np.zeros((1, 4, 4), np.float32))
    with pytest.raises(ValueError, match="'gp'.*expected ndim=3"):
        GlobalMaxPooling1D(name="gp")(np.zeros((1, 4, 4, 1), np.float32))
    with pytest.raises(ValueError, match="'small'"):
        MaxPooling2D((3, 3), name="small")(np.zeros((1, 2, 5, 1), np.float32))


@pytest.mark.parametrize("make, shape", [
    (lambda: MaxPooling2D((3, 2), strides=(1, 2), padding="same", name="mp"), (2, 5, 6, 3)),
    (lambda: AveragePooling1D(3, strides=2), (2, 9, 3)),
    (lambda: GlobalMaxPooling2D(keepdims=True), (2, 3, 3, 2)),
])
def test_config_round_trip(make, shape):
    layer = make()
    config = layer.get_config()
    assert config["data_format"] == "channels_last"
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    x = _data(shape)
    np.testing.assert_array_equal(clone(x), layer(x))


def test_pooling_config_has_keras_keys():
    config = MaxPooling2D(name="p").get_config()
    assert {k: config[k] for k in ("name", "pool_size", "strides", "padding")} == {
        "name": "p", "pool_size": (2, 2), "strides": (2, 2), "padding": "valid"}


def test_pooling_layers_in_a_sequential_model():
    model = Sequential([MaxPooling2D((3, 3), strides=(2, 1), padding="same", input_shape=(7, 6, 2)),
                        AveragePooling2D((2, 2), padding="same"), GlobalMaxPooling2D()])
    x = _data((3, 7, 6, 2))
    hidden = numpy_pool2d(x, (3, 3), (2, 1), "same", np.max)
    expected = numpy_pool2d(hidden, (2, 2), (2, 2), "same", np.mean).max(axis=(1, 2))
    assert model.output_shape == (None, 2)
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-6, atol=1e-6)

"""Conv2D, Conv1D and the Keras 1 Convolution classes against a numpy convolution written here."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from nncompile.keras import constraints
from nncompile.keras.layers.base import KerasTensor
from nncompile.keras.layers.conv import Conv1D, Conv2D, Convolution1D, Convolution2D
from nncompile.keras.models import Sequential


def tf_same_pads(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow's 'same': ceil(size / stride) outputs, the odd pad element goes after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def numpy_conv2d(x, kernel, bias, strides=(1, 1), padding="valid", dilation=(1, 1), groups=1):
    """Explicit loops over output positions, kernel taps and groups (NHWC, HWIO kernel)."""
    n, h, w, cin = x.shape
    kh, kw, cg, cout = kernel.shape
    if padding == "same":
        (top, bottom), (left, right) = (tf_same_pads(h, kh, strides[0], dilation[0]),
                                        tf_same_pads(w, kw, strides[1], dilation[1]))
    else:
        top = bottom = left = right = 0
    xp = np.zeros((n, h + top + bottom, w + left + right, cin), np.float64)
    xp[:, top:top + h, left:left + w] = x
    oh = (xp.shape[1] - (kh - 1) * dilation[0] - 1) // strides[0] + 1
    ow = (xp.shape[2] - (kw - 1) * dilation[1] - 1) // strides[1] + 1
    og = cout // groups
    out = np.zeros((n, oh, ow, cout))
    for i in range(oh):
        for j in range(ow):
            for p in range(kh):
                for q in range(kw):
                    pixel = xp[:, i * strides[0] + p * dilation[0], j * strides[1] + q * dilation[1]]
                    for g in range(groups):
                        out[:, i, j, g * og:(g + 1) * og] += (
                            pixel[:, g * cg:(g + 1) * cg] @ kernel[p, q, :, g * og:(g + 1) * og])
    return out + (0 if bias is None else bias)


def numpy_conv1d(x, kernel, bias, stride=1, padding="valid", dilation=1, groups=1):
    if padding == "causal":
        x = np.concatenate([np.zeros((x.shape[0], (kernel.shape[0] - 1) * dilation, x.shape[2])), x], 1)
        padding = "valid"
    out = numpy_conv2d(x[:, None], kernel[None], bias, (1, stride), padding, (1, dilation), groups)
    return out[:, 0]


def random_weights(layer, rng):
    layer.set_weights([rng.standard_normal(w.shape).astype(np.float32) for w in layer.get_weights()])


@settings(max_examples=40, deadline=None)
@given(size=st.sampled_from([(1, 1), (3, 3), (17, 5), (4, 17)]),
       kernel=st.sampled_from([(1, 1), (3, 3), (2, 3), (3, 1)]),
       steps=st.sampled_from([("strides", (1, 1)), ("strides", (2, 2)), ("strides", (3, 2)),
                              ("dilation_rate", (2, 2)), ("dilation_rate", (1, 3))]),
       padding=st.sampled_from(["valid", "same"]),
       channels=st.sampled_from([(1, 1, 1), (3, 2, 1), (4, 6, 2), (6, 3, 3)]),
       seed=st.integers(0, 2**16))
def test_conv2d_matches_numpy(size, kernel, steps, padding, channels, seed):
    cin, filters, groups = channels
    step_arg, step = steps
    extent = [(k - 1) * (step[a] if step_arg == "dilation_rate" else 1) + 1 for a, k in enumerate(kernel)]
    assume(padding == "same" or all(e <= s for e, s in zip(extent, size)))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2,) + size + (cin,)).astype(np.float32)
    layer = Conv2D(filters, kernel, padding=padding, groups=groups, **{step_arg: step})
    layer.build((None,) + size + (cin,))
    random_weights(layer, rng)
    kernel_w, bias = layer.get_weights()
    assert kernel_w.shape == kernel + (cin // groups, filters)
    strides = step if step_arg == "strides" else (1, 1)
    dilation = step if step_arg == "dilation_rate" else (1, 1)
    expected = numpy_conv2d(x, kernel_w, bias, strides, padding, dilation, groups)
    np.testing.assert_allclose(layer(x), expected, rtol=1e-4, atol=1e-4)


def test_conv2d_same_keeps_ceil_of_size_over_stride():
    x = np.zeros((1, 17, 3, 2), np.float32)
    assert Conv2D(4, 3, strides=2, padding="same")(x).shape == (1, 9, 2, 4)
    assert Conv2D(4, (3, 1), padding="same")(x).shape == (1, 17, 3, 4)
    assert Conv2D(4, 3)(KerasTensor((None, 17, 3, 2))).shape == (None, 15, 1, 4)


def test_conv2d_activation_and_no_bias():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 5, 2)).astype(np.float32)
    layer = Conv2D(3, 2, activation="relu", use_bias=False)
    layer.build((None, 5, 5, 2))
    (kernel,) = layer.get_weights()
    np.testing.assert_allclose(layer(x), np.maximum(numpy_conv2d(x, kernel, None), 0), rtol=1e-4,
                               atol=1e-5)
    assert [v.name for v in layer.weights] == ["kernel"]


def test_conv2d_weights_are_named_and_trainable():
    layer = Conv2D(8, (3, 2), groups=2)
    layer.build((None, 6, 6, 4))
    assert [(v.name, v.shape, v.trainable) for v in layer.weights] == [
        ("kernel", (3, 2, 2, 8), True), ("bias", (8,), True)]
    assert layer.count_params() == 3 * 2 * 2 * 8 + 8
    np.testing.assert_array_equal(layer.get_weights()[1], np.zeros(8))


CONV1D_CASES = [(length, kernel, stride, dilation, padding)
                for length in [1, 3, 17]
                for kernel, stride, dilation, padding in [
                    (1, 1, 1, "valid"), (3, 1, 1, "same"), (3, 2, 1, "same"), (2, 3, 1, "valid"),
                    (3, 1, 2, "causal"), (2, 1, 3, "same"), (4, 1, 1, "causal")]
                if padding != "valid" or (kernel - 1) * dilation + 1 <= length]


@pytest.mark.parametrize("length, kernel, stride, dilation, padding", CONV1D_CASES)
def test_conv1d_matches_numpy(length, kernel, stride, dilation, padding):
    rng = np.random.default_rng(length * 100 + kernel)
    x = rng.standard_normal((2, length, 4)).astype(np.float32)
    layer = Conv1D(6, kernel, strides=stride, padding=padding, dilation_rate=dilation, groups=2)
    layer.build((None, length, 4))
    random_weights(layer, rng)
    kernel_w, bias = layer.get_weights()
    assert kernel_w.shape == (kernel, 2, 6)
    expected = numpy_conv1d(x, kernel_w, bias, stride, padding, dilation, groups=2)
    np.testing.assert_allclose(layer(x), expected, rtol=1e-4, atol=1e-4)


def test_conv1d_causal_output_ignores_the_future():
    x = np.random.default_rng(1).standard_normal((1, 8, 2)).astype(np.float32)
    layer = Conv1D(3, 3, padding="causal", dilation_rate=2)
    before = layer(x)
    x[:, 5:] = 100.0
    after = layer(x)
    np.testing.assert_array_equal(before[:, :5], after[:, :5])
    assert not np.allclose(before[:, 5:], after[:, 5:])


def test_channels_first_is_refused_by_name():
    with pytest.raises(ValueError, match="Conv2D.*channels_first.*channels_last"):
        Conv2D(2, 3, data_format="channels_first")
    with pytest.raises(ValueError, match="data_format"):
        Conv1D(2, 3, data_format="NHWC")


@pytest.mark.parametrize("make, match", [
    (lambda: Conv2D(2, 3, padding="causal"), "padding"),
    (lambda: Conv2D(2, (3, 3, 3)), "kernel_size"),
    (lambda: Conv2D(0, 3), "filters"),
    (lambda: Conv2D(2, 3, strides=0), "strides"),
    (lambda: Conv2D(3, 3, groups=2), "divisible by the number of groups"),
    (lambda: Conv2D(2, 3, strides=2, dilation_rate=2), "dilation_rate > 1"),
])
def test_bad_arguments_raise_value_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_build_errors_name_the_layer():
    with pytest.raises(ValueError, match="expected ndim=4, found ndim=3"):
        Conv2D(2, 3, name="c")(np.zeros((1, 5, 5), np.float32))
    with pytest.raises(ValueError, match="input channels"):
        Conv2D(4, 3, groups=2)(np.zeros((1, 5, 5, 3), np.float32))
    with pytest.raises(ValueError, match="'too_big'"):
        Conv2D(1, 5, name="too_big")(np.zeros((1, 3, 3, 1), np.float32))


def test_unknown_argument_lists_valid_ones():
    with pytest.raises(ValueError, match="Conv2D.*kernel_size"):
        Conv2D(2, 3, kernel=3)


def _same_output(old, new, x):
    new.build((None,) + x.shape[1:])
    old.build((None,) + x.shape[1:])
    random_weights(new, np.random.default_rng(3))
    old.set_weights(new.get_weights())
    np.testing.assert_array_equal(old(x), new(x))


def test_keras1_conv2d_arguments_warn_and_match_new_names():
    x = np.random.default_rng(0).standard_normal((2, 7, 6, 3)).astype(np.float32)
    with pytest.warns(DeprecationWarning) as record:
        old = Conv2D(nb_filter=4, nb_row=3, nb_col=2, border_mode="same", subsample=(2, 1),
                     init="he_normal", bias=False, dim_ordering="tf")
    messages = " ".join(str(w.message) for w in record)
    for new_name in ("filters", "kernel_size", "padding", "strides", "kernel_initializer",
                     "use_bias", "data_format"):
        assert f"`{new_name}`" in messages
    new = Conv2D(4, (3, 2), strides=(2, 1), padding="same", use_bias=False)
    assert (old.kernel_size, old.strides, old.padding, old.use_bias) == ((3, 2), (2, 1), "same", False)
    _same_output(old, new, x)


def test_keras1_dim_ordering_th_is_channels_first_and_refused():
    with pytest.warns(DeprecationWarning, match="data_format"), \
            pytest.raises(ValueError, match="channels_first"):
        Conv2D(2, 3, dim_ordering="th")


def test_keras1_regularizer_names_are_renamed():
    with pytest.warns(DeprecationWarning) as record:
        layer = Conv2D(2, 3, W_regularizer="l2", b_regularizer="l1")
    assert {str(w.message).split("`")[3] for w in record} == {"kernel_regularizer", "bias_regularizer"}
    assert layer.kernel_regularizer is not None and layer.bias_regularizer is not None
    assert Conv2D(2, 3).kernel_regularizer is None


def test_keras1_constraint_names_are_renamed():
    with pytest.warns(DeprecationWarning) as record:
        layer = Convolution2D(2, 3, 3, W_constraint="max_norm", b_constraint="non_neg")
    messages = " ".join(str(w.message) for w in record)
    assert "`kernel_constraint`" in messages and "`bias_constraint`" in messages
    assert isinstance(layer.kernel_constraint, constraints.MaxNorm)
    assert isinstance(layer.bias_constraint, constraints.NonNeg)


@pytest.mark.parametrize("make, shape", [
    (lambda **kw: Conv2D(3, 2, **kw), (1, 4, 4, 2)),
    (lambda **kw: Conv1D(3, 2, **kw), (1, 4, 2)),
])
def test_constraints_are_kept_on_the_weights(make, shape):
    filter_axes = list(range(len(shape) - 1))   # every kernel axis but the output channels
    kernel_constraint = constraints.MaxNorm(1.5, axis=filter_axes)
    layer = make(kernel_constraint=kernel_constraint, bias_constraint="non_neg")
    layer(np.zeros(shape, np.float32))
    assert layer.kernel.constraint is kernel_constraint
    assert isinstance(layer.bias.constraint, constraints.NonNeg)
    config = layer.get_config()
    assert config["kernel_constraint"]["config"] == {"max_value": 1.5, "axis": filter_axes}
    assert type(layer).from_config(config).get_config() == config
    assert make().get_config()["bias_constraint"] is None


def test_convolution2d_takes_keras1_positional_arguments():
    x = np.random.default_rng(0).standard_normal((2, 5, 5, 3)).astype(np.float32)
    with pytest.warns(DeprecationWarning) as record:
        old = Convolution2D(4, 3, 2, border_mode="same", activation="relu")
    assert "use Conv2D" in str(record[0].message) and "`padding`" in str(record[1].message)
    assert isinstance(old, Conv2D) and old.name.startswith("conv2d")
    with pytest.warns(DeprecationWarning):
        assert Convolution2D(1, 1, 1, name="k1").name == "k1"
    assert (old.filters, old.kernel_size, old.padding) == (4, (3, 2), "same")
    _same_output(old, Conv2D(4, (3, 2), padding="same", activation="relu"), x)


def test_convolution1d_takes_keras1_positional_arguments():
    x = np.random.default_rng(0).standard_normal((2, 9, 3)).astype(np.float32)
    with pytest.warns(DeprecationWarning) as record:
        old = Convolution1D(5, 3, subsample_length=2, border_mode="same", input_dim=3, input_length=9)
    assert any("`strides`" in str(w.message) for w in record)
    assert any("`input_shape`" in str(w.message) for w in record)
    assert old.batch_input_shape == (None, 9, 3)
    assert (old.filters, old.kernel_size, old.strides) == (5, (3,), (2,))
    _same_output(old, Conv1D(5, 3, strides=2, padding="same"), x)


def test_conv1d_filter_length_is_kernel_size():
    with pytest.warns(DeprecationWarning) as record:
        layer = Conv1D(nb_filter=2, filter_length=4)
    assert sorted(str(w.message).split("`")[3] for w in record) == ["filters", "kernel_size"]
    assert (layer.filters, layer.kernel_size) == (2, (4,))
    assert record[0].filename == __file__


def test_new_names_raise_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Conv2D(2, 3, padding="same", input_shape=(5, 5, 3))
        Conv1D(2, 3, padding="causal")


@pytest.mark.parametrize("make, shape", [
    (lambda: Conv2D(6, (3, 2), strides=(2, 1), padding="same", groups=3, activation="relu",
                    use_bias=False, name="c2", input_shape=(7, 7, 3)), (2, 7, 7, 3)),
    (lambda: Conv1D(4, 3, padding="causal", dilation_rate=2, kernel_initializer="zeros"), (2, 8, 2)),
])
def test_config_round_trip(make, shape):
    layer = make()
    config = layer.get_config()
    for key in ("filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate",
                "groups", "activation", "use_bias", "kernel_initializer", "bias_initializer",
                "kernel_regularizer", "bias_regularizer", "kernel_constraint", "bias_constraint",
                "name", "trainable", "dtype"):
        assert key in config
    assert config["data_format"] == "channels_last"
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    _same_output(clone, layer, x)


def test_convolution2d_config_rebuilds_as_conv2d():
    with pytest.warns(DeprecationWarning):
        old = Convolution2D(3, 2, 2)
    clone = Convolution2D.from_config(old.get_config())
    assert type(clone) is Conv2D and clone.get_config() == old.get_config()


def test_conv_layers_in_a_sequential_model():
    model = Sequential([Conv2D(4, 3, strides=2, padding="same", groups=2, activation="relu",
                               input_shape=(9, 7, 2)),
                        Conv2D(3, 2, dilation_rate=2)])
    for layer in model.layers:
        random_weights(layer, np.random.default_rng(7))
    (k1, b1), (k2, b2) = (layer.get_weights() for layer in model.layers)
    x = np.random.default_rng(8).standard_normal((3, 9, 7, 2)).astype(np.float32)
    hidden = np.maximum(numpy_conv2d(x, k1, b1, (2, 2), "same", groups=2), 0)
    expected = numpy_conv2d(hidden, k2, b2, dilation=(2, 2))
    assert model.output_shape == (None, 3, 2, 3)
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-4, atol=1e-4)


def test_conv1d_in_a_sequential_model():
    model = Sequential([Conv1D(5, 3, padding="causal", input_shape=(10, 2)), Conv1D(2, 4, strides=2)])
    for layer in model.layers:
        random_weights(layer, np.random.default_rng(9))
    (k1, b1), (k2, b2) = (layer.get_weights() for layer in model.layers)
    x = np.random.default_rng(10).standard_normal((2, 10, 2)).astype(np.float32)
    expected = numpy_conv1d(numpy_conv1d(x, k1, b1, padding="causal"), k2, b2, stride=2)
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-4, atol=1e-4)


def test_same_padding_on_an_unknown_spatial_size_keeps_it_unknown():
    from nncompile import keras

    assert Conv2D(4, 3, padding="same")(keras.Input((None, None, 3))).shape == (None, None, None, 4)

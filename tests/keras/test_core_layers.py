"""Core layers against numpy written here from each layer's weights."""
import re
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nncompile.keras import constraints, initializers, regularizers, utils
from nncompile.keras.layers.base import KerasTensor
from nncompile.keras.layers.core import (ELU, Activation, Dense, Dropout, Embedding, Flatten,
                                         LeakyReLU, Permute, ReLU, Reshape, Softmax)
from nncompile.keras.models import Input, Model, Sequential

RNG = np.random.default_rng(0)


def rand(*shape):
    return RNG.normal(size=shape).astype(np.float32)


def np_softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def config_round_trip(layer):
    config = layer.get_config()
    again = type(layer).from_config(config)
    assert again.get_config() == config
    return again


# --- Dense ----------------------------------------------------------------------------------------

@settings(max_examples=20, deadline=None)
@given(batch=st.integers(1, 4), lead=st.lists(st.integers(1, 3), max_size=2),
       features=st.integers(1, 6), units=st.integers(1, 5),
       activation=st.sampled_from([None, "relu", "tanh", "softmax"]))
def test_dense_matches_numpy_on_any_rank(batch, lead, features, units, activation):
    layer = Dense(units, activation=activation, bias_initializer="random_normal")
    x = rand(batch, *lead, features)
    out = layer(x)
    kernel, bias = layer.get_weights()
    assert kernel.shape == (features, units) and bias.shape == (units,)
    z = x.astype(np.float64) @ kernel + bias
    expected = {None: z, "relu": np.maximum(z, 0), "tanh": np.tanh(z),
                "softmax": np_softmax(z)}[activation]
    assert out.shape == (batch, *lead, units)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_dense_without_bias_and_with_initializers():
    layer = Dense(3, use_bias=False, kernel_initializer="ones")
    out = layer(np.array([[1.0, 2.0]], np.float32))
    assert len(layer.weights) == 1
    np.testing.assert_array_equal(out, [[3.0, 3.0, 3.0]])


def test_dense_casts_integer_inputs():
    layer = Dense(2, kernel_initializer="ones", bias_initializer=initializers.Constant(0.5))
    np.testing.assert_array_equal(layer(np.array([[1, 2, 3]])), [[6.5, 6.5]])


def test_dense_keeps_regularizers_on_its_weights():
    layer = Dense(2, kernel_regularizer="l2", bias_regularizer=regularizers.L1(0.5))
    layer(rand(1, 3))
    kernel, bias = layer.weights
    assert isinstance(kernel.regularizer, regularizers.L2)
    assert bias.regularizer.l1 == 0.5


def test_dense_keeps_constraints_on_its_weights_and_in_its_config():
    layer = Dense(2, kernel_constraint="max_norm", bias_constraint=constraints.NonNeg())
    layer(rand(1, 3))
    kernel, bias = layer.weights
    assert isinstance(kernel.constraint, constraints.MaxNorm) and kernel.constraint is layer.kernel_constraint
    assert isinstance(bias.constraint, constraints.NonNeg)
    config = config_round_trip(layer).get_config()
    assert config["kernel_constraint"] == {"module": "keras.constraints", "class_name": "MaxNorm",
                                           "config": {"max_value": 2, "axis": 0},
                                           "registered_name": None}
    assert config["bias_constraint"]["class_name"] == "NonNeg"
    plain = Dense(2)
    plain(rand(1, 3))
    assert plain.get_config()["kernel_constraint"] is None and plain.kernel.constraint is None


def test_dense_symbolic_shapes_and_errors():
    assert Dense(4)(KerasTensor((None, 2, 3))).shape == (None, 2, 4)
    with pytest.raises(ValueError, match="min_ndim=2"):
        Dense(4).compute_output_shape((None,))
    with pytest.raises(ValueError, match="last dimension of the inputs to a Dense layer"):
        Dense(4).compute_output_shape((None, None))
    with pytest.raises(ValueError, match="positive integer"):
        Dense(0)
    layer = Dense(2)
    layer(rand(1, 3))
    with pytest.raises(ValueError, match=f"Layer '{layer.name}'"):
        layer(rand(1, 4))


def test_unknown_argument_lists_valid_ones():
    with pytest.raises(ValueError, match="Unrecognized keyword arguments passed to Dense") as info:
        Dense(3, kernel_init="zeros")
    assert "kernel_initializer" in str(info.value) and "units" in str(info.value)


def test_dense_legacy_arguments():
    with pytest.warns(DeprecationWarning) as record:
        old = Dense(output_dim=3, init="he_normal", W_regularizer="l2", b_regularizer="l1",
                    W_constraint="unit_norm", b_constraint="non_neg", bias=False,
                    activation="relu", name="old")
    messages = " ".join(str(w.message) for w in record)
    for new in ("units", "kernel_initializer", "kernel_regularizer", "bias_regularizer",
                "kernel_constraint", "bias_constraint", "use_bias"):
        assert f"`{new}`" in messages
    new = Dense(units=3, kernel_initializer="he_normal", kernel_regularizer="l2",
                bias_regularizer="l1", kernel_constraint="unit_norm", bias_constraint="non_neg",
                use_bias=False, activation="relu", name="old")
    assert old.get_config() == new.get_config()


def test_dense_config():
    layer = Dense(5, activation="gelu", kernel_initializer=initializers.HeUniform(seed=3),
                  kernel_regularizer=regularizers.L2(0.1), input_shape=(7,))
    config = layer.get_config()
    assert {"units", "activation", "use_bias", "kernel_initializer", "bias_initializer",
            "kernel_regularizer", "bias_regularizer", "batch_input_shape"} <= set(config)
    assert config["activation"] == "gelu" and config["kernel_initializer"]["class_name"] == "HeUniform"
    again = config_round_trip(layer)
    x = rand(2, 7)
    np.testing.assert_array_equal(layer(x).shape, again(x).shape)


# --- Activation, Dropout ------------------------------------------------------------------------

@pytest.mark.parametrize("name, fn", [
    ("relu", lambda x: np.maximum(x, 0)), ("sigmoid", lambda x: 1 / (1 + np.exp(-x))),
    ("softplus", lambda x: np.logaddexp(0, x)), (None, lambda x: x),
])
def test_activation_layer(name, fn):
    x = rand(3, 4)
    layer = Activation(name)
    np.testing.assert_allclose(layer(x), fn(x.astype(np.float64)), rtol=1e-5, atol=1e-6)
    assert config_round_trip(layer).get_config()["activation"] == (name or "linear")


def test_dropout_is_the_identity_at_inference():
    x = rand(4, 5)
    np.testing.assert_array_equal(Dropout(0.5)(x), x)
    np.testing.assert_array_equal(Dropout(0.5)(x, training=False), x)


def test_dropout_in_training_zeroes_a_fraction_rate_and_scales_the_rest():
    x = rand(50, 200) + 1
    y = Dropout(0.25)(x, training=True)
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / 0.75, rtol=1e-6)
    assert abs(1 - kept.mean() - 0.25) < 0.02


def test_dropout_noise_shape_shares_the_mask_along_broadcast_axes():
    y = Dropout(0.5, noise_shape=(None, 1))(np.ones((64, 7), "float32"), training=True)
    assert all(len(set(row.tolist())) == 1 for row in y)
    assert 0 < (y[:, 0] == 0).mean() < 1


def test_dropout_arguments():
    layer = Dropout(0.25, noise_shape=(None, 1), seed=3)
    assert config_round_trip(layer).get_config()["noise_shape"] == (None, 1)
    with pytest.raises(ValueError, match="between 0 and 1"):
        Dropout(1.5)


def test_dropout_keras1_p_is_rate():
    with pytest.warns(DeprecationWarning, match="`p` is the Keras 1 name of `rate`"):
        layer = Dropout(p=0.3)
    assert layer.rate == 0.3


# --- Flatten, Reshape, Permute -------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(2, 3), (2, 3, 4), (1, 2, 3, 4)])
def test_flatten(shape):
    x = rand(*shape)
    np.testing.assert_array_equal(Flatten()(x), x.reshape(shape[0], -1))


def test_flatten_rejects_channels_first():
    with pytest.raises(ValueError, match="channels_first"):
        Flatten(data_format="channels_first")


@pytest.mark.parametrize("target", [(4, 6), (-1, 2), (2, -1, 3), (24,)])
def test_reshape(target):
    x = rand(3, 2, 3, 4)
    layer = Reshape(target)
    np.testing.assert_array_equal(layer(x), x.reshape((3,) + target))
    assert config_round_trip(layer).target_shape == target


def test_reshape_errors():
    with pytest.raises(ValueError, match="at most one -1"):
        Reshape((-1, -1))
    layer = Reshape((5, 5))
    with pytest.raises(ValueError, match=f"Layer '{layer.name}'.*24 elements"):
        layer(KerasTensor((None, 2, 3, 4)))


@settings(max_examples=15, deadline=None)
@given(st.permutations([1, 2, 3]))
def test_permute(dims):
    x = rand(2, 3, 4, 5)
    np.testing.assert_array_equal(Permute(dims)(x), np.transpose(x, [0] + list(dims)))


def test_permute_errors_and_config():
    with pytest.raises(ValueError, match="consecutive and start from 1"):
        Permute((0, 1))
    for dims in (1, "21", (1, 2.0)):
        with pytest.raises(ValueError, match=re.escape(
                "Invalid permutation argument `dims` for Permute Layer. The set of indices in "
                f"`dims` must be consecutive and start from 1. Received dims={dims!r}")):
            Permute(dims)
    with pytest.raises(ValueError, match="expected ndim=3"):
        Permute((2, 1))(KerasTensor((None, 2, 3, 4)))
    assert config_round_trip(Permute((2, 1))).dims == (2, 1)


# --- Embedding ------------------------------------------------------------------------------------

def test_embedding_lookup_with_int_and_float_indices():
    layer = Embedding(10, 4)
    ints = np.array([[0, 3, 9], [2, 2, 5]])
    out = layer(ints)
    (table,) = layer.get_weights()
    assert table.shape == (10, 4)
    np.testing.assert_array_equal(out, table[ints])
    np.testing.assert_array_equal(layer(ints.astype(np.float32)), table[ints])
    np.testing.assert_array_equal(layer(np.array([7], np.int32)), table[[7]])


def test_embedding_default_initializer_is_uniform_005():
    layer = Embedding(500, 40)
    layer(np.array([[1]]))
    (table,) = layer.get_weights()
    assert table.min() >= -0.05 and table.max() <= 0.05 and table.std() > 0.025


def test_embedding_symbolic_shape_and_config():
    layer = Embedding(100, 8, mask_zero=True, embeddings_regularizer="l2")
    assert layer(KerasTensor((None, 12))).shape == (None, 12, 8)
    config = config_round_trip(layer).get_config()
    assert config["mask_zero"] is True
    assert config["embeddings_initializer"]["class_name"] == "RandomUniform"


def test_embedding_refuses_negative_and_too_large_indices_naming_the_layer():
    layer = Embedding(10, 4, name="words")
    for bad in (-1, 10):
        with pytest.raises(ValueError, match=re.escape(
                f"op 'gather' of 'words': index {bad} is out of range for axis 0 of size 10 "
                f"(expected 0 <= index < 10)")):
            layer(np.array([[1, bad]]))
    model = Sequential([Input(shape=(2,)), layer])
    with pytest.raises(ValueError, match="'words': index -3 "):
        model.predict(np.array([[0, -3]]), verbose=0)


def test_embedding_constraint():
    layer = Embedding(10, 4, embeddings_constraint="unit_norm")
    layer(np.array([[1]]))
    assert isinstance(layer.embeddings.constraint, constraints.UnitNorm)
    assert config_round_trip(layer).get_config()["embeddings_constraint"]["class_name"] == "UnitNorm"
    assert Embedding(10, 4).get_config()["embeddings_constraint"] is None


def test_embedding_legacy_arguments():
    with pytest.warns(DeprecationWarning) as record:
        old = Embedding(50, 3, input_length=7, init="zeros", W_constraint="non_neg", name="emb")
    messages = " ".join(str(w.message) for w in record)
    assert "`input_length`" in messages and "`embeddings_initializer`" in messages
    assert "`embeddings_constraint`" in messages
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = Embedding(50, 3, input_shape=(7,), embeddings_initializer="zeros",
                        embeddings_constraint="non_neg", name="emb")
    assert old.get_config() == new.get_config()
    assert old.batch_input_shape == (None, 7)


# --- activation layers ----------------------------------------------------------------------------

def test_relu_layer():
    x = np.linspace(-3, 8, 23, dtype=np.float32).reshape(1, -1)
    np.testing.assert_array_equal(ReLU()(x), np.maximum(x, 0))
    layer = ReLU(max_value=6.0, negative_slope=0.1, threshold=1.0)
    expected = np.where(x > 1.0, np.clip(x, 0, 6), 0.1 * (x - 1.0))
    np.testing.assert_allclose(layer(x), expected, rtol=1e-6)
    assert config_round_trip(layer).get_config()["max_value"] == 6.0
    with pytest.raises(ValueError, match="max_value"):
        ReLU(max_value=-1.0)


def test_leaky_relu_layer_and_its_keras2_alpha():
    x = rand(3, 4)
    np.testing.assert_allclose(LeakyReLU()(x), np.where(x > 0, x, 0.3 * x), rtol=1e-6)
    with pytest.warns(DeprecationWarning, match="negative_slope"):
        old = LeakyReLU(alpha=0.1)
    np.testing.assert_allclose(old(x), np.where(x > 0, x, 0.1 * x), rtol=1e-6)
    assert config_round_trip(old).negative_slope == 0.1
    with pytest.raises(ValueError, match="negative_slope"):
        LeakyReLU(-0.5)


def test_elu_and_softmax_layers():
    x = rand(3, 4)
    np.testing.assert_allclose(ELU(alpha=0.5)(x), np.where(x > 0, x, 0.5 * np.expm1(x)),
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(Softmax(axis=0)(x), np_softmax(x, axis=0), rtol=1e-5)
    assert config_round_trip(Softmax(axis=1)).axis == 1
    assert config_round_trip(ELU(2.0)).alpha == 2.0


# --- through models -------------------------------------------------------------------------------

def test_sequential_embedding_flatten_dense_matches_numpy():
    model = Sequential([Input(shape=(5,)), Embedding(20, 4), Flatten(), Dropout(0.5),
                        Dense(3, activation="softmax")])
    indices = RNG.integers(0, 20, (6, 5))
    out = model.predict(indices.astype(np.float32), verbose=0)
    table, kernel, bias = (w.astype(np.float64) for w in model.get_weights())
    expected = np_softmax(table[indices].reshape(6, -1) @ kernel + bias)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-7)


def test_functional_permute_reshape_and_activation_layers():
    x = Input(shape=(2, 3, 4))
    y = ReLU(max_value=1.0)(LeakyReLU()(Reshape((4, 6))(Permute((3, 1, 2))(x))))
    model = Model(x, y)
    data = rand(5, 2, 3, 4)
    z = np.transpose(data, (0, 3, 1, 2)).reshape(5, 4, 6)
    z = np.where(z > 0, z, 0.3 * z)
    np.testing.assert_allclose(model.predict(data, verbose=0), np.where(z > 0, np.clip(z, 0, 1), 0),
                               rtol=1e-6)


def test_legacy_dense_builds_the_same_model_as_keras3_names():
    utils.set_random_seed(5)
    with pytest.warns(DeprecationWarning) as record:
        old = Sequential([Dense(output_dim=8, input_dim=4, init="he_uniform", activation="tanh"),
                          Dense(output_dim=2, bias=False, W_regularizer="l2")])
    assert any("`units`" in str(w.message) for w in record)
    utils.set_random_seed(5)
    new = Sequential([Input(shape=(4,)),
                      Dense(units=8, kernel_initializer="he_uniform", activation="tanh"),
                      Dense(units=2, use_bias=False, kernel_regularizer="l2")])
    for a, b in zip(old.get_weights(), new.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    x = rand(3, 4)
    np.testing.assert_array_equal(old.predict(x, verbose=0), new.predict(x, verbose=0))

    def configs(model):
        return [{k: v for k, v in layer.get_config().items() if k not in ("name", "batch_input_shape")}
                for layer in model.layers]

    assert len(old.layers) == 2 and configs(old) == configs(new)


def test_sequential_config_round_trip_of_core_layers():
    model = Sequential([Input(shape=(3, 4)), Permute((2, 1)), Flatten(), Dense(6, activation="elu"),
                        Dropout(0.2), Reshape((2, 3)), Softmax(axis=1), Activation("gelu"), ELU()])
    again = Sequential.from_config(model.get_config())
    assert again.get_config() == model.get_config()
    again.set_weights(model.get_weights())
    x = rand(2, 3, 4)
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))

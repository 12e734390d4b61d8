"""Activations against numpy formulas written here, on arrays and inside traced graphs."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nncompile.ir import BATCH, Builder, f32, parse, verify
from nncompile.keras import activations
from nncompile.keras.layers import Dense
from nncompile.runtime import reference
from tests.keras.test_ops_nn_more import sparsemax_reference

SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805
erf = np.vectorize(math.erf)


def softplus(x):
    return np.logaddexp(0.0, x)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def relu6(x):
    return np.clip(x, 0.0, 6.0)


REFERENCES = {
    "linear": lambda x: x,
    "relu": lambda x: np.maximum(x, 0.0),
    "leaky_relu": lambda x: np.where(x > 0, x, 0.2 * x),
    "relu6": relu6,
    "sigmoid": sigmoid,
    "tanh": np.tanh,
    "softmax": softmax,
    "log_softmax": lambda x: x - x.max(-1, keepdims=True)
    - np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True)),
    "exponential": np.exp,
    "elu": lambda x: np.where(x > 0, x, np.exp(np.minimum(x, 0)) - 1.0),
    "selu": lambda x: SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * (np.exp(np.minimum(x, 0)) - 1)),
    "celu": lambda x: np.maximum(x, 0) + np.minimum(0, np.exp(np.minimum(x, 0)) - 1),
    "softplus": softplus,
    "log_sigmoid": lambda x: -softplus(-x),
    "softsign": lambda x: x / (np.abs(x) + 1),
    "squareplus": lambda x: (x + np.sqrt(x * x + 4)) / 2,
    "silu": lambda x: x * sigmoid(x),
    "swish": lambda x: x * sigmoid(x),
    "gelu": lambda x: 0.5 * x * (1 + erf(x / np.sqrt(2))),
    "glu": lambda x: x[..., :x.shape[-1] // 2] * sigmoid(x[..., x.shape[-1] // 2:]),
    "mish": lambda x: x * np.tanh(softplus(x)),
    "hard_sigmoid": lambda x: relu6(x + 3) / 6,
    "hard_silu": lambda x: x * relu6(x + 3) / 6,
    "hard_swish": lambda x: x * relu6(x + 3) / 6,
    "hard_tanh": lambda x: np.clip(x, -1, 1),
    "tanh_shrink": lambda x: x - np.tanh(x),
    "soft_shrink": lambda x: np.where(x > 0.5, x - 0.5, np.where(x < -0.5, x + 0.5, 0.0)),
    "hard_shrink": lambda x: np.where(np.abs(x) > 0.5, x, 0.0),
    "sparse_plus": lambda x: np.where(x <= -1, 0.0, np.where(x >= 1, x, (x + 1) ** 2 / 4)),
    "sparse_sigmoid": lambda x: np.where(x <= -1, 0.0, np.where(x >= 1, 1.0, (x + 1) / 2)),
    "sparsemax": sparsemax_reference,
}
# registered, but with arguments that have no defaults (as in Keras): tested in test_ops_nn_more.py
NEEDS_ARGUMENTS = {"threshold"}


def reference_of(name, x):
    with np.errstate(over="ignore"):
        return REFERENCES[name](x.astype(np.float64))


def test_every_registered_name_has_a_reference_here():
    assert set(activations.names()) == set(REFERENCES) | NEEDS_ARGUMENTS


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_matches_numpy_on_random_inputs(name):
    x = np.random.default_rng(0).uniform(-6, 6, (5, 8)).astype(np.float32)
    out = activations.get(name)(x)
    assert out.dtype == np.float32 and out.shape == REFERENCES[name](x).shape
    np.testing.assert_allclose(out, reference_of(name, x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(set(REFERENCES) - {"exponential"}))
def test_large_magnitudes_stay_finite(name):
    x = np.array([[-1e4, -500.0, -90.0, -20.0, 20.0, 90.0, 500.0, 1e4]], np.float32)
    out = activations.get(name)(x)
    assert np.isfinite(out).all(), out
    np.testing.assert_allclose(out, reference_of(name, x), rtol=1e-5, atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=5),
                  elements=st.floats(-30, 30, width=32)),
       st.sampled_from(["softplus", "gelu", "selu", "mish", "softmax", "hard_silu", "elu"]))
def test_any_shape(x, name):
    np.testing.assert_allclose(activations.get(name)(x), reference_of(name, x), rtol=1e-5, atol=1e-6)


def test_options_follow_keras_formulas():
    x = np.linspace(-4, 8, 25).astype(np.float32)
    np.testing.assert_allclose(activations.leaky_relu(x, negative_slope=0.5),
                               np.where(x > 0, x, 0.5 * x))
    np.testing.assert_allclose(activations.elu(x, alpha=2.0),
                               np.where(x > 0, x, 2.0 * (np.exp(np.minimum(x, 0)) - 1)), rtol=1e-6)
    celu = np.maximum(x, 0) + 2.0 * np.minimum(0, np.exp(x / 2.0) - 1)
    np.testing.assert_allclose(activations.celu(x, alpha=2.0), celu, rtol=1e-5, atol=1e-6)
    tanh_form = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    np.testing.assert_allclose(activations.gelu(x, approximate=True), tanh_form, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(activations.squareplus(x, b=1.0), (x + np.sqrt(x * x + 1)) / 2,
                               rtol=1e-6)
    np.testing.assert_allclose(activations.soft_shrink(x, threshold=2.0),
                               np.where(x > 2, x - 2, np.where(x < -2, x + 2, 0)))
    np.testing.assert_allclose(activations.hard_shrink(x, threshold=2.0), np.where(np.abs(x) > 2, x, 0))


@pytest.mark.parametrize("kwargs", [
    {"negative_slope": 0.1}, {"max_value": 6.0}, {"threshold": 1.5},
    {"negative_slope": 0.1, "max_value": 3.0, "threshold": 1.0}, {"max_value": 2.0, "threshold": -1.0},
])
def test_relu_options(kwargs):
    x = np.linspace(-5, 9, 57).astype(np.float32)
    slope, t = kwargs.get("negative_slope", 0.0), kwargs.get("threshold", 0.0)
    top = kwargs.get("max_value")
    above = x if top is None else np.clip(x, 0, top)
    expected = np.where(x > t, above, slope * (x - t))
    np.testing.assert_allclose(activations.relu(x, **kwargs), expected, rtol=1e-6)


def test_softmax_and_log_softmax_axis():
    x = np.random.default_rng(1).normal(size=(3, 4, 5)).astype(np.float32) * 10
    np.testing.assert_allclose(activations.softmax(x, axis=1), softmax(x, axis=1), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(activations.log_softmax(x, axis=0), np.log(softmax(x, axis=0)),
                               rtol=1e-5, atol=1e-5)


def test_glu_needs_an_even_axis():
    with pytest.raises(ValueError, match="divisible by 2"):
        activations.glu(np.zeros((2, 3), np.float32))


def test_integer_and_float64_arrays():
    assert activations.relu(np.array([-1, 2])).tolist() == [0.0, 2.0]
    assert activations.relu(np.array([-1, 2])).dtype == np.float32
    assert activations.tanh(np.array([0.5])).dtype == np.float64


def test_emitter_adds_ops_to_a_graph():
    b = Builder()
    x = b.input("x", f32[2])
    y = activations.get("softplus")(b, x)
    graph = b.finish([y])
    assert {"exp", "log1p", "relu"} <= {n.op for n in graph.nodes}
    out = reference.run(graph, [np.array([-800.0, 800.0], np.float32)])[0]
    np.testing.assert_allclose(out, [0.0, 800.0])


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_emitted_graph_verifies_and_round_trips_as_text(name):
    b = Builder()
    x = b.input("x", f32[BATCH, 6])
    graph = b.finish([activations.get(name)(b, x)])
    verify(graph)
    assert parse(str(graph)) == graph


def test_get_none_aliases_and_callables():
    assert activations.get(None) is activations.linear
    assert activations.get("swish") is activations.silu
    assert activations.get("hard_swish") is activations.hard_silu
    assert activations.get({"class_name": "function", "config": "tanh"}) is activations.tanh

    def double(b, x):
        return b.add(x, x)

    assert activations.get(double) is double


def test_custom_activation_runs_in_a_layer():
    layer = Dense(2, activation=lambda b, x: b.mul(x, b.scalar(2.0, like=x)), use_bias=False,
                  kernel_initializer="ones")
    np.testing.assert_array_equal(layer(np.array([[1.0, 2.0]], np.float32)), [[6.0, 6.0]])


@pytest.mark.parametrize("fn", [np.tanh, np.exp])
def test_numpy_ufuncs_are_refused_at_layer_construction(fn):
    with pytest.raises(ValueError) as info:
        Dense(2, activation=fn)
    message = str(info.value)
    assert message.startswith(f"Activation 'numpy.{fn.__name__}' is not usable: it is a numpy ufunc, which "
                              f"computes on arrays. Write it with keras.ops")
    assert ("pass the name 'tanh'" in message) == (fn is np.tanh)


def test_activations_written_as_keras_s_run_in_layers_and_train():
    """A function of one tensor with keras.ops, as Keras's activations are: traced into the layer."""
    from nncompile import keras
    from nncompile.keras import ops

    def swishy(x, beta=1.0):
        return x * ops.sigmoid(beta * x)

    x = np.array([[0.5, -1.0, 2.0], [1.0, 0.0, -3.0]], np.float32)
    layer = Dense(4, activation=swishy)
    out = layer(x)
    kernel, bias = layer.get_weights()
    z = x.astype(np.float64) @ kernel + bias
    np.testing.assert_allclose(out, z / (1 + np.exp(-z)), rtol=1e-5, atol=1e-6)
    doubled = Dense(1, activation=lambda t: t * 2.0, kernel_initializer="ones")
    np.testing.assert_allclose(doubled(x), 2 * x.sum(axis=1, keepdims=True), rtol=1e-6)
    model = keras.Sequential([keras.Input((3,)), Dense(4, activation=swishy), Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    losses = model.fit(x, np.ones((2, 1), np.float32), epochs=5, verbose=0).history["loss"]
    assert losses[-1] < losses[0]
    assert layer.get_config()["activation"] == {"module": "builtins", "class_name": "function",
                                                "config": "swishy", "registered_name": "function"}
    with keras.saving.custom_object_scope({"swishy": swishy}):
        again = Dense.from_config(layer.get_config())
    again.build((None, 3))
    again.set_weights([kernel, bias])
    np.testing.assert_allclose(again(x), out, rtol=1e-6)


def test_an_activation_that_computes_on_arrays_is_named_when_traced():
    import math
    with pytest.raises(Exception, match="sqrt"):
        Dense(2, activation=math.sqrt)(np.ones((1, 2), np.float32))


def test_unknown_name_lists_the_choices():
    with pytest.raises(ValueError, match="Could not interpret activation") as info:
        activations.get("relu7")
    assert "relu6" in str(info.value) and "gelu" in str(info.value) and "swish" in str(info.value)


@pytest.mark.parametrize("name", activations.names())
def test_serialize_round_trip(name):
    fn = activations.get(name)
    assert isinstance(activations.serialize(fn), str)
    assert activations.get(activations.serialize(fn)) is fn
    assert activations.deserialize(activations.serialize(fn)) is fn

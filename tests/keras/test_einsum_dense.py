"""EinsumDense against np.einsum written here, and against files, shapes and configs made by real
Keras 3 (tests/fixtures/keras/einsum); its kernel's initial scale and its errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nncompile import keras
from nncompile.keras import layers
from nncompile.keras.layers.einsum_dense import einsum_shapes

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "keras" / "einsum"
DATA = np.load(FIXTURES / "einsum.npz")


@pytest.mark.parametrize("file", ["einsum.keras", "einsum.h5"])
def test_keras_files_predict_and_train_as_keras(file):
    model = keras.models.load_model(FIXTURES / file)
    np.testing.assert_allclose(model.predict(DATA["x"], verbose=0), DATA["y"], rtol=1e-5, atol=1e-6)
    model.train_on_batch(DATA["x"], DATA["t"])           # SGD(0.05), mse: gradients through all four
    for i, w in enumerate(model.get_weights()):
        np.testing.assert_allclose(w, DATA[f"next_{i}"], rtol=1e-5, atol=1e-6)
    keras_configs = json.loads(str(DATA["configs"]))
    ours = [layer for layer in model.layers if isinstance(layer, layers.EinsumDense)]
    for layer, theirs in zip(ours, keras_configs):
        assert [list(w.shape) for w in layer.weights] == theirs["shapes"]
        config = layer.get_config()
        for key in ("equation", "bias_axes", "activation"):
            assert config[key] == theirs["config"][key], key
        assert list(config["output_shape"]) == list(theirs["config"]["output_shape"])


def test_weight_shapes_are_keras_and_output_shapes_what_einsum_makes():
    """Keras's kernel and bias shapes for each form; the output shape is np.einsum's (Keras's
    compute_output_shape lists two axes carried on the left in reverse order)."""
    rng = np.random.default_rng(0)
    for case in json.loads(str(DATA["shapes"])):
        kernel, bias, out, _, _ = einsum_shapes(case["equation"], case["bias_axes"], case["input_shape"],
                                                case["output_shape"])
        assert [kernel] + ([bias] if bias else []) == case["weights"], case["equation"]
        x = rng.standard_normal([3, *case["input_shape"][1:]])
        assert list(np.einsum(case["equation"], x, rng.standard_normal(kernel)).shape[1:]) == out[1:]


@pytest.mark.parametrize("equation,output_shape,bias_axes,input_shape", [
    ("ab,bc->ac", 7, "c", (4, 3)),
    ("abc,cde->abde", (5, 2, 3), "e", (4, 5, 8)),
    ("abc,cde->abde", (5, 2, 3), "d", (4, 5, 8)),
    ("...b,bc->...c", 4, None, (2, 3, 6, 5)),
    ("ab...,bc->ac...", (3,), "c", (2, 5, 4, 2)),
    ("abcd,cde->abe", (2, 7), "e", (3, 2, 3, 4)),
])
def test_output_is_numpy_einsum_plus_bias_then_activation(equation, output_shape, bias_axes, input_shape):
    rng = np.random.default_rng(1)
    layer = layers.EinsumDense(equation, output_shape, bias_axes=bias_axes, activation="tanh")
    x = rng.standard_normal(input_shape).astype(np.float32)
    layer.build(input_shape)
    weights = [rng.standard_normal(w.shape).astype(np.float32) for w in layer.weights]
    layer.set_weights(weights)
    want = np.einsum(equation, x.astype(np.float64), weights[0].astype(np.float64))
    if bias_axes:
        want = want + weights[1]
    np.testing.assert_allclose(layer(x), np.tanh(want), rtol=1e-5, atol=1e-5)


def test_kernel_fans_are_its_input_and_output_axes():
    """GlorotUniform's limit sqrt(6 / (fan_in + fan_out)) with fan_in the product of the kernel's
    input axes (64 x 8) and fan_out its output axis (16), as Keras 3 makes it (a convolution's
    fans of a rank-3 kernel, 512 and 1024, would make the limit 0.0625 instead of 0.107)."""
    layer = layers.EinsumDense("abc,cbd->ad", (16,), kernel_initializer=keras.initializers.GlorotUniform(seed=1))
    layer.build((None, 8, 64))
    kernel = layer.get_weights()[0]
    assert kernel.shape == (64, 8, 16)
    limit = np.sqrt(6 / (64 * 8 + 16))
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.95 * limit


def test_bad_equations_and_arguments_are_refused_as_keras():
    with pytest.raises(ValueError, match="Invalid einsum equation 'ab->b'"):
        layers.EinsumDense("ab->b", 3).build((None, 4))
    with pytest.raises(ValueError, match="do not match at shared dimension 'b'"):
        layers.EinsumDense("abc,cd->abd", (6, 2)).build((None, 5, 3))
    with pytest.raises(ValueError, match="Bias dimension 'z' was requested"):
        layers.EinsumDense("ab,bc->ac", 2, bias_axes="z").build((None, 3))
    with pytest.raises(ValueError, match="Weight dimension 'q' did not have a match"):
        layers.EinsumDense("ab,bq->a", ()).build((None, 3))
    with pytest.raises(NotImplementedError, match="`lora_rank` is not supported"):
        layers.EinsumDense("ab,bc->ac", 2, lora_rank=4)


def test_docstring_example_holds():
    import doctest

    from nncompile.keras.layers import einsum_dense
    result = doctest.testmod(einsum_dense, extraglobs={"np": np})
    assert result.failed == 0 and result.attempted == 1


def test_a_mask_stops_at_einsum_dense_as_in_keras():
    """Keras's EinsumDense does not pass a mask on: the LSTM after it runs every step."""
    x = np.array([[[1.0, 2.0], [0.0, 0.0], [3.0, 4.0]]], np.float32)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3, 2))
    projected = layers.EinsumDense("abc,cd->abd", (3, 2), kernel_initializer="ones")(layers.Masking()(inputs))
    model = keras.Model(inputs, layers.LSTM(2, return_sequences=True)(projected))
    unmasked = keras.Model(inputs, model.layers[-1](model.layers[-2](inputs)))
    np.testing.assert_allclose(model.predict(x, verbose=0), unmasked.predict(x, verbose=0), rtol=1e-6)

"""PReLU: against max(0, x) + alpha * min(0, x) in numpy for several shared_axes, its gradients
w.r.t. alpha and x against finite differences, compiled vs the reference interpreter, training,
files, configs and errors, and against real Keras 3's files
(tests/fixtures/keras/spatial/make_prelu.py)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from finite_differences import gradients
from layer_checks import check_compiled_matches_reference, check_fit_and_files, check_sgd_step
from nncompile import keras
from nncompile.ir import Builder, TensorType, f64
from nncompile.keras import layers
from nncompile.passes.autodiff import gradients as autodiff_gradients
from nncompile.runtime.reference import run

SPATIAL = Path(__file__).resolve().parent.parent / "fixtures" / "keras" / "spatial"


def prelu(x: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    return np.maximum(0.0, x) + alpha * np.minimum(0.0, x)


def _normal(shape, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


def _away_from_zero(shape, seed: int) -> np.ndarray:
    """Normal values at least 0.1 from 0, the kink, so that finite differences are exact."""
    x = _normal(shape, seed)
    return np.where(np.abs(x) < 0.1, np.sign(x + 1e-12) * 0.1 + x, x)


# (input shape without the batch, shared_axes, alpha's shape)
CASES = [((5,), None, (5,)),
         ((3, 4), None, (3, 4)),
         ((3, 4), [1], (1, 4)),
         ((3, 4), 2, (3, 1)),            # one axis given bare, as Keras takes it
         ((3, 4, 2), [1, 2], (1, 1, 2)),  # per channel of images: Keras's documented use
         ((3, 4, 2), (1, 3), (1, 4, 1)),
         ((2, 3, 2, 2), [1, 2, 3], (1, 1, 1, 2))]


@pytest.mark.parametrize("shape, shared_axes, alpha_shape", CASES)
def test_prelu_matches_numpy(shape, shared_axes, alpha_shape):
    layer = layers.PReLU(shared_axes=shared_axes)
    x = _normal((4, *shape), 0).astype("float32")
    np.testing.assert_array_equal(layer(x), np.maximum(x, 0))   # alpha starts at zeros
    assert layer.alpha.shape == alpha_shape and layer.alpha.trainable
    alpha = _normal(alpha_shape, 1).astype("float32")
    layer.set_weights([alpha])
    np.testing.assert_allclose(layer(x), prelu(x, alpha), rtol=1e-6, atol=1e-7)
    # inside a model, on a symbolic batch
    inputs = keras.Input(shape)
    model = keras.Model(inputs, layer(inputs))
    assert model.output_shape == (None, *shape)
    np.testing.assert_allclose(model.predict(x, verbose=0), prelu(x, alpha), rtol=1e-6, atol=1e-7)


def test_prelu_casts_integer_inputs_and_passes_the_mask_on():
    layer = layers.PReLU(alpha_initializer=keras.initializers.Constant(0.25))
    out = layer(np.array([[-4, 0, 2]], "int32"))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[-1.0, 0.0, 2.0]])
    tokens = keras.Input((5,), dtype="int32")
    hidden = layers.PReLU(shared_axes=[1])(layers.Embedding(7, 3, mask_zero=True)(tokens))
    assert hidden._keras_mask is not None


@pytest.mark.parametrize("shape, shared_axes, alpha_shape", CASES[1:6])
def test_gradients_wrt_alpha_and_x_match_finite_differences(shape, shared_axes, alpha_shape):
    """d sum(r * prelu(x)) / d x and / d alpha by autodiff of the layer's graph (in float64),
    against central differences of the numpy formula."""
    layer = layers.PReLU(shared_axes=shared_axes, dtype="float64")
    x = _away_from_zero((3, *shape), 2)
    layer.build(x.shape)
    alpha = _normal(alpha_shape, 3)
    layer.alpha.assign(alpha)
    r = _normal(x.shape, 4)

    b = Builder()
    x_value = b.input("x", TensorType(f64, x.shape))
    r_value = b.input("r", TensorType(f64, x.shape))
    out = layer.emit(b, x_value)
    loss = b.reduce_sum(b.mul(r_value, out), axes=list(range(len(x.shape))))
    alpha_value = layer.param(b, layer.alpha)
    grads = autodiff_gradients(b.graph, loss, [x_value, alpha_value])
    got = run(b.finish([loss, *grads]), [x, r])

    arrays = [x.copy(), alpha.copy()]
    want = gradients(lambda: float(np.sum(r * prelu(*arrays))), arrays, 1e-6)
    np.testing.assert_allclose(got[0], np.sum(r * prelu(x, alpha)), rtol=1e-12)
    np.testing.assert_allclose(got[1], want[0], rtol=1e-6, atol=1e-8, err_msg="d/dx")
    np.testing.assert_allclose(got[2], want[1], rtol=1e-6, atol=1e-8, err_msg="d/dalpha")
    assert not np.allclose(want[1], 0)   # alpha matters: some inputs are negative


def test_gradient_at_zero_is_keras_s():
    """At x = 0 Keras's relu(x) - alpha * relu(-x) has derivative 0 w.r.t. x (jax's relu'(0)
    is 0) and w.r.t. alpha."""
    layer = layers.PReLU(alpha_initializer=keras.initializers.Constant(0.25), dtype="float64")
    layer.build((None, 3))
    b = Builder()
    x_value = b.input("x", TensorType(f64, (1, 3)))
    out = layer.emit(b, x_value)
    loss = b.reduce_sum(out, axes=[0, 1])
    grads = autodiff_gradients(b.graph, loss, [x_value, layer.param(b, layer.alpha)])
    _, dx, dalpha = run(b.finish([loss, *grads]), [np.array([[-1.0, 0.0, 1.0]])])
    np.testing.assert_array_equal(dx, [[0.25, 0.0, 1.0]])   # what jax.grad gives in Keras
    np.testing.assert_array_equal(dalpha, [-1.0, 0.0, 0.0])


def _forward(weights, x):
    """Dense (no bias) -> PReLU(shared_axes=[1]) -> Flatten -> Dense (no bias), in float64: the
    first kernel's gradient goes through PReLU's gradient w.r.t. its input."""
    kernel, alpha, head = weights
    hidden = prelu(x @ kernel, alpha)
    return hidden.reshape(len(x), -1) @ head


def test_one_sgd_step_follows_finite_differences(monkeypatch):
    monkeypatch.setenv("NNCOMPILE_BACKEND", "reference")
    model = keras.Sequential([
        keras.Input((3, 4)), layers.Dense(5, use_bias=False),
        layers.PReLU(alpha_initializer=keras.initializers.RandomUniform(-1.0, 1.0, seed=5),
                     shared_axes=[1]),
        layers.Flatten(), layers.Dense(2, use_bias=False)])
    assert model.layers[1].alpha.shape == (1, 5)
    x = _normal((6, 3, 4), 7).astype("float32")
    y = _normal((6, 2), 8).astype("float32")
    check_sgd_step(model, x, y, _forward)


def _model(shared_axes=(1, 2)):
    return keras.Sequential([
        keras.Input((4, 4, 2)), layers.Conv2D(3, 2),
        layers.PReLU(alpha_initializer=keras.initializers.RandomUniform(-0.5, 0.5, seed=1),
                     shared_axes=list(shared_axes)),
        layers.Flatten(), layers.Dense(4), layers.PReLU(), layers.Dense(1)])


def test_compiled_matches_reference(monkeypatch):
    check_compiled_matches_reference(_model(), _normal((8, 4, 4, 2), 9).astype("float32"),
                                     monkeypatch)


def test_fit_save_and_load(tmp_path):
    """fit lowers the loss and trains alpha; .keras and .h5 reload the trained model;
    .weights.h5 loads into a new model of the same layers."""
    model = _model()
    x = _normal((32, 4, 4, 2), 10).astype("float32")
    y = np.sin(x.sum(axis=(1, 2, 3)))[:, None].astype("float32")
    alphas = [w.numpy() for w in model.weights if w.name == "alpha"]
    check_fit_and_files(model, x, y, tmp_path)
    trained = [w.numpy() for w in model.weights if w.name == "alpha"]
    assert all(not np.allclose(a, b) for a, b in zip(alphas, trained))
    model.save_weights(tmp_path / "model.weights.h5")
    again = _model()
    again.load_weights(tmp_path / "model.weights.h5")
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))
    reloaded = keras.models.load_model(tmp_path / "model.keras")
    prelu_layer = reloaded.layers[1]
    assert isinstance(prelu_layer, layers.PReLU) and prelu_layer.shared_axes == [1, 2]


def test_real_keras_files_load_and_predict_the_same():
    """prelu.weights.h5 into the same layers built here, and prelu.keras as a whole, written by
    Keras 3.15.1: Keras's predictions."""
    data = np.load(SPATIAL / "prelu.npz")
    model = keras.Sequential([
        keras.Input((5, 5, 2)), layers.Conv2D(3, 3), layers.PReLU(shared_axes=[1, 2]),
        layers.Reshape((9, 3)), layers.PReLU(shared_axes=[1]), layers.Flatten(), layers.Dense(4),
        layers.PReLU()])
    model.load_weights(SPATIAL / "prelu.weights.h5")
    assert [w.shape for w in model.weights if w.name == "alpha"] == [(1, 1, 3), (1, 3), (4,)]
    np.testing.assert_allclose(model.predict(data["x"], verbose=0), data["y"], rtol=1e-5,
                               atol=1e-6)
    loaded = keras.models.load_model(SPATIAL / "prelu.keras")
    np.testing.assert_allclose(loaded.predict(data["x"], verbose=0), data["y"], rtol=1e-5,
                               atol=1e-6)
    for got, want in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(got, want)


def _regularized(first: bool):
    stack = [layers.Dense(3, kernel_initializer="identity", use_bias=False)] if not first else []
    model = keras.Sequential([keras.Input((3,)), *stack, layers.PReLU(
        alpha_initializer=keras.initializers.Constant(-0.5),
        alpha_regularizer=keras.regularizers.L2(0.1), alpha_constraint="non_neg")])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse")
    x = np.ones((2, 3), "float32")
    loss = model.train_on_batch(x, x)
    # the penalty 0.1 * sum(alpha ** 2) on the starting alpha, the data loss 0 (x > 0)
    np.testing.assert_allclose(loss, 0.1 * 3 * 0.25, rtol=1e-5)
    np.testing.assert_array_equal(model.layers[-1].alpha.numpy(), 0.0)   # clipped by non_neg


def test_regularizer_and_constraint_reach_the_training_step():
    _regularized(first=False)


def test_regularized_prelu_as_first_layer_on_the_reference_interpreter(monkeypatch):
    monkeypatch.setenv("NNCOMPILE_BACKEND", "reference")
    _regularized(first=True)


def test_regularized_prelu_as_first_layer_compiled():
    _regularized(first=True)


def test_config_round_trip_is_keras_s():
    layer = layers.PReLU(alpha_initializer="ones", alpha_regularizer="l2",
                         alpha_constraint="non_neg", shared_axes=2, name="act")
    config = layer.get_config()
    assert config["shared_axes"] == [2]
    assert config["alpha_initializer"]["class_name"] == "Ones"
    assert config["alpha_regularizer"]["class_name"] == "L2"
    assert config["alpha_constraint"]["class_name"] == "NonNeg"
    again = layers.PReLU.from_config(config)
    assert again.get_config() == config
    assert layers.PReLU().get_config()["alpha_initializer"]["class_name"] == "Zeros"
    assert layers.PReLU().get_config()["shared_axes"] is None
    # what Keras 3.15 writes for PReLU(shared_axes=[1]) (a DTypePolicy as dtype)
    keras_config = {
        "name": "p_re_lu", "trainable": True,
        "dtype": {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"},
                  "registered_name": None},
        "alpha_initializer": {"module": "keras.initializers", "class_name": "Zeros", "config": {},
                              "registered_name": None},
        "alpha_regularizer": None, "alpha_constraint": None, "shared_axes": [1]}
    model = keras.models.model_from_json(keras.Sequential(
        [keras.Input((2, 3)), layers.PReLU(shared_axes=[1])]).to_json())
    assert model.layers[0].get_config()["shared_axes"] == [1]
    loaded = keras.models.model_from_json(json.dumps({"class_name": "Sequential", "config": {
        "name": "s", "layers": [
            {"class_name": "InputLayer", "config": {"batch_shape": [None, 2, 3],
                                                    "dtype": "float32", "name": "in"}},
            {"module": "keras.layers", "class_name": "PReLU", "config": keras_config}]}}))
    assert loaded.layers[0].alpha.shape == (1, 3)


@pytest.mark.parametrize("shared_axes, message", [
    (-1, "axes >= 1"), (0, "axes >= 1"), ("1", "must be an integer"), (1.0, "must be an integer")])
def test_shared_axes_arguments_refused(shared_axes, message):
    with pytest.raises(ValueError, match=message):
        layers.PReLU(shared_axes=shared_axes)


def test_shape_errors_name_the_layer():
    with pytest.raises(ValueError, match="names axis 3, but the input has 3 axes"):
        layers.PReLU(shared_axes=[3])(keras.Input((2, 3)))
    with pytest.raises(ValueError, match="fully-defined"):
        layers.PReLU()(keras.Input((None, 3)))
    assert layers.PReLU(shared_axes=[1])(keras.Input((None, 3))).shape == (None, None, 3)
    layer = layers.PReLU(shared_axes=[1])
    layer(keras.Input((2, 3)))
    assert layer(keras.Input((7, 3))).shape == (None, 7, 3)   # the shared axis may differ
    with pytest.raises(ValueError, match="expected axis 2 of input shape to have value 3"):
        layer(keras.Input((2, 4)))
    with pytest.raises(ValueError, match="expected ndim=3, found ndim=2"):
        layer(keras.Input((3,)))

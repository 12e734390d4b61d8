"""Legacy .h5 files of older Keras, built by hand with h5py following the layout Keras 2.2 /
tf.keras 2 wrote (no such Keras runs here): `Model` class name, list-form inbound nodes,
`batch_input_shape`, weight names with `:0`, Keras 2 optimizer arguments (`lr`, `decay`)."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from nncompile.keras.saving import load_model

_INIT = {"class_name": "VarianceScaling", "config": {"scale": 1.0, "mode": "fan_avg",
                                                      "distribution": "uniform", "seed": None}}


def _dense(name: str, units: int, activation: str, inbound: str) -> dict:
    config = {"name": name, "trainable": True, "units": units, "activation": activation,
              "use_bias": True, "kernel_initializer": _INIT,
              "bias_initializer": {"class_name": "Zeros", "config": {}}, "kernel_regularizer": None,
              "bias_regularizer": None, "activity_regularizer": None, "kernel_constraint": None,
              "bias_constraint": None}
    return {"name": name, "class_name": "Dense", "config": config, "inbound_nodes": [[[inbound, 0, 0, {}]]]}


def _write_keras2_file(path, w1, b1, w2, b2) -> None:
    config = {"class_name": "Model", "config": {"name": "model_1", "layers": [
        {"name": "input_1", "class_name": "InputLayer", "inbound_nodes": [],
         "config": {"batch_input_shape": [None, 3], "dtype": "float32", "sparse": False, "name": "input_1"}},
        _dense("dense_1", 4, "relu", "input_1"), _dense("dense_2", 2, "linear", "dense_1")],
        "input_layers": [["input_1", 0, 0]], "output_layers": [["dense_2", 0, 0]]}}
    training = {"optimizer_config": {"class_name": "SGD", "config": {"lr": 0.01, "momentum": 0.0,
                                                                     "decay": 0.0, "nesterov": False}},
                "loss": "mean_squared_error", "metrics": ["mae"], "sample_weight_mode": None,
                "loss_weights": None}
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = b"2.2.4"
        f.attrs["backend"] = b"tensorflow"
        f.attrs["model_config"] = json.dumps(config).encode()
        f.attrs["training_config"] = json.dumps(training).encode()
        g = f.create_group("model_weights")
        g.attrs["layer_names"] = [b"input_1", b"dense_1", b"dense_2"]
        g.create_group("input_1").attrs["weight_names"] = np.asarray([])
        for name, (w, b) in {"dense_1": (w1, b1), "dense_2": (w2, b2)}.items():
            layer = g.create_group(name)
            layer.attrs["weight_names"] = [f"{name}/kernel:0".encode(), f"{name}/bias:0".encode()]
            layer[f"{name}/kernel:0"] = w
            layer[f"{name}/bias:0"] = b


def test_keras2_functional_file_loads_and_predicts(tmp_path):
    rng = np.random.default_rng(0)
    w1, b1, w2, b2 = (rng.standard_normal(s).astype("float32") for s in ((3, 4), (4,), (4, 2), (2,)))
    _write_keras2_file(tmp_path / "old.h5", w1, b1, w2, b2)
    with pytest.warns(Warning):   # Keras 2's `lr` is named as legacy
        model = load_model(tmp_path / "old.h5")
    x = rng.standard_normal((5, 3)).astype("float32")
    want = np.maximum(x @ w1 + b1, 0) @ w2 + b2
    np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=1e-5, atol=1e-6)
    assert type(model.optimizer).__name__ == "SGD"
    assert model.optimizer.learning_rate == pytest.approx(0.01)


def test_weight_count_mismatch_names_the_layer(tmp_path):
    rng = np.random.default_rng(1)
    _write_keras2_file(tmp_path / "old.h5", *(rng.standard_normal(s).astype("float32")
                                              for s in ((3, 4), (4,), (4, 2), (2,))))
    with h5py.File(tmp_path / "old.h5", "a") as f:
        f["model_weights/dense_2"].attrs["weight_names"] = [b"dense_2/kernel:0"]
    with pytest.raises(ValueError, match=r"old.h5.*layer 'dense_2'.*expects 2 weights.*has 1"):
        load_model(tmp_path / "old.h5", compile=False)

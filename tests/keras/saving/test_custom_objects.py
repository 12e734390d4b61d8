"""Custom objects as Keras 3 has them: `get_custom_objects`, `custom_object_scope`,
`register_keras_serializable`, and `serialize_keras_object` / `deserialize_keras_object`, the
last checked against configs real Keras wrote (tests/fixtures/keras/serialized)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from nncompile import keras
from nncompile.keras import layers, ops

SERIALIZED = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "keras", "serialized",
                          "serialized.json")


@pytest.fixture
def clean_custom_objects():
    """The global custom objects as they were, after the test."""
    saved = dict(keras.saving.get_custom_objects())
    yield keras.saving.get_custom_objects()
    keras.saving.get_custom_objects().clear()
    keras.saving.get_custom_objects().update(saved)


class Doubling(layers.Layer):
    def call(self, x):
        return x * 2.0


def _keras_configs() -> dict:
    with open(SERIALIZED) as f:
        return json.load(f)


def test_keras_configs_deserialize_into_the_objects_keras_serialized():
    configs = _keras_configs()
    back = {label: keras.saving.deserialize_keras_object(config) for label, config in configs.items()}
    dense = back["dense"]
    assert isinstance(dense, layers.Dense) and dense.units == 3 and dense.name == "d"
    assert dense.activation is keras.activations.relu and dense.kernel_regularizer.l2 == pytest.approx(0.01)
    assert isinstance(back["sequential"], keras.Sequential)
    assert back["sequential"](np.ones((2, 4), np.float32)).shape == (2, 2)
    assert isinstance(back["loss"], keras.losses.CategoricalCrossentropy)
    assert (back["loss"].from_logits, back["loss"].label_smoothing) == (True, pytest.approx(0.1))
    assert isinstance(back["metric"], keras.metrics.AUC) and back["metric"].num_thresholds == 50
    assert isinstance(back["optimizer"], keras.optimizers.Adam)
    assert back["optimizer"].get_config()["beta_1"] == pytest.approx(0.8)
    assert back["schedule"](10) == pytest.approx(0.09)
    assert back["initializer"].get_config()["seed"] == 3
    assert (back["regularizer"].l1, back["regularizer"].l2) == (pytest.approx(0.1), pytest.approx(0.2))
    assert back["constraint"].get_config()["max_value"] == 2.0
    assert back["loss_function"] is keras.losses.mean_absolute_error
    assert back["activation"] is keras.activations.tanh
    np.testing.assert_array_equal(back["array"], np.arange(6, dtype=np.float32).reshape(2, 3))
    assert back["array"].dtype == np.float32
    assert back["nested"] == {"a": [1, 2.5, "x"], "b": None}


@pytest.mark.parametrize("label", ["loss", "metric", "schedule", "initializer", "regularizer", "constraint",
                                   "loss_function", "activation", "array", "nested"])
def test_serializing_gives_what_keras_wrote(label):
    config = _keras_configs()[label]
    again = keras.saving.serialize_keras_object(keras.saving.deserialize_keras_object(config))
    assert json.loads(json.dumps(again)) == config


def test_a_scope_makes_its_names_known_and_an_inner_scope_replaces_the_outer():
    with keras.saving.custom_object_scope({"Doubling": Doubling}) as scope:
        assert isinstance(scope, keras.saving.CustomObjectScope)
        assert keras.saving.get_registered_object("Doubling") is Doubling
        with keras.utils.custom_object_scope({"other": abs}):
            assert keras.saving.get_registered_object("Doubling") is None     # as in Keras
            assert keras.saving.get_registered_object("other") is abs
        assert keras.saving.get_registered_object("Doubling") is Doubling
    assert keras.saving.get_registered_object("Doubling") is None
    assert "Doubling" not in keras.saving.get_custom_objects()


def test_load_model_finds_a_custom_layer_in_a_scope(tmp_path):
    model = keras.Sequential([keras.Input((3,)), Doubling(name="twice")])
    path = str(tmp_path / "m.keras")
    model.save(path)
    with pytest.raises(ValueError, match="Doubling"):
        keras.models.load_model(path)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    with keras.saving.custom_object_scope({"Doubling": Doubling}):
        again = keras.models.load_model(path)
    np.testing.assert_allclose(again.predict(x, verbose=0), 2 * x)


def halved_mse(y_true, y_pred):
    return ops.mean(ops.square(y_true - y_pred), axis=-1) / 2.0


class Scaled(keras.regularizers.Regularizer):
    def __init__(self, factor):
        self.factor = factor

    def __call__(self, x):
        return self.factor * ops.sum(ops.abs(x))

    def get_config(self):
        return {"factor": self.factor}


FUNCTION_CONFIG = {"module": "builtins", "class_name": "function", "config": "halved_mse",
                   "registered_name": "function"}


def test_configs_name_custom_objects_and_names_do_not_as_in_keras(clean_custom_objects):
    clean_custom_objects.update(halved_mse=halved_mse, Doubling=Doubling, relu=halved_mse)
    assert keras.losses.get(FUNCTION_CONFIG).fn is halved_mse
    with pytest.raises(ValueError, match="Could not interpret loss identifier: 'halved_mse'"):
        keras.losses.get("halved_mse")
    with pytest.raises(ValueError, match="Could not interpret regularizer identifier: 'halved_mse'"):
        keras.regularizers.get("halved_mse")
    assert keras.activations.get("relu") is keras.activations.relu     # a custom "relu" shadows nothing
    config = {"class_name": "Doubling", "config": {"name": "d"}, "module": None, "registered_name": "Doubling"}
    assert isinstance(keras.saving.deserialize_keras_object(config), Doubling)


def test_a_keras_file_with_a_custom_loss_and_regularizer_loads_every_way_keras_loads_it(clean_custom_objects):
    path = os.path.join(os.path.dirname(SERIALIZED), "custom.keras")
    x, y = np.arange(12, dtype=np.float32).reshape(4, 3) / 10, np.ones((4, 2), np.float32)
    want = _keras_configs()["custom_model_loss"]
    objects = {"halved_mse": halved_mse, "Scaled": Scaled}
    with pytest.raises(ValueError, match="Scaled"):
        keras.models.load_model(path)
    loaded = [keras.models.load_model(path, custom_objects=objects)]
    with keras.saving.custom_object_scope(objects):
        loaded.append(keras.models.load_model(path))
    clean_custom_objects.update(objects)
    loaded.append(keras.models.load_model(path))
    for model in loaded:
        assert model.layers[0].kernel_regularizer.factor == 0.5
        assert model.evaluate(x, y, verbose=0) == pytest.approx(want, rel=1e-5)


def test_custom_classes_are_written_under_their_module_and_registered_name(clean_custom_objects):
    assert keras.regularizers.serialize(Scaled(0.5)) == {
        "module": __name__, "class_name": "Scaled", "config": {"factor": 0.5}, "registered_name": "Scaled"}
    registered = keras.saving.register_keras_serializable(package="T")(
        type("Reg", (Scaled,), {"__module__": "__main__"}))
    config = keras.regularizers.serialize(registered(0.25))
    assert config == {"module": None, "class_name": "Reg", "config": {"factor": 0.25}, "registered_name": "T>Reg"}
    assert type(keras.regularizers.get(config)) is registered


def test_an_activation_in_a_config_may_be_a_custom_function():
    def clipped(b, x):
        return b.minimum(x, b.scalar(1.0, like=x))

    dense = {"activation": {"module": "builtins", "class_name": "function", "config": "clipped",
                            "registered_name": "function"}, "units": 1, "kernel_initializer": "ones"}
    with keras.saving.custom_object_scope({"clipped": clipped}):
        layer = layers.Dense.from_config(dense)
        with pytest.raises(ValueError, match="Could not interpret activation function identifier: 'clipped'"):
            layers.Dense(1, activation="clipped")
    assert layer.activation is clipped
    np.testing.assert_allclose(layer(np.array([[0.25, 0.25], [2.0, 3.0]], np.float32)), [[0.5], [1.0]])


def test_registering_again_replaces_and_a_class_needs_get_config(clean_custom_objects):
    first = keras.saving.register_keras_serializable(package="Again")(type("Twin", (layers.Layer,), {}))
    second = keras.saving.register_keras_serializable(package="Again")(type("Twin", (layers.Layer,), {}))
    assert keras.saving.get_registered_object("Again>Twin") is second is not first
    assert clean_custom_objects["Again>Twin"] is second
    with pytest.raises(ValueError, match="does not have a get_config"):
        keras.saving.register_keras_serializable()(type("Plain", (), {}))


def test_registered_functions_serialize_by_their_registered_name(clean_custom_objects):
    @keras.saving.register_keras_serializable(package="Tests")
    def scaled(x):
        return x * 3

    config = keras.saving.serialize_keras_object(scaled)
    assert config == {"module": "builtins", "class_name": "function", "config": "Tests>scaled",
                      "registered_name": "function"}
    assert keras.saving.deserialize_keras_object(config) is scaled


def test_unknown_objects_are_refused_with_keras_messages():
    with pytest.raises(TypeError, match="Could not locate function 'nowhere'"):
        keras.saving.deserialize_keras_object({"module": "builtins", "class_name": "function",
                                               "config": "nowhere", "registered_name": "function"})
    with pytest.raises(ValueError, match="Unknown layer class 'Nope'"):
        keras.saving.deserialize_keras_object({"module": "keras.layers", "class_name": "Nope", "config": {}})
    with pytest.raises(ValueError, match="custom_objects"):
        keras.saving.deserialize_keras_object({"module": "mine", "class_name": "Thing", "config": {}})
    with pytest.raises(TypeError, match="get_config"):
        keras.saving.serialize_keras_object(object())
    assert keras.saving.deserialize_keras_object("not a registered name") == "not a registered name"


def test_keras_utils_offers_the_custom_object_names_of_keras_saving():
    for name in ("CustomObjectScope", "custom_object_scope", "deserialize_keras_object", "get_custom_objects",
                 "get_registered_name", "get_registered_object", "register_keras_serializable",
                 "serialize_keras_object"):
        assert getattr(keras.utils, name) is getattr(keras.saving, name)
        assert name in keras.utils.__all__


def test_a_model_compiled_with_a_custom_loss_function_saves_it_as_keras_does(tmp_path, clean_custom_objects):
    model = keras.Sequential([keras.Input((3,)), layers.Dense(2)])
    model.compile(optimizer="sgd", loss=halved_mse, metrics=["mae"])
    path = str(tmp_path / "m.keras")
    model.save(path)
    import json
    import zipfile
    with zipfile.ZipFile(path) as z:
        config = json.loads(z.read("config.json"))["compile_config"]
    assert config["loss"] == FUNCTION_CONFIG and config["metrics"] == ["mae"]
    again = keras.models.load_model(path, custom_objects={"halved_mse": halved_mse})
    x, y = np.ones((4, 3), np.float32), np.zeros((4, 2), np.float32)
    assert again.evaluate(x, y, verbose=0)[0] == pytest.approx(model.evaluate(x, y, verbose=0)[0], rel=1e-6)

"""Keras model files: `.keras` zips and legacy `.h5`, weights files, and JSON configs.

>>> from nncompile import keras
>>> model.save("m.keras"); again = keras.models.load_model("m.keras")   # doctest: +SKIP
"""
from nncompile.keras.saving.api import (load_model, load_weights, model_from_json, model_to_json,
                                        save_model, save_weights)
from nncompile.keras.saving.files import SavingError
from nncompile.keras.saving.objects import deserialize_keras_object, serialize_keras_object
from nncompile.keras.saving.registry import (CustomObjectScope, custom_object_scope, get_custom_objects,
                                             get_registered_name, get_registered_object,
                                             register_keras_serializable)

__all__ = ["CustomObjectScope", "SavingError", "custom_object_scope", "deserialize_keras_object",
           "get_custom_objects", "get_registered_name", "get_registered_object", "load_model",
           "load_weights", "model_from_json", "model_to_json", "register_keras_serializable",
           "save_model", "save_weights", "serialize_keras_object"]

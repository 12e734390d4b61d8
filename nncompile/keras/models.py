"""`keras.models`: the model classes, `trace` (model -> IR graph), loading and saving.

`Model`, `Functional` and `trace` live in model.py, `Sequential` in sequential.py, `clone_model`
in cloning.py, as in Keras's own tree; loading and saving in saving/.
"""
from __future__ import annotations

from nncompile.keras.cloning import clone_model
from nncompile.keras.input_layer import Input, InputLayer
from nncompile.keras.model import Functional, Model, trace
from nncompile.keras.saving import load_model, model_from_json, save_model
from nncompile.keras.sequential import Sequential

__all__ = ["Functional", "Input", "InputLayer", "Model", "Sequential", "clone_model", "load_model",
           "model_from_json", "save_model", "trace"]

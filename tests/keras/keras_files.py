"""Checks shared by the tests of files made by real Keras: a model predicts what Keras predicted
and takes the training step Keras took; and the Python a fixture folder shares with the script
that made it (its cases, its model definitions)."""
from __future__ import annotations

import importlib.util
import os

import numpy as np

from nncompile import keras


def predicts_and_trains_as_keras(path, inputs, targets, predictions, next_weights):
    """Load the Keras file at `path`; its predictions on `inputs` are `predictions` (one array or a
    list), and after one train_on_batch on `targets` its weights are `next_weights`. The model."""
    model = keras.models.load_model(path)
    got = model.predict(inputs, verbose=0)
    for g, w in zip(got if isinstance(got, list) else [got], predictions if isinstance(predictions, list)
                    else [predictions]):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    model.train_on_batch(inputs, targets)
    weights = model.get_weights()
    assert len(weights) == len(next_weights)
    for weight, want in zip(weights, next_weights):
        np.testing.assert_allclose(weight, want, rtol=1e-5, atol=1e-6)
    return model


def fixture_module(path):
    """The Python file at `path` (in a fixture folder) as a module, under a name of its folder's
    and its own, so that two folders' `cases.py` never stand for each other."""
    folder, name = os.path.split(os.path.splitext(os.fspath(path))[0])
    spec = importlib.util.spec_from_file_location(f"fixture_{os.path.basename(folder)}_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

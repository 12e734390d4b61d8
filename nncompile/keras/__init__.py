"""The Keras-compatible front end: `from nncompile import keras`, a drop-in for `import keras`.

Example:

>>> from nncompile import keras
>>> model = keras.Sequential([keras.Input(shape=(4,)), keras.layers.Dense(2)])
>>> model.output_shape
(None, 2)
"""
from nncompile.keras import (activations, backend, constraints, initializers, layers, models,
                             regularizers, utils)
from nncompile.keras.layers import Layer
from nncompile.keras.models import Input, InputLayer, Model, Sequential

__all__ = ["Input", "InputLayer", "Layer", "Model", "Sequential", "activations", "backend", "constraints",
           "initializers", "layers", "models", "regularizers", "utils"]
from nncompile.keras import callbacks, datasets, preprocessing

__all__ += ["callbacks", "datasets", "preprocessing"]
from nncompile.keras import optimizers  # noqa: E402

__all__ += ["optimizers"]
from nncompile.keras import losses, metrics  # noqa: E402

__all__ += ["losses", "metrics"]
from nncompile.keras import saving  # noqa: E402

__all__ += ["saving"]
from nncompile.keras import config, ops, random  # noqa: E402

__all__ += ["config", "ops", "random"]
from nncompile.keras import tree  # noqa: E402

__all__ += ["tree"]

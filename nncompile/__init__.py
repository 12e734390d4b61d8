"""nncompile: a compiler for Keras-style neural networks.

Models written with `nncompile.keras` are traced into a typed SSA graph (`nncompile.ir`),
optimized by passes, and run.

Example:

>>> import nncompile
>>> from nncompile import keras
>>> model = keras.Sequential([keras.Input(shape=(4,)), keras.layers.Dense(2)])
>>> graph = nncompile.trace(model)
>>> nncompile.ir.verify(graph)
"""
from nncompile import ir, keras
from nncompile.keras.models import trace

__version__ = "0.1.0"

__all__ = ["__version__", "ir", "keras", "trace"]

"""nncompile: a compiler for Keras-style neural networks.

Models written with `nncompile.keras` are traced into a typed SSA graph (`nncompile.ir`),
optimized by passes, and compiled to native code (`nncompile.compile`).

Example:

>>> import numpy as np
>>> import nncompile
>>> from nncompile import keras
>>> model = keras.Sequential([keras.Input(shape=(4,)), keras.layers.Dense(2)])
>>> graph = nncompile.trace(model)
>>> nncompile.ir.verify(graph)
>>> exe = nncompile.compile(graph)
>>> exe(np.ones((3, 4), np.float32)).shape
(3, 2)
"""
from nncompile import ir, keras, onnx
from nncompile.keras.models import trace
from nncompile.runtime.cpu import Executable, compile

__version__ = "0.1.0"

__all__ = ["Executable", "__version__", "compile", "ir", "keras", "onnx", "trace"]

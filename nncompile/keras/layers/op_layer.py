"""The call of a keras.op (or a Python operator) on KerasTensors of a functional model
(`x = x + residual`), recorded as a node of the graph, as Keras 3 records its `Operation`s.

Its config is Keras 3's: the op's class (`Add`, `GetItem`, `Mean`) in module `keras.src.ops.*`,
its keyword arguments as the config (`{"name": "mean", "axis": -1}`), and its positional
arguments (tensors, numbers, slices as `__slice__`, arrays as `__tensor__`) in the inbound node.
So nncompile saves such models, and loads the ones real Keras saves.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

import numpy as np

from nncompile.keras import backend, ops
from nncompile.keras.layers.base import KerasTensor, Layer
from nncompile.keras.ops.core import leaves
from nncompile.keras.tracing import map_leaves

# The ops Keras defines in keras.src.ops.core (the rest are in .numpy, or .nn for ours in nn.py).
_CORE_OPS = {"cast", "cond", "convert_to_tensor", "fori_loop", "scan", "slice"}
# The parameters Keras's op classes take in `call` (the others are constructor attributes).
_DATA_PARAMETERS = {"x", "x1", "x2", "xs", "a", "b", "y", "key", "condition", "indices",
                    "target", "output", "inputs", "kernel", "fill_value", "values"}


class OpLayer(Layer):
    """One call of `op`: its arguments kept with the KerasTensors in place, replaced by the
    call's inputs when it is traced. Made by `op_layer`, of a class named as Keras 3 names the
    op's class; loaded from a config, the arguments come with its one recorded call."""

    def __init__(self, op: Callable, args: tuple | None = None, kwargs: dict | None = None,
                 name: str | None = None):
        super().__init__(name=name or backend.unique_name(op.__name__))
        self.op = op
        self._template = None if args is None else (args, kwargs or {})
        self._options: dict[str, Any] = {}   # the attributes a config gave (from_config)

    def __call__(self, *args, **kwargs):
        if self._template is None:   # the recorded call of a model config, as Keras writes it
            self._template = (_decoded(self.op, args), {**kwargs, **self._options})
            tensors = [x for x in leaves(self._template) if isinstance(x, KerasTensor)]
            return super().__call__(tensors[0] if len(tensors) == 1 else tensors)
        return super().__call__(*args, **kwargs)

    def call(self, inputs):
        given = iter(inputs if isinstance(inputs, list) else [inputs])
        args, kwargs = map_leaves(lambda x: next(given) if isinstance(x, KerasTensor) else x,
                                  self._template)
        return self.op(*args, **kwargs)

    @property
    def keras_module(self) -> str:
        module = self.op.__module__.rsplit(".", 1)[-1]
        return ("keras.src.ops.core" if self.op.__name__ in _CORE_OPS
                else "keras.src.ops.nn" if module == "nn" else "keras.src.ops.numpy")

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, **map_leaves(_plain, self._keras_arguments()[1])}

    def call_arguments(self, inputs: list, single: bool) -> tuple[list, dict]:
        given = iter(inputs)

        def encode(x):
            return next(given) if isinstance(x, KerasTensor) else _plain(x)

        return [map_leaves(encode, value) for value in self._keras_arguments()[0]], {}

    def _keras_arguments(self) -> tuple[list, dict]:
        """(the values Keras's op class is called on, the attributes it is made with): the
        data parameters (tensors, and the other operand of `2.0 - x`) and the others."""
        args, kwargs = self._template
        bound = inspect.signature(self.op).bind(*args, **kwargs).arguments
        data = [v for k, v in bound.items() if k in _DATA_PARAMETERS or _has_tensor(v)]
        return data, {k: v for k, v in bound.items()
                      if not (k in _DATA_PARAMETERS or _has_tensor(v))}

    @classmethod
    def from_config(cls, config) -> "OpLayer":
        layer = cls(_OPS_BY_CLASS[cls.__name__], name=config.get("name"))
        layer._options = {k: v for k, v in config.items() if k != "name"}
        return layer


def _has_tensor(value) -> bool:
    return any(isinstance(x, KerasTensor) for x in leaves(value))


def _plain(x):
    """An argument as Keras 3 writes it in a config."""
    if isinstance(x, slice):
        return {"class_name": "__slice__",
                "config": {"start": x.start, "stop": x.stop, "step": x.step}}
    if isinstance(x, np.ndarray):
        return {"class_name": "__tensor__", "config": {"value": x.tolist(), "dtype": str(x.dtype)}}
    if isinstance(x, np.generic):
        return x.item()
    return x


def _decoded(op: Callable, args: tuple) -> tuple:
    """Positional arguments read from a config: slices and arrays back; GetItem's key is a
    tuple (Keras writes tuples as lists)."""
    def decode(x):
        kind = x.get("class_name") if isinstance(x, dict) else None
        if kind == "__slice__":
            return slice(*(x["config"].get(k) for k in ("start", "stop", "step")))
        if kind == "__tensor__":
            return np.asarray(x["config"]["value"], x["config"].get("dtype"))
        if isinstance(x, (list, tuple)):
            return [decode(item) for item in x]
        return x

    decoded = [decode(x) for x in args]
    if op is ops.get_item and len(decoded) == 2 and isinstance(decoded[1], list):
        decoded[1] = tuple(decoded[1])
    return tuple(decoded)


_OP_CLASSES: dict[str, type] = {}
_OPS_BY_CLASS: dict[str, Callable] = {}


def op_class(name: str, op: Callable | None = None) -> type | None:
    """The OpLayer class of Keras's op class `name` ("Add", "GetItem") for `op` (by default
    the keras.ops function of that name), or None if there is no such op."""
    if name not in _OP_CLASSES:
        op = op or getattr(ops, backend.to_snake_case(name), None)
        if not callable(op):
            return None
        _OPS_BY_CLASS[name] = op
        _OP_CLASSES[name] = type(name, (OpLayer,), {
            "__module__": __name__, "__doc__": f"A call of ops.{op.__name__} (see OpLayer)."})
    return _OP_CLASSES[name]


def op_layer(op: Callable, args: tuple, kwargs: dict) -> OpLayer:
    """The call of `op` on KerasTensors as a node of the functional graph."""
    return op_class("".join(part.capitalize() for part in op.__name__.split("_")), op)(
        op, args, kwargs)

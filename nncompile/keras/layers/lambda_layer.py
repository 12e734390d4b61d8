"""Keras's `Lambda`: a layer made of a Python function, traced like any custom layer's `call`
(nncompile/keras/tracing.py): the function runs once on traced tensors and its ops become the
graph's."""
from __future__ import annotations

import base64
import inspect
import marshal
from typing import Any, Callable

from nncompile.keras.layers.base import Layer


class Lambda(Layer):
    """Wraps `function(inputs, **arguments)` as a layer (Keras 3's `Lambda`).

    The function is traced into the graph; it must be written with keras.ops. Saved in a model
    file, it is Python code, which `load_model` refuses under `safe_mode=True` as Keras does.

    >>> from nncompile.keras import Input, Model, ops
    >>> x = Input(shape=(3,))
    >>> model = Model(x, Lambda(lambda t: ops.square(t) + 1)(x))
    >>> model.predict(np.ones((1, 3), "float32"), verbose=0).tolist()
    [[2.0, 2.0, 2.0]]
    """

    def __init__(self, function: Callable, output_shape=None, mask=None, arguments=None,
                 **kwargs):
        super().__init__(**kwargs)
        if not callable(function):
            raise ValueError(f"Lambda '{self.name}': `function` must be callable. Received: "
                             f"function={function!r}")
        if mask is not None:
            raise ValueError(f"Lambda '{self.name}': a `mask` argument is not supported by "
                             f"nncompile; leave it None")
        self.function = function
        self.output_shape = output_shape   # kept for the config: shapes come from the trace
        self.arguments = dict(arguments or {})
        self._accepts = inspect.signature(function).parameters if _has_signature(function) else {}

    def call(self, inputs, mask=None, training=None):
        extra = {k: v for k, v in (("mask", mask), ("training", training)) if k in self._accepts}
        return self.function(inputs, **self.arguments, **extra)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "function": _function_config(self.function),
                "output_shape": self.output_shape, "arguments": self.arguments}


def _has_signature(function: Callable) -> bool:
    try:
        inspect.signature(function)
    except (TypeError, ValueError):
        return False
    return True


def _function_config(function: Callable) -> dict[str, Any]:
    """Keras 3's `__lambda__` form of a function: its marshalled code (what loading refuses to
    run under safe_mode)."""
    code = base64.b64encode(marshal.dumps(function.__code__)).decode("ascii")
    return {"class_name": "__lambda__",
            "config": {"code": code, "defaults": function.__defaults__, "closure": None}}

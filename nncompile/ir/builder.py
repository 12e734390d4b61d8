"""Builds graphs one op at a time, checking each op's types as it is added.

    >>> from nncompile.ir import Builder, f32, BATCH
    >>> b = Builder()
    >>> x = b.input("x", f32[BATCH, 4])
    >>> w = b.param("w", np.ones((4, 2), np.float32))
    >>> y = b.relu(b.matmul(x, w))
    >>> g = b.finish([y], ["y"])
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import numpy as np

from nncompile.ir.dtypes import DType
from nncompile.ir.errors import IRError
from nncompile.ir.graph import Graph, Node, Value
from nncompile.ir.optable import OPS, get_op, infer_types, normalize_attrs
from nncompile.ir.types import TensorType


class Builder:
    def __init__(self, graph: Graph | None = None, name: str = "main"):
        self.graph = graph if graph is not None else Graph(name)
        self._loc = ""
        self._updates: dict[str, Value] = {}

    @contextlib.contextmanager
    def loc(self, name: str) -> Iterator[None]:
        """Nodes added inside are tagged with `name` (a layer name, an ONNX node name)."""
        saved, self._loc = self._loc, name
        try:
            yield
        finally:
            self._loc = saved

    def input(self, name: str, type: TensorType) -> Value:
        return self.graph.add_input(name, type)

    def param(self, name: str, value: np.ndarray) -> Value:
        """A parameter input bound to `value` (kept by reference: in-place updates are seen).

        Asking again for the same name and array gives the same input (shared layers)."""
        value = np.asarray(value)
        if name in self.graph.params:
            if self.graph.params[name] is not value:
                raise IRError(f"graph {self.graph.name!r}: parameter {name!r} is bound to another array")
            return self.graph.input(name)
        v = self.graph.add_input(name, TensorType(DType.from_numpy(value.dtype), value.shape), param=True)
        self.graph.params[name] = value
        return v

    def op(self, op: str, *inputs: Value, **attrs) -> Value | tuple[Value, ...]:
        """Add `op(inputs) {attrs}`; one Value back, or a tuple for multi-output ops."""
        opdef = get_op(op)
        where = f"op '{op}'" + (f" of {self._loc!r}" if self._loc else "")
        attrs = normalize_attrs(opdef, attrs, where)
        out_types = infer_types(opdef, [v.type for v in inputs], attrs, where)
        node = self.graph.append(Node(op, inputs, attrs, out_types, self._loc))
        return node.outputs[0] if opdef.num_outputs == 1 else tuple(node.outputs)

    def constant(self, value, dtype: DType | str | None = None) -> Value:
        """A constant tensor; `dtype` defaults to the array's (f32 for Python floats)."""
        array = np.asarray(value)
        if dtype is None and array.dtype == np.float64 and not isinstance(value, np.ndarray):
            dtype = DType.f32
        if dtype is not None:
            dtype = dtype if isinstance(dtype, DType) else DType.parse(dtype)
            array = array.astype(dtype.numpy)
        return self.op("constant", value=array)

    def scalar(self, value: float, like: Value) -> Value:
        """A rank-0 constant of `like`'s dtype, for broadcasting against it."""
        return self.constant(np.asarray(value, like.type.dtype.numpy))

    def update(self, param: Value, value: Value) -> None:
        """Declare `value` the new content of parameter `param` after each run (an optimizer step,
        a moving average): `finish` makes it an output named after the parameter, which the
        runtime writes into the parameter's own array instead of returning it."""
        if not param.is_param:
            raise IRError(f"update: {param!r} is not a parameter of graph {self.graph.name!r}")
        if value.type != param.type:
            raise IRError(f"update of parameter {param.name!r}: the new value has type {value.type}, "
                          f"the parameter {param.type}")
        if param.name in self._updates:
            raise IRError(f"parameter {param.name!r} is updated twice")
        self._updates[param.name] = value

    @property
    def updated(self) -> list[Value]:
        """The new values of the parameters `update` has declared so far."""
        return list(self._updates.values())

    def finish(self, outputs: Sequence[Value], names: Sequence[str] | None = None) -> Graph:
        names = list(names) if names is not None else [f"output_{i}" for i in range(len(outputs))]
        taken = set(names)
        for param, value in self._updates.items():
            name = param if param not in taken else f"{param}.new"
            outputs, names = [*outputs, value], [*names, name]
            self.graph.updates[name] = param
        self.graph.set_outputs(outputs, names)
        return self.graph

    def __getattr__(self, name: str):
        """`b.matmul(x, w)` is `b.op("matmul", x, w)` for every op in the table."""
        if name.startswith("_") or name not in OPS:
            raise AttributeError(name)

        def emit(*inputs: Value, **attrs):
            return self.op(name, *inputs, **attrs)

        return emit

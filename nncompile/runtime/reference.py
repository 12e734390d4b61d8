"""The reference interpreter: runs any Graph op by op with the op table's numpy implementations.

It is the oracle every backend is tested against, so it favours clarity and checks over speed:
inputs are checked against the graph's types, symbolic dimensions are bound from the inputs, and
every result is checked against the type the op's shape rule declared.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from nncompile.ir.errors import IRError, ShapeError
from nncompile.ir.graph import Graph, Node, Value
from nncompile.ir.optable import get_op
from nncompile.ir.sizes import check_sizes, resolve_attrs
from nncompile.ir.types import bind_shape, resolve_shape
from nncompile.runtime import weights


def bind_inputs(graph: Graph, inputs: Sequence[np.ndarray] | Mapping[str, np.ndarray],
                params: Mapping[str, np.ndarray] | None = None) -> tuple[dict[Value, np.ndarray], dict[str, int]]:
    """Match arrays to the graph's inputs; return the value map and the symbol sizes.

    `inputs` is a list over the data inputs in order, or a dict by input name; parameters come
    from `params` (default: `graph.params`). Errors name the input and the expected type.
    """
    data = graph.data_inputs
    if isinstance(inputs, Mapping):
        unknown = sorted(set(inputs) - {v.name for v in data})
        if unknown:
            raise ShapeError(f"graph {graph.name!r} has no input {unknown[0]!r}; inputs: "
                             f"{', '.join(v.name for v in data)}")
        missing = [v.name for v in data if v.name not in inputs]
        if missing:
            raise ShapeError(f"graph {graph.name!r}: no array given for input {missing[0]!r}")
        arrays = [inputs[v.name] for v in data]
    else:
        arrays = list(inputs)
        if len(arrays) != len(data):
            raise ShapeError(f"graph {graph.name!r} takes {len(data)} inputs "
                             f"({', '.join(v.name for v in data)}), got {len(arrays)}")
    params = graph.params if params is None else params
    env: dict[str, int] = {}
    values: dict[Value, np.ndarray] = {}
    for v, array in zip(data, arrays):
        values[v] = _checked(v, array, env, "input")
    for v in graph.param_inputs:
        if v.name not in params:
            raise ShapeError(f"graph {graph.name!r}: no value bound to parameter {v.name!r}")
        values[v] = _checked(v, params[v.name], env, "parameter")
    check_sizes(graph, env)
    return values, env


def _checked(v: Value, array, env: dict[str, int], kind: str) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype != v.type.dtype.numpy:
        raise ShapeError(f"{kind} {v.name!r}: expected dtype {v.type.dtype}, received {array.dtype}")
    bind_shape(v.type.shape, array.shape, env, f"{kind} {v.name!r}")
    return array


def run_node(node: Node, args: Sequence[np.ndarray], env: Mapping[str, int]) -> list[np.ndarray]:
    """Run one node on concrete arrays; results are rounded to the declared dtype and checked."""
    opdef = get_op(node.op)
    with np.errstate(all="ignore"):
        try:
            result = opdef.reference(list(args), resolve_attrs(node, env))
        except ShapeError as e:
            raise _located(e, node) from None
    results = list(result) if isinstance(result, (list, tuple)) else [result]
    out = []
    for value, array in zip(node.outputs, results):
        array = np.asarray(array).astype(value.type.dtype.numpy, copy=False)
        expected = resolve_shape(value.type.shape, env)
        if array.shape != expected:
            raise IRError(f"{node.describe()}: reference produced shape {array.shape}, "
                          f"its shape rule declared {expected}")
        out.append(array)
    return out


def _located(error: ShapeError, node: Node) -> ShapeError:
    """A run-time error of an op ("op 'gather': ...") naming where the node came from, as shape
    rule errors do ("op 'gather' of 'embedding': ...")."""
    prefix, message = f"op '{node.op}'", str(error)
    if node.loc and message.startswith(prefix + ":"):
        message = f"{prefix} of {node.loc!r}{message[len(prefix):]}"
    return ShapeError(message)


def run(graph: Graph, inputs: Sequence[np.ndarray] | Mapping[str, np.ndarray],
        params: Mapping[str, np.ndarray] | None = None) -> list[np.ndarray]:
    """Run `graph` on `inputs`; returns one array per graph output, in order."""
    values, env = bind_inputs(graph, inputs, params)
    for node in graph.nodes:
        results = run_node(node, [values[v] for v in node.inputs], env)
        values.update(zip(node.outputs, results))
    # Ops like reshape return views; results must not alias the caller's inputs or parameters.
    return [values[v] if values[v].base is None else values[v].copy() for v in graph.outputs]


class Interpreter:
    """The reference interpreter behind the interface of a compiled `Executable`: called with the
    data inputs, it returns the outputs that are not parameter updates (one array, or a list) and
    writes the updates into the parameters' arrays, as compiled code does."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self._returned = [i for i, name in enumerate(graph.output_names) if name not in graph.updates]

    def __call__(self, *arrays: np.ndarray):
        outs = self._execute(list(arrays))
        return outs[0] if len(outs) == 1 else outs

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        data = bind_inputs(self.graph, inputs)[0]
        outs = self._execute([data[v] for v in self.graph.data_inputs])
        return dict(zip((self.graph.output_names[i] for i in self._returned), outs))

    def _execute(self, arrays: list) -> list[np.ndarray]:
        outs = run(self.graph, arrays)
        for name, value in zip(self.graph.output_names, outs):
            if name in self.graph.updates:
                with weights.writing(self.graph.params[self.graph.updates[name]]) as array:
                    np.copyto(array, value)
        return [outs[i] for i in self._returned]

    def run_steps(self, *arrays: np.ndarray) -> list[np.ndarray]:
        """One run per step: every input has a leading axis of steps, every output gets one."""
        per_step = [self._execute([a[k] for a in arrays]) for k in range(len(arrays[0]))]
        return [np.stack(outs) for outs in zip(*per_step)]

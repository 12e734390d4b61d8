"""The verifier: checks the invariants every pass must keep, in one linear walk.

SSA dominance (every value is defined before it is read, and by this graph), known ops with the
right number of inputs, canonical attributes (what `normalize_attrs` gives, so the text form reads
back the same), declared types equal to what the shape rules infer, unique input and output
names, and bound parameter arrays that match their inputs' types. Regions (graph-valued
attributes, e.g. the body of `fused`) are verified recursively, in a scope of their own; their
inputs are plain (no parameters) and their outputs carry the names the text form gives them
(`output_0`, `output_1`, ...), so that they read back the same. A graph's inputs bind every
symbol their expression dimensions use (a region's sizes come from its operands).
"""
from __future__ import annotations

import numpy as np

from nncompile.ir.dims import is_expression, symbols_of
from nncompile.ir.dtypes import DType
from nncompile.ir.errors import IRError, VerifyError
from nncompile.ir.graph import Graph, Node, Value
from nncompile.ir.optable import AttrKind, OpDef, get_op, infer_types, normalize_attrs
from nncompile.ir.printer import format_name
from nncompile.ir.types import bind_shape, is_symbol


def verify(graph: Graph) -> None:
    """Raise VerifyError naming the first broken invariant of `graph` (and its node)."""
    _verify(graph)
    _check_bindable(graph)


def _verify(graph: Graph) -> None:
    defined = _check_inputs(graph)
    index = {id(node): i for i, node in enumerate(graph.nodes)}
    for i, node in enumerate(graph.nodes):
        _check_node(graph, i, node, defined, index)
    _check_outputs(graph, defined, index)
    _check_updates(graph)


def _check_updates(graph: Graph) -> None:
    """Each update names an output and a parameter of the same type, each parameter once."""
    outputs = dict(zip(graph.output_names, graph.outputs))
    params = {v.name: v for v in graph.param_inputs}
    for name, param in graph.updates.items():
        if name not in outputs:
            raise _fail(graph, f"update {name!r} -> {param!r} names no output")
        if param not in params:
            raise _fail(graph, f"output {name!r} updates {param!r}, which is not a parameter")
        if outputs[name].type != params[param].type:
            raise _fail(graph, f"output {name!r} has type {outputs[name].type} but updates parameter "
                               f"{param!r} of type {params[param].type}")
    if len(set(graph.updates.values())) != len(graph.updates):
        raise _fail(graph, f"a parameter is updated by two outputs: {graph.updates}")


def _check_bindable(graph: Graph) -> None:
    """A call binds a symbol from an input axis that is that symbol alone; an expression over
    symbols no input binds (`T+1` with no axis `T`) could never be evaluated."""
    bound = {d for v in graph.inputs for d in v.type.shape if is_symbol(d) and not is_expression(d)}
    for v in graph.inputs:
        for d in v.type.shape:
            unbound = sorted(symbols_of(d) - bound)
            if unbound:
                raise _fail(graph, f"input {v.name!r} of type {v.type}: no input has {unbound[0]!r} as "
                                   f"a dimension, so no call binds it")


def _fail(graph: Graph, message: str) -> VerifyError:
    return VerifyError(f"graph {graph.name!r}: {message}")


def _check_inputs(graph: Graph) -> set[Value]:
    defined: set[Value] = set()
    names: set[str] = set()
    for v in graph.inputs:
        if not isinstance(v.name, str):
            raise _fail(graph, f"input {v!r} has no name")
        if v.name in names:
            raise _fail(graph, f"two inputs are named {v.name!r}")
        if v.producer is not None:
            raise _fail(graph, f"input {v.name!r} is also a result of {v.producer.describe()}")
        names.add(v.name)
        defined.add(v)
        if v.is_param and v.name in graph.params:
            check_param(graph, v)
    return defined


def check_param(graph: Graph, v: Value) -> np.ndarray:
    """The array bound to parameter `v`, which must have its declared dtype and shape. A rank-0
    parameter may be bound to a numpy scalar, or to a Python number, which takes the declared
    dtype (as Python scalars do in numpy's arithmetic)."""
    array = graph.params[v.name]
    what = f"parameter {v.name!r}"
    if isinstance(array, (bool, int, float)) and v.type.shape == ():
        try:
            array = np.array(array, v.type.dtype.numpy)
        except OverflowError:
            raise _fail(graph, f"{what} is typed {v.type} but bound to {array!r}, out of its range") from None
    if not isinstance(array, (np.ndarray, np.generic)):
        raise _fail(graph, f"{what} is typed {v.type} but bound to a {type(array).__name__}, not a numpy array")
    if array.dtype != v.type.dtype.numpy:
        raise _fail(graph, f"{what} is typed {v.type} but bound to an array of dtype {array.dtype}")
    try:
        bind_shape(v.type.shape, array.shape, {}, what)
    except IRError as e:
        raise _fail(graph, f"{e} (typed {v.type})") from None
    return np.asarray(array)


def _describe_result(v: Value, index: dict[int, int]) -> str:
    number = index.get(id(v.producer))
    if number is None:
        return f"a result of {v.producer.describe()} that is not in this graph"
    return f"%{number}" if len(v.producer.outputs) == 1 else f"%{number}#{v.index}"


def _check_node(graph: Graph, i: int, node: Node, defined: set[Value], index: dict[int, int]) -> None:
    where = f"{node.describe()} (node #{i})"
    try:
        opdef = get_op(node.op)
    except IRError as e:
        raise _fail(graph, f"{where}: {e}") from None
    for k, v in enumerate(node.inputs):
        if v not in defined:
            raise _fail(graph, f"{where}: input {k} is {_undefined(graph, v, index, i)}")
    attrs = _check_attrs(graph, opdef, node, where)
    try:
        inferred = infer_types(opdef, [v.type for v in node.inputs], attrs, where)
    except ValueError as e:
        raise _fail(graph, str(e)) from None
    declared = [v.type for v in node.outputs]
    if declared != inferred:
        raise _fail(graph, f"{where}: declares result types ({', '.join(map(str, declared))}) but the "
                           f"shape rule of {node.op!r} infers ({', '.join(map(str, inferred))})")
    for k, v in enumerate(node.outputs):
        if v.producer is not node or v.index != k or v in defined:
            raise _fail(graph, f"{where}: result {k} is not its own fresh value "
                               "(a node appended twice or a shared Value)")
        defined.add(v)


def _undefined(graph: Graph, v: Value, index: dict[int, int], position: int) -> str:
    """Why `v` may not be read at node #`position`: defined later, stale, or from another graph."""
    if v.producer is None:
        name = f" %{format_name(v.name)}" if isinstance(v.name, str) else ""
        return f"input{name} of another graph"
    number = index.get(id(v.producer))
    if number is None:
        return _describe_result(v, index)
    if number >= position:
        return f"{_describe_result(v, index)}, which node #{number} defines later (use before definition)"
    return f"a stale result of node #{number} ({v.producer.describe()}), not among its outputs"


def _check_attrs(graph: Graph, opdef: OpDef, node: Node, where: str) -> dict:
    """The node's attributes must be exactly what normalize_attrs makes of them."""
    given = {k: v for k, v in node.attrs.items()
             if not (v is None and k in opdef.attrs and opdef.attrs[k].default is None)}
    try:
        canonical = normalize_attrs(opdef, given, where)
    except IRError as e:
        raise _fail(graph, str(e)) from None
    for name, value in canonical.items():
        if name not in node.attrs:
            raise _fail(graph, f"{where}: attribute {name!r} is missing (its default is {value!r}; "
                               "nodes take every attribute, as normalize_attrs fills them)")
        held = node.attrs[name]
        if type(held) is not type(value) or (held is not value and held != value):
            raise _fail(graph, f"{where}: attribute {name!r} holds {held!r} ({type(held).__name__}); "
                               f"expected its canonical form {value!r} ({type(value).__name__})")
        if isinstance(value, np.ndarray):
            _check_tensor_dtype(graph, where, name, value)
        if opdef.attrs[name].kind is AttrKind.GRAPH:
            _check_region(graph, where, name, value)
    return canonical


def _check_region(graph: Graph, where: str, name: str, region: Graph) -> None:
    context = f"{where}: region {name!r}"
    params = [v.name for v in region.inputs if v.is_param]
    if params:
        raise _fail(graph, f"{context}: input {params[0]!r} is a parameter; region inputs are plain")
    expected = [f"output_{i}" for i in range(len(region.outputs))]
    if region.output_names != expected:
        raise _fail(graph, f"{context}: outputs are named {region.output_names}; regions use the "
                           f"default names {expected} (the text form does not print them)")
    try:
        _verify(region)     # a region's sizes come from its operands: it binds no symbol itself
    except VerifyError as e:
        raise _fail(graph, f"{context}: {e}") from None


def _check_tensor_dtype(graph: Graph, where: str, name: str, value: np.ndarray) -> None:
    try:
        DType.from_numpy(value.dtype)
    except ValueError as e:
        raise _fail(graph, f"{where}: attribute {name!r}: {e}") from None


def _check_outputs(graph: Graph, defined: set[Value], index: dict[int, int]) -> None:
    names = graph.output_names
    if len(names) != len(graph.outputs) or len(set(names)) != len(names):
        raise _fail(graph, f"output names {names} must be unique, one per output "
                           f"({len(graph.outputs)} outputs)")
    for name, v in zip(names, graph.outputs):
        if not isinstance(name, str):
            raise _fail(graph, f"output name {name!r} is not a string")
        if v not in defined:
            raise _fail(graph, f"output {name!r} is {_undefined(graph, v, index, len(graph.nodes))}")

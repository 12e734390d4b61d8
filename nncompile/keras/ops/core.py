"""How a `keras.ops` function runs: eagerly on arrays, or emitting IR while a graph is traced.

Every op is written once, as a function of a builder and its arguments (`@keras_op`). The builder
is chosen by the arguments:

- any argument an IR `Value`: the builder of the active trace (`with tracing(builder):`), so the
  op adds nodes to that graph and returns a `Value`; array and number arguments become constants;
- otherwise an `EagerBuilder`, whose `op(name, ...)` checks the op as the graph builder does and
  computes it at once with the op table's reference implementation; the result is a numpy array,
  as Keras's numpy backend returns.

Symbolic tensors of a model being defined (the functional API's KerasTensor) plug in with
`register_symbolic(cls, handler)`: an op given one returns what the handler makes of the call.

    >>> from nncompile.ir import Builder, f32
    >>> from nncompile.keras import ops
    >>> ops.add(np.ones(2, "float32"), 1)
    array([2., 2.], dtype=float32)
    >>> b = Builder()
    >>> x = b.input("x", f32[2])
    >>> with ops.tracing(b):
    ...     y = ops.add(x, 1)
    >>> y.type
    f32[2]
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
from typing import Callable, Iterator

import numpy as np

from nncompile.ir import Builder, DType, TensorType, Value
from nncompile.ir.optable import get_op, infer_types, normalize_attrs
from nncompile.ir.types import is_symbol
from nncompile.keras import backend
from nncompile.keras import dtypes
from nncompile.keras.dtypes import least_upper_bound

_TRACE: contextvars.ContextVar[Builder | None] = contextvars.ContextVar("nncompile_ops_trace",
                                                                        default=None)
# How values made without a tensor argument (random draws) are handed to the code being traced.
_PRESENT: contextvars.ContextVar[Callable | None] = contextvars.ContextVar("nncompile_ops_present",
                                                                          default=None)


@contextlib.contextmanager
def tracing(builder: Builder, present: Callable | None = None) -> Iterator[Builder]:
    """Within the block, ops called on `Value`s of `builder`'s graph emit IR into `builder`.

    `present(value)` wraps the values of ops that take no tensor (random draws) the way the code
    being traced sees tensors (a layer's `call` sees `TracedTensor`s, see keras/tracing.py).
    """
    token, shown = _TRACE.set(builder), _PRESENT.set(present)
    try:
        yield builder
    finally:
        _TRACE.reset(token)
        _PRESENT.reset(shown)


def present(out):
    """`out` as the traced code sees tensors (unchanged unless a `present` hook is active)."""
    hook = _PRESENT.get()
    return hook(out) if hook is not None and isinstance(out, Value) else out


def active_builder() -> Builder | None:
    """The builder of the trace in progress, or None when ops run eagerly."""
    return _TRACE.get()


class EagerValue:
    """An array with its IR type: what an `EagerBuilder` takes and gives instead of a `Value`."""

    __slots__ = ("array", "type")

    def __init__(self, array: np.ndarray):
        self.array = array
        self.type = TensorType(DType.from_numpy(array.dtype), array.shape)


class EagerBuilder(Builder):
    """A Builder that computes each op at once with its reference implementation.

    The op is checked exactly as when it is added to a graph (attributes, shape/dtype rule), so
    eager and traced calls accept and refuse the same things.
    """

    def op(self, op: str, *inputs: EagerValue, **attrs):
        opdef = get_op(op)
        where = f"op '{op}'"
        attrs = normalize_attrs(opdef, attrs, where)
        out_types = infer_types(opdef, [v.type for v in inputs], attrs, where)
        with np.errstate(all="ignore"):
            result = opdef.reference([v.array for v in inputs], attrs)
        results = result if isinstance(result, (list, tuple)) else [result]
        outs = tuple(EagerValue(np.asarray(r).astype(t.dtype.numpy, copy=False))
                     for r, t in zip(results, out_types))
        return outs[0] if opdef.num_outputs == 1 else outs


def leaves(tree) -> Iterator:
    if isinstance(tree, (list, tuple)):
        for item in tree:
            yield from leaves(item)
    elif isinstance(tree, dict):
        for item in tree.values():
            yield from leaves(item)
    else:
        yield tree


def builder_for(name: str, *args) -> Builder:
    """The trace's builder if any argument is a `Value`, else a fresh `EagerBuilder`."""
    if not any(isinstance(leaf, Value) for leaf in leaves(args)):
        return EagerBuilder()
    builder = _TRACE.get()
    if builder is None:
        raise ValueError(f"ops.{name} was called on a traced tensor (an IR Value) outside a "
                         f"trace; call it inside `with ops.tracing(builder):`")
    return builder


def unwrap(out):
    """Eager results (EagerValues, also inside lists and tuples) as numpy arrays."""
    if isinstance(out, EagerValue):
        return out.array
    if isinstance(out, (list, tuple)):
        return type(out)(unwrap(o) for o in out)
    return out


_SYMBOLIC: dict[type, Callable] = {}


def register_symbolic(cls: type, handler: Callable) -> None:
    """Ops called with an instance of `cls` among their arguments return
    `handler(op, args, kwargs)` instead of running: the hook for symbolic tensors of a model
    being defined (Keras's KerasTensor), which record the op and call it on `Value`s later."""
    _SYMBOLIC[cls] = handler


def _symbolic_handler(args) -> Callable | None:
    if _SYMBOLIC:
        for leaf in leaves(args):
            for cls, handler in _SYMBOLIC.items():
                if isinstance(leaf, cls):
                    return handler
    return None


def dispatching(fn):
    """`fn(*args)`, unless an argument is a registered symbolic tensor: then its handler's
    result (the hook of `register_symbolic`)."""
    @functools.wraps(fn)
    def op(*args, **kwargs):
        handler = _symbolic_handler((args, kwargs))
        if handler is not None:
            return handler(op, args, kwargs)
        return fn(*args, **kwargs)
    return op


def keras_op(fn):
    """Make `fn(b, *args)` the op `fn(*args)`: `b` is the builder the arguments call for, and
    eager results come back as numpy arrays. An op made of other ops calls their definitions on
    its own builder: `other.__wrapped__(b, ...)`."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        return unwrap(fn(builder_for(fn.__name__, args, kwargs), *args, **kwargs))

    op = dispatching(run)
    op.__wrapped__ = fn
    signature = inspect.signature(fn)
    op.__signature__ = signature.replace(parameters=list(signature.parameters.values())[1:])
    return op


def keras_op_named(fn, name: str, doc: str):
    """`keras_op` of a function made by a factory, under its Keras name."""
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc
    return keras_op(fn)


def namespace_fallback(namespace: str):
    """The module `__getattr__` of a Keras sub-namespace (`keras.ops.numpy`, `.nn`, `.linalg`,
    `.image`): Keras offers there ops that nncompile defines in other modules (Keras's
    `keras.ops.numpy.arange` is `keras.ops.arange`), so a public name the module lacks is
    looked up among `keras.ops`'s."""
    def __getattr__(name: str):
        from nncompile.keras import ops     # the package imports this module
        if not name.startswith("_") and name in ops.__all__:
            return getattr(ops, name)
        raise AttributeError(f"module 'keras.ops.{namespace}' has no attribute {name!r}")
    return __getattr__


def float_op(name: str, rule, doc: str):
    """A one-input op computed by `rule(b, v)` on x as a float (ints and bools in floatx)."""
    return keras_op_named(lambda b, x: rule(b, tensor(b, x, float_dtype(x))), name, doc)


# --- dtypes -----------------------------------------------------------------------------------
# Keras 3's promotion rules (`keras.dtypes`). Keras narrows 64-bit results to 32 bits on its JAX,
# torch and numpy backends; nncompile keeps them (as Keras on TensorFlow), so float64 programs
# stay float64.

_IR_NAMES = {DType.f16: "float16", DType.f32: "float32", DType.f64: "float64", DType.i8: "int8",
             DType.u8: "uint8", DType.i32: "int32", DType.i64: "int64", DType.bool: "bool"}
_FROM_NAME = {name: dtype for dtype, name in _IR_NAMES.items()}


def standardize_dtype(dtype) -> str:
    """A dtype's Keras name ("float32"), as `keras.backend.standardize_dtype` gives it; IR dtypes
    are accepted too."""
    if isinstance(dtype, DType):
        return _IR_NAMES[dtype]
    return dtypes.standardize_dtype(dtype)


def ir_dtype(dtype) -> DType:
    """The IR dtype of a Keras dtype; the error names the dtypes nncompile computes in."""
    name = standardize_dtype(dtype)
    if name not in _FROM_NAME:
        raise ValueError(f"dtype {name} is not supported by nncompile; supported dtypes: "
                         f"{', '.join(_FROM_NAME)}")
    return _FROM_NAME[name]


def _lattice_name(x) -> str:
    """x's place on the lattice: its dtype's name, or "int"/"float" for a Python number."""
    if isinstance(x, (Value, EagerValue)):
        return _IR_NAMES[x.type.dtype]
    if isinstance(x, bool):
        return "bool"
    if isinstance(x, int) or x is int:
        return "int"
    if isinstance(x, float) or x is float:
        return "float"
    if hasattr(x, "dtype"):
        return standardize_dtype(x.dtype)
    if isinstance(x, (str, np.dtype, DType)):
        return standardize_dtype(x)
    return standardize_dtype(np.asarray(x).dtype)


def result_type(*args) -> str:
    """The dtype Keras 3 gives an op on `args` (tensors, arrays, numbers, dtypes, `int`/`float`).

    >>> result_type(np.ones(2, "int8"), 1), result_type("int32", 1.5)
    ('int8', 'float32')
    """
    if not args:
        return backend.floatx()
    for a in args:
        _refuse_unknown_dim(a)
    name = least_upper_bound(tuple(sorted({_lattice_name(a) for a in args})))
    # A weak result takes floatx's width (Keras's _resolve_weak_type).
    if name == "int":
        return "int32"
    if name == "float":
        return backend.floatx()
    return name


def float_dtype(x) -> str:
    """The dtype of a float op on `x`: floats keep theirs, ints and bools compute in floatx."""
    name = _lattice_name(x)
    return name if name in ("float16", "float32", "float64") else backend.floatx()


# --- arguments -------------------------------------------------------------------------------

def tensor(b: Builder, x, dtype=None):
    """`x` (a Value, an array, a number or nested lists) as a value of `b`, in `dtype` (default:
    its own; Python floats in floatx, ints in int32)."""
    target = ir_dtype(dtype) if dtype is not None else None
    if isinstance(x, (Value, EagerValue)):
        return x if target in (None, x.type.dtype) else b.cast(x, dtype=target)
    _refuse_unknown_dim(x)
    if target is None:
        target = ir_dtype(result_type(x))
    return b.constant(np.asarray(x).astype(target.numpy))


def tensors(b: Builder, *xs, dtype=None) -> list:
    """All of `xs` as values of `b` in one dtype: `dtype`, else Keras's promotion of them."""
    dtype = result_type(*xs) if dtype is None else dtype
    return [tensor(b, x, dtype) for x in xs]


def _refuse_unknown_dim(x) -> None:
    """None as a number is a dimension that `ops.shape` gives as None because it is known only
    when the model runs (the batch): numpy would make it NaN, a wrong answer with no error."""
    if x is None or isinstance(x, (list, tuple)) and any(v is None for v in x):
        raise ValueError("A tensor operand is None. `ops.shape(x)` (and `x.shape`) give None for a "
                         "dimension known only when the model runs, such as the batch size, and "
                         "nncompile cannot use it as a number in the traced computation. Compute "
                         "with the tensor instead: e.g. `ops.mean(x, axis=0)` rather than "
                         "`ops.sum(x, axis=0) / ops.shape(x)[0]`, or `ops.ones_like(x[:, :1])` "
                         "summed for a count.")


def shape_of(x) -> tuple:
    """Keras's `x.shape`: ints, None where the dimension is symbolic (the batch)."""
    if isinstance(x, (Value, EagerValue)):
        return tuple(None if is_symbol(d) else d for d in x.type.shape)
    return np.shape(x)


def canonical_axis(axis: int, rank: int, op: str) -> int:
    """`axis` in [0, rank), with Keras's error for one out of range."""
    if not -rank <= axis < rank:
        raise ValueError(f"ops.{op}: axis {axis} is out of bounds for a tensor of rank {rank}")
    return axis % rank


def canonical_axes(axis, rank: int, op: str) -> list[int]:
    """`axis` (None for all, an int or a sequence) as a sorted list of axes in [0, rank)."""
    if axis is None:
        return list(range(rank))
    axes = [axis] if isinstance(axis, (int, np.integer)) else list(axis)
    out = sorted(canonical_axis(int(a), rank, op) for a in axes)
    if len(set(out)) != len(out):
        raise ValueError(f"ops.{op}: repeated axis in {axis}")
    return out


def static_length(v, axis: int, op: str, name: str | None = None) -> int:
    """The static length of `v`'s `axis`, or the error of an op that cannot work on a symbolic
    one (the batch, known only when the model runs) naming the op and the axis (`name`)."""
    n = v.type.shape[axis]
    if is_symbol(n):
        raise NotImplementedError(f"ops.{op}: {name or f'axis {axis}'} has symbolic length {n!r}; nncompile "
                                  f"needs a static length here")
    return n


def lowest(dtype: np.dtype):
    """The least value of `dtype`: -inf for floats (a reduction's neutral fill, a max's floor)."""
    return -np.inf if np.issubdtype(dtype, np.floating) else np.iinfo(dtype).min


def highest(dtype: np.dtype):
    """The greatest value of `dtype`: inf for floats."""
    return np.inf if np.issubdtype(dtype, np.floating) else np.iinfo(dtype).max


def unsupported(op: str, what: str) -> NotImplementedError:
    """The one error of an op (or an argument of one) that the IR cannot express."""
    return NotImplementedError(f"ops.{op}: {what} is not supported by nncompile (no IR op "
                               f"expresses it)")

"""Tracing the code users write (a layer's or model's `call`, a loss or metric function, a
metric's `update_state`) into the graph being built.

While such code is traced, its tensors are `TracedTensor`s: an IR `Value` of the graph with
Keras's tensor behaviour (Python operators, `.shape`, `.dtype`, `.ndim`). `keras.ops` called on
them add IR (the `register_symbolic` hook of ops/core.py hands the call to `traced_op`), layers
called in the traced code add their IR inline (`call_inline`), and weights (`Variable`s) it
reads become parameters of the graph. So user code reaches fusion, autodiff and native code exactly as
built-in layers do: built-in layers `emit` IR directly, a custom layer's `emit` is this trace.

Python control flow on a tensor's value cannot be traced (the value is known only when the
compiled graph runs): asking for one (`if`, `int()`, `np.asarray`) raises `TracingError`, which
names the layer and the user's line.
"""
from __future__ import annotations

import contextlib
import contextvars
import inspect
import linecache
import os
import sys
from typing import Any, Callable, Iterator, NamedTuple

import numpy as np

from nncompile.ir import Builder, Value
from nncompile.keras import ops
from nncompile.keras.ops.core import (active_builder, register_symbolic, shape_of,
                                      standardize_dtype, tensor, tracing)

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class TracingError(TypeError):
    """User code asked for the value of a tensor while it was being traced into a graph."""


class _Scope(NamedTuple):
    owner: str       # how messages name what is traced: "Layer 'block' (Residual)"
    training: bool | None   # the mode that layers called inside without `training=` run in
    path: str = ""   # what the weights of layers built inside start with ("model/"), as in Keras


_SCOPE: contextvars.ContextVar[_Scope | None] = contextvars.ContextVar("nncompile_trace_scope",
                                                                      default=None)
# The increments `assign_add` records while a metric's `update_state` is traced: id(var) -> value
_UPDATES: contextvars.ContextVar[dict | None] = contextvars.ContextVar("nncompile_trace_updates",
                                                                      default=None)


@contextlib.contextmanager
def _traced(b: Builder, owner: str, training: bool, path: str = "") -> Iterator[None]:
    token = _SCOPE.set(_Scope(owner, training, path))
    try:
        with tracing(b, present=TracedTensor):
            yield
    finally:
        _SCOPE.reset(token)


def map_leaves(fn: Callable, tree):
    """`tree` (lists, tuples, dicts nested) with `fn` applied to every other object."""
    if isinstance(tree, (list, tuple)) and not hasattr(tree, "_fields"):
        return type(tree)(map_leaves(fn, item) for item in tree)
    if isinstance(tree, dict):
        return {key: map_leaves(fn, item) for key, item in tree.items()}
    return fn(tree)


# --- tensors ------------------------------------------------------------------------------------

def _binary(name: str, reflected: bool = False):
    def method(self, other):
        op = getattr(ops, name)
        return op(other, self) if reflected else op(self, other)
    method.__name__ = f"__{'r' if reflected else ''}{name}__"
    return method


def _unary(name: str):
    def method(self):
        return getattr(ops, name)(self)
    method.__name__ = f"__{name}__"
    return method


class ArithmeticOperators:
    """Python's arithmetic operators as the `keras.ops` they mean (Keras 3's tensor methods)."""

    __slots__ = ()
    __add__, __radd__ = _binary("add"), _binary("add", True)
    __sub__, __rsub__ = _binary("subtract"), _binary("subtract", True)
    __mul__, __rmul__ = _binary("multiply"), _binary("multiply", True)
    __truediv__, __rtruediv__ = _binary("true_divide"), _binary("true_divide", True)
    __floordiv__, __rfloordiv__ = _binary("floor_divide"), _binary("floor_divide", True)
    __mod__, __rmod__ = _binary("mod"), _binary("mod", True)
    __pow__, __rpow__ = _binary("power"), _binary("power", True)
    __matmul__, __rmatmul__ = _binary("matmul"), _binary("matmul", True)
    __neg__, __abs__ = _unary("negative"), _unary("absolute")

    def __getitem__(self, key):
        return ops.get_item(self, key)


class TensorOperators(ArithmeticOperators):
    """The arithmetic operators plus comparisons and logic, which give tensors (so these objects
    hash by identity, as Keras's tensors do)."""

    __slots__ = ()
    __lt__, __le__ = _binary("less"), _binary("less_equal")
    __gt__, __ge__ = _binary("greater"), _binary("greater_equal")
    __eq__, __ne__ = _binary("equal"), _binary("not_equal")
    __and__, __rand__ = _binary("logical_and"), _binary("logical_and", True)
    __or__, __ror__ = _binary("logical_or"), _binary("logical_or", True)
    __xor__, __rxor__ = _binary("logical_xor"), _binary("logical_xor", True)
    __invert__ = _unary("logical_not")
    __hash__ = object.__hash__


class TracedTensor(TensorOperators):
    """A tensor of the code being traced: an IR value of the graph under construction, and the
    Keras mask (a layers.base.Mask) the layer that made it attached, which the layers it is
    given to receive, as in Keras."""

    __slots__ = ("value", "_keras_mask")

    def __init__(self, value: Value, mask=None):
        self.value = value
        self._keras_mask = mask

    def _traced_value(self, b: Builder | None) -> Value:
        if b is None:
            raise TracingError(f"{_where()}: a tensor of a traced call is used after the trace "
                               f"ended; keep tensors inside `call`")
        return self.value

    @property
    def shape(self) -> tuple:
        """Keras's shape: ints, None for dimensions known only at run time (the batch)."""
        return shape_of(self.value)

    @property
    def dtype(self) -> str:
        return standardize_dtype(self.value.type.dtype)

    @property
    def ndim(self) -> int:
        return self.value.type.rank

    def __iter__(self):
        if not self.shape or self.shape[0] is None:
            raise _untraceable("iterating over a tensor whose first dimension is known only at "
                               "run time")
        return (self[i] for i in range(self.shape[0]))

    def __bool__(self):
        raise _untraceable("using a tensor as a Python bool (`if`, `while`, `and`, `or`)")

    def __index__(self):
        raise _untraceable("using a tensor as a Python int")

    def __int__(self):
        raise _untraceable("int(tensor)")

    def __float__(self):
        raise _untraceable("float(tensor)")

    def __array__(self, dtype=None, copy=None):
        raise _untraceable("converting a tensor to a numpy array")

    def numpy(self):
        raise _untraceable("tensor.numpy()")

    def __repr__(self) -> str:
        return f"<TracedTensor shape={self.shape}, dtype={self.dtype}>"


def _where() -> str:
    scope = _SCOPE.get()
    return scope.owner if scope else "nncompile"


def _user_line() -> str:
    """The innermost line of code outside nncompile on the stack: the line the user wrote."""
    frame = sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE):
        frame = frame.f_back
    if frame is None:
        return "(line unknown)"
    linecache.checkcache(frame.f_code.co_filename)   # the file may have changed since cached
    text = linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()
    return f'file "{frame.f_code.co_filename}", line {frame.f_lineno}: `{text}`'


def _untraceable(what: str) -> TracingError:
    return TracingError(
        f"{_where()}, {_user_line()}: {what} needs the tensor's value, which is known only when "
        f"the compiled graph runs, not while the code is traced into it. Python control flow "
        f"cannot depend on tensor values: choose values with ops.where(condition, x, y), and "
        f"iterate over a sequence with ops.scan (or ops.fori_loop).")


# --- ops on traced tensors ------------------------------------------------------------------------

def traced_op(op: Callable, args: tuple, kwargs: dict):
    """`op` called with TracedTensors or Variables among its arguments: on their IR values when
    a trace is active (the results are TracedTensors again), else on the Variables' arrays."""
    b = active_builder()

    def value(x):
        return x._traced_value(b) if hasattr(x, "_traced_value") else x

    out = op(*map_leaves(value, args), **map_leaves(value, kwargs))
    return map_leaves(lambda x: TracedTensor(x) if isinstance(x, Value) else x, out)


register_symbolic(TracedTensor, traced_op)


def as_value(b: Builder, x, owner: str) -> Value:
    """What traced code returned, as a value of `b` (arrays and numbers become constants)."""
    if hasattr(x, "_traced_value"):
        return x._traced_value(b)
    if isinstance(x, Value):
        return x
    try:
        return tensor(b, x)
    except (TypeError, ValueError):
        raise TypeError(f"{owner} returned {type(x).__name__} {x!r}; expected tensors (or "
                        f"arrays)") from None


def as_values(b: Builder, out, owner: str):
    return map_leaves(lambda x: as_value(b, x, owner), out)


def describe(layer) -> str:
    return f"Layer '{layer.name}' ({type(layer).__name__})"


def trace_call(layer, b: Builder, inputs: Value | list[Value], mask, training: bool):
    """Add `layer.call(inputs)` to `b`: its outputs as values, in the structure `call` gave.

    `call` is given `training` and `mask` (TracedTensors of the bool mask) when its signature
    has them, as Keras's `Layer.__call__` does."""
    kwargs: dict[str, Any] = {}
    accepted = inspect.signature(layer.call).parameters
    if "training" in accepted:
        kwargs["training"] = training
    if "mask" in accepted and mask is not None:
        kwargs["mask"] = _mask_tensors(b, mask)
    owner = describe(layer)
    flat = inputs if isinstance(inputs, list) else [inputs]
    masks = [None] * len(flat) if mask is None else mask if isinstance(mask, list) else [mask]
    tensors = [TracedTensor(v, m) for v, m in zip(flat, masks)]
    try:
        with _traced(b, owner, training, f"{layer._scope}{layer.name}/"):
            out = layer.call(tensors if isinstance(inputs, list) else tensors[0], **kwargs)
    except NotImplementedError as e:   # an op the IR cannot express: say whose call used it
        raise NotImplementedError(f"{owner}: {e}") from None
    return as_values(b, out, f"{owner}: call()")


def trace_cell(cell, b: Builder, inputs: Value, states: list[Value], training: bool
               ) -> tuple[Value, list[Value]]:
    """One step of a recurrent cell users wrote, traced into the loop's body `b`: its
    `call(inputs, states)` (states as a list, `training` when its signature has it, as Keras's
    `RNN` passes them) returns the output and the new states, of the shapes the cell declares."""
    kwargs = {"training": training} if "training" in inspect.signature(cell.call).parameters else {}
    owner = describe(cell)
    try:
        with _traced(b, owner, training, f"{cell._scope}{cell.name}/"):
            out = cell.call(TracedTensor(inputs), [TracedTensor(s) for s in states], **kwargs)
    except NotImplementedError as e:
        raise NotImplementedError(f"{owner}: {e}") from None
    if not isinstance(out, (list, tuple)) or len(out) != 2:
        raise TypeError(f"{owner}: a recurrent cell's call() must return (output, new_states); it "
                        f"returned {type(out).__name__}")
    output, new_states = out
    new_states = list(new_states) if isinstance(new_states, (list, tuple)) else [new_states]
    output = as_value(b, output, f"{owner}: call()")
    new_states = [as_value(b, s, f"{owner}: call()") for s in new_states]
    if len(new_states) != len(states):
        raise ValueError(f"{owner}: call() returned {len(new_states)} new states for the "
                         f"{len(states)} of its state_size")
    for i, (new, old) in enumerate(zip(new_states, states)):
        if new.type.shape != old.type.shape:
            raise ValueError(f"{owner}: call() returned state {i} of shape {new.type.shape}; its "
                             f"state_size gives {old.type.shape}")
    return output, new_states


def _mask_tensors(b: Builder, mask):
    return map_leaves(lambda m: None if m is None else TracedTensor(m.keep(b)), mask)


def trace_mask(layer, b: Builder, inputs, mask):
    """The output mask(s) of Keras's `compute_mask(inputs, mask)` a user wrote, as bool values
    (None where it gives none)."""
    owner = describe(layer)
    with _traced(b, owner, False):
        out = layer.compute_mask(map_leaves(TracedTensor, inputs), _mask_tensors(b, mask))
    return map_leaves(lambda x: None if x is None else as_value(b, x, f"{owner}: compute_mask()"),
                      out)


def is_traced(x) -> bool:
    return isinstance(x, TracedTensor)


def in_trace() -> bool:
    """Whether user code is being traced: layers it calls, even on arrays, join the graph (so
    their weights train), as they would join Keras's."""
    return _SCOPE.get() is not None and active_builder() is not None


def call_inline(layer, inputs: list, single: bool, training: bool | None, mask=None):
    """A layer called inside traced code (`self.dense(x)` in a model's `call`): its IR is
    added to the graph being built, in the caller's training mode unless `training` says; a
    `mask` given (`self.lstm(x, mask=m)`) replaces the inputs' own."""
    b = active_builder()
    values = [as_value(b, x, describe(layer)) for x in inputs]
    scope = _SCOPE.get()
    mode = scope.training if training is None else bool(training)
    if mode is None:   # no mode anywhere: the layer's own default, as its Keras `call` declares it
        mode = layer.default_training
    shapes = [shape_of(v) for v in values]
    if not layer.built:
        layer._scope = scope.path
    layer._maybe_build(shapes[0] if single else shapes)
    masks = [getattr(x, "_keras_mask", None) for x in inputs]
    if mask is not None:
        from nncompile.keras.layers.base import Mask    # the layers import this module
        given = mask if isinstance(mask, (list, tuple)) else [mask]
        masks = [None if m is None else Mask(as_value(b, m, f"{describe(layer)}: mask"), "the mask argument")
                 for m in given]
    with b.loc(layer.name):
        outs, out_masks = layer.emit_call(b, values, masks, single, mode)
    wrapped = [TracedTensor(v, m) for v, m in zip(outs, out_masks)]
    return wrapped[0] if len(wrapped) == 1 else wrapped


def emitter(fn: Callable, owner: str) -> Callable:
    """The emitter `emit(b, y_true, y_pred, **options)` of a function of tensors written with
    keras.ops (a custom loss or metric function)."""
    def emit(b: Builder, y_true: Value, y_pred: Value, **options) -> Value:
        with _traced(b, owner, False):
            out = fn(TracedTensor(y_true), TracedTensor(y_pred), **options)
        return as_value(b, out, owner)

    emit.__name__ = getattr(fn, "__name__", type(fn).__name__)
    return emit


def activation_emitter(fn: Callable) -> Callable:
    """The emitter `emit(b, x)` of an activation written as Keras's are: `fn(x)` with keras.ops,
    traced where a layer applies it (`keras_function` keeps `fn`, for configs)."""
    name = getattr(fn, "__name__", type(fn).__name__)

    def emit(b: Builder, x: Value) -> Value:
        owner = f"Activation '{name}'"
        with _traced(b, owner, False):
            out = fn(TracedTensor(x))
        return as_value(b, out, owner)

    emit.__name__, emit.keras_function = name, fn
    return emit


def trace_penalty(regularizer: Callable, b: Builder, x: Value, owner: str) -> Value:
    """The penalty a regularizer written with keras.ops (a function, or a Regularizer subclass's
    `__call__`) gives `x`, as a scalar of `b`."""
    with _traced(b, owner, False):
        out = regularizer(TracedTensor(x))
    value = as_value(b, out, f"{owner}: the regularizer")
    if value.type.rank:
        value = b.reduce_sum(value, axes=tuple(range(value.type.rank)))
    return value if value.type.dtype == x.type.dtype else b.cast(value, dtype=x.type.dtype)


# --- metric variables -------------------------------------------------------------------------------

def trace_updates(metric, b: Builder, y_true: Value, y_pred: Value,
                  sample_weight: Value | None) -> list[Value]:
    """One batch's increment of each of `metric`'s variables, from tracing its `update_state`
    (whose `assign_add` calls are recorded, not run): the statistics the step graph returns."""
    owner = f"Metric '{metric.name}' ({type(metric).__name__})"
    updates: dict[int, Value] = {}
    token = _UPDATES.set(updates)
    weight = {} if sample_weight is None else {"sample_weight": TracedTensor(sample_weight)}
    try:
        with _traced(b, owner, False):
            metric.update_state(TracedTensor(y_true), TracedTensor(y_pred), **weight)
    finally:
        _UPDATES.reset(token)
    out = []
    for var in metric.variables:
        delta = updates.get(id(var))
        out.append(b.constant(np.zeros(var.shape, var.dtype)) if delta is None else delta)
    return out


def record_increment(var, delta) -> None:
    """`var.assign_add(delta)` met while traced: recorded for `trace_updates`."""
    updates = _UPDATES.get()
    if updates is None:
        raise TracingError(f"{_where()}, {_user_line()}: `{var.path}.assign_add` on a traced "
                           f"tensor: only a Metric's `update_state` may add to variables while "
                           f"it is compiled (its increments are summed over the batches)")
    b = active_builder()
    value = tensor(b, delta._traced_value(b), var.dtype)
    if value.type.shape != var.shape:
        value = b.broadcast(value, shape=list(var.shape))
    previous = updates.get(id(var))
    updates[id(var)] = value if previous is None else b.add(previous, value)


def refuse_assign(var) -> TracingError:
    return TracingError(f"{_where()}, {_user_line()}: `{var.path}.assign` of a traced tensor "
                        f"cannot be compiled: a compiled metric's variables are running sums, "
                        f"updated with `assign_add`")

"""Subclassed models: `class M(keras.Model)` with layers made in `__init__` and a `call`.

Such a model is built when it first sees data (or by `build(input_shape)`): its `call` is traced
once on inputs of those shapes, which builds the layers it calls and fixes the model's inputs and
outputs. From then on it is traced like any model (`Model._emit_masked_calls` traces `call`), so
compile, fit, evaluate, predict, summary and the weight files work as for functional models.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from nncompile.ir import Builder, ShapeError
from nncompile.keras import backend, data
from nncompile.keras.input_layer import Input
from nncompile.keras.layers.base import KerasTensor, ir_type, keras_shape
from nncompile.keras.tracing import TracingError, map_leaves, trace_call


_STEPS = ("train_step", "test_step", "predict_step", "compute_loss")


def refuse_custom_steps(model) -> None:
    """A hand-written training step cannot be compiled: say so when the model is compiled."""
    custom = [name for name in _STEPS if hasattr(type(model), name)]
    if custom:
        raise NotImplementedError(
            f"Model '{model.name}' ({type(model).__name__}) overrides `{custom[0]}`. nncompile "
            f"compiles the whole training step (forward pass, loss, gradients, optimizer update) "
            f"from the model's `call`, its loss and its optimizer into one graph, so a step "
            f"written by hand (with GradientTape or jax.grad) is not supported: put the "
            f"computation in `call` and the objective in a loss function or Loss subclass.")


def build(model, input_shape) -> None:
    """Build `model` for inputs of `input_shape` (one shape, or a list of shapes)."""
    several = isinstance(input_shape, list) and input_shape and isinstance(
        input_shape[0], (tuple, list))
    shapes = input_shape if several else [input_shape]
    if any(not isinstance(s, (tuple, list)) for s in shapes):
        raise ValueError(f"Model '{model.name}' ({type(model).__name__}): build it with a shape "
                         f"such as (None, 8), or a list of shapes. Received: {input_shape!r}")
    _build(model, [Input(batch_shape=tuple(s)) for s in shapes], single=not several)


def build_from_data(model, x) -> None:
    """Build `model` for the arrays of `x` (an array, or a list of arrays for several inputs).
    Other data (a generator) leaves it unbuilt: the caller's error asks for `build()`."""
    if isinstance(x, Mapping):
        raise ValueError(f"Model '{model.name}' ({type(model).__name__}) is built from its first "
                         f"data; give it an array or a list of arrays, not a dict")
    if not isinstance(x, (np.ndarray, list, tuple)):
        return
    several = isinstance(x, (list, tuple)) and bool(x) and all(
        isinstance(a, np.ndarray) for a in x)
    arrays = [data.numeric_array(a, f"The input of model '{model.name}'")
              for a in (x if several else [x])]
    inputs = [Input(batch_shape=(None, *a.shape[1:]),
                    dtype=str(a.dtype) if a.dtype.kind in "iu" else backend.floatx())
              for a in arrays]
    _build(model, inputs, single=not several)


def _build(model, inputs: list[KerasTensor], single: bool) -> None:
    b = Builder(name=model.name)
    values = [b.input(t.history.layer.name, ir_type(t.shape, t.dtype, t.history.layer.name))
              for t in inputs]
    try:
        outs = trace_call(model, b, values[0] if single else values, None, False)
    except ShapeError as e:
        shapes = ", ".join(str(t.shape) for t in inputs)
        raise ValueError(f"Model '{model.name}' ({type(model).__name__}) cannot be built for "
                         f"inputs of shape {shapes}: {e}") from None
    except (TracingError, NotImplementedError) as e:
        raise e.with_traceback(None) from None   # the message names the user's line
    model._inputs = inputs
    model._inputs_struct = inputs[0] if single else inputs
    model._outputs_struct = map_leaves(
        lambda v: KerasTensor(keras_shape(v.type), str(v.type.dtype.numpy), name=model.name), outs)
    model._outputs = _flat(model._outputs_struct)
    model.output_names = (sorted(outs) if isinstance(outs, Mapping)
                          else [f"output_{i}" for i in range(len(model._outputs))])
    model._graphs.clear()
    model.built = True
    model._compile_pending()


def _flat(struct) -> list:
    if isinstance(struct, Mapping):
        return [struct[k] for k in sorted(struct)]
    return list(struct) if isinstance(struct, (list, tuple)) else [struct]


def emit(model, b: Builder, values: list, training: bool) -> list:
    """The model's outputs on `values`: the trace of its `call`."""
    single = not isinstance(model._inputs_struct, list)
    return _flat(trace_call(model, b, values[0] if single else values, None, training))

"""Optimizer state in Keras 3's order: `iteration`, `learning_rate` (unless a schedule gives it),
then the slots as Keras 3.15 creates them, then state of no variable (Nadam's u_product).

Keras makes the kinds of one `add_optimizer_variables` call variable by variable (Adam: the
momentum and velocity of the first weight, then of the second ...). nncompile's optimizers list
their slot kinds per call in `_slot_calls`; `_KERAS_JOINT` says which consecutive kinds Keras 3.15
makes in one call.
"""
from __future__ import annotations

import warnings

import numpy as np

from nncompile.keras.optimizers import schedules
from nncompile.runtime import weights

_KERAS_JOINT = {("momentum", "velocity"), ("accumulated_grad", "accumulated_delta_var"),
                ("momentum", "norm"), ("accumulator", "linear"),
                # Adafactor makes r, c and velocity in one loop over the variables
                ("r", "c"), ("c", "velocity")}


def _keras_calls(optimizer) -> list[tuple[str, ...]]:
    kinds = [kind for call in optimizer._slot_calls() for kind in call]
    calls: list[tuple[str, ...]] = []
    for kind in kinds:
        if calls and (calls[-1][-1], kind) in _KERAS_JOINT:
            calls[-1] = calls[-1] + (kind,)
        else:
            calls.append((kind,))
    return calls


def _slot_order(optimizer) -> list[str]:
    """The names of the optimizer's state arrays in Keras's order (the optimizer is built)."""
    names = [optimizer._slot_names[i][kind] for call in _keras_calls(optimizer)
             for i in range(len(optimizer._slot_names)) for kind in call]
    return names + [name for name, _ in optimizer.slots() if name not in set(names)]


def _has_rate_variable(optimizer) -> bool:
    lr = optimizer._learning_rate
    return not isinstance(lr, schedules.LearningRateSchedule) and not callable(lr)


def optimizer_variables(optimizer) -> list[tuple[str, np.ndarray]]:
    """(Keras-style path, value) of every optimizer variable, in Keras 3's order."""
    out = [(f"{optimizer.name}/iteration", np.asarray(optimizer.iterations, np.int64))]
    if _has_rate_variable(optimizer):
        out.append((f"{optimizer.name}/learning_rate", np.asarray(optimizer.learning_rate, np.float32)))
    if optimizer.built:
        arrays = dict(optimizer.slots())
        out += [(name, arrays[name]) for name in _slot_order(optimizer)]
    return out


def restore_optimizer(optimizer, model, values: list[np.ndarray], file: str) -> None:
    """Set `iterations`, the learning rate and the slots from `values` in Keras's order:
    iteration, learning_rate (absent under a schedule, and in tf.keras 2 files), slots. A file
    whose state does not fit this optimizer leaves it fresh, with Keras's warning."""
    if len(values) > 2 and not optimizer.built:
        optimizer.build(model.trainable_weights)
    names = _slot_order(optimizer) if optimizer.built and len(values) > 2 else []
    head = len(values) - len(names)
    if head not in (1, 2) or (head == 2 and not _has_rate_variable(optimizer)):
        return _fresh(file, f"it holds {len(values)} variables; the optimizer '{optimizer.name}' "
                            f"has {len(names)} slots besides its iteration count and learning rate")
    arrays = dict(optimizer.slots()) if names else {}
    slots = values[head:]
    for name, value in zip(names, slots):
        if np.shape(value) != arrays[name].shape:
            return _fresh(file, f"slot '{name}' has shape {arrays[name].shape}, the file has "
                                f"{np.shape(value)}")
    if any(np.ndim(v) != 0 for v in values[:head]):
        return _fresh(file, "its iteration count or learning rate is not a scalar")
    optimizer.iterations = int(values[0])
    if head == 2:
        optimizer.learning_rate = float(values[1])
    for name, value in zip(names, slots):
        with weights.writing(arrays[name]) as array:
            array[...] = value


def _fresh(file: str, why: str) -> None:
    warnings.warn(f"Error in loading the saved optimizer state from '{file}' ({why}). As a "
                  f"result, your model is starting with a freshly initialized optimizer.",
                  stacklevel=3)

"""When weights change: compiled code may keep a weight in a form of its own between calls (a
GEMM's B packed once, as ONNX Runtime prepacks initializers: `codegen.cpu`'s `nncompile_prepare`),
and makes it again when the weights' generation has moved on since it last did.

Every write to a weight moves the generation on: a compiled step that updates parameters (after
each call), `Variable.assign` and what builds on it (`set_weights`, loading weights), a reference
run's updates. The arrays that compiled code keeps packed are made read-only (`keep`), so that a
write going around these (`var.value[...] = x`) fails with numpy's read-only error instead of
leaving the packed copy stale; `writing` opens one for a write that moves the generation on.

    >>> exe = nncompile.compile(nncompile.trace(model))   # packs Dense kernels on its first call
    >>> model.layers[0].kernel.assign(new_kernel)          # the next call packs them again
"""
from __future__ import annotations

import contextlib
import weakref
from typing import Iterator

import numpy as np

generation = 0
_kept: dict[int, weakref.ref] = {}     # id -> the array made read-only by `keep` (arrays are unhashable)


def changed() -> None:
    """Some weight was written: what compiled code keeps of any weight is made again."""
    global generation
    generation += 1


def keep(array: np.ndarray) -> None:
    """Compiled code keeps a form of `array` between calls: make it read-only (see the module)."""
    if array.flags.writeable:
        array.flags.writeable = False
        key = id(array)
        _kept[key] = weakref.ref(array, lambda _: _kept.pop(key, None))


def is_kept(array: np.ndarray) -> bool:
    """Whether `array` is read-only because compiled code keeps a form of it (it may be written
    through `writing`, or in place by compiled steps, which move the generation on)."""
    ref = _kept.get(id(array))
    return ref is not None and ref() is array


@contextlib.contextmanager
def writing(array: np.ndarray, changes: bool = True) -> Iterator[np.ndarray]:
    """`array`, writable for the block even if compiled code keeps a form of it; afterwards the
    generation moves on, unless the write `changes` nothing the weights say (a value made from
    them again, `Executable.make_prepared`, which packs its kept forms itself)."""
    kept = is_kept(array)
    if kept:
        array.flags.writeable = True
    try:
        yield array
    finally:
        if kept:
            array.flags.writeable = False
        if changes:
            changed()

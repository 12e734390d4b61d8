"""What a call of compiled code needs beside the code: its inputs checked, and a binding per set
of symbol sizes (memory plan, arena, the frame of pointers the native code reads).

The per-call cost is what matters here (a batch-1 call of a small model is a few microseconds of
native code): everything that depends only on the input shapes is done once per binding, and a
call does the least that keeps a bad input from reaching native code (see `Executable._execute`).
"""
from __future__ import annotations

import ctypes
import math
from typing import TYPE_CHECKING, Sequence

import numpy as np

from nncompile.codegen.cpu import frame_layout
from nncompile.ir.errors import ShapeError
from nncompile.ir.graph import Value
from nncompile.ir.dims import dim_value
from nncompile.ir.sizes import check_sizes
from nncompile.ir.types import bind_shape, resolve_shape
from nncompile.passes.memory import Home, MemoryPlan, check_fits, plan_memory

if TYPE_CHECKING:
    from nncompile.runtime.cpu import Executable

# Outputs up to this size are written into the binding and copied out (see Binding).
KEPT_OUTPUT_BYTES = 16 << 10


def shares(plan: MemoryPlan) -> dict[Value, Value]:
    """value -> the value owning its memory, for values that do not own theirs."""
    return {v: loc.root for v, loc in plan.locations.items() if loc.root is not v}


class Binding:
    """Everything that depends on the symbol sizes: the memory plan, the arena, and the frame the
    native code reads (`codegen.cpu.frame_layout`: a pointer per buffer slot, a size per symbol,
    the arrays' data offset)."""

    def __init__(self, exe: "Executable", env: dict[str, int], plan: MemoryPlan | None = None):
        self.env = env
        check_sizes(exe.graph, env)
        self.plan = plan or plan_memory(exe.graph, env)
        if shares(self.plan) != exe.shares:
            raise ShapeError(f"graph {exe.graph.name!r}: buffer sharing changed with sizes {env}")
        check_fits(self.plan)
        slot_count, size_count, offset_at = frame_layout(exe.layout)
        self.frame = np.zeros(offset_at + 1, np.uint64)
        self.pointers = self.frame[:slot_count]
        self.sizes = self.frame[slot_count:offset_at].view(np.int64)
        self.sizes[:len(exe.layout.symbols)] = [dim_value(s, env) for s in exe.layout.symbols]
        self.frame[offset_at] = DATA_OFFSET or 0
        self.arena = np.empty(self.plan.arena_bytes + 64, np.uint8)
        self._point_at_memory(exe)
        self.key = tuple(env.values())
        self.outputs = [(resolve_shape(v.type.shape, env), v.type.dtype.numpy) for v in exe.graph.outputs]
        self.args = (self.pointers.ctypes.data, self.sizes.ctypes.data)
        self._split_outputs(exe)
        self._native = exe.native_call
        self._frame_address = self.frame.ctypes.data
        self._entry, self._input_slots = exe.entry, exe.input_slots

    def _point_at_memory(self, exe: "Executable") -> None:
        """Point the slots of the arena's buffers and of the parameters at their memory."""
        base = self.arena.ctypes.data
        base += -base % 64
        for slot, root in enumerate(exe.layout.roots):
            loc = self.plan.where(root)
            if loc.home is Home.ARENA:
                self.pointers[slot] = base + loc.offset
            elif loc.home is Home.PARAM:
                self.pointers[slot] = exe.params[root.name].ctypes.data
        for slot, param in exe.in_place_slots:
            self.pointers[slot] = exe.params[param].ctypes.data
        for slot, pointer in zip(exe.layout.packed_slots(), exe.packed_addresses):
            self.pointers[slot] = pointer

    def _split_outputs(self, exe: "Executable") -> None:
        """Small outputs are written into buffers of the binding, whose slots point there for
        good, and copied out: a copy costs less than a new array's address (see `address`).
        Larger ones get a new array per call."""
        self.kept: list[tuple[int, np.ndarray]] = []
        self.kept_slots: list[tuple[int, int]] = []
        self.fresh: list[tuple[int, int, tuple, np.dtype]] = []
        for i, slot in exe.owned:
            shape, dtype = self.outputs[i]
            if math.prod(shape) * dtype.itemsize <= KEPT_OUTPUT_BYTES:
                buffer = np.empty(shape, dtype)
                self.kept.append((i, buffer))
                self.kept_slots.append((slot, address(buffer)))
            else:
                self.fresh.append((i, slot, shape, dtype))
        self.restore_kept()

    def private(self, exe: "Executable") -> "Binding":
        """A binding with the same plan but an arena and frame of its own."""
        return Binding(exe, self.env, self.plan)

    def call(self, arrays: Sequence[np.ndarray]) -> tuple[list, int]:
        """Point the frame at fresh outputs, make the one native call on checked `arrays`; the
        outputs (by graph output, None where no kernel writes one) and the native status."""
        outs: list = [None] * len(self.outputs)
        for i, slot, shape, dtype in self.fresh:
            outs[i] = out = np.empty(shape, dtype)
            self.pointers[slot] = address(out)
        if self._native is not None:   # the native code reads the inputs' data pointers itself
            status = self._native(self._frame_address, *arrays)
        else:
            for slot, array in zip(self._input_slots, arrays):
                self.pointers[slot] = address(array)
            status = self._entry(*self.args)
        for i, buffer in self.kept:
            outs[i] = buffer.copy()
        return outs, status

    def restore_kept(self) -> None:
        """Point the slots of the kept outputs back at their buffers (after `run_steps`)."""
        for slot, pointer in self.kept_slots:
            self.pointers[slot] = pointer


def checked_array(v: Value, array) -> np.ndarray:
    """`array` as the C-contiguous array of `v`'s dtype the native code reads, or a clear error."""
    if type(array) is np.ndarray and array.dtype == v.type.dtype.numpy and array.flags.c_contiguous:
        return array
    if not isinstance(array, np.ndarray):
        array = np.asarray(array)
    if array.dtype != v.type.dtype.numpy:
        raise ShapeError(f"input {v.name!r}: expected dtype {v.type.dtype}, received {array.dtype}")
    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)
    return array


def bind_symbols(inputs: Sequence[Value], arrays: Sequence[np.ndarray]) -> dict[str, int]:
    """The symbol sizes of checked `arrays`, whose shapes are checked against the inputs' types."""
    env: dict[str, int] = {}
    for v, array in zip(inputs, arrays):
        bind_shape(v.type.shape, array.shape, env, f"input {v.name!r}")
    return env


_BYTE = ctypes.c_char * 1


def address(array: np.ndarray) -> int:
    """The address of an array's first byte; through the buffer protocol, which costs half of
    `array.ctypes.data`, except for read-only and empty arrays."""
    try:
        return ctypes.addressof(_BYTE.from_buffer(array))
    except (TypeError, ValueError):
        return array.ctypes.data


def _data_offset() -> int | None:
    """Where a numpy array object keeps its data pointer (the field `PyArray_DATA` reads), found
    on probe arrays; None, and the runtime asks each array instead, if it is not found."""
    probes = [np.arange(n, dtype=np.float32) for n in (3, 5)]
    for offset in range(8, 72, 8):
        if all(ctypes.c_void_p.from_address(id(p) + offset).value == p.ctypes.data for p in probes):
            return offset
    return None


DATA_OFFSET = _data_offset()

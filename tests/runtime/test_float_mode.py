"""Training steps run with denormals flushed to zero, on every thread of the pool, and give the
caller its float mode back; inference keeps IEEE arithmetic (`codegen/cpu.py: _emit_flushing`)."""
from __future__ import annotations

import numpy as np

import nncompile
from nncompile.ir import Builder, f32

TINY = np.float32(2.0 ** -120)      # normal; times 2**-10 it is a denormal (2**-130)


def _halving(updates: bool, size: int):
    """w * 2**-10 as an output, or as the update of w (a training step's kind of graph)."""
    b = Builder()
    b.input("x", f32[1])
    w = b.param("w", np.full(size, TINY, np.float32))
    scaled = b.mul(w, b.scalar(2.0 ** -10, w))
    if updates:
        b.graph.updates["w_next"] = "w"
        return nncompile.compile(b.finish([scaled, b.op("neg", b.graph.inputs[0])], ["w_next", "y"]))
    return nncompile.compile(b.finish([scaled], ["y"]))


def test_a_training_step_flushes_denormals_on_every_thread_and_restores_the_callers_mode():
    for size in (16, 1 << 22):       # one thread; a loop split between the threads
        exe = _halving(updates=True, size=size)
        exe(np.ones(1, np.float32))
        assert not exe.params["w"].any(), "2**-130 is flushed to 0 by every thread"
        # this thread's float mode is back: numpy still makes the denormal
        assert np.float32(TINY) * np.float32(2.0 ** -10) == np.float32(2.0 ** -130)


def test_inference_keeps_denormals_on_every_thread():
    for size in (16, 1 << 22):
        exe = _halving(updates=False, size=size)
        np.testing.assert_array_equal(exe(np.ones(1, np.float32)), np.full(size, 2.0 ** -130, np.float32))


def test_inference_after_a_training_step_on_the_pool_keeps_denormals():
    """A worker returns to its own mode after a training step's job."""
    _halving(updates=True, size=1 << 22)(np.ones(1, np.float32))
    exe = _halving(updates=False, size=1 << 22)
    np.testing.assert_array_equal(exe(np.ones(1, np.float32)), np.full(1 << 22, 2.0 ** -130, np.float32))

"""Signal ops of `keras.ops`: the window functions, overlapping frames of a signal and 1-D
cross-correlation, composed from the op table.

    >>> from nncompile.keras import ops
    >>> ops.extract_sequences(np.arange(6, dtype="float32"), 4, 2).tolist()
    [[0.0, 1.0, 2.0, 3.0], [2.0, 3.0, 4.0, 5.0]]
"""
from __future__ import annotations

import numpy as np

from nncompile.ir.ops.shape import SLICE_END
from nncompile.keras import backend
from nncompile.keras.ops.core import float_dtype, ir_dtype, keras_op, result_type, static_length, tensor, tensors


def _window(numpy_window, name: str, doc: str):
    def window(x):
        return numpy_window(int(x)).astype(ir_dtype(backend.floatx()).numpy)
    window.__name__ = window.__qualname__ = name
    window.__doc__ = doc
    return window


bartlett = _window(np.bartlett, "bartlett", "The Bartlett (triangular) window of `x` points: a constant.")
blackman = _window(np.blackman, "blackman", "The Blackman window of `x` points: a constant.")
hamming = _window(np.hamming, "hamming", "The Hamming window of `x` points: a constant.")
hanning = _window(np.hanning, "hanning", "The Hann window of `x` points: a constant.")


def kaiser(x, beta):
    """The Kaiser window of `x` points with shape `beta`: a constant."""
    return np.kaiser(int(x), float(beta)).astype(ir_dtype(backend.floatx()).numpy)


def _frames(b, v, length: int, stride: int, op: str):
    """The windows of `length` elements, `stride` apart, of v's last axis: (..., frames, length)."""
    n = static_length(v, -1, op, "the last axis")
    if length <= 0 or stride <= 0:
        raise ValueError(f"ops.{op}: the sequence length and stride must be positive; received {length}, {stride}")
    count = max(0, (n - length) // stride + 1)
    at = (np.arange(count)[:, None] * stride + np.arange(length)[None, :]).astype(np.int32)
    return b.gather(v, b.constant(at), axis=v.type.rank - 1)


@keras_op
def extract_sequences(b, x, sequence_length, sequence_stride):
    """The frames of `sequence_length` elements, `sequence_stride` apart, of x's last axis:
    (..., frames, sequence_length)."""
    return _frames(b, tensor(b, x), int(sequence_length), int(sequence_stride), "extract_sequences")


@keras_op
def correlate(b, x1, x2, mode="valid"):
    """The cross-correlation of two vectors, c[k] = sum_n x1[n + k] x2[n] (numpy's correlate):
    "valid" where they overlap wholly, "same" x1's length, "full" every overlap."""
    if mode not in ("valid", "same", "full"):
        raise ValueError(f"ops.correlate: mode must be 'valid', 'same' or 'full'; received {mode!r}")
    u, v = tensors(b, x1, x2, dtype=float_dtype(result_type(x1, x2, float)))
    if u.type.rank != 1 or v.type.rank != 1:
        raise ValueError("ops.correlate: both inputs must be 1-D")
    n, m = u.type.shape[0], v.type.shape[0]
    if n < m:     # numpy swaps them, and reverses the result
        return b.slice(correlate.__wrapped__(b, v, u, mode), starts=[-1], ends=[-SLICE_END], axes=[0], steps=[-1])
    pad = {"valid": (0, 0), "same": (m // 2, m - 1 - m // 2), "full": (m - 1, m - 1)}[mode]
    padded = b.pad(u, pads=list(pad), value=0.0) if any(pad) else u
    frames = _frames(b, padded, m, 1, "correlate")
    return b.reduce_sum(b.mul(frames, v), axes=[1])

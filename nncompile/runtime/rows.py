"""`array[index]` for the samples of a shuffled batch, gathered on every core.

    >>> import numpy as np
    >>> take(np.arange(6.0).reshape(3, 2), np.array([2, 0]))
    array([[4., 5.],
           [0., 1.]])

`Model.fit` gathers each chunk of shuffled batches before the compiled steps run on it. The rows
lie anywhere in the data set, mostly out of the caches, and numpy copies them one at a time on
one core: 64-80 us for 128 MNIST samples (400 KB) against 33-45 us on the two cores of an
Emerald Rapids Xeon, out of a 450 us training step. Small gathers, other layouts and indices
numpy would refuse go to numpy (which says what is wrong with them).
"""
from __future__ import annotations

import numpy as np

from nncompile.codegen import parallel

NATIVE_BYTES = 64 << 10     # below this, waking the pool costs more than it saves


def take(array: np.ndarray, index: np.ndarray) -> np.ndarray:
    """`array[index]` for a 1-D integer `index` of rows."""
    rows = len(index) if isinstance(index, np.ndarray) and index.ndim == 1 else 0
    if not (type(array) is np.ndarray and array.ndim >= 1 and array.flags.c_contiguous and rows
            and index.dtype == np.int64 and index.flags.c_contiguous and not array.dtype.hasobject):
        return array[index]
    row_bytes = array.itemsize * (array.size // len(array) if len(array) else 0)
    if row_bytes * rows < NATIVE_BYTES or index.min() < 0 or index.max() >= len(array):
        return array[index]
    out = np.empty((rows,) + array.shape[1:], array.dtype)
    parallel.take_rows(array.ctypes.data, row_bytes, index.ctypes.data, rows, out.ctypes.data,
                       min(parallel.num_threads(), rows))
    return out

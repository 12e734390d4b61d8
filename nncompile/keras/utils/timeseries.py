"""`keras.utils.timeseries_dataset_from_array`: sliding windows over a series, batch by batch."""
from __future__ import annotations

import numpy as np

from nncompile.keras.utils.py_dataset import Batches


class TimeseriesDataset(Batches):
    """The windows of `timeseries_dataset_from_array`: batch `i` is `(inputs, targets)` (or the
    inputs alone without targets), numpy arrays cut from the series when asked for, so that the
    windows, which overlap, are never all held at once."""

    def __init__(self, data: np.ndarray, targets: np.ndarray | None, starts: np.ndarray,
                 offsets: np.ndarray, batch_size: int | None):
        super().__init__(len(starts), batch_size)
        self._data, self._targets = data, targets
        self._starts, self._offsets = starts, offsets

    def batch(self, chosen):
        starts = self._starts[chosen]
        inputs = self._data[np.add.outer(starts, self._offsets)]
        return inputs if self._targets is None else (inputs, self._targets[starts])


def _check_bounds(data_length: int, start_index, end_index, sequence_stride: int,
                  sampling_rate: int, format: str) -> None:
    """Keras's checks, in Keras's order and words (a zero start or end index is not checked)."""
    if start_index:
        if start_index < 0:
            raise ValueError(f"`start_index` must be 0 or greater. Received: start_index={start_index}")
        if start_index >= data_length:
            raise ValueError(f"`start_index` must be lower than the length of the data. Received: "
                             f"start_index={start_index}, for data of length {data_length}")
    if end_index:
        if start_index and end_index <= start_index:
            raise ValueError(f"`end_index` must be higher than `start_index`. Received: "
                             f"start_index={start_index}, and end_index={end_index} ")
        if end_index >= data_length:
            raise ValueError(f"`end_index` must be lower than the length of the data. Received: "
                             f"end_index={end_index}, for data of length {data_length}")
        if end_index <= 0:
            raise ValueError(f"`end_index` must be higher than 0. Received: end_index={end_index}")
    for name, value in (("sampling_rate", sampling_rate), ("sequence_stride", sequence_stride)):
        if value <= 0:
            raise ValueError(f"`{name}` must be higher than 0. Received: {name}={value}")
        if value >= data_length:
            raise ValueError(f"`{name}` must be lower than the length of the data. Received: "
                             f"{name}={value}, for data of length {data_length}")
    if format not in ("tf", "grain"):
        raise ValueError(f'`format` should be either "tf" or "grain". Received: format={format}')


def timeseries_dataset_from_array(data, targets, sequence_length, sequence_stride=1,
                                  sampling_rate=1, batch_size=128, shuffle=False, seed=None,
                                  start_index=None, end_index=None, format="tf"):
    """A dataset of sliding windows over `data` (axis 0 is time), for `fit`, `evaluate` and
    `predict` or a `for` loop: the window starting at step `s` holds `data[s]`,
    `data[s + sampling_rate]`, ... (`sequence_length` steps), its target is `targets[s]`, and
    windows start every `sequence_stride` steps within `data[start_index:end_index]`.

    Keras returns a `tf.data.Dataset` (or a Grain dataset for `format="grain"`); nncompile
    returns a `keras.utils.PyDataset` (either format) whose batches are the numpy arrays that
    dataset yields: `(inputs, targets)`, or the inputs alone when `targets` is None, single
    windows when `batch_size` is None. `shuffle` permutes the windows with
    `np.random.RandomState(seed)` as Keras does (a seed drawn from numpy when None), without
    Keras's second, TensorFlow-seeded shuffle within groups of 8 batches. `fit` shuffles the
    order of the batches of a PyDataset unless given `shuffle=False` (it leaves a tf.data
    dataset's order alone).

    >>> ds = timeseries_dataset_from_array(np.arange(10), np.arange(10) * 10, sequence_length=3,
    ...                                    batch_size=4)
    >>> inputs, targets = ds[0]
    >>> inputs.tolist(), targets.tolist(), len(ds)
    ([[0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 5]], [0, 10, 20, 30], 2)
    """
    _check_bounds(len(data), start_index, end_index, sequence_stride, sampling_rate, format)
    start_index = 0 if start_index is None else start_index
    end_index = len(data) if end_index is None else end_index
    count = end_index - start_index - (sequence_length - 1) * sampling_rate
    if targets is not None:
        count = min(count, len(targets))
    # Keras keeps start positions in int32 unless they need more.
    starts = np.arange(0, count, sequence_stride, dtype="int32" if count < 2147483647 else "int64")
    if shuffle:
        if seed is None:
            seed = np.random.randint(1e6)
        np.random.RandomState(seed).shuffle(starts)
    offsets = np.arange(0, sequence_length * sampling_rate, sampling_rate)
    target_steps = None if targets is None else np.asarray(targets[start_index:end_index])
    return TimeseriesDataset(np.asarray(data[start_index:end_index]), target_steps, starts,
                             offsets, batch_size)

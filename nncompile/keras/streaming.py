"""Data that arrives batch by batch: a `keras.utils.PyDataset`, a generator, or any other
iterable of `x`, `(x,)`, `(x, y)` or `(x, y, sample_weight)` batches.

A `Stream` hands out one epoch of batches at a time as Keras 3's epoch iterator does: a
PyDataset is read by index (batch order shuffled with `shuffle`, `on_epoch_begin` and
`on_epoch_end` around every pass, `workers` threads reading ahead); a generator goes on where
the last epoch stopped when `steps` is given and is read to its end otherwise. Only the batches
read ahead are held, so memory stays bounded by a few batches whatever the data set's size.
"""
from __future__ import annotations

import collections
import itertools
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, Mapping

import numpy as np

from nncompile.keras.utils.py_dataset import PyDataset

_END = object()


def is_stream(x) -> bool:
    """Whether `x` is data read batch by batch rather than arrays (or lists, dicts of them)."""
    if isinstance(x, PyDataset):
        return True
    if isinstance(x, (np.ndarray, list, tuple, Mapping, str, bytes)) or hasattr(x, "__array__"):
        return False
    return hasattr(x, "__iter__") or hasattr(x, "__next__")


def kind(x) -> str:
    return "PyDataset" if isinstance(x, PyDataset) else "generator or iterable"


def refuse_arguments(x, y, sample_weight) -> None:
    """Targets and weights come inside the batches of a stream, as Keras 3 requires."""
    for name, value, what in (("y", y, "the targets"), ("sample_weight", sample_weight,
                                                        "the sample weights")):
        if value is not None:
            raise ValueError(f"When providing `x` as a {kind(x)}, `{name}` should not be passed. "
                             f"Instead, {what} should be included as part of the {kind(x)}.")


def refuse_split(x, validation_split) -> None:
    if validation_split:
        raise ValueError(f"`validation_split` is only supported for NumPy arrays, not for a "
                         f"{kind(x)}: pass `validation_data` instead. Received: "
                         f"validation_split={validation_split!r}")


def unpack(batch, class_weight=None) -> tuple:
    """A batch as (x, y, sample_weight), y and sample_weight None when absent."""
    if isinstance(batch, (Mapping, np.ndarray)):
        batch = (batch,)
    if isinstance(batch, list):
        batch = tuple(batch)
    if not isinstance(batch, tuple) or len(batch) not in (1, 2, 3):
        raise ValueError("A batch of a PyDataset, generator or iterable must be a tuple or a dict. "
                         "If a tuple, it must be ordered either (input,) or (inputs, targets) or "
                         "(inputs, targets, sample_weights). "
                         f"Received: {str(batch)[:100]}... of type {type(batch)}")
    if class_weight is not None and len(batch) == 3:
        raise ValueError("You cannot specify `class_weight` and `sample_weight` at the same time.")
    return batch + (None,) * (3 - len(batch))


class Stream:
    """The batches of `source`, one epoch at a time: at most `steps` a pass when given;
    `class_weight` weighs the samples of batches that carry no weights."""

    def __init__(self, source, shuffle=False, steps: int | None = None, class_weight=None):
        self.source = source
        self.shuffle = bool(shuffle)
        self.limit = steps
        self.class_weight = class_weight
        self._iterator: Iterator | None = None
        self.ran_out = False   # the last epoch got fewer batches than it asked for

    @property
    def steps(self) -> int | None:
        """Batches an epoch, or None when only the end of the data tells."""
        if self.limit is not None:
            return self.limit
        return self.source.num_batches if isinstance(self.source, PyDataset) else None

    def epoch(self) -> Iterator:
        """The batches of one epoch, as the source gives them."""
        dataset = self.source if isinstance(self.source, PyDataset) else None
        if dataset is not None:
            dataset.on_epoch_begin()
        if self._iterator is None or self.limit is None:
            self._iterator = self._new_iterator()
        wanted, count = self.steps, 0
        self.ran_out = False
        try:
            while wanted is None or count < wanted:
                batch = next(self._iterator, _END)
                if batch is _END:
                    self._iterator = None
                    self.ran_out = count == 0 or self.limit is not None
                    break
                count += 1
                yield batch
        finally:
            if self.ran_out:
                warnings.warn("Your input ran out of data; interrupting training. Make sure that "
                              "your dataset or generator can generate at least `steps_per_epoch "
                              "* epochs` batches.", stacklevel=2)
            if dataset is not None:
                dataset.on_epoch_end()

    def _new_iterator(self) -> Iterator:
        if not isinstance(self.source, PyDataset):
            return iter(self.source)
        dataset = self.source
        count = dataset.num_batches
        indices = itertools.count() if count is None else range(count)
        if self.shuffle and count is not None:
            # numpy's global state, as for arrays: np.random.seed and set_random_seed both seed it
            indices = np.random.permutation(count).tolist()
        workers = dataset.workers
        if dataset.use_multiprocessing:
            warnings.warn("nncompile reads the batches of a PyDataset with threads: "
                          "`use_multiprocessing=True` is taken as threads (`workers` of them)",
                          stacklevel=4)
        if workers > 1 or dataset.use_multiprocessing:
            return _read_ahead(dataset, iter(indices), max(workers, 1), max(dataset.max_queue_size, 1))
        return (dataset[i] for i in indices)


def _read_ahead(dataset: PyDataset, indices: Iterator[int], workers: int, depth: int) -> Iterator:
    """`dataset[i]` for each index in order, read by `workers` threads at most `depth` ahead."""
    pool = ThreadPoolExecutor(workers, thread_name_prefix="PyDataset")
    pending: collections.deque = collections.deque()
    try:
        for index in itertools.islice(indices, depth):
            pending.append(pool.submit(dataset.__getitem__, index))
        while pending:
            batch = pending.popleft().result()
            index = next(indices, None)
            if index is not None:
                pending.append(pool.submit(dataset.__getitem__, index))
            yield batch
    finally:
        pool.shutdown(wait=False, cancel_futures=True)

"""`keras.utils.PyDataset` (also `keras.utils.Sequence`): data produced batch by batch."""
from __future__ import annotations

import warnings


class PyDataset:
    """Base class of a data set written in Python that `fit`, `evaluate` and `predict` read one
    batch at a time, so that it never has to fit in memory.

    A subclass implements `__getitem__(index)`, which returns a whole batch: `x`, `(x,)`,
    `(x, y)` or `(x, y, sample_weight)` (each a numpy array, a list of them for several inputs,
    or a dict by input name), and `__len__()`, the number of batches (or a `num_batches`
    property that is None for an endless data set). `on_epoch_begin` / `on_epoch_end` are
    called around every pass. `workers` threads read batches ahead, at most `max_queue_size`
    of them; nncompile reads with threads also when `use_multiprocessing=True` (with a warning).

    >>> import numpy as np
    >>> class Squares(PyDataset):
    ...     def __init__(self, **kwargs):
    ...         super().__init__(**kwargs)
    ...     def __len__(self):
    ...         return 3
    ...     def __getitem__(self, index):
    ...         x = np.full((2, 1), index, "float32")
    ...         return x, x ** 2
    >>> len(Squares()), Squares()[2][1].ravel().tolist()
    (3, [4.0, 4.0])
    """

    def __init__(self, workers=1, use_multiprocessing=False, max_queue_size=10):
        self._workers = workers
        self._use_multiprocessing = use_multiprocessing
        self._max_queue_size = max_queue_size

    def _warn_if_super_not_called(self) -> None:
        missing = False
        for name, default in (("_workers", 1), ("_use_multiprocessing", False),
                              ("_max_queue_size", 10)):
            if not hasattr(self, name):
                setattr(self, name, default)
                missing = True
        if missing:
            warnings.warn("Your `PyDataset` class should call `super().__init__(**kwargs)` in its "
                          "constructor. `**kwargs` can include `workers`, `use_multiprocessing`, "
                          "`max_queue_size`. Do not pass these arguments to `fit()`, as they "
                          "will be ignored.", stacklevel=3)

    @property
    def workers(self):
        self._warn_if_super_not_called()
        return self._workers

    @workers.setter
    def workers(self, value):
        self._workers = value

    @property
    def use_multiprocessing(self):
        self._warn_if_super_not_called()
        return self._use_multiprocessing

    @use_multiprocessing.setter
    def use_multiprocessing(self, value):
        self._use_multiprocessing = value

    @property
    def max_queue_size(self):
        self._warn_if_super_not_called()
        return self._max_queue_size

    @max_queue_size.setter
    def max_queue_size(self, value):
        self._max_queue_size = value

    def __getitem__(self, index):
        """The batch at position `index`."""
        raise NotImplementedError

    @property
    def num_batches(self):
        """The number of batches, or None for a data set without end."""
        if hasattr(self, "__len__"):
            return len(self)
        raise NotImplementedError("You need to implement the `num_batches` property:\n\n"
                                  "@property\ndef num_batches(self):\n  return ...")

    def on_epoch_begin(self):
        """Called at the beginning of every epoch."""

    def on_epoch_end(self):
        """Called at the end of every epoch."""


# Keras 2's name for it, kept by Keras 3.
Sequence = PyDataset


class Batches(PyDataset):
    """A data set of `count` items, `batch_size` of them a batch (None: one item a batch, without
    a batch axis); a subclass's `batch(chosen)` makes the batch of `chosen`, an item's index or a
    slice of them. The data sets `keras.utils` makes (timeseries windows, folders of files) read
    their items only when a batch is asked for."""

    def __init__(self, count: int, batch_size: int | None):
        super().__init__()
        self._count, self._batch_size = count, batch_size

    def __len__(self) -> int:
        if self._batch_size is None:
            return self._count
        return -(-self._count // self._batch_size)

    def __getitem__(self, index: int):
        if not -len(self) <= index < len(self):
            raise IndexError(f"batch index {index} is out of range for a dataset of {len(self)} batches")
        index %= len(self)
        if self._batch_size is None:
            return self.batch(index)
        return self.batch(slice(index * self._batch_size, (index + 1) * self._batch_size))

    def __iter__(self):
        return (self[i] for i in range(len(self)))

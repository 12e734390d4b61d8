"""`keras.utils.split_dataset`: in-memory samples cut into a left and a right part."""
from __future__ import annotations

import random

import numpy as np


def _samples(dataset) -> int:
    """The number of samples of an array or a list / tuple of arrays, checked as Keras checks."""
    if isinstance(dataset, np.ndarray):
        count = len(dataset)
    else:
        kind = "tuple" if isinstance(dataset, tuple) else "list"
        if not dataset:
            raise ValueError("Received an empty list dataset. Please provide a non-empty list of "
                             "arrays." if kind == "list" else "Received an empty list dataset."
                             "Please provide a non-empty tuple of arrays.")
        for i, element in enumerate(dataset):
            if not isinstance(element, np.ndarray):
                raise ValueError(f"Expected a {kind} of `numpy.ndarray` objects,Received: "
                                 f"{type(element)} at index {i}.")
            if element.shape[0] != dataset[0].shape[0]:
                raise ValueError(f"Received a {kind} of NumPy arrays with different lengths."
                                 f"Mismatch found at index {i}, Expected shape={dataset[0].shape} "
                                 f"Received shape={element.shape}.Please provide a {kind} of "
                                 f"NumPy arrays of the same length.")
        count = len(dataset[0])
    if count == 0:
        raise ValueError("Received an empty dataset. Argument `dataset` must be a non-empty "
                         "list/tuple of `numpy.ndarray` objects or `tf.data.Dataset` objects.")
    return count


def _check_size_types(left_size, right_size) -> None:
    left_type, right_type = type(left_size), type(right_size)
    left_bad = left_size is not None and left_type not in (int, float)
    right_bad = right_size is not None and right_type not in (int, float)
    if left_bad and right_bad:
        raise TypeError(f"Invalid `left_size` and `right_size` Types. Expected: integer or float or "
                        f"None, Received: type(left_size)={left_type} and "
                        f"type(right_size)={right_type}")
    if left_bad:
        raise TypeError(f"Invalid `left_size` Type. Expected: int or float or None, Received: "
                        f"type(left_size)={left_type}.  ")
    if right_bad:
        raise TypeError(f"Invalid `right_size` Type. Expected: int or float or None,Received: "
                        f"type(right_size)={right_type}.")


def _out_of_range(size, total: int) -> bool:
    # Exact types, as Keras tests them: a bool or a numpy integer is neither an int nor a float.
    return (type(size) is int and not 0 < size < total) or (type(size) is float and not 0 < size < 1)


def _split_sizes(left_size, right_size, total: int) -> tuple[int, int]:
    """Keras's sizes of the two parts: fractions rounded, counts kept, None the complement."""
    _check_size_types(left_size, right_size)
    if left_size == 0 and right_size == 0:
        raise ValueError("Both `left_size` and `right_size` are zero. At least one of the split "
                         "sizes must be non-zero.")
    if _out_of_range(left_size, total):
        raise ValueError(f"`left_size` should be either a positive integer smaller than {total}, "
                         f"or a float within the range `[0, 1]`. Received: left_size={left_size}")
    if _out_of_range(right_size, total):
        raise ValueError(f"`right_size` should be either a positive integer and smaller than "
                         f"{total} or a float within the range `[0, 1]`. Received: "
                         f"right_size={right_size}")
    if type(left_size) is type(right_size) is float and left_size + right_size > 1:
        raise ValueError("The sum of `left_size` and `right_size` is greater than 1. It must be "
                         "less than or equal to 1.")
    # Counts become floats, fractions rounded ints, as in Keras (its messages show which).
    left = round(left_size * total) if type(left_size) is float else \
        (None if left_size is None else float(left_size))
    right = round(right_size * total) if type(right_size) is float else \
        (None if right_size is None else float(right_size))
    left = total - right if left is None else left
    right = total - left if right is None else right
    if left + right > total:
        raise ValueError(f"The sum of `left_size` and `right_size` should be smaller than the "
                         f"{total}. Received: left_size + right_size = {left + right}and "
                         f"total_length = {total}")
    for split, side in ((left, "left"), (right, "right")):
        if split == 0:
            raise ValueError(f"With `dataset` of length={total}, `left_size`={left} and "
                             f"`right_size`={right}.Resulting {side} side dataset split will be "
                             f"empty. Adjust any of the aforementioned parameters")
    return int(left), int(right)


def split_dataset(dataset, left_size=None, right_size=None, shuffle=False, seed=None,
                  preferred_backend=None):
    """Split the samples of `dataset` (a numpy array, or a list or tuple of arrays of one
    length) into a left part of `left_size` samples and a right part of `right_size`: a float
    in (0, 1) is a fraction of the samples, an int a count, None the rest. With `shuffle`, the
    samples are permuted first, in the order Keras's `random.Random(seed)` shuffle gives.

    Keras returns two unbatched `tf.data.Dataset`s; nncompile returns what a user then hands
    to `fit`: for an array, two arrays; for a list or tuple of arrays, two tuples of arrays
    (`model.fit(*left, batch_size=32)`, `x_val, y_val = right`). The samples are copied. The
    right part holds the last `right_size` samples, so samples are left out when the two sizes
    sum to less than the whole. `preferred_backend` is taken for Keras's signature; the split
    is Keras's TensorFlow one whatever it says.

    >>> x, y = np.arange(10).reshape(5, 2), np.arange(5)
    >>> (x_left, y_left), (x_right, y_right) = split_dataset((x, y), left_size=0.6)
    >>> y_left.tolist(), y_right.tolist()
    ([0, 1, 2], [3, 4])
    """
    if not isinstance(dataset, (list, tuple, np.ndarray)):
        raise TypeError(f"Unsupported dataset type: {type(dataset)}")
    if left_size is None and right_size is None:
        raise ValueError("At least one of the `left_size` or `right_size` must be specified. "
                         "Received: left_size=None and right_size=None")
    total = _samples(dataset)
    order = list(range(total))
    if shuffle:
        if seed is None:
            seed = random.randint(0, int(1e6))
        # Keras reseeds Python's global generator; a generator of its own shuffles alike.
        random.Random(seed).shuffle(order)
    left, right = _split_sizes(left_size, right_size, total)
    parts = order[:left], order[total - right:]
    if isinstance(dataset, np.ndarray):
        return tuple(dataset[p] for p in parts)
    return tuple(tuple(a[p] for a in dataset) for p in parts)

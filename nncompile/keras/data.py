"""The data and the counts that `fit`, `evaluate` and `predict` take, checked here once.

Every check raises one ValueError that names the argument, what was expected and what was
received, as Keras 3's own messages do. Arrays are converted to the dtypes the model declares
without ever wrapping a value: an integer that the declared dtype cannot hold is an error.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from nncompile.keras.layers.arguments import positive_int

DEFAULT_BATCH_SIZE = 32


def batch_size(value, owner: str, arg: str = "batch_size", default: int = DEFAULT_BATCH_SIZE) -> int:
    """A batch size as Keras takes it: None for `default` (32), else a positive integer."""
    return default if value is None else positive_int(value, arg, owner)


def optional_count(value, arg: str, owner: str) -> int | None:
    """A number of steps: None (all of them) or a positive integer."""
    return None if value is None else positive_int(value, arg, owner)


def numeric_array(value, where: str) -> np.ndarray:
    """`value` as a bool, integer or float array; `where` says what it is in the error."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where} could not be converted to an array: {e}") from None
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{where} must be numeric: received an array of dtype {array.dtype}")
    return array


def cast(array: np.ndarray, dtype, where: str) -> np.ndarray:
    """`array` as `dtype`. Casting to an integer dtype checks the range first: numpy would wrap
    2**32 + 3 to 3 in int32, and an Embedding would then silently read row 3."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iu" and array.size and not np.can_cast(array.dtype, dtype, "safe"):
        info = np.iinfo(dtype)
        if array.dtype.kind == "f":   # NaN fails both comparisons; the bounds are exact floats
            bad = array[~((array >= float(info.min)) & (array < float(info.max) + 1))]
        else:
            bad = array[(array < info.min) | (array > info.max)]
        if bad.size:
            raise ValueError(f"{where} holds the value {bad.flat[0].item()!r}, which {dtype} (the "
                             f"dtype it is cast to) cannot hold: expected values in "
                             f"[{info.min}, {info.max}]")
    return array.astype(dtype, copy=False)


def check_cardinality(model_name: str, counts: Sequence[tuple[str, int]]) -> None:
    """One number of samples for every array: `counts` holds (what the array is, its length)."""
    if len({count for _, count in counts}) > 1:
        shown = ", ".join(f"{count} samples for {what}" for what, count in counts)
        raise ValueError(f'Data cardinality is ambiguous: model "{model_name}" received {shown}. '
                         f"Make sure all arrays contain the same number of samples.")


def training_count(validation_split, count: int, owner: str) -> int:
    """How many of the `count` samples are trained on when the last `validation_split` of them
    are held out for validation, as Keras 3 splits them (before any shuffling)."""
    if (isinstance(validation_split, bool)
            or not isinstance(validation_split, (int, float, np.integer, np.floating))
            or not 0 <= validation_split < 1):
        raise ValueError(f"{owner}: the `validation_split` argument must be a float in [0, 1), the "
                         f"fraction of the samples held out for validation. Received: "
                         f"validation_split={validation_split!r}")
    kept = int(count * (1 - validation_split))
    if validation_split and kept in (0, count):
        raise ValueError(f"Training data contains {count} samples, which is not sufficient to split "
                         f"it into a validation and training set as specified by "
                         f"`validation_split={validation_split}`. Either provide more data, or a "
                         f"different value for the `validation_split` argument.")
    return kept

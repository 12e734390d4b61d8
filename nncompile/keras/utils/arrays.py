"""The array helpers of `keras.utils`: labels to one-hot, norms, padding of sequences."""
from __future__ import annotations

import numpy as np

from nncompile.keras import data


def to_categorical(x, num_classes: int | None = None) -> np.ndarray:
    """One-hot encode integer class labels: shape `x.shape + (num_classes,)`, float64 as in Keras.

    A trailing axis of size 1 is dropped first, so labels of shape (n, 1) give (n, num_classes).

    >>> to_categorical([0, 2], num_classes=3)
    array([[1., 0., 0.],
           [0., 0., 1.]])
    """
    labels = np.asarray(x)
    if labels.dtype.kind not in "biuf":
        raise ValueError(f"to_categorical expects integer class labels; received an array of "
                         f"dtype {labels.dtype}")
    if labels.dtype.kind == "f" and not np.array_equal(labels, np.round(labels)):
        raise ValueError("to_categorical expects integer class labels; received non-integral "
                         f"values such as {labels[labels != np.round(labels)].flat[0]!r}")
    labels = labels.astype("int64")
    shape = labels.shape
    if len(shape) > 1 and shape[-1] == 1:
        shape = shape[:-1]
    labels = labels.reshape(-1)
    if not num_classes:
        if labels.size == 0:
            raise ValueError("to_categorical cannot infer `num_classes` from empty labels; pass "
                             "num_classes=")
        num_classes = int(labels.max()) + 1
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise ValueError(f"to_categorical: label {labels[index]} (at flat index {index}) is not in "
                         f"[0, num_classes={num_classes})")
    categorical = np.zeros((labels.shape[0], num_classes))
    categorical[np.arange(labels.shape[0]), labels] = 1
    return categorical.reshape(shape + (num_classes,))


def normalize(x, axis: int = -1, order: int = 2) -> np.ndarray:
    """`x` divided by its `order`-norm along `axis` (norms of zero are left as 1, so zero rows
    stay zero).

    >>> normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    array([[0.6, 0.8],
           [0. , 0. ]])
    """
    x = np.asarray(x)
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"normalize: axis={axis} is out of range for an array of rank {x.ndim}")
    norm = np.linalg.norm(x, order, axis, keepdims=True)
    norm[norm == 0] = 1
    return x / norm


def pad_sequences(sequences, maxlen: int | None = None, dtype="int32", padding: str = "pre",
                  truncating: str = "pre", value=0.0) -> np.ndarray:
    """Pad (or truncate) a list of sequences to one length: an array `(len(sequences), maxlen)`
    plus any trailing sample shape. `maxlen` defaults to the longest sequence; padding and
    truncation happen at the start ('pre') or the end ('post').

    >>> pad_sequences([[1], [2, 3], [4, 5, 6]], maxlen=2)
    array([[0, 1],
           [2, 3],
           [5, 6]], dtype=int32)
    """
    if not hasattr(sequences, "__len__"):
        raise ValueError("`sequences` must be iterable.")
    if padding not in ("pre", "post"):
        raise ValueError(f'Padding type "{padding}" not understood')
    if truncating not in ("pre", "post"):
        raise ValueError(f'Truncating type "{truncating}" not understood')
    lengths, sample_shape = [], None
    for s in sequences:
        try:
            lengths.append(len(s))
        except TypeError as e:
            raise ValueError("`sequences` must be a list of iterables. "
                             f"Found non-iterable: {s}") from e
        if sample_shape is None and len(s):
            sample_shape = np.asarray(s).shape[1:]
    sample_shape = sample_shape or ()
    if maxlen is None:
        maxlen = max(lengths, default=0)
    is_text_dtype = np.issubdtype(dtype, np.str_) or np.issubdtype(dtype, np.bytes_)
    if isinstance(value, str) and dtype is not object and not is_text_dtype:
        raise ValueError(f"`dtype` {dtype} is not compatible with `value`'s type: {type(value)}\n"
                         "You should set `dtype=object` for variable length strings.")
    out = np.full((len(sequences), maxlen) + sample_shape, value, dtype=dtype)
    for index, s in enumerate(sequences):
        if not len(s) or not maxlen:
            continue
        part = s[-maxlen:] if truncating == "pre" else s[:maxlen]
        # Token ids are range-checked into an integer dtype; object and text dtypes take anything.
        kept = (data.cast(np.asarray(part), dtype, f"The sequence at position {index}")
                if np.dtype(dtype).kind in "iu" else np.asarray(part, dtype=dtype))
        if kept.shape[1:] != sample_shape:
            raise ValueError(f"Shape of sample {kept.shape[1:]} of sequence at position {index} "
                             f"is different from expected shape {sample_shape}")
        if padding == "post":
            out[index, :len(kept)] = kept
        else:
            out[index, -len(kept):] = kept
    return out

"""`(x, y, sample_weight)` tuples as `fit` takes them, packed and unpacked (Keras's
`keras.utils.pack_x_y_sample_weight` and `unpack_x_y_sample_weight`)."""
from __future__ import annotations


def pack_x_y_sample_weight(x, y=None, sample_weight=None):
    """The batch tuple `fit` reads: `x` alone (wrapped as `(x,)` when it is itself a list or
    tuple of inputs, which would otherwise read as `(x, y)`), `(x, y)` or `(x, y, sample_weight)`.

    >>> pack_x_y_sample_weight([1, 2]), pack_x_y_sample_weight(1, 2)
    (([1, 2],), (1, 2))
    """
    if y is None:
        return (x,) if isinstance(x, (tuple, list)) else x
    if sample_weight is None:
        return (x, y)
    return (x, y, sample_weight)


def unpack_x_y_sample_weight(data):
    """`(x, y, sample_weight)` from `x`, `(x,)`, `(x, y)` or `(x, y, sample_weight)` (a list is
    read as a tuple), with None for what is missing: what a custom `train_step` starts with.

    >>> unpack_x_y_sample_weight(("features", "labels"))
    ('features', 'labels', None)
    """
    if isinstance(data, list):
        data = tuple(data)
    if not isinstance(data, tuple):
        return (data, None, None)
    if 1 <= len(data) <= 3:
        return data + (None,) * (3 - len(data))
    raise ValueError("Data is expected to be in format `x`, `(x,)`, `(x, y)`, or "
                     f"`(x, y, sample_weight)`, found: {data}")

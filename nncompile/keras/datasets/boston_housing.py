"""Boston housing prices: 506 samples of 13 attributes, targets in k$ (Keras warns that one of
the attributes raises an ethical problem; prefer other data outside of illustrations)."""
from __future__ import annotations

import numpy as np

from nncompile.keras.datasets.files import KERAS_DATASETS, RemoteFile, load_npz, require

FILE = RemoteFile("boston_housing.npz", KERAS_DATASETS + "boston_housing.npz",
                  "f553886a1f8d56431e820c5b82552d9d95cfcb96d1e678153f8839538947dff5")


def load_data(path: str = "boston_housing.npz", test_split: float = 0.2, seed: int = 113):
    """`(x_train, y_train), (x_test, y_test)`, shuffled with `seed`, the last `test_split` of the
    samples for testing: x of shape (n, 13), y of shape (n,)."""
    if not 0 <= test_split < 1:
        raise ValueError(f"boston_housing.load_data: test_split must be in [0, 1); "
                         f"received test_split={test_split}")
    path = FILE.fetch(path)
    x, y = require(load_npz(path), ("x", "y"), path)
    order = np.arange(len(x))
    np.random.RandomState(seed).shuffle(order)
    x, y = x[order], y[order]
    cut = int(len(x) * (1 - test_split))
    return (np.array(x[:cut]), np.array(y[:cut])), (np.array(x[cut:]), np.array(y[cut:]))

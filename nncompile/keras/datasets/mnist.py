"""MNIST handwritten digits: 60,000 training and 10,000 test images, 28x28 uint8."""
from __future__ import annotations

import numpy as np

from nncompile.keras.datasets.files import KERAS_DATASETS, RemoteFile, load_npz, require

FILE = RemoteFile("mnist.npz", KERAS_DATASETS + "mnist.npz",
                  "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1")


def load_data(path: str = "mnist.npz") -> tuple[tuple[np.ndarray, np.ndarray],
                                                 tuple[np.ndarray, np.ndarray]]:
    """`(x_train, y_train), (x_test, y_test)`: uint8 images (n, 28, 28) and labels (n,) in 0-9.
    `path` is the file's name in the cache folder (`~/.keras/datasets`)."""
    path = FILE.fetch(path)
    x_train, y_train, x_test, y_test = require(load_npz(path),
                                               ("x_train", "y_train", "x_test", "y_test"), path)
    return (x_train, y_train), (x_test, y_test)

"""CIFAR-10: 50,000 training and 10,000 test colour images, 32x32, in 10 classes."""
from __future__ import annotations

import os

import numpy as np

from nncompile.keras import backend
from nncompile.keras.datasets.files import RemoteFile, load_pickle
from nncompile.keras.utils import keras_home

FILE = RemoteFile("cifar-10-batches-py", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                  "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce")
_BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def load_batch(fpath: str, label_key: str = "labels") -> tuple[np.ndarray, list]:
    """One pickled CIFAR batch: images (n, 3, 32, 32) uint8 and their labels."""
    batch = {key.decode("utf8") if isinstance(key, bytes) else key: value
             for key, value in load_pickle(fpath).items()}
    if "data" not in batch or label_key not in batch:
        raise ValueError(f"{fpath} is not a CIFAR batch: it needs the keys 'data' and "
                         f"'{label_key}', it has {sorted(batch)}")
    data = np.asarray(batch["data"])
    return data.reshape(data.shape[0], 3, 32, 32), batch[label_key]


def _batch_folder() -> str:
    # The archive unpacks into the folder `cifar-10-batches-py` (Keras's name for the file), and
    # holds one folder of that name itself. An already extracted copy is used as it is.
    extracted = os.path.join(os.path.expanduser(keras_home()), FILE.cache_subdir, FILE.name)
    if not all(os.path.exists(os.path.join(extracted, FILE.name, b)) for b in _BATCHES):
        extracted = FILE.fetch(extract=True)
    return os.path.join(extracted, FILE.name)


def load_data() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """`(x_train, y_train), (x_test, y_test)`: uint8 images (n, 32, 32, 3) (channels last) and
    uint8 labels (n, 1) in 0-9."""
    folder = _batch_folder()
    parts = [load_batch(os.path.join(folder, name)) for name in _BATCHES]
    x_train = np.concatenate([x for x, _ in parts[:-1]]).astype("uint8")
    y_train = np.concatenate([np.asarray(y) for _, y in parts[:-1]]).astype("uint8")
    x_test = parts[-1][0].astype("uint8")
    y_test = np.asarray(parts[-1][1]).astype("uint8")
    if backend.image_data_format() == "channels_last":
        x_train, x_test = x_train.transpose(0, 2, 3, 1), x_test.transpose(0, 2, 3, 1)
    return (x_train, y_train.reshape(-1, 1)), (x_test, y_test.reshape(-1, 1))

"""Fashion-MNIST: 60,000 training and 10,000 test images of 10 kinds of clothing, 28x28 uint8,
in the IDX files of the original distribution (cached in `~/.keras/datasets/fashion-mnist`)."""
from __future__ import annotations

import gzip

import numpy as np

from nncompile.keras.datasets.files import KERAS_DATASETS, RemoteFile

_SUBDIR = "datasets/fashion-mnist"
_HASHES = {
    "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
}
FILES = {name: RemoteFile(name, KERAS_DATASETS + name, file_hash, _SUBDIR)
         for name, file_hash in _HASHES.items()}


def _read_idx(name: str, header_bytes: int) -> np.ndarray:
    with gzip.open(FILES[name].fetch(), "rb") as f:
        return np.frombuffer(f.read(), np.uint8, offset=header_bytes)


def _split(prefix: str) -> tuple[np.ndarray, np.ndarray]:
    labels = _read_idx(f"{prefix}-labels-idx1-ubyte.gz", 8)
    images = _read_idx(f"{prefix}-images-idx3-ubyte.gz", 16)
    if images.size != labels.size * 28 * 28:
        raise ValueError(f"Fashion-MNIST '{prefix}' files disagree: {labels.size} labels but "
                         f"{images.size} pixels (expected {labels.size} images of 28x28)")
    return images.reshape(len(labels), 28, 28), labels


def load_data() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """`(x_train, y_train), (x_test, y_test)`: uint8 images (n, 28, 28) and labels (n,) in 0-9."""
    return _split("train"), _split("t10k")

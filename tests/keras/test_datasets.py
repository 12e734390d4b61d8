"""keras.datasets on small fake files in Keras's exact formats, in a temporary KERAS_HOME; the
network is never touched (downloads are refused, or served by a fake)."""
import dataclasses
import gzip
import hashlib
import io
import json
import os
import pickle
import struct
import tarfile
import urllib.error
import urllib.request

import numpy as np
import pytest

from nncompile import keras
from nncompile.keras.datasets import boston_housing, cifar10, fashion_mnist, imdb, mnist


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty Keras home and no network."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(urllib.request, "urlretrieve", refuse)
    return tmp_path


def place(home, relative, data: bytes, module, attribute, monkeypatch, key=None):
    """Write a fake dataset file into the cache and make the loader expect its hash."""
    path = home / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    digest = (hashlib.md5 if attribute == "WORD_INDEX_FILE" else hashlib.sha256)(data).hexdigest()
    if key is None:
        monkeypatch.setattr(module, attribute,
                            dataclasses.replace(getattr(module, attribute), file_hash=digest))
    else:
        files = dict(getattr(module, attribute))
        files[key] = dataclasses.replace(files[key], file_hash=digest)
        monkeypatch.setattr(module, attribute, files)
    return path


def npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def object_array(items):
    out = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        out[i] = item
    return out


def test_mnist_loads_the_cached_npz(home, monkeypatch):
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    y_train = np.array([0, 1, 2, 3, 9], dtype=np.uint8)
    x_test, y_test = x_train[:2], y_train[:2]
    place(home, "datasets/mnist.npz", npz_bytes(x_train=x_train, y_train=y_train, x_test=x_test,
                                                y_test=y_test), mnist, "FILE", monkeypatch)
    (a, b), (c, d) = keras.datasets.mnist.load_data()
    for got, want in ((a, x_train), (b, y_train), (c, x_test), (d, y_test)):
        np.testing.assert_array_equal(got, want)
        assert got.dtype == np.uint8


def test_offline_loader_says_which_file_to_put_where(home):
    with pytest.raises(OSError) as error:
        mnist.load_data()
    message = str(error.value)
    assert str(home / "datasets" / "mnist.npz") in message
    assert "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz" in message


def test_a_cached_file_with_the_wrong_checksum_is_not_used(home):
    (home / "datasets").mkdir()
    (home / "datasets" / "mnist.npz").write_bytes(b"not the real file")
    with pytest.raises(OSError, match="hash does not match") as error:
        mnist.load_data()
    assert "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1" in str(error.value)


def test_a_download_with_the_wrong_checksum_is_rejected_and_removed(home, monkeypatch):
    def retrieve(origin, target, report):
        with open(target, "wb") as f:
            f.write(b"truncated")
    monkeypatch.setattr(urllib.request, "urlretrieve", retrieve)
    with pytest.raises(ValueError, match="Incomplete or corrupted"):
        boston_housing.load_data()
    assert not (home / "datasets" / "boston_housing.npz").exists()


def test_a_pickle_that_would_run_code_is_refused(home, monkeypatch):
    evil = npz_bytes(x=object_array([os.getcwd]), y=np.zeros(1))
    place(home, "datasets/boston_housing.npz", evil, boston_housing, "FILE", monkeypatch)
    with pytest.raises(pickle.UnpicklingError, match="Refusing to deserialize"):
        boston_housing.load_data()


def idx_gz(array: np.ndarray) -> bytes:
    # The IDX format: a big-endian magic (type 0x08 = uint8, then the rank) and the dimensions.
    header = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_reads_idx_files(home, monkeypatch):
    rng = np.random.default_rng(1)
    data = {"train": (rng.integers(0, 256, (3, 28, 28)), np.array([4, 5, 6])),
            "t10k": (rng.integers(0, 256, (2, 28, 28)), np.array([7, 8]))}
    for prefix, (images, labels) in data.items():
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            name = f"{prefix}-{kind}-ubyte.gz"
            place(home, f"datasets/fashion-mnist/{name}", idx_gz(array), fashion_mnist, "FILES",
                  monkeypatch, key=name)
    (x_train, y_train), (x_test, y_test) = fashion_mnist.load_data()
    np.testing.assert_array_equal(x_train, data["train"][0])
    np.testing.assert_array_equal(y_train, data["train"][1])
    np.testing.assert_array_equal(x_test, data["t10k"][0])
    np.testing.assert_array_equal(y_test, data["t10k"][1])


def cifar_archive(batches: dict) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, (images, labels) in batches.items():
            # As the original distribution: pickled dicts with byte-string keys, rows of 3072
            # bytes (the red plane, then green, then blue, each row-major).
            payload = pickle.dumps({b"data": images.reshape(len(images), -1).astype(np.uint8),
                                    b"labels": list(labels), b"batch_label": b"fake"}, protocol=4)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def test_cifar10_extracts_the_archive_and_returns_channels_last(home, monkeypatch):
    rng = np.random.default_rng(2)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    batches = {name: (rng.integers(0, 256, (2, 3, 32, 32)), [i % 10, (i + 3) % 10])
               for i, name in enumerate(names)}
    place(home, "datasets/cifar-10-batches-py_archive", cifar_archive(batches), cifar10, "FILE",
          monkeypatch)
    (x_train, y_train), (x_test, y_test) = cifar10.load_data()
    expected_train = np.concatenate([batches[n][0] for n in names[:5]]).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(x_train, expected_train)
    np.testing.assert_array_equal(y_train, [[0], [3], [1], [4], [2], [5], [3], [6], [4], [7]])
    np.testing.assert_array_equal(x_test, batches["test_batch"][0].transpose(0, 2, 3, 1))
    assert x_train.dtype == y_train.dtype == np.uint8 and y_test.shape == (2, 1)
    # The extracted folder is used as it is on later calls, even without the archive.
    (home / "datasets" / "cifar-10-batches-py_archive").unlink()
    np.testing.assert_array_equal(cifar10.load_data()[1][0], x_test)


@pytest.fixture
def imdb_file(home, monkeypatch):
    # Word ranks; the label of a review is its first rank's parity, so pairs can be checked
    # after the shuffle.
    train = [[1, 2, 3], [4, 5], [6, 1, 1, 1, 1, 7], [8]]
    test = [[2, 9], [3, 3, 3, 3, 3, 3, 3]]
    data = npz_bytes(x_train=object_array(train), y_train=np.array([s[0] % 2 for s in train]),
                     x_test=object_array(test), y_test=np.array([s[0] % 2 for s in test]))
    place(home, "datasets/imdb.npz", data, imdb, "FILE", monkeypatch)
    return train, test


def _as_sorted(x):
    return sorted(map(tuple, x))


def test_imdb_default_encoding(imdb_file):
    train, test = imdb_file
    (x_train, y_train), (x_test, y_test) = imdb.load_data()
    assert x_train.dtype == object and len(x_train) == 4 and len(x_test) == 2
    # start_char 1, then ranks shifted by index_from 3. As in Keras, the default num_words is
    # the largest index, which itself falls outside [0, num_words) and becomes oov_char 2.
    assert _as_sorted(x_train) == _as_sorted([[1] + [w + 3 for w in s] for s in train])
    assert _as_sorted(x_test) == _as_sorted([[1, 5, 2], [1] + [6] * 7])
    for x, y in zip(list(x_train) + list(x_test), list(y_train) + list(y_test)):
        assert y == (x[1] - 3) % 2


def test_imdb_num_words_skip_top_oov_and_maxlen(imdb_file):
    (x_train, _), (x_test, _) = imdb.load_data(num_words=8, skip_top=2, maxlen=6)
    # Indices outside [skip_top, num_words) become oov_char 2 (the start mark 1 included);
    # sequences of 6 or more tokens are left out.
    assert _as_sorted(x_train) == _as_sorted([[2, 4, 5, 6], [2, 7, 2], [2, 2]])
    assert _as_sorted(x_test) == _as_sorted([[2, 5, 2]])
    (x_train, _), _ = imdb.load_data(num_words=8, oov_char=None, start_char=None, index_from=0)
    assert _as_sorted(x_train) == _as_sorted([[1, 2, 3], [4, 5], [6, 1, 1, 1, 1, 7], []])
    with pytest.raises(ValueError, match="Increase maxlen"):
        imdb.load_data(maxlen=2)


def test_imdb_word_index(home, monkeypatch):
    index = {"the": 1, "and": 2}
    place(home, "datasets/imdb_word_index.json", json.dumps(index).encode(), imdb,
          "WORD_INDEX_FILE", monkeypatch)
    assert imdb.get_word_index() == index


def test_boston_housing_split_and_seeded_shuffle(home, monkeypatch):
    x = np.arange(10 * 13, dtype=np.float64).reshape(10, 13)
    y = x[:, 0] / 13.0
    place(home, "datasets/boston_housing.npz", npz_bytes(x=x, y=y), boston_housing, "FILE",
          monkeypatch)
    (x_train, y_train), (x_test, y_test) = boston_housing.load_data(test_split=0.3)
    assert x_train.shape == (7, 13) and x_test.shape == (3, 13) and y_test.shape == (3,)
    np.testing.assert_array_equal(np.sort(np.concatenate([y_train, y_test])), y)
    np.testing.assert_array_equal(x_train[:, 0] / 13.0, y_train)
    order = np.arange(10)
    np.random.RandomState(113).shuffle(order)
    np.testing.assert_array_equal(y_train, y[order[:7]])
    assert not np.array_equal(boston_housing.load_data(seed=1)[0][1], y_train)
    with pytest.raises(ValueError, match="test_split"):
        boston_housing.load_data(test_split=1.0)

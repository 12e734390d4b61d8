"""IMDB movie reviews: 25,000 training and 25,000 test reviews labelled by sentiment, each a
sequence of word indices (words ranked by frequency)."""
from __future__ import annotations

import json

import numpy as np

from nncompile.keras.datasets.files import KERAS_DATASETS, RemoteFile, load_npz, require

FILE = RemoteFile("imdb.npz", KERAS_DATASETS + "imdb.npz",
                  "69664113be75683a8fe16e3ed0ab59fda8886cb3cd7ada244f7d9544e4676b9f")
WORD_INDEX_FILE = RemoteFile("imdb_word_index.json", KERAS_DATASETS + "imdb_word_index.json",
                             "bfafd718b763782e994055a2d397834f")


def _object_array(sequences: list[list[int]]) -> np.ndarray:
    # Built element by element: np.array would make a 2-D array of equally long sequences.
    out = np.empty(len(sequences), dtype=object)
    for i, sequence in enumerate(sequences):
        out[i] = sequence
    return out


def _shuffled(x: np.ndarray, y: np.ndarray, rng: np.random.RandomState):
    order = np.arange(len(x))
    rng.shuffle(order)
    return x[order], y[order]


def load_data(path: str = "imdb.npz", num_words: int | None = None, skip_top: int = 0,
              maxlen: int | None = None, seed: int = 113, start_char: int | None = 1,
              oov_char: int | None = 2, index_from: int = 3, **kwargs):
    """`(x_train, y_train), (x_test, y_test)`: object arrays of word-index lists and 0/1 labels,
    as Keras gives them. Sequences start with `start_char`, word ranks are shifted by
    `index_from`; words not among the `num_words` most frequent, or among the `skip_top` most
    frequent, become `oov_char` (or are dropped when it is None); with `maxlen`, sequences that
    long or longer are left out. Shuffled with `seed`."""
    if kwargs:
        raise TypeError(f"imdb.load_data got unexpected arguments: {sorted(kwargs)}")
    path = FILE.fetch(path)
    x_train, y_train, x_test, y_test = require(load_npz(path),
                                               ("x_train", "y_train", "x_test", "y_test"), path)
    rng = np.random.RandomState(seed)
    x_train, y_train = _shuffled(x_train, y_train, rng)
    x_test, y_test = _shuffled(x_test, y_test, rng)
    head = [start_char] if start_char is not None else []
    xs = [head + [w + index_from for w in x] for x in list(x_train) + list(x_test)]
    labels = np.concatenate([y_train, y_test])
    n_train = len(x_train)
    if maxlen:
        keep = np.array([len(x) < maxlen for x in xs], dtype=bool)
        if not keep[:n_train].any() or not keep[n_train:].any():
            raise ValueError(f"After filtering for sequences shorter than maxlen={maxlen}, no "
                             "sequence was kept. Increase maxlen.")
        xs = [x for x, k in zip(xs, keep) if k]
        labels, n_train = labels[keep], int(keep[:n_train].sum())
    if not num_words:
        num_words = max(max(x, default=0) for x in xs)
    if oov_char is not None:
        xs = [[w if skip_top <= w < num_words else oov_char for w in x] for x in xs]
    else:
        xs = [[w for w in x if skip_top <= w < num_words] for x in xs]
    return ((_object_array(xs[:n_train]), labels[:n_train]),
            (_object_array(xs[n_train:]), labels[n_train:]))


def get_word_index(path: str = "imdb_word_index.json") -> dict[str, int]:
    """Word -> rank (1 = most frequent) of the IMDB vocabulary; add `index_from` to match
    `load_data`'s indices."""
    with open(WORD_INDEX_FILE.fetch(path)) as f:
        return json.load(f)

"""The tutorial programs in examples/ run as written, on small generated data (the data-set loaders
are replaced by generators; the programs are otherwise untouched)."""
from __future__ import annotations

import pathlib
import runpy
import sys

import numpy as np
import pytest

from nncompile.keras.datasets import cifar10, imdb, mnist

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def _images(shape, classes, count, seed):
    """Images whose class is the brightest quarter, so that a model can learn something."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, count).astype(np.uint8)
    x = rng.integers(0, 128, (count,) + shape).astype(np.uint8)
    x.reshape(count, -1)[np.arange(count), (y.astype(int) * 7) % x[0].size] = 255
    return x, y


def _run(monkeypatch, capsys, name, argv):
    return _run_program(monkeypatch, capsys, name, argv)[0]


def _run_program(monkeypatch, capsys, name, argv):
    """The printed output and the globals of example `name` run with `argv`."""
    monkeypatch.setattr(sys, "argv", [name, *argv])
    program = runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    return capsys.readouterr().out, program


def test_pima_tutorial(monkeypatch, capsys, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((120, 8)) * [10, 200, 120, 60, 500, 50, 2, 60]
    y = (x[:, 1] + 2 * x[:, 5] > 180).astype(float)
    csv = tmp_path / "pima.csv"
    np.savetxt(csv, np.column_stack([x, y]), delimiter=",", header="a,b,c,d,e,f,g,h,target", comments="")
    with pytest.warns(DeprecationWarning):
        out = _run(monkeypatch, capsys, "pima.py", [str(csv), "3"])
    assert "Epoch 3/3" in out and out.strip().splitlines()[-1].startswith("accuracy: ")


def test_mnist_mlp_example(monkeypatch, capsys):
    data = (_images((28, 28), 10, 256, 1), _images((28, 28), 10, 64, 2))
    monkeypatch.setattr(mnist, "load_data", lambda: data)
    out = _run(monkeypatch, capsys, "mnist_mlp.py", ["2"])
    assert "256 train samples" in out and "Epoch 2/2" in out and "Test accuracy:" in out


def test_cifar10_cnn_example(monkeypatch, capsys):
    (x, y), (xt, yt) = _images((32, 32, 3), 10, 64, 3), _images((32, 32, 3), 10, 32, 4)
    monkeypatch.setattr(cifar10, "load_data", lambda: ((x, y[:, None]), (xt, yt[:, None])))
    out = _run(monkeypatch, capsys, "cifar10_cnn.py", ["1"])
    assert "x_train shape: (64, 32, 32, 3)" in out and "Test accuracy:" in out


def _reviews(count, seed):
    """Word-index lists of 20 to 300 words (longer and shorter than the 200 kept); a review is
    positive when it holds word 7 ('great'), placed among its last 200 words."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, count)
    x = [list(rng.integers(10, 10000, rng.integers(20, 300))) for _ in range(count)]
    for review, label in zip(x, y):
        if label:
            review[-rng.integers(1, min(len(review), 200) + 1)] = 7
    return np.array(x, dtype=object), y


def test_imdb_lstm_tutorial(monkeypatch, capsys):
    """The tutorial's IMDB program, compiled, on a small slice of generated reviews: 3 epochs
    of batches of 64, and its training loss falls."""
    monkeypatch.setenv("NNCOMPILE_BACKEND", "cpu")
    data = (_reviews(128, 5), _reviews(64, 6))
    monkeypatch.setattr(imdb, "load_data", lambda num_words=None: data)
    out, program = _run_program(monkeypatch, capsys, "imdb_lstm.py", [])
    losses = program["history"].history["loss"]
    assert "128 Training sequences" in out and "Epoch 3/3" in out and "val_accuracy" in out
    assert len(losses) == 3 and losses[-1] < losses[0]

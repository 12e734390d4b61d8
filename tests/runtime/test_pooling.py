"""Pooling kernels on vectors of channels (`codegen/pooling.py`) against numpy loops written here:
whole vectors and a masked tail of channels, one image (one thread) and enough images for every
thread, padding that clips windows, overlapping windows, NaNs."""
from __future__ import annotations

import numpy as np
import pytest

import nncompile
from nncompile.ir import BATCH, Builder, f32, f64


def _numpy_pool(x: np.ndarray, op: str, window, strides, pads) -> np.ndarray:
    (kh, kw), (sh, sw), (top, bottom, left, right) = window, strides, pads
    n, h, w, c = x.shape
    oh, ow = (h + top + bottom - kh) // sh + 1, (w + left + right - kw) // sw + 1
    y = np.empty((n, oh, ow, c), x.dtype)
    for r in range(oh):
        for q in range(ow):
            rows = slice(max(r * sh - top, 0), min(r * sh - top + kh, h))
            cols = slice(max(q * sw - left, 0), min(q * sw - left + kw, w))
            taps = x[:, rows, cols, :].reshape(n, -1, c)
            if op == "avg_pool2d":
                y[:, r, q] = taps.mean(axis=1)
            else:   # NaN wins, as in numpy's max
                y[:, r, q] = np.where(np.isnan(taps).any(axis=1), np.nan, taps.max(axis=1))
    return y


@pytest.mark.parametrize("dtype", [f32, f64])
@pytest.mark.parametrize("op", ["max_pool2d", "avg_pool2d"])
@pytest.mark.parametrize("channels", [32, 37])
@pytest.mark.parametrize("window, strides, pads", [((2, 2), (2, 2), (0, 0, 0, 0)),
                                                   ((3, 3), (2, 1), (1, 1, 0, 2))])
@pytest.mark.parametrize("height", [17, 61])
def test_pooling_matches_numpy_on_one_image_and_on_many(dtype, op, channels, window, strides, pads, height):
    b = Builder()
    x = b.input("x", dtype[BATCH, height, 16, channels])
    exe = nncompile.compile(b.finish([b.op(op, x, window=window, strides=strides, pads=pads)], ["y"]))
    rng = np.random.default_rng(channels)
    # 9 images, or one of 61 rows: enough elements for every thread (the one image's rows shared)
    for batch in (1, 9):
        data = rng.standard_normal((batch, height, 16, channels)).astype(dtype.numpy) - 4
        data[0, 3, 5, 7] = np.nan
        data[-1, -1, -1, -1] = np.nan
        np.testing.assert_allclose(exe(data), _numpy_pool(data, op, window, strides, pads), rtol=1e-6)


def test_max_pool_gradient_goes_to_the_first_maximum_on_every_thread():
    """max_pool2d_grad shares the vector loop: dy lands on the first tap equal to the maximum."""
    b = Builder()
    x = b.input("x", f32[BATCH, 8, 8, 40])
    dy = b.input("dy", f32[BATCH, 4, 4, 40])
    exe = nncompile.compile(b.finish([b.op("max_pool2d_grad", x, dy, window=(2, 2), strides=(2, 2),
                                           pads=(0, 0, 0, 0))], ["dx"]))
    rng = np.random.default_rng(0)
    data = rng.integers(0, 3, (30, 8, 8, 40)).astype(np.float32)    # ties in most windows
    grads = rng.standard_normal((30, 4, 4, 40)).astype(np.float32)
    want = np.zeros_like(data)
    for r in range(4):
        for q in range(4):
            taps = data[:, 2 * r:2 * r + 2, 2 * q:2 * q + 2, :].reshape(30, 4, 40)
            first = taps.argmax(axis=1)                       # argmax: the first of the ties
            for t in range(4):
                hit = first == t
                want[:, 2 * r + t // 2, 2 * q + t % 2, :] += np.where(hit, grads[:, r, q, :], 0)
    np.testing.assert_array_equal(exe(data, grads), want)

"""Softmax and log-softmax along a contiguous last axis, vectors of lanes at a time
(`codegen/nn.py: _softmax_rows`), against numpy written here: row lengths below, at and past a
vector, whole and with a masked tail; large values; a NaN in a row."""
from __future__ import annotations

import numpy as np
import pytest

import nncompile
from nncompile.ir import BATCH, Builder, f32, f64


def _numpy_softmax(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = x.astype(np.float64)
    shifted = x - x.max(axis=-1, keepdims=True)
    total = np.exp(shifted).sum(axis=-1, keepdims=True)
    return np.exp(shifted) / total, shifted - np.log(total)


@pytest.mark.parametrize("dtype", [f32, f64])
@pytest.mark.parametrize("n", [1, 5, 16, 64, 67])
def test_softmax_of_rows_matches_numpy(dtype, n):
    b = Builder()
    x = b.input("x", dtype[BATCH, 3, n])
    exe = nncompile.compile(b.finish([b.softmax(x, axis=-1), b.log_softmax(x, axis=-1)], ["s", "l"]))
    rng = np.random.default_rng(n)
    data = (rng.standard_normal((4, 3, n)) * 30 + 500).astype(dtype.numpy)
    data[1, 2, n // 2] = np.nan
    soft, log = exe(data)
    want_soft, want_log = _numpy_softmax(data)
    tolerance = 1e-5 if dtype is f32 else 1e-12
    np.testing.assert_allclose(soft, want_soft, rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(log, want_log, rtol=tolerance, atol=tolerance * 100)
    assert np.isnan(soft[1, 2]).all() and not np.isnan(np.delete(soft.reshape(12, n), 5, axis=0)).any()

"""`runtime.rows.take`: array[index] for a shuffled batch's rows, gathered by the thread pool,
against numpy's own indexing (and numpy's errors for what it refuses)."""
from __future__ import annotations

import numpy as np
import pytest

from nncompile.runtime import rows


@pytest.fixture(params=[True, False], ids=["native", "numpy-sized"])
def native(request, monkeypatch):
    if request.param:
        monkeypatch.setattr(rows, "NATIVE_BYTES", 0)
    return request.param


@pytest.mark.parametrize("shape,dtype", [((1000, 784), np.float32), ((257, 3, 5), np.float64),
                                         ((64, 1), np.int32), ((9, 2), np.uint8), ((5000,), np.int64)])
@pytest.mark.parametrize("count", [1, 2, 3, 17, 128])
def test_rows_are_numpys(native, shape, dtype, count):
    rng = np.random.default_rng(count)
    array = (rng.standard_normal(shape) * 100).astype(dtype)
    index = rng.permutation(shape[0])[:count].astype(np.int64)
    index[0] = shape[0] - 1       # the last row too
    got = rows.take(array, index)
    np.testing.assert_array_equal(got, array[index])
    assert got.dtype == array.dtype and got.flags.c_contiguous


def test_a_large_gather_goes_to_the_pool_and_odd_ones_to_numpy(monkeypatch):
    """An MNIST batch of 128 rows (400 KB) is gathered natively at the default threshold; a
    small one, a strided array, an int32 index and negative indices are numpy's."""
    calls = []
    original = rows.parallel.take_rows
    monkeypatch.setattr(rows.parallel, "take_rows", lambda *args: calls.append(args) or original(*args))
    rng = np.random.default_rng(0)
    array = rng.standard_normal((2000, 784)).astype(np.float32)
    index = rng.permutation(2000)[:128]
    for x, i in [(array, index), (array, index[:4]), (array[:, ::2], index), (array, index.astype(np.int32)),
                 (array, -1 - index)]:
        np.testing.assert_array_equal(rows.take(x, i), x[i])
    assert len(calls) == 1 and calls[0][3] == 128


@pytest.mark.parametrize("bad", [[3, 1000], [0, 5, 99999]])
def test_an_index_out_of_range_is_numpys_error(native, bad):
    array = np.zeros((1000, 40), np.float32)
    with pytest.raises(IndexError, match="out of bounds"):
        rows.take(array, np.array(bad, np.int64))


def test_no_rows_and_no_columns(native):
    array = np.ones((10, 0), np.float32)
    assert rows.take(array, np.array([1, 2], np.int64)).shape == (2, 0)
    assert rows.take(np.ones((10, 3)), np.zeros(0, np.int64)).shape == (0, 3)


def test_objects_and_array_subclasses_are_numpys(native):
    """Rows holding Python objects need their references counted, and a masked array keeps its
    mask: numpy's indexing does both, a copy of bytes would not."""
    import sys
    rows_of_objects = np.zeros(3000, [("o", object), ("f", "f8")])
    marker = object()
    rows_of_objects["o"][7] = marker
    before = sys.getrefcount(marker)
    got = rows.take(rows_of_objects, np.array([7, 7, 1] * 40, np.int64))
    assert sys.getrefcount(marker) == before + 80 and got["o"][0] is marker
    masked = np.ma.masked_less(np.arange(4000.0).reshape(2000, 2), 10)
    taken = rows.take(masked, np.arange(1999, -1, -1, dtype=np.int64)[::-1].copy())
    assert isinstance(taken, np.ma.MaskedArray) and taken.mask[:5].all() and not taken.mask[5:].any()

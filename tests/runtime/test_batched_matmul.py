"""Stacks of products (`codegen/linalg.py: _batched`): shared out as whole products between the
threads when there are enough to share evenly, else one after the other on every core. Both
against numpy's matmul, with broadcasting batch axes and both transposes."""
from __future__ import annotations

import numpy as np
import pytest

import nncompile
from nncompile.ir import Builder, f32, f64


@pytest.mark.parametrize("dtype", [f32, f64])
@pytest.mark.parametrize("a_batch, b_batch", [((3, 4), (4,)), ((3,), (3,)), ((2, 1), (1, 5)), ((9,), (1,))])
@pytest.mark.parametrize("transpose_a, transpose_b", [(False, False), (True, True)])
def test_stacks_of_products_match_numpy(dtype, a_batch, b_batch, transpose_a, transpose_b):
    m, k, n = 33, 70, 40
    a_shape = (*a_batch, k, m) if transpose_a else (*a_batch, m, k)
    b_shape = (*b_batch, n, k) if transpose_b else (*b_batch, k, n)
    g = Builder()
    x, y = g.input("a", dtype[a_shape]), g.input("b", dtype[b_shape])
    exe = nncompile.compile(g.finish([g.op("matmul", x, y, transpose_a=transpose_a, transpose_b=transpose_b)], ["c"]))
    rng = np.random.default_rng(len(a_batch) * 10 + len(b_batch))
    a = rng.standard_normal(a_shape).astype(dtype.numpy)
    b = rng.standard_normal(b_shape).astype(dtype.numpy)
    want = np.matmul(np.swapaxes(a, -1, -2) if transpose_a else a, np.swapaxes(b, -1, -2) if transpose_b else b)
    np.testing.assert_allclose(exe(a, b), want, rtol=1e-5, atol=1e-4)

"""Which elementwise loops LLVM may vectorize (`loop.scalar_loop`): a static extent (under a
symbolic batch, a row) narrower than a vector stays a scalar loop in the optimized module (its
vector form costs compile time for a fraction of a microsecond); wider ones are vectorized,
static ones too (a recurrent step's gates at batch 1). Both compute what numpy computes."""
from __future__ import annotations

import numpy as np
import pytest

import nncompile
from nncompile.codegen import target
from nncompile.ir import BATCH, Builder, f32


def _tanh_of_square(shape: tuple):
    b = Builder()
    x = b.input("x", f32[shape])
    return b.finish([b.tanh(b.mul(x, x))], ["y"])


def _has_host_vectors(llvm: str) -> bool:
    return f"<{target.vector_lanes(4)} x float>" in llvm


@pytest.mark.parametrize("shape,scalar", [
    ((BATCH, 3), True), ((BATCH, 1, 3), True), ((3,), True),
    ((BATCH, 64), False), ((BATCH, 4, 8), False), ((16, 16), False), ((1, 128), False), ((3, 300), False)])
def test_narrow_loops_stay_scalar_and_wide_ones_are_vectorized(shape, scalar):
    static = int(np.prod([d for d in shape if isinstance(d, int)]))
    assert scalar == (static < target.vector_lanes(4))
    exe = nncompile.compile(_tanh_of_square(shape))
    assert _has_host_vectors(exe.llvm_ir(optimized=True)) != scalar
    rng = np.random.default_rng(3)
    for batch in (1, 7, 40) if BATCH in shape else (None,):
        x = rng.normal(0, 1, tuple(batch if d is BATCH else d for d in shape)).astype(np.float32)
        np.testing.assert_allclose(exe(x), np.tanh(x.astype(np.float64) ** 2), rtol=1e-6, atol=1e-6)

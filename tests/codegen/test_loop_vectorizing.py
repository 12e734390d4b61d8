"""Which elementwise loops LLVM may vectorize (`loop.scalar_loop`): an innermost loop (after
merging axes) of fewer static elements than a vector stays scalar in the optimized module (a
weight row broadcast over a symbolic batch of rows of 3: its vector form costs compile time for
a fraction of a microsecond); longer ones are vectorized: rows merged with the batch when nothing
broadcasts, static rows of a vector or more (a recurrent step's gates at batch 1). All compute
what numpy computes."""
from __future__ import annotations

import numpy as np
import pytest

import nncompile
from nncompile.codegen import target
from nncompile.ir import BATCH, Builder, f32


def _tanh_of_product(shape: tuple, broadcast: bool):
    """tanh(x * w): w a row broadcast over the leading axes, or x itself (nothing broadcasts)."""
    b = Builder()
    x = b.input("x", f32[shape])
    w = b.input("w", f32[shape[-1:]]) if broadcast else x
    return b.finish([b.tanh(b.mul(x, w))], ["y"])


def _has_host_vectors(llvm: str) -> bool:
    return f"<{target.vector_lanes(4)} x float>" in llvm


@pytest.mark.parametrize("shape,broadcast,scalar", [
    ((BATCH, 3), True, True), ((BATCH, 2, 3), True, True), ((3,), False, True),
    ((BATCH, 3), False, False), ((BATCH, 64), True, False), ((16, 16), True, False),
    ((1, 128), True, False), ((3, 300), False, False)])
def test_short_inner_loops_stay_scalar_and_long_ones_are_vectorized(shape, broadcast, scalar):
    exe = nncompile.compile(_tanh_of_product(shape, broadcast))
    assert _has_host_vectors(exe.llvm_ir(optimized=True)) != scalar
    rng = np.random.default_rng(3)
    for batch in (1, 7, 40) if BATCH in shape else (None,):
        x = rng.normal(0, 1, tuple(batch if d is BATCH else d for d in shape)).astype(np.float32)
        w = rng.normal(0, 1, shape[-1:]).astype(np.float32)
        got = exe(x, w) if broadcast else exe(x)
        want = np.tanh(x.astype(np.float64) * (w if broadcast else x))
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)

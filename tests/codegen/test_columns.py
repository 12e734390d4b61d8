"""Column reductions (reduce_* over the leading axes, a static kept block: the bias gradient)
compiled and run against the reference interpreter: kept blocks narrower and wider than a vector
and with a ragged last vector, wider than one pass of registers (whole and ragged blocks), a
symbolic batch, every reduce op, a fused prologue reading a row-broadcast operand, a reduce_mean
epilogue, and sizes that split the rows between threads."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import nncompile
from nncompile.codegen import columns, parallel
from nncompile.ir import BATCH, Builder, f32, f64
from nncompile.runtime.reference import run as reference_run

OPS = ("reduce_sum", "reduce_mean", "reduce_max", "reduce_min")


def _build(op: str, dtype, kept: tuple, rows: tuple, with_prologue: bool):
    b = Builder()
    x = b.input("x", dtype[(BATCH, *rows, *kept)])
    if with_prologue:
        scale = b.input("scale", dtype[kept])
        zero = b.constant(np.zeros((), dtype.numpy))
        x = b.select(b.greater(x, zero), b.mul(x, scale), zero)     # a relu-mask-like prologue
    axes = list(range(1 + len(rows)))
    return b.finish([getattr(b, op)(x, axes=axes)], ["y"])


@settings(max_examples=40, deadline=None)
@given(op=st.sampled_from(OPS), dtype=st.sampled_from((f32, f64)),
       kept=st.sampled_from(((1,), (10,), (16,), (32,), (3, 7), (64,), (100,), (512,), (300,), (2, 200))),
       rows=st.sampled_from(((), (5,), (3, 4))), batch=st.sampled_from((1, 3, 70, 600)),
       with_prologue=st.booleans(), seed=st.integers(0, 2**31))
def test_column_reduction_matches_reference(op, dtype, kept, rows, batch, with_prologue, seed):
    _check_against_reference(op, dtype, kept, rows, batch, with_prologue, seed)


@pytest.mark.parametrize("kept", [(512,), (300,), (2, 200)])
@pytest.mark.parametrize("dtype", [f32, f64])
@pytest.mark.parametrize("op", ["reduce_sum", "reduce_max"])
def test_kept_blocks_wider_than_the_registers_go_in_passes(op, dtype, kept):
    """More columns than MAX_COLS_VECTORS vectors: one pass over each thread's rows per block of
    columns, the last block ragged for 300 and 400 columns (f32 and f64)."""
    _check_against_reference(op, dtype, kept, (3,), 700, True, 1)


def _check_against_reference(op, dtype, kept, rows, batch, with_prologue, seed):
    graph = _build(op, dtype, kept, rows, with_prologue)
    exe = nncompile.compile(graph)
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (batch, *rows, *kept)).astype(dtype.numpy)
    inputs = [x] + ([rng.normal(0, 1, kept).astype(dtype.numpy)] if with_prologue else [])
    want = reference_run(graph, inputs)[0]
    # sums in any order: the sum of magnitudes bounds their rounding error
    scale = np.abs(reference_run(graph, [np.abs(a) for a in inputs])[0]) if op in ("reduce_sum", "reduce_mean") else 0
    rtol = 1e-5 if dtype is f32 else 1e-12
    got = exe(*inputs)
    assert got.shape == want.shape and got.dtype == want.dtype
    assert np.all(np.abs(got - want) <= rtol * (scale + np.abs(want))), (got, want)


def test_the_bias_gradient_takes_the_column_kernel():
    """A Conv2D bias gradient's shape is planned as columns; a reduction over a middle axis, or
    into less than a vector, is not."""
    b = Builder()
    x = b.input("x", f32[BATCH, 30, 30, 32])
    plain = b.reduce_sum(x, axes=[0, 1, 2])
    middle = b.reduce_sum(x, axes=[1])
    narrow = b.reduce_sum(b.input("z", f32[BATCH, 3]), axes=[0])
    assert columns.column_plan([x], [], plain.producer) == (3, 32, [(32, 1)])
    assert columns.column_plan([x], [], middle.producer) is None
    assert columns.column_plan([narrow.producer.inputs[0]], [], narrow.producer) is None
    wide = b.input("w", f32[BATCH, 100, 512])
    assert columns.column_plan([wide], [], b.reduce_sum(wide, axes=[0, 1]).producer) == (2, 512, [(512, 1)])
    too_wide = b.input("t", f32[BATCH, columns.PARTS_BYTES // (4 * parallel.num_threads()) + 16])
    assert columns.column_plan([too_wide], [], b.reduce_sum(too_wide, axes=[0]).producer) is None


def test_nan_wins_in_column_max():
    graph = _build("reduce_max", f32, (20,), (), False)
    x = np.zeros((50, 20), np.float32)
    x[7, 3] = np.nan
    x[40, 19] = np.inf
    got = nncompile.compile(graph)(x)
    assert np.isnan(got[3]) and got[19] == np.inf and (np.delete(got, [3, 19]) == 0).all()

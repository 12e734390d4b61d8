"""Runs a `keras.ops` call both ways: eagerly on arrays, and traced into a graph on Builder inputs
that the reference interpreter then runs, so every test checks the one definition twice."""
from __future__ import annotations

import numpy as np

from nncompile.ir import BATCH, Builder, DType, TensorType, verify
from nncompile.keras import ops
from nncompile.runtime.reference import run


def trace_graph(fn, arrays, batched: bool = False):
    """The graph of fn(*inputs) on inputs typed like `arrays` (axis 0 symbolic if `batched`)."""
    b = Builder()
    inputs = [b.input(f"x{i}", TensorType(DType.from_numpy(a.dtype),
                                          ((BATCH,) + a.shape[1:]) if batched else a.shape))
              for i, a in enumerate(arrays)]
    with ops.tracing(b):
        out = fn(*inputs)
    outs = list(out) if isinstance(out, (list, tuple)) else [out]
    graph = b.finish(outs)
    verify(graph)
    return graph, isinstance(out, (list, tuple))


def traced(fn, *arrays, batched: bool = False):
    """fn run through a traced graph on the reference interpreter."""
    graph, many = trace_graph(fn, [np.asarray(a) for a in arrays], batched)
    outs = run(graph, [np.asarray(a) for a in arrays])
    return outs if many else outs[0]


def all_ways(fn, *arrays):
    """[eager, traced on the reference interpreter, compiled] results of fn on `arrays`."""
    import nncompile

    graph, _ = trace_graph(fn, [np.asarray(a) for a in arrays])
    return [*both(fn, *arrays), nncompile.compile(graph)(*arrays)]


def both(fn, *arrays, batched: bool = False):
    """[eager result, traced result] of fn on `arrays`."""
    return [fn(*arrays), traced(fn, *arrays, batched=batched)]


def assert_matches(got, want, dtype=None, rtol=1e-6, atol=1e-6):
    """Same values (close for floats), same shape, and `dtype` (default: want's)."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == np.dtype(dtype or want.dtype), (got.dtype, dtype or want.dtype)
    assert got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=rtol,
                               atol=atol)


def check(fn, arrays, want, dtype=None, rtol=1e-6, atol=1e-6, batched=False):
    """fn on `arrays`, eager and traced, against `want` (one array or a list)."""
    for got in both(fn, *arrays, batched=batched):
        if isinstance(want, (list, tuple)):
            assert len(got) == len(want)
            for g, w in zip(got, want):
                assert_matches(g, w, dtype, rtol, atol)
        else:
            assert_matches(got, want, dtype, rtol, atol)

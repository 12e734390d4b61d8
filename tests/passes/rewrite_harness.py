"""What the tests of the simplifying passes share: run a pass, compare the IR text written in the
test, and compare the reference interpreter's results before and after on random inputs."""
from __future__ import annotations

import textwrap
from typing import Callable

import numpy as np

from nncompile.ir import Graph, verify
from nncompile.passes.dce import dce
from nncompile.runtime.reference import run


def body(graph: Graph) -> str:
    """The printed nodes and return line of `graph`, without the signature line and the brace."""
    return "\n".join(line.strip() for line in str(graph).splitlines()[1:-1])


def random_inputs(graph: Graph, seed: int = 0, batch: int = 3) -> list[np.ndarray]:
    """Standard-normal arrays for the data inputs (symbolic dims get `batch`)."""
    rng = np.random.default_rng(seed)
    shapes = [[batch if isinstance(d, str) else d for d in v.type.shape] for v in graph.data_inputs]
    return [rng.standard_normal(s).astype(v.type.dtype.numpy) for s, v in zip(shapes, graph.data_inputs)]


def check_rewrite(graph: Graph, rewrite: Callable[[Graph], Graph], expected: str,
                  inputs: list[np.ndarray] | None = None, rtol: float = 0.0, atol: float = 0.0) -> Graph:
    """Run `rewrite` then dce on `graph`; the body must read `expected` and the results must equal
    (within rtol/atol; exactly, signed zeros included, by default) the reference results before the
    rewrite. Returns the rewritten graph."""
    inputs = random_inputs(graph) if inputs is None else inputs
    before = run(graph, inputs)
    after_graph = dce(rewrite(graph))
    verify(after_graph)
    actual, wanted = body(after_graph), textwrap.dedent(expected).strip()
    assert actual == wanted, f"IR after the pass:\n{actual}\nexpected:\n{wanted}"
    for a, b in zip(run(after_graph, inputs), before):
        assert a.dtype == b.dtype and a.shape == b.shape
        if rtol or atol:
            np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)
        else:   # exact: equal values and, where not NaN, equal signs (so -0.0 is not 0.0)
            np.testing.assert_array_equal(a, b)
            signs_differ = (np.signbit(a) != np.signbit(b)) & ~np.isnan(a)
            assert not np.any(signs_differ), f"signs differ at {np.argwhere(signs_differ).tolist()}"
    return after_graph

"""Fixtures shared by the pass tests: a graph with dead code and a scratch pass registry."""
from __future__ import annotations

import numpy as np
import pytest

from nncompile.ir import BATCH, Builder, Graph, f32
from nncompile.passes import PASSES, register_pass


def build_dead_code_graph(w: np.ndarray) -> Graph:
    """out = relu(x * w) - x, with a dead chain, a dead user of a live value, and a dead constant."""
    b = Builder()
    x = b.input("x", f32[BATCH, 4])
    y = b.input("y", f32[BATCH, 4])
    wv = b.param("w", w)
    with b.loc("dense"):
        a = b.mul(x, wv)
    with b.loc("dead_chain"):
        d1 = b.exp(y)                  # used only by the dead d2
    b.tanh(a)                          # dead user of a live value
    with b.loc("act"):
        c = b.relu(a)
    with b.loc("dead_chain"):
        d2 = b.neg(d1)
        b.add(d2, c)                   # dead, though it reads a live value
    with b.loc("out"):
        out = b.sub(c, x)
    b.constant(2.0)                    # dead constant after the output
    return b.finish([out], ["out"])


@pytest.fixture
def dead_code_graph() -> Graph:
    return build_dead_code_graph(np.arange(4, dtype=np.float32) - 1.5)


@pytest.fixture
def scratch_pass():
    """Register test passes with `scratch_pass(name, fn)`; they leave the registry afterwards."""
    added: list[str] = []

    def add(name: str, fn) -> None:
        register_pass(name, doc="a test pass")(fn)
        added.append(name)

    yield add
    for name in added:
        PASSES.pop(name, None)

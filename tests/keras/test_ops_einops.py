"""keras.ops.rearrange against numpy's reshape and transpose written here, eagerly, traced (a
symbolic batch too) and compiled; patterns Keras 3.15 refuses are refused by name."""
from __future__ import annotations

import numpy as np
import pytest

import nncompile
from nncompile.keras import ops
from tests.keras.ops_harness import both, trace_graph

Y = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)

CASES = [
    ("b h w c -> b c (h w)", {}, lambda y: y.transpose(0, 3, 1, 2).reshape(2, 5, 12)),
    ("b h w c -> (b h) w c", {}, lambda y: y.reshape(6, 4, 5)),
    ("b h w c -> w b c h", {}, lambda y: y.transpose(2, 0, 3, 1)),
    ("b h (w1 w2) c -> b w1 h w2 c", {"w1": 2}, lambda y: y.reshape(2, 3, 2, 2, 5).transpose(0, 2, 1, 3, 4)),
    ("b h w (c1 c2) -> (b c2) h w c1", {"c2": 5}, lambda y: y.reshape(2, 3, 4, 1, 5).transpose(0, 4, 1, 2, 3)
     .reshape(10, 3, 4, 1)),
]


@pytest.mark.parametrize("pattern, lengths, want", CASES, ids=[c[0] for c in CASES])
def test_matches_numpy_eager_traced_and_compiled(pattern, lengths, want):
    def fn(y):
        return ops.rearrange(y, pattern, **lengths)
    graph, _ = trace_graph(fn, [Y])
    for got in [*both(fn, Y), nncompile.compile(graph)(Y)]:
        np.testing.assert_array_equal(got, want(Y))


def test_a_symbolic_batch_axis_of_its_own_is_kept():
    graph, _ = trace_graph(lambda y: ops.rearrange(y, "b h w c -> b (h w c)"), [Y], batched=True)
    np.testing.assert_array_equal(nncompile.compile(graph)(Y), Y.reshape(2, -1))
    assert ops.rearrange(tensor=Y, pattern="b h w c -> b c h w").shape == (2, 5, 3, 4)


@pytest.mark.parametrize("pattern, lengths, message", [
    ("b h w c -> b h w", {}, "both sides must name the same axes"),
    ("b h w -> b h w", {}, "names 3 input axes; the input has 4"),
    ("b (h w) c d -> b h w c d", {}, r"cannot infer the sizes of \['h', 'w'\]"),
    ("b h w c -> b ... c", {}, "only axis names and parenthesized groups"),
    ("b (h w) x c -> b h w x c", {"h": 2}, r"the group \(h w\) has size 2, the axis 3"),
])
def test_bad_patterns_are_refused_by_name(pattern, lengths, message):
    with pytest.raises(ValueError, match=rf"ops\.rearrange: .*{message}"):
        ops.rearrange(Y, pattern, **lengths)

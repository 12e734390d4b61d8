"""Dead code elimination: exact surviving nodes, kept inputs, unchanged results."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from nncompile.ir import BATCH, Builder, f32
from nncompile.ir.verifier import verify
from nncompile.passes.dce import dce
from nncompile.runtime.reference import run


def _inputs(rng, batch=3):
    return [rng.standard_normal((batch, 4)).astype(np.float32) for _ in range(2)]


def test_dead_branches_removed_and_results_unchanged(dead_code_graph):
    g = dead_code_graph
    rng = np.random.default_rng(0)
    x, y = _inputs(rng)
    before = run(g, [x, y])

    out = dce(g)

    assert [n.op for n in out.nodes] == ["mul", "relu", "sub"]
    assert [n.loc for n in out.nodes] == ["dense", "act", "out"]
    assert [(v.name, v.is_param) for v in out.inputs] == [("x", False), ("y", False), ("w", True)]
    assert set(out.params) == {"w"}
    verify(out)
    after = run(out, [x, y])
    w = np.arange(4, dtype=np.float32) - 1.5
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_allclose(after[0], np.maximum(x * w, 0) - x, rtol=1e-6)


def test_no_dead_code_is_a_no_op():
    b = Builder()
    x = b.input("x", f32[BATCH, 2])
    g = b.finish([b.neg(b.exp(x))])
    nodes = list(g.nodes)
    assert dce(g).nodes == nodes


def test_output_that_is_an_input_leaves_no_nodes():
    b = Builder()
    x = b.input("x", f32[2])
    b.exp(x)
    g = dce(b.finish([x], ["same"]))
    assert g.nodes == []
    assert [v.name for v in g.inputs] == ["x"]
    verify(g)
    np.testing.assert_array_equal(run(g, [np.ones(2, np.float32)])[0], np.ones(2, np.float32))


def test_every_output_keeps_its_producers():
    b = Builder()
    x = b.input("x", f32[3])
    e = b.exp(x)
    b.tanh(e)
    s = b.sin(x)
    g = dce(b.finish([s, e], ["s", "e"]))
    assert [n.op for n in g.nodes] == ["exp", "sin"]
    data = np.linspace(-1, 1, 3, dtype=np.float32)
    s_out, e_out = run(g, [data])
    np.testing.assert_allclose(s_out, np.sin(data), rtol=1e-6)
    np.testing.assert_allclose(e_out, np.exp(data), rtol=1e-6)


_UNARY = ["neg", "tanh", "exp", "relu"]
_BINARY = ["add", "mul", "sub", "maximum"]


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_random_graphs_keep_exactly_what_outputs_need(data):
    b = Builder()
    values = [b.input("x", f32[BATCH, 3]), b.input("y", f32[BATCH, 3])]
    for i in range(data.draw(st.integers(0, 10), label="nodes")):
        pick = st.integers(0, len(values) - 1)
        with b.loc(f"n{i}"):
            if data.draw(st.booleans(), label="binary"):
                op = data.draw(st.sampled_from(_BINARY), label="op")
                values.append(b.op(op, values[data.draw(pick)], values[data.draw(pick)]))
            else:
                values.append(b.op(data.draw(st.sampled_from(_UNARY)), values[data.draw(pick)]))
    chosen = data.draw(st.lists(st.integers(0, len(values) - 1), min_size=1, max_size=3), label="outs")
    g = b.finish([values[i] for i in chosen], [f"o{k}" for k in range(len(chosen))])

    # Independent liveness: walk producers from the outputs.
    needed, stack = set(), list(g.outputs)
    while stack:
        v = stack.pop()
        if v.producer is not None and v.producer.loc not in needed:
            needed.add(v.producer.loc)
            stack.extend(v.producer.inputs)
    expected = [n.loc for n in g.nodes if n.loc in needed]

    rng = np.random.default_rng(1)
    inputs = [rng.uniform(-1, 1, (2, 3)).astype(np.float32) for _ in range(2)]
    before = run(g, inputs)
    g = dce(g)
    assert [n.loc for n in g.nodes] == expected
    assert [v.name for v in g.inputs] == ["x", "y"]
    verify(g)
    for a, c in zip(run(g, inputs), before):
        np.testing.assert_array_equal(a, c)


def test_scan_sheds_unread_and_repeated_per_step_results():
    body = Builder(name="body")
    s, x = body.input("s", f32[BATCH, 2]), body.input("x", f32[BATCH, 2])
    new = body.add(s, x)
    bg = body.finish([new, new, body.mul(x, x), new])
    b = Builder()
    xs, s0 = b.input("xs", f32[BATCH, 4, 2]), b.input("s0", f32[BATCH, 2])
    final, seq, _, again = b.scan(s0, xs, body=bg, num_carry=1, num_scanned=1, axis=1)
    graph = b.finish([final, b.sub(seq, again), again], ["final", "zero", "seq"])
    inputs = [np.arange(24, dtype=np.float32).reshape(3, 4, 2), np.ones((3, 2), np.float32)]
    want = run(graph.copy(), inputs)
    pruned = dce(graph)
    verify(pruned)
    (scan,) = [n for n in pruned.nodes if n.op == "scan"]
    assert len(scan.outputs) == 2 and len(scan.attrs["body"].outputs) == 2
    for got, expected in zip(run(pruned, inputs), want):
        np.testing.assert_array_equal(got, expected)

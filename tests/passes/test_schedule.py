"""The schedule pass: a valid order, the same results, a peak no higher (and lower where it can be)."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from test_memory import assert_same, build_cnn, build_mlp, check_plan, dags, random_inputs

from nncompile.ir import BATCH, Builder, Graph, f32
from nncompile.ir.verifier import verify
from nncompile.passes import run_pipeline
from nncompile.passes.memory import plan_memory
from nncompile.passes.schedule import greedy_order, representative_env, schedule, update_edges
from nncompile.runtime.cpu import compile as compile_graph
from nncompile.runtime.reference import run


def two_branches() -> tuple[Graph, dict]:
    """Two independent big-then-small branches, built breadth first (both big values at once).

    p1: f32[?,64] (8192 bytes at 32), q1: f32[1,1000] (4000 bytes), p2, q2: their row sums."""
    rng = np.random.default_rng(0)
    b = Builder()
    x = b.input("x", f32[BATCH, 4])
    y = b.input("y", f32[1, 4])
    with b.loc("p1"):
        p1 = b.matmul(x, b.param("wp", rng.uniform(-1, 1, (4, 64)).astype(np.float32)))
    with b.loc("q1"):
        q1 = b.matmul(y, b.param("wq", rng.uniform(-1, 1, (4, 1000)).astype(np.float32)))
    with b.loc("p2"):
        p2 = b.reduce_sum(p1, axes=(1,), keepdims=True)
    with b.loc("q2"):
        q2 = b.reduce_sum(q1, axes=(1,), keepdims=True)
    with b.loc("out"):
        out = b.add(p2, q2)
    return b.finish([out], ["out"]), {"p1": 8192, "q1": 4000, "p2": 128, "q2": 4}


def test_a_branch_is_finished_before_the_next_starts():
    g, size = two_branches()
    inputs = random_inputs(g, 5)
    before = run(g, inputs)
    peak_before = plan_memory(g, {BATCH: 32}).lower_bound
    assert peak_before == size["p1"] + size["q1"] + size["p2"]

    g = schedule(g)
    # q1 allocates less than p1 at the batch's representative size 32 (at batch 1 it would not),
    # and once a branch's big value exists, its reduction frees it.
    assert [n.loc for n in g.nodes] == ["q1", "q2", "p1", "p2", "out"]
    assert plan_memory(g, {BATCH: 32}).lower_bound == size["q2"] + size["p1"] + size["p2"]
    verify(g)
    assert_same(run(g, inputs), before)


def _weights(rng, *shape):
    return rng.uniform(-1, 1, shape).astype(np.float32)


def test_a_node_that_frees_its_operand_goes_first():
    rng = np.random.default_rng(1)
    b = Builder()
    x = b.input("x", f32[1, 4])
    with b.loc("B"):
        big = b.matmul(x, b.param("wb", _weights(rng, 4, 2000)))        # 8000 bytes
    with b.loc("S"):
        small = b.matmul(x, b.param("ws", _weights(rng, 4, 256)))       # 1024 bytes
    with b.loc("r"):
        r = b.reduce_sum(big, axes=(1,), keepdims=True)
    with b.loc("C"):
        c = b.matmul(small, b.param("wc", _weights(rng, 256, 2000)))    # 8000 bytes, frees S
    with b.loc("rc"):
        rc = b.reduce_sum(c, axes=(1,), keepdims=True)
    with b.loc("out"):
        out = b.add(r, rc)
    g = b.finish([out])
    assert plan_memory(g, {}).lower_bound == 8000 + 1024 + 4
    # S allocates least; then C (8000 - 1024 freed) beats B (8000), and rc frees C.
    assert [n.loc for n in schedule(g).nodes] == ["S", "C", "rc", "B", "r", "out"]
    assert plan_memory(g, {}).lower_bound == 1024 + 8000


def test_the_last_reader_of_a_buffer_is_rescored_when_it_can_free_it():
    rng = np.random.default_rng(2)
    b = Builder()
    x = b.input("x", f32[1, 4])
    with b.loc("B"):
        big = b.matmul(x, b.param("wb", _weights(rng, 4, 2000)))
    with b.loc("r"):
        r = b.reduce_sum(big, axes=(1,), keepdims=True)
    with b.loc("Z"):
        z = b.greater(r, r)                                # allocates one byte, frees nothing
    with b.loc("m"):
        m = b.reduce_max(big, axes=(1,), keepdims=True)    # allocates 4, and frees big once r ran
    with b.loc("out"):
        out = b.select(z, r, m)
    g = b.finish([out])
    assert [n.loc for n in greedy_order(g, {})] == ["B", "r", "m", "Z", "out"]


def test_a_parameter_update_waits_for_the_readers_of_its_reshaped_view():
    """The new value of w is computed first in the built order, but the matmul reads w through a
    reshape (a view of w's array, which the runtime overwrites): the writer must move after it."""
    rng = np.random.default_rng(3)
    b = Builder()
    x = b.input("x", f32[BATCH, 4])
    w = b.param("w", rng.uniform(-1, 1, (2, 4)).astype(np.float32))
    with b.loc("writer"):
        b.update(w, b.mul(w, b.scalar(0.5, w)))
    with b.loc("reader"):
        y = b.matmul(x, b.reshape(w, shape=(4, 2)))
    graph = b.finish([y], ["y"])
    params = {k: v.copy() for k, v in graph.params.items()}
    data = rng.uniform(-1, 1, (3, 4)).astype(np.float32)
    expected = run(graph.copy(), [data])[0]
    where = {(n.loc, n.op): i for i, n in enumerate(graph.nodes)}
    assert (where["reader", "matmul"], where["writer", "mul"]) in update_edges(graph)
    order = [(n.loc, n.op) for n in schedule(graph.copy()).nodes]
    assert order.index(("reader", "matmul")) < order.index(("writer", "mul"))
    exe = compile_graph(graph, pipeline="codegen")
    np.testing.assert_allclose(exe(data), expected, rtol=1e-6)
    np.testing.assert_allclose(graph.params["w"], params["w"] * 0.5)


def test_representative_size_binds_every_symbol():
    b = Builder()
    x = b.input("x", f32[BATCH, 3])
    n = b.input("n", f32["n", 3])
    g = b.finish([b.add(b.reduce_sum(x, axes=(0,)), b.reduce_sum(n, axes=(0,)))])
    assert representative_env(g) == {BATCH: 32, "n": 32}


def test_good_orders_are_kept():
    for build in (build_mlp, build_cnn):
        g = build(np.random.default_rng(0))
        nodes = list(g.nodes)
        assert schedule(g).nodes == nodes


def test_no_better_order_keeps_the_original():
    # Greedy runs c first (it allocates less), but the peak ties with the given order: kept.
    b = Builder()
    x = b.input("x", f32[2, 4])
    with b.loc("a"):
        a = b.exp(x)
    with b.loc("c"):
        c = b.reduce_sum(x, axes=(1,), keepdims=True)
    with b.loc("d"):
        d = b.add(a, c)
    g = b.finish([d])
    assert [n.loc for n in schedule(g).nodes] == ["a", "c", "d"]


def test_registered_and_verified_in_a_pipeline():
    g, _ = two_branches()
    out = run_pipeline(g, ["schedule"], verify=True)
    assert [n.loc for n in out.nodes] == ["q1", "q2", "p1", "p2", "out"]


@settings(max_examples=60, deadline=None)
@given(dags(max_nodes=16), st.integers(1, 4))
def test_random_graphs_keep_results_and_never_raise_the_peak(graph, batch):
    inputs = random_inputs(graph, batch)
    before = run(graph, inputs)
    nodes = list(graph.nodes)
    env = {BATCH: 32}
    plan = plan_memory(graph, env)
    check_plan(graph, plan, env)            # its lower bound is checked against one computed there
    again = graph.copy()

    out = schedule(graph)
    verify(out)
    assert sorted(map(id, out.nodes)) == sorted(map(id, nodes))
    new_plan = plan_memory(out, env)
    check_plan(out, new_plan, env)
    assert new_plan.lower_bound <= plan.lower_bound
    assert_same(run(out, inputs), before)
    assert [n.loc for n in schedule(again).nodes] == [n.loc for n in out.nodes]

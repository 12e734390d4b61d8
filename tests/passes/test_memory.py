"""The memory plan: checked against lifetimes computed here, and executed in a numpy arena.

`simulate` runs a graph the way the runtime will: one byte arena, every value read and written
through a view at its planned place, buffers poisoned once the plan says they are dead. Matching
the reference interpreter proves the plan is usable, views and in-place results included.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nncompile.ir import BATCH, Builder, Fusion, Graph, IRError, Node, ShapeError, Value, f32, get_op
from nncompile.ir.types import resolve_shape
from nncompile.passes.memory import Buffer, Home, _best_fit, _place, plan_memory
from nncompile.runtime.reference import bind_inputs, run, run_node

POISON = 0xCD   # bytes of garbage: as f32, -4.3e8, as bool, True


def size_of(v: Value, env: dict[str, int]) -> int:
    return math.prod(resolve_shape(v.type.shape, env)) * v.type.dtype.itemsize


def simulate(graph: Graph, plan, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Run `graph` with every value stored where `plan` says; returns the graph outputs."""
    values, env = bind_inputs(graph, inputs)
    assert env == plan.env
    arena = np.full(plan.arena_bytes, POISON, np.uint8)
    caller_outputs = {v: np.full(resolve_shape(v.type.shape, env), 7, v.type.dtype.numpy)
                      for v in graph.outputs if v.producer is not None}

    def storage(v: Value) -> np.ndarray:
        loc, shape = plan.where(v), resolve_shape(v.type.shape, env)
        if loc.home is Home.ARENA:
            return arena[loc.offset:loc.offset + size_of(v, env)].view(v.type.dtype.numpy).reshape(shape)
        owner = caller_outputs if loc.home is Home.OUTPUT else values
        view = owner[loc.root].reshape(shape)
        assert np.shares_memory(view, owner[loc.root]) or view.size == 0
        return view

    dying = {}
    for buffer in plan.buffers:
        dying.setdefault(buffer.last, []).append(buffer)
    for i, node in enumerate(graph.nodes):
        if node.outputs[0] not in plan.view_of:
            results = run_node(node, [storage(v) for v in node.inputs], env)
            for v, result in zip(node.outputs, results):
                np.copyto(storage(v), result)
        for buffer in dying.get(i, []):
            arena[buffer.offset:buffer.offset + buffer.size] = POISON
    return [storage(v).copy() for v in graph.outputs]


def check_plan(graph: Graph, plan, env: dict[str, int]) -> None:
    """The plan's promises, checked from lifetimes and view chains computed here."""
    nodes, outputs = graph.nodes, set(graph.outputs)
    defined = {v: i for i, n in enumerate(nodes) for v in n.outputs}
    group = {}                                        # value -> first value of its view chain
    for n in nodes:
        if n.op == "reshape" and n.outputs[0] not in outputs:
            group[n.outputs[0]] = group.get(n.inputs[0], n.inputs[0])
    end = {}
    for i, n in enumerate(nodes):
        for v in n.inputs:
            end[group.get(v, v)] = i
    roots = [v for v in defined if v not in outputs and v not in group]
    in_arena = {v for v in defined if group.get(v, v) in roots}
    assert set(plan.offsets) == in_arena
    for v, offset in plan.offsets.items():
        assert offset % plan.alignment == 0
        assert 0 <= offset and offset + size_of(v, env) <= plan.arena_bytes
        assert offset == plan.offsets[group.get(v, v)]
        assert plan.where(v).home is Home.ARENA
    for v in graph.outputs:
        if v.producer is not None:
            assert plan.where(v).home is Home.OUTPUT
    for v, r in group.items():
        assert plan.where(v).root is plan.where(r).root

    span = {r: (defined[r], max(defined[r], end.get(r, 0))) for r in roots}
    for i, a in enumerate(roots):
        for b in roots[i + 1:]:                       # a is defined first or by the same kernel
            lo_a, hi_a = plan.offsets[a], plan.offsets[a] + size_of(a, env)
            lo_b, hi_b = plan.offsets[b], plan.offsets[b] + size_of(b, env)
            if hi_a <= lo_b or hi_b <= lo_a or span[a][1] < span[b][0]:
                continue                              # no shared byte or no shared kernel
            assert span[a][1] == span[b][0] and (lo_a, hi_a) == (lo_b, hi_b), (a, b)
            assert plan.inplace_of[b] in [v for v in b.producer.inputs if group.get(v, v) is a]
    for result, operand in plan.inplace_of.items():
        node = result.producer
        assert (node.attrs.get("kind") == "loop" if node.op == "fused"
                else get_op(node.op).fusion is Fusion.ELEMENTWISE)
        assert operand in node.inputs and operand.type.shape == result.type.shape
        assert size_of(operand, env) == size_of(result, env)
        assert plan.offsets[result] == plan.offsets[operand]
    assert plan.lower_bound == independent_peak(graph, plan, env, span, group)
    assert plan.lower_bound <= plan.arena_bytes


def independent_peak(graph: Graph, plan, env: dict[str, int], span: dict[Value, tuple[int, int]],
                     group: dict[Value, Value]) -> int:
    """Peak live bytes, an in-place chain counted as one block living over its members' spans."""
    block = {}
    for r in span:                                    # in definition order: operands come first
        operand = plan.inplace_of.get(r)
        block[r] = r if operand is None else block[group.get(operand, operand)]
    live = [0] * len(graph.nodes)
    for b in set(block.values()):
        first = min(span[r][0] for r in span if block[r] is b)
        last = max(span[r][1] for r in span if block[r] is b)
        for k in range(first, last + 1):
            live[k] += size_of(b, env)
    return max(live, default=0)


# --- random DAGs of elementwise / matmul / reduce / reshape ops ---------------------------------

_UNARY = ["relu", "neg", "tanh", "sin"]
_BINARY = ["add", "mul", "sub", "maximum"]


def _broadcasts_into(small: tuple, big: tuple) -> bool:
    return len(small) == len(big) and all(s in (1, b) for s, b in zip(small, big))


@st.composite
def dags(draw, max_nodes: int = 14) -> Graph:
    """A random graph over f32[?, 4] and f32[?, 6] inputs; outputs drawn from every value."""
    rng = np.random.default_rng(draw(st.integers(0, 2**16), label="seed"))
    b = Builder()
    values = [b.input("x", f32[BATCH, 4]), b.input("y", f32[BATCH, 6])]

    def param(shape):
        return b.param(f"p{len(b.graph.params)}", rng.uniform(-1, 1, shape).astype(np.float32))

    for i in range(draw(st.integers(1, max_nodes), label="nodes")):
        v = values[draw(st.integers(0, len(values) - 1), label="operand")]
        shape = v.type.shape
        kind = draw(st.sampled_from(["unary", "binary", "bias", "matmul", "reduce", "reshape", "select"]))
        partners = [w for w in values if _broadcasts_into(w.type.shape, shape)]
        with b.loc(f"n{i}"):
            if kind == "unary":
                values.append(b.op(draw(st.sampled_from(_UNARY)), v))
            elif kind in ("binary", "select"):
                w = partners[draw(st.integers(0, len(partners) - 1))]
                first, second = (v, w) if draw(st.booleans()) else (w, v)
                if kind == "binary":
                    values.append(b.op(draw(st.sampled_from(_BINARY)), first, second))
                else:
                    values.append(b.select(b.greater(first, second), first, second))
            elif kind == "bias":
                values.append(b.add(v, param((shape[-1],))))
            elif kind == "matmul" and len(shape) == 2:
                values.append(b.matmul(v, param((shape[1], draw(st.sampled_from([1, 3, 4, 8]))))))
            elif kind == "reduce":
                values.append(b.reduce_sum(v, axes=(len(shape) - 1,), keepdims=True))
            elif kind == "reshape" and len(shape) == 3:
                values.append(b.reshape(v, shape=(BATCH, shape[1] * shape[2])))
            elif kind == "reshape":
                split = draw(st.sampled_from([d for d in (1, 2, 3) if shape[1] % d == 0]))
                values.append(b.reshape(v, shape=(BATCH, split, shape[1] // split)))
    chosen = draw(st.lists(st.integers(0, len(values) - 1), min_size=1, max_size=3, unique=True))
    return b.finish([values[i] for i in chosen], [f"o{k}" for k in range(len(chosen))])


def random_inputs(graph: Graph, batch: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.uniform(-2, 2, resolve_shape(v.type.shape, {BATCH: batch})).astype(np.float32)
            for v in graph.data_inputs]


def assert_same(actual: list[np.ndarray], expected: list[np.ndarray]) -> None:
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert a.dtype == e.dtype and a.shape == e.shape
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6)


@settings(max_examples=80, deadline=None)
@given(dags(), st.integers(0, 4), st.sampled_from([1, 8, 64]))
def test_random_plans_are_safe_and_run(graph, batch, alignment):
    env = {BATCH: batch}
    plan = plan_memory(graph, env, alignment)
    check_plan(graph, plan, env)
    inputs = random_inputs(graph, batch)
    assert_same(simulate(graph, plan, inputs), run(graph, inputs))


# --- the two model-like graphs ------------------------------------------------------------------

def build_mlp(rng) -> Graph:
    """784-128-10 with bias, relu and softmax, as a Keras Sequential traces."""
    b = Builder()
    x = b.input("x", f32[BATCH, 784])

    def param(name, shape):
        return b.param(name, rng.uniform(-0.1, 0.1, shape).astype(np.float32))

    with b.loc("dense"):
        h = b.relu(b.add(b.matmul(x, param("w0", (784, 128))), param("b0", (128,))))
    with b.loc("dense_1"):
        y = b.softmax(b.add(b.matmul(h, param("w1", (128, 10))), param("b1", (10,))))
    return b.finish([y], ["y"])


def build_cnn(rng) -> Graph:
    """conv-relu-pool twice, flatten (a reshape view), dense, softmax; 12x12x1 images."""
    b = Builder()
    x = b.input("x", f32[BATCH, 12, 12, 1])

    def param(name, shape):
        return b.param(name, rng.uniform(-0.3, 0.3, shape).astype(np.float32))

    with b.loc("conv"):
        h = b.relu(b.add(b.conv2d(x, param("k0", (3, 3, 1, 8))), param("c0", (8,))))   # 10x10x8
    with b.loc("pool"):
        h = b.max_pool2d(h, window=(2, 2), strides=(2, 2))                           # 5x5x8
    with b.loc("conv_1"):
        h = b.relu(b.add(b.conv2d(h, param("k1", (3, 3, 8, 16))), param("c1", (16,))))  # 3x3x16
    with b.loc("flatten"):
        h = b.reshape(h, shape=(BATCH, 144))
    with b.loc("dense"):
        y = b.softmax(b.add(b.matmul(h, param("w", (144, 10))), param("b", (10,))))
    return b.finish([y], ["y"])


def test_mlp_arena_meets_the_lower_bound():
    g = build_mlp(np.random.default_rng(0))
    env = {BATCH: 32}
    plan = plan_memory(g, env)
    check_plan(g, plan, env)
    # The hidden [32,128] block lives while the [32,10] logits are computed from it.
    assert plan.lower_bound == 32 * 128 * 4 + 32 * 10 * 4
    assert plan.arena_bytes <= 1.1 * plan.lower_bound
    add0, relu0, add1 = g.nodes[1].outputs[0], g.nodes[2].outputs[0], g.nodes[4].outputs[0]
    assert plan.inplace_of == {add0: g.nodes[0].outputs[0], relu0: add0, add1: g.nodes[3].outputs[0]}
    inputs = random_inputs(g, 32)
    assert_same(simulate(g, plan, inputs), run(g, inputs))


def test_cnn_arena_meets_the_lower_bound():
    g = build_cnn(np.random.default_rng(1))
    env = {BATCH: 32}
    plan = plan_memory(g, env)
    check_plan(g, plan, env)
    conv0, pool0, conv1, dense = (32 * 10 * 10 * 8 * 4, 32 * 5 * 5 * 8 * 4, 32 * 3 * 3 * 16 * 4,
                                  32 * 10 * 4)
    assert plan.lower_bound == max(conv0 + pool0, pool0 + conv1, conv1 + dense)
    assert plan.arena_bytes <= 1.1 * plan.lower_bound
    flatten = g.nodes[7].outputs[0]
    assert g.nodes[7].op == "reshape" and plan.view_of == {flatten: g.nodes[6].outputs[0]}
    inputs = random_inputs(g, 32)
    assert_same(simulate(g, plan, inputs), run(g, inputs))


# --- views, in-place rules, zero sizes, the table, errors ---------------------------------------

def test_views_point_at_the_callers_arrays():
    b = Builder()
    x = b.input("x", f32[BATCH, 6])
    w = b.param("w", np.ones((2, 3), np.float32))
    xv = b.reshape(x, shape=(BATCH, 2, 3))          # view of a graph input
    wv = b.reshape(w, shape=(6,))                   # view of a parameter
    e = b.exp(xv)                                   # a graph output ...
    ev = b.reshape(e, shape=(BATCH, 6))             # ... viewed and read again
    out = b.reshape(b.add(ev, wv), shape=(BATCH, 2, 3))   # a reshape that is an output: a copy
    g = b.finish([e, out], ["e", "out"])
    plan = plan_memory(g, {BATCH: 2})
    assert plan.where(xv) == plan.where(x) and plan.where(x).home is Home.INPUT
    assert plan.where(wv).home is Home.PARAM and plan.where(wv).root is w
    assert plan.where(ev).home is Home.OUTPUT and plan.where(ev).root is e
    assert plan.where(out).home is Home.OUTPUT and out not in plan.view_of
    assert plan.view_of == {xv: x, wv: w, ev: e}
    assert list(plan.offsets) == [g.nodes[4].outputs[0]]      # only the add lives in the arena
    inputs = random_inputs(g, 2)
    assert_same(simulate(g, plan, inputs), run(g, inputs))


def test_inplace_only_where_legal():
    b = Builder()
    x = b.input("x", f32[BATCH, 4])
    w = b.param("w", np.ones((4, 4), np.float32))
    a = b.matmul(x, w)
    c = b.matmul(x, w)
    s = b.reduce_sum(c, axes=(1,), keepdims=True)   # [?,1]: c still needed below
    t1 = b.add(s, a)           # s broadcasts: not its buffer; a dies here with a's shape: a's
    t2 = b.mul(t1, c)          # t1 and c both die here: the first legal operand, t1
    m = b.matmul(t2, w)        # matmul: never in place
    big = b.greater(m, x)      # a bool result is smaller than m: not in place
    r = b.select(big, m, x)    # m dies here, same shape and size: in place
    u = b.relu(x)              # a graph input is not the arena's
    k = b.reduce_max(u, axes=(1,), keepdims=True)
    wide = b.less(k, u)        # k dies here with as many bytes, but it is broadcast: not in place
    g = b.finish([b.select(wide, r, u)], ["out"])
    plan = plan_memory(g, {BATCH: 3})
    assert size_of(k, {BATCH: 3}) == size_of(wide, {BATCH: 3})
    assert plan.inplace_of == {t1: a, t2: t1, r: m}
    check_plan(g, plan, {BATCH: 3})
    inputs = random_inputs(g, 3)
    assert_same(simulate(g, plan, inputs), run(g, inputs))


def _graph_with_fused(kind: str, results: int) -> tuple[Graph, list[Value], Node]:
    """x -> two matmuls p, q -> one fused node reading (p, q, p) -> a sum of its results but the
    first, which is dead when there are several."""
    b = Builder()
    x = b.input("x", f32[BATCH, 4])
    w = b.param("w", np.ones((4, 4), np.float32))
    p, q = b.matmul(x, w), b.matmul(x, w)
    fused = b.graph.append(Node("fused", [p, q, p], {"kind": kind}, [p.type] * results))
    used = fused.outputs[1:] or fused.outputs
    total = b.neg(used[0])
    for v in used[1:]:
        total = b.add(total, v)
    b.finish([total])
    return b.graph, [p, q], fused


def test_results_of_one_kernel_take_different_buffers():
    g, (p, q), loop = _graph_with_fused("loop", 3)
    plan = plan_memory(g, {BATCH: 2})
    r0, r1, r2 = loop.outputs
    # p is read twice but can be taken once, even by a dead result that does not extend its life.
    assert [plan.inplace_of.get(v) for v in loop.outputs] == [p, q, None]
    assert len({plan.offsets[r0], plan.offsets[r1], plan.offsets[r2]}) == 3
    check_plan(g, plan, {BATCH: 2})
    g, _, reduction = _graph_with_fused("reduction", 1)
    assert reduction.outputs[0] not in plan_memory(g, {BATCH: 2}).inplace_of


def test_operand_read_later_through_a_view_is_not_overwritten():
    b = Builder()
    x = b.input("x", f32[BATCH, 4])
    a = b.matmul(x, b.param("w", np.ones((4, 4), np.float32)))
    n = b.neg(a)                            # a is still read through the view below
    v = b.reshape(a, shape=(BATCH, 2, 2))
    g = b.finish([b.reshape(n, shape=(BATCH, 2, 2)), b.exp(v)], ["n", "e"])
    plan = plan_memory(g, {BATCH: 2})
    assert n not in plan.inplace_of and plan.where(v).root is a
    check_plan(g, plan, {BATCH: 2})
    inputs = random_inputs(g, 2)
    assert_same(simulate(g, plan, inputs), run(g, inputs))


def test_zero_size_values_get_an_offset_and_no_space():
    g = build_mlp(np.random.default_rng(2))
    plan = plan_memory(g, {BATCH: 0})
    assert plan.arena_bytes == 0 and plan.lower_bound == 0
    assert len(plan.offsets) == 5 and set(plan.offsets.values()) == {0}
    inputs = random_inputs(g, 0)
    assert_same(simulate(g, plan, inputs), run(g, inputs))


def test_best_fit_takes_the_smallest_gap_among_overlapping_buffers():
    placed = [Buffer([], 100, 0, 5, offset=0), Buffer([], 100, 7, 9, offset=100),
              Buffer([], 60, 0, 5, offset=200), Buffer([], 100, 0, 5, offset=300)]
    # Overlapping neighbours leave gaps [100, 200) (the buffer there lives later) and [260, 300).
    assert _best_fit(Buffer([], 40, 0, 1), placed, 1) == 260
    assert _best_fit(Buffer([], 80, 0, 1), placed, 1) == 100
    assert _best_fit(Buffer([], 150, 0, 1), placed, 1) == 400
    assert _best_fit(Buffer([], 40, 0, 1), placed, 64) == 128     # 260 is not aligned
    assert _best_fit(Buffer([], 40, 6, 6), placed, 1) == 0        # nothing overlaps kernel 6


def test_largest_buffers_are_placed_first():
    early, late, long = Buffer([], 64, 0, 1), Buffer([], 128, 2, 3), Buffer([], 64, 0, 3)
    # In order of first use, `late` would find only 64 free bytes below `long` and go on top.
    assert _place([early, long, late], 64) == 192
    assert (late.offset, early.offset, long.offset) == (0, 0, 128)


def test_table_names_every_buffer_and_the_ratio():
    g = build_cnn(np.random.default_rng(3))
    plan = plan_memory(g, {BATCH: 4})
    text = plan.table()
    lines = text.splitlines()
    assert lines[0].split() == ["value", "op", "shape", "bytes", "offset", "kernels", "shares"]
    assert len(lines) == 1 + len(plan.offsets) + 1
    row = next(line for line in lines if line.startswith("%1 "))
    assert row.split() == ["%1", "add", "(conv)", "f32[?,10,10,8]", str(4 * 800 * 4),
                           str(plan.offsets[g.nodes[1].outputs[0]]), "0..3", "in-place", "of", "%0"]
    assert any(line.startswith("%7 ") and line.endswith("view of %6") for line in lines)
    ratio = plan.arena_bytes / plan.lower_bound
    assert lines[-1] == (f"arena {plan.arena_bytes} bytes, lower bound {plan.lower_bound} bytes, "
                         f"ratio {ratio:.3f}")


def test_bad_input_is_named():
    g = build_mlp(np.random.default_rng(4))
    with pytest.raises(ShapeError, match=r"symbolic dimension '\?' is not bound"):
        plan_memory(g, {})
    with pytest.raises(ShapeError, match=r"size of symbol '\?' must be an int >= 0, got -1"):
        plan_memory(g, {BATCH: -1})
    with pytest.raises(IRError, match="alignment must be an int >= 1"):
        plan_memory(g, {BATCH: 1}, alignment=0)
    plan = plan_memory(g, {BATCH: 1})
    stranger = build_mlp(np.random.default_rng(4)).nodes[0].outputs[0]
    with pytest.raises(IRError, match="no location for"):
        plan.where(stranger)
    broken = build_mlp(np.random.default_rng(4))
    broken.nodes.reverse()
    with pytest.raises(IRError, match="reads .* which no earlier kernel or graph input defines"):
        plan_memory(broken, {BATCH: 1})

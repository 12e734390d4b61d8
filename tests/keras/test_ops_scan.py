"""ops.scan against loops written in numpy here: eager, traced (reference interpreter and
compiled), reverse, several carries and outputs, closed-over weights, gradients; and cumsum over
a symbolic axis, which is a scan."""
from __future__ import annotations

import numpy as np
import pytest

import nncompile
from nncompile.ir import BATCH, Builder, f32, verify
from nncompile.keras import ops, random
from nncompile.runtime.reference import run
from tests.keras.ops_harness import assert_matches, check, trace_graph, traced
from tests.passes.test_autodiff import check_gradients

RNG = np.random.default_rng(3)
XS = RNG.standard_normal((5, 2, 3)).astype(np.float32)
W = RNG.standard_normal((3, 4)).astype(np.float32) * 0.5
U = RNG.standard_normal((4, 4)).astype(np.float32) * 0.5


def _rnn_numpy(xs, h, reverse=False):
    """tanh(x W + h U) over the steps of xs; the hidden states stacked at their own steps."""
    states = [None] * len(xs)
    for t in (reversed(range(len(xs))) if reverse else range(len(xs))):
        h = np.tanh(xs[t] @ W + h @ U)
        states[t] = h
    return h, np.stack(states)


def _rnn_step(h, x):
    h = ops.tanh(ops.add(ops.matmul(x, W), ops.matmul(h, U)))
    return h, h


@pytest.mark.parametrize("reverse", [False, True])
def test_scan_eager_and_traced(reverse):
    h0 = np.zeros((2, 4), np.float32)
    want = _rnn_numpy(XS, h0, reverse)
    check(lambda xs, h: ops.scan(_rnn_step, h, xs, reverse=reverse), [XS, h0], list(want),
          rtol=1e-5, atol=1e-6)


def test_scan_with_several_carries_and_outputs_and_no_xs():
    def step(carry, _):
        count, total = carry
        return (ops.add(count, 1), ops.add(total, count)), (count, ops.multiply(total, 2.0))

    start = (np.int32(0), np.float32(0.5))
    want_counts = np.arange(4, dtype=np.int32)
    want_totals = 0.5 + np.concatenate([[0], np.cumsum(want_counts)[:-1]]).astype(np.float32)
    (count, total), (counts, doubled) = ops.scan(step, start, length=4)
    assert_matches(count, np.int32(4))
    assert_matches(total, np.float32(0.5 + 6))
    assert_matches(counts, want_counts)
    assert_matches(doubled, want_totals * 2)
    got = traced(lambda c, t: ops.scan(step, (c, t), length=4)[1][1], *map(np.asarray, start))
    assert_matches(got, want_totals * 2)


def test_scan_closes_over_traced_weights_as_invariants():
    b = Builder()
    xs = b.input("xs", f32[5, BATCH, 3])
    w, u = b.param("w", W), b.param("u", U)
    with ops.tracing(b):
        def step(h, x):
            h = ops.tanh(ops.add(ops.matmul(x, w), ops.matmul(h, u)))
            return h, ops.sum(h, axis=-1)
        last, sums = ops.scan(step, ops.zeros((None, 4)), xs)
    graph = b.finish([last, sums])
    verify(graph)
    scan_node = graph.nodes[-1]
    assert scan_node.op == "scan" and scan_node.inputs[2:] == [w, u]
    h, states = _rnn_numpy(XS, np.zeros((2, 4), np.float32))
    got = run(graph, [XS])
    assert_matches(got[0], h, rtol=1e-5)
    assert_matches(got[1], states.sum(-1), rtol=1e-5, atol=1e-6)
    for compiled, want in zip(nncompile.compile(graph)(XS), got):
        np.testing.assert_allclose(compiled, want, rtol=1e-4, atol=1e-5)


def test_scan_gradients_match_finite_differences():
    def build(b, values):
        with ops.tracing(b):
            return ops.scan(_rnn_step, values["h0"], values["xs"])[1]

    check_gradients(build, {"xs": XS.astype(np.float64), "h0": RNG.standard_normal((2, 4))},
                    samples=8)


def test_a_carry_that_changes_type_is_refused():
    with pytest.raises(ValueError, match=r"ops.scan: the carry returned by `f` has type "
                                         r"f32\[2,3\], the initial carry f32\[3\]"):
        traced(lambda xs: ops.scan(lambda c, x: (ops.add(c, x), x), ops.zeros((3,)), xs), XS)


def test_fori_loop():
    def power_iteration(i, v):
        w = ops.matmul(U, v)
        return ops.divide(w, ops.sqrt(ops.sum(ops.square(w))))

    v = np.ones(4, np.float32)
    want = v
    for _ in range(6):
        want = U @ want
        want = want / np.linalg.norm(want)
    check(lambda x: ops.fori_loop(2, 8, power_iteration, x), [v], want, rtol=1e-5, atol=1e-6)
    check(lambda x: ops.fori_loop(0, 3, lambda i, t: ops.add(t, ops.cast(i, "float32")), x),
          [np.float32(0.5)], np.float32(3.5))


def test_cond_runs_one_branch_eagerly_and_selects_when_traced():
    ran = []

    def branch(value):
        return lambda: ran.append(value) or (np.float32(value), np.int32(value))

    assert ops.cond(np.array(True), branch(1), branch(2)) == (1.0, 1) and ran == [1]
    got = traced(lambda p, x: ops.cond(p, lambda: ops.exp(x), lambda: ops.negative(x)),
                 np.array(False), XS[0])
    assert_matches(got, -XS[0])


def test_cumsum_over_a_symbolic_axis_is_a_scan():
    got = traced(lambda x: ops.cumsum(x, axis=0), XS, batched=True)
    assert_matches(got, np.cumsum(XS, axis=0), rtol=1e-5, atol=1e-6)
    check_gradients(lambda b, v: _traced_cumsum(b, v["x"]), {"x": RNG.standard_normal((4, 3))},
                    batched={"x"}, samples=8)


def _traced_cumsum(b, x):
    with ops.tracing(b):
        return ops.cumsum(x, axis=0)


def test_random_draws_in_a_scan_body_read_the_graph_seed():
    """The body captures the enclosing graph's seed: one mask, the same at every step."""
    b = Builder()
    xs = b.input("xs", f32[4, BATCH, 6])
    with ops.tracing(b):
        _, dropped = ops.scan(lambda c, x: (c, random.dropout(x, 0.5, seed=2)),
                              ops.zeros((1,)), xs)
    graph = b.finish([dropped])
    assert [v.name for v in graph.inputs] == ["xs", "seed"]
    ones = np.ones((4, 3, 6), np.float32)
    masks = [run(graph, [ones, np.int64(s)])[0] for s in (1, 2)]
    assert all((m == m[0]).all() and set(np.unique(m)) == {0.0, 2.0} for m in masks)
    assert not np.array_equal(*masks)


@pytest.mark.parametrize("steps", [1, 2, 5])
@pytest.mark.parametrize("batched", [False, True])
def test_compiled_scan_whose_carries_shift_into_each_other(steps, batched):
    """(a, b, c) -> (a + b + c + x, a, b): one new carry computed (written where the next step
    reads it), two that are the old values of others (copied through temporaries)."""
    rng = np.random.default_rng(steps)
    rows = (3,) if batched else ()
    a, b, c = (rng.standard_normal((*rows, 4)).astype(np.float32) for _ in range(3))
    xs = rng.standard_normal((steps, *rows, 4)).astype(np.float32)

    def step(carry, x):
        a, b, c = carry
        return (ops.add(ops.add(ops.add(a, b), c), x), a, b), ops.multiply(a, 2.0)

    def fn(a, b, c, xs):
        (a, b, c), doubled = ops.scan(step, (a, b, c), xs)
        return [a, b, c, doubled]

    graph, _ = trace_graph(fn, [a, b, c, xs], False)
    got = nncompile.compile(graph)(a, b, c, xs)
    doubled = []
    for x in xs:
        doubled.append(2 * a)
        a, b, c = a + b + c + x, a, b
    for g, w in zip(got, [a, b, c, np.stack(doubled)]):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)

"""Common subexpression elimination: equal nodes merge, different ones do not."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from nncompile.ir import BATCH, Builder, f32, i64, verify
from nncompile.passes.cse import cse
from nncompile.passes.dce import dce
from nncompile.runtime.reference import run
from rewrite_harness import check_rewrite


def test_duplicates_merge_and_commutative_operands_match():
    b = Builder()
    x, y = b.input("x", f32[BATCH, 4]), b.input("y", f32[BATCH, 4])
    e1, e2 = b.exp(x), b.exp(x)
    s1, s2 = b.add(e1, y), b.add(y, e2)          # equal once e2 is e1
    d1, d2 = b.sub(e1, y), b.sub(y, e2)          # not commutative: stay apart
    g = b.finish([b.mul(b.mul(s1, s2), b.add(d1, d2))], ["z"])
    check_rewrite(g, cse, """
        %0 = exp(%x) : f32[?,4]
        %1 = add(%0, %y) : f32[?,4]
        %2 = sub(%0, %y) : f32[?,4]
        %3 = sub(%y, %0) : f32[?,4]
        %4 = mul(%1, %1) : f32[?,4]
        %5 = add(%2, %3) : f32[?,4]
        %6 = mul(%4, %5) : f32[?,4]
        return %6
    """)


def test_constants_merge_by_value_dtype_and_sign_of_zero():
    b = Builder()
    x = b.input("x", f32[2])
    one_a, one_b = b.constant(1.0), b.constant(1.0)
    zero, minus_zero = b.constant(0.0), b.constant(-0.0)
    total = b.add(b.add(b.mul(x, one_a), b.mul(x, one_b)), b.add(b.add(x, zero), b.add(x, minus_zero)))
    check_rewrite(b.finish([total], ["z"]), cse, """
        %0 = constant() {value=dense<f32[]: 1.0>} : f32[]
        %1 = constant() {value=dense<f32[]: 0.0>} : f32[]
        %2 = constant() {value=dense<f32[]: -0.0>} : f32[]
        %3 = mul(%x, %0) : f32[2]
        %4 = add(%3, %3) : f32[2]
        %5 = add(%x, %1) : f32[2]
        %6 = add(%x, %2) : f32[2]
        %7 = add(%5, %6) : f32[2]
        %8 = add(%4, %7) : f32[2]
        return %8
    """)


def test_attributes_and_random_keys_distinguish_nodes():
    b = Builder()
    x = b.input("x", f32[3, 3])
    s0, s1 = b.reduce_sum(x, axes=[0]), b.reduce_sum(x, axes=[1])
    g = b.finish([b.add(s0, s1)], ["a"])
    assert [n.op for n in dce(cse(g)).nodes] == ["reduce_sum", "reduce_sum", "add"]

    b = Builder()
    seed = b.input("seed", i64[()])
    r1 = b.op("random_uniform", seed, shape=[4], key=1)
    r2 = b.op("random_uniform", seed, shape=[4], key=1)   # the same draw: a pure function
    r3 = b.op("random_uniform", seed, shape=[4], key=2)
    g = b.finish([b.add(b.add(r1, r2), r3)], ["z"])
    check_rewrite(g, cse, """
        %0 = random_uniform(%seed) {key=1, shape=[4]} : f32[4]
        %1 = random_uniform(%seed) {key=2, shape=[4]} : f32[4]
        %2 = add(%0, %0) : f32[4]
        %3 = add(%2, %1) : f32[4]
        return %3
    """, inputs=[np.array(42, np.int64)])


def test_equal_outputs_keep_a_node_each():
    b = Builder()
    x = b.input("x", f32[3])
    g = b.finish([b.exp(x), b.exp(x)], ["a", "b"])
    out = check_rewrite(g, cse, """
        %0 = exp(%x) : f32[3]
        %1 = exp(%x) : f32[3]
        return %0, %1
    """)
    assert out.outputs[0] is not out.outputs[1]


_OPS = ["neg", "exp", "add", "mul", "sub"]


def _canonical(v, memo) -> str:
    """An independent structural name of a value: equal names mean equal expressions."""
    if v.producer is None:
        return v.name
    if v not in memo:
        args = [_canonical(u, memo) for u in v.producer.inputs]
        if v.producer.op in ("add", "mul"):
            args.sort()
        memo[v] = f"{v.producer.op}({','.join(args)})"
    return memo[v]


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_random_graphs_keep_one_node_per_distinct_expression(data):
    b = Builder()
    values = [b.input("x", f32[BATCH, 3]), b.input("y", f32[BATCH, 3])]
    for _ in range(data.draw(st.integers(1, 14), label="nodes")):
        op = data.draw(st.sampled_from(_OPS), label="op")
        pick = st.integers(0, len(values) - 1)
        args = [values[data.draw(pick)] for _ in range(1 if op in ("neg", "exp") else 2)]
        values.append(b.op(op, *args))
    g = b.finish([values[-1]], ["out"])
    memo = {}
    live = dce(g.copy())
    expected = len({_canonical(n.outputs[0], memo) for n in live.nodes})
    inputs = [np.random.default_rng(2).uniform(-1, 1, (2, 3)).astype(np.float32) for _ in range(2)]
    before = run(g, inputs)
    out = dce(cse(g))
    verify(out)
    assert len(out.nodes) == expected
    np.testing.assert_array_equal(run(out, inputs)[0], before[0])

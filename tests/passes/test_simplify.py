"""Algebraic simplification: exact identities apply, inexact ones and broadcasting cases do not."""
from __future__ import annotations

import numpy as np
import pytest

from nncompile.ir import BATCH, Builder, f32, i32
from nncompile.passes.dce import dce
from nncompile.passes.simplify import simplify
from nncompile.runtime.reference import run
from rewrite_harness import check_rewrite


SIGNED_ZEROS = [np.array([[-0.0, 0.0, np.nan], [np.inf, -np.inf, -2.5]], np.float32)]


@pytest.mark.parametrize("op,constant,first", [
    ("add", -0.0, False), ("add", -0.0, True), ("sub", 0.0, False),
    ("mul", 1.0, False), ("mul", 1.0, True), ("div", 1.0, False), ("pow", 1.0, False)])
def test_identity_elements_disappear(op, constant, first):
    b = Builder()
    x = b.input("x", f32[BATCH, 3])
    c = b.constant(np.full((3,), constant, np.float32))
    y = b.op(op, c, x) if first else b.op(op, x, c)
    check_rewrite(b.finish([b.reciprocal(y)], ["y"]), simplify, """
        %0 = reciprocal(%x) : f32[?,3]
        return %0
    """, inputs=SIGNED_ZEROS)


@pytest.mark.parametrize("op,constant,first", [("add", 0.0, False), ("add", 0.0, True), ("sub", -0.0, False)])
def test_zeros_that_turn_minus_zero_into_plus_zero_stay(op, constant, first):
    # -0.0 + 0.0 == -0.0 - (-0.0) == +0.0, so 1/(x + 0.0) is +inf where 1/x is -inf.
    b = Builder()
    x = b.input("x", f32[BATCH, 3])
    y = b.op(op, b.constant(np.float32(constant)), x) if first else b.op(op, x, b.constant(np.float32(constant)))
    g = b.finish([b.reciprocal(y)], ["y"])
    after = dce(simplify(g.copy()))
    assert [n.op for n in after.nodes] == ["constant", op, "reciprocal"]
    assert run(after, SIGNED_ZEROS)[0][0, 0] == np.float32(np.inf)


def test_integer_zeros_disappear_on_either_side():
    b = Builder()
    x = b.input("x", i32[3])
    zero = b.constant(np.int32(0))
    g = b.finish([b.neg(b.sub(b.add(zero, b.add(x, zero)), zero))], ["y"])
    check_rewrite(g, simplify, """
        %0 = neg(%x) : i32[3]
        return %0
    """, inputs=[np.array([0, -7, 2**31 - 1], np.int32)])


def test_negations_cancel_and_fold_into_add_and_sub():
    b = Builder()
    x, y = b.input("x", f32[4]), b.input("y", f32[4])
    three = b.neg(b.neg(b.neg(x)))
    out = b.add(b.sub(x, b.neg(y)), b.add(three, y))
    check_rewrite(b.finish([out], ["z"]), simplify, """
        %0 = add(%x, %y) : f32[4]
        %1 = sub(%y, %x) : f32[4]
        %2 = add(%0, %1) : f32[4]
        return %2
    """)


def test_transpose_pairs_compose_or_cancel():
    b = Builder()
    x = b.input("x", f32[2, 3, 4])
    back = b.transpose(b.transpose(x, perm=[2, 0, 1]), perm=[1, 2, 0])
    moved = b.transpose(b.transpose(x, perm=[1, 0, 2]), perm=[0, 2, 1])
    g = b.finish([b.exp(back), moved], ["back", "moved"])
    check_rewrite(g, simplify, """
        %0 = transpose(%x) {perm=[1, 2, 0]} : f32[3,4,2]
        %1 = exp(%x) : f32[2,3,4]
        return %1, %0
    """)


def test_a_lookup_read_transposed_transposes_its_indices_instead():
    b = Builder()
    ids = b.input("ids", i32[BATCH, 5])
    table = b.param("table", np.arange(24, dtype=np.float32).reshape(6, 4))
    rows = b.op("gather", table, ids, allow_negative=False)
    time_major = b.transpose(rows, perm=[1, 0, 2])
    features_moved = b.transpose(rows, perm=[0, 2, 1])     # moves a row's own axis: kept
    g = b.finish([time_major, features_moved], ["time_major", "features_moved"])
    ids_value = np.random.default_rng(0).integers(0, 6, (3, 5)).astype(np.int32)
    check_rewrite(g, simplify, """
        %0 = gather(%table, %ids) {allow_negative=false} : f32[?,5,4]
        %1 = transpose(%ids) {perm=[1, 0]} : i32[5,?]
        %2 = gather(%table, %1) {allow_negative=false} : f32[5,?,4]
        %3 = transpose(%0) {perm=[0, 2, 1]} : f32[?,4,5]
        return %2, %3
    """, inputs=[ids_value])


def test_reshape_chains_become_one_reshape():
    b = Builder()
    x = b.input("x", f32[BATCH, 2, 6])
    flat = b.reshape(b.reshape(x, shape=[BATCH, 12]), shape=[BATCH, 3, 4])
    same = b.reshape(b.reshape(x, shape=[BATCH, 12]), shape=[BATCH, 2, 6])
    g = b.finish([flat, b.exp(same)], ["flat", "same"])
    check_rewrite(g, simplify, """
        %0 = reshape(%x) {shape=[?, 3, 4]} : f32[?,3,4]
        %1 = exp(%x) : f32[?,2,6]
        return %0, %1
    """)


def test_broadcast_operands_are_read_directly():
    b = Builder()
    x = b.input("x", f32[BATCH, 4])
    ones = b.broadcast(b.constant(1.0), shape=[BATCH, 4])
    half = b.broadcast(b.constant(np.full((4,), 0.5, np.float32)), shape=[BATCH, 4])
    g = b.finish([b.add(b.mul(x, ones), half)], ["y"])
    check_rewrite(g, simplify, """
        %0 = constant() {value=dense<f32[4]: [0.5, 0.5, 0.5, 0.5]>} : f32[4]
        %1 = add(%x, %0) : f32[?,4]
        return %1
    """)


def test_select_of_equal_branches():
    b = Builder()
    x, y = b.input("x", f32[3]), b.input("y", f32[3])
    g = b.finish([b.exp(b.select(b.greater(x, y), x, x))], ["z"])
    check_rewrite(g, simplify, """
        %0 = exp(%x) : f32[3]
        return %0
    """)


def test_inexact_and_broadcasting_rewrites_are_not_made():
    b = Builder()
    x = b.input("x", f32[4])
    zero_rows = b.constant(np.zeros((2, 4), np.float32))    # x + 0 here broadcasts x to [2, 4]
    ones = b.constant(np.array([1.0, 1.0, 2.0, 1.0], np.float32))
    parts = [b.sub(x, x), b.mul(x, b.constant(0.0)), b.div(x, x), b.mul(x, ones)]
    total = b.add(b.add(parts[0], parts[1]), b.add(parts[2], parts[3]))
    g = b.finish([b.add(total, zero_rows)], ["y"])
    nasty = [np.array([np.nan, np.inf, -np.inf, 0.0], np.float32)]
    check_rewrite(g, simplify, """
        %0 = constant() {value=dense<f32[2,4]: [[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]>} : f32[2,4]
        %1 = constant() {value=dense<f32[4]: [1.0, 1.0, 2.0, 1.0]>} : f32[4]
        %2 = sub(%x, %x) : f32[4]
        %3 = constant() {value=dense<f32[]: 0.0>} : f32[]
        %4 = mul(%x, %3) : f32[4]
        %5 = div(%x, %x) : f32[4]
        %6 = mul(%x, %1) : f32[4]
        %7 = add(%2, %4) : f32[4]
        %8 = add(%5, %6) : f32[4]
        %9 = add(%7, %8) : f32[4]
        %10 = add(%9, %0) : f32[2,4]
        return %10
    """, inputs=nasty)


def test_an_output_is_not_made_an_input():
    # The runtime copies outputs that are inputs after each call: the nodes stay (moved last).
    b = Builder()
    x = b.input("x", f32[3])
    g = b.finish([b.mul(x, b.constant(1.0)), b.neg(b.neg(x))], ["a", "b"])
    out = check_rewrite(g, simplify, """
        %0 = constant() {value=dense<f32[]: 1.0>} : f32[]
        %1 = neg(%x) : f32[3]
        %2 = mul(%x, %0) : f32[3]
        %3 = neg(%1) : f32[3]
        return %2, %3
    """)
    assert not set(out.outputs) & set(out.inputs)


def test_nested_concats_along_one_axis_flatten():
    b = Builder()
    x, y, z = (b.input(n, f32[3, 2]) for n in "xyz")
    rows = b.concat(y, z, axis=0)
    g = b.finish([b.concat(x, b.concat(y, z, axis=1), axis=-1), b.concat(rows, rows, axis=1)],
                 ["wide", "across"])
    check_rewrite(g, simplify, """
        %0 = concat(%y, %z) {axis=0} : f32[6,2]
        %1 = concat(%x, %y, %z) {axis=-1} : f32[3,6]
        %2 = concat(%0, %0) {axis=1} : f32[6,4]
        return %1, %2
    """)


def _relu_pool_grad(window=(2, 2), strides=(2, 2), pads=(0, 0, 0, 0), zero=0.0, other_use=False,
                    test_input=False):
    """A Conv2D-ReLU-MaxPooling2D block's backward through the pooling and the relu, as autodiff
    writes it: select(y > 0, max_pool2d_grad(y, dz), 0) with y = relu(p)."""
    b = Builder()
    p = b.input("p", f32[BATCH, 7, 7, 3])
    y = b.op("relu", p)
    pooled = b.op("max_pool2d", y, window=window, strides=strides, pads=pads)
    dz = b.input("dz", f32[(BATCH, *pooled.type.shape[1:])])
    grad = b.op("max_pool2d_grad", y, dz, window=window, strides=strides, pads=pads)
    test = b.greater(p if test_input else y, b.scalar(0.0, y))
    out = b.select(test, grad, b.constant(np.float32(zero)))
    outputs = [out, pooled] + ([grad] if other_use else [])
    return b.finish(outputs, [f"o{i}" for i in range(len(outputs))])


def _relu_pool_inputs(graph, seed=0):
    """Negatives, zeros of both signs, ties within a window, a NaN and an infinity."""
    rng = np.random.default_rng(seed)
    p = rng.integers(-3, 4, (4, 7, 7, 3)).astype(np.float32)   # small integers: many ties
    p[0, 0, 0, 0], p[1, 2, 3, 1], p[2, 4, 4, 2], p[3, 1, 1, 0] = np.nan, -0.0, np.inf, -np.inf
    dz_shape = [4, *graph.data_inputs[1].type.shape[1:]]
    dz = rng.standard_normal(dz_shape).astype(np.float32)
    dz[0, 0, 0, 1] = -0.0
    return [p, dz]


@pytest.mark.parametrize("window,strides,pads", [((2, 2), (2, 2), (0, 0, 0, 0)),
                                                  ((3, 3), (2, 2), (1, 1, 1, 1)),
                                                  ((2, 3), (1, 2), (0, 1, 1, 0))])
def test_relu_gradient_moves_through_max_pooling(window, strides, pads):
    from nncompile.passes.cse import cse
    graph = _relu_pool_grad(window, strides, pads)
    inputs = _relu_pool_inputs(graph)
    before = run(graph, inputs)
    after = dce(cse(simplify(graph.copy())))
    selects = [n for n in after.nodes if n.op == "select"]
    assert len(selects) == 1 and selects[0].outputs[0].type.shape[1:] == after.outputs[1].type.shape[1:]
    assert [n.op for n in after.nodes].count("max_pool2d") == 1     # the forward one, shared
    for got, want in zip(run(after, inputs), before):
        np.testing.assert_array_equal(got, want)
        assert not np.any((np.signbit(got) != np.signbit(want)) & ~np.isnan(got))


def test_relu_gradient_through_max_pooling_compiled_as_before():
    """Compiled, the rewritten step gives the reference interpreter's results on the graph as
    autodiff wrote it, NaN, infinities, ties and signed zeros included."""
    import nncompile
    graph = _relu_pool_grad((3, 3), (2, 2), (1, 1, 1, 1))
    inputs = _relu_pool_inputs(graph, seed=1)
    want = run(graph, inputs)
    for got, expected in zip(nncompile.compile(graph.copy(), pipeline="training")(*inputs), want):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("case", ["other_use", "minus_zero", "test_input"])
def test_relu_gradient_through_max_pooling_kept_when_not_exact_or_not_cheaper(case):
    graph = _relu_pool_grad(other_use=case == "other_use", zero=-0.0 if case == "minus_zero" else 0.0,
                            test_input=case == "test_input")
    after = dce(simplify(graph.copy()))
    assert [n.op for n in after.nodes].count("max_pool2d_grad") == 1
    select = next(n for n in after.nodes if n.op == "select")
    assert select.inputs[1].producer.op == "max_pool2d_grad"


@pytest.mark.parametrize("which", ["test", "other"])
def test_relu_gradient_through_max_pooling_with_full_zeros_is_left_and_compiles(which):
    """Zeros of the activation's whole shape (hand-written IR, or folded broadcasts) would not fit
    the pooled tensor: the rule leaves them, and the step compiles and runs as written."""
    import nncompile
    b = Builder()
    y = b.input("y", f32[4, 6, 6, 3])
    dz = b.input("dz", f32[4, 3, 3, 3])
    grad = b.op("max_pool2d_grad", y, dz, window=(2, 2), strides=(2, 2))
    zeros = b.constant(np.zeros((4, 6, 6, 3), np.float32))
    scalar = b.constant(np.float32(0.0))
    out = b.select(b.greater(y, zeros if which == "test" else scalar), grad, zeros if which == "other" else scalar)
    graph = b.finish([out], ["o"])
    inputs = [np.random.default_rng(0).standard_normal(v.type.shape).astype(np.float32) for v in graph.data_inputs]
    assert [n.op for n in dce(simplify(graph.copy())).nodes].count("max_pool2d") == 0
    np.testing.assert_array_equal(nncompile.compile(graph.copy(), pipeline="training")(*inputs), run(graph, inputs)[0])

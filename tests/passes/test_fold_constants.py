"""Constant folding: chains of constants fold, parameters and large broadcasts do not."""
from __future__ import annotations

import numpy as np

from nncompile.ir import BATCH, Builder, f32, i32
from nncompile.passes.fold_constants import fold_constants
from nncompile.runtime.reference import run
from rewrite_harness import check_rewrite


def test_chain_of_constants_folds_into_one_constant():
    b = Builder()
    x = b.input("x", f32[BATCH, 3])
    c = b.add(b.neg(b.constant(np.array([1.0, 2.0, 3.0], np.float32))), b.constant(1.0))
    g = b.finish([b.mul(x, c)], ["y"])
    check_rewrite(g, fold_constants, """
        %0 = constant() {value=dense<f32[3]: [0.0, -1.0, -2.0]>} : f32[3]
        %1 = mul(%x, %0) : f32[?,3]
        return %1
    """)


def test_integer_dtype_is_kept():
    b = Builder()
    x = b.input("x", i32[2])
    g = b.finish([b.add(x, b.mul(b.constant(np.int32(2)), b.constant(np.int32(3))))], ["y"])
    out = check_rewrite(g, fold_constants, """
        %0 = constant() {value=dense<i32[]: 6>} : i32[]
        %1 = add(%x, %0) : i32[2]
        return %1
    """, inputs=[np.array([1, -4], np.int32)])
    assert out.nodes[0].attrs["value"].dtype == np.int32


def test_parameters_are_never_folded():
    w = np.ones(3, np.float32)
    b = Builder()
    x = b.input("x", f32[3])
    g = b.finish([b.mul(x, b.add(b.param("w", w), b.constant(1.0)))], ["y"])
    out = check_rewrite(g, fold_constants, """
        %0 = constant() {value=dense<f32[]: 1.0>} : f32[]
        %1 = add(%w, %0) : f32[3]
        %2 = mul(%x, %1) : f32[3]
        return %2
    """)
    w[:] = 5.0   # the live array: the graph reads the new value
    np.testing.assert_array_equal(run(out, [np.ones(3, np.float32)])[0], np.full(3, 6.0, np.float32))


def test_broadcast_of_a_scalar_stays_lazy_but_small_results_fold():
    b = Builder()
    x = b.input("x", f32[100, 100])
    big = b.broadcast(b.constant(2.0), shape=[100, 100])
    small = b.broadcast(b.constant(3.0), shape=[4])
    g = b.finish([b.mul(x, big), b.reduce_sum(small, axes=[0])], ["y", "s"])
    check_rewrite(g, fold_constants, """
        %0 = constant() {value=dense<f32[]: 2.0>} : f32[]
        %1 = broadcast(%0) {shape=[100, 100]} : f32[100,100]
        %2 = mul(%x, %1) : f32[100,100]
        %3 = constant() {value=dense<f32[]: 12.0>} : f32[]
        return %2, %3
    """)


def test_random_draws_and_failing_references_are_not_folded():
    b = Builder()
    x = b.input("x", f32[4])
    draws = b.op("random_uniform", b.constant(np.int64(7)), shape=[4], key=3)
    picked = b.gather(b.constant(np.arange(3, dtype=np.float32)), b.constant(np.array([5], np.int64)))
    g = b.finish([b.add(x, draws), picked], ["y", "bad"])
    folded = fold_constants(g)
    assert [n.op for n in folded.nodes] == ["constant", "random_uniform", "constant", "constant", "gather", "add"]


def test_symbolic_results_are_not_folded():
    b = Builder()
    x = b.input("x", f32[BATCH])
    ones = b.broadcast(b.constant(1.0), shape=[BATCH])
    g = b.finish([b.add(x, ones)], ["y"])
    check_rewrite(g, fold_constants, """
        %0 = constant() {value=dense<f32[]: 1.0>} : f32[]
        %1 = broadcast(%0) {shape=[?]} : f32[?]
        %2 = add(%x, %1) : f32[?]
        return %2
    """)

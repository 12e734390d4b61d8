"""Removal of no-ops: nodes returning their input vanish, look-alikes that move data stay."""
from __future__ import annotations

import numpy as np

from nncompile.ir import BATCH, Builder, f32
from nncompile.passes.remove_noops import remove_noops
from rewrite_harness import check_rewrite


def test_every_kind_of_noop_is_removed():
    b = Builder()
    x = b.input("x", f32[BATCH, 4, 4, 2])
    v = b.reshape(x, shape=[BATCH, 4, 4, 2])
    v = b.transpose(v, perm=[0, 1, 2, 3])
    v = b.broadcast(v, shape=[BATCH, 4, 4, 2])
    v = b.cast(v, dtype="f32")
    v = b.concat(v, axis=1)
    v = b.pad(v, pads=[0] * 8)
    v = b.slice(v, starts=[0, 0], ends=[4, 2**31 - 1], axes=[1, 2], steps=[1, 1])
    v = b.reduce_sum(v, axes=[])
    v = b.max_pool2d(v, window=[1, 1], strides=[1, 1])
    v = b.avg_pool2d(v, window=[1, 1], strides=[1, 1])
    check_rewrite(b.finish([b.relu(v)], ["y"]), remove_noops, """
        %0 = relu(%x) : f32[?,4,4,2]
        return %0
    """)


def test_data_movement_that_looks_like_a_noop_stays():
    b = Builder()
    x = b.input("x", f32[4, 4])
    flipped = b.slice(x, starts=[-1], ends=[-2**31 + 1], axes=[0], steps=[-1])   # same shape, reversed
    swapped = b.transpose(x, perm=[1, 0])                                         # same shape, moved
    halves = b.cast(b.cast(x, dtype="f16"), dtype="f32")                          # rounds
    pooled = b.max_pool2d(b.reshape(x, shape=[1, 4, 4, 1]), window=[1, 1], strides=[2, 2])
    g = b.finish([b.add(b.add(flipped, swapped), halves), pooled], ["y", "p"])
    check_rewrite(g, remove_noops, """
        %0 = slice(%x) {axes=[0], ends=[-2147483647], starts=[-1], steps=[-1]} : f32[4,4]
        %1 = transpose(%x) {perm=[1, 0]} : f32[4,4]
        %2 = cast(%x) {dtype=f16} : f16[4,4]
        %3 = cast(%2) {dtype=f32} : f32[4,4]
        %4 = reshape(%x) {shape=[1, 4, 4, 1]} : f32[1,4,4,1]
        %5 = max_pool2d(%4) {strides=[2, 2], window=[1, 1]} : f32[1,2,2,1]
        %6 = add(%0, %1) : f32[4,4]
        %7 = add(%6, %3) : f32[4,4]
        return %7, %5
    """, inputs=[np.arange(16, dtype=np.float32).reshape(4, 4) / 3])


def test_a_symbolic_axis_read_backwards_stays():
    b = Builder()
    x = b.input("x", f32[BATCH, "T"])
    flipped = b.slice(x, starts=[-1], ends=[-2**31 + 1], axes=[1], steps=[-1])
    check_rewrite(b.finish([b.relu(flipped)], ["y"]), remove_noops, """
        %0 = slice(%x) {axes=[1], ends=[-2147483647], starts=[-1], steps=[-1]} : f32[?,T]
        %1 = relu(%0) : f32[?,T]
        return %1
    """, inputs=[np.arange(6, dtype=np.float32).reshape(2, 3)])

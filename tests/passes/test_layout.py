"""Layout: a transpose of a matmul operand's last two axes becomes the matmul's flag."""
from __future__ import annotations

import numpy as np

from nncompile.ir import BATCH, Builder, f32
from nncompile.passes.layout import layout
from rewrite_harness import check_rewrite


def test_transposed_operands_are_read_in_place():
    w = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    b = Builder()
    x = b.input("x", f32[4, BATCH])
    wt = b.transpose(b.param("w", w), perm=[1, 0])
    y = b.matmul(b.transpose(x, perm=[1, 0]), wt)
    back = b.matmul(wt, y, transpose_b=True)          # a flag already set stays, the other flips
    check_rewrite(b.finish([y, back], ["y", "back"]), layout, """
        %0 = matmul(%x, %w) {transpose_a=true, transpose_b=true} : f32[?,5]
        %1 = matmul(%w, %0) {transpose_a=true, transpose_b=true} : f32[4,?]
        return %0, %1
    """, rtol=1e-5, atol=1e-5)


def test_batched_swap_is_absorbed_but_other_permutations_are_not():
    b = Builder()
    x = b.input("x", f32[2, 3, 4])
    y = b.input("y", f32[2, 3, 5])
    z = b.input("z", f32[3, 4, 5])
    swapped = b.matmul(b.transpose(x, perm=[0, 2, 1]), y)      # (2,4,3) @ (2,3,5)
    moved = b.matmul(b.transpose(x, perm=[1, 0, 2]), z)        # (3,2,4) @ (3,4,5): batch axis moved
    check_rewrite(b.finish([swapped, moved], ["s", "m"]), layout, """
        %0 = matmul(%x, %y) {transpose_a=true} : f32[2,4,5]
        %1 = transpose(%x) {perm=[1, 0, 2]} : f32[3,2,4]
        %2 = matmul(%1, %z) : f32[3,2,5]
        return %0, %2
    """, rtol=1e-5, atol=1e-5)

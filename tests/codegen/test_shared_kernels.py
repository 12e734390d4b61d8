"""Products whose GEMM code would be the same (same epilogue, same width; M and K are run-time
arguments) share one function in a module; any difference in the epilogue gets its own."""
from __future__ import annotations

import re

import numpy as np

import nncompile
from nncompile.ir import BATCH, Builder, f32
from nncompile.runtime.reference import run as reference_run


def _mlp():
    rng = np.random.default_rng(3)
    b = Builder()
    x = b.input("x", f32[BATCH, 8])
    layers = [(8, lambda h: b.op("relu", h)), (32, lambda h: b.op("relu", h)),
              (32, lambda h: b.mul(h, b.scalar(0.5, h))), (32, lambda h: b.mul(h, b.scalar(0.25, h))),
              (32, b.tanh)]
    h = x
    for i, (depth, activation) in enumerate(layers):
        w = b.param(f"w{i}", rng.standard_normal((depth, 32)).astype(np.float32) / 4)
        bias = b.param(f"b{i}", rng.standard_normal(32).astype(np.float32))
        h = activation(b.add(b.op("matmul", h, w), bias))
    return b.finish([h], ["y"])


def test_equal_epilogue_products_share_a_function_and_others_keep_their_own():
    graph = _mlp()
    exe = nncompile.compile(graph)
    gemms = set(re.findall(r'define [^@]*@"(gemm\.e[0-9a-f]+)"\(', exe.llvm_ir()))
    # relu after K=8 and after K=32 share; the two scales and tanh are three more
    assert len(gemms) == 4, gemms
    x = np.random.default_rng(4).standard_normal((5, 8)).astype(np.float32)
    np.testing.assert_allclose(exe(x), reference_run(graph, [x])[0], rtol=1e-5, atol=1e-6)


"""Products whose epilogue code would be the same share one tile function in a module (the GEMM
is the host library's); any difference in the epilogue gets its own.
Constants made once per process give the same IR text as constants made at each use."""
from __future__ import annotations

import re
import struct

import numpy as np
from llvmlite import ir

import nncompile
from nncompile.codegen import cpu as codegen
from nncompile.codegen.mathlib import F32, const
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
    text = exe.llvm_ir()
    tiles = set(re.findall(r'define [^@]*@"(tile\.e[0-9a-f]+)"\(', text))
    # the two scales differ: two tile functions; a bias then relu or tanh runs in the library
    # kernel's registers (the first product, 8 deep, is a plain loop of the module's own)
    assert len(tiles) == 2, tiles
    # the products themselves are the host library's GEMMs, declared, not defined, in the module
    for kernel in ("tile", "bias", "bias_tanh"):
        assert re.search(rf'declare void @"nnc\.gemm\.f32\.nn\.{kernel}"\(', text), kernel
    assert not re.search(r'define [^@]*@"[^"]*\.(micro|tiles|driver)"', text)
    x = np.random.default_rng(4).standard_normal((5, 8)).astype(np.float32)
    np.testing.assert_allclose(exe(x), reference_run(graph, [x])[0], rtol=1e-5, atol=1e-6)


def test_a_module_made_again_with_the_constants_kept_is_the_same_text():
    exe = nncompile.compile(_mlp())
    assert str(codegen.build_module(exe.graph, exe.layout)) == exe.llvm_ir()


def test_kept_constants_tell_apart_what_compares_equal():
    vector = ir.VectorType(F32, 4)
    nan_bits = struct.unpack("<d", struct.pack("<Q", 0x7FF8000020000000))[0]
    made = [const(v, F32, vector) for v in (0.0, -0.0, float("nan"), nan_bits, 1.5)]
    assert len({str(c) for c in made}) == len(made)
    assert const(1.5, F32, vector) is const(1.5, F32, vector)
    assert str(const(-0.0, F32)) == str(ir.Constant(F32, -0.0))

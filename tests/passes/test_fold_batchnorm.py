"""Folding inference BatchNormalization into conv2d/matmul weights: the rewritten IR, the same
results to rounding, and the chains that must stay as they are."""
from __future__ import annotations

import numpy as np
import pytest

import nncompile
from nncompile.ir import BATCH, Builder, f32
from nncompile.keras import Input, Sequential, layers
from nncompile.passes.dce import dce
from nncompile.passes.fold_batchnorm import fold_batchnorm
from nncompile.runtime.reference import run
from rewrite_harness import check_rewrite, random_inputs

RNG = np.random.default_rng(0)


def _vector(b: Builder, name: str, low: float = -1.0) -> object:
    return b.param(name, RNG.uniform(low, 1.0, 4).astype(np.float32))


def _batchnorm(b: Builder, y, eps: float = 1e-3):
    """The inference BatchNormalization as the Keras front end traces it."""
    centered = b.sub(y, _vector(b, "mean"))
    factor = b.mul(b.rsqrt(b.add(_vector(b, "var", 0.1), b.constant(eps))), _vector(b, "gamma"))
    return b.add(b.mul(centered, factor), _vector(b, "beta"))


def test_conv_with_bias_then_batchnorm():
    b = Builder()
    x = b.input("x", f32[BATCH, 6, 6, 3])
    y = b.conv2d(x, b.param("w", RNG.standard_normal((3, 3, 3, 4)).astype(np.float32)))
    y = b.add(y, _vector(b, "bias"))
    g = b.finish([b.relu(_batchnorm(b, y))], ["out"])
    check_rewrite(g, fold_batchnorm, """
        %0 = constant() {value=dense<f32[]: 0.0010000000474974513>} : f32[]
        %1 = add(%var, %0) : f32[4]
        %2 = rsqrt(%1) : f32[4]
        %3 = mul(%2, %gamma) : f32[4]
        %4 = sub(%bias, %mean) : f32[4]
        %5 = mul(%4, %3) : f32[4]
        %6 = add(%5, %beta) : f32[4]
        %7 = mul(%w, %3) : f32[3,3,3,4]
        %8 = conv2d(%x, %7) : f32[?,4,4,4]
        %9 = add(%8, %6) : f32[?,4,4,4]
        %10 = relu(%9) : f32[?,4,4,4]
        return %10
    """, rtol=1e-5, atol=1e-5)


def test_dense_with_transposed_weight_and_no_bias():
    b = Builder()
    x = b.input("x", f32[BATCH, 5])
    y = b.matmul(x, b.param("w", RNG.standard_normal((4, 5)).astype(np.float32)), transpose_b=True)
    g = b.finish([_batchnorm(b, y)], ["out"])
    check_rewrite(g, fold_batchnorm, """
        %0 = constant() {value=dense<f32[]: 0.0010000000474974513>} : f32[]
        %1 = add(%var, %0) : f32[4]
        %2 = rsqrt(%1) : f32[4]
        %3 = mul(%2, %gamma) : f32[4]
        %4 = neg(%mean) : f32[4]
        %5 = mul(%4, %3) : f32[4]
        %6 = add(%5, %beta) : f32[4]
        %7 = reshape(%3) {shape=[4, 1]} : f32[4,1]
        %8 = mul(%w, %7) : f32[4,5]
        %9 = matmul(%x, %8) {transpose_b=true} : f32[?,4]
        %10 = add(%9, %6) : f32[?,4]
        return %10
    """, rtol=1e-5, atol=1e-5)


def _unchanged(g) -> None:
    text = str(g)
    assert str(dce(fold_batchnorm(g))) == text


def test_data_dependent_scale_is_not_folded():
    b = Builder()
    x, s = b.input("x", f32[BATCH, 5]), b.input("s", f32[4])
    y = b.matmul(x, b.param("w", RNG.standard_normal((5, 4)).astype(np.float32)))
    _unchanged(b.finish([b.add(b.mul(y, s), _vector(b, "beta"))], ["out"]))


def test_product_with_another_reader_is_not_folded():
    b = Builder()
    x = b.input("x", f32[BATCH, 5])
    y = b.matmul(x, b.param("w", RNG.standard_normal((5, 4)).astype(np.float32)))
    _unchanged(b.finish([_batchnorm(b, y), y], ["out", "raw"]))


def test_chains_without_a_scale_or_across_channels_are_not_folded():
    b = Builder()
    x = b.input("x", f32[BATCH, 5])
    y = b.matmul(x, b.param("w", RNG.standard_normal((5, 4)).astype(np.float32)))
    _unchanged(b.finish([b.sub(b.add(y, _vector(b, "bias")), _vector(b, "mean"))], ["out"]))

    b = Builder()
    x = b.input("x", f32[BATCH, 2, 5])
    y = b.matmul(x, b.param("w", RNG.standard_normal((5, 4)).astype(np.float32)))
    per_row = b.param("rows", RNG.standard_normal((2, 4)).astype(np.float32))    # varies along rows too
    _unchanged(b.finish([b.mul(y, per_row)], ["out"]))


@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("conv", [True, False])
def test_traced_keras_models(conv, use_bias):
    core = (layers.Conv2D(4, 3, use_bias=use_bias) if conv else layers.Dense(4, use_bias=use_bias))
    model = Sequential([Input((6, 6, 2) if conv else (7,)), core, layers.BatchNormalization(),
                        layers.Activation("relu")])
    bn = model.layers[1]
    bn.set_weights([RNG.uniform(0.5, 1.5, 4).astype(np.float32) for _ in range(2)]
                   + [RNG.uniform(-1, 1, 4).astype(np.float32), RNG.uniform(0.1, 2, 4).astype(np.float32)])
    g = nncompile.trace(model)
    inputs = random_inputs(g)
    before = run(g, inputs)[0]
    folded = dce(fold_batchnorm(g))
    nncompile.ir.verify(folded)
    anchor = "conv2d" if conv else "matmul"
    after_anchor = [n.op for n in folded.nodes][[n.op for n in folded.nodes].index(anchor) + 1:]
    assert after_anchor == ["add", "relu"]
    np.testing.assert_allclose(run(folded, inputs)[0], before, rtol=1e-5, atol=1e-5)

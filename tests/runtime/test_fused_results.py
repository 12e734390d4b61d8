"""Fused loops whose results are not each a distinct body node: a body input returned as it is
(the identity, a parameter passed through, an input beside a computed result or a constant) and
one value returned twice. Written as IR text, compiled, and compared with the reference interpreter."""
from __future__ import annotations

import numpy as np
import pytest
from cpu_harness import check

import nncompile
from nncompile.ir import parse, verify

GRAPHS = {
    "identity": """
func @main(%x: f32[?,5]) -> (y: f32[?,5]) {
  %0 = fused(%x) {kind="loop"} : f32[?,5] {
  ^body(%arg0: f32[?,5]):
    return %arg0
  }
  return %0
}""",
    "identity read by a later kernel": """
func @main(%x: f32[?,5]) -> (y: f32[?,5]) {
  %0 = fused(%x) {kind="loop"} : f32[?,5] {
  ^body(%arg0: f32[?,5]):
    return %arg0
  }
  %1 = neg(%0) : f32[?,5]
  return %1
}""",
    "a parameter passed through": """
func @main(%x: f32[?,5], %p: f32[3,5] {param}) -> (y: f32[3,5], z: f32[?,5]) {
  %0 = fused(%p) {kind="loop"} : f32[3,5] {
  ^body(%arg0: f32[3,5]):
    return %arg0
  }
  %1 = neg(%x) : f32[?,5]
  return %0, %1
}""",
    "an input beside a computed result": """
func @main(%x: f32[5], %z: f32[?,5]) -> (y: f32[?,5], w: f32[?,5]) {
  %0:2 = fused(%x, %z) {kind="loop"} : (f32[?,5], f32[?,5]) {
  ^body(%arg0: f32[5], %arg1: f32[?,5]):
    %0 = add(%arg0, %arg1) : f32[?,5]
    return %0, %arg1
  }
  return %0#0, %0#1
}""",
    "one result twice": """
func @main(%x: f32[?,5]) -> (y: f32[?,5], w: f32[?,5]) {
  %0:2 = fused(%x) {kind="loop"} : (f32[?,5], f32[?,5]) {
  ^body(%arg0: f32[?,5]):
    %0 = exp(%arg0) : f32[?,5]
    return %0, %0
  }
  return %0#0, %0#1
}""",
    "one input twice, both read later": """
func @main(%x: f32[?,5]) -> (y: f32[?,5], w: f32[?,5]) {
  %0:2 = fused(%x) {kind="loop"} : (f32[?,5], f32[?,5]) {
  ^body(%arg0: f32[?,5]):
    return %arg0, %arg0
  }
  %1 = sub(%0#0, %0#1) : f32[?,5]
  %2 = exp(%0#1) : f32[?,5]
  return %1, %2
}""",
    "a constant beside the input, rank 0": """
func @main(%x: f32[]) -> (y: f32[], z: f32[]) {
  %0:2 = fused(%x) {kind="loop"} : (f32[], f32[]) {
  ^body(%arg0: f32[]):
    %0 = constant() {value=dense<f32[]: 2.0>} : f32[]
    return %0, %arg0
  }
  return %0#0, %0#1
}""",
    "a mix of computed results and inputs, each twice": """
func @main(%x: f32[?,5], %z: f32[?,5]) -> (a: f32[?,5], b: f32[?,5], c: f32[?,5], d: f32[?,5]) {
  %0:4 = fused(%x, %z) {kind="loop"} : (f32[?,5], f32[?,5], f32[?,5], f32[?,5]) {
  ^body(%arg0: f32[?,5], %arg1: f32[?,5]):
    %0 = mul(%arg0, %arg1) : f32[?,5]
    return %0, %arg1, %0, %arg1
  }
  return %0#0, %0#1, %0#2, %0#3
}""",
}


@pytest.mark.parametrize("pipeline", ["inference", "codegen"])
@pytest.mark.parametrize("name", GRAPHS)
def test_fused_loop_returning_inputs_or_repeated_values_matches_the_reference(name, pipeline):
    graph = parse(GRAPHS[name])
    verify(graph)
    rng = np.random.default_rng(7)
    for v in graph.inputs:
        if v.is_param:
            graph.params[v.name] = rng.standard_normal(v.type.shape).astype(np.float32)
    exe = nncompile.compile(graph, pipeline=pipeline)
    # 4000 rows make the loop large enough to run split across threads, 3 rows not
    for rows in (3, 4000):
        inputs = [rng.standard_normal([rows if d == "?" else d for d in v.type.shape]).astype(np.float32)
                  for v in graph.data_inputs]
        check(graph, exe, inputs)

"""Graphs and bound arrays that do not match their declarations are refused by name before any
native code runs: the verifier judges every graph that enters compilation, and every bound array
is checked against its declared type. Also the limits of the calling convention: graphs with more
inputs than a native call takes arguments, rank-0 parameters."""
from __future__ import annotations

import numpy as np
import pytest

import nncompile
from nncompile.ir import BATCH, Builder, ShapeError, VerifyError, f32, parse
from nncompile.runtime.reference import run as reference_run


@pytest.fixture(autouse=True)
def as_users_run(monkeypatch):
    """Users do not set NNCOMPILE_VERIFY (the tests do): the input graph is verified all the same."""
    monkeypatch.setenv("NNCOMPILE_VERIFY", "0")


@pytest.mark.parametrize("updates, message", [
    ({"w2": "x"}, "output 'w2' updates 'x', which is not a parameter"),
    ({"w2": "w", "w3": "w"}, "a parameter is updated by two outputs"),
])
def test_updates_of_what_is_no_parameter_or_of_one_twice_are_refused(updates, message):
    # The parser refuses these in text; a graph built through the API reaches compile with them.
    graph = parse("""func @main(%x: f32[?,3], %w: f32[3] {param}) -> (y: f32[?,3], w2: f32[3], w3: f32[3]) {
  %0 = mul(%x, %w) : f32[?,3]
  %1 = add(%w, %w) : f32[3]
  return %0, %1, %1
}""")
    graph.params["w"] = np.ones(3, np.float32)
    graph.updates.update(updates)
    with pytest.raises(VerifyError, match=message):
        nncompile.compile(graph)


def _scaled() -> "nncompile.ir.Graph":
    return parse("""func @main(%x: f32[?,3], %w: f32[3] {param}) -> (y: f32[?,3]) {
  %0 = mul(%x, %w) : f32[?,3]
  return %0
}""")


@pytest.mark.parametrize("array, message", [
    (np.array([2.0], np.float32), r"parameter 'w': expected shape \(3,\), received shape \(1,\)"),
    (np.ones((3, 3), np.float32), r"parameter 'w': expected shape \(3,\), received shape \(3, 3\)"),
    (np.ones(3, np.float64), "parameter 'w' is typed f32.3. but bound to an array of dtype float64"),
    (np.ones(3, np.int32), "parameter 'w' is typed f32.3. but bound to an array of dtype int32"),
    ([1.0, 2.0, 3.0], "parameter 'w' is typed f32.3. but bound to a list, not a numpy array"),
    (None, r"parameter 'w' \(f32\[3\]\) has no bound array"),
])
def test_a_parameter_bound_to_another_shape_or_dtype_is_refused(array, message):
    graph = _scaled()
    if array is not None:
        graph.params["w"] = array
    with pytest.raises(VerifyError, match=message):
        nncompile.compile(graph)


def test_a_graph_whose_declared_types_are_wrong_is_refused_before_code_generation():
    graph = parse("""func @main(%x: f32[?,3]) -> (y: f32[?,3]) {
  %0 = relu(%x) : f32[?,3]
  return %0
}""")
    graph.nodes[0].outputs[0].type = f32[BATCH, 5]
    with pytest.raises(VerifyError, match="declares result types .f32.\\?,5.. but the shape rule"):
        nncompile.compile(graph)


def test_a_parameter_the_graph_updates_must_be_writable():
    b = Builder()
    x = b.input("x", f32[BATCH, 3])
    w = np.ones(3, np.float32)
    w.flags.writeable = False
    wv = b.param("w", w)
    graph = b.finish([b.mul(x, wv), b.add(wv, wv)], ["y", "w_new"])
    graph.updates["w_new"] = "w"
    with pytest.raises(ShapeError, match="parameter 'w' is updated by the graph but bound to a read-only array"):
        nncompile.compile(graph, pipeline="training")


@pytest.mark.parametrize("value", [np.float32(2.5), np.array(2.5, np.float32), 2.5])
def test_rank_0_parameters(value):
    graph = parse("""func @main(%x: f32[?,3], %scale: f32[] {param}) -> (y: f32[?,3]) {
  %0 = mul(%x, %scale) : f32[?,3]
  return %0
}""")
    graph.params["scale"] = value
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(nncompile.compile(graph)(x), x * np.float32(2.5))


def test_a_python_number_out_of_a_rank_0_parameter_range_is_refused():
    graph = parse("""func @main(%x: i8[?,3], %shift: i8[] {param}) -> (y: i8[?,3]) {
  %0 = add(%x, %shift) : i8[?,3]
  return %0
}""")
    graph.params["shift"] = 300
    with pytest.raises(VerifyError, match="parameter 'shift' is typed i8.. but bound to 300, out of its range"):
        nncompile.compile(graph)


def test_more_inputs_than_a_native_call_takes_arguments():
    # ctypes refuses calls of more than 1024 arguments: these inputs reach the code in a table.
    count = 1100
    b = Builder()
    xs = [b.input(f"x{i}", f32[BATCH, 2]) for i in range(count)]
    graph = b.finish([b.sub(xs[0], xs[-1]), b.mul(xs[1], xs[count // 2])], ["d", "p"])
    arrays = [np.full((3, 2), i, np.float32) for i in range(count)]
    got = nncompile.compile(graph)(*arrays)
    want = reference_run(graph, arrays)
    np.testing.assert_array_equal(got[0], np.full((3, 2), -(count - 1), np.float32))
    np.testing.assert_array_equal(got[1], want[1])

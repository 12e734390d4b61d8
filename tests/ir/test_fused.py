"""The `fused` op: text round trips of every kind, its reference, body contracts, the verifier
inside bodies, and graph equality, copy and pass fingerprints seeing into bodies."""
from __future__ import annotations

import re

import numpy as np
import pytest

from nncompile.ir import BATCH, Builder, Graph, ParseError, ShapeError, VerifyError, f32, parse, verify
from nncompile.passes import PASSES, PassManager, register_pass
from nncompile.runtime.reference import run


def body_of(build, *types, name: str = "body") -> Graph:
    """A region with inputs arg0.. of `types`; `build(b, *args)` returns its output(s)."""
    b = Builder(name=name)
    args = [b.input(f"arg{i}", t) for i, t in enumerate(types)]
    outs = build(b, *args)
    return b.finish(list(outs) if isinstance(outs, (list, tuple)) else [outs])


def _dense_graph() -> Graph:
    rng = np.random.default_rng(0)
    b = Builder()
    x = b.input("x", f32[BATCH, 5])
    w = b.param("dense/kernel", rng.standard_normal((5, 3)).astype(np.float32))
    bias = b.param("dense/bias", rng.standard_normal(3).astype(np.float32))
    body = body_of(lambda f, a, k, c: f.relu(f.add(f.matmul(a, k), c)), f32[BATCH, 5], f32[5, 3], f32[3])
    with b.loc("dense"):
        (y,) = b.fused(x, w, bias, kind="matmul", body=body)
    return b.finish([b.neg(y)], ["y"])


DENSE_TEXT = """\
func @main(%x: f32[?,5], %dense/kernel: f32[5,3] {param}, %dense/bias: f32[3] {param}) -> (y: f32[?,3]) {
  %0 = fused(%x, %dense/kernel, %dense/bias) {kind="matmul"} : f32[?,3] loc("dense") {
  ^body(%arg0: f32[?,5], %arg1: f32[5,3], %arg2: f32[3]):
    %0 = matmul(%arg0, %arg1) : f32[?,3]
    %1 = add(%0, %arg2) : f32[?,3]
    %2 = relu(%1) : f32[?,3]
    return %2
  }
  %1 = neg(%0) : f32[?,3]
  return %1
}"""


def test_text_form_prints_the_body_as_an_indented_region():
    g = _dense_graph()
    assert str(g) == DENSE_TEXT
    back = parse(DENSE_TEXT)
    assert back == g and str(back) == DENSE_TEXT
    verify(back)


def _anchored(kind: str) -> tuple[Graph, list[np.ndarray]]:
    """A fused `kind` node on an NHWC input with a per-channel epilogue and a constant."""
    rng = np.random.default_rng(1)
    b = Builder()
    x = b.input("x", f32["n", 6, 6, 2])
    scale = b.input("scale", f32[2])
    if kind == "conv2d":
        w = b.input("w", f32[3, 3, 2, 2])
        anchor = (lambda f, a, k: f.conv2d(a, k, pads=[1, 1, 1, 1])), [x, w]
    else:
        anchor = (lambda f, a: f.op(kind, a, window=[2, 2], strides=[2, 2])), [x]
    op, operands = anchor
    types = [v.type for v in operands] + [f32[2]]
    body = body_of(lambda f, *a: f.maximum(f.mul(op(f, *a[:-1]), a[-1]), f.constant(0.25)), *types)
    (y,) = b.fused(*operands, scale, kind=kind, body=body)
    g = b.finish([y], ["y"])
    n = 2
    inputs = [rng.standard_normal((n, 6, 6, 2)).astype(np.float32), rng.standard_normal(2).astype(np.float32)]
    if kind == "conv2d":
        inputs.append(rng.standard_normal((3, 3, 2, 2)).astype(np.float32))
    return g, inputs


@pytest.mark.parametrize("kind", ["conv2d", "max_pool2d", "avg_pool2d"])
def test_windowed_kinds_round_trip_and_run_their_body(kind):
    g, inputs = _anchored(kind)
    assert parse(str(g)) == g
    verify(g)
    x, scale = inputs[0], inputs[1]
    if kind == "conv2d":
        padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        core = sum(padded[:, i:i + 6, j:j + 6] @ inputs[2][i, j] for i in range(3) for j in range(3))
    else:
        blocks = x.reshape(2, 3, 2, 3, 2, 2)
        core = blocks.max(axis=(2, 4)) if kind == "max_pool2d" else blocks.mean(axis=(2, 4))
    np.testing.assert_allclose(run(g, inputs)[0], np.maximum(core * scale, 0.25), rtol=1e-5, atol=1e-5)


def _multi_output_loop() -> Graph:
    """Two results of one loop over a shape with two symbols, both graph outputs."""
    b = Builder()
    x = b.input("x", f32["n", "m"])
    c = b.input("c", f32["m"])
    body = body_of(lambda f, a, k: (lambda t: [f.exp(t), f.sub(t, k)])(f.tanh(a)), f32["n", "m"], f32["m"])
    e, d = b.fused(x, c, kind="loop", body=body)
    return b.finish([d, e], ["d", "e"])


def test_several_outputs_and_symbolic_dims_round_trip_and_run():
    g = _multi_output_loop()
    text = str(g)
    assert '%0:2 = fused(%x, %c) {kind="loop"} : (f32[n,m], f32[n,m]) {' in text
    assert "    return %1, %2\n  }\n  return %0#1, %0#0" in text
    assert parse(text) == g
    rng = np.random.default_rng(2)
    x, c = rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    d, e = run(g, [x, c])
    np.testing.assert_allclose(d, np.tanh(x) - c, rtol=1e-6)
    np.testing.assert_allclose(e, np.exp(np.tanh(x)), rtol=1e-6)


def test_reduction_kind_round_trips_and_runs():
    b = Builder()
    x = b.input("x", f32[BATCH, 6])
    body = body_of(lambda f, a: f.rsqrt(f.add(f.reduce_mean(f.square(a), axes=[1], keepdims=True),
                                              f.constant(1e-3))), f32[BATCH, 6])
    (r,) = b.fused(x, kind="reduction", body=body)
    g = b.finish([r], ["r"])
    assert parse(str(g)) == g
    xs = np.random.default_rng(3).standard_normal((4, 6)).astype(np.float32)
    want = 1 / np.sqrt((xs.astype(np.float64) ** 2).mean(axis=1, keepdims=True) + 1e-3)
    np.testing.assert_allclose(run(g, [xs])[0], want, rtol=1e-5)


def test_region_label_is_the_body_name_and_may_need_quotes():
    g = _dense_graph()
    g.nodes[0].attrs["body"].name = "the body"
    assert '  ^"the body"(%arg0' in str(g)
    assert parse(str(g)) == g


# --- equality, copy, fingerprint ----------------------------------------------------------------

def test_equality_compares_bodies():
    g, h = _dense_graph(), _dense_graph()
    assert g == h
    h.nodes[0].attrs["body"].nodes[2].op = "sigmoid"
    assert g != h


def test_copy_copies_bodies():
    g = _dense_graph()
    c = g.copy()
    assert c == g and c.nodes[0].attrs["body"] is not g.nodes[0].attrs["body"]
    c.nodes[0].attrs["body"].nodes[2].op = "sigmoid"
    assert g.nodes[0].attrs["body"].nodes[2].op == "relu"


def test_pass_manager_sees_a_change_inside_a_body():
    def swap_activation(graph: Graph) -> Graph:
        graph.nodes[0].attrs["body"].nodes[2].op = "sigmoid"
        return graph

    register_pass("_swap_activation", doc="a test pass")(swap_activation)
    try:
        manager = PassManager(["_swap_activation", "dce"], verify=True)
        manager.run(_dense_graph())
    finally:
        PASSES.pop("_swap_activation")
    assert [s.changed for s in manager.stats] == [True, False]


# --- shape rule and body contracts --------------------------------------------------------------

def _fused_error(operands: list, kind: str, body: Graph, *fragments: str) -> None:
    b = Builder()
    values = [b.input(f"v{i}", t) for i, t in enumerate(operands)]
    with pytest.raises(ShapeError) as info:
        b.fused(*values, kind=kind, body=body)
    assert "op 'fused'" in str(info.value)
    for fragment in fragments:
        assert fragment in str(info.value)


RELU = body_of(lambda f, a: f.relu(a), f32[4])


@pytest.mark.parametrize("operands, kind, body, fragments", [
    ([f32[4], f32[4]], "loop", RELU, ["takes 1 operands, one per body input, got 2"]),
    ([f32[5]], "loop", RELU, ["operand 0 has type f32[5] but body input 'arg0' is f32[4]"]),
    ([f32[4]], "loopy", RELU, ["'kind' is 'loopy'; expected one of 'loop', 'reduction'"]),
    ([f32[4, 3], f32[3, 2]], "loop", body_of(lambda f, a, k: f.matmul(a, k), f32[4, 3], f32[3, 2]),
     ["body node #0 ('matmul') is not elementwise, broadcast, constant, a slice of a body input"]),
    ([f32[4, 8]], "loop",
     body_of(lambda f, a: f.slice(f.exp(a), axes=[1], starts=[0], ends=[4], steps=[1]), f32[4, 8]),
     ["body node #1 ('slice') is not elementwise, broadcast, constant, a slice of a body input"]),
    ([f32[4, 8]], "loop",
     body_of(lambda f, a: f.exp(f.concat(a, a, axis=1)), f32[4, 8]),
     ["body node #0 ('concat') must join values of one shape", "read by no body node"]),
    ([f32[4, 8], f32[4, 4]], "loop",
     body_of(lambda f, a, c: f.concat(f.exp(a), f.exp(c), axis=1), f32[4, 8], f32[4, 4]),
     ["body node #2 ('concat') must join values of one shape along an axis of static size"]),
    ([f32[4, 8], f32[4, 4]], "loop",
     body_of(lambda f, a, c: [f.concat(f.exp(a), f.exp(a), axis=1), f.exp(c)], f32[4, 8], f32[4, 4]),
     ["must share one shape, got f32[4,16], f32[4,4] (a concat it stores counts as its pieces' shape)"]),
    ([f32[4, 8]], "loop",
     body_of(lambda f, a: [f.exp(a), f.slice(a, axes=[1], starts=[0], ends=[4], steps=[1])], f32[4, 8]),
     ["a loop body's outputs must share one shape"]),
    ([f32[4], f32[3, 4]], "loop", body_of(lambda f, a, k: [f.relu(a), f.add(a, k)], f32[4], f32[3, 4]),
     ["a loop body's outputs must share one shape, got f32[4], f32[3,4]"]),
    ([f32[4], f32[4]], "matmul", body_of(lambda f, a, k: f.add(a, k), f32[4], f32[4]),
     ["a matmul body starts with its 'matmul' op, got 'add'"]),
    ([f32[2, 4], f32[4, 4]], "matmul",
     body_of(lambda f, a, k: (lambda m: f.add(f.relu(m), m))(f.matmul(a, k)), f32[2, 4], f32[4, 4]),
     ["body node #2 ('add'): operands besides the running value must be body inputs or constants"]),
    ([f32[2, 4], f32[4, 4]], "matmul",
     body_of(lambda f, a, k: (lambda m: f.mul(m, m))(f.matmul(a, k)), f32[2, 4], f32[4, 4]),
     ["body node #1 ('mul') must take the running value exactly once"]),
    ([f32[2, 4], f32[4, 4], f32[3, 2, 4]], "matmul",
     body_of(lambda f, a, k, r: f.add(f.matmul(a, k), r), f32[2, 4], f32[4, 4], f32[3, 2, 4]),
     ["an epilogue keeps the anchor's shape (2, 4)"]),
    ([f32[2, 4]], "reduction",
     body_of(lambda f, a: f.reduce_sum(f.reduce_max(a, axes=[1]), axes=[0]), f32[2, 4]),
     ["a reduction body holds exactly one reduce op, got 2"]),
    ([f32[2, 4]], "reduction",
     body_of(lambda f, a: (lambda e: f.add(f.reduce_sum(e, axes=[1], keepdims=True), f.reduce_sum(
         e, axes=[1], keepdims=True)))(f.exp(a)), f32[2, 4]),
     ["exactly one reduce op, got 2"]),
    ([f32[2]], "loop", body_of(lambda f, a: f.broadcast(a, shape=["k", 2]), f32[2]),
     ["body node #0 ('broadcast') gives f32[k,2], but no body input's type has the dimension 'k'"]),
])
def test_shape_rule_checks_operands_and_the_kind_contract(operands, kind, body, fragments):
    _fused_error(operands, kind, body, *fragments)


def test_reduction_epilogue_may_not_read_the_prologue():
    body = body_of(lambda f, a: (lambda e: f.add(f.reduce_sum(e, axes=[0], keepdims=True), e))(f.exp(a)),
                   f32[1, 4])
    _fused_error([f32[1, 4]], "reduction", body, "body node #2 ('add') in the epilogue reads a prologue value")


def test_body_inputs_may_not_be_parameters():
    b = Builder(name="body")
    p = b.param("p", np.ones(4, np.float32))
    body = b.finish([b.relu(p)])
    _fused_error([f32[4]], "loop", body, "body input 'p' is a parameter")


# --- the verifier inside bodies ----------------------------------------------------------------

def _verify_fails(g: Graph, *fragments: str) -> None:
    with pytest.raises(VerifyError) as info:
        verify(g)
    message = str(info.value)
    assert "node 'fused' of 'dense' (node #0): region 'body': graph 'body'" in message
    for fragment in fragments:
        assert fragment in message


def test_verifier_names_a_wrongly_typed_body_node():
    g = _dense_graph()
    g.nodes[0].attrs["body"].nodes[1].outputs[0].type = f32[BATCH, 4]
    _verify_fails(g, "node 'add' (node #1): declares result types (f32[?,4])")


def test_verifier_names_a_use_before_definition_in_a_body():
    g = _dense_graph()
    body = g.nodes[0].attrs["body"]
    body.nodes[0], body.nodes[1] = body.nodes[1], body.nodes[0]
    _verify_fails(g, "node 'add' (node #0): input 0 is %1, which node #1 defines later")


def test_verifier_rejects_an_outer_value_read_inside_a_body():
    g = _dense_graph()
    g.nodes[0].attrs["body"].nodes[1].inputs[1] = g.inputs[2]
    _verify_fails(g, "input 1 is input %dense/bias of another graph")


def test_verifier_rejects_renamed_region_outputs():
    g = _dense_graph()
    g.nodes[0].attrs["body"].output_names = ["out"]
    with pytest.raises(VerifyError, match=r"region 'body': outputs are named \['out'\]; regions use the "
                                          r"default names \['output_0'\]"):
        verify(g)


def test_verifier_reruns_the_shape_rule_on_operands():
    g = _dense_graph()
    g.nodes[0].inputs = [g.inputs[0], g.inputs[1]]
    with pytest.raises(VerifyError, match="takes 3 operands, one per body input, got 2"):
        verify(g)


# --- parse errors -------------------------------------------------------------------------------

@pytest.mark.parametrize("old, new, message, line", [
    (' loc("dense") {\n  ^body', ' loc("dense") \n  ^body',
     "op 'fused' of %0: expected its region (body) after the result types", 3),
    ('{kind="matmul"}', '{kind="matmul", body=1}', "attribute 'body' is a region", 2),
    ("%1 = add(%0, %arg2)", "%1 = add(%0, %x)", "use of undefined value %x", 5),
    ("    return %2\n", "", "missing 'return' at the end of region ^body", 7),
    ("^body(%arg0: f32[?,5],", "^body(%arg0: f32[?,5] {param},", "a region's arguments are plain", 3),
])
def test_parse_errors_in_regions(old, new, message, line):
    text = DENSE_TEXT.replace(old, new)
    assert text != DENSE_TEXT
    with pytest.raises(ParseError, match=re.escape(message)) as info:
        parse(text)
    assert info.value.line == line


def test_region_scope_ends_with_the_region():
    text = DENSE_TEXT.replace("%1 = neg(%0)", "%1 = neg(%arg0)")
    with pytest.raises(ParseError, match="use of undefined value %arg0"):
        parse(text)

"""The IR text form: print -> parse round trips, exact formats, and parse errors with positions."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nncompile.ir import (OPS, Attr, AttrKind, Builder, Fusion, Graph, ParseError, defop, f32, f64,
                          parse, print_graph, verify)

MLP = """\
func @mlp(%x: f32[?,784], %dense/kernel: f32[784,128] {param}, %dense/bias: f32[128] {param}, \
%dense_1/kernel: f32[10,128] {param}, %dense_1/bias: f32[10] {param}) -> (dense_1: f32[?,10]) {
  %0 = matmul(%x, %dense/kernel) : f32[?,128] loc("dense")
  %1 = add(%0, %dense/bias) : f32[?,128] loc("dense")
  %2 = relu(%1) : f32[?,128] loc("dense")
  %3 = matmul(%2, %dense_1/kernel) {transpose_b=true} : f32[?,10] loc("dense_1")
  %4 = add(%3, %dense_1/bias) : f32[?,10] loc("dense_1")
  %5 = softmax(%4) : f32[?,10] loc("dense_1")
  return %5
}"""


def _round_trip(g: Graph) -> Graph:
    text = str(g)
    back = parse(text)
    assert back == g
    assert str(back) == text
    assert back.params == {}
    return back


# --- every op ---------------------------------------------------------------------------------

def _examples():
    from op_examples import EXAMPLES

    return EXAMPLES


@pytest.mark.parametrize("name", sorted(_examples()))
def test_every_example_round_trips(name):
    g, _ = _examples()[name](np.random.default_rng(0))
    _round_trip(g)


def test_examples_cover_every_op():
    used = set()
    for build in _examples().values():
        used.update(node.op for node in build(np.random.default_rng(1))[0].nodes)
    assert sorted(set(OPS) - used) == []


# --- the golden MLP ---------------------------------------------------------------------------

def test_golden_mlp_prints_back_byte_identically():
    g = parse(MLP)
    assert print_graph(g) == MLP
    assert g.name == "mlp"
    assert [(v.name, str(v.type), v.is_param) for v in g.inputs] == [
        ("x", "f32[?,784]", False), ("dense/kernel", "f32[784,128]", True), ("dense/bias", "f32[128]", True),
        ("dense_1/kernel", "f32[10,128]", True), ("dense_1/bias", "f32[10]", True)]
    assert [(n.op, n.loc, [v.name or "" for v in n.inputs]) for n in g.nodes[:2]] == [
        ("matmul", "dense", ["x", "dense/kernel"]), ("add", "dense", ["", "dense/bias"])]
    assert g.nodes[1].inputs[0] is g.nodes[0].outputs[0]
    assert g.nodes[5].attrs == {"axis": -1}
    assert g.output_names == ["dense_1"] and g.outputs[0] is g.nodes[5].outputs[0]
    verify(g)


def test_comments_and_blank_lines_are_skipped():
    text = "// after pass 'dce'\n\n" + MLP.replace("\n  return", "  // the result\n  return") + "\n// end\n"
    assert parse(text) == parse(MLP)


def test_attributes_at_their_default_are_omitted_when_printed():
    explicit = (MLP.replace("kernel) : f32[?,128]", "kernel) {transpose_a=false, transpose_b=false} : f32[?,128]")
                .replace("{transpose_b=true}", "{transpose_a=false, transpose_b=true}")
                .replace("softmax(%4)", "softmax(%4) {axis=-1}"))
    g = parse(explicit)
    assert g.nodes[0].attrs == {"transpose_a": False, "transpose_b": False}
    assert g == parse(MLP)
    assert print_graph(g) == MLP


# --- exact formats ----------------------------------------------------------------------------

@pytest.fixture
def attrs_op():
    """A scratch op with one attribute of every kind (and an optional one defaulting to None)."""
    name = "_text_test_attrs"
    kinds = {"alpha": AttrKind.FLOAT, "axes": AttrKind.INTS, "flag": AttrKind.BOOL, "mode": AttrKind.STR,
             "n": AttrKind.INT, "scales": AttrKind.FLOATS, "shape": AttrKind.SHAPE, "to": AttrKind.DTYPE,
             "table": AttrKind.TENSOR}
    attrs = {k: Attr(kind) for k, kind in kinds.items()}
    attrs["opt"] = Attr(AttrKind.INT, None)
    defop(name, inputs=("x",), attrs=attrs, fusion=Fusion.OPAQUE, infer=lambda ts, a: ts[0],
          reference=lambda xs, a: xs[0])
    try:
        yield name
    finally:
        del OPS[name]


@pytest.fixture
def pair_op():
    """A scratch op with two results of different types."""
    name = "_text_test_pair"
    defop(name, inputs=("x",), fusion=Fusion.OPAQUE, num_outputs=2,
          infer=lambda ts, a: [ts[0], ts[0].with_shape(ts[0].shape[:1])], reference=lambda xs, a: xs)
    try:
        yield name
    finally:
        del OPS[name]


def test_every_attribute_kind_prints_sorted_and_round_trips(attrs_op):
    b = Builder(name="attrs")
    x = b.input("x", f32["?", 3])
    y = b.op(attrs_op, x, to="f64", table=np.array([[1, -2]], np.int32), shape=["?", 1600, -1, "n", "inf"],
             scales=[1.5, math.inf, -0.0, 1e-300], n=-3, mode='a"b\\c\n\x01é', flag=True, axes=[], alpha=0.1)
    g = b.finish([y], ["y"])
    line = str(g).splitlines()[1]
    assert line == (
        '  %0 = _text_test_attrs(%x) {alpha=0.1, axes=[], flag=true, mode="a\\"b\\\\c\\n\\u{1}é", n=-3, '
        'scales=[1.5, inf, -0.0, 1e-300], shape=[?, 1600, -1, n, "inf"], '
        'table=dense<i32[1,2]: [[1, -2]]>, to=f64} : f32[?,3]')
    back = _round_trip(g)
    assert back.nodes[0].attrs["opt"] is None
    assert math.copysign(1, back.nodes[0].attrs["scales"][2]) == -1


def test_multi_result_nodes_print_mlir_style(pair_op):
    b = Builder()
    x = b.input("x", f32["?", 3])
    first, second = b.op(pair_op, x)
    g = b.finish([b.relu(second), first], ["r", "first"])
    assert str(g) == (
        "func @main(%x: f32[?,3]) -> (r: f32[?], first: f32[?,3]) {\n"
        "  %0:2 = _text_test_pair(%x) : (f32[?,3], f32[?])\n"
        "  %1 = relu(%0#1) : f32[?]\n"
        "  return %1, %0#0\n"
        "}")
    _round_trip(g)
    with pytest.raises(ParseError, match="%0 has 2 results; use %0#0 to %0#1") as info:
        parse(str(g).replace("relu(%0#1)", "relu(%0)"))
    assert (info.value.line, info.value.column) == (3, 13)


def test_names_that_need_quotes_round_trip():
    b = Builder(name="my graph")
    names = ["0", "a b", 'q"uote', "back\\slash", "new\nline", "", "émoji✓", "ok/name-1.$"]
    values = [b.input(n, f32[2]) for n in names]
    outs = [b.add(values[0], v) for v in values]
    g = b.finish(outs, ["1", "x y", "ok_out", "", "tab\t", "->", "a.b/c-d", "z"])
    text = str(g)
    assert text.startswith('func @"my graph"(%"0": f32[2], %"a b": f32[2], %"q\\"uote": f32[2], ')
    assert '%ok/name-1.$: f32[2]) -> ("1": f32[2], "x y": f32[2], ok_out: f32[2], "": f32[2]' in text
    assert '  %0 = add(%"0", %"0") : f32[2]' in text
    assert 'a.b/c-d: f32[2]' in text and '"->": f32[2]' in text
    _round_trip(g)


def test_scalars_empty_graphs_and_inputs_returned_directly():
    b = Builder()
    x = b.input("x", f32[()])
    c = b.constant(np.float32(1.5))
    e = b.constant(np.zeros((2, 0), np.int64))
    g = b.finish([x, c, e], ["x", "c", "e"])
    text = str(g)
    assert "{value=dense<f32[]: 1.5>} : f32[]" in text
    assert "{value=dense<i64[2,0]: [[], []]>} : i64[2,0]" in text
    assert text.endswith("  return %x, %0, %1\n}")
    _round_trip(g)
    empty = Graph("nothing")
    assert str(empty) == "func @nothing() -> () {\n  return\n}"
    _round_trip(empty)


def test_bool_and_float_constants_print_exactly():
    b = Builder()
    flags = b.constant(np.array([True, False]))
    halfs = b.constant(np.array([np.inf, -np.inf, np.nan, 6e-8], np.float16))
    g = b.finish([flags, halfs], ["flags", "halfs"])
    text = str(g)
    assert "dense<bool[2]: [true, false]>" in text
    assert f"dense<f16[4]: [inf, -inf, nan, {float(np.float16(6e-8))!r}]>" in text
    _round_trip(g)


def test_elided_constants_are_for_display_only():
    b = Builder()
    big = b.constant(np.arange(1000, dtype=np.float32))
    small = b.constant(np.arange(3, dtype=np.float32))
    g = b.finish([big, small], ["big", "small"])
    shown = print_graph(g, elide_constants=10)
    assert "  %0 = constant() {value=dense<f32[1000]: ...>} : f32[1000]" in shown
    assert "dense<f32[3]: [0.0, 1.0, 2.0]>" in shown
    assert "..." not in str(g)
    with pytest.raises(ParseError, match="elided") as info:
        parse(shown)
    assert (info.value.line, info.value.column) == (2, 43)


# --- random graphs ----------------------------------------------------------------------------

_UNARY = ["neg", "abs", "exp", "tanh", "relu", "sqrt", "floor"]
_BINARY = ["add", "sub", "mul", "div", "maximum", "pow"]
_SHAPES = [("?", 3), (3,), (), (1, 3), ("?", 1)]


def _floats(dtype) -> st.SearchStrategy:
    width = 32 if dtype is f32 else 64
    specials = st.sampled_from([math.inf, -math.inf, math.nan, -0.0, 5e-324 if width == 64 else 1e-45])
    return st.one_of(st.floats(width=width), specials)


@st.composite
def _graphs(draw) -> Graph:
    text = st.text(max_size=6)
    dtype = draw(st.sampled_from([f32, f64]))
    b = Builder(name=draw(text))
    names = draw(st.lists(text, min_size=1, max_size=3, unique=True))
    values = [b.input(n, dtype[draw(st.sampled_from(_SHAPES))]) for n in names]
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["unary", "binary", "constant", "select"]))
        with b.loc(draw(st.one_of(st.just(""), text))):
            if kind == "unary":
                values.append(b.op(draw(st.sampled_from(_UNARY)), draw(st.sampled_from(values))))
            elif kind == "binary":
                x, y = draw(st.sampled_from(values)), draw(st.sampled_from(values))
                values.append(b.op(draw(st.sampled_from(_BINARY)), x, y))
            elif kind == "constant":
                shape = draw(st.sampled_from([(), (3,), (1, 3)]))
                items = draw(st.lists(_floats(dtype), min_size=math.prod(shape), max_size=math.prod(shape)))
                values.append(b.constant(np.array(items, dtype.numpy).reshape(shape)))
            else:
                x, y = draw(st.sampled_from(values)), draw(st.sampled_from(values))
                values.append(b.select(b.less(x, y), y, x))
    outs = draw(st.lists(st.sampled_from(values), min_size=1, max_size=3))
    return b.finish(outs, draw(st.lists(text, min_size=len(outs), max_size=len(outs), unique=True)))


def _same_bits_up_to_nan_payload(a: np.ndarray, b: np.ndarray) -> bool:
    nan = np.isnan(a)
    return (a.dtype == b.dtype and np.array_equal(nan, np.isnan(b))
            and np.array_equal(a[~nan], b[~nan]) and np.array_equal(np.signbit(a[~nan]), np.signbit(b[~nan])))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_graphs())
def test_random_elementwise_graphs_round_trip(g):
    back = _round_trip(g)
    for m, n in zip(g.nodes, back.nodes):
        if m.op == "constant":
            assert _same_bits_up_to_nan_payload(m.attrs["value"], n.attrs["value"])


# --- parse errors -----------------------------------------------------------------------------

GOOD = """\
func @main(%x: f32[?,4], %w: f32[4] {param}) -> (y: f32[?,4]) {
  %0 = add(%x, %w) : f32[?,4] loc("dense")
  %1 = relu(%0) : f32[?,4]
  return %1
}"""


def _bad(old: str, new: str) -> str:
    assert GOOD.count(old) == 1
    return GOOD.replace(old, new)


PARSE_ERRORS = {
    "undefined value": (_bad("relu(%0)", "relu(%7)"), 3, 13, "use of undefined value %7"),
    "redefinition": (_bad("%1 = relu", "%0 = relu"), 3, 3, "redefinition of value %0"),
    "argument redefinition": (_bad("%w: f32[4]", "%x: f32[4]"), 1, 26, "redefinition of value %x"),
    "wrong token": (_bad("relu(%0) :", "relu(%0) ="), 3, 17, "expected ':' but found '='"),
    "bad type": (_bad("relu(%0) : f32[?,4]", "relu(%0) : f32(?,4)"), 3, 22, "expected '[' but found '('"),
    "bad dimension": (_bad("%w: f32[4]", "%w: f32[-4]"), 1, 34, "dimension -4 must be"),
    "bad dtype": (_bad("relu(%0) : f32", "relu(%0) : f33"), 3, 19, "unknown dtype 'f33'; expected one of"),
    "missing return": (_bad("  return %1\n", ""), 4, 1, "missing 'return'"),
    "trailing garbage": (GOOD + "\n%2", 6, 1, "unexpected '%2' after the end of the function"),
    "unknown op": (_bad("relu(", "relux("), 3, 8, "unknown op 'relux'; valid ops: abs, add,"),
    "unknown attribute": (_bad("relu(%0)", "relu(%0) {alpha=1.0}"), 3, 18,
                          "unknown attribute 'alpha' of op 'relu'; valid attributes: none"),
    "type disagrees with shape rule": (_bad("relu(%0) : f32[?,4]", "relu(%0) : f32[?,5]"), 3, 19,
                                       "result 0 is declared f32[?,5] but the shape rule of 'relu' gives f32[?,4]"),
    "wrong arity": (_bad("relu(%0)", "relu(%0, %x)"), 3, 8, "takes 1 inputs"),
    "ill-typed attribute": (_bad("relu(%0)", "cast(%0) {dtype=3}"), 3, 24, "attribute 'dtype': expected a dtype"),
    "missing attribute": (_bad("relu(%0)", "cast(%0)"), 3, 8, "needs attribute 'dtype'"),
    "bare string attribute": (_bad("relu(%0)", "cast(%0) {dtype=float}"), 3, 24, "strings are double-quoted"),
    "unterminated string": (_bad('loc("dense")', 'loc("dense)'), 2, 35, "unterminated string"),
    "bad escape": (_bad('loc("dense")', 'loc("de\\qnse")'), 2, 38, "bad escape"),
    "unexpected character": (_bad("%0 = add", "%0 = &add"), 2, 8, "unexpected character '&'"),
    "return count": (_bad("return %1", "return %1, %0"), 4, 3, "'return' gives 2 values but the signature declares 1"),
    "return type": (_bad("return %1", "return %w"), 4, 10, "returned value %w has type f32[4]"),
    "duplicate output": (_bad("-> (y: f32[?,4])", "-> (y: f32[?,4], y: f32[?,4])").replace(
        "return %1", "return %1, %1"), 1, 63, "duplicate result name 'y'"),
    "multi-result index": (_bad("relu(%0)", "relu(%0#1)"), 3, 13, "%0#1 has 1 results; #1 is out of range"),
    "elided constant": (_bad("relu(%0)", "constant() {value=dense<f32[4]: ...>}").replace(
        "f32[?,4]\n  return", "f32[4]\n  return"), 3, 40, "elided"),
    "constant element count": (_bad("relu(%0) : f32[?,4]", "constant() {value=dense<f32[2]: [1.0]>} : f32[2]"),
                               3, 44, "has 2 elements, only 1 are given"),
    "int constant range": (_bad("relu(%0) : f32[?,4]", "constant() {value=dense<i8[]: 300>} : i8[]"),
                           3, 38, "300 is out of range for i8"),
    "float constant range": (_bad("relu(%0) : f32[?,4]", "constant() {value=dense<f32[]: 1e39>} : f32[]"),
                             3, 39, "out of range for f32"),
    "nested list": (_bad("relu(%0) : f32[?,4]", "reshape(%0) {shape=[[4]]} : f32[4]"), 3, 28,
                    "expected an attribute value but found '['"),
    "symbolic constant": (_bad("relu(%0) : f32[?,4]", "constant() {value=dense<f32[?]: []>} : f32[?]"),
                          3, 32, "a constant needs a static shape"),
    "missing function": ("// nothing\n", 2, 1, "expected 'func' but found end of input"),
    "update of a non-parameter": (_bad("-> (y: f32[?,4])", "-> (y: f32[?,4], u: f32[?,4] {updates %x})")
                                  .replace("return %1", "return %1, %x"), 1, 84,
                                  "result 'u' updates %x, which is not a parameter of @main "
                                  "(parameters: w)"),
    "parameter updated twice": (_bad("-> (y: f32[?,4])", "-> (y: f32[?,4], u: f32[4] {updates %w}, "
                                     "v: f32[4] {updates %w})").replace("return %1", "return %1, %w, %w"),
                                1, 106, "result 'v' updates %w, which result 'u' already updates"),
}


@pytest.mark.parametrize("case", sorted(PARSE_ERRORS))
def test_parse_error_names_line_and_column(case):
    text, line, column, message = PARSE_ERRORS[case]
    with pytest.raises(ParseError) as info:
        parse(text)
    assert message in str(info.value)
    assert (info.value.line, info.value.column) == (line, column)
    assert str(info.value).startswith(f"line {line}, column {column}: ")


def test_good_text_parses():
    g = parse(GOOD)
    assert [n.op for n in g.nodes] == ["add", "relu"]
    assert str(g) == GOOD

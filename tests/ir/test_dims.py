"""Symbolic dimensions that are expressions over symbols: canonical text, evaluation, types, the
IR text round trip, windows over a symbolic size, and the check when sizes are bound."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nncompile
from nncompile.ir import Builder, ParseError, ShapeError, VerifyError, f32, parse, verify
from nncompile.ir.dims import canonical, dim_value, substitute, symbols_of
from nncompile.ir.ops.linalg import same_pads
from nncompile.ir.sizes import fitting_env
from nncompile.ir.types import TensorType
from nncompile.runtime.reference import run

CANONICAL = {
    "(T-7)//3+1": "(T+2)//3-2",                 # a 7-wide window, stride 3
    "(T+2)//3-2": "(T+2)//3-2",                 # the canonical text reads back as itself
    "(T+1)//2": "(T+1)//2",                     # ceil(T / 2): 'same' at stride 2
    "((T-7)//3+1-2)//2+1": "(T+2)//6-1",        # a pooling after the convolution: one division
    "((T+1)//2+1)//2": "(T+3)//4",
    "3*T-T*2": "T",
    "T-T+4": 4,
    "(4*T+3)//2": "T*2+1",
    "(T-3*U)//4+U": "(T+U)//4",
    "(T+1)//2*2": "(T+1)//2*2",
    "(2*T+2)//4": "(T+1)//2",                   # a factor common to the whole division cancels
    "-(T//3)": "-(T//3)",                       # not -T//3, which would read as (-T)//3
    "?//2": "?//2",
}


@pytest.mark.parametrize("text", sorted(CANONICAL))
def test_expressions_have_one_canonical_text_with_the_same_value(text):
    form = canonical(text)
    assert form == CANONICAL[text]
    assert canonical(str(form)) == form
    for t in range(0, 40):
        for u in range(0, 4):
            env = {"T": t, "U": u, "?": t}
            expected = eval(text.replace("?", "T"), {"T": t, "U": u})
            assert dim_value(form, env) == expected


_LEAVES = st.sampled_from(["T", "U", "0", "1", "3", "7"])
_EXPRESSIONS = st.recursive(_LEAVES, lambda inner: st.one_of(
    st.tuples(inner, st.sampled_from("+-"), inner).map(lambda t: f"({t[0]}){t[1]}({t[2]})"),
    st.tuples(inner, st.sampled_from(["*", "//"]), st.integers(1, 6)).map(lambda t: f"({t[0]}){t[1]}{t[2]}"),
), max_leaves=8)


@settings(max_examples=200, deadline=None)
@given(_EXPRESSIONS)
def test_random_expressions_keep_their_value_and_read_back_as_themselves(text):
    form = canonical(text)
    assert canonical(str(form)) == form
    for t in (0, 1, 5, 12, 31):
        for u in (0, 2, 9):
            assert dim_value(form, {"T": t, "U": u}) == eval(text, {"T": t, "U": u})


@pytest.mark.parametrize("text, message", [
    ("T*U", "product of symbols"), ("T//0", "positive int"), ("T//U", "positive int"),
    ("(T+1", "expected '\\)'"), ("T+", "expected an int"), ("T$1", "unexpected character"),
])
def test_what_is_not_a_dimension_is_refused(text, message):
    with pytest.raises(ShapeError, match=message):
        canonical(text)


def test_symbols_substitution_and_unbound_sizes():
    assert symbols_of("(T+U)//4-W") == {"T", "U", "W"}
    assert symbols_of(5) == set()
    assert substitute("(T+U)//4", {"U": 3}) == "(T+3)//4"
    assert substitute("(T+2)//3-2", {"T": 20}) == 5
    with pytest.raises(ShapeError, match="'T' is not bound"):
        dim_value("(T+2)//3-2", {"U": 1})


def test_types_with_equal_expressions_are_equal_and_print_them_quoted():
    a = TensorType(f32, ("?", "(W-7)//3+1", 4))
    b = TensorType(f32, ("?", "(W+2)//3-2", 4))
    assert a == b and hash(a) == hash(b)
    assert str(a) == 'f32[?,"(W+2)//3-2",4]'
    assert TensorType(f32, ("W-W+3",)).shape == (3,)
    with pytest.raises(ShapeError, match="must be an int >= 0"):
        TensorType(f32, ("W-W-1",))


def _strided_graph() -> tuple:
    """conv2d (3x3, stride 2, dilation 2 across the width) and a max pooling over a symbolic
    height and width."""
    b = Builder(name="windows")
    x = b.input("x", f32["?", "H", "W", 2])
    rng = np.random.default_rng(0)
    w = b.param("w", rng.standard_normal((3, 3, 2, 4)).astype(np.float32))
    y = b.conv2d(x, w, strides=[1, 2], pads=[1, 1, 0, 0], dilations=[1, 2])
    z = b.max_pool2d(b.relu(y), window=[2, 2], strides=[2, 2], pads=[0, 0, 0, 0])
    return b.finish([z], ["z"]), b


def test_windows_over_symbolic_sizes_give_expressions_that_round_trip():
    g, _ = _strided_graph()
    conv = g.nodes[0].outputs[0]
    assert conv.type.shape == ("?", "H", "(W+1)//2-2", 4)
    assert g.outputs[0].type.shape == ("?", "H//2", "(W+1)//4-1", 4)
    text = str(g)
    assert 'f32[?,H//2,"(W+1)//4-1",4]' not in text and 'f32[?,"H//2","(W+1)//4-1",4]' in text
    back = parse(text)
    assert back == g and str(back) == text
    verify(back)


def test_a_shape_attribute_holding_an_expression_round_trips():
    b = Builder(name="grad")
    dy = b.input("dy", f32["?", 1, "(W+2)//3-2", 4])
    w = b.input("w", f32[1, 7, 8, 4])
    dx = b.conv2d_grad_input(dy, w, input_hw=[1, "W"], strides=[1, 3])
    assert dx.type.shape == ("?", 1, "W", 8)
    g = b.finish([dx], ["dx"])
    assert parse(str(g)) == g


def test_a_reshape_keeping_one_symbolic_dimension_flattens_it_into_an_expression():
    b = Builder(name="flatten")
    x = b.input("x", f32["?", "(W+2)//3-2", 4])
    flat = b.reshape(x, shape=["?", -1])
    assert flat.type.shape == ("?", "(W+2)//3*4-8")
    assert b.reshape(flat, shape=["?", "(W+2)//3-2", 4]).type == x.type     # and back (its VJP)
    y = b.input("y", f32["?", "H", "W"])
    with pytest.raises(ShapeError, match=r"would stand for H \* W"):
        b.reshape(y, shape=["?", -1])


def test_a_malformed_expression_in_the_text_is_a_parse_error():
    with pytest.raises(ParseError, match="product of symbols"):
        parse('func @f(%x: f32["T*U"]) -> (x: f32["T*U"]) {\n  return %x\n}')


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_one_executable_runs_every_size_and_refuses_a_window_too_long(backend, monkeypatch):
    monkeypatch.setenv("NNCOMPILE_BACKEND", backend)
    g, b = _strided_graph()
    exe = nncompile.compile(g)
    rng = np.random.default_rng(1)
    for h, w in [(2, 7), (3, 20), (5, 101)]:
        x = rng.standard_normal((2, h, w, 2)).astype(np.float32)
        expected = run(g, [x], g.params)[0]
        assert expected.shape == (2, h // 2, (w + 1) // 4 - 1, 4)
        np.testing.assert_allclose(exe(x), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ShapeError, match=r"op 'conv2d': window of width spans 5 .* padded input is 4 .*"
                                         r"axis 2 of input 'x' is 4 \(W\)"):
        exe(np.zeros((1, 4, 4, 2), np.float32))


def test_same_pads_over_a_symbolic_size_are_expressions_that_round_trip():
    for kernel, stride, dilation in [(3, 2, 1), (7, 3, 1), (4, 4, 1), (3, 2, 2), (5, 1, 1)]:
        before, after = same_pads("W", kernel, stride, dilation)
        for w in range(1, 40):
            sizes = (dim_value(before, {"W": w}), dim_value(after, {"W": w}))
            assert sizes == same_pads(w, kernel, stride, dilation)
    b = Builder(name="same")
    x = b.input("x", f32["?", 1, "W", 2])
    w = b.param("w", np.ones((1, 7, 2, 3), np.float32))
    y = b.conv2d(x, w, strides=[1, 3], pads=[0, 0, *same_pads("W", 7, 3, 1)])
    assert y.type.shape == ("?", 1, "(W+2)//3", 3)          # ceil(W / 3)
    g = b.finish([y], ["y"])
    assert parse(str(g)) == g
    with pytest.raises(ShapeError, match="narrower than its stride"):
        same_pads("W", 1, 2, 1)


def test_sizes_chosen_for_shape_decisions_fit_every_window():
    b = Builder(name="wide")
    x = b.input("x", f32["?", 1, "W", 2])
    y = b.conv2d(x, b.param("w", np.ones((1, 40, 2, 3), np.float32)), strides=[1, 5])
    g = b.finish([y], ["y"])
    assert fitting_env(g, 32) == {"?": 64, "W": 64}     # at W = 32 the 40-wide window has no position
    assert fitting_env(g, 100) == {"?": 100, "W": 100}


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_pads_and_trims_of_a_symbolic_axis_are_expressions(backend, monkeypatch):
    monkeypatch.setenv("NNCOMPILE_BACKEND", backend)
    b = Builder(name="trim")
    x = b.input("x", f32["?", "T", 2])
    padded = b.pad(x, pads=[0, 0, 2, 1, 0, 0])
    trimmed = b.slice(padded, starts=[3], ends=[-2], axes=[1], steps=[1])
    assert (padded.type.shape, trimmed.type.shape) == (("?", "T+3", 2), ("?", "T-2", 2))
    g = b.finish([trimmed], ["y"])
    assert parse(str(g)) == g
    exe = nncompile.compile(g)
    for length in (3, 10):
        data = np.arange(2 * length * 2, dtype=np.float32).reshape(2, length, 2)
        np.testing.assert_array_equal(exe(data), np.pad(data, ((0, 0), (2, 1), (0, 0)))[:, 3:-2])
    with pytest.raises(ShapeError, match="can only lose a static count at each end"):
        b.slice(x, starts=[0], ends=[4], axes=[1], steps=[1])


def test_convolutions_over_a_symbolic_width_split_between_threads_match_the_reference():
    """Sizes large enough for the direct kernels to split their work (images, or the filter
    gradient's input channels) between the threads."""
    b = Builder(name="large")
    x = b.input("x", f32["?", 2, "W", 16])
    dy = b.input("dy", f32["?", 2, "W//3", 16])
    w = b.input("w", f32[2, 5, 16, 16])
    window = dict(strides=[1, 3], pads=[1, 0, 1, 1])
    outs = [b.conv2d(x, w, **window), b.conv2d_grad_input(dy, w, input_hw=[2, "W"], **window),
            b.conv2d_grad_filter(x, dy, kernel_hw=[2, 5], **window)]
    assert outs[0].type.shape == dy.type.shape
    g = b.finish(outs, ["y", "dx", "dw"])
    exe = nncompile.compile(g)
    rng = np.random.default_rng(3)
    for width in (300, 451):
        data = [rng.standard_normal(s).astype(np.float32)
                for s in [(4, 2, width, 16), (4, 2, width // 3, 16), (2, 5, 16, 16)]]
        for got, want in zip(exe(*data), run(g, data)):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_the_verifier_refuses_an_expression_no_input_binds():
    bound = parse('func @f(%x: f32["T+1"], %y: f32[T]) -> (x: f32["T+1"]) {\n  return %x\n}')
    verify(bound)
    unbound = parse('func @f(%x: f32["T+1"]) -> (x: f32["T+1"]) {\n  return %x\n}')
    with pytest.raises(VerifyError, match=r"input 'x' of type f32\[\"T\+1\"\]: no input has 'T'"):
        verify(unbound)

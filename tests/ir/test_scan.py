"""The scan op's contract: what its shape rule refuses (each message naming the operand, body
input or result at fault), its result types, its text form, and the reference interpreter
against a numpy loop with a symbolic trip count."""
from __future__ import annotations

import numpy as np
import pytest

from nncompile.ir import BATCH, Builder, Graph, ShapeError, TensorType, f32, i32, parse, verify
from nncompile.runtime.reference import run


def _body(*types, outputs=lambda b, *args: [args[0]]) -> Graph:
    b = Builder(name="body")
    args = [b.input(f"a{i}", t) for i, t in enumerate(types)]
    return b.finish(outputs(b, *args))


def _scan_error(operands, body, fragment, **attrs):
    b = Builder()
    values = [b.input(f"v{i}", t) for i, t in enumerate(operands)]
    attrs = {"num_carry": 1, "num_scanned": 1, "axis": 1, **attrs}
    with pytest.raises(ShapeError) as info:
        b.scan(*values, body=body, **attrs)
    assert "op 'scan'" in str(info.value) and fragment in str(info.value), str(info.value)


STATE, SEQ = f32[BATCH, 4], f32[BATCH, "T", 4]


@pytest.mark.parametrize("operands, body, attrs, fragment", [
    ([STATE, SEQ], _body(STATE, f32[BATCH, 4]), {"num_scanned": 0},
     "expected num_carry >= 0 and num_scanned >= 1"),
    ([STATE], _body(STATE), {}, "has 1 operands, fewer than num_carry + num_scanned = 2"),
    ([STATE, SEQ, f32[4, 4]], _body(STATE, f32[BATCH, 4]), {}, "takes 2 operands, one per body input, got 3"),
    ([STATE, SEQ], _body(STATE, f32[BATCH, 5]), {},
     "operand 1 makes body input 'a1' f32[?,4], but it is declared f32[?,5]"),
    ([STATE, SEQ], _body(STATE, f32[BATCH, 4], outputs=lambda b, h, x: [b.reduce_sum(h, axes=[1])]), {},
     "body result 0 (new carry 0) is f32[?]; the carry is f32[?,4]"),
    ([STATE, SEQ, f32[BATCH, 6, 4]], _body(STATE, f32[BATCH, 4], f32[BATCH, 4]), {"num_scanned": 2},
     "the scanned operands differ in length along axis 1"),
    ([STATE, f32[BATCH]], _body(STATE, f32[BATCH]), {}, "scanned operand 0 (f32[?]) has no axis 1"),
    ([STATE, f32[BATCH, 4, "T"]], _body(STATE, f32[BATCH, 4], outputs=lambda b, h, x: [h, b.reduce_sum(x, axes=[0, 1])]),
     {"axis": 2}, "per-step result 0 (f32[]) cannot be stacked along axis 2"),
])
def test_shape_rule_refuses_with_a_named_reason(operands, body, attrs, fragment):
    _scan_error(operands, body, fragment, **attrs)


def test_results_are_the_final_carries_then_the_stacked_per_step_outputs():
    b = Builder()
    h0, xs, k = b.input("h0", STATE), b.input("xs", f32[BATCH, "T", 3]), b.input("k", f32[3, 4])
    body = _body(STATE, f32[BATCH, 3], f32[3, 4], outputs=lambda f, h, x, w: [
        f.add(h, f.matmul(x, w)), f.cast(f.greater(h, f.constant(0.0, "f32")), dtype="i32"), x])
    h, flags, same = b.scan(h0, xs, k, body=body, num_carry=1, num_scanned=1, axis=1)
    assert (h.type, flags.type, same.type) == (STATE, TensorType(i32, (BATCH, "T", 4)), xs.type)
    g = b.finish([h, flags, same])
    verify(g)
    assert parse(str(g)) == g
    x = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)
    start = np.zeros((2, 4), np.float32)
    w = np.ones((3, 4), np.float32)
    got = run(g, [start, x, w])
    state, flagged = start, []
    for t in range(5):
        flagged.append((state > 0).astype(np.int32))
        state = state + x[:, t] @ w
    np.testing.assert_allclose(got[0], state, rtol=1e-6)
    np.testing.assert_array_equal(got[1], np.stack(flagged, axis=1))
    np.testing.assert_array_equal(got[2], x)


def _row_scan(step, carry=f32[BATCH, 4], axis=0):
    """A scan over f32[T, ?, 4] (time-major unless `axis` says) whose body is `step(b, h, x, w)`."""
    b = Builder()
    seq = (("T", BATCH, 4), (BATCH, "T", 4))[axis]
    h0, xs = b.input("h0", carry), b.input("xs", TensorType(f32, seq))
    w = b.input("w", f32[4, 4])
    body = _body(carry, f32[BATCH, 4], f32[4, 4], outputs=lambda bb, h, x, u: step(bb, h, x, u))
    b.scan(h0, xs, w, body=body, num_carry=1, num_scanned=1, axis=axis)
    return b.graph.nodes[-1]


@pytest.mark.parametrize("step, carry, axis, expected", [
    (lambda b, h, x, w: [b.tanh(b.add(x, b.matmul(h, w)))] * 2, f32[BATCH, 4], 0, BATCH),
    (lambda b, h, x, w: [b.add(h, b.slice(b.softmax(b.concat(x, x, axis=1), axis=1), axes=[1],
                                          starts=[2], ends=[6], steps=[1]))], f32[BATCH, 4], 0, BATCH),
    # per-step results not written in place (the carry, a scanned slice, one value twice): copied
    (lambda b, h, x, w: (lambda m: [b.add(h, x), h, x, m, m])(b.mul(h, x)), f32[BATCH, 4], 0, BATCH),
    # a sum over the rows, a product contracting them: rows meet
    (lambda b, h, x, w: [b.add(h, b.reduce_sum(x, axes=[0], keepdims=True))], f32[BATCH, 4], 0, None),
    (lambda b, h, x, w: [b.add(h, b.matmul(x, b.matmul(h, x, transpose_a=True)))], f32[BATCH, 4], 0, None),
    # slices copied along axis 1; a carry without the rows first
    (lambda b, h, x, w: [b.add(h, x)], f32[BATCH, 4], 1, None),
    (lambda b, h, x, w: [h], f32[4, BATCH], 0, None),
])
def test_independent_rows_only_where_no_row_meets_another(step, carry, axis, expected):
    from nncompile.ir.ops.scan import independent_rows
    assert independent_rows(_row_scan(step, carry, axis)) == expected

"""scan compiled as one native loop, against the reference interpreter and numpy loops written
here: symbolic and static trip counts (0, 1, 2, 17), reverse, axes 0/1/2, several scanned
operands (a bool mask among them), per-step outputs that are carries or body inputs, constants
inside the body, a scan inside a scan, an LSTM cell whose gates are slices fused into one loop,
and the memory plan (body buffers reused by every step; the code does not grow with the length)."""
from __future__ import annotations

import numpy as np
import pytest

import nncompile
from nncompile.ir import BATCH, Builder, ShapeError, TensorType, bool_, f32, f64, i32
from nncompile.ir.ops.scan import independent_rows
from nncompile.passes.memory import plan_memory
from nncompile.runtime.reference import run
from tests.runtime.cpu_harness import lstm_body


def _check(graph, inputs, exe=None, rtol=1e-6):
    exe = exe or nncompile.compile(graph)
    got = exe(*inputs)
    got = got if isinstance(got, list) else [got]
    for g, e in zip(got, run(graph, inputs)):
        assert g.shape == e.shape and g.dtype == e.dtype
        np.testing.assert_allclose(g, e, rtol=rtol, atol=1e-6)
    return exe, got


def _running_sum_graph(axis: int, reverse: bool, length="T"):
    """carry: s' = s * 0.5 + x_t (a f64 row); per step: s' and x_t * s (scanned along `axis`)."""
    body = Builder(name="body")
    s, x = body.input("s", f64[BATCH, 3]), body.input("x", f64[BATCH, 3])
    new = body.add(body.mul(s, body.constant(0.5, f64)), x)
    bg = body.finish([new, new, body.mul(x, s)])
    b = Builder()
    shape = [BATCH, 3]
    shape.insert(axis, length)
    xs = b.input("xs", TensorType(f64, tuple(shape)))
    s0 = b.input("s0", f64[BATCH, 3])
    outs = b.scan(s0, xs, body=bg, num_carry=1, num_scanned=1, axis=axis, reverse=reverse)
    return b.finish(list(outs), ["s", "states", "products"])


def _numpy_running_sum(xs, s, axis, reverse):
    steps = xs.shape[axis]
    states, products = [None] * steps, [None] * steps
    for t in (range(steps - 1, -1, -1) if reverse else range(steps)):
        x = np.take(xs, t, axis=axis)
        products[t] = x * s
        s = s * 0.5 + x
        states[t] = s
    stack = (lambda ys: np.stack(ys, axis=axis)) if steps else (lambda ys: np.zeros(
        xs.shape[:axis] + (0,) + xs.shape[axis + 1:]))
    return [s, stack(states), stack(products)]


@pytest.mark.parametrize("reverse", [False, True])
def test_symbolic_length_runs_every_length_with_one_executable(reverse):
    graph = _running_sum_graph(1, reverse)
    exe = nncompile.compile(graph)
    rng = np.random.default_rng(0)
    for batch, steps in [(2, 0), (1, 1), (3, 2), (2, 17)]:
        xs, s0 = rng.standard_normal((batch, steps, 3)), rng.standard_normal((batch, 3))
        _, got = _check(graph, [xs, s0], exe)
        for g, e in zip(got, _numpy_running_sum(xs, s0, 1, reverse)):
            np.testing.assert_allclose(g, e, rtol=1e-12)


@pytest.mark.parametrize("axis", [0, 2])
def test_static_length_along_other_axes(axis):
    graph = _running_sum_graph(axis, False, length=5)
    rng = np.random.default_rng(axis)
    shape = [2, 3]
    shape.insert(axis, 5)
    xs, s0 = rng.standard_normal(shape), rng.standard_normal((2, 3))
    _, got = _check(graph, [xs, s0])
    for g, e in zip(got, _numpy_running_sum(xs, s0, axis, False)):
        np.testing.assert_allclose(g, e, rtol=1e-12)


def test_masked_steps_with_integer_and_bool_slices_and_a_body_constant():
    """A token id and a bool mask scanned beside the data: the carry counts unmasked tokens
    above 2 and holds on masked steps; the per-step output is the mask itself (a body input)."""
    body = Builder(name="body")
    count, ids, mask = body.input("count", i32[BATCH]), body.input("ids", i32[BATCH]), body.input("m", bool_[BATCH])
    big = body.cast(body.greater(ids, body.constant(np.int32(2))), dtype="i32")
    bg = body.finish([body.select(mask, body.add(count, big), count), mask])
    b = Builder()
    ids, mask = b.input("ids", i32[BATCH, "T"]), b.input("mask", bool_[BATCH, "T"])
    zero = b.broadcast(b.constant(np.int32(0)), shape=[BATCH])
    graph = b.finish(list(b.scan(zero, ids, mask, body=bg, num_carry=1, num_scanned=2, axis=1)), ["n", "m"])
    rng = np.random.default_rng(1)
    tokens, keep = rng.integers(0, 5, (4, 9)).astype(np.int32), rng.random((4, 9)) < 0.6
    _, (n, m) = _check(graph, [tokens, keep])
    np.testing.assert_array_equal(n, ((tokens > 2) & keep).sum(axis=1))
    np.testing.assert_array_equal(m, keep)


def nested_scan_graph(steps=3):
    """Outer steps over rows; each runs an inner scan over the row's elements (a cumulative
    sum from a zero broadcast to [?], a shape attribute inside a region), and carries the
    running total of the row sums."""
    inner = Builder(name="body")
    acc, x = inner.input("acc", f32[BATCH]), inner.input("x", f32[BATCH])
    new = inner.add(acc, x)
    inner_body = inner.finish([new, new])
    outer = Builder(name="body")
    total, row = outer.input("total", f32[BATCH]), outer.input("row", f32[BATCH, 4])
    zero = outer.broadcast(outer.constant(np.float32(0)), shape=[BATCH])
    row_sum, prefix = outer.scan(zero, row, body=inner_body, num_carry=1, num_scanned=1, axis=1)
    outer_body = outer.finish([outer.add(total, row_sum), prefix])
    b = Builder()
    x = b.input("x", f32[BATCH, steps, 4])
    start = b.broadcast(b.constant(np.float32(1)), shape=[BATCH])
    return b.finish(list(b.scan(start, x, body=outer_body, num_carry=1, num_scanned=1, axis=1)), ["t", "p"])


def test_scan_inside_a_scan():
    graph = nested_scan_graph()
    xs = np.random.default_rng(2).standard_normal((2, 3, 4)).astype(np.float32)
    _, (t, p) = _check(graph, [xs])
    np.testing.assert_allclose(t, 1 + xs.sum(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_allclose(p, np.cumsum(xs, axis=2), rtol=1e-5)


def _lstm_graph(steps, units=8, features=5, seed=0, time_major=False):
    """Keras's LSTM recipe: one product for every step's input projection before the loop; per
    step one product with the recurrent kernel of all four gates, then the gates as slices.
    `time_major`: the sequence is transposed to (steps, batch, ...) and scanned along axis 0."""
    rng = np.random.default_rng(seed)
    b = Builder()
    x = b.input("x", f32[BATCH, steps, features])
    kernel = b.param("kernel", rng.standard_normal((features, 4 * units)).astype(np.float32) * 0.3)
    recurrent = b.param("recurrent", rng.standard_normal((units, 4 * units)).astype(np.float32) * 0.3)
    bias = b.param("bias", rng.standard_normal(4 * units).astype(np.float32) * 0.3)
    zero = b.broadcast(b.constant(np.float32(0)), shape=[BATCH, units])
    if time_major:
        x = b.transpose(x, perm=[1, 0, 2])
    h, c, seq = b.scan(zero, zero, b.add(b.matmul(x, kernel), bias), recurrent, body=lstm_body(units),
                       num_carry=2, num_scanned=1, axis=0 if time_major else 1)
    return b.finish([h, c, b.transpose(seq, perm=[1, 0, 2]) if time_major else seq], ["h", "c", "seq"])


def _numpy_lstm(graph, x):
    p = graph.params
    units = p["recurrent"].shape[0]
    h, c, seq = np.zeros((x.shape[0], units)), np.zeros((x.shape[0], units)), []
    sigmoid = lambda v: 1 / (1 + np.exp(-v))
    for t in range(x.shape[1]):
        z = x[:, t] @ p["kernel"] + p["bias"] + h @ p["recurrent"]
        i, f, g, o = np.split(z, 4, axis=1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        seq.append(h)
    return [h, c, np.stack(seq, axis=1)]


@pytest.mark.parametrize("time_major, units", [(False, 8), (True, 8), (True, 24)])
def test_lstm_cell_gates_fuse_into_one_loop_and_match_numpy(time_major, units):
    """24 units: the recurrent product is large enough for the packed GEMM, which reads the
    recurrent kernel packed once before the loop."""
    graph = _lstm_graph(17, units=units, time_major=time_major)
    exe = nncompile.compile(graph)
    (scan,) = [n for n in exe.graph.nodes if n.op == "scan"]
    kernels = [n for n in scan.attrs["body"].nodes]
    assert [n.op for n in kernels] == ["fused", "fused"]
    assert [n.attrs["kind"] for n in kernels] == ["matmul", "loop"]
    rng = np.random.default_rng(3)
    if units == 24:
        assert "gemm.pack_b.f32" in exe._module_text
    for batch in (1, 6, 13):
        x = rng.standard_normal((batch, 17, 5)).astype(np.float32)
        _, got = _check(graph, [x], exe, rtol=1e-5)
        for g, e in zip(got, _numpy_lstm(graph, x.astype(np.float64))):
            np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5)


def test_time_major_steps_read_and_write_their_slices_in_place():
    """Along axis 0 the step's input is slice t of the projected sequence and its per-step
    result slice t of the stacked result: no buffers of their own, no copies."""
    exe = nncompile.compile(_lstm_graph(6, time_major=True))
    plan = plan_memory(exe.graph, {BATCH: 3})
    (scan,) = [n for n in exe.graph.nodes if n.op == "scan"]
    body = scan.attrs["body"]
    xw, per_step = body.inputs[2], body.outputs[2]
    assert plan.where(xw).root is plan.where(scan.inputs[2]).root
    assert plan.where(per_step).root is plan.where(scan.outputs[2]).root
    assert not [b for b in plan.buffers if b.values[0] in (xw, per_step)]


def test_body_buffers_are_reused_and_the_code_does_not_grow_with_the_length():
    short, long = nncompile.compile(_lstm_graph(10)), nncompile.compile(_lstm_graph(1000))
    # The module differs only in the numbers that say the length.
    assert abs(len(long._module_text) - len(short._module_text)) < 64
    for exe, steps in ((short, 10), (long, 1000)):
        plan = plan_memory(exe.graph, {BATCH: 4})
        projection = 4 * steps * 32 * 4   # the projected inputs, f32[4, steps, 32], read by every step
        assert plan.arena_bytes <= projection + 16 * 1024


def _token_scan_graph(steps=9, units=8):
    """Backwards over the steps, row r looks its token up and mixes in its previous state: rows
    independent, so blocks of them run on separate threads; a bad token is found inside one."""
    rng = np.random.default_rng(5)
    body = Builder(name="body")
    h, ids = body.input("h", f32[BATCH, units]), body.input("ids", i32[BATCH])
    table, r = body.input("table", f32[10, units]), body.input("r", f32[units, units])
    new = body.tanh(body.add(body.op("gather", table, ids, allow_negative=False), body.matmul(h, r)))
    b = Builder()
    tokens = b.input("ids", i32[steps, BATCH])
    table = b.param("table", rng.standard_normal((10, units)).astype(np.float32))
    r = b.param("r", (rng.standard_normal((units, units)) / units).astype(np.float32))
    zero = b.broadcast(b.constant(np.float32(0)), shape=[BATCH, units])
    h, seq = b.scan(zero, tokens, table, r, body=body.finish([new, body.mul(new, new)]),
                    num_carry=1, num_scanned=1, reverse=True)
    return b.finish([h, seq], ["h", "squares"])


def test_blocks_of_independent_rows_run_the_whole_loop_each_and_report_bad_input():
    graph = _token_scan_graph()
    exe = nncompile.compile(graph)
    (scan,) = [n for n in exe.graph.nodes if n.op == "scan"]
    assert independent_rows(scan) == BATCH
    table, r = graph.params["table"].astype(np.float64), graph.params["r"].astype(np.float64)
    rng = np.random.default_rng(6)
    for batch in (1, 2, 5, 64):
        ids = rng.integers(0, 10, (9, batch)).astype(np.int32)
        h, squares = np.zeros((batch, 8)), np.zeros((9, batch, 8))
        for t in range(8, -1, -1):
            h = np.tanh(table[ids[t]] + h @ r)
            squares[t] = h * h
        got = exe(ids)
        np.testing.assert_allclose(got[0], h, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got[1], squares, rtol=1e-5, atol=1e-6)
        _check(graph, [ids], exe, rtol=1e-5)
    ids[4, 63] = 10     # the last row: the last block's
    with pytest.raises(ShapeError, match="op 'gather'.*out of range"):
        exe(ids)


def test_blocks_of_rows_copy_the_per_step_results_not_written_in_place():
    """The state before each step (what a training loop saves for its backward loop), a scanned
    slice and a value returned twice are per-step results that no kernel writes in place: each
    block of rows copies its rows of them into slice t."""
    units = 8
    body = Builder(name="body")
    h, x = body.input("h", f32[BATCH, units]), body.input("x", f32[BATCH, units])
    r = body.input("r", f32[units, units])
    new = body.tanh(body.add(x, body.matmul(h, r)))
    square = body.mul(new, new)
    b = Builder()
    xs = b.input("xs", f32["T", BATCH, units])
    r_param = b.param("r", (np.random.default_rng(7).standard_normal((units, units)) / units).astype(np.float32))
    zero = b.broadcast(b.constant(np.float32(0)), shape=[BATCH, units])
    outputs = b.scan(zero, xs, r_param, body=body.finish([new, h, x, square, square]), num_carry=1, num_scanned=1)
    graph = b.finish(list(outputs), ["h", "before", "xs", "square", "again"])
    exe = nncompile.compile(graph)
    (scan,) = [n for n in exe.graph.nodes if n.op == "scan"]
    assert independent_rows(scan) == BATCH
    rng = np.random.default_rng(8)
    for steps, batch in ((5, 1), (5, 2), (9, 5), (3, 64), (0, 4)):
        _check(graph, [rng.standard_normal((steps, batch, units)).astype(np.float32)], exe, rtol=1e-5)


def test_concurrent_blocks_give_every_body_value_bytes_of_its_own():
    """Blocks of rows run at their own pace, so a value may not take the bytes of one dead
    earlier in the step: rows of different widths would meet another block's rows."""
    rng = np.random.default_rng(7)
    body = Builder(name="body")
    h, x = body.input("h", f32[BATCH, 4]), body.input("x", f32[BATCH, 4])
    wide, narrow = body.input("wide", f32[4, 32]), body.input("narrow", f32[4, 8])
    peak = body.reduce_max(body.matmul(h, wide), axes=[1], keepdims=True)           # f32[?,32] dies here
    scale = body.reduce_sum(body.mul(body.matmul(x, narrow), peak), axes=[1], keepdims=True)
    new = body.tanh(body.mul(body.add(h, x), scale))
    b = Builder()
    xs = b.input("xs", f32[7, BATCH, 4])
    weights = [b.param(name, rng.standard_normal(shape).astype(np.float32) / 4)
               for name, shape in (("wide", (4, 32)), ("narrow", (4, 8)))]
    zero = b.broadcast(b.constant(np.float32(0.5)), shape=[BATCH, 4])
    h, = b.scan(zero, xs, *weights, body=body.finish([new]), num_carry=1, num_scanned=1)
    graph = b.finish([h], ["h"])
    exe = nncompile.compile(graph)
    (scan,) = [n for n in exe.graph.nodes if n.op == "scan"]
    assert independent_rows(scan) == BATCH
    plan = plan_memory(exe.graph, {BATCH: 5})
    body_values = {v for n in scan.attrs["body"].nodes for v in n.outputs}
    spans = [(plan.offsets[buf.values[0]], plan.offsets[buf.values[0]] + buf.size) for buf in plan.buffers
             if body_values & set(buf.values)]
    assert len(spans) >= 3
    for i, (start, end) in enumerate(spans):
        assert all(end <= s or e <= start for s, e in spans[i + 1:]), spans
    _check(graph, [rng.standard_normal((7, 64, 4)).astype(np.float32)], exe, rtol=1e-5)

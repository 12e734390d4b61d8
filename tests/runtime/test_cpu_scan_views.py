"""A scan along axis 0 whose per-step result is a reshape of a body input (as a ConvLSTM's
training loop saves its cell state c, viewed as rows of pixels, for the backward loop): the view
lies where the input lies, so the step copies it into its slice instead of moving the input
there (which left the carry reading garbage). Checked against a numpy loop written here."""
from __future__ import annotations

import numpy as np
import pytest

import nncompile
from nncompile.ir import BATCH, Builder, f32
from nncompile.ir.dims import canonical
from nncompile.ir.ops.scan import step_views

ROWS = canonical(f"({BATCH})*3")


def _graph(reverse: bool):
    """carry c (batch, 3, 2): c' = 0.5 * c + x_t; per step: c as rows (batch * 3, 2), and c'."""
    body = Builder(name="body")
    c, x = body.input("c", f32[BATCH, 3, 2]), body.input("x", f32[BATCH, 3, 2])
    new = body.add(body.mul(c, body.constant(0.5, f32)), x)
    graph = body.finish([new, body.reshape(c, shape=(ROWS, 2)), new])
    b = Builder()
    xs, c0 = b.input("xs", f32["T", BATCH, 3, 2]), b.input("c0", f32[BATCH, 3, 2])
    outs = b.scan(c0, xs, body=graph, num_carry=1, num_scanned=1, reverse=reverse)
    return b.finish(list(outs), ["c", "saved", "states"])


def _numpy(xs, c, reverse):
    saved, states = [None] * len(xs), [None] * len(xs)
    for t in (range(len(xs) - 1, -1, -1) if reverse else range(len(xs))):
        saved[t] = c.reshape(-1, 2)
        c = 0.5 * c + xs[t]
        states[t] = c
    return [c, np.stack(saved), np.stack(states)]


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("steps", [1, 5])
def test_a_reshaped_carry_saved_at_every_step_is_copied_not_moved(reverse, steps):
    graph = _graph(reverse)
    scan = next(n for n in graph.nodes if n.op == "scan")
    body = scan.attrs["body"]
    assert body.outputs[1] not in step_views(scan)[1]   # the view is not written in place
    rng = np.random.default_rng(steps)
    xs = rng.standard_normal((steps, 4, 3, 2)).astype(np.float32)
    c0 = rng.standard_normal((4, 3, 2)).astype(np.float32)
    got = nncompile.compile(graph)(xs, c0)
    for g, want in zip(got, _numpy(xs.astype(np.float64), c0.astype(np.float64), reverse)):
        np.testing.assert_allclose(g, want, rtol=1e-6, atol=1e-6)


def _shared_graph(kind: str):
    """Per-step results that lie in one buffer: y and y reshaped ("twice"), or the carry's new
    value reshaped twice beside itself ("reshaped")."""
    body = Builder(name="body")
    c, x = body.input("c", f32[BATCH, 3, 2]), body.input("x", f32[BATCH, 3, 2])
    new = body.add(body.mul(c, body.constant(0.5, f32)), x)
    if kind == "twice":
        y = body.mul(new, body.constant(2.0, f32))
        outs = [new, y, body.reshape(y, shape=(ROWS, 2))]
    else:
        outs = [new, body.reshape(body.reshape(new, shape=(ROWS, 2)), shape=(BATCH, 6)), new]
    b = Builder()
    xs, c0 = b.input("xs", f32["T", BATCH, 3, 2]), b.input("c0", f32[BATCH, 3, 2])
    return b.finish(list(b.scan(c0, xs, body=body.finish(outs), num_carry=1, num_scanned=1, reverse=False)))


@pytest.mark.parametrize("kind", ["twice", "reshaped"])
def test_per_step_results_in_one_buffer_are_each_copied(kind):
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((5, 4, 3, 2)).astype(np.float32)
    c0 = rng.standard_normal((4, 3, 2)).astype(np.float64)
    c, states = c0, []
    for x in xs:
        c = 0.5 * c + x
        states.append(c)
    states = np.stack(states)
    want = [c, 2 * states, (2 * states).reshape(5, -1, 2)] if kind == "twice" else \
        [c, states.reshape(5, 4, 6), states]
    for got, expected in zip(nncompile.compile(_shared_graph(kind))(xs, c0.astype(np.float32)), want):
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)

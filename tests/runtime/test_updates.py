"""Parameter updates (`Builder.update`): the text form, the verifier, the schedule's ordering,
and the runtime writing new values into the parameters' arrays, in place where it can."""
from __future__ import annotations

import numpy as np
import pytest

import nncompile
from nncompile.ir import BATCH, Builder, IRError, VerifyError, f32, parse, verify
from nncompile.runtime.reference import Interpreter


def _sgd_step(lr=0.5):
    """loss = sum(x @ w); w -= lr * d loss/dw (= lr * column sums of x, broadcast), m += w_old."""
    b = Builder()
    x = b.input("x", f32[BATCH, 4])
    w = b.param("w", np.arange(8, dtype=np.float32).reshape(4, 2))
    m = b.param("m", np.zeros((4, 2), np.float32))
    loss = b.op("reduce_sum", b.op("matmul", x, w), axes=(0, 1))
    column_sums = b.op("reshape", b.op("reduce_sum", x, axes=(0,)), shape=(4, 1))
    b.update(m, b.op("add", m, w))
    b.update(w, b.op("sub", w, b.op("mul", b.op("broadcast", column_sums, shape=(4, 2)), b.scalar(lr, w))))
    return b.finish([loss], ["loss"])


def _numpy_steps(x_batches, lr=0.5):
    w = np.arange(8, dtype=np.float64).reshape(4, 2)
    m = np.zeros((4, 2))
    losses = []
    for x in x_batches:
        losses.append((x @ w).sum())
        m = m + w
        w = w - lr * x.sum(axis=0)[:, None]
    return losses, w, m


def test_updates_print_parse_and_verify():
    g = _sgd_step()
    text = str(g)
    assert "m: f32[4,2] {updates %m}" in text and "w: f32[4,2] {updates %w}" in text
    verify(g)
    assert parse(text) == g


def test_verifier_rejects_an_update_of_a_non_parameter():
    g = _sgd_step()
    g.updates["loss"] = "x"
    with pytest.raises(VerifyError, match="'x', which is not a parameter"):
        verify(g)


def test_builder_refuses_a_wrong_type_and_a_second_update():
    b = Builder()
    w = b.param("w", np.zeros(3, np.float32))
    with pytest.raises(IRError, match="new value has type f32\\[2\\]"):
        b.update(w, b.constant(np.zeros(2, np.float32)))
    b.update(w, b.op("neg", w))
    with pytest.raises(IRError, match="updated twice"):
        b.update(w, b.op("neg", w))


@pytest.mark.parametrize("run", ["compiled", "interpreted"])
def test_steps_update_parameters_like_numpy(run):
    rng = np.random.default_rng(0)
    graph = _sgd_step()
    step = nncompile.compile(graph) if run == "compiled" else Interpreter(graph)
    batches = [rng.standard_normal((n, 4)).astype(np.float32) for n in (3, 1, 5)]
    losses = [float(step(x)) for x in batches]
    want_losses, want_w, want_m = _numpy_steps([x.astype(np.float64) for x in batches])
    np.testing.assert_allclose(losses, want_losses, rtol=1e-5)
    np.testing.assert_allclose(graph.params["w"], want_w, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(graph.params["m"], want_m, rtol=1e-5, atol=1e-5)


def test_schedule_puts_readers_of_the_old_value_first_so_updates_are_in_place():
    exe = nncompile.compile(_sgd_step())
    assert sorted(exe._in_place.values()) == ["m", "w"]
    nodes = exe.graph.nodes
    old_w = exe.graph.input("w")
    writer = next(i for i, n in enumerate(nodes) if n.outputs[0] is exe.graph.outputs[exe.graph.output_names.index("w")])
    assert all(i <= writer for i, n in enumerate(nodes) if old_w in n.inputs)


def test_an_update_that_cannot_be_in_place_is_copied_after_the_call():
    b = Builder()
    x = b.input("x", f32[2, 2])
    w = b.param("w", np.array([[1, 2], [3, 4]], np.float32))
    b.update(w, b.op("matmul", w, x))          # reads w whole to make each element: not in place
    exe = nncompile.compile(b.finish([], []))
    assert exe._in_place == {}
    out = exe(np.array([[0, 1], [1, 0]], np.float32))
    assert out == []
    np.testing.assert_array_equal(exe.params["w"], [[2, 1], [4, 3]])

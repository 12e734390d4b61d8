"""scan-sums: a sum over a loop's steps of a per-step result becomes carries of the loop
(`passes/scan_sums.py`). Expected values are numpy loops written in the tests, or the reference
interpreter on the graph before the passes. (The recurrent layers' bias gradients, summed this
way in training, are checked against finite differences in tests/keras/test_recurrent_training.py.)"""
from __future__ import annotations

import re

import numpy as np
import pytest

import nncompile
from nncompile.ir import BATCH, Builder, f32
from nncompile.passes import PassManager
from nncompile.passes.autodiff import gradients
from nncompile.passes.pipelines import pipeline
from nncompile.runtime.reference import run

STEPS, WIDTH = 7, 6


def _loop(axes: list[int], pieces: bool = False, reverse: bool = False, also_stacked: bool = False):
    """h' = tanh(h + x) over the steps; the per-step result y = [h', 2h'] (a concat when
    `pieces`, else h' * 3), and reduce_sum(stacked y, axes)."""
    b = Builder()
    xs = b.input("xs", f32[STEPS, BATCH, WIDTH])
    body = Builder(name="body")
    h, x = body.input("h", f32[BATCH, WIDTH]), body.input("x", f32[BATCH, WIDTH])
    new = body.tanh(body.add(h, x))
    two = body.mul(new, body.constant(np.float32(2)))
    y = body.concat(new, two, axis=1) if pieces else body.mul(new, body.constant(np.float32(3)))
    zero = b.broadcast(b.constant(np.float32(0)), shape=[BATCH, WIDTH])
    final, stacked = b.scan(zero, xs, body=body.finish([new, y]), num_carry=1, num_scanned=1, reverse=reverse)
    total = b.reduce_sum(stacked, axes=axes)
    outputs, names = [final, total], ["h", "total"]
    if also_stacked:
        outputs, names = outputs + [stacked], names + ["stacked"]
    return b.finish(outputs, names)


def _numpy(xs: np.ndarray, axes: list[int], pieces: bool, reverse: bool) -> tuple[np.ndarray, np.ndarray]:
    h = np.zeros(xs.shape[1:], np.float64)
    ys = [None] * len(xs)
    for t in (reversed(range(len(xs))) if reverse else range(len(xs))):
        h = np.tanh(h + xs[t])
        ys[t] = np.concatenate([h, 2 * h], axis=1) if pieces else 3 * h
    return h, np.sum(np.stack(ys), axis=tuple(axes))


def _scan(graph):
    return next(n for n in graph.nodes if n.op == "scan")


@pytest.mark.parametrize("axes,pieces,reverse", [([0, 1], False, False), ([0], False, True), ([1, 0], True, False),
                                                 ([0, -1], True, True), ([0, 1, 2], False, False)])
def test_sum_over_steps_is_carried_and_matches_numpy(axes, pieces, reverse):
    graph = _loop(axes, pieces, reverse)
    rewritten = PassManager(["scan-sums", "dce"], verify=True).run(graph.copy())
    node = _scan(rewritten)
    assert node.attrs["num_carry"] == 1 + (2 if pieces else 1)
    assert len(node.outputs) == node.attrs["num_carry"]   # nothing else read the stacked result
    xs = np.random.default_rng(len(axes)).standard_normal((STEPS, 5, WIDTH)).astype(np.float32)
    want_h, want_total = _numpy(xs.astype(np.float64), axes, pieces, reverse)
    for result in (run(rewritten, {"xs": xs}), nncompile.compile(rewritten)(xs)):
        h, total = result
        np.testing.assert_allclose(h, want_h, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(total, want_total, rtol=1e-5, atol=1e-5)


def test_a_stacked_result_read_elsewhere_stays_and_sums_not_over_steps_are_left():
    kept = PassManager(["scan-sums", "dce"], verify=True).run(_loop([0, 1], also_stacked=True))
    node = _scan(kept)
    assert node.attrs["num_carry"] == 2 and len(node.outputs) == 3
    xs = np.random.default_rng(3).standard_normal((STEPS, 4, WIDTH)).astype(np.float32)
    h, total, stacked = nncompile.compile(kept)(xs)
    np.testing.assert_allclose(total, stacked.sum(axis=(0, 1)), rtol=1e-5, atol=1e-5)
    over_rows = PassManager(["scan-sums", "dce"], verify=True).run(_loop([1]))
    assert _scan(over_rows).attrs["num_carry"] == 1 and "reduce_sum" in [n.op for n in over_rows.nodes]


@pytest.mark.parametrize("later_first", [False, True])
def test_two_summed_results_of_one_loop_get_carries_of_their_own(later_first):
    """Two per-step results of one loop, each summed over the steps, the later one's sum first or
    second in the graph (each rewrite moves the later results along): distinct carries, both
    sums as numpy's; and a loop along axis 1 of its operands."""
    b = Builder()
    xs = b.input("xs", f32[BATCH, STEPS, WIDTH])
    body = Builder(name="body")
    h, x = body.input("h", f32[BATCH, WIDTH]), body.input("x", f32[BATCH, WIDTH])
    new = body.tanh(body.add(h, x))
    y1, y2 = body.mul(new, body.constant(np.float32(3))), body.mul(new, body.constant(np.float32(5)))
    zero = b.broadcast(b.constant(np.float32(0)), shape=[BATCH, WIDTH])
    final, s1, s2 = b.scan(zero, xs, body=body.finish([new, y1, y2]), axis=1, num_carry=1, num_scanned=1)
    sums = [b.reduce_sum(s, axes=[1]) for s in ((s2, s1) if later_first else (s1, s2))]
    graph = b.finish([final, *(sums[::-1] if later_first else sums)], ["h", "t1", "t2"])
    rewritten = PassManager(["scan-sums", "dce"], verify=True).run(graph)
    body_inputs = [v.name for v in _scan(rewritten).attrs["body"].inputs]
    assert _scan(rewritten).attrs["num_carry"] == 3 and len(set(body_inputs)) == len(body_inputs)
    x = np.random.default_rng(4).standard_normal((3, STEPS, WIDTH)).astype(np.float32)
    want_h, hs = np.zeros((3, WIDTH)), []
    for t in range(STEPS):
        want_h = np.tanh(want_h + x[:, t])
        hs.append(want_h)
    h, t1, t2 = nncompile.compile(rewritten)(x)
    np.testing.assert_allclose(h, want_h, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(t1, 3 * np.sum(hs, axis=0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(t2, 5 * np.sum(hs, axis=0), rtol=1e-5, atol=1e-5)


def _gated_loop_gradients(rng: np.random.Generator):
    """h' = sigmoid(z[:, :W]) * tanh(z[:, W:]), z = x_t @ K + bias + h @ U (an LSTM's shape of
    loop, the input projection ahead of it); the loss sum(h_T^2) and its gradients."""
    b = Builder()
    inputs = b.input("inputs", f32[STEPS, BATCH, 3])
    kernel = b.param("kernel", (rng.standard_normal((3, 2 * WIDTH)) * 0.5).astype(np.float32))
    bias = b.param("bias", (rng.standard_normal(2 * WIDTH) * 0.5).astype(np.float32))
    recurrent = b.param("recurrent", (rng.standard_normal((WIDTH, 2 * WIDTH)) * 0.5).astype(np.float32))
    body = Builder(name="body")
    h, x, u = body.input("h", f32[BATCH, WIDTH]), body.input("x", f32[BATCH, 2 * WIDTH]), \
        body.input("u", f32[WIDTH, 2 * WIDTH])
    z = body.add(x, body.matmul(h, u))
    gate = body.sigmoid(body.slice(z, axes=[1], starts=[0], ends=[WIDTH], steps=[1]))
    new = body.mul(gate, body.tanh(body.slice(z, axes=[1], starts=[WIDTH], ends=[2 * WIDTH], steps=[1])))
    zero = b.broadcast(b.constant(np.float32(0)), shape=[BATCH, WIDTH])
    projected = b.add(b.matmul(inputs, kernel), bias)
    final, = b.scan(zero, projected, recurrent, body=body.finish([new]), num_carry=1, num_scanned=1)
    loss = b.reduce_sum(b.square(final), axes=[0, 1])
    grads = gradients(b.graph, loss, [kernel, bias, recurrent])
    return b.finish([loss, *grads])


def test_a_bias_gradient_is_summed_by_the_backward_loop():
    """The gradient of a bias added ahead of the loop: the backward loop carries the sums of its
    gates' gradients (two pieces of a concat here), and the training pipeline's graph computes
    what the reference interpreter gives for the graph as built."""
    graph = _gated_loop_gradients(np.random.default_rng(5))
    rewritten = PassManager(list(pipeline("training")), verify=True).run(graph.copy())
    backward = [n for n in rewritten.nodes if n.op == "scan" and n.attrs["reverse"]]
    assert len(backward) == 1 and any(re.fullmatch(r"sum\d+", v.name) for v in backward[0].attrs["body"].inputs)
    summed_after = [n for n in rewritten.nodes if n.op == "reduce_sum" and n.inputs[0].producer is backward[0]
                    and 0 in n.attrs["axes"] and n.inputs[0].type.rank == 3]
    assert not summed_after
    xs = np.random.default_rng(6).standard_normal((STEPS, 4, 3)).astype(np.float32)
    want = run(graph, {"inputs": xs})
    for got, expected in zip(nncompile.compile(rewritten)(xs), want):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)

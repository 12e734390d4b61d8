"""The VJP of scan (passes/scan_vjp.py) against central finite differences in float64 on the
reference interpreter, and compiled against the reference: carries, slices, invariants, masks
(a bool slice), reversed scans, swapped carries, per-step outputs that are never read."""
from __future__ import annotations

import numpy as np
import pytest

import nncompile
from nncompile.ir import BATCH, Builder, f64, verify
from nncompile.passes.autodiff import gradients
from nncompile.runtime.reference import run
from tests.passes.test_autodiff import check_gradients


def _elman_body(units: int, features: int, masked: bool):
    """h' = tanh(x @ w + h @ u) (held where the mask is off); total' = total + h' * h."""
    b = Builder(name="body")
    h, total = b.input("h", f64[BATCH, units]), b.input("total", f64[BATCH, units])
    x = b.input("x", f64[BATCH, features])
    mask = b.input("m", nncompile.ir.bool_[BATCH, 1]) if masked else None
    w, u = b.input("w", f64[features, units]), b.input("u", f64[units, units])
    new = b.tanh(b.add(b.matmul(x, w), b.matmul(h, u)))
    if masked:
        new = b.select(mask, new, h)
    return b.finish([new, b.add(total, b.mul(new, h)), b.mul(new, b.constant(2.0, f64))])


def _run_scan(b, values, reverse: bool, masked: bool = False):
    units, features = values["u"].type.shape[0], values["w"].type.shape[0]
    zero = b.broadcast(b.constant(0.0, f64), shape=[BATCH, units])
    scanned = [values["x"]] + ([b.greater(values["gate"], b.constant(0.0, f64))] if masked else [])
    h, total, ys = b.scan(values["h0"], zero, *scanned, values["w"], values["u"],
                          body=_elman_body(units, features, masked), num_carry=2,
                          num_scanned=len(scanned), axis=1, reverse=reverse)
    return b.add(b.reduce_sum(ys, axes=[1]), b.mul(h, total))


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("steps", [1, 2, 5])
def test_scan_gradients_match_finite_differences(reverse, steps):
    rng = np.random.default_rng(steps)
    arrays = {"x": rng.standard_normal((2, steps, 3)), "h0": rng.standard_normal((2, 4)),
              "w": rng.standard_normal((3, 4)) * 0.5, "u": rng.standard_normal((4, 4)) * 0.5}
    check_gradients(lambda b, v: _run_scan(b, v, reverse), arrays, batched={"x", "h0"})


def test_masked_scan_gradients_match_finite_differences():
    rng = np.random.default_rng(7)
    arrays = {"x": rng.standard_normal((3, 6, 2)), "h0": rng.standard_normal((3, 4)),
              "w": rng.standard_normal((2, 4)) * 0.5, "u": rng.standard_normal((4, 4)) * 0.5,
              "gate": rng.standard_normal((3, 6, 1))}
    check_gradients(lambda b, v: _run_scan(b, v, False, masked=True), arrays,
                    batched={"x", "h0", "gate"})


def _swap_body():
    """(a, b) -> (b * s, a): the carries trade places every step."""
    b = Builder(name="body")
    a, c = b.input("a", f64[BATCH, 2]), b.input("c", f64[BATCH, 2])
    s = b.input("s", f64[BATCH, 2])
    return b.finish([b.mul(c, s), a])


def test_swapped_carries_match_finite_differences_and_compile():
    rng = np.random.default_rng(3)
    arrays = {"a0": rng.standard_normal((2, 2)), "c0": rng.standard_normal((2, 2)),
              "s": rng.standard_normal((2, 3, 2))}

    def build(b, v):
        a, c = b.scan(v["a0"], v["c0"], v["s"], body=_swap_body(), num_carry=2, num_scanned=1, axis=1)
        return b.add(a, b.mul(c, c))

    check_gradients(build, arrays, batched=set(arrays))
    b = Builder()
    values = {k: b.input(k, f64[BATCH, *a.shape[1:]]) for k, a in arrays.items()}
    graph = b.finish([build(b, values)])
    got = nncompile.compile(graph)(*arrays.values())
    a, c = arrays["a0"], arrays["c0"]
    for t in range(3):
        a, c = c * arrays["s"][:, t], a
    np.testing.assert_allclose(got, a + c * c, rtol=1e-12)


@pytest.mark.parametrize("units, batch", [(5, 4), (24, 13)])
def test_compiled_training_step_matches_reference(units, batch):
    """Loss and gradients of a masked, reversed scan: the compiled step against the reference
    (24 units and 13 rows: the packed GEMM path, with weights packed once before each loop)."""
    rng = np.random.default_rng(11)
    arrays = {"x": rng.standard_normal((batch, 7, 3)), "h0": rng.standard_normal((batch, units)),
              "w": rng.standard_normal((3, units)) * 0.5, "u": rng.standard_normal((units, units)) * 0.3,
              "gate": rng.standard_normal((batch, 7, 1))}
    b = Builder()
    values = {k: b.input(k, f64[BATCH, *a.shape[1:]] if k in ("x", "h0", "gate") else f64[a.shape])
              for k, a in arrays.items()}
    out = _run_scan(b, values, True, masked=True)
    loss = b.reduce_sum(b.mul(out, out), axes=[0, 1])
    grads = gradients(b.graph, loss, [values[k] for k in ("x", "h0", "w", "u")])
    graph = b.finish([loss, *grads])
    verify(graph)
    expected = run(graph, list(arrays.values()))
    got = nncompile.compile(graph, pipeline="training")(*arrays.values())
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-12)

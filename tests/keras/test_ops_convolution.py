"""keras.ops convolutions beyond `conv` (depthwise_conv, separable_conv, conv_transpose) and
depth_to_space / space_to_depth against outputs of real Keras 3.15 on JAX
(tests/fixtures/keras/ops_conv, made by its script), eagerly, traced and compiled; gradients by
finite differences."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import nncompile
from nncompile.keras import ops
from tests.keras.ops_harness import both, trace_graph
from tests.passes.test_autodiff import check_gradients

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "keras" / "ops_conv"
sys.path.insert(0, str(FIXTURES))
from cases import CASES  # noqa: E402

KERAS = np.load(FIXTURES / "ops_conv.npz")


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_keras_eager_traced_and_compiled(name):
    op, shapes, kwargs = CASES[name]
    arrays = [KERAS[f"{name}/{i}"] for i in range(len(shapes))]
    want = KERAS[f"{name}/out"]

    def fn(*values):
        return getattr(ops, op)(*values, **kwargs)
    graph, _ = trace_graph(fn, arrays)
    for got in [*both(fn, *arrays), nncompile.compile(graph)(*arrays)]:
        assert np.asarray(got).shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_space_to_depth_undoes_depth_to_space():
    x = np.arange(2 * 3 * 4 * 8, dtype=np.float32).reshape(2, 3, 4, 8)
    np.testing.assert_array_equal(ops.space_to_depth(ops.depth_to_space(x, 2), 2), x)


@pytest.mark.parametrize("op, shapes, kwargs", [
    ("depthwise_conv", [(1, 5, 5, 2), (3, 3, 2, 2)], {"strides": 2, "padding": "same"}),
    ("separable_conv", [(1, 5, 5, 2), (3, 3, 2, 1), (1, 1, 2, 3)], {}),
    ("conv_transpose", [(1, 3, 3, 2), (3, 3, 3, 2)], {"strides": 2, "padding": "same"}),
], ids=["depthwise", "separable", "transpose"])
def test_gradients_match_finite_differences(op, shapes, kwargs):
    rng = np.random.default_rng(3)
    arrays = {f"x{i}": rng.standard_normal(shape) for i, shape in enumerate(shapes)}

    def build(b, values):
        with ops.tracing(b):
            return getattr(ops, op)(*values.values(), **kwargs)
    check_gradients(build, arrays, samples=6)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"ops\.depthwise_conv: the kernel has 3 input channels; the input 2"):
        ops.depthwise_conv(np.ones((1, 4, 4, 2)), np.ones((3, 3, 3, 1)))
    with pytest.raises(ValueError, match=r"ops\.conv_transpose: the kernel's last axis \(3\) must be the input's"):
        ops.conv_transpose(np.ones((1, 4, 4, 2)), np.ones((3, 3, 2, 3)))
    with pytest.raises(ValueError, match=r"ops\.depth_to_space: the 6 channels are not a multiple of"):
        ops.depth_to_space(np.ones((1, 2, 2, 6)), 2)

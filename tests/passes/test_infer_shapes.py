"""Shape inference after an input type changes, and fixing symbolic dimensions to sizes."""
from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nncompile.ir import BATCH, Builder, ShapeError, bool_, f32, f64
from nncompile.ir.verifier import verify
from nncompile.passes import fix_dims
from nncompile.passes.infer_shapes import infer_shapes
from nncompile.runtime.reference import run
from tests.runtime.test_cpu_scan import nested_scan_graph

W6 = np.linspace(-1, 1, 6, dtype=np.float32)


def _broadcast_graph():
    """s = x + w; r = relu(s); c = r < x, with x: f32[?,1] and w: f32[6]."""
    b = Builder()
    x = b.input("x", f32[BATCH, 1])
    w = b.param("w", W6)
    with b.loc("bias"):
        s = b.add(x, w)
    r = b.relu(s)
    c = b.less(r, x)
    return b.finish([r, c], ["r", "c"])


def test_types_follow_a_changed_input_type():
    g = _broadcast_graph()
    assert [v.type for v in g.outputs] == [f32[BATCH, 6], bool_[BATCH, 6]]
    g.inputs[0].type = f32[3, 6]

    out = infer_shapes(g)

    assert [n.outputs[0].type for n in out.nodes] == [f32[3, 6], f32[3, 6], bool_[3, 6]]
    assert [v.type for v in out.outputs] == [f32[3, 6], bool_[3, 6]]
    verify(out)
    x = np.random.default_rng(0).standard_normal((3, 6)).astype(np.float32)
    r, c = run(out, [x])
    np.testing.assert_allclose(r, np.maximum(x + W6, 0), rtol=1e-6)
    np.testing.assert_array_equal(c, np.maximum(x + W6, 0) < x)


def test_incompatible_input_type_names_the_node_and_changes_nothing():
    g = _broadcast_graph()
    g.inputs[0].type = f32[3, 5]
    with pytest.raises(ShapeError, match=r"node 'add' of 'bias'.*do not broadcast"):
        infer_shapes(g)
    assert [n.outputs[0].type for n in g.nodes] == [f32[BATCH, 6], f32[BATCH, 6], bool_[BATCH, 6]]


def test_dtype_change_that_breaks_an_op_is_reported():
    g = _broadcast_graph()
    g.inputs[0].type = f64[BATCH, 1]
    with pytest.raises(ShapeError, match=r"node 'add' of 'bias'.*f64 and f32 differ"):
        infer_shapes(g)


def _flatten_graph(features: int = 40):
    """y = relu(reshape(x, [?, features * features]) * w), x: f32[?, features, features]."""
    b = Builder()
    x = b.input("x", f32[BATCH, features, features])
    w = b.param("w", np.linspace(-1, 1, features * features, dtype=np.float32))
    with b.loc("flatten"):
        flat = b.reshape(x, shape=[BATCH, features * features])
    return b.finish([b.relu(b.mul(flat, w))], ["y"])


def test_fix_dims_makes_types_and_shape_attrs_concrete():
    g = _flatten_graph()
    x = np.random.default_rng(1).standard_normal((5, 40, 40)).astype(np.float32)
    before = run(g, [x])

    fixed = fix_dims(g, {"?": 5})

    assert fixed.inputs[0].type == f32[5, 40, 40]
    assert fixed.nodes[0].attrs["shape"] == (5, 1600)
    assert all(v.type.is_static for n in fixed.nodes for v in n.outputs)
    assert fixed.outputs[0].type == f32[5, 1600]
    verify(fixed)
    after = run(fixed, [x])
    np.testing.assert_array_equal(after[0], before[0])
    w = np.linspace(-1, 1, 1600, dtype=np.float32)
    np.testing.assert_allclose(after[0], np.maximum(x.reshape(5, 1600) * w, 0), rtol=1e-6)
    with pytest.raises(ShapeError, match="input 'x'"):
        run(fixed, [np.zeros((6, 40, 40), np.float32)])


def test_fix_dims_fixes_the_regions_of_scans_within_scans():
    xs = np.random.default_rng(3).standard_normal((2, 3, 4)).astype(np.float32)

    fixed = fix_dims(nested_scan_graph("T"), {BATCH: 2, "T": 3})

    verify(fixed)
    assert "?" not in str(fixed) and "T" not in str(fixed.outputs[1].type)
    assert [v.type for v in fixed.outputs] == [f32[2], f32[2, 3, 4]]
    t, p = run(fixed, [xs])
    np.testing.assert_allclose(t, 1 + xs.sum(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_allclose(p, np.cumsum(xs, axis=2), rtol=1e-5)


def test_fix_dims_leaves_the_original_graph_alone():
    g = _flatten_graph()
    fix_dims(g, {"?": 5})
    assert g.inputs[0].type == f32[BATCH, 40, 40]
    assert g.nodes[0].attrs["shape"] == (BATCH, 1600)
    assert g.outputs[0].type == f32[BATCH, 1600]


def test_fix_dims_substitutes_only_the_named_symbols():
    b = Builder()
    x = b.input("x", f32[BATCH, "n"])
    y = b.input("y", f32[BATCH, "n"])
    g = b.finish([b.add(x, y)])
    fixed = fix_dims(g, {"n": 3, "unused": 9})
    assert [v.type for v in fixed.inputs] == [f32[BATCH, 3], f32[BATCH, 3]]
    assert fixed.outputs[0].type == f32[BATCH, 3]


@pytest.mark.parametrize("sizes, message", [
    ({"?": -1}, "size of '?' must be an int >= 0"),
    ({"?": True}, "size of '?' must be an int >= 0"),
    ({"?": "n"}, "size of '?' must be an int >= 0"),
    ({"?": 2.5}, "size of '?' must be an int >= 0"),
    ({3: 4}, "3 is not a symbolic dimension"),
])
def test_fix_dims_rejects_bad_sizes(sizes, message):
    with pytest.raises(ShapeError, match=re.escape(f"fix_dims: {message}")):
        fix_dims(_flatten_graph(), sizes)


@settings(max_examples=25, deadline=None)
@given(batch=st.integers(1, 4), features=st.integers(1, 6))
def test_fix_dims_any_batch(batch, features):
    g = _flatten_graph(features)
    fixed = fix_dims(g, {"?": np.int64(batch)})
    n = features * features
    assert fixed.nodes[0].attrs["shape"] == (batch, n)
    assert type(fixed.nodes[0].attrs["shape"][0]) is int
    assert fixed.outputs[0].type == f32[batch, n]
    x = np.random.default_rng(batch).standard_normal((batch, features, features)).astype(np.float32)
    w = np.linspace(-1, 1, n, dtype=np.float32)
    np.testing.assert_allclose(run(fixed, [x])[0], np.maximum(x.reshape(batch, n) * w, 0), rtol=1e-6)

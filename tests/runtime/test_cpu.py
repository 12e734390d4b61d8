"""The CPU backend against the reference interpreter: every op, fused patterns on random shapes,
changing batch sizes, bad inputs, the disk cache and the inspection views."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nncompile
from nncompile.ir import BATCH, Builder, ShapeError, f32, f64
from nncompile.runtime.reference import run as reference_run
from op_examples import EXAMPLES

FAST = settings(max_examples=25, deadline=None)
ODD = st.sampled_from([1, 3, 17, 257])
TOLERANCE = {np.dtype(np.float16): 1e-3, np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}


def assert_close(got, want, what=""):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype, (what, got.shape, want.shape, got.dtype, want.dtype)
    if got.dtype.kind in "biu":
        np.testing.assert_array_equal(got, want, err_msg=what)
    else:
        tol = TOLERANCE[got.dtype]
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol, err_msg=what)


def check(graph, inputs, exe=None):
    exe = exe or nncompile.compile(graph)
    got = exe(*inputs)
    got = got if isinstance(got, list) else [got]
    want = reference_run(graph, inputs)
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        assert_close(g, w, f"output {i}")
    return exe


# --- every op ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_every_op_example_compiled_matches_reference(name):
    graph, inputs = EXAMPLES[name](np.random.default_rng(0))
    exe = check(graph, inputs)
    # The same executable on another draw: the batch size changes without recompiling.
    other, more = EXAMPLES[name](np.random.default_rng(7))
    if [v.type for v in other.data_inputs] == [v.type for v in graph.data_inputs]:
        got = exe(*more)
        want = reference_run(graph, more)
        for g, w in zip(got if isinstance(got, list) else [got], want):
            assert_close(g, w)


# --- fused patterns on random shapes -------------------------------------------------------------

@FAST
@given(batch=ODD, width=ODD, seed=st.integers(0, 2**16))
def test_elementwise_chain_with_broadcasts(batch, width, seed):
    rng = np.random.default_rng(seed)
    b = Builder()
    x = b.input("x", f32[BATCH, width])
    bias = b.param("bias", rng.standard_normal(width).astype(np.float32))
    y = b.op("tanh", b.op("mul", b.op("add", x, bias), b.scalar(0.5, x)))
    z = b.op("sigmoid", b.op("sub", y, b.op("exp", b.op("neg", b.op("abs", x)))))
    graph = b.finish([z, y], ["z", "y"])
    check(graph, [rng.standard_normal((batch, width)).astype(np.float32)])


@FAST
@given(m=ODD, k=ODD, n=ODD, act=st.sampled_from(["relu", "sigmoid", "tanh"]), seed=st.integers(0, 2**16))
def test_dense_with_bias_and_activation(m, k, n, act, seed):
    rng = np.random.default_rng(seed)
    b = Builder()
    x = b.input("x", f32[BATCH, k])
    w = b.param("w", (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32))
    bias = b.param("b", rng.standard_normal(n).astype(np.float32))
    graph = b.finish([b.op(act, b.op("add", b.op("matmul", x, w), bias))], ["y"])
    check(graph, [rng.standard_normal((m, k)).astype(np.float32)])


@FAST
@given(batch=st.sampled_from([1, 3]), hw=st.sampled_from([3, 8, 17]), cin=st.sampled_from([1, 3, 17]),
       cout=st.sampled_from([1, 16, 17]), kernel=st.sampled_from([1, 3]), stride=st.sampled_from([1, 2]),
       same=st.booleans(), seed=st.integers(0, 2**16))
def test_conv_bias_relu_then_pool(batch, hw, cin, cout, kernel, stride, same, seed):
    from nncompile.ir.ops.linalg import same_pads

    rng = np.random.default_rng(seed)
    pad = same_pads(hw, kernel, stride, 1) if same else (0, 0)
    b = Builder()
    x = b.input("x", f32[BATCH, hw, hw, cin])
    w = b.param("w", rng.standard_normal((kernel, kernel, cin, cout)).astype(np.float32))
    bias = b.param("b", rng.standard_normal(cout).astype(np.float32))
    y = b.op("relu", b.op("add", b.op("conv2d", x, w, strides=(stride, stride), pads=pad + pad), bias))
    out = b.op("max_pool2d", y, window=(2, 2), strides=(2, 2)) if y.type.shape[1] >= 2 else y
    graph = b.finish([out], ["y"])
    check(graph, [rng.standard_normal((batch, hw, hw, cin)).astype(np.float32)])


@FAST
@given(shape=st.lists(ODD, min_size=1, max_size=3), data=st.data())
def test_reductions_over_any_axes(shape, data):
    rank = len(shape)
    axes = data.draw(st.lists(st.integers(0, rank - 1), min_size=1, max_size=rank, unique=True))
    op = data.draw(st.sampled_from(["reduce_sum", "reduce_mean", "reduce_max", "reduce_min"]))
    keep = data.draw(st.booleans())
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    b = Builder()
    x = b.input("x", f64[tuple(shape)])
    graph = b.finish([b.op(op, b.op("square", x), axes=axes, keepdims=keep)], ["y"])
    check(graph, [rng.standard_normal(shape)])


@FAST
@given(rows=ODD, cols=ODD, axis=st.sampled_from([0, 1, -1]), log=st.booleans(), seed=st.integers(0, 2**16))
def test_softmax_along_any_axis(rows, cols, axis, log, seed):
    rng = np.random.default_rng(seed)
    b = Builder()
    x = b.input("x", f32[rows, cols])
    graph = b.finish([b.op("log_softmax" if log else "softmax", x, axis=axis)], ["y"])
    check(graph, [(rng.standard_normal((rows, cols)) * 30).astype(np.float32)])


def test_layer_norm_pattern_fuses_and_matches():
    rng = np.random.default_rng(0)
    b = Builder()
    x = b.input("x", f32[BATCH, 257])
    mean = b.op("reduce_mean", x, axes=(-1,), keepdims=True)
    centered = b.op("sub", x, mean)
    var = b.op("reduce_mean", b.op("square", centered), axes=(-1,), keepdims=True)
    y = b.op("mul", centered, b.op("rsqrt", b.op("add", var, b.scalar(1e-3, var))))
    graph = b.finish([y], ["y"])
    exe = check(graph, [rng.standard_normal((5, 257)).astype(np.float32)])
    assert "fused" in str(exe.graph)


# --- bad input -----------------------------------------------------------------------------------

def _dense_exe():
    b = Builder()
    x = b.input("x", f32[BATCH, 4])
    w = b.param("w", np.ones((4, 2), np.float32))
    return nncompile.compile(b.finish([b.op("matmul", x, w)], ["y"]))


def test_wrong_shape_names_the_input_and_shapes():
    with pytest.raises(ShapeError, match=r"input 'x'.*expected shape \(None, 4\).*received shape \(3, 5\)"):
        _dense_exe()(np.ones((3, 5), np.float32))


def test_wrong_dtype_names_the_input():
    with pytest.raises(ShapeError, match="input 'x': expected dtype f32, received float64"):
        _dense_exe()(np.ones((3, 4)))


def test_non_contiguous_input_is_read_correctly():
    exe = _dense_exe()
    x = np.arange(24, dtype=np.float32).reshape(3, 8)[:, ::2]
    np.testing.assert_allclose(exe(x), x @ np.ones((4, 2), np.float32))


def test_gather_index_out_of_range_is_an_error_not_a_crash():
    b = Builder()
    table = b.param("table", np.arange(12, dtype=np.float32).reshape(4, 3))
    ids = b.input("ids", nncompile.ir.i32[BATCH, 2])
    exe = nncompile.compile(b.finish([b.op("gather", table, ids, allow_negative=False)], ["y"]))
    np.testing.assert_array_equal(exe(np.array([[1, 3]], np.int32)), np.arange(12, dtype=np.float32).reshape(4, 3)[[[1, 3]]])
    with pytest.raises(ShapeError, match="op 'gather'.*out of range"):
        exe(np.array([[1, 4]], np.int32))


def test_run_by_name_and_parameters_bound_by_reference():
    b = Builder()
    x = b.input("x", f32[BATCH, 4])
    w = np.ones((4, 2), np.float32)
    graph = b.finish([b.op("relu", b.op("matmul", x, b.param("w", w)))], ["y"])
    exe = nncompile.compile(graph)
    data = np.ones((2, 4), np.float32)
    np.testing.assert_array_equal(exe.run({"x": data})["y"], np.full((2, 2), 4, np.float32))
    w[...] = 2
    np.testing.assert_array_equal(exe.run({"x": data})["y"], np.full((2, 2), 8, np.float32))


# --- cache and inspection ------------------------------------------------------------------------

_PROGRAM = """
import numpy as np, nncompile
from nncompile.ir import BATCH, Builder, f32
b = Builder()
x = b.input("x", f32[BATCH, 3])
w = b.param("w", np.full((3, 2), 2, np.float32))
exe = nncompile.compile(b.finish([b.op("sigmoid", b.op("matmul", x, w))], ["y"]))
print(exe.from_cache, float(exe(np.ones((1, 3), np.float32))[0, 0]))
"""


def test_second_process_loads_compiled_code_from_the_disk_cache(tmp_path):
    env = {**os.environ, "NNCOMPILE_CACHE_DIR": str(tmp_path)}
    runs = [subprocess.run([sys.executable, "-c", _PROGRAM], env=env, capture_output=True, text=True,
                           check=True).stdout.split() for _ in range(2)]
    want = str(1 / (1 + np.exp(-6.0)))[:6]
    assert runs[0][0] == "False" and runs[1][0] == "True"
    assert runs[0][1][:6] == want and runs[1][1][:6] == want
    assert list(tmp_path.glob("*.o"))


def test_inspection_views():
    exe = _dense_exe()
    assert "define" in exe.llvm_ir() and "nncompile_entry" in exe.llvm_ir()
    b = Builder()
    x = b.input("x", f32[BATCH, 64])
    vectorized = nncompile.compile(b.finish([b.tanh(x)], ["y"])).llvm_ir(optimized=True)
    assert "<16 x float>" in vectorized or "<8 x float>" in vectorized
    assert "ret" in exe.assembly()
    table = exe.memory_plan(batch=32).table()
    assert "arena" in table and "lower bound" in table


# --- robustness ----------------------------------------------------------------------------------

def _mlp_graph(rng):
    b = Builder()
    x = b.input("x", f32[BATCH, 64])
    w0 = b.param("w0", rng.standard_normal((64, 257)).astype(np.float32) / 8)
    w1 = b.param("w1", rng.standard_normal((257, 10)).astype(np.float32) / 16)
    h = b.op("relu", b.op("matmul", x, w0))
    return b.finish([b.op("softmax", b.op("matmul", h, w1))], ["y"])


def test_concurrent_calls_from_threads_are_each_correct():
    import threading

    rng = np.random.default_rng(0)
    graph = _mlp_graph(rng)
    exe = nncompile.compile(graph)
    inputs = [rng.standard_normal((n, 64)).astype(np.float32) for n in (1, 5, 33, 200)]
    wants = [reference_run(graph, [x])[0] for x in inputs]
    errors = []

    def work(k):
        for i in range(60):
            j = (i + k) % len(inputs)
            got = exe(inputs[j])
            if not np.allclose(got, wants[j], rtol=1e-5, atol=1e-6):
                errors.append((k, i, j))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_ten_thousand_calls_do_not_grow_memory():
    exe = nncompile.compile(_mlp_graph(np.random.default_rng(1)))
    x = np.ones((8, 64), np.float32)
    for _ in range(500):
        exe(x)
    before = _rss_bytes()
    for _ in range(10_000):
        exe(x)
    assert _rss_bytes() - before < 4 << 20


def test_nan_inputs_give_the_reference_results():
    rng = np.random.default_rng(2)
    graph = _mlp_graph(rng)
    x = rng.standard_normal((4, 64)).astype(np.float32)
    x[1, 3] = np.nan
    x[2, :] = np.inf
    got = nncompile.compile(graph)(x)
    np.testing.assert_allclose(got, reference_run(graph, [x])[0], rtol=1e-5, atol=1e-6, equal_nan=True)


def test_an_op_without_lowering_names_itself_and_the_node(monkeypatch):
    from nncompile.ir import OPS

    monkeypatch.setattr(OPS["argmax"], "lower", None)
    b = Builder()
    x = b.input("x", f32[BATCH, 5])
    with b.loc("picker"):
        y = b.op("argmax", x, axis=1)
    with pytest.raises(nncompile.ir.IRError, match="node 'argmax' of 'picker'.*no CPU lowering"):
        nncompile.compile(b.finish([y], ["y"]))


def test_outputs_of_successive_calls_and_steps_are_independent_arrays():
    # Small outputs are written into the executable's own buffer and copied out: no call may
    # change an array an earlier call returned, and run_steps must not leave the buffer elsewhere.
    b = Builder()
    x = b.input("x", f32[BATCH, 3])
    g = b.finish([b.tanh(b.mul(x, x)), b.exp(x)], ["small", "other"])
    exe = nncompile.compile(g)
    rng = np.random.default_rng(4)
    first_in, second_in = rng.standard_normal((2, 5, 3), dtype=np.float32)
    first = exe(first_in)
    kept = [a.copy() for a in first]
    stepped = exe.run_steps(rng.standard_normal((4, 5, 3), dtype=np.float32))
    second = exe(second_in)
    for got, want in zip(first, kept):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(second, reference_run(g, [second_in])):
        assert_close(got, want)
    assert all(s.shape == (4, 5, 3) for s in stepped)
    assert not any(np.shares_memory(a, c) for a in first for c in second)


def test_inputs_reach_the_native_code_with_or_without_reading_the_array_objects(monkeypatch):
    # The native call reads each input's data pointer from the numpy object (PyArray_DATA's
    # field); where that field is not found, the runtime passes addresses it asks for instead.
    from nncompile.runtime import binding

    assert binding.DATA_OFFSET is not None
    b = Builder()
    x, y = b.input("x", f32[BATCH, 3]), b.input("y", f32[BATCH, 3])
    g = b.finish([b.sub(b.mul(x, y), y)], ["out"])
    rng = np.random.default_rng(6)
    xs = rng.standard_normal((2, 4, 3), dtype=np.float32)
    view = rng.standard_normal((4, 6), dtype=np.float32)[:, ::2]   # copied by the input check
    for offset in (binding.DATA_OFFSET, None):
        monkeypatch.setattr(binding, "DATA_OFFSET", offset)
        exe = nncompile.compile(g)   # the way inputs reach the code is chosen per executable
        assert (exe.native_call is None) == (offset is None)
        for first, second in ((xs[0], xs[1]), (view, xs[0])):
            assert_close(exe(first, second), first * second - second)

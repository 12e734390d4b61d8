"""The fusion pass: the groups it forms on known patterns, and that fused graphs verify, read back
from text and compute what the original computes (reference interpreter, random inputs)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nncompile
from nncompile import keras
from nncompile.ir import BATCH, Builder, Graph, f32, parse, verify
from nncompile.passes import PASSES, run_pipeline
from nncompile.passes.fusion import SMALL_CONSTANT
from nncompile.runtime.reference import run

RNG = np.random.default_rng(0)


def weights(*shape: int) -> np.ndarray:
    return (RNG.standard_normal(shape) / np.sqrt(shape[0])).astype(np.float32)


def fused(g: Graph) -> Graph:
    """The pass through the manager (verified after it), checked to read back from its text."""
    out = run_pipeline(g, ["fuse"], verify=True)
    assert parse(str(out)) == out
    return out


def layout(g: Graph) -> list:
    """Each node as its op, or for a fused node (kind, [body ops without constants], outputs)."""
    def body_ops(node):
        return [n.op for n in node.attrs["body"].nodes if n.op != "constant"]

    return [(n.attrs["kind"], body_ops(n), len(n.outputs)) if n.op == "fused" else n.op for n in g.nodes]


def assert_same_results(g: Graph, f: Graph, inputs: list[np.ndarray]) -> None:
    want, got = run(g, inputs), run(f, inputs)
    assert len(want) == len(got)
    for a, b in zip(want, got):
        assert a.dtype == b.dtype
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def data(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


# --- known patterns -------------------------------------------------------------------------------

def mlp() -> Graph:
    b = Builder()
    x = b.input("x", f32[BATCH, 784])
    with b.loc("dense"):
        h = b.relu(b.add(b.matmul(x, b.param("dense/kernel", weights(784, 128))),
                         b.param("dense/bias", weights(128))))
    with b.loc("dense_1"):
        y = b.softmax(b.add(b.matmul(h, b.param("dense_1/kernel", weights(128, 10))),
                            b.param("dense_1/bias", weights(10))))
    return b.finish([y], ["dense_1"])


def test_mlp_dense_relu_and_dense_softmax():
    g = mlp()
    f = fused(g)
    assert layout(f) == [("matmul", ["matmul", "add", "relu"], 1), ("matmul", ["matmul", "add"], 1), "softmax"]
    assert [n.loc for n in f.nodes] == ["dense", "dense_1", "dense_1"]
    assert [v.name for v in f.nodes[0].inputs] == ["x", "dense/kernel", "dense/bias"]
    assert_same_results(g, f, [data(3, 784)])


def test_conv_bias_relu_and_pool_with_epilogue():
    b = Builder()
    x = b.input("x", f32[BATCH, 8, 8, 3])
    with b.loc("conv"):
        c = b.relu(b.add(b.conv2d(x, b.param("k", weights(3, 3, 3, 4)), pads=[1, 1, 1, 1]),
                         b.param("bias", weights(4))))
    p = b.mul(b.max_pool2d(c, window=[2, 2], strides=[2, 2]), b.scalar(0.5, c))
    g = b.finish([b.reshape(p, shape=[BATCH, -1])], ["flat"])
    f = fused(g)
    assert layout(f) == [("conv2d", ["conv2d", "add", "relu"], 1), ("max_pool2d", ["max_pool2d", "mul"], 1),
                         "reshape"]
    assert [n.op for n in f.nodes[1].attrs["body"].nodes] == ["max_pool2d", "constant", "mul"]
    assert_same_results(g, f, [data(2, 8, 8, 3)])


def residual_layer_norm() -> Graph:
    """dense -> + residual -> LayerNormalization written out (mean, centre, variance, scale)."""
    b = Builder()
    x = b.input("x", f32[BATCH, 16])
    h = b.add(b.add(b.matmul(x, b.param("w", weights(16, 16))), b.param("b", weights(16))), x)
    mean = b.reduce_mean(h, axes=[1], keepdims=True)
    centred = b.sub(h, mean)
    variance = b.reduce_mean(b.square(centred), axes=[1], keepdims=True)
    inv = b.rsqrt(b.add(variance, b.scalar(1e-3, h)))
    y = b.add(b.mul(centred, b.mul(inv, b.param("gamma", weights(16)))), b.param("beta", weights(16)))
    return b.finish([y], ["y"])


def test_residual_and_layer_norm():
    g = residual_layer_norm()
    f = fused(g)
    assert layout(f) == [
        ("matmul", ["matmul", "add", "add"], 1),     # the residual add is part of the epilogue
        "reduce_mean",                               # its input is also read by the centring sub
        "sub",                                       # read by the variance and the output
        ("reduction", ["square", "reduce_mean", "add", "rsqrt"], 1),
        ("loop", ["mul", "mul", "add"], 1),
    ]
    assert_same_results(g, f, [data(5, 16)])


def test_diamond_becomes_one_loop():
    b = Builder()
    x = b.input("x", f32[BATCH, 6])
    a = b.relu(x)
    g = b.finish([b.add(b.exp(a), b.neg(a))], ["y"])
    f = fused(g)
    assert layout(f) == [("loop", ["relu", "exp", "neg", "add"], 1)]
    assert_same_results(g, f, [data(4, 6)])


def test_value_read_by_several_loops_is_computed_in_their_loop():
    b = Builder()
    x = b.input("x", f32[BATCH, 6])
    a = b.relu(b.mul(x, x))
    g = b.finish([b.exp(a), b.neg(a), a], ["e", "n", "a"])
    f = fused(g)
    assert layout(f) == [("loop", ["mul", "relu", "exp", "neg"], 3)]
    assert_same_results(g, f, [data(4, 6)])


def test_value_read_by_a_reduction_and_a_loop_heads_its_own_group():
    b = Builder()
    x = b.input("x", f32[BATCH, 6])
    a = b.relu(b.add(x, b.scalar(1.0, x)))
    g = b.finish([b.reduce_sum(b.exp(a), axes=[1]), b.sigmoid(a)], ["s", "t"])
    f = fused(g)
    assert layout(f) == [("loop", ["add", "relu"], 1), ("reduction", ["exp", "reduce_sum"], 1), "sigmoid"]
    assert_same_results(g, f, [data(4, 6)])


def test_a_reduction_keeps_its_dtype_in_its_output():
    # The reduction accumulates in its group's one output: a bool test after it runs apart.
    b = Builder()
    x = b.input("x", f32[BATCH, 7, 4])
    zero = b.scalar(0.0, x)
    counted = b.reduce_max(b.cast(b.not_equal(x, zero), dtype="f32"), axes=[-1])
    g = b.finish([b.greater(counted, zero)], ["keep"])
    f = fused(g)
    assert layout(f) == ["constant", ("reduction", ["not_equal", "cast", "reduce_max"], 1), "greater"]
    x_value = data(3, 7, 4)
    x_value[0, 2] = 0.0
    assert_same_results(g, f, [x_value])
    np.testing.assert_array_equal(nncompile.compile(g)(x_value), np.any(x_value != 0, axis=-1))


def test_no_cycle_through_an_injective_node():
    """Merging a with both its loop readers would put transpose(b) both after and before the group."""
    b = Builder()
    x = b.input("x", f32[5, 5])
    a = b.exp(x)
    bb = b.neg(a)
    g = b.finish([b.add(a, b.transpose(bb, perm=[1, 0]))], ["y"])
    f = fused(g)
    assert layout(f) == ["exp", "neg", "transpose", "add"]
    assert_same_results(g, f, [data(5, 5)])


def test_small_constants_are_copied_large_ones_are_operands():
    b = Builder()
    x = b.input("x", f32[BATCH, 4])
    small = b.constant(np.arange(4, dtype=np.float32))
    large = b.constant(np.ones((SMALL_CONSTANT + 1, 4), np.float32))
    y1 = b.relu(b.mul(x, small))
    y2 = b.exp(b.add(b.reduce_sum(x, axes=[0], keepdims=True), small))
    y3 = b.tanh(b.add(b.neg(y2), large))
    g = b.finish([y1, y3, b.concat(small, small, axis=0)], ["y1", "y3", "both"])
    f = fused(g)
    constants = [n for n in f.nodes if n.op == "constant"]
    assert sorted(n.attrs["value"].size for n in constants) == [4, 4 * (SMALL_CONSTANT + 1)]
    bodies = [n.attrs["body"] for n in f.nodes if n.op == "fused"]
    assert [sum(n.op == "constant" for n in body.nodes) for body in bodies] == [1, 1, 0]
    assert any(v.producer is not None and v.producer.op == "constant" for v in f.nodes[-2].inputs)
    assert_same_results(g, f, [data(3, 4)])


def test_fusing_twice_changes_nothing_and_the_pass_is_registered():
    assert "fuse" in PASSES
    once = fused(residual_layer_norm())
    assert fused(once) == once


def test_symbols_a_body_cannot_bind_keep_the_group_plain():
    """broadcast to [?,4] reads only a [4] vector: a loop body of it could not size its loop."""
    b = Builder()
    x = b.input("x", f32[BATCH, 4])
    v = b.input("v", f32[4])
    g = b.finish([b.relu(b.broadcast(b.exp(v), shape=[BATCH, 4])), x], ["y", "x"])
    f = fused(g)
    assert layout(f) == ["exp", "broadcast", "relu"]


def dense(b: Builder, x, kernel, bias, activation: str | None = None):
    h = b.add(b.matmul(x, kernel), bias)
    return b.op(activation, h) if activation else h


def test_two_dense_chains_meeting_in_one_node_share_no_node():
    """Siamese tower: sub(dense(a), dense(b)) with one set of weights. The sub is the sole reader
    of both chains' results; only the first chain may take it (in both, each needs the other)."""
    b = Builder()
    xa, xb = b.input("a", f32[BATCH, 4]), b.input("b", f32[BATCH, 4])
    kernel, bias = b.param("tower/kernel", weights(4, 2)), b.param("tower/bias", weights(2))
    with b.loc("tower"):
        ya, yb = dense(b, xa, kernel, bias), dense(b, xb, kernel, bias)
    with b.loc("diff"):
        g = b.finish([b.sub(ya, yb)], ["diff"])
    f = fused(g)
    assert layout(f) == [("matmul", ["matmul", "add"], 1), ("matmul", ["matmul", "add", "sub"], 1)]
    assert [v.name for v in f.nodes[1].inputs] == ["a", "tower/kernel", "tower/bias", f.nodes[0].outputs[0].name]
    assert_same_results(g, f, [data(3, 4), data(3, 4)])


def test_nested_dense_relu_towers_added_then_a_head():
    """The traced nested Keras model: head(add(relu(dense(a)), relu(dense(b))))."""
    b = Builder()
    xa, xb = b.input("a", f32[BATCH, 3]), b.input("b", f32[BATCH, 3])
    kernel, bias = b.param("inner/kernel", weights(3, 4)), b.param("inner/bias", weights(4))
    total = b.add(dense(b, xa, kernel, bias, "relu"), dense(b, xb, kernel, bias, "relu"))
    g = b.finish([dense(b, total, b.param("head/kernel", weights(4, 1)), b.param("head/bias", weights(1)))])
    f = fused(g)
    assert layout(f) == [("matmul", ["matmul", "add", "relu"], 1), ("matmul", ["matmul", "add", "relu", "add"], 1),
                         ("matmul", ["matmul", "add"], 1)]
    assert_same_results(g, f, [data(6, 3), data(6, 3)])


def test_three_conv_branches_summed_pairwise():
    """add(add(c1, c2), c3) of three conv chains: the first chain takes both adds, c2 and c3 stay
    chains of their own that feed it."""
    b = Builder()
    x = b.input("x", f32[BATCH, 6, 6, 2])
    branches = [b.relu(b.conv2d(x, b.param(f"k{i}", weights(3, 3, 2, 3)), pads=[1, 1, 1, 1]))
                for i in range(3)]
    g = b.finish([b.add(b.add(branches[0], branches[1]), branches[2])], ["y"])
    f = fused(g)
    assert sorted(layout(f)) == [("conv2d", ["conv2d", "relu"], 1)] * 2 + [
        ("conv2d", ["conv2d", "relu", "add", "add"], 1)]
    assert_same_results(g, f, [data(2, 6, 6, 2)])


def test_a_dead_node_joining_two_chains_is_not_duplicated():
    """Without DCE first, a dead sub(dense(x), dense(y)) must still appear once: chains whose
    results are never read stay plain nodes."""
    b = Builder()
    x, y = b.input("x", f32[BATCH, 4]), b.input("y", f32[BATCH, 4])
    w = b.param("w", weights(4, 4))
    b.sub(b.matmul(x, w), b.matmul(y, w))
    g = b.finish([b.exp(x)], ["e"])
    f = fused(g)
    assert sorted(layout(f)) == ["exp", "matmul", "matmul", "sub"]
    assert_same_results(g, f, [data(2, 4), data(2, 4)])


# --- traced Keras models --------------------------------------------------------------------------

def randomized(model: keras.Model) -> keras.Model:
    for layer in model.layers:
        names = [w.name for w in layer.weights]
        layer.set_weights([RNG.uniform(-1, 1, w.shape).astype(np.float32) / np.sqrt(w.shape[0])
                           + np.float32("variance" in name or "gamma" in name)
                           for name, w in zip(names, layer.get_weights())])
    return model


def test_traced_cnn():
    L = keras.layers
    model = randomized(keras.Sequential([
        keras.Input(shape=(12, 12, 1)), L.Conv2D(4, 3, activation="relu", padding="same"),
        L.BatchNormalization(), L.MaxPooling2D(2), L.Conv2D(6, 3, activation="relu"),
        L.AveragePooling2D(2), L.Flatten(), L.Dense(16, activation="relu"), L.LayerNormalization(),
        L.Dense(10, activation="softmax")]))
    g = nncompile.trace(model)
    f = fused(g)
    kinds = [k[0] for k in layout(f) if isinstance(k, tuple)]
    assert kinds.count("conv2d") == 2 and kinds.count("matmul") == 2 and "reduction" in kinds
    assert len(f.nodes) < len(g.nodes) / 2
    assert_same_results(g, f, [data(3, 12, 12, 1)])


def test_traced_functional_two_input_model():
    L = keras.layers
    a, c = keras.Input(shape=(4,), name="a"), keras.Input(shape=(3,), name="c")
    merged = L.Concatenate()([L.Dense(5, activation="relu")(a), L.Dense(5, activation="tanh")(c)])
    out1 = L.Dense(2)(merged)
    out2 = L.Dense(1, activation="sigmoid")(L.Add()([merged, L.Dense(10)(merged)]))
    model = randomized(keras.Model([a, c], [out1, out2]))
    g = nncompile.trace(model)
    f = fused(g)
    assert layout(f).count("concat") == 1
    assert all(k[0] == "matmul" for k in layout(f) if isinstance(k, tuple))
    assert_same_results(g, f, [data(4, 4), data(4, 3)])


# --- random graphs --------------------------------------------------------------------------------

UNARY = ["relu", "exp", "neg", "tanh", "square", "sigmoid"]
BINARY = ["add", "mul", "sub", "maximum"]


@st.composite
def random_graphs(draw) -> Graph:
    """Random DAGs over [?,4], [?,1] and [4] values: elementwise ops, reductions, broadcasts, dense
    chains (matmul + bias, maybe relu) on two shared kernels, pairs of such chains meeting in one
    binary op (siamese towers), and transposes, with values shared between consumers, joins of
    recent values and several outputs."""
    b = Builder()
    pool = [b.input("x", f32[BATCH, 4]), b.input("y", f32[BATCH, 4]), b.input("v", f32[4])]
    kernels = [b.param(f"w{i}", weights(4, 4)) for i in range(2)]
    bias = b.param("bias", weights(4))

    def pick(recent: bool = False):
        return pool[draw(st.integers(max(0, len(pool) - 3) if recent else 0, len(pool) - 1))]

    for step in range(draw(st.integers(2, 16))):
        choice = draw(st.sampled_from(["unary", "binary", "join", "reduce", "dense", "towers", "constant",
                                       "broadcast", "swap"]))
        value = pick(recent=choice == "join")
        if choice == "unary":
            pool.append(b.op(draw(st.sampled_from(UNARY)), value))
        elif choice in ("binary", "join"):
            other = pick(recent=choice == "join")
            if {value.type.shape, other.type.shape} == {(BATCH, 1), (4,)}:
                continue
            pool.append(b.op(draw(st.sampled_from(BINARY)), value, other))
        elif choice == "reduce" and value.type.rank == 2 and value.type.shape[1] == 4:
            pool.append(b.op(draw(st.sampled_from(["reduce_sum", "reduce_max", "reduce_mean"])), value,
                             axes=[1], keepdims=True))
        elif choice == "dense" and value.type.shape == (BATCH, 4):
            activation = draw(st.sampled_from([None, "relu"]))
            pool.append(dense(b, value, kernels[draw(st.integers(0, 1))], bias, activation))
        elif choice == "towers" and value.type.shape == (BATCH, 4):
            other = pick()
            if other.type.shape == (BATCH, 4):
                towers = [dense(b, x, kernels[0], bias, draw(st.sampled_from([None, "relu"]))) for x in (value, other)]
                pool.append(b.op(draw(st.sampled_from(BINARY)), *towers))
        elif choice == "constant":
            pool.append(b.add(value, b.constant(np.float32(step))))
        elif choice == "broadcast" and value.type.shape == (BATCH, 1):
            pool.append(b.broadcast(value, shape=[BATCH, 4]))
        elif choice == "swap" and value.type.shape == (BATCH, 4):
            pool.append(b.reshape(b.transpose(b.reshape(value, shape=[BATCH, 2, 2]), perm=[0, 2, 1]),
                                  shape=[BATCH, 4]))
    chosen = draw(st.lists(st.integers(0, len(pool) - 1), max_size=3, unique=True))
    outputs = [pool[-1]] + [pool[i] for i in chosen if pool[i] is not pool[-1]]
    return b.finish(outputs)


@settings(max_examples=100, deadline=None)
@given(random_graphs(), st.integers(1, 4))
def test_random_graphs_fuse_to_equal_results(g, batch):
    verify(g)
    f = fused(g)
    inputs = [data(batch, 4) * 0.5, data(batch, 4) * 0.5, data(4) * 0.5]
    assert_same_results(g, f, inputs)
    assert fused(f) == f


def test_weight_gradient_of_a_dense_on_sequences_is_one_product_over_all_rows():
    """sum over the batch of x_b^T @ g_b (Dense on (batch, steps, features) inputs, backward):
    the matmul and its reduce_sum form one fused node, compiled as one product."""
    b = Builder()
    x, g = b.input("x", f32[BATCH, 5, 3]), b.input("g", f32[BATCH, 5, 4])
    graph = b.finish([b.reduce_sum(b.matmul(x, g, transpose_a=True), axes=[0])], ["dw"])
    f = fused(graph)
    assert layout(f) == [("matmul", ["matmul", "reduce_sum"], 1)]
    xs, gs = data(6, 5, 3), data(6, 5, 4)
    assert_same_results(graph, f, [xs, gs])
    got = nncompile.compile(graph)(xs, gs)
    np.testing.assert_allclose(got, np.einsum("btf,btn->fn", xs, gs), rtol=1e-5, atol=1e-5)


# --- concats stored by the loops computing their pieces ----------------------------------------------

def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def test_a_concat_of_loop_results_is_stored_by_their_loop():
    """The gate gradients of a recurrent cell: loops of one shape whose results meet in a concat
    become one loop that writes each piece at its offset; a piece that is an operand is copied."""
    b = Builder()
    x, y = b.input("x", f32[BATCH, 6]), b.input("y", f32[BATCH, 6])
    t = b.tanh(x)
    g = b.finish([b.concat(b.sigmoid(x), b.mul(t, y), y, axis=1), b.neg(t)], ["gates", "n"])
    f = fused(g)
    assert layout(f) == [("loop", ["tanh", "sigmoid", "mul", "concat", "neg"], 2)]
    xs, ys = data(5, 6), data(5, 6)
    assert_same_results(g, f, [xs, ys])
    gates, n = nncompile.compile(g)(xs, ys)
    np.testing.assert_allclose(gates, np.concatenate([_sigmoid(xs), np.tanh(xs) * ys, ys], axis=1),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(n, -np.tanh(xs), rtol=1e-5, atol=1e-6)


def test_a_concat_along_a_leading_static_axis_under_a_symbolic_one():
    b = Builder()
    x = b.input("x", f32[3, BATCH, 4])
    g = b.finish([b.concat(b.exp(x), b.relu(x), axis=0)], ["y"])
    f = fused(g)
    assert layout(f) == [("loop", ["exp", "relu", "concat"], 1)]
    xs = data(3, 7, 4)
    got = nncompile.compile(g)(xs)
    np.testing.assert_allclose(got, np.concatenate([np.exp(xs), np.maximum(xs, 0)], axis=0), rtol=1e-5)


@pytest.mark.parametrize("starts", [(48, 0, 32, 16), (1, 0)])
def test_a_concat_is_not_written_over_the_product_it_slices(starts):
    """The loop reads gates sliced from a product that dies there and stores a concat of the same
    shape: the concat gets memory of its own (a piece stored at another offset than the slice it
    came from would overwrite columns still to be read: the second case)."""
    width = 64 // len(starts)
    b = Builder()
    x = b.input("x", f32[BATCH, 8])
    w, v = weights(8, 64), weights(64, 3)
    z = b.matmul(x, b.param("w", w))
    pieces = [b.slice(z, axes=[1], starts=[s], ends=[s + width], steps=[1]) for s in starts]
    g = b.finish([b.matmul(b.concat(*(b.tanh(p) for p in pieces), axis=1), b.param("v", v))], ["y"])
    exe = nncompile.compile(g)
    loop = exe.graph.nodes[1]
    assert loop.op == "fused" and loop.attrs["kind"] == "loop"
    assert exe.memory_plan(batch=9).inplace_of == {}
    xs = data(9, 8)
    zs = xs @ w
    want = np.concatenate([np.tanh(zs[:, s:s + width]) for s in starts], axis=1)
    np.testing.assert_allclose(exe(xs), want @ v, rtol=1e-4, atol=1e-5)


def test_a_loop_that_slices_a_stored_concat_does_not_join_it():
    b = Builder()
    x, y = b.input("x", f32[BATCH, 4]), b.input("y", f32[BATCH, 4])
    joined = b.concat(b.tanh(x), b.exp(y), axis=1)
    g = b.finish([b.relu(b.slice(joined, axes=[1], starts=[2], ends=[6], steps=[1]))], ["out"])
    f = fused(g)
    assert layout(f) == [("loop", ["tanh", "exp", "concat"], 1), ("loop", ["slice", "relu"], 1)]
    xs, ys = data(3, 4), data(3, 4)
    want = np.maximum(np.concatenate([np.tanh(xs), np.exp(ys)], axis=1)[:, 2:6], 0)
    np.testing.assert_allclose(nncompile.compile(g)(xs, ys), want, rtol=1e-5, atol=1e-6)


def test_a_concat_of_values_that_are_not_loops_stays_plain():
    b = Builder()
    x, y = b.input("x", f32[BATCH, 6]), b.input("y", f32[BATCH, 6])
    g = b.finish([b.concat(x, y, axis=1)], ["y"])
    assert layout(fused(g)) == ["concat"]

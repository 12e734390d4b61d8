"""Autodiff: every VJP against central finite differences in float64 on the reference
interpreter, broadcasting and the symbolic batch, the walk's rules (joins, zeros, pruning,
errors), and compiled gradients against the reference ones."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nncompile
from nncompile.ir import BATCH, Builder, IRError, TensorType, f32, f64, i32, i64, verify
from nncompile.ir.ops.shape import SLICE_END
from nncompile.passes.autodiff import gradients
from nncompile.passes.dce import dce
from nncompile.runtime.reference import run

FEW = settings(max_examples=12, deadline=None)
STEP = 1e-6
BATCH_SIZE = 3


def _declared(name: str, array: np.ndarray, batched: set[str]) -> TensorType:
    dtype = {np.dtype(np.float64): f64, np.dtype(np.float32): f32, np.dtype(np.int32): i32,
             np.dtype(np.int64): i64}[array.dtype]
    shape = ((BATCH,) + array.shape[1:]) if name in batched else array.shape
    return TensorType(dtype, shape)


def _forward(build, arrays: dict, batched: set[str], with_loss: bool):
    """A graph of build's output, or of sum(cotangent * output) with the cotangent an input."""
    b = Builder()
    values = {name: b.input(name, _declared(name, a, batched)) for name, a in arrays.items()}
    out = build(b, values)
    if not with_loss:
        return b, values, out
    weights = b.input("cotangent", out.type)
    loss = b.reduce_sum(b.mul(weights, out), axes=list(range(out.type.rank)))
    return b, values, loss


def check_gradients(build, arrays: dict[str, np.ndarray], batched: set[str] = frozenset(),
                    seed: int = 0, samples: int = 24) -> list[np.ndarray]:
    """gradients() of sum(r * build(inputs)) w.r.t. every float input, on the reference
    interpreter, against (f(x + h) - f(x - h)) / 2h at up to `samples` elements of each input."""
    rng = np.random.default_rng(seed)
    arrays = {name: np.array(a) for name, a in arrays.items()}
    b, _, out = _forward(build, arrays, batched, with_loss=False)
    shape = run(b.finish([out]), list(arrays.values()))[0].shape
    cotangent = rng.standard_normal(shape)
    feed = [*arrays.values(), cotangent]

    b, values, loss = _forward(build, arrays, batched, with_loss=True)
    names = [n for n, a in arrays.items() if a.dtype.kind == "f"]
    grads = gradients(b.graph, loss, [values[n] for n in names])
    graph = b.finish([loss, *grads])
    verify(graph)
    assert len(dce(graph.copy()).nodes) == len(graph.nodes), "gradients() built unused nodes"
    for value, name in zip(grads, names):
        assert value.type == values[name].type
    analytic = run(graph, feed)[1:]

    fb, _, floss = _forward(build, arrays, batched, with_loss=True)
    forward = fb.finish([floss])
    for name, got in zip(names, analytic):
        array = arrays[name]
        picks = rng.permutation(array.size)[:samples]
        numeric = []
        for flat in picks:
            values_at = []
            for sign in (1, -1):
                moved = array.copy()
                moved.flat[flat] += sign * STEP
                values_at.append(run(forward, [moved if n == name else a for n, a in arrays.items()]
                                     + [cotangent])[0])
            numeric.append((values_at[0] - values_at[1]) / (2 * STEP))
        np.testing.assert_allclose(got.reshape(-1)[picks], numeric, rtol=1e-5, atol=1e-6,
                                   err_msg=f"gradient w.r.t. {name!r}")
    return analytic


def normal(rng, *shape):
    return rng.standard_normal(shape)


def away_from_zero(rng, *shape):
    return rng.uniform(0.2, 1.5, shape) * rng.choice([-1, 1], shape)


def positive(rng, *shape):
    return rng.uniform(0.3, 3.0, shape)


def away_from_integers(rng, *shape):
    return rng.integers(-3, 3, shape) + rng.uniform(0.1, 0.9, shape)


# --- elementwise --------------------------------------------------------------------------------

UNARY = {
    "neg": normal, "abs": away_from_zero, "sign": away_from_zero, "exp": normal, "expm1": normal,
    "log": positive, "log1p": positive, "sqrt": positive, "rsqrt": positive, "reciprocal": positive,
    "square": normal, "tanh": normal, "sigmoid": normal, "relu": away_from_zero, "erf": normal,
    "sin": normal, "cos": normal, "atan": normal, "floor": away_from_integers,
    "ceil": away_from_integers, "round": away_from_integers,
}


@pytest.mark.parametrize("op", sorted(UNARY))
def test_unary_vjp(op):
    rng = np.random.default_rng(1)
    check_gradients(lambda b, v: b.op(op, v["x"]), {"x": UNARY[op](rng, BATCH_SIZE, 3, 4)}, {"x"})


BINARY = {"add": (normal, normal), "sub": (normal, normal), "mul": (normal, normal),
          "div": (normal, away_from_zero), "pow": (positive, normal), "fmod": (normal, away_from_zero),
          "maximum": (normal, normal), "minimum": (normal, normal)}


@pytest.mark.parametrize("y_shape", [(4,), (3, 1), (), (BATCH_SIZE, 3, 4)], ids=str)
@pytest.mark.parametrize("op", sorted(BINARY))
def test_binary_vjp_with_broadcasting(op, y_shape):
    rng = np.random.default_rng(2)
    sample_x, sample_y = BINARY[op]
    arrays = {"x": sample_x(rng, BATCH_SIZE, 3, 4), "y": sample_y(rng, *y_shape)}
    check_gradients(lambda b, v: b.op(op, v["x"], v["y"]), arrays, {"x", "y"} if len(y_shape) == 3 else {"x"})


def test_binary_vjp_where_the_batch_side_broadcasts():
    """x [?,1,4] against y [3,1]: both inputs are broadcast, along different axes."""
    rng = np.random.default_rng(3)
    check_gradients(lambda b, v: b.mul(b.sub(v["x"], v["y"]), b.exp(v["y"])),
                    {"x": normal(rng, BATCH_SIZE, 1, 4), "y": normal(rng, 3, 1)}, {"x"})


def test_select_vjp_skips_the_condition():
    rng = np.random.default_rng(4)
    check_gradients(lambda b, v: b.select(b.greater(v["c"], b.scalar(0.0, v["c"])), v["x"], v["y"]),
                    {"c": normal(rng, BATCH_SIZE, 4), "x": normal(rng, BATCH_SIZE, 4), "y": normal(rng, 4)},
                    {"c", "x"})


def test_cast_vjp_casts_the_cotangent_back():
    b = Builder()
    x = b.input("x", f32[BATCH, 4])
    r = b.input("r", f64[BATCH, 4])
    loss = b.reduce_sum(b.mul(b.cast(x, dtype="f64"), r), axes=[0, 1])
    (dx,) = gradients(b.graph, loss, [x])
    rng = np.random.default_rng(5)
    r_value = rng.standard_normal((2, 4))
    got = run(b.finish([dx]), [rng.standard_normal((2, 4)).astype(np.float32), r_value])[0]
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, r_value.astype(np.float32))


# --- reductions and softmax -----------------------------------------------------------------------

@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axes", [[0], [1, 2], [-1], [0, 1, 2]], ids=str)
@pytest.mark.parametrize("op", ["reduce_sum", "reduce_mean", "reduce_max", "reduce_min", "reduce_prod"])
def test_reduction_vjp(op, axes, keepdims):
    rng = np.random.default_rng(6)
    x = positive(rng, BATCH_SIZE, 3, 4) if op == "reduce_prod" else normal(rng, BATCH_SIZE, 3, 4)
    check_gradients(lambda b, v: b.op(op, v["x"], axes=axes, keepdims=keepdims), {"x": x}, {"x"})


def test_prod_vjp_is_exact_at_zeros():
    """d prod / d x_i is the product of the others: nonzero at a lone zero, 0 with two zeros."""
    x = np.array([[2.0, 0.0, 3.0], [0.0, 5.0, 0.0], [1.5, 2.0, 4.0]])
    b = Builder()
    xv = b.input("x", f64[3, 3])
    (dx,) = gradients(b.graph, b.reduce_sum(b.reduce_prod(xv, axes=[1]), axes=[0]), [xv])
    got = run(b.finish([dx]), [x])[0]
    want = np.array([[np.prod(np.delete(row, i)) for i in range(3)] for row in x])
    np.testing.assert_allclose(got, want)


def test_max_vjp_shares_ties_equally():
    x = np.array([[1.0, 3.0, 3.0, 2.0], [5.0, 5.0, 5.0, 5.0]])
    b = Builder()
    xv = b.input("x", f64[2, 4])
    (dx,) = gradients(b.graph, b.reduce_sum(b.reduce_max(xv, axes=[1]), axes=[0]), [xv])
    got = run(b.finish([dx]), [x])[0]
    np.testing.assert_allclose(got, [[0, 0.5, 0.5, 0], [0.25, 0.25, 0.25, 0.25]])


@pytest.mark.parametrize("axis", [-1, 1, 0])
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_softmax_vjp(op, axis):
    rng = np.random.default_rng(7)
    check_gradients(lambda b, v: b.op(op, v["x"], axis=axis), {"x": normal(rng, BATCH_SIZE, 3, 5) * 3}, {"x"})


# --- matmul, conv2d, pooling ----------------------------------------------------------------------

@pytest.mark.parametrize("ta, tb", [(False, False), (True, False), (False, True), (True, True)])
def test_matmul_vjp_all_transposes(ta, tb):
    rng = np.random.default_rng(8)
    a = normal(rng, BATCH_SIZE, 4, 3) if ta else normal(rng, BATCH_SIZE, 3, 4)
    w = normal(rng, 5, 4) if tb else normal(rng, 4, 5)
    check_gradients(lambda b, v: b.matmul(v["a"], v["w"], transpose_a=ta, transpose_b=tb),
                    {"a": a, "w": w}, {"a"})


def test_matmul_vjp_broadcast_batch_axes():
    """a [?,1,3,4] @ w [2,4,5]: the batch axes broadcast to [?,2]; both sides sum theirs away."""
    rng = np.random.default_rng(9)
    check_gradients(lambda b, v: b.matmul(v["a"], v["w"]),
                    {"a": normal(rng, BATCH_SIZE, 1, 3, 4), "w": normal(rng, 2, 4, 5)}, {"a"})


@FEW
@given(stride=st.sampled_from([(1, 1), (2, 1), (2, 3)]), dilation=st.sampled_from([(1, 1), (2, 1)]),
       pads=st.sampled_from([(0, 0, 0, 0), (1, 1, 1, 1), (2, 0, 0, 1)]), groups=st.sampled_from([1, 2]),
       size=st.sampled_from([(5, 6), (7, 3)]), seed=st.integers(0, 2**16))
def test_conv2d_vjp(stride, dilation, pads, groups, size, seed):
    rng = np.random.default_rng(seed)
    arrays = {"x": normal(rng, 2, *size, 2 * groups), "w": normal(rng, 3, 2, 2, 2 * groups)}
    check_gradients(lambda b, v: b.conv2d(v["x"], v["w"], strides=stride, pads=pads, dilations=dilation,
                                          groups=groups), arrays, {"x"}, seed=seed, samples=12)


@FEW
@given(stride=st.sampled_from([(1, 1), (2, 1), (2, 3)]), dilation=st.sampled_from([(1, 1), (2, 1)]),
       pads=st.sampled_from([(0, 0, 0, 0), (1, 1, 1, 1), (2, 0, 0, 1)]), groups=st.sampled_from([1, 2]),
       seed=st.integers(0, 2**16))
def test_conv2d_grad_input_vjp(stride, dilation, pads, groups, seed):
    """The transposed convolution of the ConvTranspose layers: back through dy and the filter."""
    rng = np.random.default_rng(seed)
    size = (7, 6)
    w = normal(rng, 3, 2, 2, 2 * groups)
    out = [(size[i] + pads[2 * i] + pads[2 * i + 1] - (w.shape[i] - 1) * dilation[i] - 1) // stride[i] + 1
           for i in range(2)]
    arrays = {"dy": normal(rng, 2, *out, 2 * groups), "w": w}
    check_gradients(lambda b, v: b.op("conv2d_grad_input", v["dy"], v["w"], input_hw=size,
                                      strides=stride, pads=pads, dilations=dilation, groups=groups),
                    arrays, {"dy"}, seed=seed, samples=12)


@FEW
@given(op=st.sampled_from(["max_pool2d", "avg_pool2d"]), window=st.sampled_from([(2, 2), (3, 2)]),
       stride=st.sampled_from([(1, 1), (2, 2), (1, 3)]), pads=st.sampled_from([(0, 0, 0, 0), (1, 1, 1, 0)]),
       seed=st.integers(0, 2**16))
def test_pool2d_vjp(op, window, stride, pads, seed):
    rng = np.random.default_rng(seed)
    check_gradients(lambda b, v: b.op(op, v["x"], window=window, strides=stride, pads=pads),
                    {"x": normal(rng, BATCH_SIZE, 5, 6, 2)}, {"x"}, seed=seed, samples=16)


# --- data movement ----------------------------------------------------------------------------------

def test_reshape_transpose_broadcast_vjps():
    rng = np.random.default_rng(10)

    def build(b, v):
        flat = b.reshape(v["x"], shape=[BATCH, 12])
        swapped = b.transpose(b.reshape(flat, shape=[BATCH, 4, 3]), perm=[2, 0, 1])
        wide = b.broadcast(v["bias"], shape=[3, BATCH, 4])
        return b.mul(swapped, wide)

    check_gradients(build, {"x": normal(rng, BATCH_SIZE, 3, 4), "bias": normal(rng, 1, 1, 4)}, {"x"})


def test_concat_pad_vjps():
    rng = np.random.default_rng(11)

    def build(b, v):
        joined = b.concat(v["x"], v["y"], v["x"], axis=1)
        return b.pad(joined, pads=[0, 0, 2, 1, 1, 3], value=2.0)

    check_gradients(build, {"x": normal(rng, BATCH_SIZE, 2, 3), "y": normal(rng, BATCH_SIZE, 4, 3)}, {"x", "y"})


@FEW
@given(start=st.integers(-9, 9), end=st.integers(-12, 12), step=st.sampled_from([1, 2, 3, -1, -2, -4]),
       seed=st.integers(0, 2**16))
def test_slice_vjp(start, end, step, seed):
    """Any start/end/step on one axis (empty slices included), a fixed strided one on another."""
    rng = np.random.default_rng(seed)
    check_gradients(lambda b, v: b.slice(v["x"], starts=[0, start, 1], ends=[SLICE_END, end, 5],
                                         axes=[0, 1, 2], steps=[1, step, 3]),
                    {"x": normal(rng, BATCH_SIZE, 9, 6)}, {"x"}, seed=seed, samples=12)


def test_vjp_of_a_symbolic_axis_reversed_whole():
    rng = np.random.default_rng(4)
    check_gradients(lambda b, v: b.mul(b.slice(v["x"], starts=[-1], ends=[-SLICE_END], axes=[0], steps=[-1]),
                                       v["w"]),
                    {"x": normal(rng, BATCH_SIZE, 4), "w": normal(rng, BATCH_SIZE, 4)}, {"x", "w"})


@pytest.mark.parametrize("perm", [[1, 0, 2, 3], [2, 0, 1, 3], [1, 2, 0, 3], [0, 1, 3, 2]])
def test_gather_vjp_through_a_transpose_of_its_index_axes(perm):
    """Rows gathered by a 3-D index array, then transposed: when the transpose only reorders the
    index axes, the gradient scatters the untransposed cotangent by transposed indices (any
    permutation, not only a swap); a transpose that moves the row axis is left as it is."""
    rng = np.random.default_rng(5)
    ids = rng.integers(0, 4, (2, 3, 2)).astype(np.int32)
    check_gradients(lambda b, v: b.transpose(b.gather(v["table"], v["ids"]), perm=perm),
                    {"table": normal(rng, 4, 5), "ids": ids})
    b = Builder()
    table, index = b.input("table", f32[4, 5]), b.input("ids", i32[2, 3, 2])
    out = b.transpose(b.gather(table, index), perm=perm)
    loss = b.reduce_sum(b.mul(out, b.input("r", out.type)), axes=[0, 1, 2, 3])
    (grad,) = gradients(b.graph, loss, [table])
    updates = grad.producer.inputs[1]
    assert (updates.producer.op == "transpose") == (perm[3] != 3)


def test_gather_vjp_adds_repeated_rows():
    rng = np.random.default_rng(12)
    ids = np.array([[1, 3, 1], [0, -1, 1], [4, 4, 4]], np.int32)
    check_gradients(lambda b, v: b.gather(v["table"], v["ids"]),
                    {"table": normal(rng, 5, 4), "ids": ids}, {"ids"})
    check_gradients(lambda b, v: b.gather(v["x"], b.constant(np.array([[2, 0], [2, 2]], np.int64)), axis=1),
                    {"x": normal(rng, BATCH_SIZE, 3)}, {"x"})


# --- the walk -----------------------------------------------------------------------------------

def test_joins_sum_and_wrt_may_be_intermediate():
    """x read three times; h = exp(x) is both a wrt and on the way to x."""
    rng = np.random.default_rng(13)
    b = Builder()
    x = b.input("x", f64[BATCH, 3])
    h = b.exp(x)
    loss = b.reduce_sum(b.add(b.mul(x, h), x), axes=[0, 1])
    dx, dh = gradients(b.graph, loss, [x, h])
    value = rng.standard_normal((2, 3))
    got_dx, got_dh = run(b.finish([dx, dh]), [value])
    np.testing.assert_allclose(got_dh, value)
    np.testing.assert_allclose(got_dx, np.exp(value) * (1 + value) + 1)


def test_unreachable_wrt_gets_zeros_and_integer_paths_stop():
    b = Builder()
    x = b.input("x", f32[BATCH, 3])
    w = b.param("w", np.ones((3,), np.float32))
    unused = b.param("unused", np.ones((2, 2), np.float32))
    picked = b.argmax(b.mul(x, w), axis=1)    # an integer result: no gradient flows through it
    loss = b.reduce_sum(b.add(b.cast(picked, dtype="f32"), b.reduce_sum(x, axes=[1])), axes=[0])
    dw, du, dx = gradients(b.graph, loss, [w, unused, x])
    got = run(b.finish([dw, du, dx]), [np.arange(6, dtype=np.float32).reshape(2, 3)])
    np.testing.assert_array_equal(got[0], np.zeros(3))
    np.testing.assert_array_equal(got[1], np.zeros((2, 2)))
    np.testing.assert_array_equal(got[2], np.ones((2, 3)))


def test_gradient_of_the_loss_itself_is_one():
    b = Builder()
    x = b.input("x", f32[()])
    (dx,) = gradients(b.graph, x, [x])
    assert run(b.finish([dx]), [np.float32(4.0)])[0] == 1.0


def test_only_needed_cotangents_are_built():
    """A dense layer on data: no gradient of the data input (no matmul for it) is left behind."""
    b = Builder()
    x = b.input("x", f32[BATCH, 4])
    w = b.param("w", np.ones((4, 2), np.float32))
    before = len(b.graph.nodes)
    gradients(b.graph, b.reduce_mean(b.matmul(x, w), axes=[0, 1]), [w])
    added = [n.op for n in b.graph.nodes[before + 2:]]
    assert added.count("matmul") == 1


def test_backward_nodes_carry_the_forward_loc():
    b = Builder()
    x = b.input("x", f32[BATCH, 4])
    with b.loc("dense"):
        y = b.tanh(x)
    before = len(b.graph.nodes)
    gradients(b.graph, b.reduce_sum(y, axes=[0, 1]), [x])
    assert "dense.grad" in {n.loc for n in b.graph.nodes[before:]}


@pytest.mark.parametrize("case, message", [
    ("vector_loss", "loss must be a float scalar"),
    ("int_wrt", "only float values have gradients"),
    ("foreign", "is not a value of graph"),
    ("no_vjp", "has no VJP"),
])
def test_errors_name_the_problem(case, message):
    b = Builder()
    x = b.input("x", f32[BATCH, 4])
    ids = b.input("ids", i32[BATCH])
    loss = b.reduce_sum(x, axes=[0, 1])
    other = Builder().input("y", f32[4])
    args = {"vector_loss": (b.reduce_sum(x, axes=[1]), [x]), "int_wrt": (loss, [ids]),
            "foreign": (loss, [other]),
            "no_vjp": (b.reduce_sum(b.op("avg_pool2d_grad", b.reshape(x, shape=[BATCH, 2, 2, 1]), window=(2, 2),
                                         strides=(2, 2), pads=(0, 0, 0, 0), input_hw=(4, 4)), axes=[0, 1, 2, 3]),
                       [x])}[case]
    with pytest.raises(IRError, match=message):
        gradients(b.graph, *args)


# --- compiled gradients equal the reference ones ---------------------------------------------------

def _training_graph(kind: str, rng: np.random.Generator):
    b = Builder()
    if kind == "mlp":
        x = b.input("x", f32[BATCH, 6])
        labels = b.input("labels", f32[BATCH, 4])
        w0, b0 = b.param("w0", rng.standard_normal((6, 8)).astype(np.float32)), b.param("b0", np.zeros(8, np.float32))
        w1, b1 = b.param("w1", rng.standard_normal((8, 4)).astype(np.float32)), b.param("b1", np.zeros(4, np.float32))
        h = b.relu(b.add(b.matmul(x, w0), b0))
        logp = b.log_softmax(b.add(b.matmul(h, w1), b1))
        loss = b.neg(b.reduce_mean(b.reduce_sum(b.mul(labels, logp), axes=[1]), axes=[0]))
        params = [w0, b0, w1, b1]
        feed = lambda n: [rng.standard_normal((n, 6)).astype(np.float32),  # noqa: E731
                          np.eye(4, dtype=np.float32)[rng.integers(0, 4, n)]]
    elif kind == "cnn":
        x = b.input("x", f32[BATCH, 9, 8, 3])
        k0 = b.param("k0", (rng.standard_normal((3, 3, 3, 4)) * 0.3).astype(np.float32))
        k1 = b.param("k1", (rng.standard_normal((3, 2, 2, 4)) * 0.3).astype(np.float32))
        w = b.param("w", (rng.standard_normal((24, 2)) * 0.3).astype(np.float32))
        h = b.relu(b.conv2d(x, k0, pads=[1, 1, 1, 1]))
        h = b.max_pool2d(h, window=[2, 2], strides=[2, 2], pads=[1, 0, 0, 0])
        h = b.tanh(b.conv2d(h, k1, strides=[2, 1], pads=[0, 1, 1, 0], groups=2))
        h = b.avg_pool2d(h, window=[2, 2], strides=[1, 1], pads=[0, 1, 0, 0])
        logits = b.matmul(b.reshape(h, shape=[BATCH, 24]), w)
        loss = b.reduce_mean(b.square(logits), axes=[0, 1])
        params = [k0, k1, w]
        feed = lambda n: [rng.standard_normal((n, 9, 8, 3)).astype(np.float32)]  # noqa: E731
    else:
        ids = b.input("ids", i32[BATCH, 5])
        table = b.param("table", rng.standard_normal((11, 4)).astype(np.float32))
        w = b.param("w", rng.standard_normal((4, 1)).astype(np.float32))
        pooled = b.reduce_mean(b.gather(table, ids), axes=[1])
        loss = b.reduce_mean(b.sigmoid(b.matmul(pooled, w)), axes=[0, 1])
        params = [table, w]
        feed = lambda n: [rng.integers(0, 11, (n, 5)).astype(np.int32)]  # noqa: E731
    grads = gradients(b.graph, loss, params)
    return b.finish([loss, *grads]), feed


@pytest.mark.parametrize("kind", ["mlp", "cnn", "embedding"])
def test_compiled_gradients_match_reference(kind):
    rng = np.random.default_rng(14)
    graph, feed = _training_graph(kind, rng)
    exe = nncompile.compile(graph)
    for batch in (1, 17):
        inputs = feed(batch)
        for got, want in zip(exe(*inputs), run(graph, inputs)):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)

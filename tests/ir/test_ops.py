"""The op table: every op against independent numpy, shape rules on random shapes, and errors."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from nncompile.ir import BATCH, OPS, Builder, Fusion, ShapeError, f32, f64, i32, i64
from nncompile.ir.dtypes import bool_
from nncompile.ir.ops.linalg import same_pads
from nncompile.ir.ops.shape import SLICE_END
from nncompile.runtime.reference import run
from op_examples import EXAMPLES, NUMPY, conv2d_loops, pool2d_loops, window_max, window_mean

FAST = settings(max_examples=60, deadline=None)
TOLERANCE = {np.dtype(np.float16): 1e-3, np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-10}


def _assert_matches(got: np.ndarray, want, what: str) -> None:
    want = np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    if got.dtype.kind in "biu":
        np.testing.assert_array_equal(got, want.astype(got.dtype), err_msg=what)
    else:
        tol = TOLERANCE[got.dtype]
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol, err_msg=what)


# --- every example against its numpy twin ---------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_reference_matches_numpy(name, seed):
    graph, inputs = EXAMPLES[name](np.random.default_rng(seed))
    got = run(graph, inputs)
    want = NUMPY[name]([x.copy() for x in inputs], {k: v.copy() for k, v in graph.params.items()})
    assert len(got) == len(want) == len(graph.outputs)
    for value, array, expected, out in zip(graph.outputs, got, want, graph.output_names):
        assert array.dtype == value.type.dtype.numpy
        _assert_matches(array, expected, f"{name}: output {out!r}")


def _example_nodes():
    for build in EXAMPLES.values():
        yield from build(np.random.default_rng(0))[0].nodes


def test_every_op_has_an_example():
    used = {node.op for node in _example_nodes()}
    assert sorted(set(OPS) - used) == []


def test_every_attribute_takes_a_non_default_value_somewhere():
    seen = {(node.op, name) for node in _example_nodes() for name, value in node.attrs.items()
            if OPS[node.op].attrs[name].required or value != OPS[node.op].attrs[name].default}
    every = {(op, name) for op, opdef in OPS.items() for name in opdef.attrs}
    assert sorted(every - seen) == []


@pytest.mark.parametrize("ops, kind", [
    (("reduce_sum", "reduce_mean", "reduce_max", "reduce_min", "reduce_prod", "argmax", "argmin"),
     Fusion.REDUCTION),
    (("matmul", "conv2d"), Fusion.EPILOGUE),
    (("reshape", "transpose", "concat", "slice", "gather", "pad"), Fusion.INJECTIVE),
    (("broadcast",), Fusion.BROADCAST),
])
def test_fusion_kinds(ops, kind):
    assert {op: OPS[op].fusion for op in ops} == {op: kind for op in ops}


def test_argmax_output_is_i64_and_reductions_keep_dtype():
    b = Builder()
    x = b.input("x", i32[BATCH, 3])
    assert b.argmax(x, axis=1).type == i64[BATCH]
    assert b.reduce_sum(x, axes=[0], keepdims=True).type == i32[1, 3]


# --- shape rules on random shapes -----------------------------------------------------------

small_dims = st.lists(st.integers(1, 4), min_size=0, max_size=4)


@st.composite
def broadcast_pairs(draw):
    """Two shapes that often broadcast: the second is the first with dims dropped, set to 1 or changed."""
    a = draw(small_dims)
    b = [draw(st.sampled_from([d, 1, d + 1])) for d in a[draw(st.integers(0, len(a))):]]
    return (a, b) if draw(st.booleans()) else (b, a)


@FAST
@given(broadcast_pairs())
def test_binary_broadcast_matches_numpy(pair):
    a, b = pair
    builder = Builder()
    x, y = builder.input("x", f32[tuple(a)]), builder.input("y", f32[tuple(b)])
    try:
        expected = np.broadcast_shapes(tuple(a), tuple(b))
    except ValueError:
        with pytest.raises(ShapeError, match="op 'add'.*broadcast"):
            builder.add(x, y)
        return
    assert builder.add(x, y).type.shape == expected


def test_symbolic_dim_broadcasts_only_with_one_or_itself():
    b = Builder()
    x = b.input("x", f32[BATCH, 3])
    assert b.mul(x, b.input("one", f32[1, 3])).type == f32[BATCH, 3]
    assert b.mul(x, b.input("same", f32[BATCH, 1])).type == f32[BATCH, 3]
    with pytest.raises(ShapeError, match="op 'mul'"):
        b.mul(x, b.input("four", f32[4, 3]))


@FAST
@given(batch_a=small_dims, batch_b=small_dims, m=st.integers(1, 4), k=st.integers(1, 4),
       n=st.integers(1, 4), ta=st.booleans(), tb=st.booleans())
def test_matmul_shape_matches_numpy(batch_a, batch_b, m, k, n, ta, tb):
    shape_a = tuple(batch_a) + ((k, m) if ta else (m, k))
    shape_b = tuple(batch_b) + ((n, k) if tb else (k, n))
    a, c = np.zeros(shape_a, np.float32), np.zeros(shape_b, np.float32)
    builder = Builder()
    x, y = builder.input("a", f32[shape_a]), builder.input("b", f32[shape_b])
    try:
        expected = np.matmul(np.swapaxes(a, -1, -2) if ta else a, np.swapaxes(c, -1, -2) if tb else c).shape
    except ValueError:
        with pytest.raises(ShapeError, match="op 'matmul'.*batch dimensions"):
            builder.matmul(x, y, transpose_a=ta, transpose_b=tb)
        return
    assert builder.matmul(x, y, transpose_a=ta, transpose_b=tb).type.shape == expected


def test_matmul_keeps_symbols():
    b = Builder()
    x = b.input("x", f32[BATCH, "T", 8])
    assert b.matmul(x, b.param("w", np.zeros((8, 3), np.float32))).type == f32[BATCH, "T", 3]
    k = b.input("k", f32[BATCH, 8, "T"])
    assert b.matmul(x, k).type == f32[BATCH, "T", "T"]


def _window_count(size, kernel, stride, dilation, before, after):
    """Number of window starts, counted directly over the padded index range."""
    extent = (kernel - 1) * dilation + 1
    return len(range(0, size + before + after - extent + 1, stride))


sizes = st.sampled_from([1, 3, 17]) | st.integers(1, 12)


@FAST
@given(h=sizes, w=sizes, kh=st.integers(1, 4), kw=st.integers(1, 4), sh=st.integers(1, 3),
       sw=st.integers(1, 3), dh=st.integers(1, 3), dw=st.integers(1, 2),
       pads=st.tuples(*[st.integers(0, 3)] * 4), groups=st.sampled_from([1, 2]))
def test_conv2d_output_shape_and_values(h, w, kh, kw, sh, sw, dh, dw, pads, groups):
    oh = _window_count(h, kh, sh, dh, pads[0], pads[1])
    ow = _window_count(w, kw, sw, dw, pads[2], pads[3])
    b = Builder()
    x = b.input("x", f32[BATCH, h, w, 2 * groups])
    weights = np.random.default_rng(h * w).standard_normal((kh, kw, 2, 3 * groups)).astype(np.float32)
    attrs = dict(strides=[sh, sw], dilations=[dh, dw], pads=list(pads), groups=groups)
    if oh == 0 or ow == 0:
        with pytest.raises(ShapeError, match="op 'conv2d'.*padded input"):
            b.conv2d(x, b.param("w", weights), **attrs)
        return
    y = b.conv2d(x, b.param("w", weights), **attrs)
    assert y.type == f32[BATCH, oh, ow, 3 * groups]
    data = np.random.default_rng(oh).standard_normal((2, h, w, 2 * groups)).astype(np.float32)
    got = run(b.finish([y]), [data])[0]
    want = conv2d_loops(data, weights, (sh, sw), pads, (dh, dw), groups)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@FAST
@given(h=sizes, w=sizes, kh=st.integers(1, 4), kw=st.integers(1, 4), sh=st.integers(1, 3),
       sw=st.integers(1, 3), pads=st.tuples(*[st.integers(0, 3)] * 4), op=st.sampled_from(["max", "avg"]))
def test_pooling_output_shape_and_values(h, w, kh, kw, sh, sw, pads, op):
    assume(max(pads[:2]) < kh and max(pads[2:]) < kw)
    oh = _window_count(h, kh, sh, 1, pads[0], pads[1])
    ow = _window_count(w, kw, sw, 1, pads[2], pads[3])
    b = Builder()
    x = b.input("x", f32[BATCH, h, w, 2])
    attrs = dict(window=[kh, kw], strides=[sh, sw], pads=list(pads))
    if oh == 0 or ow == 0:
        with pytest.raises(ShapeError, match=f"op '{op}_pool2d'.*padded input"):
            b.op(f"{op}_pool2d", x, **attrs)
        return
    y = b.op(f"{op}_pool2d", x, **attrs)
    assert y.type == f32[BATCH, oh, ow, 2]
    data = np.random.default_rng(oh).standard_normal((2, h, w, 2)).astype(np.float32) - 5
    got = run(b.finish([y]), [data])[0]
    want = pool2d_loops(data, (kh, kw), (sh, sw), pads, window_max if op == "max" else window_mean)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size, kernel, stride, dilation, expected", [
    (9, 3, 2, 1, (1, 1)), (8, 3, 2, 1, (0, 1)), (4, 4, 1, 1, (1, 2)), (5, 1, 2, 1, (0, 0)),
    (7, 3, 1, 2, (2, 2)), (32, 3, 1, 1, (1, 1)), (1, 5, 1, 1, (2, 2)), (6, 2, 3, 1, (0, 0)),
])
def test_same_pads_known_values(size, kernel, stride, dilation, expected):
    assert same_pads(size, kernel, stride, dilation) == expected


@FAST
@given(size=sizes, kernel=st.integers(1, 5), stride=st.integers(1, 4), dilation=st.integers(1, 3))
def test_same_pads_gives_ceil_outputs_with_minimal_padding(size, kernel, stride, dilation):
    before, after = same_pads(size, kernel, stride, dilation)
    assert _window_count(size, kernel, stride, dilation, before, after) == math.ceil(size / stride)
    assert before <= after <= before + 1
    if before + after:
        assert _window_count(size, kernel, stride, dilation, 0, before + after - 1) < math.ceil(size / stride)


def test_same_pads_rejects_bad_arguments():
    with pytest.raises(ShapeError, match="same_pads: stride is 0"):
        same_pads(5, 3, 0, 1)


@st.composite
def reshape_cases(draw):
    """A static input with '?' inserted, and a target that regroups the same elements around '?'."""
    dims = draw(st.lists(st.integers(1, 4), min_size=0, max_size=4))
    total = math.prod(dims)
    factors, rest = [], total
    for _ in range(draw(st.integers(0, 3))):
        f = draw(st.sampled_from([d for d in range(1, rest + 1) if rest % d == 0]))
        factors.append(f)
        rest //= f
    target = factors + [rest]
    if draw(st.booleans()):
        target[draw(st.integers(0, len(target) - 1))] = -1
    in_shape = list(dims)
    in_shape.insert(draw(st.integers(0, len(dims))), BATCH)
    target.insert(draw(st.integers(0, len(target))), BATCH)
    return in_shape, target


@FAST
@given(reshape_cases(), st.integers(1, 3))
def test_reshape_with_symbols_matches_numpy(case, batch):
    in_shape, target = case
    b = Builder()
    y = b.reshape(b.input("x", f32[tuple(in_shape)]), shape=target)
    concrete = tuple(batch if d == BATCH else d for d in in_shape)
    data = np.arange(math.prod(concrete), dtype=np.float32).reshape(concrete)
    want = data.reshape([batch if d == BATCH else d for d in target])
    assert tuple(batch if d == BATCH else d for d in y.type.shape) == want.shape
    np.testing.assert_array_equal(run(b.finish([y]), [data])[0], want)


@FAST
@given(dim=st.integers(0, 8), start=st.integers(-12, 12) | st.sampled_from([SLICE_END, -SLICE_END]),
       end=st.integers(-12, 12) | st.sampled_from([SLICE_END, -SLICE_END]),
       step=st.integers(-3, 3).filter(bool), axis=st.sampled_from([1, -1, 0]))
def test_slice_matches_numpy_slicing(dim, start, end, step, axis):
    shape = [2, dim] if axis != 0 else [dim, 2]
    data = np.arange(2 * dim, dtype=np.float32).reshape(shape)
    b = Builder()
    y = b.slice(b.input("x", f32[tuple(shape)]), starts=[start], ends=[end], axes=[axis], steps=[step])
    index = [slice(None), slice(None)]
    index[axis] = slice(start, end, step)
    want = data[tuple(index)]
    assert y.type.shape == want.shape
    np.testing.assert_array_equal(run(b.finish([y]), [data])[0], want)


def test_slice_of_symbolic_dim_over_full_range():
    b = Builder()
    x = b.input("x", f32[BATCH, 6])
    y = b.slice(x, starts=[0, 1], ends=[2**63 - 1, 5], axes=[0, 1], steps=[1, 2])
    assert y.type == f32[BATCH, 2]


@FAST
@given(data_shape=st.lists(st.integers(1, 4), min_size=1, max_size=3), index_shape=small_dims,
       dtype=st.sampled_from([i32, i64]), draw=st.data())
def test_gather_matches_numpy_indexing(data_shape, index_shape, dtype, draw):
    axis = draw.draw(st.integers(-len(data_shape), len(data_shape) - 1), label="axis")
    rng = np.random.default_rng(len(index_shape))
    data = rng.standard_normal(data_shape).astype(np.float32)
    size = data_shape[axis]
    indices = rng.integers(-size, size, index_shape).astype(dtype.numpy)
    b = Builder()
    y = b.gather(b.input("d", f32[tuple(data_shape)]), b.input("i", dtype[tuple(index_shape)]), axis=axis)
    moved = np.moveaxis(data, axis, 0)[indices % size]
    want = np.moveaxis(moved, list(range(len(index_shape))),
                       [k + axis % len(data_shape) for k in range(len(index_shape))])
    assert y.type.shape == want.shape
    np.testing.assert_array_equal(run(b.finish([y]), [data, indices])[0], want)


# --- errors -------------------------------------------------------------------------------

def _x(b, t=f32[BATCH, 3, 4], name="x"):
    return b.input(name, t)


# case -> (function of a fresh Builder that must raise, pattern the ShapeError message must match)


ERRORS = {
    # reductions
    "reduce axis out of range": (lambda b: b.reduce_sum(_x(b), axes=[3]),
                                 r"op 'reduce_sum'.*axis 3 .*rank 3"),
    "reduce duplicate axes": (lambda b: b.reduce_max(_x(b), axes=[1, -2]), r"op 'reduce_max'.*twice"),
    "reduce_mean of ints": (lambda b: b.reduce_mean(_x(b, i32[3]), axes=[0]), r"op 'reduce_mean'.*float"),
    "reduce_min of bools": (lambda b: b.reduce_min(_x(b, bool_[3]), axes=[0]), r"op 'reduce_min'.*number"),
    "reduce_max of empty axis": (lambda b: b.reduce_max(_x(b, f32[2, 0]), axes=[1]),
                                 r"op 'reduce_max'.*axis 1 has size 0"),
    "reduce without axes": (lambda b: b.reduce_prod(_x(b)), r"op 'reduce_prod' needs attribute 'axes'"),
    "argmax of a scalar": (lambda b: b.argmax(_x(b, f32[()]), axis=0), r"op 'argmax'.*scalar"),
    "argmin axis out of range": (lambda b: b.argmin(_x(b), axis=-4), r"op 'argmin'.*axis -4"),
    # matmul
    "matmul of a vector": (lambda b: b.matmul(_x(b, f32[4]), _x(b, f32[4, 2], "w")),
                           r"op 'matmul'.*input a has rank 1"),
    "matmul dtypes": (lambda b: b.matmul(_x(b), _x(b, f64[4, 2], "w")), r"op 'matmul'.*f32 and f64"),
    "matmul contraction": (lambda b: b.matmul(_x(b), _x(b, f32[3, 2], "w")),
                           r"op 'matmul'.*contraction dimensions differ.*4.*3"),
    "matmul symbolic contraction": (lambda b: b.matmul(_x(b, f32[2, "K"]), _x(b, f32["J", 2], "w")),
                                    r"op 'matmul'.*contraction.*'K'.*'J'"),
    "matmul batch": (lambda b: b.matmul(_x(b, f32[2, 3, 4]), _x(b, f32[5, 4, 2], "w")),
                     r"op 'matmul'.*batch dimensions .* do not broadcast"),
    "matmul of bools": (lambda b: b.matmul(_x(b, bool_[2, 2]), _x(b, bool_[2, 2], "w")),
                        r"op 'matmul'.*number dtype"),
    # conv2d
    "conv2d channels": (lambda b: b.conv2d(_x(b, f32[1, 5, 5, 3]), _x(b, f32[3, 3, 2, 4], "w")),
                        r"op 'conv2d'.*3 input channels.*expects 2"),
    "conv2d groups": (lambda b: b.conv2d(_x(b, f32[1, 5, 5, 4]), _x(b, f32[3, 3, 2, 3], "w"), groups=2),
                      r"op 'conv2d'.*3 output channels.*groups=2"),
    "conv2d window": (lambda b: b.conv2d(_x(b, f32[1, 2, 5, 1]), _x(b, f32[3, 3, 1, 1], "w")),
                      r"op 'conv2d'.*height spans 3.*padded input is 2"),
    "conv2d strides": (lambda b: b.conv2d(_x(b, f32[1, 5, 5, 1]), _x(b, f32[3, 3, 1, 1], "w"), strides=[2]),
                       r"op 'conv2d'.*'strides'.*2 ints >= 1"),
    "conv2d negative pad": (lambda b: b.conv2d(_x(b, f32[1, 5, 5, 1]), _x(b, f32[3, 3, 1, 1], "w"),
                                               pads=[0, -1, 0, 0]), r"op 'conv2d'.*'pads'.*4 ints >= 0"),
    "conv2d ints": (lambda b: b.conv2d(_x(b, i32[1, 5, 5, 1]), _x(b, i32[3, 3, 1, 1], "w")),
                    r"op 'conv2d'.*float dtype"),
    "conv2d rank": (lambda b: b.conv2d(_x(b, f32[5, 5, 1]), _x(b, f32[3, 3, 1, 1], "w")),
                    r"op 'conv2d'.*rank 4"),
    # pooling
    "pool pad as wide as window": (lambda b: b.max_pool2d(_x(b, f32[1, 5, 5, 1]), window=[2, 2],
                                                          strides=[1, 1], pads=[2, 0, 0, 0]),
                                   r"op 'max_pool2d'.*smaller than"),
    "pool without window": (lambda b: b.avg_pool2d(_x(b, f32[1, 5, 5, 1]), strides=[1, 1]),
                            r"op 'avg_pool2d' needs attribute 'window'"),
    "pool rank": (lambda b: b.max_pool2d(_x(b), window=[2, 2], strides=[1, 1]), r"op 'max_pool2d'.*rank 4"),
    "avg_pool of ints": (lambda b: b.avg_pool2d(_x(b, i32[1, 4, 4, 1]), window=[2, 2], strides=[2, 2]),
                         r"op 'avg_pool2d'.*float dtype"),
    "pool window too large": (lambda b: b.max_pool2d(_x(b, f32[1, 2, 5, 1]), window=[3, 1], strides=[1, 1]),
                              r"op 'max_pool2d'.*height spans 3"),
    "pool zero window": (lambda b: b.max_pool2d(_x(b, f32[1, 4, 4, 1]), window=[0, 2], strides=[1, 1]),
                         r"op 'max_pool2d'.*'window'.*2 ints >= 1"),
    # reshape and friends
    "reshape hides two symbols": (lambda b: b.reshape(_x(b, f32[BATCH, "H", 5, 64]), shape=[-1, 64]),
                                  r"op 'reshape'.*-1 would stand for \? \* H \* 5, which is not expressible"),
    "reshape count": (lambda b: b.reshape(_x(b), shape=[BATCH, 5]),
                      r"op 'reshape'.*12 elements cannot become 5"),
    "reshape two holes": (lambda b: b.reshape(_x(b), shape=[-1, -1]), r"op 'reshape'.*at most one .*-1"),
    "reshape new symbol": (lambda b: b.reshape(_x(b, f32[6]), shape=["N", 3]),
                           r"op 'reshape'.*\['N'\] do not occur in the input"),
    "reshape drops a symbol": (lambda b: b.reshape(_x(b, f32[BATCH, 2]), shape=[2, 2]),
                               r"op 'reshape'.*\['\?'\] of the input are not kept"),
    "reshape indivisible": (lambda b: b.reshape(_x(b, f32[7]), shape=[2, -1]),
                            r"op 'reshape'.*7 elements do not divide into blocks of 2"),
    "transpose perm": (lambda b: b.transpose(_x(b), perm=[0, 1, 1]), r"op 'transpose'.*not a permutation"),
    "broadcast mismatch": (lambda b: b.broadcast(_x(b), shape=[BATCH, 3, 5]),
                           r"op 'broadcast'.*dimension 4 \(axis -1\) is neither 1 nor 5"),
    "broadcast symbol to int": (lambda b: b.broadcast(_x(b), shape=[2, 3, 4]), r"op 'broadcast'.*'\?'"),
    "broadcast fewer dims": (lambda b: b.broadcast(_x(b), shape=[3, 4]), r"op 'broadcast'.*fewer dimensions"),
    "broadcast -1": (lambda b: b.broadcast(_x(b, f32[1]), shape=[-1]), r"op 'broadcast'.*-1"),
    "concat dtype": (lambda b: b.concat(_x(b), _x(b, i32[BATCH, 3, 4], "y"), axis=0),
                     r"op 'concat'.*input 1 has dtype i32"),
    "concat other dims": (lambda b: b.concat(_x(b), _x(b, f32[BATCH, 3, 5], "y"), axis=1),
                          r"op 'concat'.*input 1 f32\[\?,3,5\] does not match input 0 .* outside axis 1"),
    "concat symbolic axis": (lambda b: b.concat(_x(b), _x(b, name="y"), axis=0),
                             r"op 'concat'.*symbolic axis 0.*not expressible"),
    "concat axis": (lambda b: b.concat(_x(b), axis=3), r"op 'concat'.*axis 3 is out of range"),
    "concat no inputs": (lambda b: b.concat(axis=0), r"op 'concat' takes at least 1 inputs"),
    "slice lengths": (lambda b: b.slice(_x(b), starts=[0], ends=[1, 2], axes=[1], steps=[1]),
                      r"op 'slice'.*same length"),
    "slice step 0": (lambda b: b.slice(_x(b), starts=[0], ends=[1], axes=[1], steps=[0]),
                     r"op 'slice'.*step of axis 1 is 0"),
    "slice a symbol to a static end": (lambda b: b.slice(_x(b), starts=[0], ends=[3], axes=[0], steps=[1]),
                                       r"op 'slice'.*axis 0 is symbolic .*only lose a static count at each "
                                       r"end .* or be taken whole reversed"),
    "slice repeated axis": (lambda b: b.slice(_x(b), starts=[0, 0], ends=[1, 1], axes=[1, 1], steps=[1, 1]),
                            r"op 'slice'.*twice"),
    "gather float indices": (lambda b: b.gather(_x(b), _x(b, f32[2], "i")), r"op 'gather'.*i32 or i64"),
    "gather axis": (lambda b: b.gather(_x(b), _x(b, i32[2], "i"), axis=3), r"op 'gather'.*axis 3"),
    "pad length": (lambda b: b.pad(_x(b), pads=[0, 0, 1, 1]), r"op 'pad'.*6 ints >= 0"),
    "pad negative": (lambda b: b.pad(_x(b), pads=[0, 0, 1, -1, 0, 0]), r"op 'pad'.*6 ints >= 0"),
    "pad ints with a fraction": (lambda b: b.pad(_x(b, i32[2]), pads=[1, 1], value=0.5),
                                 r"op 'pad'.*0.5 is not a whole number"),
    # nn
    "softmax of ints": (lambda b: b.softmax(_x(b, i32[2, 3])), r"op 'softmax'.*float dtype"),
    "log_softmax axis": (lambda b: b.log_softmax(_x(b), axis=3), r"op 'log_softmax'.*axis 3 is out of range"),
    "softmax of a scalar": (lambda b: b.softmax(_x(b, f32[()])), r"op 'softmax'.*scalar"),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_bad_inputs_raise_shape_errors_naming_the_op(case):
    build, pattern = ERRORS[case]
    with pytest.raises(ShapeError, match=pattern):
        build(Builder())


def test_errors_name_the_location():
    b = Builder()
    with b.loc("dense_1"):
        with pytest.raises(ShapeError, match=r"op 'matmul' of 'dense_1'.*rank 1"):
            b.matmul(b.input("x", f32[4]), b.input("w", f32[4, 2]))


def test_gather_index_out_of_range_at_run_time():
    b = Builder()
    y = b.gather(b.param("table", np.zeros((5, 2), np.float32)), b.input("ids", i64[BATCH]))
    graph = b.finish([y])
    with pytest.raises(ShapeError, match=r"op 'gather': index 5 is out of range for axis 0 of size 5"):
        run(graph, [np.array([0, 5], np.int64)])
    with pytest.raises(ShapeError, match=r"op 'gather': index -6"):
        run(graph, [np.array([-6], np.int64)])


def test_gather_without_negative_indices_refuses_them_at_run_time():
    b = Builder()
    table = b.param("table", np.arange(20, dtype=np.float32).reshape(10, 2))
    with b.loc("embedding"):
        y = b.gather(table, b.input("ids", i32[BATCH]), allow_negative=False)
    graph = b.finish([y])
    np.testing.assert_array_equal(run(graph, [np.array([9, 0], np.int32)])[0], [[18, 19], [0, 1]])
    with pytest.raises(ShapeError, match=re.escape(
            "op 'gather' of 'embedding': index -1 is out of range for axis 0 of size 10 "
            "(expected 0 <= index < 10)")):
        run(graph, [np.array([3, -1], np.int32)])


@pytest.mark.parametrize("op", ["reduce_max", "argmin"])
def test_reducing_a_symbolic_dim_bound_to_zero_fails_clearly(op):
    b = Builder()
    x = b.input("x", f32[BATCH, 3])
    y = b.op(op, x, **({"axes": [0]} if op == "reduce_max" else {"axis": 0}))
    with pytest.raises(ShapeError, match=rf"op '{op}': axis 0 has size 0"):
        run(b.finish([y]), [np.zeros((0, 3), np.float32)])

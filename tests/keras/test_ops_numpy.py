"""keras.ops numpy-like ops against numpy: values, broadcasting, axis/keepdims, dtypes and
errors, each eagerly and traced (reference interpreter); Keras 3's promotion rules against a
table taken from real Keras 3.15 (numpy backend)."""
from __future__ import annotations

import doctest
import importlib
import math

import numpy as np
import pytest

from nncompile import keras
from nncompile.ir import Builder, f32
from nncompile.keras import ops
from nncompile.keras.ops import core
from tests.keras.ops_harness import assert_matches, both, check, traced

RNG = np.random.default_rng(0)
A = RNG.standard_normal((2, 3)).astype(np.float32)
ROW = RNG.standard_normal(3).astype(np.float32)
POS = (RNG.random((2, 3)) + 0.5).astype(np.float32)
CUBE = RNG.standard_normal((2, 3, 4)).astype(np.float32)
INTS = np.array([[7, -7, 3], [0, 5, -2]], np.int32)


@pytest.mark.parametrize("name, want", [
    ("add", np.add), ("subtract", np.subtract), ("multiply", np.multiply),
    ("divide", np.divide), ("true_divide", np.divide), ("maximum", np.maximum),
    ("minimum", np.minimum), ("floor_divide", np.floor_divide), ("mod", np.mod),
])
def test_binary_arithmetic_broadcasts(name, want):
    check(getattr(ops, name), [A, ROW], want(A, ROW), rtol=1e-5)
    check(getattr(ops, name), [ROW, A], want(ROW, A), rtol=1e-5)


def test_arithmetic_of_bools_gives_bools():
    a, c = np.array([True, True, False, False]), np.array([True, False, True, False])
    check(ops.add, [a, c], a | c)
    check(ops.multiply, [a, c], a & c)
    check(ops.maximum, [a, c], np.maximum(a, c))


def test_power_of_floats_and_of_ints():
    check(ops.power, [POS, ROW], np.power(POS, ROW), rtol=1e-5)
    check(lambda x: ops.power(x, 2), [INTS], INTS ** 2)


@pytest.mark.parametrize("name", ["floor_divide", "mod"])
def test_integer_division_rounds_down_as_numpy(name):
    divisor = np.array([2, -3, 4], np.int32)
    want = getattr(np, name)(INTS, divisor)
    check(getattr(ops, name), [INTS, divisor], want, dtype="int32")


@pytest.mark.parametrize("name", ["equal", "not_equal", "less", "less_equal", "greater",
                                  "greater_equal"])
def test_comparisons_give_bools(name):
    other = A.copy()
    other[0, 1] = -5.0
    check(getattr(ops, name), [A, other[0]], getattr(np, name)(A, other[0]))
    check(lambda x: getattr(ops, name)(x, 0), [INTS], getattr(np, name)(INTS, 0))


def test_logical_ops_take_any_values_as_bools():
    a, c = np.array([0.0, 1.0, 2.0, 0.0]), np.array([True, True, False, False])
    check(ops.logical_and, [a, c], np.logical_and(a, c))
    check(ops.logical_or, [a, c], np.logical_or(a, c))
    check(ops.logical_not, [a], np.logical_not(a))


def test_where_and_clip():
    cond = A > 0
    check(ops.where, [cond, A, ROW], np.where(cond, A, ROW))
    check(lambda c, x: ops.where(c, x, 0.5), [cond, A], np.where(cond, A, np.float32(0.5)))
    check(lambda x: ops.clip(x, -0.5, 0.5), [A], np.clip(A, -0.5, 0.5))
    check(lambda x: ops.clip(x, 0, 4), [INTS], np.clip(INTS, 0, 4))


def _erf(x):
    return np.vectorize(math.erf)(x.astype(np.float64)).astype(x.dtype)


@pytest.mark.parametrize("name, want, data", [
    ("abs", np.abs, A), ("absolute", np.abs, A), ("negative", np.negative, A),
    ("exp", np.exp, A), ("expm1", np.expm1, A), ("log", np.log, POS), ("log1p", np.log1p, POS),
    ("sqrt", np.sqrt, POS), ("rsqrt", lambda x: 1 / np.sqrt(x), POS),
    ("reciprocal", np.reciprocal, POS), ("square", np.square, A), ("sign", np.sign, A),
    ("floor", np.floor, A * 3), ("ceil", np.ceil, A * 3), ("round", np.round, A * 3),
    ("sin", np.sin, A), ("cos", np.cos, A), ("tanh", np.tanh, A), ("erf", _erf, A),
    ("tan", np.tan, A), ("sinh", np.sinh, A), ("cosh", np.cosh, A), ("exp2", np.exp2, A),
    ("log2", np.log2, POS), ("log10", np.log10, POS), ("trunc", np.trunc, A * 3),
])
def test_unary_math(name, want, data):
    check(getattr(ops, name), [data], want(data), rtol=1e-5)


def test_float_classes_and_xor():
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -2.5], np.float32)
    for name in ("isnan", "isinf", "isfinite"):
        check(getattr(ops, name), [x], getattr(np, name)(x))
        check(getattr(ops, name), [INTS], getattr(np, name)(INTS))
    a, c = np.array([0, 1, 2, 0]), np.array([0.0, 0.0, 3.0, 1.0])
    check(ops.logical_xor, [a, c], np.logical_xor(a, c))
    check(ops.trunc, [INTS], INTS)


def test_round_to_decimals_and_integers():
    x = np.array([0.25, 1.5, 2.5, -0.35], np.float64)
    check(lambda v: ops.round(v, 1), [x], np.round(x, 1))
    check(ops.round, [INTS], INTS)


AXES = [None, 0, -1, (0, 2), ()]


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("name, want", [
    ("sum", np.sum), ("mean", np.mean), ("max", np.max), ("min", np.min), ("prod", np.prod),
    ("std", np.std), ("var", np.var),
])
def test_reductions(name, want, axis, keepdims):
    expected = want(CUBE.astype(np.float64), axis=axis, keepdims=keepdims).astype(np.float32)
    check(lambda x: getattr(ops, name)(x, axis=axis, keepdims=keepdims), [CUBE], expected,
          rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("axis", [None, 0, -1])
@pytest.mark.parametrize("keepdims", [False, True])
def test_argmax_argmin_give_int32(axis, keepdims):
    for name in ("argmax", "argmin"):
        want = getattr(np, name)(CUBE, axis=axis, keepdims=keepdims).astype(np.int32)
        check(lambda x: getattr(ops, name)(x, axis=axis, keepdims=keepdims), [CUBE], want)


def test_all_any_and_max_initial():
    flags = np.array([[1, 0, 2], [3, 4, 5]], np.int32)
    check(lambda x: ops.all(x, axis=1), [flags], np.all(flags, axis=1))
    check(lambda x: ops.any(x, axis=0, keepdims=True), [flags], np.any(flags, 0, keepdims=True))
    check(lambda x: ops.max(x, initial=4), [flags], np.max(flags, initial=4))


@pytest.mark.parametrize("axis", [None, 1, (0, 2)])
def test_logsumexp_and_count_nonzero(axis):
    big = CUBE * 400
    top = big.max(axis=axis, keepdims=True)
    want = np.log(np.exp(big - top).sum(axis=axis, keepdims=True)) + top
    check(lambda x: ops.logsumexp(x, axis=axis, keepdims=True), [big], want, rtol=1e-5)
    check(lambda x: ops.logsumexp(x, axis=axis), [big], np.squeeze(want, axis), rtol=1e-5)
    zeros = np.where(CUBE > 0, CUBE, 0)
    check(lambda x: ops.count_nonzero(x, axis=axis), [zeros],
          np.count_nonzero(zeros, axis=axis), dtype="int32")


def test_reductions_over_a_symbolic_batch():
    check(lambda x: ops.mean(x, axis=0), [CUBE], CUBE.mean(0), batched=True, rtol=1e-5)
    check(lambda x: ops.sum(x, axis=-1, keepdims=True), [CUBE], CUBE.sum(-1, keepdims=True),
          batched=True, rtol=1e-5)


@pytest.mark.parametrize("axis", [None, 0, 1, -1])
def test_cumsum(axis):
    check(lambda x: ops.cumsum(x, axis=axis), [CUBE], np.cumsum(CUBE, axis=axis), rtol=1e-5,
          atol=1e-5)
    # numpy accumulates int32 in int64; Keras keeps int32.
    check(lambda x: ops.cumsum(x, axis=axis), [INTS], np.cumsum(INTS, axis=axis), dtype="int32")


# --- Keras 3's dtypes -------------------------------------------------------------------------
# Each row was read off Keras 3.15 with KERAS_BACKEND=numpy.

def _arr(dtype):
    return np.ones(2, dtype)


KERAS_DTYPES = [
    (lambda: ops.add(_arr("int8"), 1), "int8"),
    (lambda: ops.add(_arr("int32"), 1.5), "float32"),
    (lambda: ops.add(_arr("int32"), _arr("float16")), "float16"),
    (lambda: ops.add(_arr("uint8"), _arr("int32")), "int32"),
    (lambda: ops.add(_arr("float16"), _arr("float32")), "float32"),
    (lambda: ops.add(_arr("float16"), 1.5), "float16"),
    (lambda: ops.add(_arr("uint8"), 1), "uint8"),
    (lambda: ops.add(_arr("int8"), _arr("int32")), "int32"),
    (lambda: ops.multiply(_arr("bool"), 2), "int32"),
    (lambda: ops.add(_arr("bool"), 1.5), "float32"),
    (lambda: ops.add(1, 2), "int32"),
    (lambda: ops.add(1.0, 2), "float32"),
    (lambda: ops.divide(_arr("int32"), _arr("int32")), "float32"),
    (lambda: ops.floor_divide(_arr("int32"), _arr("int32")), "int32"),
    (lambda: ops.exp(_arr("int32")), "float32"),
    (lambda: ops.floor(_arr("int32")), "float32"),
    (lambda: ops.round(_arr("int32")), "int32"),
    (lambda: ops.abs(_arr("int8")), "int8"),
    (lambda: ops.square(_arr("bool")), "int32"),
    (lambda: ops.mean(_arr("int32")), "float32"),
    (lambda: ops.mean(_arr("float16")), "float16"),
    (lambda: ops.std(_arr("float16")), "float16"),
    (lambda: ops.var(_arr("int8")), "float32"),
    (lambda: ops.sum(_arr("int8")), "int32"),
    (lambda: ops.sum(_arr("bool")), "int32"),
    (lambda: ops.prod(_arr("int8")), "int32"),
    (lambda: ops.max(_arr("int8")), "int8"),
    (lambda: ops.max(_arr("bool")), "bool"),
    (lambda: ops.argmax(_arr("float32")), "int32"),
    (lambda: ops.cumsum(_arr("int8")), "int8"),
    (lambda: ops.cumsum(_arr("bool")), "int32"),
    (lambda: ops.matmul(np.ones((2, 2), "int8"), np.ones((2, 2), "int8")), "int32"),
    (lambda: ops.where(_arr("bool"), _arr("int8"), 1.5), "float32"),
    (lambda: ops.clip(_arr("int8"), 0, 1), "int8"),
    (lambda: ops.clip(_arr("bool"), 0, 1), "int32"),
    (lambda: ops.maximum(_arr("int8"), 0.5), "float32"),
    (lambda: ops.power(_arr("int32"), 2.0), "float32"),
    (lambda: ops.one_hot(np.array([1]), 3), "float32"),
]


@pytest.mark.parametrize("index", range(len(KERAS_DTYPES)))
def test_result_dtypes_follow_keras(index):
    make, dtype = KERAS_DTYPES[index]
    assert np.asarray(make()).dtype == np.dtype(dtype)


def test_64_bit_dtypes_are_kept():
    """Keras narrows 64-bit results to 32 bits except on TensorFlow; nncompile keeps them."""
    assert ops.add(_arr("float64"), _arr("float64")).dtype == np.float64
    assert ops.add(_arr("int64"), 1).dtype == np.int64
    assert ops.result_type("int64", float) == "float32"   # a weak float takes floatx


def test_traced_promotion_casts_the_operands():
    b = Builder()
    x = b.input("x", f32[2])
    with ops.tracing(b):
        y = ops.add(x, np.ones(2, "int32"))
    assert y.type == f32[2]
    # The array becomes a constant of the promoted dtype, no cast node.
    assert [(n.op, n.outputs[0].type) for n in b.graph.nodes] == [("constant", f32[2]),
                                                                   ("add", f32[2])]
    with ops.tracing(b):
        z = ops.add(ops.cast(x, "int32"), 1.5)
    # A traced int32 operand meeting a weak float is cast to floatx.
    assert z.type == f32[2]
    assert [n.op for n in b.graph.nodes[2:]] == ["cast", "cast", "constant", "add"]


def test_dtypes_without_a_promotion_path_or_an_ir_dtype_are_refused():
    with pytest.raises(ValueError, match="dtype int16 is not supported by nncompile"):
        ops.add(_arr("uint8"), _arr("int8"))
    with pytest.raises(ValueError, match="Invalid dtype: floaty"):
        ops.cast(A, "floaty")


# --- shapes, joins, indexing -------------------------------------------------------------------

def test_reshape_transpose_and_moveaxis():
    check(lambda x: ops.reshape(x, (4, -1)), [CUBE], CUBE.reshape(4, -1))
    check(lambda x: ops.reshape(x, (-1, 12)), [CUBE], CUBE.reshape(-1, 12), batched=True)
    check(ops.transpose, [CUBE], CUBE.T)
    check(lambda x: ops.transpose(x, (1, 0, 2)), [CUBE], CUBE.transpose(1, 0, 2))
    check(lambda x: ops.moveaxis(x, 0, -1), [CUBE], np.moveaxis(CUBE, 0, -1))


def test_shapes_read_off_a_traced_tensor():
    """`ops.shape(x)[0]` is None for the batch; reshape and fills take it as the batch."""
    def flatten_and_pad(x):
        n = ops.shape(x)[0]
        return ops.concatenate([ops.reshape(x, (n, -1)), ops.zeros((n, 2))], axis=1)

    want = np.concatenate([CUBE.reshape(2, -1), np.zeros((2, 2), np.float32)], axis=1)
    assert_matches(traced(flatten_and_pad, CUBE, batched=True), want)
    assert_matches(flatten_and_pad(CUBE), want)
    with pytest.raises(ValueError, match=r"a shape with None \(\(None, 2\)\) is known only in "
                                         r"a traced model"):
        ops.ones((None, 2))


def test_expand_dims_and_squeeze():
    check(lambda x: ops.expand_dims(x, 1), [A], np.expand_dims(A, 1))
    check(lambda x: ops.expand_dims(x, (0, -1)), [A], np.expand_dims(A, (0, -1)))
    ones = CUBE[:, :1, None, :]
    check(ops.squeeze, [ones], np.squeeze(ones))
    check(lambda x: ops.squeeze(x, axis=-2), [ones], np.squeeze(ones, axis=-2), batched=True)
    with pytest.raises(ValueError, match="Cannot squeeze axis 0, because the dimension is not 1"):
        ops.squeeze(CUBE, axis=0)


def test_concatenate_stack_split():
    check(lambda x, y: ops.concatenate([x, y], axis=-1), [A, POS], np.concatenate([A, POS], -1))
    check(lambda x, y: ops.concatenate([x, y]), [A, POS], np.concatenate([A, POS]))
    check(lambda x, y: ops.stack([x, y], axis=1), [A, POS], np.stack([A, POS], axis=1))
    check(lambda x: ops.split(x, 3, axis=1), [A], np.split(A, 3, axis=1))
    check(lambda x: ops.split(x, [1, 3], axis=-1), [CUBE], np.split(CUBE, [1, 3], axis=-1))
    with pytest.raises(ValueError, match="array split does not result in an equal division"):
        ops.split(A, 2, axis=1)


def test_take_and_take_along_axis():
    idx = np.array([[2, 0], [-1, 1]], np.int32)
    check(lambda x, i: ops.take(x, i, axis=1), [A, idx], np.take(A, idx, axis=1))
    check(lambda x, i: ops.take(x, i), [A, idx], np.take(A, idx))
    along = np.array([[[3], [0], [1]], [[1], [2], [-1]]], np.int32)
    check(lambda x, i: ops.take_along_axis(x, i, axis=2), [CUBE, along],
          np.take_along_axis(CUBE, along, axis=2))
    rows = np.array([[1, 0, 1]], np.int64)
    check(lambda x, i: ops.take_along_axis(x, i, axis=0), [A, rows],
          np.take_along_axis(A, rows, axis=0))
    check(lambda x, i: ops.take_along_axis(x, i, axis=-1), [A, idx[:, :1]],
          np.take_along_axis(A, idx[:, :1], axis=-1), batched=True)


@pytest.mark.parametrize("key", [
    0, -1, (slice(None), 1), (Ellipsis, -2), (slice(1, None), None, slice(None, None, -1)),
    (0, slice(None, None, 2), 3), (None, Ellipsis, None), (slice(-2, None),),
])
def test_getitem(key):
    check(lambda x: ops.get_item(x, key), [CUBE], CUBE[key])


def test_getitem_keeps_a_symbolic_batch_and_gathers_by_tensor():
    check(lambda x: ops.get_item(x, (Ellipsis, 1)), [CUBE], CUBE[..., 1], batched=True)
    check(lambda x: ops.get_item(x, np.s_[::-1, 1:]), [CUBE], CUBE[::-1, 1:], batched=True)
    check(lambda x: ops.flip(x, axis=0), [CUBE], CUBE[::-1], batched=True)
    idx = np.array([1, 0, 1], np.int32)
    check(lambda x, i: ops.get_item(x, i), [CUBE, idx], CUBE[idx])


def test_slice_flip_pad_broadcast_to():
    check(lambda x: ops.slice(x, (0, 1, 2), (2, 2, 2)), [CUBE], CUBE[0:2, 1:3, 2:4])
    check(ops.flip, [A], np.flip(A))
    check(lambda x: ops.flip(x, axis=1), [CUBE], np.flip(CUBE, 1))
    check(lambda x: ops.pad(x, ((1, 0), (0, 2)), constant_values=3.0), [A],
          np.pad(A, ((1, 0), (0, 2)), constant_values=3.0))
    check(lambda x: ops.broadcast_to(x, (4, 3)), [ROW], np.broadcast_to(ROW, (4, 3)))


def test_more_array_manipulation():
    check(lambda x: ops.swapaxes(x, 0, -1), [CUBE], np.swapaxes(CUBE, 0, -1))
    check(ops.ravel, [CUBE], CUBE.ravel())
    check(lambda x: ops.tile(x, (2, 1, 3)), [CUBE], np.tile(CUBE, (2, 1, 3)))
    check(lambda x: ops.tile(x, (2, 1, 1)), [A], np.tile(A, (2, 1, 1)))
    check(lambda x: ops.tile(x, 2), [A], np.tile(A, 2), batched=True)
    check(lambda x: ops.repeat(x, 2, axis=1), [CUBE], np.repeat(CUBE, 2, axis=1))
    check(lambda x: ops.repeat(x, 3), [A], np.repeat(A, 3))
    check(lambda x: ops.repeat(x, [2, 0, 1], axis=-1), [A], np.repeat(A, [2, 0, 1], axis=-1))
    check(lambda x: ops.unstack(x, axis=1), [CUBE], list(np.moveaxis(CUBE, 1, 0)))
    check(lambda x: ops.tril(x, -1), [CUBE], np.tril(CUBE, -1))
    check(lambda x: ops.triu(x, 1), [CUBE], np.triu(CUBE, 1))
    check(lambda x, y: ops.hstack([x, y]), [A, POS], np.hstack([A, POS]))
    check(lambda x, y: ops.vstack([x, y]), [A, ROW], np.vstack([A, ROW]))
    check(ops.outer, [A, ROW], np.outer(A, ROW))
    check(ops.vdot, [A, POS], np.vdot(A, POS), rtol=1e-5)
    assert_matches(ops.eye(2, 3, 1), np.eye(2, 3, 1, dtype=np.float32))
    assert_matches(ops.identity(3, "int32"), np.identity(3, np.int32))
    assert ops.ndim(CUBE) == 3 and ops.size(CUBE) == 24


def test_cast_and_fills():
    check(lambda x: ops.cast(x, "int32"), [A * 3], (A * 3).astype(np.int32))
    check(ops.zeros_like, [A], np.zeros_like(A))
    check(lambda x: ops.ones_like(x, dtype="int32"), [A], np.ones(A.shape, np.int32),
          batched=True)
    check(lambda x: ops.full_like(x, 2.5), [A], np.full_like(A, 2.5))
    assert_matches(ops.ones((2, 1)), np.ones((2, 1), np.float32))
    assert_matches(ops.zeros(3, "int32"), np.zeros(3, np.int32))
    assert_matches(ops.full((2,), 7), np.full(2, 7, np.int32))
    assert_matches(ops.arange(1, 7, 2), np.array([1, 3, 5], np.int32))
    assert ops.shape(np.ones((2, 3))) == (2, 3)


# --- products ----------------------------------------------------------------------------------

M = RNG.standard_normal((3, 4)).astype(np.float32)
BATCHED = RNG.standard_normal((5, 2, 3)).astype(np.float32)


def test_matmul_as_numpy():
    check(ops.matmul, [A, M], A @ M, rtol=1e-5)
    check(ops.matmul, [BATCHED, M], BATCHED @ M, rtol=1e-5)
    check(ops.matmul, [A, ROW], A @ ROW, rtol=1e-5)
    check(ops.matmul, [ROW, M], ROW @ M, rtol=1e-5)
    check(lambda x: ops.matmul(x, M), [BATCHED], BATCHED @ M, rtol=1e-5, batched=True)


def test_dot_and_tensordot():
    check(ops.dot, [A, M], np.dot(A, M), rtol=1e-5)
    check(ops.dot, [BATCHED, M], np.dot(BATCHED, M), rtol=1e-5)
    check(ops.dot, [ROW, ROW], np.dot(ROW, ROW), rtol=1e-5)
    check(lambda x: ops.dot(x, 2.0), [A], A * 2)
    check(lambda x, y: ops.tensordot(x, y, axes=1), [A, M], np.tensordot(A, M, 1), rtol=1e-5)
    other = RNG.standard_normal((3, 2, 6)).astype(np.float32)
    check(lambda x, y: ops.tensordot(x, y, axes=([0, 1], [1, 0])), [A, other],
          np.tensordot(A, other, ([0, 1], [1, 0])), rtol=1e-5)
    check(ops.tensordot, [CUBE, CUBE[0]], np.tensordot(CUBE, CUBE[0]), rtol=1e-5)


@pytest.mark.parametrize("subscripts, shapes", [
    ("ij,jk->ik", [(2, 3), (3, 4)]),
    ("bij,bjk->bik", [(5, 2, 3), (5, 3, 4)]),
    ("bij,jk", [(5, 2, 3), (3, 4)]),
    ("ij->ji", [(2, 3)]),
    ("ijk->k", [(2, 3, 4)]),
    ("i,j->ij", [(3,), (4,)]),
    ("i,i->", [(3,), (3,)]),
    ("bqhd,bkhd->bhqk", [(2, 3, 2, 4), (2, 5, 2, 4)]),
    ("...ij,...jk->...ik", [(5, 2, 3), (3, 4)]),
    ("ab,bc,cd->ad", [(2, 3), (3, 4), (4, 5)]),
    ("ij,kj->", [(2, 3), (4, 3)]),
])
def test_einsum(subscripts, shapes):
    arrays = [RNG.standard_normal(s).astype(np.float32) for s in shapes]
    check(lambda *xs: ops.einsum(subscripts, *xs), arrays, np.einsum(subscripts, *arrays),
          rtol=1e-4, atol=1e-5)


def test_einsum_over_a_symbolic_batch():
    x, w = CUBE, RNG.standard_normal((4, 5)).astype(np.float32)
    got = traced(lambda a: ops.einsum("bij,jk->bik", a, w), x, batched=True)
    assert_matches(got, np.einsum("bij,jk->bik", x, w), rtol=1e-5, atol=1e-6)


# --- errors ------------------------------------------------------------------------------------

def test_errors_name_the_op_and_what_is_missing():
    with pytest.raises(NotImplementedError, match=r"ops.einsum: a label repeated within one "
                                                  r"operand \('ii'"):
        ops.einsum("ii->i", np.eye(2))
    with pytest.raises(NotImplementedError, match="ops.where with one argument"):
        ops.where(A > 0)
    with pytest.raises(ValueError, match="ops.sum: axis 3 is out of bounds for a tensor of rank 3"):
        ops.sum(CUBE, axis=3)
    with pytest.raises(ValueError, match="ops.einsum: label 'j' has size 3 in one operand and 2"):
        ops.einsum("ij,jk->ik", A, A)
    with pytest.raises(NotImplementedError, match=r"ops.pad: mode='reflect' \(only 'constant'\) "
                                                  r"is not supported by nncompile"):
        ops.pad(A, 1, mode="reflect")


def test_a_traced_value_needs_a_trace():
    x = Builder().input("x", f32[2])
    with pytest.raises(ValueError, match=r"ops.add was called on a traced tensor .* outside a "
                                         r"trace; call it inside `with ops.tracing\(builder\):`"):
        ops.add(x, 1.0)


def test_the_ir_rule_errors_come_through_eager_and_traced():
    for got in (lambda: ops.matmul(A, A), lambda: traced(ops.matmul, A, A)):
        with pytest.raises(Exception, match="op 'matmul': contraction dimensions differ"):
            got()


def test_symbolic_tensors_hand_the_call_to_their_handler():
    class Symbolic:
        pass

    calls = []
    core.register_symbolic(Symbolic, lambda op, args, kwargs: calls.append((op, args, kwargs)))
    try:
        s = Symbolic()
        ops.concatenate([A, s], axis=1)
        assert calls == [(ops.concatenate, ([A, s],), {"axis": 1})]
    finally:
        del core._SYMBOLIC[Symbolic]


def test_eager_results_are_numpy_arrays_and_traced_ones_values():
    eager, traced_out = both(lambda x: ops.split(x, 3, axis=1), A)
    assert all(isinstance(p, np.ndarray) for p in eager + traced_out)
    assert isinstance(ops.add(1, 2), np.ndarray)


@pytest.mark.parametrize("module", ["core", "numpy", "numpy_math", "numpy_arrays", "sorting", "convolution", "scatter", "signal", "statistics", "einops", "arrays", "linalg", "decompositions", "loops", "nn", "image", "image_resize", "image_color", "image_filters"])
def test_docstring_examples_hold(module):
    found = importlib.import_module(f"nncompile.keras.ops.{module}")
    result = doctest.testmod(found, extraglobs={"np": np}, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0


def test_what_the_ir_cannot_express_is_refused_by_name():
    """Symbolic sizes where an op needs static ones, data-dependent shapes and mixed index
    tensors each raise one error naming the op and what to do instead."""
    b = Builder()
    x = b.input("x", f32["?", "?"])
    with ops.tracing(b):
        with pytest.raises(NotImplementedError, match=r"ops\.tril: the last two axes must have static sizes"):
            ops.tril(x)
        with pytest.raises(NotImplementedError, match=r"ops\.split: axis 0 has symbolic length '\?'"):
            ops.split(x, 2, axis=0)
        with pytest.raises(NotImplementedError, match=r"ops\.get_item: an index tensor is supported alone"):
            ops.get_item(x, (np.array([0, 1]), 0))
    with pytest.raises(NotImplementedError, match=r"ops\.where with one argument .* pass x1 and x2"):
        ops.where(np.array([True, False]))


@pytest.mark.parametrize("use", [lambda t: t * 0 + ops.cast(ops.shape(t)[0], "float32"),
                                 lambda t: ops.sum(t, axis=0, keepdims=True) / ops.shape(t)[0],
                                 lambda t: t + ops.convert_to_tensor([ops.shape(t)[0], 1.0, 1.0])])
def test_the_batch_size_as_a_number_is_refused_not_nan(use):
    """`ops.shape(t)[0]` is None while a model is traced (the batch is known only when it runs):
    used as a number it was NaN (numpy's None as float) or a KeyError; now the error says why."""
    inp = keras.Input((3,))
    with pytest.raises(ValueError, match="known only when the model runs, such as the batch size"):
        keras.Model(inp, keras.layers.Lambda(use)(inp))

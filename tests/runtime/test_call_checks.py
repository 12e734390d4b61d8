"""A call checks its inputs with the least work that keeps a bad one from native code: an
array of the input's dtype object, C-contiguous, passes at once, and its shapes pick a binding
checked when it was made. These tests make a good call first, so that the binding and every
per-signature cache exist, then give inputs of the same shapes that must still be refused or
converted."""
from __future__ import annotations

import gc

import numpy as np
import pytest

import nncompile
from nncompile.ir import BATCH, Builder, ShapeError, f32
from nncompile.runtime import cpu


def _scaled_exe():
    b = Builder()
    x = b.input("x", f32[BATCH, 4])
    w = b.param("w", np.arange(4, dtype=np.float32))
    return nncompile.compile(b.finish([b.mul(x, w)], ["y"]))


@pytest.fixture
def exe():
    exe = _scaled_exe()
    good = np.ones((2, 4), np.float32)
    np.testing.assert_array_equal(exe(good), np.tile(np.arange(4, dtype=np.float32), (2, 1)))
    np.testing.assert_array_equal(exe.run({"x": good})["y"], exe(good))
    return exe


@pytest.mark.parametrize("bad, message", [
    (np.ones((2, 4), np.float64), "input 'x': expected dtype f32, received float64"),
    (np.ones((2, 4), ">f4"), "input 'x': expected dtype f32, received >f4"),
    (np.ones((2, 4), np.int32), "input 'x': expected dtype f32, received int32"),
    ([[1.0] * 4] * 2, "input 'x': expected dtype f32, received float64"),
    (np.ones((2, 5), np.float32), r"input 'x': expected shape \(None, 4\), received shape \(2, 5\)"),
    (np.ones((2, 4, 1), np.float32), r"input 'x': expected shape \(None, 4\), received shape \(2, 4, 1\)"),
    (np.ones(4, np.float32), r"input 'x': expected shape \(None, 4\), received shape \(4,\)"),
    (np.float32(1), r"input 'x': expected shape \(None, 4\), received shape \(\)"),
])
def test_a_bad_input_after_a_good_call_is_refused(exe, bad, message):
    with pytest.raises(ShapeError, match=message):
        exe(bad)
    with pytest.raises(ShapeError, match=message):
        exe.run({"x": bad})


class _LooksLikeAnArray:
    """Has the attributes a check by attribute would look at, but no numpy array's memory."""
    shape, dtype, strides = (2, 4), np.dtype(np.float32), (16, 4)


def test_an_object_that_only_looks_like_an_array_is_never_read_as_one(exe):
    with pytest.raises((ShapeError, TypeError, ValueError)):
        exe(_LooksLikeAnArray())


@pytest.mark.parametrize("make", [
    lambda a: np.asfortranarray(a),                                   # same shape, other strides
    lambda a: np.repeat(a, 2, axis=1)[:, ::2],                        # a strided view
    lambda a: np.broadcast_to(a[:1], a.shape),                        # read-only, stride 0
    lambda a: a.astype(np.dtype(np.float32, metadata={"unit": "m"})),  # an equal dtype, not the same object
    lambda a: a.view(np.matrix),                                      # a subclass of ndarray
    lambda a: _read_only(a.copy()),
])
def test_inputs_of_the_same_shape_in_other_layouts_give_the_same_results(exe, make):
    a = np.arange(8, dtype=np.float32).reshape(2, 4) + 1
    want = np.asarray(a) * np.arange(4, dtype=np.float32)
    x = make(a)
    np.testing.assert_array_equal(np.asarray(exe(x)), np.asarray(x) * np.arange(4, dtype=np.float32))
    np.testing.assert_array_equal(exe(a), want)     # and the next ordinary call is unaffected


def _read_only(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def test_run_names_a_missing_or_unknown_input_after_a_good_run(exe):
    good = np.ones((2, 4), np.float32)
    with pytest.raises(ShapeError, match="no array given for input 'x'"):
        exe.run({})
    with pytest.raises(ShapeError, match="has no input 'z'"):
        exe.run({"x": good, "z": good})
    with pytest.raises(TypeError, match="run.. takes a dict"):
        exe.run([good])
    with pytest.raises(ShapeError, match="takes 1 inputs"):
        exe(good, good)


def test_bound_parameters_cannot_be_replaced_only_updated_in_place(exe):
    # the native code holds the parameters' addresses: replacing an array would leave it reading
    # freed memory, so the mapping refuses it; writing into the array is seen by the next call
    with pytest.raises(TypeError):
        exe.params["w"] = np.zeros(4, np.float32)
    exe.params["w"][...] = 2
    np.testing.assert_array_equal(exe(np.ones((1, 4), np.float32)), np.full((1, 4), 2, np.float32))


def test_an_executable_is_found_by_its_graph_object_not_an_equal_graph():
    def graph(scale: float):
        b = Builder()
        x = b.input("x", f32[BATCH, 2])
        return b.finish([b.mul(x, b.param("w", np.full(2, scale, np.float32)))], ["y"])

    first, second = graph(2.0), graph(3.0)
    assert first == second                  # structurally equal, other weights
    x = np.ones((1, 2), np.float32)
    assert cpu.run_graph(first, [x])[0][0, 0] == 2 and cpu.run_graph(second, [x])[0][0, 0] == 3
    assert cpu.executable(first) is cpu.executable(first) is not cpu.executable(second)
    key = id(first)
    del first
    gc.collect()
    assert key not in cpu._BY_GRAPH

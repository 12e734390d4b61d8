"""The composed array functions of keras.ops (ops/numpy_arrays.py) against numpy, eagerly and
traced (reference interpreter), all of them also compiled in one graph; dtypes as Keras 3.15
gives them (taken from Keras on JAX)."""
from __future__ import annotations

import numpy as np
import pytest

import nncompile
from nncompile.keras import ops
from tests.keras.ops_harness import both, trace_graph

RNG = np.random.default_rng(0)
M = RNG.standard_normal((3, 4)).astype(np.float32)
CUBE = RNG.standard_normal((2, 3, 4)).astype(np.float32)
INTS = RNG.integers(-5, 6, (3, 4)).astype(np.int32)
VEC = RNG.standard_normal(5).astype(np.float32)
WITH_NAN = np.where(RNG.random((3, 4)) < 0.3, np.nan, M).astype(np.float32)
WITH_NAN[1] = np.nan      # a row of NaN only

# name -> (the op on the inputs, numpy's result on them, the inputs)
CASES = {
    "diagonal": (ops.diagonal, np.diagonal, [M]),
    "diagonal_offset_axes": (lambda x: ops.diagonal(x, 1, 2, 0), lambda x: np.diagonal(x, 1, 2, 0), [CUBE]),
    "diagonal_negative": (lambda x: ops.diagonal(x, -2), lambda x: np.diagonal(x, -2), [M]),
    "diag_matrix": (lambda x: ops.diag(x, 1), lambda x: np.diag(x, 1), [M]),
    "diag_vector": (ops.diag, np.diag, [VEC]),
    "diag_vector_above": (lambda x: ops.diag(x, 2), lambda x: np.diag(x, 2), [VEC]),
    "diag_vector_below": (lambda x: ops.diag(x, -1), lambda x: np.diag(x, -1), [VEC]),
    "trace": (ops.trace, np.trace, [M]),
    "trace_ints_offset": (lambda x: ops.trace(x, -1), lambda x: np.trace(x, -1), [INTS]),
    "trace_axes": (lambda x: ops.trace(x, 0, 1, 2), lambda x: np.trace(x, 0, 1, 2), [CUBE]),
    "roll_flat": (lambda x: ops.roll(x, 5), lambda x: np.roll(x, 5), [M]),
    "roll_axes": (lambda x: ops.roll(x, (1, -3), (0, 2)), lambda x: np.roll(x, (1, -3), (0, 2)), [CUBE]),
    "roll_whole_turns": (lambda x: ops.roll(x, 8, 1), lambda x: np.roll(x, 8, 1), [M]),
    "fliplr": (ops.fliplr, np.fliplr, [CUBE]),
    "flipud": (ops.flipud, np.flipud, [M]),
    "rot90": (ops.rot90, np.rot90, [M]),
    "rot90_twice": (lambda x: ops.rot90(x, 2), lambda x: np.rot90(x, 2), [M]),
    "rot90_back_other_axes": (lambda x: ops.rot90(x, -1, (2, 0)), lambda x: np.rot90(x, -1, (2, 0)), [CUBE]),
    "linspace_tensors": (lambda a, c: ops.linspace(a, c, 7, axis=1), lambda a, c: np.linspace(a, c, 7, axis=1),
                         [VEC, VEC * 3 + 1]),
    "linspace_open": (lambda a: ops.linspace(a, 2.0, 4, endpoint=False), lambda a: np.linspace(a, 2.0, 4, endpoint=False),
                      [VEC]),
    "logspace": (lambda a: ops.logspace(a, 1.0, 5, base=2.0), lambda a: np.logspace(a, 1.0, 5, base=2.0), [VEC]),
    "geomspace": (lambda a: ops.geomspace(a, 100.0, 6), lambda a: np.geomspace(a, 100.0, 6), [np.abs(VEC) + 0.1]),
    "geomspace_negative": (lambda a: ops.geomspace(a, -0.5, 4, endpoint=False),
                           lambda a: np.geomspace(a, -0.5, 4, endpoint=False), [-np.abs(VEC) - 1]),
    "meshgrid_xy": (lambda a, c: ops.meshgrid(a, c), lambda a, c: np.meshgrid(a, c), [VEC, M[0]]),
    "meshgrid_ij": (lambda a, c, d: ops.meshgrid(a, c, d, indexing="ij"),
                    lambda a, c, d: np.meshgrid(a, c, d, indexing="ij"), [VEC, M[0], M[1, :2]]),
    "inner": (ops.inner, np.inner, [CUBE, M]),
    "inner_scalar": (ops.inner, np.inner, [np.float32(2.5), M]),
    "kron": (ops.kron, np.kron, [M, CUBE]),
    "kron_ints": (ops.kron, np.kron, [INTS[:2, :2], INTS]),
    "vander": (ops.vander, np.vander, [VEC]),
    "vander_ints_increasing": (lambda x: ops.vander(x, 3, increasing=True), lambda x: np.vander(x, 3, increasing=True),
                               [INTS[0]]),
    "diff": (ops.diff, np.diff, [CUBE]),
    "diff_twice_axis0": (lambda x: ops.diff(x, 2, 0), lambda x: np.diff(x, 2, 0), [INTS]),
    "diff_bools": (ops.diff, np.diff, [INTS > 0]),
    "digitize": (lambda x: ops.digitize(x, np.array([-1.0, 0.0, 0.5])), lambda x: np.digitize(x, [-1.0, 0.0, 0.5]),
                 [WITH_NAN]),
    "digitize_decreasing": (lambda x: ops.digitize(x, np.array([0.5, 0.0, -1.0])),
                            lambda x: np.digitize(x, [0.5, 0.0, -1.0]), [M]),
    "isin": (lambda x, y: ops.isin(x, y), np.isin, [INTS, INTS[0]]),
    "isin_invert": (lambda x, y: ops.isin(x, y, invert=True), lambda x, y: np.isin(x, y, invert=True), [INTS, INTS[1]]),
    "select": (lambda x: ops.select([ops.greater(x, 1), ops.less(x, -1)], [x, ops.negative(x)], 7),
               lambda x: np.select([x > 1, x < -1], [x, -x], 7), [INTS]),
    "average": (ops.average, np.average, [M]),
    "average_weights": (lambda x, w: ops.average(x, 1, w), lambda x, w: np.average(x, 1, w), [M, np.abs(M[0])]),
    "average_full_weights": (lambda x, w: ops.average(x, (0, 2), w), lambda x, w: np.average(x, (0, 2), w),
                             [CUBE, np.abs(CUBE)]),
    "nansum": (lambda x: ops.nansum(x, 1), lambda x: np.nansum(x, 1), [WITH_NAN]),
    "nanprod": (ops.nanprod, np.nanprod, [WITH_NAN]),
    "nanmean": (lambda x: ops.nanmean(x, 1, keepdims=True), lambda x: np.nanmean(x, 1, keepdims=True), [WITH_NAN]),
    "nanmax": (lambda x: ops.nanmax(x, 1), lambda x: np.nanmax(x, 1), [WITH_NAN]),
    "nanmin": (lambda x: ops.nanmin(x, 0), lambda x: np.nanmin(x, 0), [WITH_NAN]),
    "nanmax_ints": (ops.nanmax, np.nanmax, [INTS]),
    "nanvar": (lambda x: ops.nanvar(x, 1), lambda x: np.nanvar(x, 1), [WITH_NAN]),
    "nanstd": (lambda x: ops.nanstd(x, 0), lambda x: np.nanstd(x, 0), [WITH_NAN]),
    "nancumsum": (lambda x: ops.nancumsum(x, 1), lambda x: np.nancumsum(x, 1), [WITH_NAN]),
    "nancumprod": (ops.nancumprod, np.nancumprod, [WITH_NAN]),
    "trapezoid": (ops.trapezoid, np.trapezoid, [M]),
    "trapezoid_points": (lambda y, x: ops.trapezoid(y, x, axis=0), lambda y, x: np.trapezoid(y, x, axis=0),
                         [M, np.cumsum(np.abs(M[:, 0]))]),
    "trapezoid_dx": (lambda y: ops.trapezoid(y, dx=0.5, axis=1), lambda y: np.trapezoid(y, dx=0.5, axis=1), [CUBE]),
    "real_imag": (lambda x: ops.add(ops.real(x), ops.imag(x)), np.real, [M]),
    "angle": (ops.angle, np.angle, [np.array([1.0, -2.0, 0.0, -0.0, np.nan, -np.inf], np.float32)]),
    "isreal": (ops.isreal, np.isreal, [M]),
    "empty_like": (lambda x: ops.multiply(ops.empty_like(x), 0), np.zeros_like, [INTS]),
    "array": (lambda x: ops.array(x, "float32"), lambda x: x.astype(np.float32), [INTS]),
}
# numpy's float64 results for float32 inputs: the dtypes Keras gives
FLOAT32_RESULT = {"linspace_tensors", "linspace_open", "logspace", "geomspace", "geomspace_negative", "average",
                  "average_weights", "average_full_weights", "angle", "trapezoid", "trapezoid_points", "trapezoid_dx",
                  "diagonal", "inner_scalar", "vander"}


def _want(name):
    fn, numpy_fn, arrays = CASES[name]
    want = numpy_fn(*arrays)
    if name in FLOAT32_RESULT:
        want = np.asarray(want, np.float32)
    if not isinstance(want, (list, tuple)) and np.asarray(want).dtype == np.int64:    # Keras gives int32
        want = np.asarray(want, np.int32)
    return want


def _matches(got, want, what):
    if isinstance(want, (list, tuple)):
        assert len(got) == len(want), what
        for g, w in zip(got, want):
            _matches(g, w, what)
        return
    got, want = np.asarray(got), np.asarray(want)
    assert (got.dtype, got.shape) == (want.dtype, want.shape), (what, got.dtype, want.dtype, got.shape, want.shape)
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-6, err_msg=what)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_numpy_eager_and_traced(name):
    fn, _, arrays = CASES[name]
    for kind, got in zip(("eager", "traced"), both(fn, *arrays)):
        _matches(got, _want(name), f"{name} {kind}")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_all_compiled_in_one_graph_match_numpy():
    names = [n for n in sorted(CASES) if n not in ("diff_bools", "isreal")]    # outputs of no kernel
    inputs = [a for n in names for a in CASES[n][2]]
    spans = np.cumsum([0] + [len(CASES[n][2]) for n in names])

    def everything(*values):
        outs = []
        for n, lo, hi in zip(names, spans, spans[1:]):
            out = CASES[n][0](*values[lo:hi])
            outs += list(out) if isinstance(out, (list, tuple)) else [out]
        return outs
    arrays = [np.asarray(a) for a in inputs]
    graph, _ = trace_graph(everything, arrays)
    got = iter(nncompile.compile(graph)(*arrays))
    for n in names:
        want = _want(n)
        _matches([next(got) for _ in want] if isinstance(want, (list, tuple)) else next(got), want, f"{n} compiled")


def test_utilities_and_dtypes_as_keras():
    ints = np.arange(9, dtype=np.int32).reshape(3, 3)
    assert ops.trace(ints > 3).dtype == np.int32 and ops.tri(3).dtype == np.float32
    assert ops.tri(3, 4, -1, "int32").tolist() == np.tri(3, 4, -1, dtype=int).tolist()
    assert ops.linspace(0, 10, 5, dtype="int32").tolist() == [0, 2, 5, 7, 10]
    points, step = ops.linspace(0.0, 1.0, 5, retstep=True)
    assert float(step) == 0.25 and points.dtype == np.float32
    assert ops.empty((2,)).dtype == np.float32 and ops.dtype(ints) == "int32" and ops.dtype(1.5) == "float32"
    assert ops.is_tensor(ints) and not ops.is_tensor([1, 2])
    assert ops.average(ints).dtype == np.float32 and ops.nanmean(ints).dtype == np.float32
    assert ops.nansum(ints > 3).dtype == np.int32 and ops.angle(ints).dtype == np.float32
    assert ops.conj is ops.conjugate and ops.conj(ints).dtype == np.int32


def test_what_needs_static_sizes_is_refused_by_name():
    from nncompile.ir import Builder, f32
    b = Builder()
    x = b.input("x", f32["?", 4])
    with ops.tracing(b):
        for call, op in [(lambda: ops.roll(x, 1, 0), "roll"), (lambda: ops.diagonal(x), "diagonal"),
                         (lambda: ops.diff(x, axis=0), "diff"), (lambda: ops.split(x, 2, axis=0), "split")]:
            with pytest.raises(NotImplementedError, match=rf"ops\.{op}: axis 0 has symbolic length"):
                call()
        np.testing.assert_equal(ops.roll(x, 1, 1).type.shape, ("?", 4))
    with pytest.raises(ValueError, match="ops.diag: input must be 1-D or 2-D"):
        ops.diag(CUBE)


SPLITS = {
    "array_split_sections": (lambda x: ops.array_split(x, 3, axis=2), lambda x: np.array_split(x, 3, axis=2), [CUBE]),
    "array_split_indices": (lambda x: ops.array_split(x, [1, 7]), lambda x: np.array_split(x, [1, 7]), [VEC]),
    "hsplit": (lambda x: ops.hsplit(x, 3), lambda x: np.hsplit(x, 3), [CUBE]),
    "hsplit_vector": (lambda x: ops.hsplit(x, [2]), lambda x: np.hsplit(x, [2]), [VEC]),
    "vsplit": (lambda x: ops.vsplit(x, [1]), lambda x: np.vsplit(x, [1]), [M]),
    "dsplit": (lambda x: ops.dsplit(x, [1, 3]), lambda x: np.dsplit(x, [1, 3]), [CUBE]),
    "dstack": (lambda x, y, z: ops.dstack([x, y, z]), lambda x, y, z: np.dstack([x, y, z]), [M[0], M[1], M[2]]),
    "dstack_matrices": (lambda x, y: ops.dstack([x, y]), lambda x, y: np.dstack([x, y]), [M, M * 2]),
    "append": (lambda x, y: ops.append(x, y), np.append, [M, VEC]),
    "append_axis": (lambda x, y: ops.append(x, y, axis=1), lambda x, y: np.append(x, y, axis=1), [CUBE, CUBE]),
}


@pytest.mark.parametrize("name", sorted(SPLITS))
def test_splits_and_stacks_match_numpy(name):
    fn, numpy_fn, arrays = SPLITS[name]
    for got in both(fn, *arrays):
        _matches(got, numpy_fn(*arrays), name)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("side", ["left", "right"])
def test_searchsorted_and_unravel_index(side):
    seq = np.array([1.0, 2.0, 2.0, 3.0, np.nan], np.float32)
    values = np.array([[0.0, 2.0, 2.5], [5.0, np.nan, -np.inf]], np.float32)
    graph, _ = trace_graph(lambda s, v: ops.searchsorted(s, v, side=side), [seq, values])
    for got in [*both(lambda s, v: ops.searchsorted(s, v, side=side), seq, values),
                nncompile.compile(graph)(seq, values)]:
        _matches(got, np.searchsorted(seq, values, side=side).astype(np.int32), f"searchsorted {side}")
    flat = np.array([0, 5, 23, 17], np.int32)
    for got in both(lambda i: ops.unravel_index(i, (2, 3, 4)), flat):
        _matches(list(got), [a.astype(np.int32) for a in np.unravel_index(flat, (2, 3, 4))], "unravel_index")


def test_linspace_of_integers_rounds_down_and_one_point_has_no_step():
    for got in both(lambda a: ops.linspace(a, 10, 7, dtype="int32"), np.int32(-3)):
        np.testing.assert_array_equal(got, np.linspace(-3, 10, 7, dtype=np.int32))
    points, step = ops.linspace(1.0, 0.0, 1, retstep=True)
    assert points.tolist() == [1.0] and np.isnan(step)


def test_traced_bins_and_points_as_eager():
    x = np.array([-1.0, 0.25, 0.75, 3.0], np.float32)
    for bins in (np.array([2.0, 0.5, 0.0], np.float32), np.array([0.0, 0.5, 2.0], np.float32)):
        graph, _ = trace_graph(ops.digitize, [x, bins])
        for got in [nncompile.compile(graph)(x, bins), *both(ops.digitize, x, bins)]:
            np.testing.assert_array_equal(got, np.digitize(x, bins))
    points = np.cumsum(np.abs(M[0])).astype(np.float32)
    for got in both(ops.trapezoid, M, points):
        np.testing.assert_allclose(got, np.trapezoid(M, points), rtol=1e-6)


def test_empty_results_compile():
    """A fused kernel whose output has no elements (a difference of order >= the length)."""
    graph, _ = trace_graph(lambda v: ops.diff(v, 4), [VEC[:4]])
    assert nncompile.compile(graph)(VEC[:4]).shape == (0,)


def test_unravel_index_clips_indices_past_the_array():
    for got in both(lambda i: ops.unravel_index(i, (3, 4)), np.array([12, -3, 5], np.int32)):
        _matches(list(got), [np.array([2, 0, 1], np.int32), np.array([3, 0, 1], np.int32)], "unravel_index")

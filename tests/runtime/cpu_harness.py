"""Shared by the CPU backend's tests: compile once per graph structure, compare compiled outputs
with the reference interpreter's (dtype-aware tolerances, NaN-aware, listing the elements that
differ), draw random inputs for a graph's data inputs, and write an LSTM step as IR."""
from __future__ import annotations

from typing import Callable

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

import nncompile
from nncompile.ir import BATCH, Builder, DType, Graph, f16, f32, f64
from nncompile.ir.types import resolve_shape
from nncompile.runtime.reference import bind_inputs
from nncompile.runtime.reference import run as reference_run

FEW = settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SOME = settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SIZE = st.sampled_from((1, 3, 17, 257))   # 17 and 257 leave tails after 16-lane vector loops
SMALL = st.sampled_from((1, 3, 17))
TWO_BATCHES = st.lists(st.sampled_from((1, 2, 7, 17)), min_size=2, max_size=2, unique=True)
SEED = st.integers(0, 2**32 - 1)
FLOATS = (f32, f64)
RTOL = {f16: 1e-3, f32: 1e-5, f64: 1e-12}
# Results that cancel to about zero make a relative bound meaningless; this floor is 1/10 of it.
ATOL = {f16: 1e-4, f32: 1e-6, f64: 1e-13}
SPECIALS = (np.nan, np.inf, -np.inf, 0.0, -0.0)

_EXECUTABLES: dict[tuple, tuple[Graph, nncompile.Executable]] = {}


def executable(key: tuple, build: Callable[[], Graph]) -> tuple[Graph, nncompile.Executable]:
    """The graph `build` makes and its executable, compiled once per `key` (the graph's structure)."""
    if key not in _EXECUTABLES:
        graph = build()
        _EXECUTABLES[key] = graph, nncompile.compile(graph)
    return _EXECUTABLES[key]


def assert_close(got, want, what: str, scale=None, rtol: float | None = None) -> None:
    """Ints and bools exactly; floats within the dtype's relative tolerance, plus `rtol * scale`
    where the result is a sum whose terms' magnitudes `scale` gives (the condition of a sum).
    NaN matches NaN and an infinity only itself. A failure lists the first elements that differ."""
    got, want = np.asarray(got), np.asarray(want)
    assert (got.shape, got.dtype) == (want.shape, want.dtype), \
        f"{what}: got {got.dtype}{list(got.shape)}, want {want.dtype}{list(want.shape)}"
    if got.dtype.kind in "biu":
        ok = got == want
    else:
        dtype = DType.from_numpy(got.dtype)
        rtol = RTOL[dtype] if rtol is None else rtol
        atol = ATOL[dtype] + (0 if scale is None else rtol * np.asarray(scale, np.float64))
        g, w = got.astype(np.float64), want.astype(np.float64)
        with np.errstate(invalid="ignore"):
            ok = (g == w) | (np.isnan(g) & np.isnan(w)) | (np.abs(g - w) <= atol + rtol * np.abs(w))
    if not ok.all():
        bad = np.argwhere(~ok)
        shown = ", ".join(f"at {tuple(int(i) for i in at)} got {got[tuple(at)]!r} want {want[tuple(at)]!r}"
                          for at in bad[:4])
        raise AssertionError(f"{what}: {len(bad)} of {got.size} elements differ: {shown}")


def check(graph: Graph, exe, inputs: list[np.ndarray], scales=None, rtol: float | None = None) -> None:
    """Compiled outputs equal the reference interpreter's, output by output."""
    got = exe(*inputs)
    got = got if isinstance(got, list) else [got]
    want = reference_run(graph, inputs)
    assert len(got) == len(want)
    _, env = bind_inputs(graph, inputs)
    for i, (g, w) in enumerate(zip(got, want)):
        assert_close(g, w, f"output {graph.output_names[i]!r} with sizes {env}",
                     None if scales is None else scales[i], rtol)


def inputs_for(graph: Graph, env: dict,
               sample: Callable[[str, DType, tuple], np.ndarray]) -> list[np.ndarray]:
    """One array per data input, of its shape with symbols resolved by `env`."""
    return [sample(v.name, v.type.dtype, resolve_shape(v.type.shape, env)) for v in graph.data_inputs]


def ints(rng: np.random.Generator, dtype: DType, shape: tuple, low=None, high=None) -> np.ndarray:
    """Integers over the whole range of `dtype` (or [low, high]), the extremes included."""
    info = np.iinfo(dtype.numpy)
    low, high = info.min if low is None else low, info.max if high is None else high
    out = rng.integers(low, high, shape, dtype=dtype.numpy, endpoint=True)
    edges = np.array([low, high, 0, min(1, high), max(-1, low)], dtype.numpy)
    hit = rng.random(shape) < 0.1
    out[hit] = rng.choice(edges, hit.sum())
    return out


def inject(rng: np.random.Generator, x: np.ndarray, specials, p: float = 0.05) -> np.ndarray:
    """`x` with a fraction `p` of its elements replaced by values drawn from `specials`."""
    hit = rng.random(x.shape) < p
    x[hit] = rng.choice(np.array(specials, x.dtype), hit.sum())
    return x


SPECIALS = (np.nan, np.inf, -np.inf, 0.0, -0.0)


def lstm_body(units: int, outputs: str = "h,c,h", gate_starts=None) -> Graph:
    """Keras's LSTM step as a scan body (h, c, x projected, recurrent kernel) -> `outputs` of
    h and c: one product of h by the recurrent kernel of all four gates, the gates sliced from
    it at `gate_starts` (default k * U; negative starts count from the end, the last gate's end
    is then ONNX's huge one)."""
    body = Builder(name="body")
    h, c = body.input("h", f32[BATCH, units]), body.input("c", f32[BATCH, units])
    xw, r = body.input("xw", f32[BATCH, 4 * units]), body.input("r", f32[units, 4 * units])
    z = body.add(xw, body.matmul(h, r))
    starts = gate_starts or [k * units for k in range(4)]
    ends = [s + units or 2**62 for s in starts]
    i, f, g, o = (body.slice(z, axes=[1], starts=[s], ends=[e], steps=[1]) for s, e in zip(starts, ends))
    c2 = body.add(body.mul(body.sigmoid(f), c), body.mul(body.sigmoid(i), body.tanh(g)))
    h2 = body.mul(body.sigmoid(o), body.tanh(c2))
    return body.finish([{"h": h2, "c": c2}[name] for name in outputs.split(",")])


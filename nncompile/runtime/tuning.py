"""`nncompile tune`: a short measured search for this host's f32 GEMM blocking (KC, MC).

The candidates are the derived blocking (`codegen/blocking.py`) and its neighbours, KC and MC
halved and one and a half times as large. Each is compiled once, as the kernel library is (KC and MC
are constants in the code) and timed on a few square shapes, the candidates alternating within each
round (on a shared machine the load then falls on all alike); a candidate's score is the
geometric mean over the shapes of its median time. The winner is stored as the host's tuned
blocking (`blocking.store`), which every later compile uses unless NNCOMPILE_TUNE=0.
"""
from __future__ import annotations

import ctypes
import math
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from nncompile.codegen import blocking, gemm, host, library, parallel, target
from nncompile.codegen.blocking import Blocking
from nncompile.ir.dtypes import DType

Shape = tuple[int, int, int]            # (M, N, K)
Measure = Callable[[Blocking, Shape], float]
"""Seconds one C = A @ B of the shape takes with the blocking (the search's clock)."""

SHAPES: tuple[Shape, ...] = ((512, 512, 512), (1024, 1024, 1024), (2048, 2048, 2048))
QUICK_SHAPES: tuple[Shape, ...] = ((512, 512, 512), (1024, 1024, 1024))
_GEMM_TYPE = ctypes.CFUNCTYPE(None, *[ctypes.c_int64] * 3, ctypes.c_void_p, ctypes.c_int64,
                              ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64)


def register_tile() -> tuple[int, int]:
    """(MR, NR) of the f32 microkernel on this host."""
    mr, nr_vectors = gemm.register_tile()
    return mr, nr_vectors * target.vector_lanes(4)


def derived() -> Blocking:
    """The f32 blocking the host's caches give (what is used without tuning)."""
    return blocking.derive(host.caches(), 4, *register_tile())


def candidates(start: Blocking, mr: int) -> list[Blocking]:
    """`start` first, then KC and MC halved and 1.5x as large, within the bounds a tuned entry
    may hold (KC a multiple of 16, MC of MR)."""
    def kc_of(kc: int) -> int:
        return min(max(kc // 16 * 16, blocking.KC_MIN), blocking.KC_MAX)

    def mc_of(mc: int) -> int:
        return min(max(round(mc / mr), 1) * mr, blocking.MC_MAX // mr * mr)

    grid = [Blocking(kc_of(kc), mc_of(mc)) for kc in (start.kc, start.kc // 2, start.kc * 3 // 2)
            for mc in (start.mc, start.mc // 2, start.mc * 3 // 2)]
    return list(dict.fromkeys(grid))


@dataclass
class Result:
    best: Blocking
    gflops: dict[Blocking, dict[Shape, float]]   # at the median time, per candidate and shape


def search(trials: Sequence[Blocking], shapes: Sequence[Shape], measure: Measure, rounds: int = 5) -> Result:
    """Time every candidate on every shape `rounds` times, alternating (one untimed call each
    first: compiling, first touch), and pick the lowest geometric mean of the median times."""
    times: dict[tuple[Blocking, Shape], list[float]] = {}
    for shape in shapes:
        for trial in trials:
            measure(trial, shape)
        for r in range(rounds):
            for trial in (trials if r % 2 == 0 else trials[::-1]):
                times.setdefault((trial, shape), []).append(measure(trial, shape))
    medians = {key: statistics.median(values) for key, values in times.items()}
    score = {trial: math.fsum(math.log(medians[trial, shape]) for shape in shapes) for trial in trials}
    gflops = {trial: {shape: 2 * math.prod(shape) / medians[trial, shape] / 1e9 for shape in shapes}
              for trial in trials}
    return Result(best=min(trials, key=score.__getitem__), gflops=gflops)


class CompiledGemms:
    """The measure of real runs: an f32 GEMM compiled per candidate blocking (on first use),
    random operands per shape, one call timed by the wall clock; on one thread
    (NNCOMPILE_NUM_THREADS=1) by the thread's CPU time, which other processes on a shared
    machine disturb far less."""

    def __init__(self):
        self.clock = time.thread_time if parallel.num_threads() == 1 else time.perf_counter
        self._kernels: dict[Blocking, tuple[target.JitModule, Callable]] = {}
        self._operands: dict[Shape, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def kernel(self, trial: Blocking) -> Callable:
        if trial not in self._kernels:
            with blocking.trial(trial):
                module = target.new_module("tune")
                gemm.emit_gemm(module, "gemm", DType.f32)
                jit = target.JitModule(object_code=library.compile_module(module))   # as the library's
            self._kernels[trial] = (jit, _GEMM_TYPE(jit.address("gemm")))
        return self._kernels[trial][1]

    def operands(self, shape: Shape) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if shape not in self._operands:
            m, n, k = shape
            rng = np.random.default_rng(0)
            self._operands[shape] = (rng.standard_normal((m, k), np.float32),
                                     rng.standard_normal((k, n), np.float32), np.empty((m, n), np.float32))
        return self._operands[shape]

    def __call__(self, trial: Blocking, shape: Shape) -> float:
        fn = self.kernel(trial)
        a, b, c = self.operands(shape)
        m, n, k = shape
        start = self.clock()
        fn(m, n, k, a.ctypes.data, k, b.ctypes.data, n, c.ctypes.data, n)
        return self.clock() - start


def tune(shapes: Sequence[Shape] = SHAPES, rounds: int = 5, measure: Measure | None = None) -> Result:
    """Search the candidates around the derived blocking and store the winner for this host."""
    mr, nr = register_tile()
    result = search(candidates(derived(), mr), shapes, measure or CompiledGemms(), rounds)
    blocking.store(result.best, mr, nr, {f"kc={t.kc} mc={t.mc}": {"x".join(map(str, s)): round(g, 1)
                                                                     for s, g in per_shape.items()}
                                         for t, per_shape in result.gflops.items()})
    return result

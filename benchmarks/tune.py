"""GEMM blocking on this host: the fixed Zen 5 values, the derived and the tuned ones against numpy.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_THREAD_TIMEOUT=4 \
        .venv/bin/python benchmarks/tune.py [--quick] [--rounds 9]

Runs `nncompile tune`'s search (and keeps its winner in NNCOMPILE_CACHE_DIR, as the command
does), then times f32 C = A @ B at n = 512, 1024, 2048 with three blockings: KC 768 / MC 144
(fixed before the blocking came from the host; Zen 5's measured best), the one derived from this
host's caches, and the tuned one; and numpy.matmul (OpenBLAS) on the same operands. All four
alternate within each round, so a shared machine's load falls on all alike; the table gives the
median GFLOP/s and the CPU model. On a loaded machine, run both on one thread
(NNCOMPILE_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1): each call is then timed by the thread's CPU
time, which the other processes disturb far less than the wall clock. OPENBLAS_THREAD_TIMEOUT=4 keeps OpenBLAS's idle threads from
spinning on the core nncompile's second thread needs (see benchmarks/gemm.py).
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from nncompile.codegen import host
from nncompile.codegen.blocking import Blocking
from nncompile.runtime import tuning

FIXED = Blocking(kc=768, mc=144)
SIZES = (512, 1024, 2048)


def _numpy_seconds(measure: tuning.CompiledGemms, shape: tuning.Shape) -> float:
    a, b, c = measure.operands(shape)
    start = measure.clock()
    np.matmul(a, b, out=c)
    return measure.clock() - start


def compare(variants: dict[str, Blocking], measure: tuning.CompiledGemms, rounds: int) -> list[str]:
    """The table: median GFLOP/s of each blocking and of numpy per size, alternating."""
    rows = ["| n | " + " | ".join(variants) + " | numpy | tuned / numpy |", "|---|" + "---|" * (len(variants) + 2)]
    for n in SIZES:
        shape = (n, n, n)
        timers = {name: (lambda t=trial: measure(t, shape)) for name, trial in variants.items()}
        timers["numpy"] = lambda: _numpy_seconds(measure, shape)
        for timer in timers.values():   # untimed: compile, first touch
            timer()
        times: dict[str, list[float]] = {name: [] for name in timers}
        for r in range(rounds):
            for name in (list(timers) if r % 2 == 0 else list(timers)[::-1]):
                times[name].append(timers[name]())
        gflops = {name: 2 * n ** 3 / statistics.median(values) / 1e9 for name, values in times.items()}
        rows.append(f"| {n} | " + " | ".join(f"{gflops[name]:.0f}" for name in timers)
                    + f" | {gflops['tuned'] / gflops['numpy']:.2f}x |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="search on 512^3 and 1024^3 only")
    parser.add_argument("--rounds", type=int, default=9, help="timed calls per variant and size")
    args = parser.parse_args()
    print(f"CPU: {host.describe()}")
    measure = tuning.CompiledGemms()
    started = time.perf_counter()
    result = tuning.tune(tuning.QUICK_SHAPES if args.quick else tuning.SHAPES, measure=measure)
    derived = tuning.derived()
    print(f"search: {time.perf_counter() - started:.1f} s; derived KC {derived.kc} MC {derived.mc}, "
          f"tuned KC {result.best.kc} MC {result.best.mc}")
    variants = {f"KC {FIXED.kc} MC {FIXED.mc} (fixed)": FIXED, f"KC {derived.kc} MC {derived.mc} (derived)": derived,
                "tuned": result.best}
    print("\n".join(compare(variants, measure, args.rounds)))


if __name__ == "__main__":
    main()

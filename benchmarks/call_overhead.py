"""The Python around one native call: CPU time per call of a small model at batch 1.

    python benchmarks/call_overhead.py [--calls 2000] [--repeats 31]

The 100-64-64-10 tutorial MLP (relu, relu, softmax), compiled once, then timed through the three
ways a user calls it: `exe(x)`, `exe.run({name: x})` and `model.predict(x)` of one sample, plus
the native entry alone (the floor: what no Python can remove). Each figure is CPU time of this
thread (`time.thread_time`, so the other tenants of a shared machine mostly drop out) per call,
over `--calls` calls, the median and the minimum of `--repeats` repeats.
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import numpy as np

import nncompile
from nncompile import keras
from nncompile.runtime import cpu
from host import cpu_model


def tutorial_mlp() -> keras.Model:
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input(shape=(100,)), keras.layers.Dense(64, activation="relu"),
                             keras.layers.Dense(64, activation="relu"),
                             keras.layers.Dense(10, activation="softmax")])


def per_call(fn: Callable[[], object], calls: int, repeats: int) -> tuple[float, float]:
    """(median, minimum) over `repeats` of the thread CPU seconds per call of `fn`."""
    for _ in range(calls // 10 + 1):
        fn()
    times = []
    for _ in range(repeats):
        start = time.thread_time()
        for _ in range(calls):
            fn()
        times.append((time.thread_time() - start) / calls)
    return statistics.median(times), min(times)


def native_only(exe: cpu.Executable, x: np.ndarray) -> Callable[[], object]:
    """The native call with the binding `exe(x)` made: no checks, no outputs handed back."""
    exe(x)
    binding = exe._bindings[(x.shape,)]
    if exe.native_call is not None:
        frame = binding.frame.ctypes.data
        return lambda: exe.native_call(frame, x)
    return lambda: exe.entry(*binding.args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=31)
    args = parser.parse_args()
    model = tutorial_mlp()
    exe = nncompile.compile(nncompile.trace(model))
    x = np.random.default_rng(0).random((1, 100), dtype=np.float32)
    name = exe.graph.data_inputs[0].name
    np.testing.assert_allclose(exe(x), model.predict(x, verbose=0), rtol=1e-5)
    rows = [("native entry alone", native_only(exe, x)),
            ("exe(x)", lambda: exe(x)),
            ("exe.run({name: x})", lambda: exe.run({name: x})),
            ("model.predict(x), one sample", lambda: model.predict(x, verbose=0))]
    print(f"{cpu_model()}, CPU time per call at batch 1, "
          f"{args.repeats} repeats of {args.calls} calls")
    print(f"{'call':<30} {'median us':>10} {'min us':>10}")
    for label, fn in rows:
        calls = args.calls // 10 if "predict" in label else args.calls
        median, least = per_call(fn, calls, args.repeats)
        print(f"{label:<30} {median * 1e6:>10.2f} {least * 1e6:>10.2f}")


if __name__ == "__main__":
    main()

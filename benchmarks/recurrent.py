"""Recurrent layers: compile time against the sequence length, and run time against numpy.

    python benchmarks/recurrent.py [--units 128] [--repeats 20]

1. Compile time of Input((T, 128)) -> LSTM(128) -> Dense(1, sigmoid), traced and compiled cold
   (empty disk cache) for T = 10, 100, 1000. The scan's body is compiled once whatever T is, so
   the goal (issue 13) is T = 1000 at most 2x T = 10.
2. The same model at T = 100 run by nncompile and by a numpy loop written here (the Keras LSTM
   formulas on the same weights) in the same run: batch-1 latency and batch-64 throughput,
   medians. ../shared/bench/peers.py compares against PyTorch, JAX and ONNX Runtime.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

os.environ["NNCOMPILE_CACHE_DIR"] = tempfile.mkdtemp(prefix="nncompile-bench-cache-")

import nncompile  # noqa: E402
from nncompile import keras  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from compile_memory import cpu_model  # noqa: E402
from gemm import _times  # noqa: E402


def model(steps: int, units: int):
    m = keras.Sequential([keras.Input((steps, 128)), keras.layers.LSTM(units),
                          keras.layers.Dense(1, activation="sigmoid")])
    return m


def compile_seconds(steps: int, units: int) -> float:
    m = model(steps, units)
    start = time.perf_counter()
    nncompile.compile(nncompile.trace(m))
    return time.perf_counter() - start


def numpy_lstm(weights: list[np.ndarray], x: np.ndarray) -> np.ndarray:
    kernel, recurrent, bias, dense_w, dense_b = weights
    units = recurrent.shape[0]
    h = np.zeros((x.shape[0], units), np.float32)
    c = np.zeros_like(h)
    projected = x @ kernel + bias
    for t in range(x.shape[1]):
        z = projected[:, t] + h @ recurrent
        i, f, g, o = (z[:, k * units:(k + 1) * units] for k in range(4))
        c = 1 / (1 + np.exp(-f)) * c + 1 / (1 + np.exp(-i)) * np.tanh(g)
        h = 1 / (1 + np.exp(-o)) * np.tanh(c)
    return 1 / (1 + np.exp(-(h @ dense_w + dense_b)))


def median_seconds(fn, repeats: int) -> float:
    return statistics.median(_times(fn, repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores")
    print("\ncompile time (cold) of LSTM(%d) against the sequence length" % args.units)
    first = None
    for steps in (10, 100, 1000):
        seconds = statistics.median(compile_seconds(steps, args.units) for _ in range(3))
        first = first or seconds
        print(f"  T = {steps:5d}: {seconds:6.2f} s   ({seconds / first:.2f}x T = 10)")

    m = model(100, args.units)
    exe = nncompile.compile(nncompile.trace(m))
    weights = m.get_weights()
    rng = np.random.default_rng(0)
    print("\nT = 100, median of %d runs" % args.repeats)
    for batch, label in ((1, "latency b1"), (64, "throughput b64")):
        x = rng.standard_normal((batch, 100, 128)).astype(np.float32)
        diff = float(np.abs(exe(x) - numpy_lstm(weights, x)).max())
        ours = median_seconds(lambda: exe(x), args.repeats)
        theirs = median_seconds(lambda: numpy_lstm(weights, x), args.repeats)
        if batch == 1:
            print(f"  {label}: nncompile {ours * 1e6:8.0f} us, numpy {theirs * 1e6:8.0f} us, "
                  f"ratio {ours / theirs:.2f}x (max |diff| {diff:.1e})")
        else:
            print(f"  {label}: nncompile {batch / ours:8.0f} /s, numpy {batch / theirs:8.0f} /s, "
                  f"ratio {theirs / ours:.2f}x (max |diff| {diff:.1e})")


if __name__ == "__main__":
    main()

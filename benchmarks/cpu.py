"""The CPU backend against numpy, measured in one run and printed as tables of ratios.

    python benchmarks/cpu.py            # all sections
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/cpu.py

Sections: GEMM GFLOP/s (a Dense layer without bias through `nncompile.compile`, the whole runtime
included; benchmarks/gemm.py times the kernel alone), batch-1 latency and batch-256 throughput of the MLP
784-128(relu)-10(softmax) and of the CNN Conv2D(32,3,relu)-MaxPool2-Conv2D(64,3,relu)-MaxPool2-
Flatten-Dense(10,softmax) on 32x32x3, each against the same forward pass written in numpy;
compile time cold and from the disk cache (in fresh processes); arena bytes against the lower bound.
Every figure is the median of repeats; the machine is noisy, so read ratios, not absolutes.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable

import numpy as np

import nncompile
import nncompile.codegen.target
from nncompile import keras


def median_seconds(fn: Callable[[], object], repeats: int = 7, min_time: float = 0.05) -> float:
    """Median over `repeats` of the mean time of a call, each repeat running for >= min_time.

    It first sleeps a moment: OpenBLAS's threads spin for tens of milliseconds after numpy's last
    call, and on two cores that would take the second core from whatever is timed next."""
    time.sleep(0.2)
    fn()
    count = 1
    while True:
        start = time.perf_counter()
        for _ in range(count):
            fn()
        if time.perf_counter() - start >= min_time / 4 or count >= 1 << 16:
            break
        count *= 2
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(count):
            fn()
        times.append((time.perf_counter() - start) / count)
    return statistics.median(times)


def mlp() -> keras.Model:
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input(shape=(784,)), keras.layers.Dense(128, activation="relu"),
                             keras.layers.Dense(10, activation="softmax")])


def cnn() -> keras.Model:
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input(shape=(32, 32, 3)),
        keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(64, 3, activation="relu"), keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])


def numpy_softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def numpy_mlp(model: keras.Model) -> Callable[[np.ndarray], np.ndarray]:
    w0, b0, w1, b1 = model.get_weights()
    return lambda x: numpy_softmax(np.maximum(x @ w0 + b0, 0) @ w1 + b1)


def numpy_conv_relu(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    kh, kw, cin, cout = w.shape
    patches = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))
    n, oh, ow = patches.shape[:3]
    cols = patches.transpose(0, 1, 2, 4, 5, 3).reshape(n * oh * ow, kh * kw * cin)
    return np.maximum(cols @ w.reshape(-1, cout) + b, 0).reshape(n, oh, ow, cout)


def numpy_pool(x: np.ndarray) -> np.ndarray:
    n, h, w, c = x.shape
    h2, w2 = h // 2, w // 2
    return x[:, :h2 * 2, :w2 * 2].reshape(n, h2, 2, w2, 2, c).max(axis=(2, 4))


def numpy_cnn(model: keras.Model) -> Callable[[np.ndarray], np.ndarray]:
    k0, c0, k1, c1, wd, bd = model.get_weights()

    def forward(x):
        y = numpy_pool(numpy_conv_relu(x, k0, c0))
        y = numpy_pool(numpy_conv_relu(y, k1, c1))
        return numpy_softmax(y.reshape(len(y), -1) @ wd + bd)
    return forward


def gemm_rows() -> list[tuple]:
    """Square float32 GEMM: x @ w through a compiled Dense(n, use_bias=False), against np.matmul."""
    rows = []
    for n in (256, 512, 1024, 2048):
        model = keras.Sequential([keras.Input(shape=(n,)), keras.layers.Dense(n, use_bias=False)])
        rng = np.random.default_rng(n)
        w = rng.standard_normal((n, n), dtype=np.float32)
        model.set_weights([w])
        a = rng.standard_normal((n, n), dtype=np.float32)
        exe = nncompile.compile(nncompile.trace(model))
        np.testing.assert_allclose(exe(a), a @ w, rtol=1e-3, atol=1e-2 * np.sqrt(n))
        out = np.empty((n, n), np.float32)
        flops = 2 * n ** 3
        ours = flops / median_seconds(lambda: exe(a)) / 1e9
        theirs = flops / median_seconds(lambda: np.matmul(a, w, out=out)) / 1e9
        rows.append((f"GEMM n={n}", f"{ours:.0f} GFLOP/s", f"{theirs:.0f} GFLOP/s", f"{ours / theirs:.2f}x"))
    return rows


def forward_rows() -> list[tuple]:
    rows = []
    rng = np.random.default_rng(0)
    for name, build, ref, shape in (("MLP", mlp, numpy_mlp, (784,)), ("CNN", cnn, numpy_cnn, (32, 32, 3))):
        model = build()
        exe = nncompile.compile(nncompile.trace(model))
        forward = ref(model)
        for batch, what in ((1, "latency"), (256, "throughput")):
            x = rng.standard_normal((batch,) + shape).astype(np.float32)
            np.testing.assert_allclose(exe(x), forward(x), rtol=1e-4, atol=1e-5)
            ours, theirs = median_seconds(lambda: exe(x)), median_seconds(lambda: forward(x))
            if what == "latency":
                rows.append((f"{name} batch-1 latency", f"{ours * 1e6:.1f} us", f"{theirs * 1e6:.1f} us",
                             f"{ours / theirs:.2f}x time"))
            else:
                rows.append((f"{name} batch-256 throughput", f"{batch / ours:,.0f} /s",
                             f"{batch / theirs:,.0f} /s", f"{theirs / ours:.2f}x speed"))
    return rows


_COMPILE = """
import time, numpy as np
t = time.perf_counter()
import nncompile
from nncompile import keras
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input(shape=(784,)), keras.layers.Dense(128, activation="relu"),
                          keras.layers.Dense(10, activation="softmax")])
graph = nncompile.trace(model)
t = time.perf_counter()
exe = nncompile.compile(graph)
print(time.perf_counter() - t, exe.from_cache)
"""


def compile_rows() -> list[tuple]:
    """Compile time of the MLP in fresh processes: cold (empty cache), then from the cache."""
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "NNCOMPILE_CACHE_DIR": folder}
        times = []
        for _ in range(4):
            out = subprocess.run([sys.executable, "-c", _COMPILE], env=env, capture_output=True,
                                 text=True, check=True).stdout.split()
            times.append((float(out[0]), out[1] == "True"))
    cold = times[0][0]
    warm = statistics.median(t for t, hit in times[1:] if hit)
    return [("MLP compile, cold", f"{cold * 1e3:.1f} ms", "", ""),
            ("MLP compile, from the disk cache", f"{warm * 1e3:.1f} ms", "", "goal < 50 ms")]


def memory_rows() -> list[tuple]:
    rows = []
    for name, build in (("MLP", mlp), ("CNN", cnn)):
        exe = nncompile.compile(nncompile.trace(build()))
        plan = exe.memory_plan(batch=256)
        rows.append((f"{name} arena at batch 256", f"{plan.arena_bytes:,} B",
                     f"lower bound {plan.lower_bound:,} B",
                     f"{plan.arena_bytes / max(plan.lower_bound, 1):.3f}x"))
    return rows


def table(title: str, header: tuple, rows: list[tuple]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(header, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def main() -> None:
    blas = "OpenBLAS variables " + ("set: " + os.environ.get("OPENBLAS_CORETYPE", "")
                                    if "OPENBLAS_CORETYPE" in os.environ else "unset")
    print(f"host: {nncompile.codegen.target.host_cpu()[0]}, {os.cpu_count()} cores; {blas}\n")
    print(table("Compiled vs numpy", ("workload", "nncompile", "numpy", "ratio"), gemm_rows() + forward_rows()))
    print()
    print(table("Compile time and memory", ("what", "figure", "against", "ratio"),
                compile_rows() + memory_rows()))


if __name__ == "__main__":
    main()

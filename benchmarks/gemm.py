"""GEMM speed: nncompile's generated float32 GEMM against numpy.matmul (OpenBLAS), same run.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/gemm.py

Prints, for square n x n x n products, the median GFLOP/s of each (timed in alternating blocks,
so both see similar machine load) and their ratio; then the model shapes (Dense forward and the
backward GEMMs dW = X^T dY, dX = dY W^T at batch 256/64/32/5) in microseconds per call, timed by a
native loop for nncompile and np.matmul(out=) for numpy; then the latency of a batch-1 Dense layer
(1x784 @ 784x128, bias + relu) and the per-call overhead of parallel_for.
On a loaded machine OpenBLAS's 2 threads wait for each other (ms outliers): compare medians, and
OPENBLAS_NUM_THREADS=1 NNCOMPILE_NUM_THREADS=1 for a quieter single-core comparison. In one process
the two thread pools also compete: after each numpy call OpenBLAS's workers spin (sched_yield) for
up to 2^OPENBLAS_THREAD_TIMEOUT cycles (default 2^28, tens of ms), taking the second core from
nncompile's worker, whose kernels then run at single-thread speed; OPENBLAS_THREAD_TIMEOUT=4 makes
them sleep at once (numpy then pays its own wake-ups).
OPENBLAS_CORETYPE=Haswell and OPENBLAS_L2_SIZE, which some environments set, make current
OpenBLAS slower on AVX-512 machines; the table says when they are set.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import time

import numpy as np
from llvmlite import ir

from nncompile.codegen import gemm, library, parallel, target
from nncompile.codegen.loops import for_range
from nncompile.ir.dtypes import DType

P, I = ctypes.c_void_p, ctypes.c_int64


def _relu_bias(b: ir.IRBuilder, acc: ir.Value, ops: list[ir.Value]) -> ir.Value:
    total = b.fadd(acc, ops[0])
    zero = ir.Constant(total.type, None)
    return b.select(b.fcmp_ordered(">", total, zero), total, zero)


def _emit_repeat(module: ir.Module, fn: ir.Function) -> ir.Function:
    """`repeat_<fn>(i64 times, args of fn...)`: call fn that many times, to time it without ctypes."""
    repeat = ir.Function(module, ir.FunctionType(ir.VoidType(), [ir.IntType(64), *fn.function_type.args]),
                         f"repeat_{fn.name}")
    b = ir.IRBuilder(repeat.append_basic_block())
    with for_range(b, repeat.args[0]):
        b.call(fn, repeat.args[1:])
    b.ret_void()
    return repeat


MODEL_SHAPES = [   # (transpose_a, transpose_b, M, K, N)
    (0, 0, 256, 128, 10), (0, 0, 256, 2304, 10), (0, 0, 256, 784, 128), (0, 0, 1, 784, 128),
    (1, 0, 784, 256, 128), (1, 0, 784, 128, 128), (1, 0, 128, 256, 10), (0, 1, 256, 10, 128),
    (0, 1, 256, 128, 784),
    (0, 0, 64, 784, 128), (1, 0, 784, 64, 128), (0, 1, 64, 128, 784),
    (0, 0, 32, 784, 128), (0, 0, 32, 128, 10), (1, 0, 784, 32, 128), (1, 0, 128, 32, 10),
    (0, 1, 32, 10, 128), (0, 1, 32, 128, 784), (0, 0, 5, 8, 12), (1, 0, 8, 5, 12), (0, 1, 5, 12, 8),
]


def compile_kernels():
    """One module: plain GEMMs (with repeat loops, each transpose), Dense (bias + relu epilogue),
    and a parallel_for of an empty task."""
    module = target.new_module("bench")
    gemm.emit_gemm(module, "gemm", DType.f32)
    for ta, tb in [(0, 0), (1, 0), (0, 1)]:
        _emit_repeat(module, gemm.emit_gemm(module, f"gemm{ta}{tb}", DType.f32, transpose_a=bool(ta),
                                            transpose_b=bool(tb)))
    dense = gemm.emit_gemm(module, "dense", DType.f32, epilogue=gemm.Epilogue(((0, 1),), _relu_bias))
    _emit_repeat(module, dense)
    task = ir.Function(module, parallel.TASK_TYPE, "nothing")
    ir.IRBuilder(task.append_basic_block()).ret_void()
    run = ir.Function(module, ir.FunctionType(ir.VoidType(), [ir.IntType(64)]), "run_nothing")
    b = ir.IRBuilder(run.append_basic_block())
    no_context = ir.Constant(ir.IntType(8).as_pointer(), None)
    b.call(parallel.emit_parallel_for(module), [task, no_context, run.args[0]])
    b.ret_void()
    jit = target.JitModule(object_code=library.compile_module(module))   # as the kernel library is made
    repeats = {(ta, tb): ctypes.CFUNCTYPE(None, I, I, I, I, P, I, P, I, P, I)(jit.address(f"repeat_gemm{ta}{tb}"))
               for ta, tb in [(0, 0), (1, 0), (0, 1)]}
    return (jit, repeats,
            ctypes.CFUNCTYPE(None, I, I, I, P, I, P, I, P, I)(jit.address("gemm")),
            ctypes.CFUNCTYPE(None, I, I, I, P, I, P, I, P, I, P)(jit.address("dense")),
            ctypes.CFUNCTYPE(None, I, I, I, I, P, I, P, I, P, I, P)(jit.address("repeat_dense")),
            ctypes.CFUNCTYPE(None, I)(jit.address("run_nothing")))


def _times(fn, repeats: int) -> list[float]:
    """Seconds of each of `repeats` calls of fn, after one untimed warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _median_seconds(fn, repeats: int) -> float:
    return float(np.median(_times(fn, repeats)))


def square_table(fn, sizes: list[int], budget: float) -> None:
    print(f"{'n':>6} {'nncompile GFLOP/s':>18} {'numpy GFLOP/s':>14} {'ratio':>6}")
    rng = np.random.default_rng(0)
    for n in sizes:
        a, b = (rng.standard_normal((n, n)).astype(np.float32) for _ in range(2))
        c = np.empty((n, n), np.float32)
        args = (n, n, n, a.ctypes.data, n, b.ctypes.data, n, c.ctypes.data, n)
        ours, theirs = [], []
        repeats = max(3, int(budget / (2 * n**3 / 2e11)))
        for _ in range(2):   # blocks, not alternate calls: each library's idle threads spin a while
            ours += _times(lambda: fn(*args), repeats)
            theirs += _times(lambda: a @ b, repeats)
        assert np.allclose(c, a @ b, rtol=1e-3, atol=1e-3 * np.sqrt(n))
        flop = 2.0 * n**3
        mine, ref = flop / np.median(ours) / 1e9, flop / np.median(theirs) / 1e9
        print(f"{n:>6} {mine:>18.1f} {ref:>14.1f} {mine / ref:>6.2f}")


def model_table(repeats, rounds: int) -> None:
    """Microseconds per call of the model shapes; blocks of calls with pauses between libraries,
    so that neither's idle threads (OpenBLAS spins for a while) steal the other's core."""
    print(f"\n{'ta tb     M     K     N':>24} {'nncompile us':>13} {'numpy us':>9} {'ratio':>6}")
    rng = np.random.default_rng(2)
    for ta, tb, m, k, n in MODEL_SHAPES:
        a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
        b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
        c, out = np.empty((m, n), np.float32), np.empty((m, n), np.float32)
        lhs, rhs = (a.T if ta else a), (b.T if tb else b)
        args = (m, n, k, a.ctypes.data, a.shape[1], b.ctypes.data, b.shape[1], c.ctypes.data, n)
        inner = max(1, int(2e5 / (m * n * k / 20 + 200)))
        fn = repeats[ta, tb]
        fn(1, *args)
        assert np.allclose(c, lhs @ rhs, rtol=1e-3, atol=1e-3 * np.sqrt(k))
        ours, theirs = [], []
        for _ in range(rounds):
            time.sleep(0.02)
            ours += [t / inner for t in _times(lambda: fn(inner, *args), 5)]
            time.sleep(0.02)
            theirs += [t / inner for t in _times(lambda: [np.matmul(lhs, rhs, out=out) for _ in range(inner)], 5)]
        mine, ref = np.median(ours) * 1e6, np.median(theirs) * 1e6
        print(f"{ta:>2} {tb:>2} {m:>5} {k:>5} {n:>5} {mine:>13.2f} {ref:>9.2f} {mine / ref:>6.2f}")


def dense_latency(dense, repeat_dense) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 784)).astype(np.float32)
    w = rng.standard_normal((784, 128)).astype(np.float32)
    bias = rng.standard_normal(128).astype(np.float32)
    y = np.empty((1, 128), np.float32)
    args = (1, 128, 784, x.ctypes.data, 784, w.ctypes.data, 128, y.ctypes.data, 128, bias.ctypes.data)
    seconds = _median_seconds(lambda: dense(*args), 20000)
    native = _median_seconds(lambda: repeat_dense(20, *args), 2000) / 20
    assert np.allclose(y, np.maximum(x @ w + bias, 0), rtol=1e-4, atol=1e-4)
    numpy_seconds = _median_seconds(lambda: np.maximum(x @ w + bias, 0), 20000)
    print(f"\nDense 1x784 @ 784x128 + bias + relu: nncompile {native * 1e6:.2f} us native, "
          f"{seconds * 1e6:.2f} us per ctypes call (numpy {numpy_seconds * 1e6:.2f} us)")


def parallel_overhead(run_nothing) -> None:
    inline = _median_seconds(lambda: run_nothing(1), 20000)
    pooled = _median_seconds(lambda: run_nothing(parallel.num_threads()), 20000)
    print(f"parallel_for of an empty task over {parallel.num_threads()} threads: {pooled * 1e6:.2f} us per "
          f"call, {(pooled - inline) * 1e6:.2f} us more than running it inline "
          f"(workers spinning: back-to-back calls)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[256, 512, 1024, 2048])
    parser.add_argument("--budget", type=float, default=1.0, help="rough seconds per size per library")
    parser.add_argument("--rounds", type=int, default=6, help="alternating timing blocks per model shape")
    args = parser.parse_args()
    blas_env = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ}
    setting = ", ".join(f"{k}={v}" for k, v in blas_env.items())
    print(f"float32 GEMM, {parallel.num_threads()} threads, host {target.host_cpu()[0]}; "
          f"OpenBLAS environment: "
          + (f"{setting} (slows numpy; unset them for the real figure)" if blas_env else "clean"))
    jit, repeats, fn, dense, repeat_dense, run_nothing = compile_kernels()
    square_table(fn, args.sizes, args.budget)
    model_table(repeats, args.rounds)
    dense_latency(dense, repeat_dense)
    parallel_overhead(run_nothing)
    del jit


if __name__ == "__main__":
    main()

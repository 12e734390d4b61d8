"""Run by test_forced_isa.py in a child process with NNCOMPILE_CPU set (the host's facts are read
once per process): `python forced_isa_child.py LEVEL GROUP` compiles GROUP's models or GEMMs for
that level and checks them against the reference interpreter or numpy; prints "ok"."""
from __future__ import annotations

import ctypes
import os
import sys

import numpy as np

import nncompile
from nncompile import keras
from nncompile.codegen import gemm, host, library, target
from nncompile.ir.dtypes import DType
from nncompile.keras import layers as L
from nncompile.runtime.reference import run as reference_run

LLVM_CPU = {"avx2": "haswell", "x86-64": "x86-64"}
VECTOR_BYTES = {"avx2": 32, "x86-64": 16}
P, I = ctypes.c_void_p, ctypes.c_int64


def check_level(level: str) -> None:
    """The code generator sees the forced CPU, not the host's AVX-512."""
    assert host.host_cpu()[0] == LLVM_CPU[level], host.host_cpu()
    assert target.vector_bytes() == VECTOR_BYTES[level]
    t = gemm.tiling(DType.f32)
    assert (t.lanes, t.mr, t.nr) == (VECTOR_BYTES[level] // 4, 6, VECTOR_BYTES[level] // 2), t


def close(got, want, what: str) -> None:
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(want, np.float64),
                               rtol=1e-4, atol=1e-5, err_msg=what)


def inference(model: keras.Model, make_input, batches=(1, 7, 64)) -> None:
    graph = nncompile.trace(model)
    exe = nncompile.compile(graph)
    for n in batches:
        x = make_input(n).astype(np.float32)
        close(exe(x), reference_run(graph, [x])[0], f"{model.name} at batch {n}")


def training(make_model, x: np.ndarray, y: np.ndarray) -> None:
    """Two training steps compiled and on the reference interpreter, from the same weights."""
    weights = None
    results = []
    for backend in ("cpu", "reference"):
        os.environ["NNCOMPILE_BACKEND"] = backend
        keras.backend.clear_session()
        model = make_model()
        if weights is None:
            weights = model.get_weights()
        model.set_weights(weights)
        losses = [model.train_on_batch(x, y) for _ in range(2)]
        results.append((losses, model.get_weights()))
    os.environ["NNCOMPILE_BACKEND"] = "cpu"
    (cpu_losses, cpu_weights), (ref_losses, ref_weights) = results
    close(cpu_losses, ref_losses, "training losses")
    for i, (got, want) in enumerate(zip(cpu_weights, ref_weights)):
        close(got, want, f"weight {i} after two steps")


def dense_group(rng) -> None:
    def mlp():
        model = keras.Sequential([keras.Input(shape=(20,)), L.Dense(64, activation="relu"),
                                  L.Dense(32, activation="tanh"), L.Dense(10, activation="softmax")])
        model.compile(optimizer="adam", loss="categorical_crossentropy")
        return model

    inference(mlp(), lambda n: rng.normal(0, 1, (n, 20)))
    labels = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 48)]
    training(mlp, rng.normal(0, 1, (48, 20)).astype(np.float32), labels)


def conv_lstm_norm_group(rng) -> None:
    cnn = keras.Sequential([keras.Input(shape=(12, 12, 3)), L.Conv2D(8, 3, activation="relu"),
                            L.MaxPooling2D(2), L.Conv2D(16, 3, padding="same", strides=2, activation="relu"),
                            L.Flatten(), L.Dense(10, activation="softmax")])
    inference(cnn, lambda n: rng.normal(0, 1, (n, 12, 12, 3)), batches=(1, 7))
    lstm = keras.Sequential([keras.Input(shape=(8, 5)), L.LSTM(16), L.Dense(3)])
    inference(lstm, lambda n: rng.normal(0, 1, (n, 8, 5)), batches=(1, 4))
    x = keras.Input(shape=(6, 17))
    h = L.Dense(17)(L.Dense(32, activation="relu")(x))
    y = L.Dense(4, activation="softmax")(L.LayerNormalization()(L.Add()([x, h])))
    inference(keras.Model(x, y), lambda n: rng.normal(0, 2, (n, 6, 17)), batches=(1, 9))


# (M, N, K): ragged around the tiles, K across two blocks of KC, few rows (one row of a large B
# is split between the threads), few columns (skinny)
GEMM_SHAPES = [(1, 33, 17), (3, 300, 40), (1, 600, 500), (5, 7, 3), (13, 40, 300), (130, 257, 1100),
               (64, 16, 200), (200, 3, 129), (257, 1, 5), (2, 9, 2000)]


def gemm_group(rng) -> None:
    for dtype in (DType.f32, DType.f64):
        for transpose_a in (False, True):
            for transpose_b in (False, True):
                module = target.new_module("gemm")
                gemm.emit_gemm(module, "g", dtype, transpose_a=transpose_a, transpose_b=transpose_b)
                jit = target.JitModule(object_code=library.compile_module(module))
                fn = ctypes.CFUNCTYPE(None, I, I, I, P, I, P, I, P, I)(jit.address("g"))
                for m, n, k in GEMM_SHAPES:
                    a = rng.standard_normal((k, m) if transpose_a else (m, k)).astype(dtype.numpy)
                    b = rng.standard_normal((n, k) if transpose_b else (k, n)).astype(dtype.numpy)
                    c = np.full((m, n), np.nan, dtype.numpy)
                    fn(m, n, k, a.ctypes.data, a.shape[1], b.ctypes.data, b.shape[1], c.ctypes.data, n)
                    want = (a.T if transpose_a else a).astype(np.float64) @ (b.T if transpose_b else b)
                    eps = 1e-6 if dtype is DType.f32 else 1e-14
                    np.testing.assert_allclose(c, want, rtol=10 * eps, atol=eps * (k + 1) * 4,
                                               err_msg=f"{dtype} {m}x{n}x{k} t={transpose_a, transpose_b}")


GROUPS = {"dense": dense_group, "conv_lstm_norm": conv_lstm_norm_group, "gemm": gemm_group}

if __name__ == "__main__":
    level, group = sys.argv[1:]
    check_level(level)
    GROUPS[group](np.random.default_rng(0))
    print("ok")

"""Training throughput of nncompile's `Model.fit` against a hand-written numpy trainer, in one run.

    python benchmarks/training.py
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/training.py   # the real comparison
    python benchmarks/training.py cnn "mnist-mlp batch 128"   # only the workloads named (prefixes)

Workloads (synthetic float32 data, fixed seeds; Adam with Keras 3's defaults and update form):
pima, MLP 8-8(relu)-6(relu)-1(sigmoid), binary crossentropy, batch 5, n=514; mnist-mlp,
784-128(relu)-10(softmax), categorical crossentropy, batch 32 and 128, n=60000; cnn,
Conv2D(32,3,relu)-MaxPool2-Conv2D(64,3,relu)-MaxPool2-Flatten-Dense(10,softmax) on 32x32x3,
categorical crossentropy, batch 64, n=5000.

The numpy trainer runs the same model from the same initial weights with the same loss, optimizer
and strategy (a fresh permutation each epoch, the ragged last batch as its own step): vectorized
forward and backward passes, convolutions as im2col (sliding_window_view) and one matmul, 2x2
pooling by reshape.

Before any timing, both trainers run one epoch in order from the same weights: the proof that
the comparison is fair. Asserted: after the first `exact_steps` steps every weight agrees to
float32 tolerance, and the epoch's loss agrees at its end. The weights are not compared at the
end of the epoch because Adam amplifies rounding there: a weight whose gradient is tiny (a unit
that a ReLU nearly kills) moves by ~lr whatever the gradient's size, so a last-bit difference in
it (summation order, or a pre-activation near 0 changing side) becomes a lr-sized difference, and
the next steps spread it. Measured on the CNN: two float32 numpy trainers whose initial weights
differ by 1e-7 (relative) end the epoch with kernels 3e-2 apart (relative norm), as far apart as
nncompile and numpy end it; the epoch's loss stays within 1e-4.
The epoch's first fit is nncompile's warm-up: it holds the compile (reported apart, from an
empty disk cache). Then whole epochs are timed, medians of repeats; the machine may be shared,
so read ratios.
"""
from __future__ import annotations

import functools
import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
# An empty disk cache, so that the warm-up epoch pays (and shows) the full compile.
os.environ["NNCOMPILE_CACHE_DIR"] = tempfile.mkdtemp(prefix="nncompile-training-bench-")

import nncompile.codegen.target  # noqa: E402
from cpu import cnn, mlp, table  # noqa: E402
from nncompile import keras  # noqa: E402

EPSILON = 1e-7   # Keras's backend epsilon: the loss clips probabilities to [eps, 1 - eps]


# --- the hand-written numpy trainer ----------------------------------------------------------------
# A layer is (kind, relu?); its forward returns the output and what its backward needs; its backward
# takes the output gradient and returns the input gradient (None when unneeded) and the weight grads.

def dense_forward(x, w, b, relu):
    out = x @ w + b
    return (np.maximum(out, 0, out=out) if relu else out), x


def dense_backward(dy, x, out, w, relu, need_dx):
    dz = dy * (out > 0) if relu else dy
    return (dz @ w.T if need_dx else None), (x.T @ dz, dz.sum(axis=0))


def conv_forward(x, w, b, relu):
    kh, kw, cin, cout = w.shape
    patches = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))
    n, oh, ow = patches.shape[:3]
    cols = patches.transpose(0, 1, 2, 4, 5, 3).reshape(n * oh * ow, kh * kw * cin)
    out = cols @ w.reshape(-1, cout) + b
    out = np.maximum(out, 0, out=out) if relu else out
    return out.reshape(n, oh, ow, cout), (cols, x.shape)


def conv_backward(dy, saved, out, w, relu, need_dx):
    cols, x_shape = saved
    kh, kw, cin, cout = w.shape
    dz = (dy * (out > 0) if relu else dy).reshape(-1, cout)
    grads = ((cols.T @ dz).reshape(w.shape), dz.sum(axis=0))
    if not need_dx:
        return None, grads
    n, oh, ow = dy.shape[:3]
    dcols = (dz @ w.reshape(-1, cout).T).reshape(n, oh, ow, kh, kw, cin)
    dx = np.zeros(x_shape, dy.dtype)
    for i in range(kh):          # col2im: each kernel tap adds its shifted window back
        for j in range(kw):
            dx[:, i:i + oh, j:j + ow] += dcols[:, :, :, i, j]
    return dx, grads


def pool_forward(x):
    n, h, w, c = x.shape
    h2, w2 = h // 2, w // 2
    blocks = x[:, :h2 * 2, :w2 * 2].reshape(n, h2, 2, w2, 2, c)
    out = blocks.max(axis=(2, 4))
    return out, (blocks, x.shape)


def pool_backward(dy, saved, out):
    blocks, x_shape = saved
    n, h2, _, w2, _, c = blocks.shape
    spread = (blocks == out[:, :, None, :, None]) * dy[:, :, None, :, None]
    if x_shape[1] == h2 * 2 and x_shape[2] == w2 * 2:
        return spread.reshape(x_shape)
    dx = np.zeros(x_shape, dy.dtype)   # the odd last row and column fed no maximum
    dx[:, :h2 * 2, :w2 * 2] = spread.reshape(n, h2 * 2, w2 * 2, c)
    return dx


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def binary_crossentropy(p, y):
    p = np.clip(p, EPSILON, 1 - EPSILON)
    return float(np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p))))


def categorical_crossentropy(p, y):
    return float(np.mean(-np.sum(y * np.log(np.clip(p, EPSILON, 1 - EPSILON)), axis=-1)))


# the output activation and its loss; with them fused, d(loss)/d(logits) is (p - y) / batch (exact
# while no probability reaches the clip bounds, as here)
HEADS = {"binary_crossentropy": (sigmoid, binary_crossentropy),
         "categorical_crossentropy": (softmax, categorical_crossentropy)}


class NumpyTrainer:
    """Adam on a stack of dense / conv / pool / flatten layers, every weight float32, in place."""

    def __init__(self, layers: list[tuple[str, bool]], weights: list[np.ndarray], loss: str):
        self.layers = layers
        self.params = [np.array(w, np.float32) for w in weights]
        self.activation, self.loss = HEADS[loss]
        self.m = [np.zeros_like(p) for p in self.params]
        self.v = [np.zeros_like(p) for p in self.params]
        self.iterations = 0

    def step(self, x: np.ndarray, y: np.ndarray) -> float:
        """One training step on a batch; the batch's loss before the update."""
        saved, at = [], 0
        for kind, relu in self.layers:
            if kind in ("dense", "conv"):
                w, b = self.params[at:at + 2]
                out, keep = (dense_forward if kind == "dense" else conv_forward)(x, w, b, relu)
                at += 2
            elif kind == "pool":
                out, keep = pool_forward(x)
            else:
                out, keep = x.reshape(len(x), -1), x.shape
            saved.append((keep, out))
            x = out
        p = self.activation(x)
        loss = self.loss(p, y)
        dy = (p - y) / np.float32(len(y))
        grads: list = []
        for index in range(len(self.layers) - 1, -1, -1):
            (kind, relu), (keep, out) = self.layers[index], saved[index]
            need_dx = index > 0
            if kind in ("dense", "conv"):
                at -= 2
                backward = dense_backward if kind == "dense" else conv_backward
                dy, pair = backward(dy, keep, out, self.params[at], relu, need_dx)
                grads[:0] = pair
            elif kind == "pool":
                dy = pool_backward(dy, keep, out)
            else:
                dy = dy.reshape(keep)
        self.adam(grads)
        return loss

    def adam(self, grads: list[np.ndarray], lr=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7) -> None:
        """Keras 3's Adam: bias corrections folded into alpha, epsilon added to sqrt(v)."""
        self.iterations += 1
        t = self.iterations
        alpha = lr * math.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m += (g - m) * (1 - beta_1)
            v += (np.square(g) - v) * (1 - beta_2)
            p -= (m * alpha) / (np.sqrt(v) + epsilon)

    def fit(self, x: np.ndarray, y: np.ndarray, batch_size: int, epochs: int, rng: np.random.Generator | None) -> float:
        """`epochs` epochs, shuffled by `rng` each (None: in order); the last epoch's mean loss."""
        for _ in range(epochs):
            if rng is not None:
                order = rng.permutation(len(x))
                x_epoch, y_epoch = x[order], y[order]
            else:
                x_epoch, y_epoch = x, y
            total = 0.0
            for start in range(0, len(x), batch_size):
                yb = y_epoch[start:start + batch_size]
                total += self.step(x_epoch[start:start + batch_size], yb) * len(yb)
        return total / len(x)


# --- the workloads -------------------------------------------------------------------------------

@dataclass
class Workload:
    """A model, its numpy twin's layers, its loss and data, and how to time and check it."""

    name: str
    build: Callable[[], keras.Model]
    layers: list[tuple[str, bool]]
    loss: str
    batch: int
    data: Callable[[], tuple[np.ndarray, np.ndarray]]
    epochs_per_call: int   # epochs per timed call, so that a call is long enough to time
    repeats: int
    goal: float
    exact_steps: int       # leading steps of the check epoch after which the weights must agree


def pima() -> keras.Model:
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input(shape=(8,)), keras.layers.Dense(8, activation="relu"),
                             keras.layers.Dense(6, activation="relu"), keras.layers.Dense(1, activation="sigmoid")])


def binary_data(n: int, features: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Standard normal features; labels from a fixed random linear rule, so there is something to learn."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, features)).astype(np.float32)
    y = (x @ rng.standard_normal(features) > 0).astype(np.float32)[:, None]
    return x, y


@functools.cache
def one_hot_data(n: int, shape: tuple, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Uniform [0, 1) images, one-hot labels of random classes."""
    rng = np.random.default_rng(seed)
    x = rng.random((n,) + shape, dtype=np.float32)
    y = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, n)]
    return x, y


MLP_LAYERS = [("dense", True), ("dense", False)]
CNN_LAYERS = [("conv", True), ("pool", False), ("conv", True), ("pool", False), ("flatten", False),
              ("dense", False)]
WORKLOADS = [
    Workload("pima", pima, [("dense", True), ("dense", True), ("dense", False)], "binary_crossentropy", 5,
             lambda: binary_data(514, 8, 1), 20, 7, 10.0, 103),
    Workload("mnist-mlp batch 32", mlp, MLP_LAYERS, "categorical_crossentropy", 32,
             lambda: one_hot_data(60000, (784,), 10, 2), 1, 7, 2.0, 200),
    Workload("mnist-mlp batch 128", mlp, MLP_LAYERS, "categorical_crossentropy", 128,
             lambda: one_hot_data(60000, (784,), 10, 2), 1, 7, 2.0, 50),
    Workload("cnn", cnn, CNN_LAYERS, "categorical_crossentropy", 64,
             lambda: one_hot_data(5000, (32, 32, 3), 10, 3), 1, 5, 4.0, 2),
]


def median_seconds_interleaved(fns: list[Callable[[], object]], repeats: int) -> list[float]:
    """The median wall time of each call over `repeats` rounds that run every fn once in turn, so
    that load from other processes falls on all of them alike (all are warm already). Each call
    starts after a short sleep: OpenBLAS's threads spin for tens of milliseconds after numpy's
    last call, and on two cores that would take the second core from the next trainer."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, spent in zip(fns, times):
            time.sleep(0.2)
            start = time.perf_counter()
            fn()
            spent.append(time.perf_counter() - start)
    return [statistics.median(spent) for spent in times]


def check_and_warm_up(work: Workload, x, y) -> tuple[keras.Model, NumpyTrainer, float, int, tuple]:
    """One epoch in order on both trainers from the same weights, as two fits: the first
    `exact_steps` steps (then every weight must agree to float32 tolerance), the rest (then the
    epoch's loss must agree). The first nncompile fit is its warm-up: it builds and compiles the
    step. Returns the trainers, the warm-up's wall time and steps, and the row of what was seen."""
    model = work.build()
    model.compile(optimizer="adam", loss=work.loss)
    ours = NumpyTrainer(work.layers, model.get_weights(), work.loss)
    split = min(len(x), work.exact_steps * work.batch)

    def nncompile_fit(xs, ys) -> float:
        return model.fit(xs, ys, batch_size=work.batch, epochs=1, verbose=0, shuffle=False).history["loss"][0]

    start = time.perf_counter()
    first = nncompile_fit(x[:split], y[:split])
    warm_up = time.perf_counter() - start
    numpy_first = ours.fit(x[:split], y[:split], work.batch, 1, None)
    np.testing.assert_allclose(first, numpy_first, rtol=1e-5, err_msg=f"{work.name}: loss")
    for index, (a, b) in enumerate(zip(model.get_weights(), ours.params)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5,
                                   err_msg=f"{work.name}: weight {index} after {work.exact_steps} steps")
    exact = _max_difference(model, ours)
    rest = len(x) - split
    if rest:
        first = (first * split + nncompile_fit(x[split:], y[split:]) * rest) / len(x)
        numpy_first = (numpy_first * split + ours.fit(x[split:], y[split:], work.batch, 1, None) * rest) / len(x)
    np.testing.assert_allclose(first, numpy_first, rtol=1e-3, err_msg=f"{work.name}: epoch loss")
    steps = -(-split // work.batch)
    return model, ours, warm_up, steps, (
        work.name, f"{steps}", f"{exact:.1e}", f"{first:.6f}", f"{numpy_first:.6f}",
        f"{abs(first - numpy_first) / numpy_first:.0e}", f"{_max_difference(model, ours):.1e}")


def _max_difference(model: keras.Model, ours: NumpyTrainer) -> float:
    return max(float(np.max(np.abs(a - b))) for a, b in zip(model.get_weights(), ours.params))


def from_cache(model: keras.Model) -> bool:
    """Whether the training step's machine code came from the disk cache (an equal graph compiled
    earlier in this run) rather than from LLVM."""
    return all(getattr(step.exe, "from_cache", False) for step in model._compiled.steps.values())


def run(work: Workload) -> tuple[tuple, tuple]:
    x, y = work.data()
    model, ours, warm_up, warm_up_steps, agreement = check_and_warm_up(work, x, y)
    steps = -(-len(x) // work.batch) * work.epochs_per_call
    rng = np.random.default_rng(4)
    np.random.seed(4)   # fit's shuffle draws from numpy's global generator
    nnc, ref = median_seconds_interleaved(
        [lambda: model.fit(x, y, batch_size=work.batch, epochs=work.epochs_per_call, verbose=0),
         lambda: ours.fit(x, y, work.batch, work.epochs_per_call, rng)], work.repeats)
    ratio = ref / nnc
    speed = (work.name, f"{len(x)}", f"{steps / nnc:,.0f}", f"{steps / ref:,.0f}", f"{ratio:.2f}x",
             f">= {work.goal:g}x", "met" if ratio >= work.goal else "NOT met")
    compile_time = max(warm_up - nnc / steps * warm_up_steps, 0)
    cached = " (disk cache)" if from_cache(model) else ""
    return speed, (*agreement, f"{compile_time:.2f} s{cached}")


def main() -> None:
    blas = "OpenBLAS variables " + ("set: OPENBLAS_CORETYPE=" + os.environ.get("OPENBLAS_CORETYPE", "")
                                    if "OPENBLAS_CORETYPE" in os.environ else "unset")
    print(f"host: {nncompile.codegen.target.host_cpu()[0]}, {os.cpu_count()} cores; {blas}; "
          f"load average {os.getloadavg()[0]:.1f}")
    if "OPENBLAS_CORETYPE" in os.environ:
        print("  (numpy's BLAS is pinned to that core type; the real comparison runs with "
              "`env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE`)")
    print()
    chosen = [w for w in WORKLOADS if not sys.argv[1:] or any(w.name.startswith(a) for a in sys.argv[1:])]
    if not chosen:
        sys.exit(f"no workload matches {sys.argv[1:]}; the workloads: {', '.join(w.name for w in WORKLOADS)}")
    results = [run(work) for work in chosen]
    print(table("One epoch in order from the same weights (asserted: weights after the first steps, "
                "the epoch loss); compile time",
                ("workload", "first steps", "max |w diff|", "loss nncompile", "loss numpy", "rel diff",
                 "|w diff| at end", "compile"),
                [a for _, a in results]))
    print()
    print(table("Training throughput (steps/s, median of repeated epochs, shuffled)",
                ("workload", "samples", "nncompile", "numpy", "ratio", "goal", ""), [s for s, _ in results]))
    print(f"load average at the end {os.getloadavg()[0]:.1f}: above 0 means other processes shared the cores")


if __name__ == "__main__":
    main()

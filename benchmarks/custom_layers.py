"""A model made of custom layers (`call` written with keras.ops) runs as fast as the same model
made of built-in layers: both trace to the same IR, so the same fused kernels run.

    python benchmarks/custom_layers.py

Workload: MLP 784-256(relu)-128(relu)-10(softmax), float32, synthetic data with a fixed seed.
"built-in" is keras.layers.Dense; "custom" is a `Linear` layer as keras.io writes it (add_weight in
build, `ops.matmul(x, w) + b` in call) followed by `ops.relu` / `ops.softmax` in the functional
model. Both get the same weights; asserted before timing: the traced graphs have the same ops,
attributes and types (only names differ), and the predictions agree. Timed, medians of repeats
with the two models alternating (the machine may be shared, so read the ratio): predict at batch
1 and 256, and a training epoch (SGD, batch 128, 4096 samples, categorical crossentropy).
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))

import nncompile  # noqa: E402
import nncompile.codegen.target  # noqa: E402
from cpu import table  # noqa: E402
from nncompile import keras  # noqa: E402
from nncompile.keras import layers, ops  # noqa: E402

SIZES = (784, 256, 128, 10)


class Linear(layers.Layer):
    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], self.units), name="w")
        self.b = self.add_weight(shape=(self.units,), initializer="zeros", name="b")

    def call(self, inputs):
        return ops.matmul(inputs, self.w) + self.b


def built_in() -> keras.Model:
    return keras.Sequential([keras.Input(shape=(SIZES[0],)), layers.Dense(SIZES[1], activation="relu"),
                             layers.Dense(SIZES[2], activation="relu"),
                             layers.Dense(SIZES[3], activation="softmax")])


def custom() -> keras.Model:
    x = inputs = keras.Input(shape=(SIZES[0],))
    for units in SIZES[1:-1]:
        x = ops.relu(Linear(units)(x))
    return keras.Model(inputs, ops.softmax(Linear(SIZES[-1])(x)))


def structure(model: keras.Model) -> list[tuple]:
    """The traced graph without its names: ops, attributes and types, in order."""
    return [(n.op, sorted((k, str(v)) for k, v in n.attrs.items()), [str(v.type) for v in n.outputs])
            for n in nncompile.trace(model).nodes]


def median_seconds(fns: list, repeats: int = 9) -> list[float]:
    """The median time of each of `fns`, run alternately."""
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, spent in zip(fns, times):
            start = time.perf_counter()
            fn()
            spent.append(time.perf_counter() - start)
    return [float(np.median(t)) for t in times]


def main() -> None:
    print(f"host: {nncompile.codegen.target.host_cpu()[0]}, {os.cpu_count()} cores\n")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4096, SIZES[0])).astype("float32")
    y = np.eye(SIZES[-1], dtype="float32")[rng.integers(0, SIZES[-1], 4096)]
    models = [built_in(), custom()]
    models[1].set_weights(models[0].get_weights())
    assert structure(models[0]) == structure(models[1]), "the two models trace to different IR"
    np.testing.assert_allclose(models[0].predict(x[:256], verbose=0),
                               models[1].predict(x[:256], verbose=0), rtol=1e-5, atol=1e-6)
    for model in models:
        model.compile(optimizer="sgd", loss="categorical_crossentropy")
        model.fit(x, y, batch_size=128, epochs=1, verbose=0)   # compile the step
    rows = []
    for batch in (1, 256):
        part = x[:batch]
        fns = [lambda m=m: m.predict_on_batch(part) for m in models]
        rows.append((f"predict, batch {batch}", *median_seconds(fns, 31)))
    fns = [lambda m=m: m.fit(x, y, batch_size=128, epochs=1, verbose=0, shuffle=False) for m in models]
    rows.append(("training epoch, batch 128", *median_seconds(fns, 5)))
    print("Same IR (ops, attributes, types): yes; same predictions: yes\n")
    print(table("Custom layers vs built-in layers", ("workload", "built-in", "custom", "ratio"),
                [(name, f"{a * 1e3:.3f} ms", f"{b * 1e3:.3f} ms", f"{b / a:.2f}x")
                 for name, a, b in rows]))


if __name__ == "__main__":
    main()

"""Compile time from an empty disk cache, phase by phase (`nncompile.phases`).

    python benchmarks/compile_time.py [WORKLOAD ...] [--repeats 1]

Each workload runs in a fresh process with an empty NNCOMPILE_CACHE_DIR (so the first compile
also starts the LLVM worker, as a user's first run does, and builds the GEMMs of the host's kernel
library that it needs, `codegen/library.py`), then again in a fresh process whose cache holds
only that library (a new model on a host that has compiled others before); it prints, for each
step it times,
the wall and CPU time per phase: trace (model -> IR, the training step with its gradients),
passes, plan (memory plan, buffer slots, cache key), LLVM IR (emission), LLVM worker (its start,
sending the module, waiting), LLVM parse, LLVM optimisation, machine code, disk cache, loading.
"other" is the rest of the step's wall time (the Python of fit / evaluate / predict, running).

Workloads (issue 15's goals: tutorial < 1 s for its three steps, dense10 < 2 s):
  tutorial  Input(100)-Dense(64, relu)-Dense(64, relu)-Dense(10, softmax), Adam, sparse CE with
            accuracy: the first fit (one epoch of 256 samples), evaluate and predict
  dense10   Input(512), ten Dense(512, relu), Dense(10, softmax): one training step
  W1 W2 W3  the peers' warm-up (`../shared/bench/peers.py --quick`): fit of 2 batches and the
            remainder for the Pima MLP 8-8-6-1 (batch 5), the MNIST MLP 784-128-10 (batch 32)
            and the CNN Conv32-Pool-Conv64-Pool-Dense10 on 32x32x3 (batch 64), Adam(1e-3)
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from host import cpu_model

WORKLOADS = ("tutorial", "dense10", "W1", "W2", "W3")


def _model(keras, inputs: tuple, layers: list):
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input(shape=inputs), *layers])


def _dense(keras, *widths: int, last: str) -> list:
    return [keras.layers.Dense(w, activation="relu") for w in widths[:-1]] + \
        [keras.layers.Dense(widths[-1], activation=last)]


def steps(name: str) -> list[tuple[str, object]]:
    """(step name, function) of a workload, in order; each function makes its first compile."""
    import numpy as np

    from nncompile import keras
    rng = np.random.default_rng(0)
    if name == "tutorial":
        m = _model(keras, (100,), _dense(keras, 64, 64, 10, last="softmax"))
        m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        x, y = rng.random((256, 100), dtype=np.float32), rng.integers(0, 10, 256)
        return [("fit", lambda: m.fit(x, y, epochs=1, batch_size=32, verbose=0)),
                ("evaluate", lambda: m.evaluate(x, y, verbose=0)),
                ("predict", lambda: m.predict(x[:5], verbose=0))]
    if name == "dense10":
        m = _model(keras, (512,), _dense(keras, *[512] * 10, 10, last="softmax"))
        m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        x, y = rng.random((32, 512), dtype=np.float32), rng.integers(0, 10, 32)
        return [("train_on_batch", lambda: m.train_on_batch(x, y))]
    inputs, layers, batch, loss, count = {
        "W1": ((8,), lambda: _dense(keras, 8, 6, 1, last="sigmoid"), 5, "binary_crossentropy", 14),
        "W2": ((784,), lambda: _dense(keras, 128, 10, last="softmax"), 32, "categorical_crossentropy", 64),
        "W3": ((32, 32, 3), lambda: [keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.MaxPooling2D(2),
                                     keras.layers.Conv2D(64, 3, activation="relu"), keras.layers.MaxPooling2D(2),
                                     keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")],
               64, "categorical_crossentropy", 168),
    }[name]
    m = _model(keras, inputs, layers())
    m.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3), loss=loss)
    x = rng.random((count, *inputs), dtype=np.float32)
    units = m.outputs[0].shape[-1]
    y = np.eye(units, dtype=np.float32)[rng.integers(0, units, count)] if units > 1 else \
        rng.integers(0, 2, (count, 1)).astype(np.float32)
    return [("warm-up fit", lambda: m.fit(x, y, batch_size=batch, epochs=1, verbose=0))]


def measure(name: str) -> list[dict]:
    """In this process: each step's wall time and phases, as JSON-able rows."""
    from nncompile import phases

    rows = []
    for step, run in steps(name):
        with phases.recorded() as times:
            start = time.perf_counter()
            run()
            wall = time.perf_counter() - start
        rows.append({"step": step, "wall": wall,
                     "phases": {p: [s.wall, s.cpu] for p, s in times.items()}})
    return rows


def _child(name: str, cache: str) -> list[dict]:
    env = {**os.environ, "NNCOMPILE_CACHE_DIR": cache}
    out = subprocess.run([sys.executable, __file__, "--child", name], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.splitlines()[-1])


def in_fresh_processes(name: str) -> tuple[list[dict], list[dict]]:
    """The workload's rows on a cold host (an empty cache) and, in a second process, with only
    the kernel library that the first built in the cache (the model's own code not cached)."""
    with tempfile.TemporaryDirectory(prefix="nncompile-compile-time-") as cold, \
            tempfile.TemporaryDirectory(prefix="nncompile-compile-time-") as warm:
        first = _child(name, cold)
        library = pathlib.Path(cold) / "library"
        if library.is_dir():
            shutil.copytree(library, pathlib.Path(warm) / "library")
        return first, _child(name, warm)


def report(name: str, runs: list[list[dict]], cache: str) -> None:
    """The median over runs of each step's phases (wall and CPU ms), and of the steps' total."""
    from nncompile import phases

    total = statistics.median(sum(row["wall"] for row in run) for run in runs)
    print(f"\n== {name}, {cache}: {total:.2f} s for {', '.join(r['step'] for r in runs[0])} "
          f"(median of {len(runs)} runs)")
    for k, row in enumerate(runs[0]):
        times = {p: phases.Spent(statistics.median(run[k]["phases"][p][0] for run in runs),
                                 statistics.median(run[k]["phases"][p][1] for run in runs))
                 for p in row["phases"]}
        print(f"-- {row['step']}, {statistics.median(run[k]['wall'] for run in runs) * 1e3:.0f} ms")
        print(phases.table(times, statistics.median(run[k]["wall"] for run in runs)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workloads", nargs="*", metavar="WORKLOAD", help=", ".join(WORKLOADS))
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child)))
        return
    unknown = sorted(set(args.workloads) - set(WORKLOADS))
    if unknown:
        parser.error(f"unknown workload {unknown[0]!r}; expected some of {', '.join(WORKLOADS)}")
    print(f"{cpu_model()}, {os.cpu_count()} cores; cold compiles (empty disk cache), "
          f"each workload in a fresh process")
    for name in args.workloads or WORKLOADS:
        runs = [in_fresh_processes(name) for _ in range(args.repeats)]
        report(name, [cold for cold, _ in runs], "empty cache (the host's kernel library built too)")
        report(name, [warm for _, warm in runs], "the kernel library cached, the model not")


if __name__ == "__main__":
    main()

"""Training from a `keras.utils.PyDataset` against training from the same data as arrays, and the
memory of a fit over a data set larger than memory should need, generated batch by batch.

    python benchmarks/streaming.py                 # both parts; the large one streams 2 GB
    python benchmarks/streaming.py --gigabytes 0.5 # a smaller large part

Part 1, throughput: the MNIST MLP (784-128(relu)-10(softmax), Adam, categorical crossentropy,
batch 128) on 60,000 synthetic samples, one epoch a fit, shuffled. Arrays: `fit(x, y)`. Stream:
`fit(dataset)`, a PyDataset whose `__getitem__` slices the same arrays (in memory, so the
comparison measures nncompile's streaming, not a disk). Medians of interleaved repeats after a
warm-up fit of each (which holds the compile); the machine may be shared, so read the ratio.

Part 2, memory: a PyDataset that generates `--gigabytes` of MNIST-shaped float32 samples batch
by batch (a fresh random batch each index, never stored), one epoch of fit. Reported: the peak
resident set size of the process (ru_maxrss) before and after the fit, against the data's size.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from cpu import mlp, table  # noqa: E402
from nncompile import keras  # noqa: E402

BATCH = 128
SAMPLES = 60_000


class Slices(keras.utils.PyDataset):
    """Batches sliced from arrays held in memory."""

    def __init__(self, x, y, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y = x, y

    def __len__(self):
        return -(-len(self.x) // BATCH)

    def __getitem__(self, index):
        part = slice(index * BATCH, (index + 1) * BATCH)
        return self.x[part], self.y[part]


class Generated(keras.utils.PyDataset):
    """`batches` batches of random MNIST-shaped samples, made when asked for."""

    def __init__(self, batches: int, **kwargs):
        super().__init__(**kwargs)
        self.batches = batches

    def __len__(self):
        return self.batches

    def __getitem__(self, index):
        rng = np.random.default_rng(index)
        x = rng.random((BATCH, 784), dtype=np.float32)
        return x, np.eye(10, dtype=np.float32)[rng.integers(0, 10, BATCH)]


def compiled_mlp() -> keras.Model:
    model = mlp()
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    return model


def throughput_rows(repeats: int) -> list[tuple]:
    rng = np.random.default_rng(0)
    x = rng.random((SAMPLES, 784), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, SAMPLES)]
    arrays, stream = compiled_mlp(), compiled_mlp()
    runs = {"arrays": lambda: arrays.fit(x, y, batch_size=BATCH, verbose=0),
            "PyDataset": lambda: stream.fit(Slices(x, y), verbose=0)}
    for run in runs.values():
        run()   # the compile
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    steps = -(-SAMPLES // BATCH)
    rate = {name: steps / statistics.median(t) for name, t in times.items()}
    return [("arrays", f"{rate['arrays']:.0f} steps/s", "1.00"),
            ("PyDataset", f"{rate['PyDataset']:.0f} steps/s",
             f"{rate['PyDataset'] / rate['arrays']:.2f}")]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # kilobytes on Linux


def memory_rows(gigabytes: float) -> list[tuple]:
    batch_bytes = BATCH * (784 + 10) * 4
    batches = int(gigabytes * 2**30 // batch_bytes)
    model = compiled_mlp()
    model.fit(Generated(2), verbose=0)   # the compile, before the baseline
    before = peak_rss_mb()
    start = time.perf_counter()
    model.fit(Generated(batches), verbose=0)
    seconds = time.perf_counter() - start
    after = peak_rss_mb()
    return [("data streamed", f"{batches * batch_bytes / 2**20:,.0f} MB", f"{batches:,} batches"),
            ("peak RSS before the fit", f"{before:,.0f} MB", ""),
            ("peak RSS after the fit", f"{after:,.0f} MB", f"+{after - before:,.0f} MB"),
            ("time", f"{seconds:.1f} s", f"{batches / seconds:.0f} steps/s")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gigabytes", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(table(f"MNIST MLP, batch {BATCH}, one epoch of {SAMPLES:,} samples",
                ("data", "throughput", "vs arrays"), throughput_rows(args.repeats)))
    print()
    print(table("fit over a generated PyDataset", ("what", "figure", "note"),
                memory_rows(args.gigabytes)))


if __name__ == "__main__":
    main()

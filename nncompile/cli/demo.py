"""`nncompile demo`: train the Pima MLP on generated data and show its progress, metrics and IR."""
from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np

import nncompile


def pima_like_data(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Eight features in the ranges of the Pima diabetes data, and a label drawn from a logistic
    rule over glucose, BMI, age and pregnancies (generated: the demo needs no download)."""
    rng = np.random.default_rng(seed)
    x = np.column_stack([
        rng.poisson(3.8, count), rng.normal(121, 32, count).clip(40, 200),
        rng.normal(69, 19, count).clip(0, 122), rng.normal(20, 16, count).clip(0, 99),
        rng.gamma(1.0, 80, count).clip(0, 846), rng.normal(32, 7.9, count).clip(0, 67),
        rng.gamma(2.0, 0.24, count).clip(0.08, 2.4), rng.gamma(3.0, 11, count).clip(21, 81),
    ]).astype(np.float32)
    logit = 0.035 * (x[:, 1] - 121) + 0.09 * (x[:, 5] - 32) + 0.03 * (x[:, 7] - 33) + 0.1 * (x[:, 0] - 3.8) - 0.6
    y = (rng.random(count) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    return x, y


def demo(args: argparse.Namespace) -> int:
    """Build, train, evaluate and print the fused IR of the Pima 8-12-8-1 MLP."""
    from nncompile import keras

    keras.utils.set_random_seed(args.seed)
    dump_dir = args.dump_dir or tempfile.mkdtemp(prefix="nncompile-demo-")
    os.environ["NNCOMPILE_DUMP_DIR"] = dump_dir
    x, y = pima_like_data(768, args.seed)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    model = keras.Sequential([
        keras.Input(shape=(8,)),
        keras.layers.Dense(12, activation="relu"),
        keras.layers.Dense(8, activation="relu"),
        keras.layers.Dense(1, activation="sigmoid"),
    ], name="pima_mlp")
    model.summary()
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    print(f"\nTraining on {len(x)} generated Pima-like samples (one compiled step per batch):")
    model.fit(x, y, epochs=args.epochs, batch_size=10, validation_split=0.2, verbose=1)
    loss, accuracy = model.evaluate(x, y, verbose=0)
    print(f"\nfinal: loss {loss:.4f}, accuracy {accuracy:.4f}")
    probabilities = model.predict(x[:4], verbose=0).ravel()
    print("predict on 4 samples:", ", ".join(f"{p:.4f}" for p in probabilities))
    print("\nThe inference graph after fusion (nncompile IR):\n")
    print(nncompile.compile(nncompile.trace(model)).graph)
    print(f"\nIR after every pass (train_step/, test_step/, main/): {dump_dir}")
    return 0

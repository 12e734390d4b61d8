"""The `nncompile` console script run in a subprocess, and small model files to run it on."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest

import nncompile
from nncompile import keras


def console_script() -> list[str]:
    """The installed `nncompile` script next to this Python, else on PATH, else `python -m`."""
    beside = os.path.join(os.path.dirname(sys.executable), "nncompile")
    if os.path.exists(beside):
        return [beside]
    found = shutil.which("nncompile")
    return [found] if found else [sys.executable, "-m", "nncompile.cli"]


def nnc(*args: str, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    """Run `nncompile ARGS`; the test session's environment (cache dir, verify) is inherited."""
    return subprocess.run([*console_script(), *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd, timeout=120)


@dataclass
class TinyModel:
    """A 4 -> Dense(3, relu) -> Dense(2, softmax) model as IR text with its weights, as a Keras
    model, and a batch of 5 inputs."""

    model: object
    graph: nncompile.ir.Graph
    nnir: str
    params: str
    x: str


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> TinyModel:
    folder = tmp_path_factory.mktemp("tiny")
    keras.utils.set_random_seed(3)
    # Explicit names: the tests refer to them, whatever models other tests made first.
    model = keras.Sequential([keras.Input(shape=(4,), name="input_layer"),
                              keras.layers.Dense(3, activation="relu", name="dense"),
                              keras.layers.Dense(2, activation="softmax", name="dense_1")], name="tiny")
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    graph = nncompile.trace(model)
    paths = {name: str(folder / name) for name in ("tiny.nnir", "params.npz", "x.npy")}
    with open(paths["tiny.nnir"], "w") as f:
        f.write(f"{graph}\n")
    np.savez(paths["params.npz"], **graph.params)
    np.save(paths["x.npy"], np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32))
    return TinyModel(model, graph, paths["tiny.nnir"], paths["params.npz"], paths["x.npy"])

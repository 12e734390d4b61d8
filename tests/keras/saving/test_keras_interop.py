"""Real Keras 3 reads what nncompile writes, and nncompile reads what Keras writes, at test time.

Runs only where `keras` (3.x) and one of its backends are importable; our CI has neither, so there
it is skipped and tests/fixtures/keras/check_nncompile_files.py (run by hand with the side venv)
gives the same evidence. The models are those of tests/fixtures/keras/architectures.py, built once
with `nncompile.keras` and once with real Keras, trained two epochs so the files carry optimizer
state.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from nncompile import keras as nn_keras
from nncompile.keras.saving import load_model


def _real_keras():
    """Real Keras 3, or skip. Asked of the installed distributions, not of `import keras`, which
    would find tests/keras/ as a namespace package when pytest puts tests/ on sys.path."""
    try:
        version = importlib.metadata.version("keras")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("real Keras 3 is not installed (tests/fixtures/keras/check_nncompile_files.py "
                    "is the by-hand check)", allow_module_level=True)
    if int(version.split(".")[0]) < 3:
        pytest.skip(f"needs real Keras 3, found keras {version}", allow_module_level=True)
    backend = os.environ.get("KERAS_BACKEND") or next(
        (b for b in ("jax", "tensorflow", "torch") if importlib.util.find_spec(b)), None)
    if backend is None:
        pytest.skip(f"keras {version} is installed but none of its backends is", allow_module_level=True)
    os.environ["KERAS_BACKEND"] = backend
    return importlib.import_module("keras")


real_keras = _real_keras()


def _load_architectures():
    path = Path(__file__).resolve().parents[2] / "fixtures" / "keras" / "architectures.py"
    spec = importlib.util.spec_from_file_location("keras_fixture_architectures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


arch = _load_architectures()
TOLERANCE = 1e-5
CASES = [(name, suffix) for name in arch.NAMES for suffix in (".keras", ".h5")]


def _trained(keras_module, name: str):
    model = arch.build(keras_module, name)
    inputs, targets = arch.data(name)
    arch.train(model, inputs, targets)
    return model, inputs, targets


def _assert_close(got: list[np.ndarray], want: list[np.ndarray], what: str) -> None:
    assert len(got) == len(want), what
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=0, atol=TOLERANCE, err_msg=what)


def _optimizer_facts(optimizer) -> tuple[str, float, int]:
    return (type(optimizer).__name__, round(float(np.asarray(optimizer.learning_rate)), 7),
            int(np.asarray(optimizer.iterations)))


@pytest.mark.parametrize("name, suffix", CASES)
def test_keras_loads_what_nncompile_saves(tmp_path, name, suffix):
    model, inputs, targets = _trained(nn_keras, name)
    path = str(tmp_path / f"{name}{suffix}")
    model.save(path)
    theirs = real_keras.models.load_model(path)
    _assert_close(arch.predict(theirs, inputs), arch.predict(model, inputs), f"Keras predicting nncompile's {name}{suffix}")
    assert _optimizer_facts(theirs.optimizer) == _optimizer_facts(model.optimizer)
    if suffix == ".keras":   # Keras 3 cannot train a model it reloaded from a legacy .h5 (its own too)
        _assert_close(arch.one_more_batch(theirs, inputs, targets), arch.one_more_batch(model, inputs, targets),
                      f"Keras training nncompile's {name}{suffix} one more batch")


@pytest.mark.parametrize("name, suffix", CASES)
def test_nncompile_loads_what_keras_saves(tmp_path, name, suffix):
    model, inputs, targets = _trained(real_keras, name)
    path = str(tmp_path / f"{name}{suffix}")
    model.save(path)
    ours = load_model(path)
    _assert_close(arch.predict(ours, inputs), arch.predict(model, inputs), f"nncompile predicting Keras's {name}{suffix}")
    assert _optimizer_facts(ours.optimizer) == _optimizer_facts(model.optimizer)
    _assert_close(arch.one_more_batch(ours, inputs, targets), arch.one_more_batch(model, inputs, targets),
                  f"nncompile training Keras's {name}{suffix} one more batch")


@pytest.mark.parametrize("name", arch.NAMES)
def test_weights_files_cross_both_ways(tmp_path, name):
    """`save_weights` of one loads with `load_weights` into the same architecture built by the other."""
    ours, inputs, _ = _trained(nn_keras, name)
    theirs, _, _ = _trained(real_keras, name)
    ours_file, theirs_file = str(tmp_path / "ours.weights.h5"), str(tmp_path / "theirs.weights.h5")
    ours.save_weights(ours_file)
    theirs.save_weights(theirs_file)
    fresh_theirs, fresh_ours = arch.build(real_keras, name), arch.build(nn_keras, name)
    fresh_theirs.load_weights(ours_file)
    fresh_ours.load_weights(theirs_file)
    _assert_close(arch.predict(fresh_theirs, inputs), arch.predict(ours, inputs), f"Keras with nncompile's {name} weights")
    _assert_close(arch.predict(fresh_ours, inputs), arch.predict(theirs, inputs), f"nncompile with Keras's {name} weights")

"""`nncompile bench` draws inputs the model accepts: token ids into an Embedding are valid indices
of its table, whether the Input holding them is float (as Keras allows) or integer."""
from __future__ import annotations

import numpy as np
import pytest

import nncompile
from nncompile import keras
from nncompile.cli.commands import _sample
from tests.cli.conftest import nnc


@pytest.mark.parametrize("dtype", ["float32", "int32"])
def test_token_inputs_are_drawn_within_the_embedding_table(dtype):
    model = keras.Sequential([keras.Input((50,), dtype=dtype), keras.layers.Embedding(7, 4),
                              keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(1)])
    tokens, = _sample(nncompile.trace(model), 64, np.random.default_rng(0))
    assert tokens.shape == (64, 50) and tokens.dtype == np.dtype(dtype)
    assert set(np.unique(tokens)) == set(range(7))      # every row of the table, none outside


def test_bench_runs_a_float_input_feeding_an_embedding(tmp_path):
    pytest.importorskip("nncompile.keras.saving")
    model = keras.Sequential([keras.Input((20,)), keras.layers.Embedding(1000, 8),
                              keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(1)])
    path = str(tmp_path / "tokens.keras")
    model.save(path)
    result = nnc("bench", path, "--batch", "1,8", "--seconds", "0.05")
    assert result.returncode == 0, result.stderr
    assert [line.split()[0] for line in result.stdout.splitlines()[2:]] == ["1", "8"]

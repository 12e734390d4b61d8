"""A recurrent loop over a few rows run by a team of threads that splits the units
(`codegen/scan_team.py`), against numpy loops written from Keras's equations."""
from __future__ import annotations

import threading

import numpy as np
import pytest

import nncompile
from nncompile import keras
from nncompile.codegen import parallel, scan_team
from nncompile.codegen.scan_team import unit_split
from nncompile.ir import BATCH, Builder, TensorType, f32
from nncompile.ir.ops.scan import independent_rows
from nncompile.runtime.reference import run
from tests.keras import recurrent_reference as ref
from tests.runtime.cpu_harness import lstm_body

FEATURES = 24
needs_two = pytest.mark.skipif(parallel.num_threads() < 2, reason="a team needs two threads")


def _scan_node(exe):
    return next(n for n in exe.graph.nodes if n.op == "scan")


def _split_of(exe):
    """The loop's split by units, None when it has none; the code of one is then in the module."""
    node = _scan_node(exe)
    symbol = independent_rows(node)
    split = None if symbol is None else unit_split(node, symbol)
    assert (split is not None) == (".team" in exe._module_text)
    return split


def _time_major_lstm(steps, units=128, gate_starts=None):
    """An LSTM step written as IR, scanned along axis 0 over `steps` (an int or a symbol); the
    gates sliced at `gate_starts` (default k * U; negative starts count from the end)."""
    rng = np.random.default_rng(0)
    b = Builder()
    x = b.input("x", TensorType(f32, (steps, BATCH, FEATURES)))
    kernel = b.param("kernel", rng.standard_normal((FEATURES, 4 * units)).astype(np.float32) * 0.3)
    recurrent = b.param("recurrent", rng.standard_normal((units, 4 * units)).astype(np.float32) * 0.05)
    zero = b.broadcast(b.constant(np.float32(0)), shape=[BATCH, units])
    h, c, seq = b.scan(zero, zero, b.matmul(x, kernel), recurrent, body=lstm_body(units, gate_starts=gate_starts),
                       num_carry=2, num_scanned=1, axis=0)
    return b.finish([h, c, seq], ["h", "c", "seq"])


def _model(layer, steps: int):
    return keras.Sequential([keras.Input((steps, FEATURES)), layer])


CELLS = {
    # name: (layer, numpy step, state sizes, units per state)
    "lstm": (lambda: keras.layers.LSTM(128, return_sequences=True), ref.lstm_step, 2),
    "lstm_ragged_backwards": (lambda: keras.layers.LSTM(100, return_sequences=True, go_backwards=True),
                              ref.lstm_step, 2),
    "gru": (lambda: keras.layers.GRU(112, return_sequences=True), ref.gru_step, 1),
    "simple_rnn": (lambda: keras.layers.SimpleRNN(192, return_sequences=True), ref.simple_step, 1),
}


@pytest.fixture
def team_up_to_64_rows(monkeypatch):
    """Loops over up to 64 rows run as a team whatever the measured limit (65 do not)."""
    monkeypatch.setattr(scan_team, "TEAM_ROWS", 64)


def _rows(exe, model, weights, step, states, batch, steps, rng, backwards=False):
    x = rng.standard_normal((batch, steps, FEATURES)).astype(np.float32)
    want, _, _ = ref.run(step(weights), x, ref.zeros_like_states(batch, states), backwards=backwards)
    ref.close(np.asarray(exe(x)), want)


@needs_two
@pytest.mark.parametrize("steps", [1, 2, 17])
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_rows_split_by_units_match_numpy(cell, steps, team_up_to_64_rows):
    """One row (its GEMM the few-rows path), a few and 64 (the packed GEMM) as a team; 65 as
    blocks of rows; all from one executable, the rows symbolic."""
    make, step, states = CELLS[cell]
    layer = make()
    model = _model(layer, steps)
    rng = np.random.default_rng(steps)
    weights = ref.randomize(layer, rng, scale=0.05)   # contracting: rounding does not grow over the steps
    exe = nncompile.compile(nncompile.trace(model))
    split = _split_of(exe)
    assert split is not None and split.units == layer.units
    for batch in (1, 2, 3, 64, 65):
        _rows(exe, model, weights, step, [layer.units] * states, batch, steps, rng,
              backwards=getattr(layer, "go_backwards", False))


@needs_two
def test_loops_the_team_cannot_split_are_left_alone():
    second_product = _model(keras.layers.GRU(112, reset_after=False), 3)     # (r * h) @ R_h: units meet twice
    small = _model(keras.layers.SimpleRNN(32), 3)                            # 4 KB of weights: not worth a barrier
    for model in (second_product, small):
        assert _split_of(nncompile.compile(nncompile.trace(model))) is None


@needs_two
def test_a_busy_pool_leaves_the_caller_all_the_blocks(team_up_to_64_rows):
    """Two Python threads run team loops at once (one row and four): the pool serves one caller
    at a time, so the other runs its blocks' tasks one after the other on its own thread (the
    first does every block of every step, the second finds them done), and both give numpy's
    answer every time."""
    layer = keras.layers.LSTM(128)
    model = _model(layer, 9)
    weights = ref.randomize(layer, np.random.default_rng(0), scale=0.05)
    graph = nncompile.trace(model)
    exes = [nncompile.compile(graph) for _ in range(2)]
    xs = [np.random.default_rng(i).standard_normal((rows, 9, FEATURES)).astype(np.float32)
          for i, rows in enumerate((1, 4))]
    wants = [ref.run(ref.lstm_step(weights), x, ref.zeros_like_states(len(x), [128, 128]))[1] for x in xs]
    errors = []

    def run(i):
        for _ in range(200):
            got = np.asarray(exes[i](xs[i]))
            if not np.allclose(got, wants[i], rtol=2e-5, atol=2e-5):
                errors.append((i, np.abs(got - wants[i]).max()))
                return

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


@pytest.mark.parametrize("units, gates, threads, expected", [
    (128, 4, 2, (2, 64)),      # LSTM(128) on two cores: 64 units each
    (100, 4, 2, (2, 64)),      # whole vectors: 64 and 36
    (128, 4, 64, (4, 32)),     # 256 KB of weights: four blocks of 64 KB at most, however many cores
    (192, 1, 8, (2, 96)),      # SimpleRNN(192): 144 KB, two blocks
])
def test_blocks_are_whole_vectors_and_not_too_small(monkeypatch, units, gates, threads, expected):
    monkeypatch.setattr(scan_team.parallel, "num_threads", lambda: threads)
    monkeypatch.setattr(scan_team, "vector_lanes", lambda itemsize: 64 // itemsize)   # AVX-512
    split = scan_team.UnitSplit(units, gates, None, None, None, {})
    assert scan_team.members(split, 4) == expected


@needs_two
def test_gates_sliced_from_the_end_and_loops_of_no_step(team_up_to_64_rows):
    """Slices [-3U, -2U) read the same gate as [U, 2U); a symbolic length of 0 runs no step.
    The loops run along axis 0, the rows second (time-major)."""
    units = 128
    from_end = _time_major_lstm(5, gate_starts=[0, -3 * units, 2 * units, -units])
    exe = nncompile.compile(from_end)
    assert _split_of(exe) is not None
    for rows in (1, 3):
        x = np.random.default_rng(rows).standard_normal((5, rows, FEATURES)).astype(np.float32)
        for got, want in zip(exe(x), run(from_end, [x])):
            ref.close(got, want)
    symbolic = _time_major_lstm("T")
    exe = nncompile.compile(symbolic)
    assert _split_of(exe) is not None
    for steps, rows in ((3, 1), (0, 1), (2, 1), (3, 2), (0, 2)):
        x = np.random.default_rng(steps).standard_normal((steps, rows, FEATURES)).astype(np.float32)
        for got, want in zip(exe(x), run(symbolic, [x])):
            ref.close(got, want)

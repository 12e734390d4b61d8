"""The measured search for the GEMM blocking and its entry in the cache directory: the search picks
the fastest candidate by the clock it is given (a fake one here: no timings in tests), the winner
is what later code is generated with, NNCOMPILE_TUNE=0 ignores it, and a bad entry of any kind is
a miss that leaves the derived blocking in use."""
from __future__ import annotations

import ctypes
import os

import numpy as np
import pytest

import nncompile
from nncompile.codegen import blocking, gemm, host, target
from nncompile.codegen.blocking import Blocking
from nncompile.ir import BATCH, Builder, f32
from nncompile.ir.dtypes import DType
from nncompile.runtime import disk_cache, tuning

SHAPES = ((64, 64, 64), (128, 96, 300))


class FakeClock:
    """Seconds per (candidate, shape) from a table; the first call of each is 100x slower (as a
    compile would be) and must not count. Records the order of the calls."""

    def __init__(self, seconds: dict[Blocking, float], per_shape: dict | None = None):
        self.seconds, self.per_shape, self.calls = seconds, per_shape or {}, []

    def __call__(self, trial: Blocking, shape) -> float:
        first = (trial, shape) not in self.calls
        self.calls.append((trial, shape))
        value = self.per_shape[trial, shape] if self.per_shape else self.seconds[trial] * np.prod(shape)
        return value * (100 if first else 1)


def test_the_search_picks_the_fastest_by_its_clock_and_alternates():
    a, b, c = Blocking(768, 144), Blocking(384, 144), Blocking(768, 288)
    clock = FakeClock({a: 3.0, b: 1.0, c: 2.0})
    result = tuning.search([a, b, c], SHAPES, clock, rounds=3)
    assert result.best == b
    assert result.gflops[b][SHAPES[0]] == pytest.approx(2 / 1e9)   # 2 MNK flops / (1 s * MNK)
    shape0 = [trial for trial, shape in clock.calls if shape == SHAPES[0]]
    assert shape0 == [a, b, c] + [a, b, c] + [c, b, a] + [a, b, c]   # warm-up, then alternating rounds


def test_the_search_scores_by_the_geometric_mean_over_shapes():
    a, b = Blocking(768, 144), Blocking(384, 144)
    # a: 4x faster on the first shape, 2x slower on the second: better overall
    per_shape = {(a, SHAPES[0]): 1.0, (b, SHAPES[0]): 4.0, (a, SHAPES[1]): 2.0, (b, SHAPES[1]): 1.0}
    assert tuning.search([a, b], SHAPES, FakeClock({}, per_shape), rounds=3).best == a


def test_candidates_surround_the_start_within_the_bounds():
    start = Blocking(768, 312)
    found = tuning.candidates(start, 12)
    assert found[0] == start and len(found) == len(set(found)) == 9
    assert {t.kc for t in found} == {384, 768, 1024} and {t.mc for t in found} == {156, 312, 468}
    assert all(t.mc % 12 == 0 and blocking.KC_MIN <= t.kc <= blocking.KC_MAX for t in found)


def test_the_winner_is_kept_and_used_by_later_code(tuning_cache, monkeypatch):
    mr, nr = tuning.register_tile()
    winner = tuning.candidates(tuning.derived(), mr)[-1]
    clock = FakeClock({t: 1.0 if t == winner else 2.0 for t in tuning.candidates(tuning.derived(), mr)})
    assert tuning.tune(SHAPES, rounds=1, measure=clock).best == winner
    assert [p.suffix for p in tuning_cache.iterdir()] == [blocking.TUNING_SUFFIX]
    blocking._tuned_entry.cache_clear()            # as a later process reads it
    assert blocking.tuned(mr, nr) == winner
    t = gemm.tiling(DType.f32)
    assert (t.kc, t.mc) == (winner.kc, winner.mc)
    t64 = gemm.tiling(DType.f64)                   # f64 is not tuned: derived
    assert blocking.Blocking(t64.kc, t64.mc) == blocking.derive(host.caches(), 8, t64.mr, t64.nr)
    monkeypatch.setenv(blocking.TUNE_ENV, "0")
    derived = tuning.derived()
    assert (gemm.tiling(DType.f32).kc, gemm.tiling(DType.f32).mc) == (derived.kc, derived.mc)


def test_a_bad_tune_setting_names_the_variable(tuning_cache, monkeypatch):
    monkeypatch.setenv(blocking.TUNE_ENV, "yes")
    with pytest.raises(ValueError, match="^NNCOMPILE_TUNE is 'yes'; expected 0 .* or 1"):
        gemm.tiling(DType.f32)


def _emit_ir(tuned: Blocking | None) -> str:
    blocking._tuned_entry.cache_clear()
    if tuned is not None:
        blocking.store(tuned, *tuning.register_tile(), measured={})
    module = target.new_module("g")
    gemm.emit_gemm(module, "g", DType.f32)
    return module


def test_tuned_blocking_is_in_the_generated_code_and_correct(tuning_cache):
    """A deep product split into many K blocks of a small tuned KC, and a small MC: the code
    differs from the derived blocking's, and still computes A @ B."""
    derived_ir = str(_emit_ir(None))
    module = _emit_ir(Blocking(64, 2 * tuning.register_tile()[0]))
    assert str(module) != derived_ir
    jit = target.JitModule(module)
    fn = ctypes.CFUNCTYPE(None, *[ctypes.c_int64] * 3, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p,
                          ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64)(jit.address("g"))
    rng = np.random.default_rng(0)
    m, n, k = 150, 70, 700
    a, b = rng.standard_normal((m, k), np.float32), rng.standard_normal((k, n), np.float32)
    c = np.empty((m, n), np.float32)
    fn(m, n, k, a.ctypes.data, k, b.ctypes.data, n, c.ctypes.data, n)
    np.testing.assert_allclose(c, a.astype(np.float64) @ b, rtol=1e-5, atol=1e-4)


def _corruptions(good: bytes, entry, other_key: str):
    """Ways an entry can be bad, each making the entry file from nothing."""
    header = disk_cache._HEADER.size
    valid_but = lambda payload: lambda: (disk_cache.write(blocking.tuning_key(), payload,  # noqa: E731
                                                          blocking.TUNING_SUFFIX))
    return {
        "empty": lambda: entry.write_bytes(b""),
        "truncated": lambda: entry.write_bytes(good[:-3]),
        "header only": lambda: entry.write_bytes(good[:header]),
        "bit flip": lambda: entry.write_bytes(good[:header + 5] + bytes([good[header + 5] ^ 4]) + good[header + 6:]),
        "another key's entry": lambda: (disk_cache.write(other_key, good[header:], blocking.TUNING_SUFFIX),
                                        entry.write_bytes((entry.parent / f"{other_key}.tuning").read_bytes())),
        "FIFO": lambda: os.mkfifo(entry),
        "link to a good entry": lambda: (entry.with_name("elsewhere").write_bytes(good),
                                         entry.symlink_to(entry.with_name("elsewhere"))),
        "link to /dev/zero": lambda: entry.symlink_to("/dev/zero"),
        "directory": lambda: entry.mkdir(),
        "not JSON": valid_but(b"\xff{kc"),
        "another register tile": valid_but(good[header:].replace(b'"mr": ', b'"mr": 1')),
        "KC out of bounds": valid_but(good[header:].replace(b'"kc": 64', b'"kc": 64000')),
    }


def test_a_bad_tuning_entry_is_a_miss(tuning_cache):
    mr, nr = tuning.register_tile()
    derived = gemm.tiling(DType.f32)
    blocking.store(Blocking(64, mr), mr, nr, measured={})
    entry = tuning_cache / f"{blocking.tuning_key()}{blocking.TUNING_SUFFIX}"
    good = entry.read_bytes()
    blocking._tuned_entry.cache_clear()
    assert blocking.tuned(mr, nr) == Blocking(64, mr)
    for kind, corrupt in _corruptions(good, entry, "0" * 40).items():
        if entry.is_dir() and not entry.is_symlink():
            entry.rmdir()
        else:
            entry.unlink(missing_ok=True)
        corrupt()
        blocking._tuned_entry.cache_clear()
        assert blocking.tuned(mr, nr) is None, kind
        assert gemm.tiling(DType.f32) == derived, kind


def test_the_real_measure_runs_the_candidates_gemm(tuning_cache):
    """The clock `nncompile tune` uses times a GEMM compiled with the candidate's blocking."""
    measure = tuning.CompiledGemms()
    shape = (40, 50, 300)
    assert measure(Blocking(64, tuning.register_tile()[0]), shape) > 0
    a, b, c = measure.operands(shape)
    np.testing.assert_allclose(c, a.astype(np.float64) @ b, rtol=1e-5, atol=1e-4)


def test_a_models_cache_key_covers_the_tuned_blocking(tuning_cache):
    b = Builder()
    x = b.input("x", f32[BATCH, 40])
    graph = b.finish([b.op("matmul", x, b.param("w", np.ones((40, 30), np.float32)))], ["y"])
    derived_key = nncompile.compile(graph)._key
    blocking.store(Blocking(64, tuning.register_tile()[0]), *tuning.register_tile(), measured={})
    assert nncompile.compile(graph)._key != derived_key

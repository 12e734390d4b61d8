"""Compile time per phase: every phase of a cold compile is counted once, and nested phases are
taken out of the phase around them."""
from __future__ import annotations

import time

import numpy as np

import nncompile
from nncompile import phases
from nncompile.ir import BATCH, Builder, f32


def test_a_phase_inside_another_is_taken_out_of_it():
    with phases.recorded() as times:
        with phases.timed("outer"):
            time.sleep(0.02)
            with phases.timed("inner"):
                time.sleep(0.03)
            phases.add("elsewhere", 0.5, 0.5, in_this_thread=False)
    assert 0.03 <= times["inner"].wall < 0.5
    assert times["elsewhere"].wall == times["elsewhere"].cpu == 0.5
    # the outer phase keeps its own 20 ms of wall time, less the 0.5 s said to be spent
    # elsewhere while it ran; its CPU time is not charged with CPU time another process spent
    own = times["outer"].wall + 0.5
    assert 0.015 <= own < 0.5
    assert times["outer"].cpu > -0.01


def test_recordings_nest_and_each_ends_with_its_block():
    with phases.recorded() as outer:
        with phases.recorded() as inner:    # both empty, so equal: each must still end its own
            pass
        with phases.timed("passes"):
            pass
    assert "passes" in outer and not inner


def test_nothing_is_counted_outside_a_recording_and_a_phase_opened_twice_counts_once():
    phases.add("trace", 1.0, 1.0)       # no recording open: ignored
    with phases.recorded() as times:
        with phases.timed("trace"):
            with phases.timed("trace"):
                time.sleep(0.01)
    assert 0.01 <= times["trace"].wall < 0.5


def test_a_cold_compile_has_every_phase_and_they_add_up_to_at_most_its_time(tmp_path, monkeypatch):
    monkeypatch.setenv("NNCOMPILE_CACHE_DIR", str(tmp_path))
    b = Builder()
    x = b.input("x", f32[BATCH, 3])
    graph = b.finish([b.tanh(b.mul(x, b.param("w", np.full(3, 2, np.float32))))], ["y"])
    start = time.perf_counter()
    with phases.recorded() as times:
        exe = nncompile.compile(graph)
    total = time.perf_counter() - start
    assert not exe.from_cache
    for phase in ("passes", "plan", "LLVM IR", "LLVM worker", "LLVM parse", "LLVM optimisation",
                  "machine code", "disk cache", "loading"):
        assert times[phase].wall >= 0, phase
    assert sum(s.wall for s in times.values()) <= total
    assert "LLVM optimisation" in phases.table(times, total)

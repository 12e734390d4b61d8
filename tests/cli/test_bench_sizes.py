"""`nncompile bench` at a batch no machine holds: one line naming the input and its size, exit 1,
before any input is drawn (not a MemoryError traceback, nor a kill)."""
from __future__ import annotations

from tests.cli.conftest import nnc


def test_bench_refuses_a_batch_beyond_the_machines_memory(tiny):
    result = nnc("bench", tiny.nnir, "--params", tiny.params, "--batch", "100000000000", "--seconds", "0.05")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert ("at sizes {'?': 100000000000}: input %input_layer (f32[?,4]) needs 1.49e+03 GiB "
            "(1600000000000 bytes), more than this machine's memory") in lines[0]

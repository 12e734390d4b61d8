"""Seeded fuzzing of what nncompile reads (tests/fuzz_cases.py): mutated IR text, cached machine
code and model configs, each domain in a child process with a time limit, so that a crash or a
hang fails the test. Every case ends in the reference interpreter's results or a documented error."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

_CASES = pathlib.Path(__file__).with_name("fuzz_cases.py")


@pytest.mark.parametrize("domain, count", [("ir", 120), ("cache", 12), ("config", 150)])
def test_mutated_inputs_give_reference_results_or_documented_errors(tmp_path, domain, count):
    env = {**os.environ, "NNCOMPILE_CACHE_DIR": str(tmp_path)}
    try:
        child = subprocess.run([sys.executable, str(_CASES), domain, "20261206", str(count)], env=env,
                               capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        pytest.fail(f"fuzzing {domain}: the child process hung")
    assert child.returncode == 0, f"fuzzing {domain}: exit {child.returncode}\n{child.stderr[-6000:]}"
    summary = json.loads(child.stdout.strip().splitlines()[-1])
    assert summary["cases"] == count and summary["failures"] == 0
    # the mutations must reach compiled code, not only the parsers
    assert summary["outcomes"].get("ran", 0) >= count // 10, summary

"""NNCOMPILE_CPU forces the AVX2 and the generic x86-64 (SSE2) code paths on an AVX-512 host: models
(a Dense MLP's inference and training steps, Conv2D, LSTM, softmax and layer normalization) and
GEMMs of ragged sizes, every transpose, few rows and few columns still match the reference
interpreter and numpy. Each runs in a child process, since the host's facts are read once."""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from nncompile.codegen import host

CHILD = pathlib.Path(__file__).with_name("forced_isa_child.py")


def _host_has(level: str) -> bool:
    present = set(host.native_cpu()[1].split(","))
    return all(f in present for f in host.LEVELS[level][1].split(","))


@pytest.mark.parametrize("group", ["dense", "conv_lstm_norm", "gemm"])
@pytest.mark.parametrize("level", ["avx2", "x86-64"])
def test_forced_level_compiles_and_matches_the_reference(level, group, tmp_path):
    if not _host_has(level):
        pytest.skip(f"this CPU cannot run {level} code")
    env = {**os.environ, host.CPU_ENV: level, "NNCOMPILE_CACHE_DIR": str(tmp_path)}
    child = subprocess.run([sys.executable, str(CHILD), level, group], env=env, capture_output=True,
                           text=True, timeout=600, cwd=CHILD.parent)
    assert child.returncode == 0, child.stderr[-3000:]
    assert child.stdout.strip().endswith("ok")

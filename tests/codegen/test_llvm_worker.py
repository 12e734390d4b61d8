"""The LLVM worker process: LLVM's optimizer runs there, so what it leaks is not the user's
process's, a worker that dies is replaced, and bad IR is an error naming the problem."""
from __future__ import annotations

import os
import signal

import numpy as np
import pytest

import nncompile
from nncompile.codegen import llvm_worker, target
from nncompile.ir import BATCH, Builder, IRError, f32
from nncompile.runtime.reference import run as reference_run


def _graph(width: int):
    b = Builder()
    x = b.input("x", f32[BATCH, 4])
    w = b.param("w", np.linspace(-1, 1, 4 * width, dtype=np.float32).reshape(4, width))
    return b.finish([b.op("tanh", b.op("matmul", x, w))], ["y"])


def _compiles_correctly(width: int) -> None:
    graph = _graph(width)
    x = np.linspace(-2, 2, 12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_allclose(nncompile.compile(graph)(x), reference_run(graph, [x])[0], rtol=1e-5, atol=1e-6)


def test_invalid_llvm_ir_is_an_error_naming_it():
    with pytest.raises(IRError, match="generated LLVM IR is invalid"):
        target.compile_object("define i32 @f() {\n  ret i64 0\n}\n")
    _compiles_correctly(3)   # the worker goes on serving


def test_a_worker_that_dies_is_replaced():
    _compiles_correctly(5)
    os.kill(llvm_worker._WORKER.process.pid, signal.SIGKILL)
    with pytest.raises(IRError, match="LLVM failed on the module .the LLVM worker was killed by signal 9"):
        target.compile_object(str(target.new_module("empty")))
    _compiles_correctly(6)


def test_a_worker_grown_past_its_limit_is_replaced(monkeypatch):
    _compiles_correctly(7)
    monkeypatch.setattr(llvm_worker, "WORKER_RSS_LIMIT", 0)
    first = llvm_worker._WORKER.process
    _compiles_correctly(8)
    assert llvm_worker._WORKER.process is None and first.poll() is not None   # stopped, not left behind
    _compiles_correctly(9)


def test_no_llvm_pass_pipeline_runs_in_this_process(monkeypatch):
    # A pass pipeline run keeps ~0.3 MB a module in the process that runs it (see llvm_worker);
    # benchmarks/compile_memory.py measures the growth over 200 cold compiles.
    import llvmlite.binding as llvm

    def refuse(*args, **kwargs):
        raise AssertionError("an LLVM pass pipeline ran in the user's process")

    monkeypatch.setattr(llvm, "create_pass_builder", refuse)
    _compiles_correctly(11)

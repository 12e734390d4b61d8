"""The LLVM worker process: LLVM's optimizer runs there, so what it leaks is not the user's
process's, a worker that dies is replaced, and bad IR is an error naming the problem."""
from __future__ import annotations

import os
import signal

import numpy as np
import pytest

import nncompile
from nncompile.codegen import library, llvm_worker, target
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


def _worker() -> llvm_worker._Worker:
    """The worker that answered the last request (requests here come one at a time)."""
    return llvm_worker._WORKERS.idle[-1]


def _module(name: str) -> str:
    module = target.new_module(name)
    fn = target.ir.Function(module, target.ir.FunctionType(target.ir.IntType(32), []), name)
    target.ir.IRBuilder(fn.append_basic_block()).ret(target.ir.Constant(target.ir.IntType(32), 7))
    return str(module)


def test_a_worker_that_dies_is_replaced():
    library.ready()      # no kernel of the library builds meanwhile: the workers are all idle
    target.compile_object(_module("started"))
    os.kill(_worker().process.pid, signal.SIGKILL)      # the worker the next request takes
    with pytest.raises(IRError, match="LLVM failed on the module .the LLVM worker was killed by signal 9"):
        target.compile_object(str(target.new_module("empty")))
    _compiles_correctly(6)


def test_a_request_to_a_worker_dead_before_it_is_the_same_error():
    """The request's bytes stay in the pipe's buffer when the worker is gone: closing the pipe
    must not turn the error naming the worker's end into a broken pipe."""
    library.ready()
    target.compile_object(_module("started"))
    process = _worker().process
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    with pytest.raises(IRError, match="LLVM failed on the module .the LLVM worker was killed by signal 9"):
        target.compile_object(_module("big") + "; padding\n" * 20000)
    _compiles_correctly(5)


def test_a_worker_grown_past_its_limit_is_replaced(monkeypatch):
    _compiles_correctly(7)
    monkeypatch.setattr(llvm_worker, "WORKER_RSS_LIMIT", 0)
    first = _worker().process
    _compiles_correctly(8)
    assert _worker().process is None and first.poll() is not None   # stopped, not left behind
    _compiles_correctly(9)


def test_no_llvm_pass_pipeline_runs_in_this_process(monkeypatch):
    # A pass pipeline run keeps ~0.3 MB a module in the process that runs it (see llvm_worker);
    # benchmarks/compile_memory.py measures the growth over 200 cold compiles.
    import llvmlite.binding as llvm

    def refuse(*args, **kwargs):
        raise AssertionError("an LLVM pass pipeline ran in the user's process")

    monkeypatch.setattr(llvm, "create_pass_builder", refuse)
    _compiles_correctly(11)


def test_an_interrupted_request_never_answers_the_next_one(monkeypatch):
    # Ctrl-C while waiting leaves the reply unread: the worker is stopped, not asked again.
    import pickle

    target.compile_object(_module("started"))
    load = pickle.load

    def interrupted(stream):
        monkeypatch.setattr(pickle, "load", load)
        raise KeyboardInterrupt

    monkeypatch.setattr(pickle, "load", interrupted)
    with pytest.raises(KeyboardInterrupt):
        target.optimized(_module("first"))
    got = target.optimized(_module("second"))
    assert "@second" in got and "@first" not in got


def test_a_python_that_cannot_run_the_worker_is_named(monkeypatch):
    llvm_worker._WORKERS.close()
    monkeypatch.setattr(llvm_worker.sys, "executable", "/bin/true")
    with pytest.raises(IRError, match="the LLVM worker started with '/bin/true' did not start .the LLVM "
                                      "worker exited with 0.; it needs a Python that imports llvmlite"):
        target.compile_object(_module("never"))
    monkeypatch.setattr(llvm_worker.sys, "executable", "/no/such/python")
    with pytest.raises(IRError, match="cannot start the LLVM worker with '/no/such/python': No such file"):
        target.compile_object(_module("never"))


def test_a_forked_child_starts_its_own_worker():
    target.compile_object(_module("started"))
    parent_worker = _worker().process.pid
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:   # the child: compile, report which worker answered, leave at once
        ok = False
        try:
            ok = "@child" in target.optimized(_module("child")) and _worker().process.pid != parent_worker
        finally:
            os.write(write, b"1" if ok else b"0")
            os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1"
    assert "@parent" in target.optimized(_module("parent")) and _worker().process.pid == parent_worker


@pytest.mark.parametrize("cores", [1, 2])
def test_workers_started_ahead_answer_the_first_requests(monkeypatch, cores):
    """One per core (a module compiled in parts asks them at once); a second call starts none."""
    workers = llvm_worker._Workers()
    workers.most = 2     # the host's cores, whatever this machine has
    monkeypatch.setattr(llvm_worker, "_WORKERS", workers)
    monkeypatch.setattr(target, "workers", lambda: cores)
    target.start_worker()
    target.start_worker()
    assert len(workers.all) == cores
    started = list(workers.all)
    try:
        assert "@ahead" in target.optimized(_module("ahead"))
        assert workers.all == started
        for worker in started:
            with worker.lock:   # held until its start has finished: the other may still be starting
                assert worker.process is not None and worker.process.poll() is None
    finally:
        workers.close()


def test_a_worker_that_cannot_start_ahead_says_why_when_asked(monkeypatch):
    workers = llvm_worker._Workers()
    monkeypatch.setattr(llvm_worker, "_WORKERS", workers)
    monkeypatch.setattr(llvm_worker.sys, "executable", "/bin/true")
    target.start_worker()
    with pytest.raises(IRError, match="the LLVM worker started with '/bin/true' did not start"):
        target.compile_object(_module("never"))
    workers.close()


def test_requests_beyond_the_cores_wait_for_a_worker(monkeypatch):
    """More compiles at once than cores (a model's parts, the library's builds) share as many
    workers as cores, each answered with its own module; none is started beyond them, ahead of
    a compile or when asked."""
    import concurrent.futures

    workers = llvm_worker._Workers()
    workers.most = 2
    monkeypatch.setattr(llvm_worker, "_WORKERS", workers)
    names = [f"asked{i}" for i in range(6)]
    try:
        workers.prestart(len(names))      # ahead of a module cut into more parts than cores
        assert len(workers.all) == 2
        with concurrent.futures.ThreadPoolExecutor(len(names)) as pool:
            answers = list(pool.map(lambda name: target.optimized(_module(name)), names))
        assert all(f"@{name}" in answer and answer.count("define") == 1 for name, answer in zip(names, answers))
        assert len(workers.all) == 2 and len(workers.idle) == 2
    finally:
        workers.close()

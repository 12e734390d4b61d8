"""parallel_for runs task(ctx, index, count) once per index, from generated code, in any situation."""
import ctypes
import os
import pathlib
import subprocess
import sys
import tempfile
import textwrap
import threading

import numpy as np
import pytest
from llvmlite import ir

from nncompile.codegen import parallel, target

i64 = ir.IntType(64)


def _counting_module(nested: bool = False) -> target.JitModule:
    """`run(i64* counts, i64 count)`: parallel_for whose task atomically adds 1 to counts[index] and
    count to counts[count + index]; with `nested`, each task also runs a 3-index parallel_for of
    its own on counts[2*count + 3*index ...]."""
    module = target.new_module("counting")
    run_all = parallel.emit_parallel_for(module)
    inner = ir.Function(module, parallel.TASK_TYPE, "inner")
    b = ir.IRBuilder(inner.append_basic_block())
    ctx, index, _ = inner.args
    b.atomic_rmw("add", b.gep(b.bitcast(ctx, i64.as_pointer()), [index]), ir.Constant(i64, 1), "monotonic")
    b.ret_void()

    task = ir.Function(module, parallel.TASK_TYPE, "task")
    b = ir.IRBuilder(task.append_basic_block())
    ctx, index, count = task.args
    counts = b.bitcast(ctx, i64.as_pointer())
    b.atomic_rmw("add", b.gep(counts, [index]), ir.Constant(i64, 1), "monotonic")
    b.atomic_rmw("add", b.gep(counts, [b.add(count, index)]), count, "monotonic")
    if nested:
        own = b.gep(counts, [b.add(b.mul(count, ir.Constant(i64, 2)), b.mul(index, ir.Constant(i64, 3)))])
        b.call(run_all, [inner, b.bitcast(own, ctx.type), ir.Constant(i64, 3)])
    b.ret_void()

    run = ir.Function(module, ir.FunctionType(ir.VoidType(), [i64.as_pointer(), i64]), "run")
    b = ir.IRBuilder(run.append_basic_block())
    b.call(run_all, [task, b.bitcast(run.args[0], ctx.type), run.args[1]])
    b.ret_void()
    return target.JitModule(module)


def _runner(jit: target.JitModule):
    fn = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64)(jit.address("run"))

    def run(count: int, extra: int = 0) -> np.ndarray:
        assert jit is not None     # the compiled code lives as long as this closure
        counts = np.zeros(2 * count + extra + 1, np.int64)
        fn(counts.ctypes.data, count)
        return counts
    return run


@pytest.fixture(scope="module")
def run():
    return _runner(_counting_module())


@pytest.mark.parametrize("count", [0, 1, 2, 3, 7, 64, 1000])
def test_every_index_runs_exactly_once_and_sees_the_count(run, count):
    counts = run(count)
    assert counts[:count].tolist() == [1] * count
    assert counts[count:2 * count].tolist() == [count] * count
    assert counts[2 * count:].tolist() == [0]


def test_repeated_calls_stay_exact(run):
    for count in [2, 5, 2, 1, 9] * 40:
        assert run(count)[:count].tolist() == [1] * count


def test_nested_parallel_for_runs_inline():
    run = _runner(_counting_module(nested=True))
    count = 6
    counts = run(count, extra=3 * count)
    assert counts[:count].tolist() == [1] * count
    assert counts[2 * count:5 * count].tolist() == [1] * (3 * count)


def test_two_modules_alive_and_concurrent_callers(run):
    other = _runner(_counting_module())
    failures = []

    def hammer(fn):
        for count in (2, 3, 17) * 30:
            if fn(count)[:count].tolist() != [1] * count:
                failures.append(count)

    threads = [threading.Thread(target=hammer, args=(fn,)) for fn in (run, other, run)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_declaration_is_shared_within_a_module():
    module = target.new_module("twice")
    assert parallel.emit_parallel_for(module) is parallel.emit_parallel_for(module)
    assert parallel.num_threads() >= 1


_POOL_FAILS_ONCE = textwrap.dedent("""
    import ctypes
    from nncompile.codegen import parallel, target
    from nncompile.ir.errors import IRError
    made = parallel._pool_object_code
    calls = []

    def failing_once():
        calls.append(1)
        if len(calls) == 1:
            raise IRError("LLVM failed on the module (the worker was killed)")
        return made()

    parallel._pool_object_code = failing_once
    try:
        import tests.codegen.test_parallel as t
    except ImportError:
        raise SystemExit("run from the project root")
    try:
        t._counting_module()
        raise SystemExit("loading code that calls a pool that failed to build did not fail")
    except IRError as e:
        print("first:", e)
    counts = t._runner(t._counting_module())(5)
    print("second:", counts[:5].tolist(), counts[5:10].tolist(), len(calls))
""")


def test_a_pool_that_failed_to_build_is_built_again_at_the_next_load():
    """The pool is made in the background (`parallel.prepare`); code calling it waits for it
    when it loads. A making that failed (its LLVM worker killed) says so at that load, and the
    next load makes it again rather than failing for the rest of the process."""
    root = pathlib.Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", _POOL_FAILS_ONCE], cwd=root, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "NNCOMPILE_CACHE_DIR": tempfile.mkdtemp()})
    assert done.returncode == 0, done.stderr[-3000:]
    first, second = done.stdout.splitlines()
    assert first == "first: LLVM failed on the module (the worker was killed)"
    assert second == "second: [1, 1, 1, 1, 1] [5, 5, 5, 5, 5] 2"

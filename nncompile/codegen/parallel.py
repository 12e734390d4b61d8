"""A persistent thread pool for generated code: `parallel_for(task, ctx, count)` on every core.

Generated code calls `void nncompile_parallel_for(ptr task, ptr ctx, i64 count)`, which runs
`task(ctx, index, count)` once for each index in 0..count-1, spread over the calling thread and the
pool's workers, and returns when all are done.

Why the pool lives in its own module: worker threads sleep inside the pool's code between calls.
Were that code emitted into each kernel module, dropping a module's JitModule would free code a
worker is parked in. So the pool is one LLVM module per process, loaded once (its machine code
kept in the disk cache beside the kernel library), kept alive for the life of the process and
exported to every later module through `llvm.add_symbol`; kernel modules only declare it
(`emit_parallel_for`). Any number of JitModules may be alive at once.

How a call runs: the caller takes the pool's lock (a caller that cannot, such as a nested call
from inside a task or a second Python thread, runs its indices inline), publishes the job and bumps
the generation word; workers that spin on it start at once, sleeping ones are woken with a futex.
Indices are handed out by an atomic counter, so the caller works too and nobody waits for a
straggler's whole share; when the caller runs out of indices it closes the job, and a worker that
had not joined by then skips it, so a slow wake-up never delays the caller. Workers spin a while after each job before sleeping, so back-to-back
kernels do not pay for a futex wake-up. Everything is LLVM IR calling libc (pthread, syscall):
there is no C compiler at install time.

A job runs in its caller's float mode (MXCSR: a training step flushes denormals, `codegen/cpu.py`):
each worker takes it for the job and returns to its own after.

A task may wait for work of another index (`emit_spin`) only if it can also do that work itself:
an index may run late, or after another on the same thread (`codegen/scan_team.py`).
"""
from __future__ import annotations

import concurrent.futures
import ctypes
import functools
import os
import threading

import llvmlite.binding as llvm
from llvmlite import ir

from nncompile.codegen import host, simd, target
from nncompile.codegen.loops import const, for_range

ENTRY = "nncompile_parallel_for"
TAKE_ROWS = "nncompile_take_rows"

i8p = ir.IntType(8).as_pointer()
i32 = ir.IntType(32)
i64 = ir.IntType(64)
void = ir.VoidType()
TASK_TYPE = ir.FunctionType(void, [i8p, i64, i64])
"""The type of a task: `void task(i8* ctx, i64 index, i64 count)`."""


def task_function(module: ir.Module, name: str) -> tuple[ir.Function, ir.IRBuilder, ir.Value, ir.Value, ir.Value]:
    """A new internal task `name` tuned for the host: (function, a builder at its entry, ctx,
    index, count); the caller emits its body and returns."""
    fn = target.tune(ir.Function(module, TASK_TYPE, name))
    fn.linkage = "internal"
    ctx, index, count = fn.args
    return fn, ir.IRBuilder(fn.append_basic_block("entry")), ctx, index, count
ENTRY_TYPE = ir.FunctionType(void, [TASK_TYPE.as_pointer(), i8p, i64])

_SYS_FUTEX = 202            # x86-64 Linux
_FUTEX_WAIT_PRIVATE = 128
_FUTEX_WAKE_PRIVATE = 129
_CLOSED = 1 << 31                   # bit of the join word: the caller finished, no more joiners
_GENERATION_MASK = -(1 << 32)   # the high half of the join word, as a signed i64
_SPINS_BEFORE_SLEEP = 1 << 15   # pause loops a worker spins after a job (~0.1-0.5 ms) before sleeping
_SPINS_BEFORE_YIELD = 1 << 10   # the waiting caller yields its core now and then to a descheduled worker


def emit_parallel_for(module: ir.Module) -> ir.Function:
    """Declare (get-or-create) `void nncompile_parallel_for(task, ctx, count)` in `module`.

    Also starts making the process's pool in the background (`prepare`): the module's loading
    (`target.JitModule`) waits for it, so that the symbol resolves.
    """
    prepare()
    existing = module.globals.get(ENTRY)
    if existing is not None:
        return existing
    return ir.Function(module, ENTRY_TYPE, ENTRY)


def emit_spin(b: ir.IRBuilder, spins: ir.Value) -> None:
    """One round of a spin wait in generated code: a pause, and every _SPINS_BEFORE_YIELD rounds
    (`spins`: an i64* counting them) a yield of the core, so a thread waiting for one that the OS
    descheduled gives its core back."""
    module = b.module
    b.call(simd.intrinsic(module, "llvm.x86.sse2.pause", void, []), [])
    more = b.add(b.load(spins), const(1))
    b.store(more, spins)
    with b.if_then(b.icmp_unsigned("==", b.urem(more, const(_SPINS_BEFORE_YIELD)), const(0))):
        b.call(simd.intrinsic(module, "sched_yield", i32, []), [])


def prepare() -> None:
    """Start making the pool (its machine code from the disk cache, or compiled: on a new host
    the LLVM worker's start and a compile, ~0.15 s) in a thread of its own, unless it is made or
    being made: a first compile goes on meanwhile instead of waiting for it."""
    global _making
    with _lock:
        if _making is None:
            _making = concurrent.futures.ThreadPoolExecutor(1, "nncompile-pool").submit(_runtime)


def install() -> None:
    """Start the pool and make its entry (and libc) resolvable by JIT-compiled code, waiting for
    it if it is being made; idempotent. `target.JitModule` calls it before loading code that
    names the pool's entry. A making that failed (its LLVM worker died) is tried again at the
    next call."""
    global _making
    prepare()
    making = _making
    try:
        making.result()
    except Exception:
        with _lock:
            if _making is making:
                _making = None
        raise


def num_threads() -> int:
    """Threads a parallel_for uses: the caller plus the pool's workers.

    The cores this process may run on, or NNCOMPILE_NUM_THREADS when set (1 turns the pool off)."""
    return _workers() + 1


@functools.cache
def _workers() -> int:
    env = os.environ.get("NNCOMPILE_NUM_THREADS")
    threads = int(env) if env and env.isdigit() else host.cores()
    if env and (not env.isdigit() or threads < 1):
        raise ValueError(f"NNCOMPILE_NUM_THREADS is {env!r}; expected an int >= 1")
    return threads - 1


def take_rows(source: int, row_bytes: int, index: int, rows: int, out: int, parts: int) -> None:
    """Call `nncompile_take_rows` on these addresses (`runtime.rows.take` checks them)."""
    install()
    _take_rows()(source, row_bytes, index, rows, out, parts)


@functools.cache
def _take_rows():
    address = _making.result().address(TAKE_ROWS)
    return ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64,
                            ctypes.c_void_p, ctypes.c_int64)(address)


@functools.cache
def link_libc() -> None:
    """Make libc's symbols (malloc, pthread_*, syscall) resolvable by JIT-compiled modules."""
    llvm.load_library_permanently("libc.so.6")


_lock = threading.Lock()
_making: concurrent.futures.Future | None = None     # `_runtime`'s, once `prepare` started it


def _runtime() -> target.JitModule:
    """Load the pool, start its workers and export its entry; once per process (`prepare`),
    never freed."""
    workers = _workers()
    link_libc()
    jit = target.JitModule(object_code=_pool_object_code(), link=False)
    ctypes.CFUNCTYPE(None, ctypes.c_int64)(jit.address("nncompile_pool_start"))(workers)
    llvm.add_symbol(ENTRY, jit.address(ENTRY))
    return jit


class _Pool:
    """The pool's shared state as module globals, and the helpers its three functions share."""

    def __init__(self, module: ir.Module):
        self.module = module
        names = {"generation": i32, "join": i64, "lock": i32, "workers": i64, "sleepers": i64, "next": i64,
                 "done": i64, "count": i64, "task": TASK_TYPE.as_pointer(), "ctx": i8p, "mode": i32}
        for name, ty in names.items():
            var = ir.GlobalVariable(module, ty, f"pool.{name}")
            var.linkage = "internal"
            var.initializer = ir.Constant(ty, None)
            var.align = 64   # one cache line each: no false sharing between the spinning threads
            setattr(self, name, var)
        self.syscall = ir.Function(module, ir.FunctionType(i64, [i64], var_arg=True), "syscall")
        self.pause = ir.Function(module, ir.FunctionType(void, []), "llvm.x86.sse2.pause")
        self.sched_yield = ir.Function(module, ir.FunctionType(i32, []), "sched_yield")

    def futex(self, b: ir.IRBuilder, op: int, value: ir.Value) -> None:
        b.call(self.syscall, [const(_SYS_FUTEX), self.generation, const(op), value,
                              ir.Constant(i8p, None)])

    def run_indices(self, b: ir.IRBuilder, task: ir.Value, ctx: ir.Value, count: ir.Value) -> None:
        """Take indices from the shared counter and run them until none are left."""
        fn = b.function
        loop, body, out = (fn.append_basic_block(n) for n in ("take", "run", "taken"))
        b.branch(loop)
        b.position_at_end(loop)
        index = b.atomic_rmw("add", self.next, const(1), "monotonic")
        b.cbranch(b.icmp_signed("<", index, count), body, out)
        b.position_at_end(body)
        b.call(task, [ctx, index, count])
        b.branch(loop)
        b.position_at_end(out)


def _pool_object_code() -> bytes:
    """The pool's machine code, kept in the disk cache beside the kernel library: a process whose
    model code is cached then needs no LLVM worker at all (compiling the pool took 40-100 ms,
    most of it starting the worker)."""
    from nncompile.runtime import disk_cache     # runtime imports codegen, not the other way round
    return disk_cache.host_object_code("thread pool", lambda: target.compile_object(str(_pool_module())))


def _pool_module() -> ir.Module:
    module = target.new_module("nncompile_pool")
    pool = _Pool(module)
    worker = _emit_worker(pool)
    _emit_start(pool, worker)
    _emit_take_rows(module, _emit_entry(pool))
    return module


def _emit_worker(pool: _Pool) -> ir.Function:
    """`i8* worker(i8*)`: wait for a new generation, help run its indices, report done, repeat."""
    fn = ir.Function(pool.module, ir.FunctionType(i8p, [i8p]), "pool.worker")
    fn.linkage = "internal"
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    blocks = {n: fn.append_basic_block(n) for n in ("wait", "spin", "sleep", "job", "retry",
                                                            "claim", "work", "finish")}
    seen0 = b.load_atomic(pool.generation, "acquire", 4)
    entry = b.block
    b.branch(blocks["wait"])

    b.position_at_end(blocks["wait"])          # seen: the generation last worked on
    seen = b.phi(i32, "seen")
    seen.add_incoming(seen0, entry)
    spins = b.phi(i64, "spins")
    spins.add_incoming(const(0), entry)
    current = b.load_atomic(pool.generation, "acquire", 4)
    b.cbranch(b.icmp_unsigned("!=", current, seen), blocks["job"], blocks["spin"])

    b.position_at_end(blocks["spin"])
    b.call(pool.pause, [])
    more = b.add(spins, const(1))
    spins.add_incoming(more, blocks["spin"])
    seen.add_incoming(seen, blocks["spin"])
    b.cbranch(b.icmp_signed("<", more, const(_SPINS_BEFORE_SLEEP)), blocks["wait"], blocks["sleep"])

    b.position_at_end(blocks["sleep"])         # the kernel rechecks the word, so no wake-up is lost
    b.atomic_rmw("add", pool.sleepers, const(1), "seq_cst")
    pool.futex(b, _FUTEX_WAIT_PRIVATE, b.zext(seen, i64))
    b.atomic_rmw("sub", pool.sleepers, const(1), "seq_cst")
    spins.add_incoming(const(0), blocks["sleep"])
    seen.add_incoming(seen, blocks["sleep"])
    b.branch(blocks["wait"])

    b.position_at_end(blocks["job"])           # join the job unless the caller closed it
    ticket = b.shl(b.zext(current, i64), const(32))
    join = b.load_atomic(pool.join, "acquire", 8)
    blocks["try"] = b.block
    b.branch(blocks["retry"])
    b.position_at_end(blocks["retry"])
    observed = b.phi(i64, "observed")
    observed.add_incoming(join, blocks["try"])
    is_open = b.icmp_unsigned("==", b.and_(observed, const(_GENERATION_MASK | _CLOSED)), ticket)
    b.cbranch(is_open, blocks["claim"], blocks["finish"])
    b.position_at_end(blocks["claim"])
    swap = b.cmpxchg(pool.join, observed, b.add(observed, const(1)), "acquire", "monotonic")
    observed.add_incoming(b.extract_value(swap, 0), blocks["claim"])
    b.cbranch(b.extract_value(swap, 1), blocks["work"], blocks["retry"])
    b.position_at_end(blocks["work"])
    task = b.load_atomic(pool.task, "monotonic", 8)
    ctx = b.load_atomic(pool.ctx, "monotonic", 8)
    count = b.load_atomic(pool.count, "monotonic", 8)
    own = simd.float_mode(b)      # the job runs in its caller's float mode (denormals flushed or not)
    simd.set_float_mode(b, b.load_atomic(pool.mode, "monotonic", 4))
    pool.run_indices(b, task, ctx, count)
    simd.set_float_mode(b, own)
    b.atomic_rmw("add", pool.done, const(1), "release")
    b.branch(blocks["finish"])
    b.position_at_end(blocks["finish"])
    spins.add_incoming(const(0), blocks["finish"])
    seen.add_incoming(current, blocks["finish"])
    b.branch(blocks["wait"])
    return fn


def _emit_start(pool: _Pool, worker: ir.Function) -> None:
    """`void nncompile_pool_start(i64 n)`: create n detached workers; forget them in a fork child."""
    module = pool.module
    create = ir.Function(module, ir.FunctionType(i32, [i64.as_pointer(), i8p, worker.type, i8p]),
                         "pthread_create")
    detach = ir.Function(module, ir.FunctionType(i32, [i64]), "pthread_detach")
    atfork_type = ir.FunctionType(void, []).as_pointer()
    # pthread_atfork itself is a static stub in libc_nonshared.a; this is what it calls
    atfork = ir.Function(module, ir.FunctionType(i32, [atfork_type] * 3 + [i8p]), "__register_atfork")

    child = ir.Function(module, ir.FunctionType(void, []), "pool.fork_child")
    child.linkage = "internal"
    b = ir.IRBuilder(child.append_basic_block("entry"))
    b.store_atomic(const(0), pool.workers, "seq_cst", 8)   # the child has no workers: run inline
    b.store_atomic(ir.Constant(i32, 0), pool.lock, "seq_cst", 4)
    b.ret_void()

    fn = ir.Function(module, ir.FunctionType(void, [i64]), "nncompile_pool_start")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    null = ir.Constant(atfork_type, None)
    b.call(atfork, [null, null, child, ir.Constant(i8p, None)])
    tid = b.alloca(i64)
    started = b.alloca(i64)
    b.store(const(0), started)
    with for_range(b, fn.args[0]):
        failed = b.call(create, [tid, ir.Constant(i8p, None), worker, ir.Constant(i8p, None)])
        with b.if_then(b.icmp_signed("==", failed, ir.Constant(i32, 0))):
            b.call(detach, [b.load(tid)])
            b.store(b.add(b.load(started), const(1)), started)
    b.store_atomic(b.load(started), pool.workers, "seq_cst", 8)
    b.ret_void()


def _emit_entry(pool: _Pool) -> ir.Function:
    """`nncompile_parallel_for`: publish the job, work on it, wait for every worker to finish."""
    fn = ir.Function(pool.module, ENTRY_TYPE, ENTRY)
    task, ctx, count = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    inline, pooled, locked = (fn.append_basic_block(n) for n in ("inline", "pooled", "locked"))
    workers = b.load_atomic(pool.workers, "acquire", 8)
    worth_it = b.and_(b.icmp_signed(">", workers, const(0)), b.icmp_signed(">", count, const(1)))
    b.cbranch(worth_it, pooled, inline)

    b.position_at_end(inline)
    with for_range(b, count) as index:
        b.call(task, [ctx, index, count])
    b.ret_void()

    b.position_at_end(pooled)
    b.cbranch(_try_lock(pool, b), locked, inline)

    b.position_at_end(locked)
    _publish(pool, b, task, ctx, count, first=0)
    pool.run_indices(b, task, ctx, count)
    _close_and_wait(pool, b)
    b.ret_void()
    return fn


def _emit_take_rows(module: ir.Module, parallel_for: ir.Function) -> None:
    """`void nncompile_take_rows(i8* source, i64 row_bytes, i64* index, i64 rows, i8* out, i64 parts)`:
    row r of `out` is row index[r] of `source`, the rows cut into `parts` tasks of the pool. A
    shuffled batch of samples is gathered so (`runtime.rows`): its rows lie anywhere in the data
    set, mostly out of the caches, and two cores fetch them about twice as fast as one."""
    from nncompile.codegen.gemm import pack_fields, unpack_fields   # gemm imports this module
    i64p = i64.as_pointer()
    task, b, ctx, part, parts = task_function(module, "take_rows.task")
    source, row_bytes, index, rows, out = unpack_fields(b, ctx, [i8p, i64, i64p, i64, i8p])
    share = b.sdiv(b.add(rows, b.sub(parts, const(1))), parts)
    first = b.mul(part, share)
    last = b.select(b.icmp_signed("<", b.add(first, share), rows), b.add(first, share), rows)
    memcpy = module.declare_intrinsic("llvm.memcpy", [i8p, i8p, i64])
    with for_range(b, last, start=first, name="row") as r:
        row = b.gep(source, [b.mul(b.load(b.gep(index, [r])), row_bytes)])
        b.call(memcpy, [b.gep(out, [b.mul(r, row_bytes)]), row, row_bytes, ir.Constant(ir.IntType(1), 0)])
    b.ret_void()

    fn = target.tune(ir.Function(module, ir.FunctionType(void, [i8p, i64, i64p, i64, i8p, i64]), TAKE_ROWS))
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    b.call(parallel_for, [task, pack_fields(b, fn.args[:5]), fn.args[5]])
    b.ret_void()


def _try_lock(pool: _Pool, b: ir.IRBuilder) -> ir.Value:
    return b.extract_value(b.cmpxchg(pool.lock, ir.Constant(i32, 0), ir.Constant(i32, 1),
                                     "acquire", "monotonic"), 1)


def _publish(pool: _Pool, b: ir.IRBuilder, task: ir.Value, ctx: ir.Value, count: ir.Value,
             first: int) -> None:
    """Post the job (indices from `first` on for the workers) under a new generation and wake
    any sleeping worker."""
    b.store_atomic(task, pool.task, "monotonic", 8)
    b.store_atomic(ctx, pool.ctx, "monotonic", 8)
    b.store_atomic(simd.float_mode(b), pool.mode, "monotonic", 4)
    b.store_atomic(count, pool.count, "monotonic", 8)
    b.store_atomic(const(first), pool.next, "monotonic", 8)
    b.store_atomic(const(0), pool.done, "monotonic", 8)
    generation = b.add(b.load_atomic(pool.generation, "monotonic", 4), ir.Constant(i32, 1))
    b.store_atomic(b.shl(b.zext(generation, i64), const(32)), pool.join, "monotonic", 8)
    b.store_atomic(generation, pool.generation, "seq_cst", 4)
    with b.if_then(b.icmp_signed(">", b.load_atomic(pool.sleepers, "seq_cst", 8), const(0))):
        pool.futex(b, _FUTEX_WAKE_PRIVATE, const(2**31 - 1))


def _close_and_wait(pool: _Pool, b: ir.IRBuilder) -> None:
    """Close the job to late workers, wait for those that joined, release the pool."""
    fn = b.function
    closed = b.atomic_rmw("or", pool.join, const(_CLOSED), "acq_rel")
    helpers = b.and_(closed, const(_CLOSED - 1))
    wait, spin, finished = (fn.append_basic_block(n) for n in ("wait", "spin", "finished"))
    before = b.block
    b.branch(wait)
    b.position_at_end(wait)
    spins = b.phi(i64, "spins")
    spins.add_incoming(const(0), before)
    done = b.load_atomic(pool.done, "acquire", 8)
    b.cbranch(b.icmp_signed(">=", done, helpers), finished, spin)
    b.position_at_end(spin)
    b.call(pool.pause, [])
    more = b.add(spins, const(1))
    with b.if_then(b.icmp_unsigned("==", b.urem(more, const(_SPINS_BEFORE_YIELD)), const(0))):
        b.call(pool.sched_yield, [])
    spins.add_incoming(more, b.block)
    b.branch(wait)
    b.position_at_end(finished)
    b.store_atomic(ir.Constant(i32, 0), pool.lock, "release", 4)

"""LLVM's optimizer and code generator, run in a worker process of their own.

Every run of an LLVM pass pipeline through llvmlite keeps memory that nothing can release: the
pass builder's instrumentation callbacks are allocated and never freed, and each run registers
more (measured: about 0.3 MB per compiled module, for as long as the process lives). The worker
takes that growth instead of the user's process, and is replaced when it has grown past
`WORKER_RSS_LIMIT`. It also keeps an LLVM abort on a module (a fatal error in a pass) from ending
the user's process: the request fails with an error naming the module instead.

The parent asks `compile_object`, `optimized_ir` or `assembly` with the module's text, the host
CPU and the pipeline's name (`PIPELINES`); the worker parses, verifies, runs the optimization
pipeline and answers, with the time each of those phases took (for `nncompile.phases`). Loading object code into
an execution engine stays in the parent (`target.JitModule`), which keeps no memory once freed.

This file imports nothing from nncompile, so that the worker starts in a fraction of a second:
it is run by path, `python llvm_worker.py`, and speaks pickled (request, reply) pairs on its
standard input and output.
"""
from __future__ import annotations

import atexit
import os
import pickle
import select
import signal
import subprocess
import sys
import threading
import time

# A worker whose resident memory has grown past this is replaced after its current request.
WORKER_RSS_LIMIT = 512 << 20


class WorkerError(RuntimeError):
    """LLVM refused a module (invalid IR) or the worker died on it."""


# --- the worker side ------------------------------------------------------------------------

def initialize():
    """llvmlite's binding layer with the host target ready (here and in `target`)."""
    import llvmlite.binding as llvm

    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    return llvm


def target_machine(llvm, cpu: str, features: str):
    """The target machine object code is made for, and loaded with (`target.new_target_machine`)."""
    target = llvm.Target.from_default_triple()
    return target.create_target_machine(cpu=cpu, features=features, opt=3, reloc="static",
                                        codemodel="jitdefault")


class _Clock:
    """The worker's time per phase of a request, {phase: (wall, CPU seconds)}, sent back with
    the reply (the parent counts them in `nncompile.phases`)."""

    def __init__(self):
        self.times: dict[str, tuple[float, float]] = {}
        self._start = (time.perf_counter(), time.process_time())

    def lap(self, phase: str) -> None:
        """The time since the last lap was spent in `phase`."""
        now = (time.perf_counter(), time.process_time())
        self.times[phase] = (now[0] - self._start[0], now[1] - self._start[1])
        self._start = now


# LLVM's pipeline for a model's module: speed level, loop vectorizer, SLP vectorizer, loop
# unrolling. O2 without unrolling or the SLP vectorizer: a model's own code is elementwise loops,
# which the loop vectorizer interleaves anyway, and calls. Against O3 it halves LLVM's time on a
# training step's module, with the same loops.
PIPELINE = (2, True, False, False)
# The kernel library's pipeline (`codegen/library.py`), a list of passes run once each: its code
# is vectors and register tiles already (`simd`), and its functions are marked always-inline, so
# that a kernel is inlined once into its callers and the result optimized once. O2 optimized
# each function, inlined it into its callers (the microkernels into the tile loops, the skinny
# paths into theirs) and optimized the callers again: 1.25 s of LLVM for the three GEMMs a
# training step of Dense layers calls, 0.73 s with this list. Measured on an Emerald Rapids
# Xeon, alternating: products from 64 x 128 x 512 to 2048^3 and the peers' W2-W4 rows within
# their noise, the LSTM training step 2-3% faster, a transposed-A product of depth 128
# (784 x 128 x 128, one core) 2-3% slower.
LIBRARY_PASSES = ("always_inliner", "sroa", "instruction_combine", "simplify_cfg", "sccp", "loop_simplify",
                  "loop_rotate", "new_gvn", "instruction_combine", "jump_threading", "simplify_cfg",
                  "aggressive_dce")
PIPELINES = ("model", "library")


def _optimized_module(llvm, machine, text: str, pipeline: str, clock: _Clock):
    try:
        module = llvm.parse_assembly(text)
        module.verify()
    except RuntimeError as e:
        raise WorkerError(f"generated LLVM IR is invalid: {e}") from None
    clock.lap("LLVM parse")
    level, vectorize, slp, unroll = PIPELINE
    tuning = llvm.create_pipeline_tuning_options(speed_level=level)
    tuning.loop_vectorization = vectorize
    tuning.slp_vectorization = slp
    tuning.loop_unrolling = unroll
    builder = llvm.create_pass_builder(machine, tuning)
    if pipeline == "library":
        passes = llvm.create_new_module_pass_manager()
        for name in LIBRARY_PASSES:
            getattr(passes, f"add_{name}_pass")()
    else:
        passes = builder.getModulePassManager()
    passes.run(module, builder)
    clock.lap("LLVM optimisation")
    return module


def _answer(llvm, machines: dict, request: tuple, clock: _Clock):
    kind, pipeline, cpu, features, text = request
    if pipeline not in PIPELINES:
        raise WorkerError(f"unknown pipeline {pipeline!r}; expected one of {PIPELINES}")
    machine = machines.get((cpu, features)) or machines.setdefault((cpu, features),
                                                                   target_machine(llvm, cpu, features))
    module = _optimized_module(llvm, machine, text, pipeline, clock)
    if kind == "object":
        answer = machine.emit_object(module)
    elif kind == "assembly":
        answer = machine.emit_assembly(module)
    else:
        answer = str(module)
    clock.lap("machine code" if kind == "object" else kind)
    return answer


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def serve(requests, replies) -> None:
    """Answer requests until the parent closes the pipe."""
    llvm, machines = initialize(), {}
    replies.write(_READY)
    replies.flush()
    while True:
        try:
            request = pickle.load(requests)
        except EOFError:
            return
        clock = _Clock()
        try:
            reply = ("ok", _answer(llvm, machines, request, clock))
        except WorkerError as e:
            reply = ("error", str(e))
        pickle.dump((reply, _rss(), clock.times), replies)
        replies.flush()


# --- the parent side ------------------------------------------------------------------------

class _Worker:
    """One worker process and the lock that gives it one request at a time."""

    def __init__(self):
        self.lock = threading.Lock()
        self.process: subprocess.Popen | None = None

    def ask(self, *request):
        """The worker's answer to (kind, pipeline, cpu, features, text), and its time per phase
        ({phase: (wall, CPU seconds)})."""
        with self.lock:
            process = self.process = self.process or _spawn()
            try:
                pickle.dump(request, process.stdin)
                process.stdin.flush()
                (status, value), rss, times = pickle.load(process.stdout)
            except (EOFError, OSError, pickle.UnpicklingError):
                self.process = None
                raise WorkerError(f"LLVM failed on the module ({_exit_reason(process)})") from None
            except BaseException:
                # interrupted (KeyboardInterrupt) with the reply unread: this worker's next reply
                # would answer this request, so it is stopped, never asked again
                self.process = None
                process.kill()
                _exit_reason(process)
                raise
            if rss > WORKER_RSS_LIMIT:
                self.process = None
                _stop(process)
        if status == "error":
            raise WorkerError(value)
        return value, times

    def start_and_release(self) -> None:
        """Start the process, then release the lock that `_Workers.prestart` took for this; a
        worker that cannot start says why when it is first asked."""
        try:
            self.process = self.process or _spawn()
        except WorkerError:
            pass
        finally:
            self.lock.release()

    def close(self) -> None:
        """Stop the worker (at exit: it would stop by itself on seeing its input closed)."""
        with self.lock:
            if self.process is not None:
                _stop(self.process)
                self.process = None


def _spawn() -> subprocess.Popen:
    """A new worker, once it has said it is ready (its Python could import llvmlite)."""
    # -P (3.11+): this file's folder must not come first on the worker's module path
    command = [sys.executable, *(["-P"] if sys.version_info >= (3, 11) else []), os.path.abspath(__file__)]
    try:
        # stderr stays the parent's: LLVM's own message, if it aborts, reaches the user
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True)
    except OSError as e:
        raise WorkerError(f"cannot start the LLVM worker with {sys.executable!r}: {e.strerror}") from None
    ready, _, _ = select.select([process.stdout], [], [], _READY_SECONDS)
    if not ready or process.stdout.read(len(_READY)) != _READY:
        process.kill()
        raise WorkerError(f"the LLVM worker started with {sys.executable!r} did not start "
                          f"({_exit_reason(process)}); it needs a Python that imports llvmlite")
    return process


# The worker says this once llvmlite is loaded; a Python that cannot import it says nothing.
_READY = b"nncompile-llvm-worker-ready\n"
_READY_SECONDS = 60


def _stop(process: subprocess.Popen) -> None:
    process.stdin.close()
    process.wait()
    process.stdout.close()


def _exit_reason(process: subprocess.Popen) -> str:
    try:
        code = process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        code = process.wait()
    for stream in (process.stdin, process.stdout):
        try:
            stream.close()
        except OSError:     # closing flushes what a dead worker never read: a broken pipe
            pass
    return f"the LLVM worker was killed by signal {-code}" if code < 0 else f"the LLVM worker exited with {code}"


class _Workers:
    """The worker processes: a request takes an idle one, or starts another when all are busy
    (threads compiling at once, such as the kernel library's builds beside a model's compile)
    and there are fewer than the cores this process may run on; else it waits for one. LLVM
    keeps a core busy, so a worker more than the cores only adds its start (a Python importing
    llvmlite, 0.1-0.2 s on a loaded machine) and shares the same cores: on two cores, from an
    empty cache, the tutorial MLP's first fit + evaluate + predict 1.00-1.03 -> 0.96 s, the W3
    CNN's warm-up 1.20-1.23 -> 1.08-1.09 s (two runs of two each way, an Emerald Rapids Xeon)."""

    def __init__(self):
        self.lock = threading.Condition()
        self.idle: list[_Worker] = []
        self.all: list[_Worker] = []
        self.most = max(1, len(os.sched_getaffinity(0)))

    def ask(self, *request):
        with self.lock:
            while not self.idle and len(self.all) >= self.most:
                self.lock.wait()
            worker = self.idle.pop() if self.idle else None
            if worker is None:
                worker = _Worker()
                self.all.append(worker)
        try:
            return worker.ask(*request)
        finally:
            with self.lock:
                self.idle.append(worker)
                self.lock.notify_all()     # not one: a waiter woken and interrupted at once would lose it

    def prestart(self, count: int = 1) -> None:
        """Start workers in the background until there are `count`, or as many as the cores: a
        compile that is about to need them (its code missed the disk cache) then builds its
        module meanwhile, instead of waiting for a Python to start and import llvmlite (66 ms)
        when it asks."""
        with self.lock:
            started = []
            while len(self.all) < min(count, self.most):
                worker = _Worker()
                worker.lock.acquire()     # a request waits for the start, then takes this worker
                self.all.append(worker)
                self.idle.append(worker)
                started.append(worker)
            self.lock.notify_all()
        for worker in started:
            threading.Thread(target=worker.start_and_release, name="nncompile-llvm-start", daemon=True).start()

    def close(self) -> None:
        for worker in self.all:
            worker.close()


_WORKERS = _Workers()
atexit.register(_WORKERS.close)
# A forked child must not share the parent's workers (their replies would interleave): it starts
# its own when it first compiles.
os.register_at_fork(after_in_child=_WORKERS.__init__)


def prestart(count: int = 1) -> None:
    """Start workers in the background until there are `count` (`_Workers.prestart`)."""
    _WORKERS.prestart(count)


def compile_object(text: str, cpu: str, features: str, pipeline: str = "model") -> tuple[bytes, dict]:
    """The object file of the module `text` after the `pipeline` ("model": PIPELINE, "library":
    LIBRARY_PASSES), optimized for `cpu` with `features` (and the worker's time per phase, as
    every request here)."""
    return _WORKERS.ask("object", pipeline, cpu, features, text)


def optimized_ir(text: str, cpu: str, features: str, pipeline: str = "model") -> tuple[str, dict]:
    """The module text after the `pipeline`."""
    return _WORKERS.ask("optimized", pipeline, cpu, features, text)


def assembly(text: str, cpu: str, features: str, pipeline: str = "model") -> tuple[str, dict]:
    """The host assembly of the module after the `pipeline`."""
    return _WORKERS.ask("assembly", pipeline, cpu, features, text)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C is the parent's to handle
    # replies get a descriptor of their own; anything printed goes to stderr, not into them
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    serve(sys.stdin.buffer, replies)

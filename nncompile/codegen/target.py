"""The host target: LLVM set-up, the optimization pipeline, JIT loading (the host CPU's facts: `host`).

Everything that touches llvmlite's binding layer lives here, in `host` (the CPU's name and
features) and in `llvm_worker` (the optimizer and code generator, run in a process of their
own), so kernel emitters only build `llvmlite.ir` modules and the runtime only asks for function
addresses.
"""
from __future__ import annotations

import concurrent.futures
import functools
from typing import Callable, TypeVar

import llvmlite.binding as llvm
from llvmlite import ir

from nncompile import phases
from nncompile.codegen import llvm_worker, module_parts, perf_map
# the kernels ask `target` for these (host.py reads them)
from nncompile.codegen.host import host_cpu, vector_bytes, vector_lanes, vector_registers  # noqa: F401
from nncompile.ir.errors import IRError

T = TypeVar("T")


@functools.cache
def _initialized() -> bool:
    llvm_worker.initialize()
    return True


@functools.cache
def target_machine() -> llvm.TargetMachine:
    return new_target_machine()


def new_target_machine() -> llvm.TargetMachine:
    """A fresh host target machine (an execution engine takes ownership of, and frees, its own)."""
    _initialized()
    return llvm_worker.target_machine(llvm, *host_cpu())


def new_module(name: str) -> ir.Module:
    """An empty module laid out for the host."""
    module = ir.Module(name=name)
    module.triple = llvm.get_process_triple()
    module.data_layout = str(target_machine().target_data)
    return module


def tune(fn: ir.Function) -> ir.Function:
    """Give `fn` the host CPU and its full vector width (LLVM otherwise prefers 256-bit vectors
    on some AVX-512 hosts); llvmlite only knows attributes without values, so these are added
    as raw text."""
    cpu, features = host_cpu()
    for key, value in (("target-cpu", cpu), ("target-features", features),
                       ("prefer-vector-width", str(vector_bytes() * 8))):
        set.add(fn.attributes, f'"{key}"="{value}"')
    return fn


def _ask(request: Callable[[str, str, str, str], tuple[T, dict]], llvm_ir: str, pipeline: str = "model") -> T:
    """The worker's answer; its phases are counted in `nncompile.phases`, and the rest of the
    request's time (starting the worker, sending the module, waiting) as "LLVM worker"."""
    with phases.timed("LLVM worker"):
        try:
            answer, times = request(llvm_ir, *host_cpu(), pipeline)
        except llvm_worker.WorkerError as e:
            raise IRError(str(e)) from None
        for phase, (wall, cpu) in times.items():
            phases.add(phase, wall, cpu, in_this_thread=False)
    return answer


def workers() -> int:
    """The LLVM workers a compile may use at once: as many as the threads kernels run on (the
    cores this process may run on, or NNCOMPILE_NUM_THREADS)."""
    from nncompile.codegen import parallel     # it loads its own code with `JitModule`
    return parallel.num_threads()


def start_worker() -> None:
    """Start the LLVM workers in the background, if they are not running, for a compile about
    to ask them (`llvm_worker.prestart`)."""
    llvm_worker.prestart(min(workers(), module_parts.MAX_PARTS))


def compile_object(module: ir.Module | str, pipeline: str = "model") -> bytes:
    """The host object code of the module after LLVM's `pipeline` (`llvm_worker.PIPELINES`), made
    in LLVM worker processes (`llvm_worker`: they keep what LLVM leaks). A module large enough
    is cut into parts (`module_parts`) that workers compile at once; their object files come
    back as one blob (`module_parts.pack`), which `JitModule` loads. Its phases are those of
    the slowest part for the wall clock, and of all parts for the CPU."""
    with phases.timed("LLVM IR"):     # the text is made here
        texts = module_parts.split(module, workers()) if isinstance(module, ir.Module) else [module]
    if len(texts) == 1:
        return _ask(llvm_worker.compile_object, texts[0], pipeline)
    cpu, features = host_cpu()
    with phases.timed("LLVM worker"):
        with concurrent.futures.ThreadPoolExecutor(len(texts), thread_name_prefix="nncompile-llvm") as pool:
            futures = [pool.submit(llvm_worker.compile_object, text, cpu, features, pipeline) for text in texts]
            try:
                answers = [f.result() for f in futures]
            except llvm_worker.WorkerError as e:
                raise IRError(str(e)) from None
        slowest = max((times for _, times in answers), key=lambda t: sum(wall for wall, _ in t.values()))
        for phase, (wall, _) in slowest.items():
            phases.add(phase, wall, sum(times[phase][1] for _, times in answers if phase in times),
                       in_this_thread=False)
    return module_parts.pack([obj for obj, _ in answers])


def optimized(llvm_ir: str) -> str:
    """The module text after LLVM's pipeline."""
    return _ask(llvm_worker.optimized_ir, llvm_ir)


def assembly(llvm_ir: str) -> str:
    """The host assembly of the module after LLVM's pipeline."""
    return _ask(llvm_worker.assembly, llvm_ir)


class JitModule:
    """A module compiled to native code in this process; keep it alive while its code runs.

    Give it the module (see `compile_object`), or `object_code` from an earlier compile of the
    same module (see `runtime.disk_cache`): loading that skips parsing, optimization and code
    generation. The object files of a module compiled in parts go into one execution engine,
    which resolves their references to one another. What the code calls must resolve: libc
    always, and the thread pool, which code naming its entry waits for here (it may still be
    being made, `parallel.prepare`); `link` is False only for the pool's own code.
    """

    def __init__(self, module: ir.Module | str | None = None, object_code: bytes | None = None, *,
                 link: bool = True):
        from nncompile.codegen import parallel     # it loads its own code with this class
        if object_code is None:
            if module is None:
                raise IRError("JitModule needs a module or its object code")
            object_code = compile_object(module)
        self.object_code = object_code
        parallel.link_libc()
        if link and parallel.ENTRY.encode() in object_code:
            parallel.install()
        with phases.timed("loading"):
            # the engine owns (and frees) the target machine it is given: never the cached one
            self._engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), new_target_machine())
            for part in module_parts.unpack(object_code):
                self._engine.add_object_file(llvm.ObjectFileRef.from_data(part))
            self._engine.finalize_object()
        if perf_map.enabled():
            for part in module_parts.unpack(object_code):
                perf_map.write(part, self._engine.get_function_address)

    def address(self, name: str) -> int:
        addr = self._engine.get_function_address(name)
        if not addr:
            raise IRError(f"compiled module has no function {name!r}")
        return addr

"""Memory of the compiling process over many cold compiles: nncompile (LLVM's optimizer in its
worker process) against the same modules optimized in this process, as they were before.

    python benchmarks/compile_memory.py [COUNT]      # default 200

Each compile is of a distinct small model (Dense-tanh-Dense-softmax of its own width) with an
empty disk cache, so every one runs the whole pipeline and LLVM. Prints this process's resident
memory after the first 20 compiles and its growth from there to COUNT, for both ways. The goal
(issue 12): less than 20 MB of growth over 200 cold compiles after the first 20.
"""
from __future__ import annotations

import gc
import os
import sys
import tempfile
import time

import numpy as np

os.environ["NNCOMPILE_CACHE_DIR"] = tempfile.mkdtemp(prefix="nncompile-bench-cache-")

import llvmlite.binding as llvm  # noqa: E402

import nncompile  # noqa: E402
from nncompile.codegen import target  # noqa: E402
from nncompile.ir import BATCH, Builder, f32  # noqa: E402
from host import cpu_model  # noqa: E402

WARM = 20


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def model(width: int):
    rng = np.random.default_rng(width)
    b = Builder()
    x = b.input("x", f32[BATCH, 16])
    w1 = b.param("w1", rng.standard_normal((16, width)).astype(np.float32))
    w2 = b.param("w2", rng.standard_normal((width, 4)).astype(np.float32))
    h = b.op("tanh", b.op("matmul", x, w1))
    return b.finish([b.op("softmax", b.op("matmul", h, w2))], ["y"])


def in_process_object(llvm_ir: str) -> bytes:
    """The object file made as nncompile made it before the worker: O3 in this process."""
    module = llvm.parse_assembly(llvm_ir)
    tuning = llvm.create_pipeline_tuning_options(speed_level=3)
    tuning.loop_vectorization = tuning.slp_vectorization = tuning.loop_unrolling = True
    builder = llvm.create_pass_builder(target.target_machine(), tuning)
    builder.getModulePassManager().run(module, builder)
    return target.target_machine().emit_object(module)


def measure(count: int, first_width: int) -> tuple[float, float, float]:
    """(MB after WARM compiles, MB grown from there to `count`, seconds per compile)."""
    start = time.perf_counter()
    for i in range(count):
        exe = nncompile.compile(model(first_width + i))
        exe(np.ones((2, 16), np.float32))
        del exe
        gc.collect()
        if i + 1 == WARM:
            warm = rss_mb()
    return warm, rss_mb() - warm, (time.perf_counter() - start) / count


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    print(f"{count} cold compiles on {cpu_model()}, "
          f"{llvm.get_host_cpu_name()}, LLVM {'.'.join(map(str, llvm.llvm_version_info))}")
    rows = [("LLVM worker (nncompile)", *measure(count, 8))]
    worker_compile = target.compile_object
    target.compile_object = in_process_object
    try:
        rows.append(("in this process", *measure(count, 8 + count)))
    finally:
        target.compile_object = worker_compile
    print(f"{'optimizer runs':<26}{'RSS after ' + str(WARM):>14}{'growth':>10}{'per compile':>14}")
    for name, warm, grown, seconds in rows:
        print(f"{name:<26}{warm:>11.1f} MB{grown:>7.1f} MB{seconds * 1e3:>11.0f} ms")
    print(f"growth ratio in-process / worker: {rows[1][2] / max(rows[0][2], 0.1):.1f}x")


if __name__ == "__main__":
    main()

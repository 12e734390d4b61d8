"""Where a training step's time goes: wall time per kernel of the compiled step, by workload.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/profile_step.py [mlp128|mlp32|cnn|pima|lstm]

The step graph is compiled as `Model.fit` compiles it, except that the entry reads the cycle
counter around every kernel call and adds the difference to that kernel's counter (a global array
the profile reads back). One epoch is trained, then the kernels are listed by their share of the
step, with the per-step time the counters imply. Profiling only: the instrumented code never
reaches the disk cache of an ordinary run (a private cache folder is used).
"""
from __future__ import annotations

import ctypes
import os
import sys
import tempfile
import time

os.environ["NNCOMPILE_CACHE_DIR"] = tempfile.mkdtemp(prefix="nncompile-profile-")
sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402
from llvmlite import ir  # noqa: E402

from cpu import table  # noqa: E402
from nncompile.codegen import cpu as codegen  # noqa: E402
from nncompile.ir.cost import node_cost  # noqa: E402
from training import WORKLOADS  # noqa: E402

COUNTERS = "nncompile_profile_counters"
_original_build = codegen.build_module
_i64 = ir.IntType(64)


def instrumented_build(graph, layout, name: str = "nncompile") -> ir.Module:
    """`build_module`, with every kernel call in the entry timed into a global counter array."""
    module = _original_build(graph, layout, name)
    entry = module.globals.get(codegen.RUN) or module.get_global(codegen.ENTRY)   # (a training step's runs inside)
    counters = ir.GlobalVariable(module, ir.ArrayType(_i64, len(graph.nodes) + 1), COUNTERS)
    counters.initializer = ir.Constant(counters.value_type, None)
    clock = ir.Function(module, ir.FunctionType(_i64, []), "llvm.readcyclecounter")
    for block in entry.blocks:
        for instr in list(block.instructions):
            if isinstance(instr, ir.CallInstr) and instr.callee.name.startswith("k"):
                number = int(instr.callee.name[1:].split(".")[0])
                b = ir.IRBuilder(block)
                b.position_before(instr)
                start = b.call(clock, [])
                b.position_after(instr)
                spent = b.sub(b.call(clock, []), start)
                slot = b.gep(counters, [ir.Constant(_i64, 0), ir.Constant(_i64, number)])
                b.store(b.add(b.load(slot), spent), slot)
    return module


def cycles_per_second() -> float:
    """The cycle counter's rate, measured against the wall clock."""
    from nncompile.codegen.target import JitModule
    module = ir.Module("clock")
    fn = ir.Function(module, ir.FunctionType(_i64, []), "now")
    b = ir.IRBuilder(fn.append_basic_block())
    b.ret(b.call(ir.Function(module, ir.FunctionType(_i64, []), "llvm.readcyclecounter"), []))
    jit = JitModule(module)     # kept alive while its code runs
    now = ctypes.CFUNCTYPE(ctypes.c_int64)(jit.address("now"))
    t0, c0 = time.perf_counter(), now()
    time.sleep(0.2)
    return (now() - c0) / (time.perf_counter() - t0)


def describe(node) -> str:
    if node.op != "fused":
        return f"{node.op} {node.outputs[0].type}"
    body = node.attrs["body"]
    ops = "+".join(n.op for n in body.nodes)
    return f"fused[{ops[:70]}] {node.outputs[0].type}"


def _lstm_workload() -> tuple:
    """The tutorial's IMDB model (peers.py's W6): Embedding(10000, 128) -> LSTM(128) -> Dense(1,
    sigmoid), 640 sequences of 100 random tokens, batch 64."""
    from nncompile import keras
    rng = np.random.default_rng(0)
    model = keras.Sequential([keras.Input((100,), dtype="int32"), keras.layers.Embedding(10000, 128),
                              keras.layers.LSTM(128), keras.layers.Dense(1, activation="sigmoid")])
    x = rng.integers(0, 10000, (640, 100)).astype(np.int32)
    return "lstm", model, x, rng.integers(0, 2, (640, 1)).astype(np.float32), "binary_crossentropy", 64


def _workload(name: str) -> tuple:
    """(label, model, x, y, loss, batch) of a profile name."""
    if name == "lstm":
        return _lstm_workload()
    work = next(w for w in WORKLOADS if w.name.startswith({"mlp128": "mnist-mlp batch 128", "mlp32": "mnist-mlp batch 32",
                                                           "cnn": "cnn", "pima": "pima"}[name]))
    x, y = work.data()
    return work.name, work.build(), x, y, work.loss, work.batch


def profile(name: str) -> None:
    """Train one epoch of workload `name` and print its kernels by time."""
    codegen.build_module = instrumented_build
    label, model, x, y, loss, batch = _workload(name)
    model.compile(optimizer="adam", loss=loss)
    model.fit(x[:batch * 4], y[:batch * 4], batch_size=batch, epochs=1, verbose=0)
    step = next(iter(model._compiled.steps.values()))
    exe = step.exe
    nodes = exe.graph.nodes
    counters = (ctypes.c_int64 * (len(nodes) + 1)).from_address(exe._jit.address(COUNTERS))
    ctypes.memset(ctypes.addressof(counters), 0, ctypes.sizeof(counters))
    steps = -(-len(x) // batch)
    start = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
    wall = time.perf_counter() - start
    rate = cycles_per_second()
    spent = [counters[i + 1] / rate / steps * 1e6 for i in range(len(nodes))]
    total = sum(spent)
    env = {symbol: batch for symbol in codegen.graph_symbols(exe.graph)}
    rows = sorted(((spent[i], i + 1, describe(n), node_cost(n, env)) for i, n in enumerate(nodes)
                   if n.op != "constant"), reverse=True)
    print(table(f"{label}: {steps} steps, {wall / steps * 1e6:.0f} us/step wall, "
                f"{total:.0f} us/step in kernels, {len(rows)} kernels",
                ("us/step", "share", "#", "kernel", "GFLOP/s"),
                [(f"{t:.1f}", f"{t / total:.1%}", f"{i}", d,
                  f"{c.flops / (t * 1e3):.1f}" if c and t else "") for t, i, d, c in rows]))


if __name__ == "__main__":
    for arg in sys.argv[1:] or ["mlp128", "cnn"]:
        profile(arg)

"""NNCOMPILE_PERF_MAP: every function of a loaded module, internal kernels included, named in
/tmp/perf-<pid>.map at the address it runs from, with its size."""
import os

import numpy as np

import nncompile
from nncompile.codegen import target
from nncompile.ir import BATCH, Builder, f32


def test_perf_map_names_every_function_at_its_run_time_address(monkeypatch, tmp_path):
    path = f"/tmp/perf-{os.getpid()}.map"
    before = open(path).read() if os.path.exists(path) else ""
    monkeypatch.setenv("NNCOMPILE_PERF_MAP", "1")
    b = Builder()
    x = b.input("x", f32[BATCH, 400])
    w = b.param("w", np.ones((400, 300), np.float32))
    graph = b.finish([b.tanh(b.matmul(x, w))])
    module = nncompile.compile(graph)._module_text
    jit = target.JitModule(module)
    lines = open(path).read()[len(before):].splitlines()
    entries = {name: (int(address, 16), int(size, 16)) for address, size, name in (line.split(" ", 2) for line in lines)}
    assert entries["nncompile_entry"][0] == jit.address("nncompile_entry")
    internal = [name for name in entries if name.endswith(".fused")]     # the kernel: internal linkage
    assert internal, sorted(entries)
    spans = sorted(entries.values())
    assert all(size > 0 for _, size in spans)
    assert all(a + size <= b for (a, size), (b, _) in zip(spans, spans[1:]))   # no two overlap

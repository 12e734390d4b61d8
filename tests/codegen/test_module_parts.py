"""A module compiled in parts by several LLVM workers at once (`codegen/module_parts.py`): every
definition lands in exactly one part, the entry points in the first, references between parts
are declared and exported, and the parts, loaded into one engine, compute what numpy computes,
also when they come back from the disk cache."""
from __future__ import annotations

import llvmlite.binding as llvm
import numpy as np
import pytest

import nncompile
from nncompile.codegen import cpu as codegen
from nncompile.codegen import module_parts, target
from nncompile.ir import BATCH, Builder, f32


def _graph():
    """A column sum (a task run by the thread pool), a product with a bias and tanh (a library
    GEMM), a constant array and an elementwise loop: kernels of several kinds."""
    rng = np.random.default_rng(3)
    w, bias = rng.standard_normal((24, 40)).astype(np.float32), rng.standard_normal(40).astype(np.float32)
    scale = rng.uniform(0.5, 2.0, 24).astype(np.float32)
    b = Builder()
    x = b.input("x", f32[BATCH, 24])
    total = b.reduce_sum(b.exp(x), axes=[0])
    hidden = b.tanh(b.add(b.matmul(x, b.param("w", w)), b.param("bias", bias)))
    scaled = b.mul(b.sigmoid(x), b.constant(scale))
    graph = b.finish([total, hidden, scaled], ["total", "hidden", "scaled"])

    def numpy(xs):
        return [np.exp(xs).sum(0), np.tanh(xs @ w + bias), scale / (1 + np.exp(-xs))]
    return graph, numpy


@pytest.fixture
def small_parts(monkeypatch):
    """Parts of any size, so that a small module is cut too."""
    monkeypatch.setattr(module_parts, "MIN_PART_CHARS", 1000)


def _definitions(text: str) -> dict:
    """Each function or global a module text defines, by name, with its linkage."""
    module = llvm.parse_assembly(text)
    module.verify()
    found = {f.name: f.linkage for f in module.functions if not f.is_declaration}
    found.update({g.name: g.linkage for g in module.global_variables if not g.is_declaration})
    return found


def test_every_definition_is_in_one_part_and_what_a_part_borrows_is_exported(small_parts):
    graph, _ = _graph()
    module = codegen.build_module(*_compiled(graph))
    whole = _definitions(str(module))
    parts = module_parts.split(module, 3)
    assert len(parts) == 3
    defined = [_definitions(text) for text in parts]
    assert sorted(n for d in defined for n in d) == sorted(whole)       # each exactly once
    assert all(name in defined[0] for name in whole if name.startswith(module_parts.ENTRY_PREFIX))
    for i, text in enumerate(parts):
        declared = {f.name for f in llvm.parse_assembly(text).functions if f.is_declaration}
        for name in declared & set(whole):
            owner = next(d for d in defined if name in d)
            assert owner is not defined[i] and owner[name] == llvm.Linkage.external, name


def _compiled(graph):
    exe = nncompile.compile(graph)
    return exe.graph, exe.layout


def test_a_model_compiled_in_parts_computes_what_numpy_does_also_from_the_cache(small_parts, tmp_path,
                                                                                monkeypatch):
    monkeypatch.setenv("NNCOMPILE_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(target, "workers", lambda: 2)
    graph, numpy = _graph()
    xs = np.random.default_rng(4).standard_normal((300, 24)).astype(np.float32)
    for cached in (False, True):
        exe = nncompile.compile(graph)
        assert exe.from_cache is cached
        assert len(module_parts.unpack(exe.object_code)) == 2
        for got, want in zip(exe(xs), numpy(xs)):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_object_files_pack_and_unpack():
    objects = [b"\x7fELF one", b"", b"\x7fELF three, longer"]
    assert module_parts.unpack(module_parts.pack(objects)) == objects
    assert module_parts.pack([b"\x7fELF alone"]) == b"\x7fELF alone"
    assert module_parts.unpack(b"\x7fELF alone") == [b"\x7fELF alone"]


@pytest.mark.parametrize("name", ['k"1', "k\\2", "plain.3"])
def test_names_that_llvm_text_escapes_are_followed_across_parts(small_parts, name):
    """A kernel whose name LLVM writes with escapes, called by the entry point from another part,
    is declared there and exported by its part; the parts load and the call returns its value."""
    import ctypes

    from llvmlite import ir

    i32 = ir.IntType(32)
    module = target.new_module("escapes")
    callee = ir.Function(module, ir.FunctionType(i32, []), name)
    callee.linkage = "internal"
    ir.IRBuilder(callee.append_basic_block("entry")).ret(ir.Constant(i32, 7))
    table = ir.GlobalVariable(module, ir.ArrayType(i32, 1), name + ".table")
    table.linkage, table.global_constant = "private", True
    table.initializer = ir.Constant(table.value_type, [35])
    entry = ir.Function(module, ir.FunctionType(i32, []), "nncompile_entry")
    b = ir.IRBuilder(entry.append_basic_block("entry"))
    loaded = b.load(b.gep(table, [ir.Constant(i32, 0), ir.Constant(i32, 0)]))
    b.ret(b.add(b.call(callee, []), loaded))
    for part in range(80):   # padding, so that the module is worth two parts
        filler = ir.Function(module, ir.FunctionType(i32, []), f"filler.{part}")
        ir.IRBuilder(filler.append_basic_block("entry")).ret(ir.Constant(i32, part))
    parts = module_parts.split(module, 2)
    assert len(parts) == 2
    for text in parts:
        llvm.parse_assembly(text).verify()
    objects = [target.compile_object(text) for text in parts]
    jit = target.JitModule(object_code=module_parts.pack(objects), link=False)
    assert ctypes.CFUNCTYPE(ctypes.c_int32)(jit.address("nncompile_entry"))() == 42

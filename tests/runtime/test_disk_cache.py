"""The disk cache of machine code: a bad entry of any kind is a miss that recompiles and replaces
it, never a crash, a hang or wrong results; the key covers everything that decides the code.

Each corruption runs in a child process, so a crash of LLVM or of the machine code fails the
test instead of ending the test run."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from nncompile.runtime import disk_cache

_CHILD = textwrap.dedent("""
    import os, shutil, sys
    import numpy as np, nncompile
    from nncompile.ir import BATCH, Builder, f32
    from nncompile.runtime import disk_cache
    from nncompile.runtime.reference import run as reference_run

    def model(activation):
        b = Builder()
        x = b.input("x", f32[BATCH, 3])
        w = b.param("w", np.arange(6, dtype=np.float32).reshape(3, 2) / 4)
        return b.finish([b.op(activation, b.op("matmul", x, w))], ["y"])

    def compiled_correctly(graph):
        exe = nncompile.compile(graph)
        x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3)
        np.testing.assert_allclose(exe(x), reference_run(graph, [x])[0], rtol=1e-6)
        return exe

    kind, graph = sys.argv[1], model("sigmoid")
    entry = disk_cache.directory() / (compiled_correctly(graph)._key + ".o")
    good = entry.read_bytes()
    obj = good[disk_cache._HEADER.size:]
    rng = np.random.default_rng(0)

    def replace(make):
        if entry.is_dir() and not entry.is_symlink():
            entry.rmdir()
        else:
            entry.unlink(missing_ok=True)
        make()

    def contents(data):
        return lambda: entry.write_bytes(data)

    CASES = {
        "empty": [contents(b"")],
        "truncated": [contents(good[:len(good) // 2]), contents(good[:-1]), contents(good[:disk_cache._HEADER.size])],
        "bit flips": [contents(bytes(good[:i]) + bytes([good[i] ^ (1 << int(rng.integers(8)))]) + good[i + 1:])
                      for i in sorted(rng.integers(disk_cache._HEADER.size, len(good), 24))]
                     + [contents(good[:i] + bytes([good[i] ^ 1]) + good[i + 1:]) for i in range(0, 48, 7)],
        "another model's entry": [lambda: shutil.copyfile(
            disk_cache.directory() / (compiled_correctly(model("tanh"))._key + ".o"), entry)],
        "raw object without header": [contents(obj)],
        "ELF header alone": [contents(obj[:64]), contents(good[:disk_cache._HEADER.size] + obj[:64])],
        "random bytes": [contents(rng.bytes(len(good))), contents(good[:disk_cache._HEADER.size] + rng.bytes(len(obj)))],
        "longer than written": [contents(good + b"\\0" * 100)],
        "300 MB sparse file": [lambda: open(entry, "wb").truncate(300 << 20)],
        "FIFO": [lambda: os.mkfifo(entry)],
        "link to /dev/zero": [lambda: entry.symlink_to("/dev/zero")],
        "link to /dev/urandom": [lambda: entry.symlink_to("/dev/urandom")],
        "directory": [lambda: entry.mkdir()],
    }
    for corrupt in CASES[kind]:
        replace(corrupt)
        exe = compiled_correctly(graph)
        assert not exe.from_cache, kind
        if kind != "directory":   # a directory cannot be replaced: every compile is a miss
            assert entry.read_bytes() == good, "the bad entry was not replaced"
            assert compiled_correctly(graph).from_cache
    print("ok")
""")

_KINDS = ["empty", "truncated", "bit flips", "another model's entry", "raw object without header",
          "ELF header alone", "random bytes", "longer than written", "300 MB sparse file", "FIFO",
          "link to /dev/zero", "link to /dev/urandom", "directory"]


@pytest.mark.parametrize("kind", _KINDS)
def test_a_bad_cache_entry_is_a_miss_that_is_replaced(tmp_path, kind):
    env = {**os.environ, "NNCOMPILE_CACHE_DIR": str(tmp_path)}
    try:
        child = subprocess.run([sys.executable, "-c", _CHILD, kind], env=env, capture_output=True,
                               text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{kind}: the child process hung")
    assert child.returncode == 0, f"{kind}: exit {child.returncode}\n{child.stderr[-3000:]}"
    assert child.stdout.strip() == "ok"


def test_entries_are_written_whole_with_their_checksum(tmp_path, monkeypatch):
    monkeypatch.setenv("NNCOMPILE_CACHE_DIR", str(tmp_path))
    obj = os.urandom(1000)
    disk_cache.write("k", obj)
    assert disk_cache.read("k") == obj
    assert disk_cache.read("other") is None
    assert [p.name for p in tmp_path.iterdir()] == ["k.o"]   # no temporary file left behind
    shutil.copyfile(tmp_path / "k.o", tmp_path / "other.o")
    assert disk_cache.read("other") is None                  # the digest covers the key


def test_a_full_or_read_only_cache_directory_only_costs_a_compile(tmp_path, monkeypatch):
    monkeypatch.setenv("NNCOMPILE_CACHE_DIR", str(tmp_path / "file"))
    (tmp_path / "file").write_text("not a directory")
    disk_cache.write("k", b"object")
    assert disk_cache.read("k") is None


def test_the_key_covers_the_whole_package_source(tmp_path):
    package = tmp_path / "nncompile"
    shutil.copytree(os.path.dirname(disk_cache.__file__) + "/..", package,
                    ignore=shutil.ignore_patterns("__pycache__"))
    program = "from nncompile.runtime import disk_cache; print(disk_cache.package_fingerprint())"

    def fingerprint():
        env = {**os.environ, "PYTHONPATH": str(tmp_path)}
        return subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True,
                              check=True, cwd=tmp_path).stdout

    before = fingerprint()
    assert before == fingerprint()
    with open(package / "ir" / "ops" / "shape.py", "a") as f:   # logic the code generator uses
        f.write("\n# changed\n")
    assert fingerprint() != before


def test_the_key_covers_the_cpu_and_llvm(monkeypatch):
    key = disk_cache.entry_key("graph")
    assert disk_cache.entry_key("graph") == key and disk_cache.entry_key("graph2") != key
    monkeypatch.setattr(disk_cache, "host_cpu", lambda: ("othercpu", "+avx2"))
    assert disk_cache.entry_key("graph") != key
    monkeypatch.undo()
    monkeypatch.setattr(disk_cache.llvm, "llvm_version_info", (1, 2, 3))
    assert disk_cache.entry_key("graph") != key


_RUN_CACHED = textwrap.dedent("""
    import sys
    import numpy as np, nncompile
    from nncompile.codegen import llvm_worker
    from nncompile.ir import BATCH, Builder, f32
    size = int(sys.argv[1])   # 300: a product on both threads, through the kernel library
    b = Builder()
    x = b.input("x", f32[BATCH, size])
    y = b.op("sigmoid", b.op("matmul", x, b.param("w", np.full((size, 2), 0.5 / size, np.float32))))
    exe = nncompile.compile(b.finish([y], ["y"]))
    got = exe(np.ones((400, size), np.float32))
    np.testing.assert_allclose(got, np.full((400, 2), 1 / (1 + np.exp(-0.5))), rtol=1e-6)
    print(exe.from_cache, len(llvm_worker._WORKERS.all))
""")


@pytest.mark.parametrize("size", [3, 300])
def test_a_process_whose_code_is_cached_starts_no_llvm_worker(tmp_path, size):
    """The thread pool's machine code is cached beside the kernel library, and cached code that
    does not call the pool does not load it, so a process that finds its model's code in the
    cache never starts an LLVM worker; a bad library or pool entry is a miss, compiled again."""
    env = {**os.environ, "NNCOMPILE_CACHE_DIR": str(tmp_path)}

    def child() -> tuple[str, int]:
        done = subprocess.run([sys.executable, "-c", _RUN_CACHED, str(size)], env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        cached, workers = done.stdout.split()
        return cached, int(workers)

    first = child()
    assert first[0] == "False" and first[1] >= 1
    assert child() == ("True", 0)
    library = sorted((tmp_path / "library").glob("*"))
    assert bool(library) == (size == 300)     # the pool and the library's GEMM, when used
    for entry in library:
        entry.write_bytes(b"not an object file")
    again = child()
    assert again[0] == "True" and (again[1] >= 1) == (size == 300)     # both built again, side by side
    assert child() == ("True", 0)

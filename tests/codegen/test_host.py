"""The host's facts: cache sizes from sysfs (and the defaults without it), NNCOMPILE_CPU's levels and
its errors, and the GEMM blocking derived from the caches."""
from __future__ import annotations

import pathlib

import pytest

from nncompile.codegen import blocking, host
from nncompile.runtime import disk_cache

KB, MB = 1 << 10, 1 << 20


@pytest.fixture
def fresh_host(monkeypatch):
    """The host's facts read again under the test's environment, and again after it."""
    cached = (host.host_cpu, host._features, host.vector_bytes)
    for fn in cached:
        fn.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    for fn in cached:
        fn.cache_clear()


def _sysfs(root: pathlib.Path, entries) -> pathlib.Path:
    for i, (level, kind, size, shared) in enumerate(entries):
        index = root / f"index{i}"
        index.mkdir(parents=True)
        for name, text in (("level", level), ("type", kind), ("size", size), ("shared_cpu_list", shared)):
            (index / name).write_text(f"{text}\n")
    return root


def test_caches_come_from_sysfs_per_core(tmp_path):
    root = _sysfs(tmp_path, [(1, "Data", "48K", "0"), (1, "Instruction", "32K", "0"),
                             (2, "Unified", "2048K", "0"), (3, "Unified", "300M", "0-1,4,6-7")])
    assert host.read_caches(root) == host.Caches(l1d=48 * KB, l2=2 * MB, l3=300 * MB // 5, measured=True)


@pytest.mark.parametrize("entries", [[], [(1, "Data", "48K", "0")],
                                     [(1, "Data", "lots", "0"), (2, "Unified", "1M", "0")]])
def test_caches_fall_back_to_defaults_when_sysfs_is_missing_or_unreadable(tmp_path, entries):
    assert host.read_caches(_sysfs(tmp_path / "cache", entries)) == host.DEFAULT_CACHES
    assert not host.DEFAULT_CACHES.measured


def _supports(level: str) -> bool:
    present = set(host.native_cpu()[1].split(","))
    return all(f in present for f in host.LEVELS[level][1].split(","))


@pytest.mark.parametrize("level, cpu, vector_bytes, fma", [("avx2", "haswell", 32, True),
                                                          ("x86-64", "x86-64", 16, False)])
def test_a_forced_level_is_the_cpu_code_is_made_for(fresh_host, level, cpu, vector_bytes, fma):
    if not _supports(level):
        pytest.skip(f"this CPU cannot run {level} code")
    fresh_host.setenv(host.CPU_ENV, level)
    assert host.host_cpu()[0] == cpu and "+avx512f" not in host.host_cpu()[1]
    assert (host.vector_bytes(), host.vector_lanes(4)) == (vector_bytes, vector_bytes // 4)
    assert host.vector_registers() == 16
    assert host.has_fma() is fma
    assert f"as {level} ({host.CPU_ENV})" in host.describe()


def test_native_is_the_machine_itself(fresh_host):
    fresh_host.setenv(host.CPU_ENV, "native")
    assert host.host_cpu() == host.native_cpu()


def test_a_bad_level_names_the_variable_and_the_choices(fresh_host):
    fresh_host.setenv(host.CPU_ENV, "avx9")
    with pytest.raises(ValueError, match=r"^NNCOMPILE_CPU is 'avx9'; expected one of native, avx2, x86-64$"):
        host.host_cpu()


def test_a_level_the_cpu_lacks_is_refused_with_what_it_lacks(fresh_host):
    fresh_host.setattr(host, "native_cpu", lambda: ("oldcpu", "+64bit,+cmov,+cx8,+fxsr,+mmx,+sse,+sse2,-avx"))
    fresh_host.setenv(host.CPU_ENV, "avx2")
    with pytest.raises(ValueError, match=r"NNCOMPILE_CPU is 'avx2', but this CPU \(oldcpu\) lacks sse3, .*avx2"):
        host.host_cpu()
    fresh_host.setenv(host.CPU_ENV, "x86-64")
    assert host.host_cpu()[0] == "x86-64"


@pytest.mark.parametrize("l1d, l2, itemsize, mr, nr, want", [
    (48 * KB, 1 * MB, 4, 12, 32, (768, 144)),   # Zen 5, AVX-512 f32: the values measured best there
    (48 * KB, 1 * MB, 8, 12, 16, (768, 72)),    # ... and f64 (576 bytes of rows before)
    (48 * KB, 2 * MB, 4, 12, 32, (768, 312)),   # Emerald Rapids Xeon
    (32 * KB, 1 * MB, 4, 6, 16, (1024, 114)),   # an AVX2 core with the default caches
])
def test_blocking_is_derived_from_the_caches(l1d, l2, itemsize, mr, nr, want):
    got = blocking.derive(host.Caches(l1d=l1d, l2=l2, l3=8 * MB, measured=True), itemsize, mr, nr)
    assert (got.kc, got.mc) == want


@pytest.mark.parametrize("l1d, l2", [(1 * KB, 16 * KB), (4 * KB, 64 * KB), (1 * MB, 64 * MB)])
def test_derived_blocking_stays_in_bounds_for_odd_caches(l1d, l2):
    got = blocking.derive(host.Caches(l1d=l1d, l2=l2, l3=l2, measured=True), 4, 12, 32)
    assert blocking.KC_MIN <= got.kc <= blocking.KC_MAX and got.kc % 16 == 0
    assert 12 <= got.mc <= blocking.MC_MAX and got.mc % 12 == 0


def test_the_code_cache_key_follows_the_forced_level(fresh_host):
    if not _supports("avx2"):
        pytest.skip("this CPU cannot run avx2 code")
    native = disk_cache.entry_key("graph")
    fresh_host.setenv(host.CPU_ENV, "avx2")
    host.host_cpu.cache_clear()
    assert disk_cache.entry_key("graph") != native

"""What the host CPU has: its LLVM name and features, vector width, cache sizes, cores, model name.

NNCOMPILE_CPU makes the code generator treat the host as an older x86-64 CPU, so that a host with
AVX-512 can compile, run and test the AVX2 and the generic SSE2 paths:

| value | LLVM CPU | vectors | what for |
|---|---|---|---|
| `native` (default) | the host's own | the host's | normal use |
| `avx2` | `haswell` (AVX2, FMA) | 32 bytes, 16 registers | the code an AVX2 machine gets |
| `x86-64` | `x86-64` (SSE2) | 16 bytes, 16 registers, no FMA | the generic x86-64 baseline |

A forced level must be a subset of the host's features (its code runs on this machine). The caches
and cores stay the host's: a forced level changes what instructions are used, not the machine.

Cache sizes come from sysfs (/sys/devices/system/cpu/cpu0/cache/index*); where it is missing (some
containers, non-Linux) conservative defaults are used: 32 KB L1d, 1 MB L2, 8 MB L3. Reading cpuid
needs native code, which this package only gets through LLVM, so it is not consulted.
"""
from __future__ import annotations

import functools
import os
import pathlib
import platform
from dataclasses import dataclass

import llvmlite.binding as llvm

from nncompile.codegen import llvm_worker

CPU_ENV = "NNCOMPILE_CPU"
# The features each forced level turns on (LLVM names); everything else is off.
_SSE2 = "+64bit,+cmov,+cx8,+fxsr,+mmx,+sse,+sse2"
LEVELS = {
    "avx2": ("haswell", _SSE2 + ",+sse3,+ssse3,+sse4.1,+sse4.2,+popcnt,+cx16,+sahf,+avx,+avx2,+fma,+f16c,"
                        "+bmi,+bmi2,+lzcnt,+movbe,+xsave"),
    "x86-64": ("x86-64", _SSE2),
}
SYSFS_CACHES = pathlib.Path("/sys/devices/system/cpu/cpu0/cache")


@dataclass(frozen=True)
class Caches:
    """Data cache sizes in bytes for one core: L1d and L2 as a core has them (even when its
    hyperthreads share them), the L3 divided by the CPUs sharing it; `measured` is False when
    they are the fallback defaults."""
    l1d: int
    l2: int
    l3: int
    measured: bool


DEFAULT_CACHES = Caches(l1d=32 << 10, l2=1 << 20, l3=8 << 20, measured=False)


def cpu_level() -> str:
    """NNCOMPILE_CPU: 'native' (the default), or a forced level of LEVELS."""
    level = os.environ.get(CPU_ENV) or "native"
    if level != "native" and level not in LEVELS:
        raise ValueError(f"{CPU_ENV} is {level!r}; expected one of native, {', '.join(LEVELS)}")
    return level


@functools.cache
def native_cpu() -> tuple[str, str]:
    """(LLVM cpu name, feature string) of the machine itself, e.g. ('znver5', '+avx512f,...')."""
    llvm_worker.initialize()
    return llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()


@functools.cache
def host_cpu() -> tuple[str, str]:
    """(cpu name, feature string) code is generated for: the machine's own, or NNCOMPILE_CPU's."""
    level = cpu_level()
    if level == "native":
        return native_cpu()
    name, features = LEVELS[level]
    present = {f for f in native_cpu()[1].split(",") if f.startswith("+")}
    missing = [f[1:] for f in features.split(",") if f not in present]
    if missing:
        raise ValueError(f"{CPU_ENV} is {level!r}, but this CPU ({native_cpu()[0]}) lacks "
                         f"{', '.join(missing)}; expected native or a level the CPU supports")
    return name, features


@functools.cache
def _features() -> frozenset[str]:
    """host_cpu()'s features as a set (asked for every fused multiply-add emitted)."""
    return frozenset(host_cpu()[1].split(","))


@functools.cache
def vector_bytes() -> int:
    """The widest vector register code may use: 64 (AVX-512), 32 (AVX/AVX2) or 16 bytes."""
    features = _features()
    if "+avx512f" in features:
        return 64
    if "+avx" in features:
        return 32
    return 16


def vector_lanes(itemsize: int) -> int:
    """How many elements of `itemsize` bytes fill one vector register."""
    return max(vector_bytes() // itemsize, 1)


def vector_registers() -> int:
    """Vector registers the register allocator has: 32 with AVX-512, else 16."""
    return 32 if "+avx512f" in _features() else 16


def has_fma() -> bool:
    """Whether fused multiply-add is an instruction (without it, llvm.fma is a libm call per lane)."""
    return "+fma" in _features()


def _size(text: str) -> int:
    """'48K' -> 49152 (sysfs cache sizes: a number with an optional K, M or G)."""
    text = text.strip()
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:].upper(), 1)
    return int(text[:-1] if scale > 1 else text) * scale


def _sharing(cpu_list: str) -> int:
    """How many CPUs a sysfs shared_cpu_list ('0-1', '0,64', '3') names."""
    count = 0
    for part in cpu_list.strip().split(","):
        first, _, last = part.partition("-")
        count += int(last or first) - int(first) + 1
    return max(count, 1)


def read_caches(root: pathlib.Path = SYSFS_CACHES) -> Caches:
    """The data caches of cpu0 by level, per core (see `Caches`); the defaults when sysfs lacks
    the L1d or the L2, or cannot be read."""
    sizes: dict[int, int] = {}
    try:
        for index in sorted(root.glob("index*")):
            if (index / "type").read_text().strip() not in ("Data", "Unified"):
                continue
            level = int((index / "level").read_text())
            shared = _sharing((index / "shared_cpu_list").read_text()) if level >= 3 else 1
            sizes[level] = _size((index / "size").read_text()) // shared
    except (OSError, ValueError):
        return DEFAULT_CACHES
    if not {1, 2} <= sizes.keys():
        return DEFAULT_CACHES
    return Caches(l1d=sizes[1], l2=sizes[2], l3=sizes.get(3, DEFAULT_CACHES.l3), measured=True)


@functools.cache
def caches() -> Caches:
    """The host's data cache sizes per core (see `read_caches`)."""
    return read_caches()


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@functools.cache
def model_name() -> str:
    """The CPU's model name as /proc/cpuinfo (`lscpu`) gives it, e.g. 'AMD Ryzen 9 9950X 16-Core Processor'."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or native_cpu()[0]


def describe() -> str:
    """One line on the host as code is generated for it (for reports and `nncompile tune`)."""
    c = caches()
    level = cpu_level()
    forced = "" if level == "native" else f" as {level} ({CPU_ENV})"
    return (f"{model_name()} [{native_cpu()[0]}{forced}], {vector_bytes() * 8}-bit vectors, "
            f"L1d {c.l1d >> 10} KB, L2 {c.l2 >> 10} KB, L3 {c.l3 >> 10} KB per core"
            f"{'' if c.measured else ' (defaults: sysfs unreadable)'}, {cores()} cores")
